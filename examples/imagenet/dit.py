r"""A Diffusion Transformer (DiT) backbone for SoFlow, written from scratch.

Architecture of Peebles & Xie, "Scalable Diffusion Models with Transformers" (ICCV 2023), as used by
MeanFlow and SoFlow for latent ImageNet 256:

- patch embedding of the `(C, H, W)` latent into `(H/p)(W/p)` tokens plus fixed 2-D sin-cos positions;
- blocks with adaLN-Zero conditioning (shift, scale and a zero-initialised gate for the attention and
  the MLP branch), attention through `torch.nn.functional.scaled_dot_product_attention` (fused kernels,
  which SoFlow can use because it needs no JVP);
- the conditioning vector $c = \mathrm{emb}_t(t) + \mathrm{emb}_{\Delta}(t - s) + \mathrm{emb}_y(y)$:
  two sinusoidal timestep embedders (for $t$ and for $t - s$, as SoFlow's backbones do) and a class
  embedding with one extra row, index `num_classes`, for the null class of classifier-free guidance;
- a final adaLN layer and linear projection, zero-initialised, so the network outputs exactly 0 at
  initialisation and $f_\theta(x_t, t, s) = x_t$.

Call it as `dit(x, t, s, y)` with `x` `(B, C, H, W)`, `t`, `s` `(B,)` in [0, 1] and labels `y` `(B,)`
long; it returns `(B, C, H, W)` in `x`'s dtype. Sizes (patch, hidden, depth, heads) follow the paper:
B/4, B/2, M/2, L/2, XL/2, plus S/2 and a tiny T/4 for smoke tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class DiTSize:
    """Shape of a DiT: patch size, hidden width, number of blocks, attention heads."""

    patch: int
    hidden: int
    depth: int
    heads: int


DIT_SIZES: dict[str, DiTSize] = {
    "XL/2": DiTSize(2, 1152, 28, 16),
    "L/2": DiTSize(2, 1024, 24, 16),
    "M/2": DiTSize(2, 1024, 16, 16),
    "B/2": DiTSize(2, 768, 12, 12),
    "B/4": DiTSize(4, 768, 12, 12),
    "S/2": DiTSize(2, 384, 12, 6),
    "T/4": DiTSize(4, 64, 2, 4),  # tiny, for smoke tests only
}


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation of tokens `(B, N, D)` by per-sample `(B, D)` shift and scale."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    r"""`(B,)` scalars -> `(B, dim)` features $[\cos(v\,\omega_k), \sin(v\,\omega_k)]$, $\omega_k = P^{-k/(dim/2)}$."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    angles = values.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimeEmbedder(nn.Module):
    """A scalar time -> sinusoidal features of `time_scale * value` -> 2-layer MLP -> `(B, hidden)`.

    Times live in [0, 1]; `time_scale` (1000, as DiT's integer timesteps) spreads them over the
    frequencies of the sinusoidal features.
    """

    def __init__(self, hidden: int, *, freq_dim: int = 256, time_scale: float = 1000.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_scale = time_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, values: Tensor) -> Tensor:
        features = sinusoidal_embedding(values * self.time_scale, self.freq_dim)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class Attention(nn.Module):
    """Multi-head self-attention over tokens `(B, N, D)` with SDPA (fused kernels when available)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, D/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero: $x \\mathrel{+}= g \\odot \\mathrm{branch}(\\mathrm{modulate}(\\mathrm{LN}(x)))$."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden)
        )
        self.ada_ln = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.ada_ln(c).chunk(6, dim=1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a linear map from tokens to `patch * patch * channels` values."""

    def __init__(self, hidden: int, patch: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * channels)
        self.ada_ln = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada_ln(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


def sincos_pos_embed(hidden: int, grid: int) -> Tensor:
    """Fixed 2-D sin-cos positions `(grid * grid, hidden)`: half the features encode rows, half columns."""
    if hidden % 4:
        raise ValueError(f"hidden size must be divisible by 4 for 2-D sin-cos positions; got {hidden}")
    quarter = hidden // 4
    omega = 1.0 / 10_000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class DiT(nn.Module):
    """Class-conditional DiT taking $(x, t, s, y)$, for SoFlow's solution function.

    Args:
        size: a key of :data:`DIT_SIZES` ("B/4", "B/2", "M/2", "L/2", "XL/2", "S/2", "T/4").
        input_size: spatial size of the latent (32 for 256-px images and the SD-VAE).
        in_channels: latent channels (4 for the SD-VAE); the output has as many.
        num_classes: number of classes; index `num_classes` is the null class.
        mlp_ratio: MLP width / hidden width.
        time_scale: factor applied to times in [0, 1] before the sinusoidal features.
    """

    def __init__(
        self,
        size: str = "B/4",
        *,
        input_size: int = 32,
        in_channels: int = 4,
        num_classes: int = 1000,
        mlp_ratio: float = 4.0,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        if size not in DIT_SIZES:
            raise ValueError(f"unknown DiT size {size!r}; choose one of {sorted(DIT_SIZES)}")
        cfg = DIT_SIZES[size]
        if input_size % cfg.patch:
            raise ValueError(f"input_size {input_size} is not divisible by the patch size {cfg.patch}")
        self.size = size
        self.patch = cfg.patch
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.grid = input_size // cfg.patch
        self.patch_embed = nn.Conv2d(in_channels, cfg.hidden, kernel_size=cfg.patch, stride=cfg.patch)
        self.register_buffer("pos_embed", sincos_pos_embed(cfg.hidden, self.grid)[None], persistent=False)
        self.t_embed = TimeEmbedder(cfg.hidden, time_scale=time_scale)
        self.gap_embed = TimeEmbedder(cfg.hidden, time_scale=time_scale)  # embeds t - s
        self.y_embed = nn.Embedding(num_classes + 1, cfg.hidden)  # row num_classes: the null class
        self.blocks = nn.ModuleList(DiTBlock(cfg.hidden, cfg.heads, mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.hidden, cfg.patch, in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiT's initialisation: Xavier linears, N(0, 0.02) embeddings, zero adaLN and output layers."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        weight = self.patch_embed.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.y_embed.weight, std=0.02)
        for embedder in (self.t_embed, self.gap_embed):
            nn.init.normal_(embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada_ln[1].weight)
            nn.init.zeros_(block.ada_ln[1].bias)
        for layer in (self.final.ada_ln[1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, tokens: Tensor) -> Tensor:
        """`(B, N, p*p*C)` -> `(B, C, H, W)`."""
        b, p, c, g = tokens.shape[0], self.patch, self.in_channels, self.grid
        x = tokens.reshape(b, g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, c, g * p, g * p)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, D)
        c = self.t_embed(t) + self.gap_embed(t - s) + self.y_embed(y)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.unpatchify(self.final(tokens, c)).to(x.dtype)
