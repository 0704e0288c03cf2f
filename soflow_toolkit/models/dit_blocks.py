r"""The building blocks of the DiT: time embedder, attention, MLP, the adaLN-Zero block, the final layer."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import sinusoidal_embedding


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: tokens `(B, N, D)` times `1 + scale` plus `shift`, both `(B, D)` per sample."""
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    r"""Scalar times `(B,)` -> $\mathrm{fc}_2(\mathrm{SiLU}(\mathrm{fc}_1(\phi(t))))$, `(B, D)`.

    $\phi$ is [`sinusoidal_embedding`][soflow_toolkit.models.sinusoidal_embedding] with `frequency_dim` features of the
    raw value (DiT's timestep features, here fed times in $[0, 1]$).
    """

    def __init__(self, hidden_size: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.fc1 = nn.Linear(frequency_dim, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, values: Tensor) -> Tensor:
        features = sinusoidal_embedding(values, self.frequency_dim).to(self.fc1.weight.dtype)
        out: Tensor = self.fc2(F.silu(self.fc1(features)))
        return out


class Attention(nn.Module):
    """Multi-head self-attention over tokens `(B, N, D)`, through `scaled_dot_product_attention`.

    One linear map gives $[q \\| k \\| v]$ (each `D` wide, heads contiguous inside), then
    $\\mathrm{softmax}(q k^\\top / \\sqrt{D/H})\\,v$ per head and an output projection.
    """

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, D/H)
        attended = F.scaled_dot_product_attention(q, k, v)
        out: Tensor = self.proj(attended.transpose(1, 2).reshape(b, n, d))
        return out


class MLP(nn.Module):
    """Token-wise `fc2(GELU_tanh(fc1(x)))`."""

    def __init__(self, hidden_size: int, inner_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, inner_size)
        self.fc2 = nn.Linear(inner_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc2(F.gelu(self.fc1(x), approximate="tanh"))
        return out


class DiTBlock(nn.Module):
    r"""Transformer block with adaLN-Zero conditioning on $c$ `(B, D)`.

    $(\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2) = W\,\mathrm{SiLU}(c) + b$, then
    $x \leftarrow x + \alpha_1 \odot \mathrm{Attn}(\mathrm{LN}(x)(1 + \gamma_1) + \beta_1)$ and
    $x \leftarrow x + \alpha_2 \odot \mathrm{MLP}(\mathrm{LN}(x)(1 + \gamma_2) + \beta_2)$, with LayerNorms
    without affine parameters (eps $10^{-6}$). $W = 0, b = 0$ at initialisation: every block starts as
    the identity.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_ratio))
        self.modulation = nn.Linear(hidden_size, 6 * hidden_size)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(_modulate(self.norm1(x), shift1, scale1))
        out: Tensor = x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))
        return out


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm, then a linear map from `D` to `patch * patch * channels` per token."""

    def __init__(self, hidden_size: int, patch_size: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(hidden_size, 2 * hidden_size)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * channels)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=1)
        out: Tensor = self.linear(_modulate(self.norm(x), shift, scale))
        return out
