r"""Built-in 2-D datasets and the known support of each: where its modes are, which points lie on it.

Each dataset is `f(n, *, generator=None, device=None, dtype=torch.float32) -> (n, 2)`:
[`checkerboard`][soflow_toolkit.toy.checkerboard], [`eight_gaussians`][soflow_toolkit.toy.eight_gaussians], [`two_moons`][soflow_toolkit.toy.two_moons], [`spiral`][soflow_toolkit.toy.spiral], [`ring`][soflow_toolkit.toy.ring]; by name
with [`get_toy_dataset`][soflow_toolkit.toy.get_toy_dataset] (names in `TOY_DATASETS`). Every dataset lies roughly in $[-2.5, 2.5]^2$,
the scale of the standard Gaussian noise. They follow the usual toy densities of the flow literature
(FFJORD, Grathwohl et al. 2019); the exact constants are this module's own and listed in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "TOY_DATASETS",
    "checkerboard",
    "eight_gaussians",
    "get_toy_dataset",
    "ring",
    "spiral",
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

    Examples:
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

    Examples:
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

    Examples:
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

    Examples:
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

    Examples:
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

    Examples:
        >>> import torch
        >>> get_toy_dataset("ring")(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; expected one of {sorted(TOY_DATASETS)}")
    return TOY_DATASETS[name]
