r"""Small backbones for the benchmarks, written from scratch: a DiT-style transformer and a conv UNet.

Both follow the toolkit's backbone convention `F(x, t, s, cond=None)` (docs: method, the solution function): `x` is `(B, C, H, W)`,
`t` and `s` are `(B,)` times, and the output has `x`'s shape. Like the official SoFlow backbones they
embed $t$ and $t - s$ with two separate timestep embedders whose outputs are added to the class
embedding. `cond` is a `(B,)` tensor of class labels; `None` (or the label `num_classes`) is the null
class used for classifier-free guidance.

- :class:`TinyDiT`: patchify, transformer blocks with adaLN modulation (Peebles & Xie, "Scalable
  Diffusion Models with Transformers", arXiv 2212.09748) and attention through
  `torch.nn.functional.scaled_dot_product_attention`, so the fused kernels are used when available.
- :class:`TinyUNet`: residual conv blocks with GroupNorm and additive embedding conditioning, one
  skip connection per block (Ronneberger et al., arXiv 1505.04597; Ho et al., arXiv 2006.11239),
  optional dropout.

The sizes are meant for CPU benchmarks, not for quality.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["TimestepEmbedder", "TinyDiT", "TinyUNet", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class TimestepEmbedder(nn.Module):
    r"""Sinusoidal features of $1000\,t$ followed by a two-layer MLP: `(B,)` -> `(B, dim)`."""

    def __init__(self, dim: int, frequencies: int = 128) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.frequencies // 2
        scale = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
        angles = 1000.0 * t[:, None] * scale[None, :]  # (B, half)
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class _ConditionEmbedding(nn.Module):
    """Sum of the t embedding, the (t - s) embedding and the class embedding (null class = num_classes)."""

    def __init__(self, dim: int, num_classes: int | None) -> None:
        super().__init__()
        self.t_embed = TimestepEmbedder(dim)
        self.gap_embed = TimestepEmbedder(dim)
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, dim) if num_classes is not None else None

    def forward(self, t: Tensor, s: Tensor, cond: Tensor | None) -> Tensor:
        emb = self.t_embed(t) + self.gap_embed(t - s)
        if self.label_embed is not None and self.num_classes is not None:
            if cond is None:
                cond = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            emb = emb + self.label_embed(cond)
        elif cond is not None:
            raise ValueError("this backbone is unconditional (num_classes=None) but got a condition")
        return emb


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class _DiTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if hidden % heads != 0:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        batch, tokens, hidden = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(emb).chunk(6, dim=1)
        h = _modulate(self.norm1(x), shift1, scale1)
        # (B, N, 3, heads, head_dim) -> 3 x (B, heads, N, head_dim)
        q, k, v = (
            self.qkv(h).reshape(batch, tokens, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        )
        attn = F.scaled_dot_product_attention(q, k, v)
        attn = attn.transpose(1, 2).reshape(batch, tokens, hidden)
        x = x + gate1[:, None, :] * self.proj(attn)
        return x + gate2[:, None, :] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class TinyDiT(nn.Module):
    """A small DiT-style transformer with a second timestep embedder for $t - s$.

    Args:
        image_size: H = W of the input.
        channels: C of the input.
        patch: patch size (image_size must be divisible by it).
        hidden: token width.
        depth: number of transformer blocks.
        heads: attention heads.
        mlp_ratio: MLP width / hidden.
        num_classes: number of classes (the null class is `num_classes`), or None for unconditional.
    """

    def __init__(
        self,
        image_size: int = 16,
        channels: int = 4,
        patch: int = 2,
        hidden: int = 192,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int | None = 10,
    ) -> None:
        super().__init__()
        if image_size % patch != 0:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch ({patch})")
        self.channels, self.patch, self.grid = channels, patch, image_size // patch
        self.patchify = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, self.grid * self.grid, hidden) * 0.02)
        self.embed = _ConditionEmbedding(hidden, num_classes)
        self.blocks = nn.ModuleList(_DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.final = nn.Linear(hidden, patch * patch * channels)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, cond: Tensor | None = None) -> Tensor:
        batch = x.shape[0]
        emb = self.embed(t, s, cond)
        h = self.patchify(x).flatten(2).transpose(1, 2) + self.pos  # (B, N, hidden)
        for block in self.blocks:
            h = block(h, emb)
        shift, scale = self.final_ada(emb).chunk(2, dim=1)
        h = self.final(_modulate(self.final_norm(h), shift, scale))  # (B, N, p*p*C)
        p, g = self.patch, self.grid
        h = h.reshape(batch, g, g, p, p, self.channels).permute(0, 5, 1, 3, 2, 4)  # (B, C, g, p, g, p)
        return h.reshape(batch, self.channels, g * p, g * p)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class TinyUNet(nn.Module):
    """A small conv UNet: one residual block per level going down, one per skip going up.

    Args:
        channels: C of the input.
        base: channels of the first level.
        mults: channel multipliers per level; the resolution halves between levels.
        num_classes: number of classes (the null class is `num_classes`), or None for unconditional.
        dropout: dropout rate inside the residual blocks.
    """

    def __init__(
        self,
        channels: int = 3,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2),
        num_classes: int | None = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        emb_dim = 4 * base
        self.embed = _ConditionEmbedding(emb_dim, num_classes)
        self.stem = nn.Conv2d(channels, base, 3, padding=1)
        widths = [base * m for m in mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = base
        for i, width in enumerate(widths):
            self.down.append(_ResBlock(cin, width, emb_dim, dropout))
            cin = width
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = _ResBlock(cin, cin, emb_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            self.up.append(_ResBlock(cin + width, width, emb_dim, dropout))
            cin = width
            self.upsample.append(nn.Conv2d(width, width, 3, padding=1) if i > 0 else nn.Identity())
        self.out_norm = nn.GroupNorm(min(8, cin), cin)
        self.out = nn.Conv2d(cin, channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.embed(t, s, cond)
        h = self.stem(x)
        skips = []
        for block, down in zip(self.down, self.downsample, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.middle(h, emb)
        for block, up in zip(self.up, self.upsample, strict=True):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))
