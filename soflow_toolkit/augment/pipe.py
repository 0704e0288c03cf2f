r"""EDM's augmentation pipe: the per-image parameters, their labels and the augmented images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .warp import _check_images, _rotate, _scale, _translate, _work_dtype, warp_affine

AUGMENT_DIM = 6
"""Number of augmentation labels (x-flip 1, scale 1, anisotropic 2, translation 2)."""


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
