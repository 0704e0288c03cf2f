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

from .pipe import AUGMENT_DIM, AugmentOutput, AugmentParams, AugmentPipe
from .warp import warp_affine

__all__ = ["AUGMENT_DIM", "AugmentOutput", "AugmentParams", "AugmentPipe", "warp_affine"]
