r"""EDM's non-leaking augmentation, as the official SoFlow CIFAR-10 run uses it.

References: Karras et al., "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020,
the ADA pipeline: geometric transforms executed on a 2x oversampled, reflect-padded image with a
wavelet low-pass filter, so that no zero border or aliasing leaks into the augmented images); Karras
et al., "Elucidating the Design Space of Diffusion-Based Generative Models" (NeurIPS 2022, Appendix
F.2: the augmentation as a regulariser for diffusion models, with the network conditioned on the
augmentation parameters and given zeros at sampling time, so the generated distribution is the
non-augmented one).

The official CIFAR-10 run (zlab-princeton/SoFlow `train.py`) uses probability $p = 0.12$ with an
x-flip (multiplier $10^8$: every image is flipped with probability 1/2), isotropic scaling,
anisotropic scaling and fractional translation (multiplier 1 each, so each is applied with
probability 0.12), and feeds the 6 augmentation labels to the UNet:

| label | content | when not applied |
|---|---|---|
| 0 | x-flip $\in \{0, 1\}$ | 0 |
| 1 | isotropic scale $w_s$: scale factor $2^{0.2\,w_s}$, $w_s \sim \mathcal N(0, 1)$ | 0 |
| 2, 3 | anisotropic $w_a \cos r$, $w_a \sin r$: factor $2^{0.2\,w_a}$ along the axis at angle $r$, $1/2^{0.2\,w_a}$ across it; $r \sim \mathcal U[-\pi, \pi)$ with probability 1/2, else 0 | 0 |
| 4, 5 | translation $w_x$, $w_y \sim \mathcal N(0, 1)$: a shift of $0.125\,w_x W$, $0.125\,w_y H$ pixels | 0 |

The random numbers are drawn in the order of EDM's pipeline, so that with the same seed (its global
generator, our `generator=`) both produce the same parameters; the transforms run in float32 (float64
for float64 images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENT_DIM", "AugmentOutput", "AugmentParams", "AugmentPipe", "warp_affine"]

AUGMENT_DIM = 6
"""Number of augmentation labels (x-flip 1, scale 1, anisotropic 2, translation 2)."""

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


@dataclass(frozen=True)
class AugmentParams:
    r"""The per-image parameters of one draw of [`AugmentPipe`][soflow_toolkit.augment.AugmentPipe] (zeros where not applied).

    Args:
        xflip: `(B,)` 1 where the image is mirrored left-right, else 0.
        scale: `(B,)` $w_s$; the image is scaled by $2^{\sigma_s w_s}$.
        aniso: `(B,)` $w_a$; scaled by $2^{\sigma_a w_a}$ along the axis at angle `aniso_angle`, by the
            reciprocal across it.
        aniso_angle: `(B,)` $r$ in radians, in $[-\pi, \pi)$ (0 when the frame is not rotated).
        translate: `(B, 2)` $(w_x, w_y)$; shifted by $(\sigma_t w_x W, \sigma_t w_y H)$ pixels.

    Examples:
        >>> import torch
        >>> pipe = AugmentPipe(p=1.0)
        >>> params = pipe.sample_params(4, generator=torch.Generator().manual_seed(0))
        >>> images = torch.zeros(4, 3, 8, 8)
        >>> masks = torch.ones(4, 1, 8, 8)
        >>> same_draw = pipe.apply(images, params), pipe.apply(masks, params)  # one draw, two tensors
        >>> params.labels().shape
        torch.Size([4, 6])
    """

    xflip: Tensor
    scale: Tensor
    aniso: Tensor
    aniso_angle: Tensor
    translate: Tensor

    def labels(self) -> Tensor:
        r"""The augmentation labels the UNet receives, `(B, 6)`: $[f, w_s, w_a\cos r, w_a\sin r, w_x, w_y]$.

        The two anisotropic labels do not determine the transform: $(w_a, r)$ and $(-w_a, r + \pi)$
        give the same labels and reciprocal scalings along the same axis. They are reproduced as the
        official pipeline computes them, since the official UNet is trained on them.
        """
        return torch.stack(
            [
                self.xflip,
                self.scale,
                self.aniso * self.aniso_angle.cos(),
                self.aniso * self.aniso_angle.sin(),
                self.translate[:, 0],
                self.translate[:, 1],
            ],
            dim=1,
        )


class AugmentOutput(NamedTuple):
    """Augmented images `(B, C, H, W)` and their labels `(B, 6)`, as returned by [`AugmentPipe`][soflow_toolkit.augment.AugmentPipe].

    Examples:
        >>> import torch
        >>> images, labels = AugmentPipe()(torch.zeros(2, 3, 8, 8))
        >>> labels.shape
        torch.Size([2, 6])
    """

    images: Tensor
    labels: Tensor


def _check_nonnegative(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"AugmentPipe.{name} must be a finite number >= 0; got {value!r}")


@dataclass(frozen=True)
class AugmentPipe:
    r"""EDM's non-leaking augmentation with the transforms of the official CIFAR-10 run.

    The defaults are the official settings. Each transform is applied to an image independently with
    probability $\min(1, p \cdot m)$ for its multiplier $m$: the x-flip then mirrors with
    probability 1/2; the geometric transforms compose, as a map from input to output, scale, then
    anisotropic scaling, then translation, executed in one resampling by [`warp_affine`][soflow_toolkit.augment.warp_affine]. Images
    that draw no geometric transform are returned unchanged (bit-exact), and so is every image at
    $p = 0$. Colour transforms (not used by the official run) are not implemented.

    Args:
        p: overall probability $p \in [0, 1]$ (official: 0.12).
        xflip: x-flip multiplier (official: $10^8$, i.e. a random flip for every image); 0 disables.
        scale: isotropic scaling multiplier; 0 disables.
        aniso: anisotropic scaling multiplier; 0 disables.
        translate: fractional translation multiplier; 0 disables.
        scale_std: $\sigma_s$, the standard deviation of $\log_2$ of the scale factor.
        aniso_std: $\sigma_a$, the same for the anisotropic factor.
        aniso_rotate_prob: probability that the anisotropic axis is at a random angle (else along x).
        translate_std: $\sigma_t$, the standard deviation of the shift, as a fraction of the image size.

    Raises:
        ValueError: if a setting is negative or not finite, or a probability exceeds 1.

    Examples:
        >>> import torch
        >>> augment = AugmentPipe()
        >>> images = torch.rand(8, 3, 32, 32) * 2 - 1
        >>> out = augment(images, generator=torch.Generator().manual_seed(0))
        >>> out.images.shape, out.labels.shape
        (torch.Size([8, 3, 32, 32]), torch.Size([8, 6]))
        >>> torch.equal(AugmentPipe(p=0)(images).images, images)
        True
    """

    p: float = 0.12
    xflip: float = 1e8
    scale: float = 1.0
    aniso: float = 1.0
    translate: float = 1.0
    scale_std: float = 0.2
    aniso_std: float = 0.2
    aniso_rotate_prob: float = 0.5
    translate_std: float = 0.125

    def __post_init__(self) -> None:
        for name in (
            "p",
            "xflip",
            "scale",
            "aniso",
            "translate",
            "scale_std",
            "aniso_std",
            "aniso_rotate_prob",
            "translate_std",
        ):
            _check_nonnegative(name, getattr(self, name))
        for name in ("p", "aniso_rotate_prob"):
            if getattr(self, name) > 1:
                raise ValueError(
                    f"AugmentPipe.{name} is a probability and must lie in [0, 1]; got {getattr(self, name)}"
                )

    def sample_params(
        self,
        batch: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> AugmentParams:
        """Draw the parameters of `batch` images (in EDM's order of random draws).

        Args:
            batch: number of images.
            generator: random generator on `device` (default: torch's global one).
            device: where to draw (default: the generator's device, else CPU).
            dtype: floating dtype of the draws and the parameters (float32, or float64 for float64
                images as in [`__call__`][soflow_toolkit.augment.AugmentPipe.__call__]).

        Returns:
            [`AugmentParams`][soflow_toolkit.augment.AugmentParams] with `(B,)` (and `(B, 2)`) tensors.

        Raises:
            ValueError: if `batch` < 0.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ValueError(f"batch must be an int >= 0; got {batch!r}")
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        zeros = torch.zeros(batch, dtype=dtype, device=device)

        def gate(multiplier: float, values: Tensor, shape: tuple[int, ...] = (batch,)) -> Tensor:
            applied = torch.rand(shape, dtype=dtype, generator=generator, device=device) < multiplier * self.p
            return torch.where(applied, values, torch.zeros_like(values))

        xflip, scale, aniso, angle, translate = (
            zeros,
            zeros,
            zeros,
            zeros,
            torch.zeros(2, batch, dtype=dtype, device=device),
        )
        if self.xflip > 0:
            xflip = gate(self.xflip, torch.randint(2, (batch,), generator=generator, device=device).to(dtype))
        if self.scale > 0:
            scale = gate(self.scale, torch.randn(batch, dtype=dtype, generator=generator, device=device))
        if self.aniso > 0:
            w = torch.randn(batch, dtype=dtype, generator=generator, device=device)
            r = (torch.rand(batch, dtype=dtype, generator=generator, device=device) * 2 - 1) * math.pi
            aniso = gate(self.aniso, w)
            rotated = (
                torch.rand(batch, dtype=dtype, generator=generator, device=device) < self.aniso_rotate_prob
            )
            angle = torch.where(rotated, r, torch.zeros_like(r))
        if self.translate > 0:
            translate = gate(
                self.translate,
                torch.randn(2, batch, dtype=dtype, generator=generator, device=device),
                (1, batch),
            )
        return AugmentParams(xflip, scale, aniso, angle, translate.T.contiguous())

    def inverse_matrices(self, params: AugmentParams, height: int, width: int) -> Tensor:
        r"""The inverse maps $G = S^{-1} A^{-1} T^{-1}$ of the geometric transforms, `(B, 3, 3)`.

        $S = \operatorname{diag}(s, s)$ with $s = 2^{\sigma_s w_s}$;
        $A = R(-r)\operatorname{diag}(a, 1/a)R(r)$ with $a = 2^{\sigma_a w_a}$ and $R$ the rotation
        matrix; $T$ the shift by $(\sigma_t w_x W, \sigma_t w_y H)$; in the centred pixel coordinates
        of [`warp_affine`][soflow_toolkit.augment.warp_affine].
        """
        like = params.scale
        s = torch.exp2(params.scale * self.scale_std)
        a = torch.exp2(params.aniso * self.aniso_std)
        r = params.aniso_angle
        shift = (
            params.translate
            * torch.tensor([width, height], dtype=like.dtype, device=like.device)
            * self.translate_std
        )
        g = _scale(1 / s, 1 / s, like)
        g = g @ _rotate(-r, like) @ _scale(1 / a, a, like) @ _rotate(r, like)
        return g @ _translate(-shift[:, 0], -shift[:, 1], like)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Apply drawn parameters to images `(B, C, H, W)`: the x-flip, then the geometric transforms.

        Deterministic, so the same draw can be applied to several tensors (e.g. images and masks).
        """
        _check_images(images)
        if params.xflip.shape != (images.shape[0],):
            raise ValueError(
                f"params are for {params.xflip.shape[0]} images; got a batch of {images.shape[0]}"
            )
        flip = params.xflip.to(images.device).bool().reshape(-1, 1, 1, 1)
        out = torch.where(flip, images.flip(-1), images)
        identity = (params.scale == 0) & (params.aniso == 0) & (params.translate == 0).all(dim=1)
        if bool(identity.all()):
            return out
        inverse = self.inverse_matrices(params, images.shape[2], images.shape[3])
        warped = warp_affine(out, inverse)
        return torch.where(identity.to(images.device).reshape(-1, 1, 1, 1), out, warped)

    def __call__(self, images: Tensor, *, generator: torch.Generator | None = None) -> AugmentOutput:
        """Augment a batch `(B, C, H, W)` with fresh parameters; returns the images and labels `(B, 6)`.

        Random numbers come from `generator` (on the images' device; default: torch's global one).
        The labels are float32 (float64 for float64 images). At sampling time the network gets
        zero labels, `torch.zeros(B, AUGMENT_DIM)`: no augmentation.
        """
        _check_images(images)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
        if generator is not None and generator.device.type != images.device.type:
            raise ValueError(
                f"the generator is on {generator.device} but the images are on {images.device}; "
                "draw with a generator on the images' device"
            )
        params = self.sample_params(
            images.shape[0], generator=generator, device=images.device, dtype=_work_dtype(images.dtype)
        )
        return AugmentOutput(self.apply(images, params), params.labels())
