r"""The geometric core of the ADA pipeline: affine warps on a 2x oversampled, reflect-padded image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Low-pass decomposition filter of the least-asymmetric Daubechies wavelet with 6 vanishing moments
# ("sym6"), the filter of the ADA pipeline. Orthonormal: sum h = sqrt(2), sum h_k h_{k+2m} = delta_m.
_SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)
# Margin (in pixels of the original image) kept around the image for the filter's support.
_FILTER_PAD = len(_SYM6) // 4


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or not images.is_floating_point():
        kind = f"dtype {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"images must be a floating-point tensor (B, C, H, W); got {kind}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W); got {tuple(images.shape)}")
    if images.shape[2] < 2 or images.shape[3] < 2:
        raise ValueError(
            f"images must be at least 2 x 2 pixels (reflect padding); got {images.shape[2]} x {images.shape[3]}"
        )


def _matrices(rows: list[list[Tensor | float]], like: Tensor) -> Tensor:
    """A batch of 3 x 3 matrices from entries that are (B,) tensors or numbers -> (B, 3, 3)."""
    entries = [
        torch.as_tensor(e, dtype=like.dtype, device=like.device).expand_as(like) for row in rows for e in row
    ]
    return torch.stack(entries, dim=-1).reshape(*like.shape, 3, 3)


def _translate(tx: Tensor | float, ty: Tensor | float, like: Tensor) -> Tensor:
    return _matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def _scale(sx: Tensor | float, sy: Tensor | float, like: Tensor) -> Tensor:
    return _matrices([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def _rotate(angle: Tensor, like: Tensor) -> Tensor:
    cos, sin = angle.cos(), angle.sin()
    return _matrices([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], like)


def _filter(channels: int, like: Tensor, vertical: bool) -> Tensor:
    taps = torch.tensor(_SYM6, dtype=like.dtype, device=like.device)
    shape = (1, len(_SYM6)) if not vertical else (len(_SYM6), 1)
    return taps.reshape(1, 1, *shape).expand(channels, 1, *shape)


def _upsample2x(images: Tensor) -> Tensor:
    """Zero-stuffing and filtering with the wavelet filter, separably: (B, C, H, W) -> (B, C, 2H, 2W).

    Output sample i along an axis is $\\sum_j h_{i + 5 - 2j}\\, x_j$ (a transposed convolution), which
    places it at input position $i / 2$ when the 12-tap filter is taken as centred on tap 5.
    """
    c = images.shape[1]
    images = F.conv_transpose2d(images, _filter(c, images, False), stride=(1, 2), padding=(0, 5), groups=c)
    return F.conv_transpose2d(images, _filter(c, images, True), stride=(2, 1), padding=(5, 0), groups=c)


def _downsample2x(images: Tensor) -> Tensor:
    """The adjoint of [`_upsample2x`][soflow_toolkit.augment._upsample2x]: filter and keep every other sample, (2H, 2W) -> (H, W)."""
    c = images.shape[1]
    images = F.conv2d(images, _filter(c, images, False), stride=(1, 2), padding=(0, 5), groups=c)
    return F.conv2d(images, _filter(c, images, True), stride=(2, 1), padding=(5, 0), groups=c)


def warp_affine(images: Tensor, inverse: Tensor) -> Tensor:
    r"""Resample images under affine maps without leaking borders or aliasing (the ADA resampler).

    Output pixel $p$ takes the value of the input at $G p$, where $G$ = `inverse[b]` acts on
    homogeneous pixel coordinates centred on the image centre ($x$ to the right, $y$ down, one unit
    per pixel; pixel $(i, j)$ of an $H \times W$ image sits at $(j - \tfrac{W - 1}{2},
    i - \tfrac{H - 1}{2})$). So $G$ is the inverse of the transform applied to the image. The batch
    is reflect-padded by the margin that the transformed corners need (plus the filter's support,
    one margin for the whole batch, at most the image size minus one), upsampled 2x with the sym6
    wavelet filter, resampled bilinearly (`grid_sample`), filtered down 2x and cropped. A constant
    image stays constant (within a few pixels of the border, strong minifications can exhaust the
    margin's slack for the filters and move it slightly) and integer shifts are exact (they commute
    with the filtering); every other map, flips and 90-degree rotations included (the sym6 filter is
    not symmetric), is a close low-pass approximation, not bit-exact.

    Args:
        images: floating tensor `(B, C, H, W)`, $H, W \ge 2$; computed in float32 (float64 for float64
            input) and returned in the input's dtype.
        inverse: `(B, 3, 3)` inverse affine matrices $G$ (last row `[0, 0, 1]`).

    Returns:
        The resampled images, same shape, dtype and device as `images`.

    Raises:
        TypeError: if `images` is not a floating tensor.
        ValueError: if the shapes do not match.

    Examples:
        >>> import torch
        >>> images = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> shift = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # read x + 1
        >>> torch.allclose(warp_affine(images, shift)[..., :3], images[..., 1:], atol=1e-4)
        True
    """
    _check_images(images)
    batch, channels, height, width = images.shape
    if not isinstance(inverse, Tensor) or inverse.shape != (batch, 3, 3):
        shape = tuple(inverse.shape) if isinstance(inverse, Tensor) else type(inverse).__name__
        raise ValueError(f"inverse must have shape ({batch}, 3, 3), one matrix per image; got {shape}")
    if batch == 0:
        return images
    dtype = _work_dtype(images.dtype)
    x = images.to(dtype)
    g = inverse.to(device=images.device, dtype=dtype)
    ones = torch.ones(batch, dtype=dtype, device=images.device)
    cx, cy = (width - 1) / 2, (height - 1) / 2

    # Margins: how far the output's corners reach beyond the input, plus the filter's support.
    corners = torch.tensor(
        [[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], dtype=dtype, device=x.device
    )
    reach = (g @ corners)[:, :2, :].transpose(0, 1).reshape(2, -1)  # [x or y, batch * corner]
    need = torch.cat([-reach, reach]).amax(dim=1)  # [left, top, right, bottom] extent from the centre
    need = need + torch.tensor([cx, cy, cx, cy], dtype=dtype, device=x.device).neg() + 2 * _FILTER_PAD
    limit = torch.tensor([width - 1, height - 1] * 2, dtype=dtype, device=x.device)
    left, top, right, bottom = (int(v) for v in need.clamp_min(0).minimum(limit).ceil().tolist())
    x = F.pad(x, (left, right, top, bottom), mode="reflect")
    g = _translate((left - right) / 2, (top - bottom) / 2, ones) @ g  # centre of the padded image

    # To the 2x grid: upsampled centred coordinates are 2 p - 1/2 (the filter's centre is tap 5).
    x = _upsample2x(x)
    g = _scale(2, 2, ones) @ g @ _scale(0.5, 0.5, ones)
    g = _translate(-0.5, -0.5, ones) @ g @ _translate(0.5, 0.5, ones)

    # grid_sample's normalised coordinates (align_corners=False): centred pixels times 2 / size.
    out_h, out_w = 2 * (height + 2 * _FILTER_PAD), 2 * (width + 2 * _FILTER_PAD)
    theta = _scale(2 / x.shape[3], 2 / x.shape[2], ones) @ g @ _scale(out_w / 2, out_h / 2, ones)
    grid = F.affine_grid(theta[:, :2, :], [batch, channels, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = _downsample2x(x)[:, :, _FILTER_PAD:-_FILTER_PAD, _FILTER_PAD:-_FILTER_PAD]
    return x.to(images.dtype)
