r"""Sample-quality metrics between point clouds: distances between distributions and sharpness-aware scores.

- Distances (0 when the distributions agree): the energy distance (Székely & Rizzo 2013), exact
  ([`energy_distance`][soflow_toolkit.toy.energy_distance]) or from 1-D projections ([`sliced_energy_distance`][soflow_toolkit.toy.sliced_energy_distance]), and the sliced
  Wasserstein-2 distance (Rabin et al. 2011; Bonneel et al. 2015) [`sliced_wasserstein`][soflow_toolkit.toy.sliced_wasserstein].
- Sharpness-aware scores, which see what a distance between distributions averages away (mass
  smeared between the modes, modes left out): the precision and recall of generative models with
  k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019) [`precision_recall`][soflow_toolkit.toy.precision_recall], and for data with
  a known support the share of samples on it and the share of modes covered, [`support_scores`][soflow_toolkit.toy.support_scores]
  (with [`assign_modes`][soflow_toolkit.toy.assign_modes]).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "energy_distance",
    "precision_recall",
    "sliced_energy_distance",
    "sliced_wasserstein",
    "support_scores",
]


def _check_clouds(x: Tensor, y: Tensor, minimum: int) -> None:
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (n, d); got {type(value).__name__}")
        if value.ndim != 2:
            raise ValueError(f"{name} must have shape (n, d); got shape {tuple(value.shape)}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
        if value.shape[0] < minimum:
            raise ValueError(f"{name} must hold at least {minimum} points; got {value.shape[0]}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension d; got {x.shape[1]} and {y.shape[1]}")


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


def _mean_distance(a: Tensor, b: Tensor, *, same: bool, chunk: int) -> Tensor:
    """Mean of ||a_i - b_j|| over all pairs (over i != j when `same`), accumulated in float64."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    b_squared = b.pow(2).sum(dim=1)
    for start in range(0, a.shape[0], chunk):
        rows = a[start : start + chunk]
        # ||a||^2 + ||b||^2 - 2 a.b in float64 (exact enough: no cancellation trouble at these scales)
        squared = torch.addmm(b_squared[None, :] + rows.pow(2).sum(dim=1, keepdim=True), rows, b.T, alpha=-2)
        if same:
            index = torch.arange(rows.shape[0], device=a.device)
            squared[index, index + start] = 0.0
        total = total + squared.clamp_min_(0).sqrt_().sum()
    pairs = a.shape[0] * (a.shape[0] - 1) if same else a.shape[0] * b.shape[0]
    return total / pairs  # the diagonal of the same-sample matrix is exactly 0


def energy_distance(x: Tensor, y: Tensor, *, chunk: int = 1024) -> Tensor:
    r"""The (squared) energy distance between two point clouds, unbiased and exact.

    $$\mathcal E(X, Y) = 2\,\mathbb E\lVert X - Y\rVert - \mathbb E\lVert X - X'\rVert - \mathbb E\lVert Y - Y'\rVert,$$

    estimated from all $nm$ cross pairs and, within each sample, all pairs $i \ne j$ (U-statistics),
    `chunk` rows of the distance matrices at a time (memory `chunk × max(n, m)`; seconds for
    $n = m = 10^4$ on a CPU). $\mathcal E \ge 0$ for distributions, 0 only when they agree; the
    estimate is unbiased, so two samples of one distribution give values scattered around 0,
    **negative about half of the time**: a negative value means "as close as this sample size can
    tell", not an error. For large clouds, [`sliced_energy_distance`][soflow_toolkit.toy.sliced_energy_distance] is much faster.

    Args:
        x: `(n, d)` points, n >= 2.
        y: `(m, d)` points, m >= 2.
        chunk: rows of each block of the distance matrices.

    Returns:
        A 0-d float64 tensor.

    Raises:
        ValueError: for shapes other than `(n, d)`, fewer than 2 points, different d, non-finite
            values or a bad `chunk`.
        TypeError: for non-tensors or non-floating tensors.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> round(float(energy_distance(x, x + torch.tensor([3.0, 0.0]))), 4)  # 2*3 - 1 - 1
        4.0
    """
    _check_clouds(x, y, minimum=2)
    _check_positive_int("chunk", chunk)
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(device=x.device, dtype=dtype)
    xy = _mean_distance(x, y, same=False, chunk=chunk)
    xx = _mean_distance(x, x, same=True, chunk=chunk)
    yy = _mean_distance(y, y, same=True, chunk=chunk)
    return 2 * xy - xx - yy


