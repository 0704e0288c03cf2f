r"""The DDPM++ UNet of SoFlow's CIFAR-10 experiments, written from its architecture.

References: Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations"
(DDPM++, ICLR 2021), in the layout of Karras et al., "Elucidating the Design Space of Diffusion-Based
Generative Models" (EDM, NeurIPS 2022; its `SongUNet`), with the changes of SoFlow (Luo, Yuan & Liu,
arXiv 2512.15657, official code `zlab-princeton/SoFlow`): the noise embedding of the raw $t$ and of
$t - s$, each with its sine and cosine halves swapped, are concatenated (not added) before the mapping
network; a 6-dimensional augmentation-label input (EDM's non-leaking augmentation); unconditional.

The defaults of [`UNetConfig`][soflow_toolkit.models.UNetConfig] are the official CIFAR-10 network.
The state-dict names are this package's; [`soflow_toolkit.pretrained`][soflow_toolkit.pretrained] converts them to and from
the official ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import sinusoidal_embedding

__all__ = ["UNet", "UNetBlock", "UNetConfig"]

_SKIP_SCALE = math.sqrt(0.5)


def _check_positive_ints(values: Any, name: str, *, allow_empty: bool = False) -> None:
    if not isinstance(values, tuple) or (not values and not allow_empty):
        raise ValueError(f"UNetConfig.{name} must be a {'' if allow_empty else 'non-empty '}tuple of ints")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"UNetConfig.{name} must hold positive ints; got {values!r}")


@dataclass(frozen=True)
class UNetConfig:
    """The shape of a [`UNet`][soflow_toolkit.models.UNet]. Defaults: the official SoFlow CIFAR-10 network.

    Examples:
        >>> UNetConfig().model_channels
        128
        >>> tiny = UNetConfig(model_channels=16, channel_mult=(1, 2), num_blocks=1, dropout=0.0)
        >>> tiny.attn_resolutions
        (16,)
    """

    image_size: int = 32  # height = width of the input, divisible by 2 ** (len(channel_mult) - 1)
    in_channels: int = 3  # image channels; the output has as many
    model_channels: int = 128  # base width; level i has model_channels * channel_mult[i] channels
    channel_mult: tuple[int, ...] = (2, 2, 2)  # width multiplier per resolution level
    channel_mult_emb: int = 4  # embedding width = model_channels * channel_mult_emb
    channel_mult_noise: int = 2  # sinusoidal features per time input = model_channels * this
    num_blocks: int = 4  # residual blocks per level on the way down (one more on the way up)
    attn_resolutions: tuple[int, ...] = (16,)  # resolutions with self-attention
    num_heads: int = 1  # attention heads (the official network uses one)
    dropout: float = 0.3  # dropout rate inside the residual blocks
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)  # separable FIR filter for down- and upsampling
    augment_dim: int = 6  # augmentation-label features (EDM's pipeline: 6); 0 = no such input

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "model_channels", "channel_mult_emb"):
            _check_positive_ints((getattr(self, name),), name)
        for name in ("channel_mult_noise", "num_blocks", "num_heads"):
            _check_positive_ints((getattr(self, name),), name)
        _check_positive_ints(self.channel_mult, "channel_mult")
        _check_positive_ints(self.attn_resolutions, "attn_resolutions", allow_empty=True)
        _check_positive_ints(self.resample_filter, "resample_filter")
        if (
            isinstance(self.augment_dim, bool)
            or not isinstance(self.augment_dim, int)
            or self.augment_dim < 0
        ):
            raise ValueError(f"UNetConfig.augment_dim must be an int >= 0; got {self.augment_dim!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"UNetConfig.dropout must lie in [0, 1); got {self.dropout!r}")
        levels = len(self.channel_mult)
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(
                f"UNetConfig.image_size {self.image_size} must be divisible by 2 ** {levels - 1} "
                f"for {levels} resolution levels"
            )
        if self.model_channels * min(self.channel_mult) < 4:
            raise ValueError("UNetConfig: every level needs at least 4 channels (GroupNorm)")
        if self.channel_mult_noise * self.model_channels < 4:
            raise ValueError("UNetConfig: the noise embedding needs at least 4 features")
        widths = {self.model_channels * m for m in self.channel_mult}
        if any(width % self.num_heads for width in widths):
            raise ValueError(f"UNetConfig: the widths {sorted(widths)} must be multiples of num_heads")


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


class UNet(nn.Module):
    r"""SoFlow's DDPM++ UNet $F_\theta(x, t, s)$, architecture-identical to the official CIFAR-10 one.

    Time conditioning: $e = [\phi(t) \,\|\, \phi(t - s)]\ (+\,W_a\,a)$, then
    $e \leftarrow \mathrm{SiLU}(\mathrm{fc}_2(\mathrm{SiLU}(\mathrm{fc}_1(e))))$, where $\phi$ is
    [`sinusoidal_embedding`][soflow_toolkit.models.sinusoidal_embedding] with `endpoint=True`, `order="sin_cos"` and
    `model_channels * channel_mult_noise` features of the raw time in $[0, 1]$, and $a$ the optional
    augmentation labels. Encoder: a 3×3 convolution, then per level `num_blocks` blocks ([`UNetBlock`][soflow_toolkit.models.UNetBlock])
    (self-attention at the `attn_resolutions`) and, between levels, a downsampling block. Decoder: two
    blocks at the lowest resolution (the first with attention), then per level an upsampling block
    (except at the lowest) and `num_blocks + 1` blocks that each take one encoder output by
    concatenation (attention on the last one at the `attn_resolutions`). Output: GroupNorm, SiLU, 3×3
    convolution.

    Initialisation is EDM's: Xavier-uniform weights, zero biases, the last convolution of every
    residual branch, every attention output and the output convolution scaled by $10^{-5}$, the `qkv`
    convolutions by $\sqrt{0.2}$.

    Args:
        config: a [`UNetConfig`][soflow_toolkit.models.UNetConfig] (default: the official CIFAR-10 network).

    Shapes:
        `x`: `(B, in_channels, image_size, image_size)`; `t`, `s`: `(B,)` in [0, 1];
        `augment_labels`: `(B, augment_dim)` or None. Output: `x`'s shape and dtype.

    Examples:
        >>> import torch
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> net = UNet(UNetConfig(image_size=8, model_channels=16, channel_mult=(1, 2), num_blocks=1,
        ...                       attn_resolutions=(4,)))
        >>> model = SolutionFlowWrapper(net).eval()
        >>> x = torch.randn(2, 3, 8, 8)
        >>> model(x, 1.0, 0.0).shape
        torch.Size([2, 3, 8, 8])
        >>> model(x, 1.0, 0.0, {"augment_labels": torch.zeros(2, 6)}).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        config = UNetConfig() if config is None else config
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig; got {type(config).__name__}")
        self.config = config
        mc = config.model_channels
        emb_channels = mc * config.channel_mult_emb
        self.noise_channels = mc * config.channel_mult_noise
        block_args: dict[str, Any] = {
            "emb_channels": emb_channels,
            "num_heads": config.num_heads,
            "dropout": config.dropout,
            "resample_filter": config.resample_filter,
        }
        # Mapping network: the two time embeddings are concatenated, hence 2 * noise_channels inputs.
        self.augment_embed = (
            nn.Linear(config.augment_dim, 2 * self.noise_channels, bias=False) if config.augment_dim else None
        )
        self.embed_fc1 = nn.Linear(2 * self.noise_channels, emb_channels)
        self.embed_fc2 = nn.Linear(emb_channels, emb_channels)

        # Encoder; `labels` name each block by resolution and role (EDM's naming).
        self.conv_in = nn.Conv2d(config.in_channels, mc, 3, padding=1)
        encoder: list[UNetBlock] = []
        encoder_labels: list[str] = []
        skips, width = [mc], mc
        for level, mult in enumerate(config.channel_mult):
            res = config.image_size >> level
            if level > 0:
                encoder.append(UNetBlock(width, width, resample="down", **block_args))
                encoder_labels.append(f"{res}x{res}_down")
                skips.append(width)
            for idx in range(config.num_blocks):
                attention = res in config.attn_resolutions
                encoder.append(UNetBlock(width, mc * mult, attention=attention, **block_args))
                encoder_labels.append(f"{res}x{res}_block{idx}")
                width = mc * mult
                skips.append(width)
        self.encoder = nn.ModuleList(encoder)

        decoder: list[UNetBlock] = []
        decoder_labels: list[str] = []
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            res = config.image_size >> level
            if level == len(config.channel_mult) - 1:
                decoder.append(UNetBlock(width, width, attention=True, **block_args))
                decoder.append(UNetBlock(width, width, **block_args))
                decoder_labels += [f"{res}x{res}_in0", f"{res}x{res}_in1"]
            else:
                decoder.append(UNetBlock(width, width, resample="up", **block_args))
                decoder_labels.append(f"{res}x{res}_up")
            for idx in range(config.num_blocks + 1):
                attention = idx == config.num_blocks and res in config.attn_resolutions
                decoder.append(UNetBlock(width + skips.pop(), mc * mult, attention=attention, **block_args))
                decoder_labels.append(f"{res}x{res}_block{idx}")
                width = mc * mult
        self.decoder = nn.ModuleList(decoder)
        self.encoder_labels: tuple[str, ...] = tuple(encoder_labels)
        self.decoder_labels: tuple[str, ...] = tuple(decoder_labels)
        self.norm_out = _group_norm(width)
        self.conv_out = nn.Conv2d(width, config.in_channels, 3, padding=1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """EDM's initialisation (see the class docstring)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks():
            block.conv2.weight.mul_(1e-5)
            if block.num_heads:
                block.qkv.weight.mul_(math.sqrt(0.2))
                block.attn_proj.weight.mul_(1e-5)
        self.conv_out.weight.mul_(1e-5)

    def blocks(self) -> list[UNetBlock]:
        """The residual blocks, encoder then decoder, in the order the forward pass runs them."""
        return [block for block in (*self.encoder, *self.decoder) if isinstance(block, UNetBlock)]

    def embed_times(self, t: Tensor, s: Tensor, augment_labels: Tensor | None = None) -> Tensor:
        r"""The mapping network's output $e$, shape `(B, model_channels * channel_mult_emb)`.

        Raises:
            ValueError: for augment labels of the wrong shape, or given to a UNet without that input.
        """
        phi_t = sinusoidal_embedding(t, self.noise_channels, endpoint=True, order="sin_cos")
        phi_gap = sinusoidal_embedding(t - s, self.noise_channels, endpoint=True, order="sin_cos")
        emb = torch.cat([phi_t, phi_gap], dim=1).to(self.embed_fc1.weight.dtype)
        if augment_labels is not None:
            if self.augment_embed is None:
                raise ValueError("this UNet has no augmentation-label input (augment_dim=0)")
            expected = (t.shape[0], self.config.augment_dim)
            if augment_labels.shape != expected:
                raise ValueError(
                    f"augment_labels must have shape {expected}; got {tuple(augment_labels.shape)}"
                )
            emb = emb + self.augment_embed(augment_labels.to(emb.dtype))
        return F.silu(self.embed_fc2(F.silu(self.embed_fc1(emb))))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, augment_labels: Tensor | None = None) -> Tensor:
        """Evaluate $F_\\theta(x, t, s)$; see the class docstring for shapes.

        Raises:
            ValueError: for an input whose shape does not match the config, times that are not `(B,)`,
                or bad augment labels (see [`embed_times`][soflow_toolkit.models.UNet.embed_times]).
        """
        cfg = self.config
        expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"UNet input must have shape (B, {', '.join(map(str, expected))}); got {tuple(x.shape)}"
            )
        for name, value in (("t", t), ("s", s)):
            if value.shape != (x.shape[0],):
                raise ValueError(f"{name} must have shape ({x.shape[0]},); got {tuple(value.shape)}")
        emb = self.embed_times(t, s, augment_labels)
        h = self.conv_in(x)
        skips = [h]
        for block in self.encoder:
            h = block(h, emb)
            skips.append(h)
        for label, block in zip(self.decoder_labels, self.decoder, strict=True):
            if "_block" in label:  # the blocks after the first two / the upsampling take a skip
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, emb)
        out: Tensor = self.conv_out(F.silu(self.norm_out(h)))
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"channels={cfg.model_channels}x{list(cfg.channel_mult)}, blocks={cfg.num_blocks}, "
            f"attention at {list(cfg.attn_resolutions)}, dropout={cfg.dropout}, augment_dim={cfg.augment_dim}"
        )
