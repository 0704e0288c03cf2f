r"""A DDPM++-style convolutional UNet for SoFlow on 32x32 images, written from scratch.

Residual blocks with GroupNorm, SiLU, dropout and a scale-shift time conditioning; self-attention
(through `scaled_dot_product_attention`) at the 16x16 resolution; skips scaled by $1/\sqrt 2$; the
conditioning vector is $\mathrm{emb}_t(t) + \mathrm{emb}_{\Delta}(t - s)$ (two sinusoidal embedders, as
SoFlow's backbones have). The last convolution and every residual branch's last layer start at zero, so
the network outputs 0 at initialisation ($f_\theta(x_t, t, s) = x_t$).

The default size (128 channels, multipliers (2, 2, 2), 4 blocks per level, dropout 0.3) is close to
the DDPM++/NCSN++ networks of EDM in width and depth; it is not the official SoFlow backbone.
Call it as `unet(x, t, s)` with `x` `(B, C, H, W)` and `t`, `s` `(B,)` in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SKIP_SCALE = 1 / math.sqrt(2)
ARCHITECTURE = ("channels", "channel_mult", "num_blocks", "attn_resolutions", "dropout")
"""The keys of a run's config that describe the UNet (see :meth:`UNet.from_config`)."""


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels, eps=1e-6)


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    r"""`(B,)` -> `(B, dim)`: $[\cos(v\,\omega_k), \sin(v\,\omega_k)]$ with $\omega_k = P^{-k/(dim/2)}$."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    angles = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimeEmbedding(nn.Module):
    """Time in [0, 1] -> sinusoidal features of `time_scale * t` -> 2-layer MLP."""

    def __init__(self, freq_dim: int, dim: int, time_scale: float = 1000.0) -> None:
        super().__init__()
        self.freq_dim, self.time_scale = freq_dim, time_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        features = sinusoidal_embedding(t * self.time_scale, self.freq_dim)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class ResBlock(nn.Module):
    """GN-SiLU-conv, scale-shift by the embedding, GN-SiLU-dropout-conv (zero init), skip; times 1/sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return (self.skip(x) + h) * SKIP_SCALE


class AttnBlock(nn.Module):
    """Multi-head self-attention over the `H * W` positions; output projection starts at zero."""

    def __init__(self, channels: int, head_dim: int = 64) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * SKIP_SCALE


class UNet(nn.Module):
    """UNet $F_\\theta(x, t, s)$ for 32x32 images with a $(t - s)$ embedding.

    Args:
        in_channels: image channels (the output has as many).
        channels: base width.
        channel_mult: width multiplier per resolution level (one level per entry; each but the last
            halves the resolution).
        num_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: resolutions with self-attention after each block.
        dropout: dropout rate inside the residual blocks.
        image_size: input height and width.
        time_scale: factor applied to times in [0, 1] before the sinusoidal features.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (2, 2, 2),
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.3,
        image_size: int = 32,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        emb_dim = 4 * channels
        self.t_embed = TimeEmbedding(channels, emb_dim, time_scale)
        self.gap_embed = TimeEmbedding(channels, emb_dim, time_scale)  # embeds t - s
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur, res = [channels], channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_blocks):
                self.down.append(self._block(cur, channels * mult, emb_dim, dropout, res in attn_resolutions))
                cur = channels * mult
                skips.append(cur)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                res //= 2
                skips.append(cur)
        self.mid = nn.ModuleList(
            [ResBlock(cur, cur, emb_dim, dropout), AttnBlock(cur), ResBlock(cur, cur, emb_dim, dropout)]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_blocks + 1):
                self.up.append(
                    self._block(cur + skips.pop(), channels * mult, emb_dim, dropout, res in attn_resolutions)
                )
                cur = channels * mult
            if level > 0:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cur, cur, 3, padding=1)
                    )
                )
                res *= 2
        self.norm_out = group_norm(cur)
        self.conv_out = nn.Conv2d(cur, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> UNet:
        """The UNet described by the :data:`ARCHITECTURE` keys of a run's config."""
        return cls(**{key: config[key] for key in ARCHITECTURE})

    @staticmethod
    def _block(in_ch: int, out_ch: int, emb_dim: int, dropout: float, attn: bool) -> nn.ModuleList:
        layers: list[nn.Module] = [ResBlock(in_ch, out_ch, emb_dim, dropout)]
        if attn:
            layers.append(AttnBlock(out_ch))
        return nn.ModuleList(layers)

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        emb = self.t_embed(t) + self.gap_embed(t - s)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = self._run(layer, h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(layer, h, emb)
        return self.conv_out(F.silu(self.norm_out(h))).to(x.dtype)

    @staticmethod
    def _run(layer: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
        if isinstance(layer, nn.ModuleList):  # a residual block, possibly followed by attention
            h = layer[0](h, emb)
            for extra in layer[1:]:
                h = extra(h)
            return h
        return layer(h)  # down- or upsampling
