r"""The known support of each built-in 2-D dataset: which mode a point belongs to, or none.

[`assign_modes`][soflow_toolkit.toy.assign_modes] maps points to the modes of a dataset of `soflow_toolkit.toy.datasets`
(with its default parameters), or to $-1$ off the support: the input of
[`support_scores`][soflow_toolkit.toy.support_scores].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .datasets import _check_positive

__all__ = ["NUM_MODES", "assign_modes"]


NUM_MODES: dict[str, int] = {"checkerboard": 8, "eight_gaussians": 8, "ring": 6, "spiral": 2, "two_moons": 2}
"""The number of modes of each built-in dataset, as [`assign_modes`][soflow_toolkit.toy.assign_modes] counts them."""


def _nearest_centre(points: Tensor, modes: int, radius: float, std: float, tolerance: float) -> Tensor:
    angle = 2 * math.pi * torch.arange(modes, dtype=points.dtype, device=points.device) / modes
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (modes, 2)
    distance, index = torch.cdist(points, centres).min(dim=1)
    return torch.where(distance <= tolerance * std, index, torch.full_like(index, -1))


def _nearest_curve(points: Tensor, curves: list[Tensor], band: float, chunk: int = 4096) -> Tensor:
    """Index of the nearest of `curves` (each a dense `(m, 2)` polyline), or -1 beyond `band`."""
    best = torch.full((points.shape[0],), float("inf"), dtype=points.dtype, device=points.device)
    index = torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    for k, curve in enumerate(curves):
        for start in range(0, points.shape[0], chunk):
            rows = slice(start, start + chunk)
            distance = torch.cdist(points[rows], curve.to(points)).min(dim=1).values
            closer = distance < best[rows]
            best[rows] = torch.where(closer, distance, best[rows])
            index[rows] = torch.where(closer, torch.full_like(index[rows], k), index[rows])
    return torch.where(best <= band, index, torch.full_like(index, -1))


def _moon_arcs(samples: int = 2049) -> list[Tensor]:
    theta = torch.linspace(0, math.pi, samples, dtype=torch.float64)
    upper = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    lower = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
    shift = torch.tensor([0.5, 0.25], dtype=torch.float64)
    return [1.5 * (upper - shift), 1.5 * (lower - shift)]


def _spiral_arms(turns: float = 1.5, samples: int = 4097) -> list[Tensor]:
    root = torch.linspace(0, 1, samples, dtype=torch.float64)
    theta = 2 * math.pi * turns * root
    arm = (2.25 * root)[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    return [arm, -arm]


def assign_modes(name: str, points: Tensor, *, tolerance: float = 3.0) -> Tensor:
    r"""The mode of each point under a built-in dataset with its default parameters, or $-1$ off its support.

    - `checkerboard`: the 8 black unit squares of $[-2, 2)^2$, numbered $2c + \lfloor r/2\rfloor$ for
      column $c = \lfloor x_1\rfloor + 2$ and row $r = \lfloor x_2\rfloor + 2$; the support is exact
      (`tolerance` is not used) and every data point lies on it.
    - `eight_gaussians`, `ring`: the nearest centre, if the point lies within `tolerance` standard
      deviations of it. A 2-D Gaussian holds $1 - e^{-\tau^2/2}$ of its mass within $\tau$ standard
      deviations: 98.9 % for $\tau = 3$.
    - `two_moons` (modes: upper, lower moon) and `spiral` (the two arms): the nearest curve, if the point
      lies within `tolerance` times the noise level of it (the distance to a dense polyline of the curve).

    Args:
        name: a name of `TOY_DATASETS`.
        points: `(n, 2)` points.
        tolerance: $\tau > 0$, the width of the support in noise standard deviations.

    Returns:
        `(n,)` long tensor of mode indices in `[0, NUM_MODES[name])`, $-1$ off the support.

    Raises:
        ValueError: for an unknown name, points not of shape `(n, 2)`, or a bad tolerance.
        TypeError: for a non-floating tensor.

    Examples:
        >>> import torch
        >>> assign_modes("checkerboard", torch.tensor([[-1.5, -1.5], [-1.5, -0.5], [0.5, 0.5], [3.0, 0.0]]))
        tensor([ 0, -1,  5, -1])
        >>> assign_modes("eight_gaussians", torch.tensor([[2.0, 0.1], [0.0, 0.0]]))
        tensor([ 0, -1])
    """
    if name not in NUM_MODES:
        raise ValueError(f"unknown toy dataset {name!r}; expected one of {sorted(NUM_MODES)}")
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a torch.Tensor of shape (n, 2); got {type(points).__name__}")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2); got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"points must be a floating-point tensor; got dtype {points.dtype}")
    _check_positive(tolerance=tolerance)
    if name == "checkerboard":
        column, row = torch.floor(points[:, 0]) + 2, torch.floor(points[:, 1]) + 2
        inside = (column >= 0) & (column <= 3) & (row >= 0) & (row <= 3)
        black = torch.remainder(column + row, 2) == 0
        index = (2 * column + torch.div(row, 2, rounding_mode="floor")).long()
        return torch.where(inside & black, index, torch.full_like(index, -1))
    if name == "eight_gaussians":
        return _nearest_centre(points, 8, 2.0, 0.2, tolerance)
    if name == "ring":
        return _nearest_centre(points, 6, 2.0, 0.1, tolerance)
    curves = _moon_arcs() if name == "two_moons" else _spiral_arms()
    noise = 0.08 if name == "two_moons" else 0.05
    return _nearest_curve(points, curves, tolerance * noise)