def _pair_sums(sorted_values: Tensor) -> Tensor:
    """Row-wise $\\sum_{a<b} |w_a - w_b|$ of a `(P, N)` tensor sorted along its rows, in O(N)."""
    count = sorted_values.shape[1]
    coefficients = 2 * torch.arange(count, device=sorted_values.device, dtype=sorted_values.dtype) - count + 1
    return sorted_values @ coefficients


def _directions(d: int, num: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """`(num, d)` unit directions: evenly spaced on the half circle for d = 2, random otherwise."""
    if d == 1:
        return torch.ones(1, 1, dtype=torch.float64, device=device)
    if d == 2 and generator is None:
        angles = torch.pi * (torch.arange(num, dtype=torch.float64, device=device) + 0.5) / num
        return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    draw_device = generator.device if generator is not None else device
    directions = torch.randn(num, d, generator=generator, device=draw_device, dtype=torch.float64)
    unit: Tensor = directions / directions.norm(dim=1, keepdim=True)
    return unit.to(device)


def _sorted_projections(x: Tensor, y: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    # Projections laid out (P, n): sorting along contiguous rows is much faster than along columns.
    px = torch.sort(directions @ x.to(torch.float64).T, dim=1).values  # (P, n)
    py = torch.sort(directions @ y.to(device=x.device, dtype=torch.float64).T, dim=1).values  # (P, m)
    return px, py


def sliced_energy_distance(
    x: Tensor, y: Tensor, *, num_projections: int = 64, generator: torch.Generator | None = None
) -> Tensor:
    r"""The energy distance of [`energy_distance`][soflow_toolkit.toy.energy_distance] computed from 1-D projections, in $O(n \log n)$.

    From the identity $\lVert v\rVert = c_d\,\mathbb E_\theta|\theta^\top v|$, $\theta \sim U(S^{d-1})$,
    $c_d = \sqrt\pi\,\Gamma(\tfrac{d+1}2)/\Gamma(\tfrac d2)$ ($c_2 = \pi/2$):
    $\mathcal E(X, Y) = c_d\,\mathbb E_\theta\,\mathcal E(\theta^\top X, \theta^\top Y)$, where each 1-D
    term is computed exactly (the same U-statistics) by sorting. For $d = 2$ the directions are $P$
    evenly spaced angles on the half circle, a quadrature that converges fast (pass a `generator` to
    draw random ones instead); for $d > 2$ random directions (an unbiased Monte Carlo average); $d = 1$
    is exact. Like the exact estimate it can be slightly negative near 0.

    Args:
        x: `(n, d)` points, n >= 2.
        y: `(m, d)` points, m >= 2.
        num_projections: the number of directions $P \ge 1$.
        generator: random generator of the directions (see above), on any device.

    Returns:
        A 0-d float64 tensor.

    Raises:
        ValueError: for shapes other than `(n, d)`, fewer than 2 points, different d, non-finite
            values or `num_projections < 1`.
        TypeError: for non-tensors or non-floating tensors.

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g) + 0.5
        >>> exact, fast = energy_distance(a, b), sliced_energy_distance(a, b, num_projections=128)
        >>> bool(abs(exact - fast) < 1e-3 * exact)
        True
    """
    _check_clouds(x, y, minimum=2)
    _check_positive_int("num_projections", num_projections)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    px, py = _sorted_projections(x, y, _directions(d, num_projections, generator, x.device))
    both = torch.sort(torch.cat([px, py], dim=1), dim=1).values  # (P, n + m)
    sum_xx, sum_yy = _pair_sums(px), _pair_sums(py)
    sum_xy = _pair_sums(both) - sum_xx - sum_yy  # cross pairs = all pairs - within-sample pairs
    per_direction = 2 * sum_xy / (n * m) - sum_xx / (n * (n - 1) / 2) - sum_yy / (m * (m - 1) / 2)
    c_d = math.exp(0.5 * math.log(math.pi) + math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    return c_d * per_direction.mean()


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    *,
    num_projections: int = 512,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The sliced Wasserstein-2 distance between two point clouds.

    $$\mathrm{SW}_2(X, Y) = \Big(\frac1P \sum_{p=1}^{P} W_2^2(\theta_p^\top X, \theta_p^\top Y)\Big)^{1/2},
      \qquad \theta_p \sim U(S^{d-1}),$$

    where the 1-D $W_2^2 = \int_0^1 (F^{-1}(u) - G^{-1}(u))^2\,du$ is computed exactly between the two
    empirical quantile functions (sorting; clouds of different sizes are allowed). The directions are
    drawn from `generator`; for $d = 2$ without a generator they are $P$ evenly spaced angles on the
    half circle (deterministic, and a better quadrature of the average over directions).

    Args:
        x: `(n, d)` points.
        y: `(m, d)` points.
        num_projections: $P \ge 1$, the number of directions.
        generator: random generator of the directions (on any device; they are moved to `x`'s).
            Without one, $d = 2$ uses evenly spaced directions and $d > 2$ the global generator.

    Returns:
        A 0-d float64 tensor, in the units of the data.

    Raises:
        ValueError: for shapes other than `(n, d)`, empty clouds, different d, non-finite values or
            `num_projections < 1`.
        TypeError: for non-tensors or non-floating tensors.

    Examples:
        >>> import torch
        >>> x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
        >>> g = torch.Generator().manual_seed(1)
        >>> round(float(sliced_wasserstein(x, x + torch.tensor([1.0, 0.0]), generator=g)), 1)  # (E cos^2)^(1/2)
        0.7
    """
    _check_clouds(x, y, minimum=1)
    _check_positive_int("num_projections", num_projections)
    px, py = _sorted_projections(x, y, _directions(x.shape[1], num_projections, generator, x.device))
    n, m = px.shape[1], py.shape[1]
    # Breakpoints of both quantile functions; on each interval both are constant.
    levels = torch.unique(
        torch.cat([torch.arange(n + 1, device=x.device) / n, torch.arange(m + 1, device=x.device) / m])
    ).to(torch.float64)
    mids = (levels[1:] + levels[:-1]) / 2
    ix = torch.clamp((mids * n).long(), max=n - 1)
    iy = torch.clamp((mids * m).long(), max=m - 1)
    widths = levels[1:] - levels[:-1]
    w2_squared: Tensor = (px[:, ix] - py[:, iy]).pow(2) @ widths  # (P,)
    return w2_squared.mean().sqrt()


def _kth_neighbour_radii(points: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of each point to its k-th nearest other point of the same cloud."""
    radii = []
    for start in range(0, points.shape[0], chunk):
        distance = torch.cdist(points[start : start + chunk], points)
        index = torch.arange(distance.shape[0], device=points.device)
        distance[index, index + start] = float("inf")  # a point is not its own neighbour
        radii.append(distance.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def _inside_share(queries: Tensor, centres: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """Share of `queries` inside at least one ball (centre, radius)."""
    inside = torch.zeros((), dtype=torch.float64, device=queries.device)
    for start in range(0, queries.shape[0], chunk):
        distance = torch.cdist(queries[start : start + chunk], centres)
        inside = inside + (distance <= radii[None, :]).any(dim=1).sum()
    return inside / queries.shape[0]


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    r"""Precision and recall of generated samples with k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019).

    Each cloud's manifold is the union of balls around its points with radius the distance to the
    point's $k$-th nearest neighbour in the same cloud: $\mathcal M(X) = \bigcup_i B(x_i, r_k(x_i))$.

    $$\text{precision} = \frac1m\sum_j \mathbb 1[\,y_j \in \mathcal M(X)\,], \qquad
      \text{recall} = \frac1n\sum_i \mathbb 1[\,x_i \in \mathcal M(Y)\,],$$

    with $X$ the real and $Y$ the generated points. Precision falls when samples land where the data
    has no mass (blur, bridges between modes); recall falls when parts of the data are not generated
    (dropped modes). Both lie in $[0, 1]$; two samples of one distribution score close to, not exactly,
    1 (the paper uses $k = 3$).

    Args:
        real: `(n, d)` data points, n > k.
        fake: `(m, d)` generated points, m > k.
        k: the neighbour that sets each ball's radius, >= 1.
        chunk: rows of each block of the distance matrices.

    Returns:
        `(precision, recall)`, two 0-d float64 tensors.

    Raises:
        ValueError: for shapes other than `(n, d)`, clouds of at most k points, different d,
            non-finite values, or a bad `k`/`chunk`.
        TypeError: for non-tensors or non-floating tensors.

    Examples:
        >>> import torch
        >>> real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k = 1: every radius is 1
        >>> fake = torch.tensor([[0.5], [10.0]])  # radii 9.5: the balls cover every real point
        >>> [round(float(v), 2) for v in precision_recall(real, fake, k=1)]
        [0.5, 1.0]
    """
    _check_positive_int("k", k)
    _check_positive_int("chunk", chunk)
    _check_clouds(real, fake, minimum=k + 1)
    dtype = torch.promote_types(torch.promote_types(real.dtype, fake.dtype), torch.float32)
    real, fake = real.to(dtype), fake.to(device=real.device, dtype=dtype)
    real_radii = _kth_neighbour_radii(real, k, chunk)
    fake_radii = _kth_neighbour_radii(fake, k, chunk)
    return _inside_share(fake, real, real_radii, chunk), _inside_share(real, fake, fake_radii, chunk)


def support_scores(modes: Tensor, num_modes: int, *, min_share: float = 0.25) -> tuple[Tensor, Tensor]:
    r"""The share of points on a known support and the share of its modes that are covered.

    With $m_j \in \{-1, 0, \dots, K - 1\}$ the mode of point $j$ ($-1$: off the support; see
    [`assign_modes`][soflow_toolkit.toy.assign_modes]) and $n_k$ the number of points in mode $k$:

    $$\text{on-support} = \frac1N \sum_j \mathbb 1[m_j \ge 0], \qquad
      \text{coverage} = \frac1K \sum_k \mathbb 1\Big[\frac{n_k}{N} \ge \frac{\text{min\_share}}{K}\Big],$$

    so a mode counts as covered when it holds at least `min_share` of the mass it would hold if all
    $K$ modes were equally weighted.

    Args:
        modes: `(N,)` integer tensor of mode indices in $[-1, K)$, N >= 1.
        num_modes: $K \ge 1$.
        min_share: in $(0, 1]$, the share of an equal weight that makes a mode covered.

    Returns:
        `(on_support, coverage)`, two 0-d float64 tensors in $[0, 1]$.

    Raises:
        ValueError: for a bad shape, values outside $[-1, K)$, or bad `num_modes`/`min_share`.
        TypeError: for a non-integer tensor.

    Examples:
        >>> import torch
        >>> on_support, coverage = support_scores(torch.tensor([0, 0, 1, -1]), 4)
        >>> float(on_support), float(coverage)  # 3 of 4 points on the support; modes 0 and 1 of 4
        (0.75, 0.5)
    """
    if not isinstance(modes, Tensor):
        raise TypeError(f"modes must be a torch.Tensor of shape (N,); got {type(modes).__name__}")
    if modes.dtype.is_floating_point or modes.dtype.is_complex or modes.dtype == torch.bool:
        raise TypeError(f"modes must be an integer tensor; got dtype {modes.dtype}")
    if modes.ndim != 1 or modes.shape[0] < 1:
        raise ValueError(f"modes must have shape (N,) with N >= 1; got {tuple(modes.shape)}")
    _check_positive_int("num_modes", num_modes)
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 < min_share <= 1:
        raise ValueError(f"min_share must be a number in (0, 1]; got {min_share!r}")
    if bool((modes < -1).any()) or bool((modes >= num_modes).any()):
        raise ValueError(
            f"modes must lie in [-1, {num_modes}); got values from {int(modes.min())} to {int(modes.max())}"
        )
    total = modes.shape[0]
    on = modes >= 0
    counts = torch.bincount(modes[on], minlength=num_modes).to(torch.float64)
    coverage = (counts / total >= min_share / num_modes).to(torch.float64).mean()
    return on.to(torch.float64).mean(), coverage
