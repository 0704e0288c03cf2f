r"""Built-in 2-D datasets, two sample-quality metrics and a small MLP backbone, all in torch.

What the demo, the quality benchmark and the first worked example need, with no other dependency:

- Datasets, each `f(n, *, generator=None, device=None, dtype=torch.float32) -> (n, 2)`:
  :func:`checkerboard`, :func:`eight_gaussians`, :func:`two_moons`, :func:`spiral`, :func:`ring`;
  by name with :func:`get_toy_dataset` (names in `TOY_DATASETS`). Every dataset lies roughly in
  $[-2.5, 2.5]^2$, the scale of the standard Gaussian noise.
- Metrics between point clouds: the energy distance (Székely & Rizzo 2013) :func:`energy_distance`
  and the sliced Wasserstein-2 distance (Rabin et al. 2011; Bonneel et al. 2015)
  :func:`sliced_wasserstein`.
- :class:`MLPBackbone`: a small MLP $F_\theta(x, t, s[, \text{labels}])$ fed with the two time inputs
  of the official backbones ($t$ and $t - s$) and an optional class embedding with a null class, for
  :class:`~soflow_toolkit.SolutionFlowWrapper`.

The datasets follow the usual toy densities of the flow literature (FFJORD, Grathwohl et al. 2019);
their exact constants are this module's own and are listed in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "TOY_DATASETS",
    "MLPBackbone",
    "checkerboard",
    "eight_gaussians",
    "energy_distance",
    "get_toy_dataset",
    "ring",
    "sliced_wasserstein",
    "spiral",
    "timestep_embedding",
    "two_moons",
]


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int (the number of points); got {n!r}")


def _check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")


class _Draw:
    """Random draws on the generator's device, returned on the requested device and dtype."""

    def __init__(
        self, generator: torch.Generator | None, device: torch.device | str | None, dtype: torch.dtype
    ) -> None:
        _check_dtype(dtype)
        self.generator = generator
        self.draw_device = generator.device if generator is not None else device
        self.device = device
        # Draw in float64 so that a float64 request gets full precision; float32 draws are cast.
        self.draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.dtype = dtype

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.generator, device=self.draw_device, dtype=self.draw_dtype)

    def randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=self.draw_device, dtype=self.draw_dtype)

    def randint(self, high: int, n: int) -> Tensor:
        return torch.randint(high, (n,), generator=self.generator, device=self.draw_device)

    def out(self, x: Tensor) -> Tensor:
        return x.to(device=self.device if self.device is not None else x.device, dtype=self.dtype)


