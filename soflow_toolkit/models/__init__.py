r"""The paper's backbones, written from their architecture: SoFlow's DiT and its CIFAR-10 UNet.

Both follow the backbone contract of [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper],
`backbone(x, t, s[, cond])` returning a tensor of `x`'s shape, and are architecture-identical to the
networks of the official SoFlow code (Luo, Yuan & Liu, arXiv 2512.15657): load the official
checkpoints with [`soflow_toolkit.pretrained.load_official`][soflow_toolkit.pretrained.load_official].

- [`DiT`][soflow_toolkit.models.DiT] ([`DiTConfig`][soflow_toolkit.models.DiTConfig], sizes [`DIT_SIZES`][soflow_toolkit.models.DIT_SIZES]): the ImageNet-256 latent transformer.
- [`UNet`][soflow_toolkit.models.UNet] ([`UNetConfig`][soflow_toolkit.models.UNetConfig]): EDM's DDPM++ UNet as the official CIFAR-10 run configures it.
- [`sinusoidal_embedding`][soflow_toolkit.models.sinusoidal_embedding] and [`grid_positions_2d`][soflow_toolkit.models.grid_positions_2d]: the time and position features.
"""

from __future__ import annotations

from .dit import DIT_SIZES, DiT, DiTConfig
from .embeddings import grid_positions_2d, sinusoidal_embedding
from .unet import UNet, UNetBlock, UNetConfig

__all__ = [
    "DIT_SIZES",
    "DiT",
    "DiTConfig",
    "UNet",
    "UNetBlock",
    "UNetConfig",
    "grid_positions_2d",
    "sinusoidal_embedding",
]
