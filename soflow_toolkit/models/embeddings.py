r"""Sinusoidal features of scalars and of 2-D grid positions, shared by every network of the package.

Two embeddings, each a plain function:

- [`sinusoidal_embedding`][soflow_toolkit.models.sinusoidal_embedding]: the time (or noise-level) features of the transformer and diffusion
  literature (Vaswani et al. 2017; Ho et al. 2020; Peebles & Xie, DiT, 2023; Karras et al., EDM, 2022).
  SoFlow's backbones feed it the raw times $t$ and $t - s$ in $[0, 1]$ (SoFlow, arXiv 2512.15657; no
  scaling by 1000); callers who want the integer-timestep convention multiply first.
- [`grid_positions_2d`][soflow_toolkit.models.grid_positions_2d]: the fixed 2-D sin-cos positions of ViT-style patch tokens (MAE, He et al.
  2022; DiT), in the layout of the official SoFlow DiT.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["grid_positions_2d", "sinusoidal_embedding"]


def _features_dtype(values: Tensor) -> torch.dtype:
    # Angles need at least float32 (bf16 would lose the slow frequencies); float64 stays float64.
    return torch.float64 if values.dtype == torch.float64 else torch.float32


def sinusoidal_embedding(
    values: Tensor,
    dim: int,
    *,
    max_period: float = 10_000.0,
    endpoint: bool = False,
    order: Literal["cos_sin", "sin_cos"] = "cos_sin",
) -> Tensor:
    r"""Sinusoidal features of scalars: $[\cos(v\,\omega_k)]_k \,\|\, [\sin(v\,\omega_k)]_k$.

    With $h = \text{dim}/2$ frequencies, $k = 0, \dots, h - 1$,

    $$\omega_k = P^{-k/h} \quad\text{(default)}, \qquad \omega_k = P^{-k/(h-1)} \quad (\texttt{endpoint=True}),$$

    where $P$ is `max_period`: the frequencies run from 1 down to $P^{-1}$ (endpoint) or to
    $P^{-(h-1)/h}$. The default is the DiT/ADM timestep embedding (`TimestepEmbedder` of DiT); with
    `endpoint=True` it is EDM's `PositionalEmbedding` of the DDPM++ UNet. `order="sin_cos"` puts the
    sine half first (the official SoFlow UNet swaps the halves this way).

    The features are computed in float32, or in float64 for float64 input, whatever the input dtype
    (half-precision angles would lose the slow frequencies); cast them to the next layer's dtype.

    Args:
        values: `(B,)` scalars (times, noise levels, positions), any real dtype.
        dim: number of features, even, `>= 2` (`>= 4` with `endpoint=True`).
        max_period: $P$, the slowest period is about $2\pi P$.
        endpoint: divide the exponents by $h - 1$ instead of $h$, so the last frequency is exactly $1/P$.
        order: `"cos_sin"` (cosines first) or `"sin_cos"`.

    Returns:
        `(B, dim)` features, float32 (float64 for float64 input), on `values`' device.

    Raises:
        TypeError: if `values` is not a tensor.
        ValueError: for `values` that are not 1-D, an odd or too small `dim`, a `max_period` that is not
            positive, or an unknown `order`.

    Examples:
        >>> import torch
        >>> sinusoidal_embedding(torch.tensor([0.0, 1.0]), 4)
        tensor([[1.0000, 1.0000, 0.0000, 0.0000],
                [0.5403, 0.9999, 0.8415, 0.0100]])
        >>> sinusoidal_embedding(torch.tensor([1.0]), 4, endpoint=True, order="sin_cos")
        tensor([[8.4147e-01, 1.0000e-04, 5.4030e-01, 1.0000e+00]])
    """
    if not isinstance(values, Tensor):
        raise TypeError(f"values must be a (B,) tensor; got {type(values).__name__}")
    if values.ndim != 1:
        raise ValueError(f"values must be a (B,) tensor of scalars; got shape {tuple(values.shape)}")
    minimum = 4 if endpoint else 2
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < minimum or dim % 2:
        raise ValueError(f"dim must be an even int >= {minimum}; got {dim!r}")
    if not max_period > 0:
        raise ValueError(f"max_period must be positive; got {max_period!r}")
    if order not in ("cos_sin", "sin_cos"):
        raise ValueError(f"order must be 'cos_sin' or 'sin_cos'; got {order!r}")
    dtype = _features_dtype(values)
    half = dim // 2
    steps = torch.arange(half, dtype=dtype, device=values.device)
    # Evaluated as DiT (exp) and EDM (power) evaluate them, so both networks are matched bit for bit.
    if endpoint:
        freqs = (1.0 / max_period) ** (steps / (half - 1))
    else:
        freqs = torch.exp(-math.log(max_period) * steps / half)
    angles = values.to(dtype)[:, None] * freqs[None]  # (B, half)
    parts = (torch.cos(angles), torch.sin(angles))
    return torch.cat(parts if order == "cos_sin" else parts[::-1], dim=1)


def grid_positions_2d(dim: int, grid_size: int, *, max_period: float = 10_000.0) -> Tensor:
    r"""Fixed 2-D sin-cos positions of a `grid_size` × `grid_size` grid of tokens, row-major.

    Token $n = i \cdot G + j$ sits at row $i$, column $j$. With $q = \text{dim}/4$ and
    $\omega_k = P^{-k/q}$, $k = 0, \dots, q - 1$, its features are

    $$[\sin(j\,\omega_k)]_k \,\|\, [\cos(j\,\omega_k)]_k \,\|\, [\sin(i\,\omega_k)]_k \,\|\, [\cos(i\,\omega_k)]_k:$$

    the **first half encodes the column** index $j$, the second half the row index $i$. This is the
    layout of the official SoFlow DiT (and of DiT and MAE, whose `meshgrid` puts the column first).
    Computed in float64 and returned in float32.

    Args:
        dim: feature size, a multiple of 4.
        grid_size: tokens per side $G$.
        max_period: $P$.

    Returns:
        `(grid_size * grid_size, dim)` float32 positions.

    Raises:
        ValueError: for a `dim` that is not a positive multiple of 4 or a `grid_size` below 1.

    Examples:
        >>> pos = grid_positions_2d(8, 2)  # tokens (0,0), (0,1), (1,0), (1,1)
        >>> pos[1, :4]  # column 1: sin(1), sin(0.01), cos(1), cos(0.01)
        tensor([0.8415, 0.0100, 0.5403, 0.9999])
        >>> pos[1, 4:]  # row 0
        tensor([0., 0., 1., 1.])
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 4 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4 for 2-D sin-cos positions; got {dim!r}")
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int; got {grid_size!r}")
    quarter = dim // 4
    omega = 1.0 / max_period ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each, row-major tokens

    def encode(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega[None]  # (G*G, q)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).to(torch.float32)