def checkerboard(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Uniform points on the black squares of a 4×4 checkerboard covering $[-2, 2]^2$.

    $x_1 \sim U[-2, 2)$; $x_2$ is uniform on the two unit squares of column $\lfloor x_1 \rfloor$ whose
    row index has the column's parity, i.e. the squares with $\lfloor x_1\rfloor + \lfloor x_2\rfloor$
    even. The density is $1/8$ on half of the board and 0 elsewhere.

    Args:
        n: number of points.
        generator: random generator (the draws happen on its device).
        device: device of the result (default: the generator's device, else CPU).
        dtype: floating dtype of the result.

    Returns:
        `(n, 2)` tensor.

    Example:
        >>> import torch
        >>> x = checkerboard(1000, generator=torch.Generator().manual_seed(0))
        >>> x.shape, bool((x.abs() <= 2).all())
        (torch.Size([1000, 2]), True)
        >>> bool(((x.floor().sum(dim=1) % 2) == 0).all())
        True
    """
    _check_n(n)
    rng = _Draw(generator, device, dtype)
    x1 = rng.rand(n) * 4 - 2
    column = torch.floor(x1)
    # Rows -2..1; keep the two rows whose parity matches the column's so that floor(x1) + floor(x2) is even.
    row = rng.randint(2, n).to(x1.dtype) * 2 - 2 + torch.remainder(column, 2)
    x2 = row + rng.rand(n)
    return rng.out(torch.stack([x1, x2], dim=1))


def _gaussian_ring(
    n: int, modes: int, radius: float, std: float, rng: _Draw, *, offset: float = 0.0
) -> Tensor:
    index = rng.randint(modes, n).to(rng.draw_dtype)
    angle = 2 * math.pi * index / modes + offset
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + std * rng.randn(n, 2)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number; got {value!r}")


def eight_gaussians(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    radius: float = 2.0,
    std: float = 0.2,
) -> Tensor:
    r"""An equal mixture of 8 isotropic Gaussians centred on a circle.

    $x = r\,(\cos\tfrac{2\pi k}{8}, \sin\tfrac{2\pi k}{8}) + \sigma z$, $k \sim U\{0..7\}$, $z \sim \mathcal N(0, I)$.

    Args:
        n: number of points.
        generator: random generator.
        device: device of the result.
        dtype: floating dtype of the result.
        radius: $r > 0$.
        std: $\sigma > 0$.

    Returns:
        `(n, 2)` tensor.

    Example:
        >>> import torch
        >>> x = eight_gaussians(4000, generator=torch.Generator().manual_seed(0))
        >>> round(float(x.norm(dim=1).mean()), 1)
        2.0
    """
    _check_n(n)
    _check_positive(radius=radius, std=std)
    rng = _Draw(generator, device, dtype)
    return rng.out(_gaussian_ring(n, 8, radius, std, rng))


def ring(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    radius: float = 2.0,
    std: float = 0.1,
) -> Tensor:
    r"""Six sharp Gaussians on a ring: a hard case for one-step generation.

    $x = r\,(\cos\tfrac{2\pi k}{6}, \sin\tfrac{2\pi k}{6}) + \sigma z$, $k \sim U\{0..5\}$,
    $z \sim \mathcal N(0, I)$. With $\sigma/r = 0.05$ the modes are far apart compared with their
    width, so a one-step map from the Gaussian must jump sharply between modes; mass left on the
    bridges between modes shows up clearly in the metrics.

    Args:
        n: number of points.
        generator: random generator.
        device: device of the result.
        dtype: floating dtype of the result.
        radius: $r > 0$.
        std: $\sigma > 0$.

    Returns:
        `(n, 2)` tensor.

    Example:
        >>> import torch
        >>> x = ring(6000, generator=torch.Generator().manual_seed(0))
        >>> angle = torch.atan2(x[:, 1], x[:, 0]) * 3 / torch.pi  # mode k sits at angle k
        >>> bool(((angle - angle.round()).abs() < 0.25).float().mean() > 0.99)
        True
    """
    _check_n(n)
    _check_positive(radius=radius, std=std)
    rng = _Draw(generator, device, dtype)
    return rng.out(_gaussian_ring(n, 6, radius, std, rng))


def two_moons(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    noise: float = 0.08,
) -> Tensor:
    r"""Two interleaved half circles, centred and scaled by 1.5.

    With $\theta \sim U[0, \pi]$ and a fair coin: upper moon $(\cos\theta, \sin\theta)$, lower moon
    $(1 - \cos\theta, \tfrac12 - \sin\theta)$; then $x = 1.5\,(p - (\tfrac12, \tfrac14)) + \sigma z$
    with $\sigma$ = `noise`.

    Args:
        n: number of points.
        generator: random generator.
        device: device of the result.
        dtype: floating dtype of the result.
        noise: $\sigma > 0$, the Gaussian jitter added after scaling.

    Returns:
        `(n, 2)` tensor.

    Example:
        >>> import torch
        >>> x = two_moons(4000, generator=torch.Generator().manual_seed(0))
        >>> [round(v, 1) + 0.0 for v in x.mean(dim=0).tolist()]
        [0.0, 0.0]
    """
    _check_n(n)
    _check_positive(noise=noise)
    rng = _Draw(generator, device, dtype)
    theta = rng.rand(n) * math.pi
    lower = rng.randint(2, n).bool()
    upper_x, upper_y = torch.cos(theta), torch.sin(theta)
    x = torch.where(lower, 1 - upper_x, upper_x)
    y = torch.where(lower, 0.5 - upper_y, upper_y)
    points = 1.5 * (torch.stack([x, y], dim=1) - torch.tensor([0.5, 0.25], dtype=x.dtype, device=x.device))
    return rng.out(points + noise * rng.randn(n, 2))


def spiral(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    turns: float = 1.5,
    noise: float = 0.05,
) -> Tensor:
    r"""Two interleaved spiral arms (an Archimedean spiral and its point reflection).

    With $u \sim U[0, 1)$, angle $\theta = 2\pi\,T\sqrt{u}$ ($T$ = `turns`; $\sqrt{u}$ spreads the
    points evenly along the arm) and radius $\rho = 2.25\,\sqrt{u}$: $x = \pm\rho\,(\cos\theta, \sin\theta) + \sigma z$,
    the sign a fair coin, $\sigma$ = `noise`.

    Args:
        n: number of points.
        generator: random generator.
        device: device of the result.
        dtype: floating dtype of the result.
        turns: $T > 0$, the number of turns of each arm.
        noise: $\sigma > 0$.

    Returns:
        `(n, 2)` tensor.

    Example:
        >>> import torch
        >>> x = spiral(1000, generator=torch.Generator().manual_seed(0))
        >>> x.shape, bool(x.norm(dim=1).max() < 2.6)
        (torch.Size([1000, 2]), True)
    """
    _check_n(n)
    _check_positive(turns=turns, noise=noise)
    rng = _Draw(generator, device, dtype)
    root = torch.sqrt(rng.rand(n))
    theta = 2 * math.pi * turns * root
    sign = rng.randint(2, n).to(root.dtype) * 2 - 1
    points = (sign * 2.25 * root)[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    return rng.out(points + noise * rng.randn(n, 2))


ToyDataset = Callable[..., Tensor]

TOY_DATASETS: dict[str, ToyDataset] = {
    "checkerboard": checkerboard,
    "eight_gaussians": eight_gaussians,
    "ring": ring,
    "spiral": spiral,
    "two_moons": two_moons,
}
"""The built-in 2-D datasets by name."""


def get_toy_dataset(name: str) -> ToyDataset:
    """Look up a built-in 2-D dataset by name (see `TOY_DATASETS`).

    Raises:
        ValueError: for an unknown name (the message lists the known ones).

    Example:
        >>> import torch
        >>> get_toy_dataset("ring")(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; expected one of {sorted(TOY_DATASETS)}")
    return TOY_DATASETS[name]


# ---------------------------------------------------------------------------------------------------
# Metrics


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


def energy_distance(
    x: Tensor,
    y: Tensor,
    *,
    num_projections: int | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 1024,
) -> Tensor:
    r"""The (squared) energy distance between two point clouds, unbiased.

    $$\mathcal E(X, Y) = 2\,\mathbb E\lVert X - Y\rVert - \mathbb E\lVert X - X'\rVert - \mathbb E\lVert Y - Y'\rVert,$$

    estimated with all cross pairs and, within each sample, all pairs $i \ne j$ (U-statistics). It is
    $\ge 0$ for distributions and 0 only when they agree; the estimate is unbiased, so two samples of
    the same distribution give values scattered around 0 (possibly slightly negative).

    Two ways to compute it:

    - `num_projections=None` (default): exactly, from all $nm + n^2 + m^2$ distances, `chunk` rows at
      a time (memory `chunk × max(n, m)`; seconds for $n = m = 10^4$ on a CPU).
    - `num_projections=P`: from the identity $\lVert v\rVert = c_d\,\mathbb E_\theta|\theta^\top v|$,
      $\theta \sim U(S^{d-1})$, $c_d = \sqrt\pi\,\Gamma(\tfrac{d+1}2)/\Gamma(\tfrac d2)$ ($c_2 = \pi/2$):
      $\mathcal E(X, Y) = c_d\,\mathbb E_\theta\,\mathcal E(\theta^\top X, \theta^\top Y)$, where each
      1-D term is computed exactly by sorting in $O((n + m)\log(n + m))$. For $d = 2$ the directions
      are $P$ evenly spaced angles on the half circle (a quadrature that converges fast; pass a
      `generator` to draw random ones instead), for $d > 2$ random directions; $d = 1$ is exact.

    Args:
        x: `(n, d)` points, n >= 2.
        y: `(m, d)` points, m >= 2.
        num_projections: None for the exact value, or the number of directions P >= 1.
        generator: random generator for random directions (see above).
        chunk: rows of each block of the distance matrices (exact mode).

    Returns:
        A 0-d float64 tensor.

    Raises:
        ValueError: for shapes other than `(n, d)`, fewer than 2 points, different d, non-finite values,
            or a bad `num_projections`/`chunk`.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> round(float(energy_distance(x, x + torch.tensor([3.0, 0.0]))), 4)  # 2*3 - 1 - 1
        4.0
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g) + 0.5
        >>> exact, fast = energy_distance(a, b), energy_distance(a, b, num_projections=128)
        >>> bool(abs(exact - fast) < 1e-3 * exact)
        True
    """
    _check_clouds(x, y, minimum=2)
    for name, value, allow_none in (("num_projections", num_projections, True), ("chunk", chunk, False)):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{name} must be a positive int{' or None' if allow_none else ''}; got {value!r}"
            )
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if num_projections is None:
        dtype = torch.promote_types(x.dtype, y.dtype)
        x, y = x.to(dtype), y.to(device=x.device, dtype=dtype)
        xy = _mean_distance(x, y, same=False, chunk=chunk)
        xx = _mean_distance(x, x, same=True, chunk=chunk)
        yy = _mean_distance(y, y, same=True, chunk=chunk)
        return 2 * xy - xx - yy
    directions = _directions(d, num_projections, generator, x.device)
    # Projections laid out (P, n): sorting along contiguous rows is much faster than along columns.
    px = torch.sort(directions @ x.to(torch.float64).T, dim=1).values  # (P, n)
    py = torch.sort(directions @ y.to(device=x.device, dtype=torch.float64).T, dim=1).values  # (P, m)
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
    r"""The sliced Wasserstein-2 distance between two point clouds, with random directions.

    $$\mathrm{SW}_2(X, Y) = \Big(\frac1P \sum_{p=1}^{P} W_2^2(\theta_p^\top X, \theta_p^\top Y)\Big)^{1/2},
      \qquad \theta_p \sim U(S^{d-1}),$$

    where the 1-D $W_2^2 = \int_0^1 (F^{-1}(u) - G^{-1}(u))^2\,du$ is computed exactly between the two
    empirical quantile functions (sorting; clouds of different sizes are allowed). The directions are
    drawn from `generator`; for $d = 2$ without a generator they are $P$ evenly spaced angles on the
    half circle (deterministic, and a better quadrature of the average over directions).

    Args:
        x: `(n, d)` points.
        y: `(m, d)` points.
        num_projections: $P \ge 1$, the number of random directions.
        generator: random generator of the directions (on any device; they are moved to `x`'s).
            Without one, $d = 2$ uses evenly spaced directions and $d > 2$ the global generator.

    Returns:
        A 0-d float64 tensor, in the units of the data.

    Raises:
        ValueError: for shapes other than `(n, d)`, empty clouds, different d, non-finite values or
            `num_projections < 1`.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
        >>> g = torch.Generator().manual_seed(1)
        >>> round(float(sliced_wasserstein(x, x + torch.tensor([1.0, 0.0]), generator=g)), 1)  # (E cos^2)^(1/2)
        0.7
    """
    _check_clouds(x, y, minimum=1)
    if isinstance(num_projections, bool) or not isinstance(num_projections, int) or num_projections < 1:
        raise ValueError(f"num_projections must be a positive int; got {num_projections!r}")
    directions = _directions(x.shape[1], num_projections, generator, x.device)
    px = torch.sort(directions @ x.to(torch.float64).T, dim=1).values  # (P, n)
    py = torch.sort(directions @ y.to(device=x.device, dtype=torch.float64).T, dim=1).values  # (P, m)
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


# ---------------------------------------------------------------------------------------------------
# Backbone


def timestep_embedding(t: Tensor, dim: int, *, max_period: float = 10_000.0, scale: float = 1000.0) -> Tensor:
    r"""Sinusoidal features of times: $[\cos(\omega_k \tau), \sin(\omega_k \tau)]_k$ with $\tau = \text{scale}\cdot t$.

    $\omega_k = \text{max\_period}^{-k/(\text{dim}/2)}$, $k = 0, \dots, \text{dim}/2 - 1$ (the DiT/ADM
    embedding); `dim` must be even.

    Args:
        t: `(B,)` times.
        dim: even feature size.
        max_period: the slowest period.
        scale: multiplies the times first (1000 maps [0, 1] to the usual diffusion step range).

    Returns:
        `(B, dim)` features in `t`'s dtype.

    Example:
        >>> import torch
        >>> timestep_embedding(torch.zeros(3), 8)[0]
        tensor([1., 1., 1., 1., 0., 0., 0., 0.])
    """
    if dim % 2:
        raise ValueError(f"dim must be even; got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    args = scale * t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class MLPBackbone(nn.Module):
    r"""A small MLP backbone $F_\theta(x, t, s[, \text{labels}])$ for points and small flattened data.

    $$h_1 = \mathrm{SiLU}\big(W_1\,[\mathrm{flatten}(x),\ \phi(t),\ \phi(t - s)] + b_1\,[+\,E_y(\text{label})]\big),
      \quad h_{k+1} = \mathrm{SiLU}(W_{k+1} h_k + b_{k+1}),\quad F = W_{out} h_{\text{depth}} + b_{out},$$

    reshaped to $x$'s shape, where $\phi$ is :func:`timestep_embedding` (the second time input is the
    gap $t - s$, as in the official backbones, so $s = t$ is always the same input). With
    `num_classes = K` the label embedding $E_y$ has $K + 1$ rows: index $K$ is the null class used for
    condition dropping and classifier-free guidance. The network is deliberately plain and cheap: a
    training step at batch 256 costs a few milliseconds on one CPU core.

    Args:
        dim: number of elements per sample (2 for the toys, 64 for 8×8 images); the input may have any
            trailing shape with that many elements.
        hidden: width of the hidden layers.
        depth: number of hidden layers, >= 1.
        num_classes: number of classes K for class-conditional data, or None.
        frequencies: size of each sinusoidal time feature vector (even).

    Shapes:
        `x`: `(B, *D)` with `prod(D) = dim`; `t`, `s`: `(B,)`; `labels`: `(B,)` integers in [0, K]
        (K = null). Output: `(B, *D)`.

    Example:
        >>> import torch
        >>> from soflow_toolkit import SolutionFlowWrapper, sample
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = SolutionFlowWrapper(MLPBackbone(dim=2, hidden=32, depth=2))
        >>> sample(model, torch.randn(5, 2)).shape
        torch.Size([5, 2])
        >>> conditional = SolutionFlowWrapper(MLPBackbone(dim=64, hidden=32, num_classes=10))
        >>> labels = torch.tensor([3, 10])  # 10 = the null class
        >>> conditional(torch.randn(2, 1, 8, 8), 1.0, 0.0, labels).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        dim: int = 2,
        *,
        hidden: int = 128,
        depth: int = 4,
        num_classes: int | None = None,
        frequencies: int = 32,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth), ("frequencies", frequencies)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLPBackbone: {name} must be a positive int; got {value!r}")
        if frequencies % 2:
            raise ValueError(f"MLPBackbone: frequencies must be even; got {frequencies}")
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"MLPBackbone: num_classes must be a positive int or None; got {num_classes!r}")
        self.dim = dim
        self.num_classes = num_classes
        self.frequencies = frequencies
        self.inp = nn.Linear(dim + 2 * frequencies, hidden)
        self.label_embed = nn.Embedding(num_classes + 1, hidden) if num_classes is not None else None
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor | None = None) -> Tensor:
        """Evaluate $F_\\theta(x, t, s[, \\text{labels}])$; see the class docstring for shapes."""
        batch = x.shape[0]
        flat = x.reshape(batch, -1)
        if flat.shape[1] != self.dim:
            raise ValueError(
                f"MLPBackbone(dim={self.dim}) got samples with {flat.shape[1]} elements (x of shape {tuple(x.shape)})"
            )
        dtype = self.inp.weight.dtype
        features = [
            flat.to(dtype),
            timestep_embedding(t, self.frequencies).to(dtype),
            timestep_embedding(t - s, self.frequencies).to(dtype),
        ]
        h = self.inp(torch.cat(features, dim=1))
        if self.label_embed is not None:
            if labels is None:
                raise ValueError(
                    f"this MLPBackbone is class-conditional (num_classes={self.num_classes}): pass labels "
                    f"(use {self.num_classes} for the null class)"
                )
            if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (batch,):
                raise ValueError(
                    f"labels must be an integer tensor of shape ({batch},); got dtype {labels.dtype}, "
                    f"shape {tuple(labels.shape)}"
                )
            h = h + self.label_embed(labels)
        elif labels is not None:
            raise ValueError("this MLPBackbone is unconditional (num_classes=None) but got labels")
        h = F.silu(h)
        for layer in self.hidden:
            h = F.silu(layer(h))
        out: Tensor = self.out(h)
        return out.reshape(x.shape).to(x.dtype)
