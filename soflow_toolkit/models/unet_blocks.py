r"""The building blocks of the DDPM++ UNet: FIR resampling and the residual block with optional attention."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UNetBlock"]

_SKIP_SCALE = math.sqrt(0.5)


def _group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups, but at least 4 channels per group; eps 1e-6 as in DDPM++.
    return nn.GroupNorm(min(32, channels // 4), channels, eps=1e-6)


class Resample(nn.Module):
    r"""Up- or downsampling by 2 with a fixed separable FIR filter (depthwise, any channel count).

    The 2-D kernel is $k k^\top / (\sum k)^2$ for the 1-D taps $k$ (e.g. `(1, 3, 3, 1)`): a strided
    convolution for `"down"`, a transposed one with the kernel times 4 for `"up"` (so a constant image
    stays constant), padding `(len(k) - 1) // 2`.
    """

    kernel: Tensor

    def __init__(self, taps: tuple[int, ...], mode: Literal["up", "down"]) -> None:
        super().__init__()
        if mode not in ("up", "down"):
            raise ValueError(f"mode must be 'up' or 'down'; got {mode!r}")
        self.mode = mode
        f = torch.tensor(taps, dtype=torch.float32)
        # A constant of the config, not state: recomputed on construction, absent from the state dict.
        self.register_buffer("kernel", torch.outer(f, f)[None, None] / f.sum().square(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        pad = (self.kernel.shape[-1] - 1) // 2
        if self.mode == "down":
            weight = self.kernel.to(x.dtype).expand(channels, 1, -1, -1)
            return F.conv2d(x, weight, stride=2, padding=pad, groups=channels)
        weight = (4 * self.kernel).to(x.dtype).expand(channels, 1, -1, -1)
        return F.conv_transpose2d(x, weight, stride=2, padding=pad, groups=channels)


class UNetBlock(nn.Module):
    r"""DDPM++ residual block with optional resampling and self-attention.

    $h = \mathrm{conv}_1(\mathrm{resample}(\mathrm{SiLU}(\mathrm{GN}_1(x))))$,
    $h = \mathrm{conv}_2(\mathrm{dropout}(\mathrm{SiLU}(\mathrm{GN}_2(h + W e))))$,
    $x' = (h + \mathrm{skip}(x)) / \sqrt 2$ with $\mathrm{skip}$ = resample then a 1×1 convolution when
    the width or the resolution changes (the identity otherwise); with attention,
    $x'' = (x' + \mathrm{proj}(\mathrm{Attn}(\mathrm{GN}_3(x')))) / \sqrt 2$, where the 1×1 `qkv`
    convolution gives, per head, channels interleaved as $(c, \{q, k, v\})$.

    Examples:
        >>> import torch
        >>> block = UNetBlock(8, 16, 32, resample="down", attention=True, num_heads=2)
        >>> block(torch.randn(2, 8, 16, 16), torch.randn(2, 32)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        resample: Literal["up", "down"] | None = None,
        attention: bool = False,
        num_heads: int = 1,
        dropout: float = 0.0,
        resample_filter: tuple[int, ...] = (1, 1),
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_heads = num_heads if attention else 0
        self.norm1 = _group_norm(in_channels)
        self.resample = Resample(resample_filter, resample) if resample is not None else None
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_channels, out_channels)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        needs_skip = in_channels != out_channels or resample is not None
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if needs_skip else None
        if attention:
            self.attn_norm = _group_norm(out_channels)
            self.qkv = nn.Conv2d(out_channels, 3 * out_channels, 1)
            self.attn_proj = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        r"""One residual block: $x \leftarrow (\text{res}(x, e) + \text{skip}(x))/\sqrt 2$, then attention.

        Args:
            x: feature maps `(B, in_channels, H, W)`.
            emb: the time embedding `(B, emb_channels)`.

        Returns:
            `(B, out_channels, H', W')`, with $H' = H/2$ or $2H$ when the block resamples.
        """
        h = F.silu(self.norm1(x))
        skip = x
        if self.resample is not None:
            h, skip = self.resample(h), self.resample(skip)
        h = self.conv1(h)
        h = F.silu(self.norm2(h + self.emb_proj(emb)[:, :, None, None]))
        h = self.conv2(self.dropout(h))
        if self.skip is not None:
            skip = self.skip(skip)
        x = (h + skip) * _SKIP_SCALE
        if self.num_heads:
            x = (x + self.attn_proj(self._attention(x))) * _SKIP_SCALE
        return x

    def _attention(self, x: Tensor) -> Tensor:
        b, c, height, width = x.shape
        heads = self.num_heads
        qkv = self.qkv(self.attn_norm(x)).reshape(b, heads, c // heads, 3, height * width)
        q, k, v = (qkv[:, :, :, i].transpose(-1, -2) for i in range(3))  # each (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(-1, -2).reshape(b, c, height, width)
