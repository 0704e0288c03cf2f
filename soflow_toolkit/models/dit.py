r"""The Diffusion Transformer of SoFlow's ImageNet experiments, written from its architecture.

References: Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT, ICCV 2023), with the
changes of SoFlow (Luo, Yuan & Liu, arXiv 2512.15657, official code `zlab-princeton/SoFlow`):

- the conditioning vector is $c = E_t(t) + E_s(t - s) + E_y(y)$: two timestep embedders, one for the
  start time $t$ and one for the gap $t - s$, both fed the raw values in $[0, 1]$ (no $\times 1000$),
  plus a label table whose extra row `num_classes` is the null class of classifier-free guidance;
- no learned variance (`learn_sigma=False`): the output has the input's shape.

Everything else is DiT: patch embedding plus fixed 2-D sin-cos positions
([`grid_positions_2d`][soflow_toolkit.models.grid_positions_2d], first half of the features = column index),
transformer blocks with adaLN-Zero conditioning, a final adaLN layer, unpatchify. The state-dict names
are this package's; [`soflow_toolkit.pretrained`][soflow_toolkit.pretrained] converts them to and from the official ones.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, cast

import torch
from torch import Tensor, nn

from .dit_blocks import DiTBlock, FinalLayer, TimestepEmbedder
from .embeddings import grid_positions_2d

__all__ = ["DIT_SIZES", "DiT", "DiTConfig"]

DIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "B/4": (4, 768, 12, 12),
    "B/2": (2, 768, 12, 12),
    "M/2": (2, 1024, 16, 16),
    "L/2": (2, 1024, 24, 16),
    "XL/2": (2, 1152, 28, 16),
    "T/4": (4, 64, 2, 4),  # tiny, for tests and smoke runs
}
"""The DiT sizes: name -> (patch size, hidden size, depth, attention heads). The first five are the
paper's (SoFlow Table 2); `"T/4"` is a tiny one for tests."""


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"DiTConfig.{name} must be a positive int; got {value!r}")


@dataclass(frozen=True)
class DiTConfig:
    """The shape of a [`DiT`][soflow_toolkit.models.DiT]. Defaults: DiT-B/4 on 32×32×4 SD-VAE latents of ImageNet 256.

    Examples:
        >>> DiTConfig.from_size("XL/2").hidden_size
        1152
        >>> tiny = DiTConfig.from_size("T/4", input_size=8, num_classes=10)
        >>> tiny.patch_size, tiny.hidden_size, tiny.depth, tiny.num_heads, tiny.num_classes
        (4, 64, 2, 4, 10)
    """

    input_size: int = 32  # height = width of the input (the latent), divisible by patch_size
    in_channels: int = 4  # channels of the input; the output has as many
    patch_size: int = 4  # side of the square patches that become tokens
    hidden_size: int = 768  # token width D, a multiple of 4 (2-D positions) and of num_heads
    depth: int = 12  # number of transformer blocks
    num_heads: int = 12  # attention heads per block
    mlp_ratio: float = 4.0  # MLP hidden width / D
    num_classes: int = 1000  # class labels 0 .. num_classes - 1
    null_class: bool = True  # one more label row, index num_classes: the null class (CFG)
    frequency_dim: int = 256  # sinusoidal features per timestep embedder
    guidance_embed: bool = False  # an embedder of the guidance scale (a range of scales in training)

    def __post_init__(self) -> None:
        for name in ("input_size", "in_channels", "patch_size", "hidden_size", "depth", "num_heads"):
            _positive_int(getattr(self, name), name)
        _positive_int(self.num_classes, "num_classes")
        _positive_int(self.frequency_dim, "frequency_dim")
        if self.frequency_dim % 2:
            raise ValueError(f"DiTConfig.frequency_dim must be even; got {self.frequency_dim}")
        if self.input_size % self.patch_size:
            raise ValueError(
                f"DiTConfig.input_size {self.input_size} is not divisible by patch_size {self.patch_size}"
            )
        if self.hidden_size % 4 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"DiTConfig.hidden_size {self.hidden_size} must be a multiple of 4 and of num_heads "
                f"{self.num_heads}"
            )
        if not (isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0):
            raise ValueError(f"DiTConfig.mlp_ratio must be a positive number; got {self.mlp_ratio!r}")
        for name in ("null_class", "guidance_embed"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DiTConfig.{name} must be a bool; got {getattr(self, name)!r}")

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> DiTConfig:
        """The config of a named size of [`DIT_SIZES`][soflow_toolkit.models.DIT_SIZES] (e.g. `"XL/2"`), with field overrides.

        Raises:
            ValueError: for an unknown size, or overrides that are not fields of the config.
        """
        if size not in DIT_SIZES:
            raise ValueError(f"unknown DiT size {size!r}; expected one of {list(DIT_SIZES)}")
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown DiTConfig fields {unknown}")
        patch, hidden, depth, heads = DIT_SIZES[size]
        base = cls(patch_size=patch, hidden_size=hidden, depth=depth, num_heads=heads)
        return replace(base, **overrides)

    @property
    def grid_size(self) -> int:
        """Tokens per side, `input_size // patch_size`."""
        return self.input_size // self.patch_size

    @property
    def num_labels(self) -> int:
        """Rows of the label table: `num_classes`, plus one for the null class."""
        return self.num_classes + int(self.null_class)


class DiT(nn.Module):
    r"""SoFlow's class-conditional DiT $F_\theta(x, t, s, y)$, architecture-identical to the official one.

    $$c = E_t(t) + E_s(t - s) + E_y(y),$$

    $$F_\theta = \mathrm{unpatchify}\big(\mathrm{Final}(\mathrm{Block}_L \circ \dots \circ
      \mathrm{Block}_1(\mathrm{Patch}(x) + P),\ c)\big),$$

    with $E_t, E_s$ timestep embedders (`TimestepEmbedder`) of the raw $t$ and $t - s$ in $[0, 1]$, $E_y$ a label
    table with `num_classes + 1` rows (row `num_classes` is the null class; labels are never dropped
    inside the network, [`SoFlowLoss`][soflow_toolkit.SoFlowLoss] does that), $P$ the fixed positions of
    [`grid_positions_2d`][soflow_toolkit.models.grid_positions_2d] (a buffer `pos_embed`, saved in the state dict),
    and adaLN-Zero blocks (`DiTBlock`). It follows the backbone contract of
    [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper]: `dit(x, t, s, labels)` returns `x`'s shape.

    Initialisation is DiT's: Xavier-uniform linear layers and patch embedding with zero biases,
    $\mathcal N(0, 0.02^2)$ label table and $E_t$ weights, and zero adaLN modulations and output layer,
    so the network outputs exactly 0 at initialisation ($f_\theta(x_t, t, s) = x_t$).

    Extra conditioning: [`condition`][soflow_toolkit.models.DiT.condition] builds $c$; an additional zero-initialised embedder added to
    it leaves the initial network unchanged. With `guidance_embed=True` (for training with a range of
    guidance scales, [`GuidanceConfig`][soflow_toolkit.GuidanceConfig]`(scale=(low, high))`), the
    network takes the keyword `guidance_scale` $\omega$ `(B,)` and adds $E_\omega(\omega)$, a timestep
    embedder of the raw $\omega$ whose last layer starts at zero, so it starts as the same network for
    every $\omega$. A state dict without `guidance_embed.*` (of a DiT without it, e.g. an official
    checkpoint) loads into it with `strict=True`: the embedder is then reset to its zero output, and
    the network computes exactly what the checkpoint's did, for every $\omega$.

    Args:
        config: a [`DiTConfig`][soflow_toolkit.models.DiTConfig]; see [`from_size`][soflow_toolkit.models.DiT.from_size] for the named sizes.

    Shapes:
        `x`: `(B, in_channels, input_size, input_size)`; `t`, `s`: `(B,)` times in [0, 1];
        `labels`: `(B,)` integers in `[0, num_classes]` (`num_classes` = null), or None for the null
        class; `guidance_scale`: `(B,)` floats (only with `guidance_embed`). Output: `x`'s shape and dtype.

    Examples:
        >>> import torch
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> net = DiT.from_size("T/4", input_size=8, num_classes=10)
        >>> model = SolutionFlowWrapper(net)
        >>> x, labels = torch.randn(2, 4, 8, 8), torch.tensor([3, 10])  # 10: the null class
        >>> model(x, 1.0, 0.0, labels).shape
        torch.Size([2, 4, 8, 8])
        >>> torch.equal(net(x, torch.rand(2), torch.rand(2), labels), torch.zeros_like(x))  # adaLN-Zero
        True
        >>> guided = DiT.from_size("T/4", input_size=8, num_classes=10, guidance_embed=True)
        >>> _ = guided.load_state_dict(net.state_dict())  # a checkpoint without the embedder loads
        >>> model = SolutionFlowWrapper(guided)
        >>> model(x, 1.0, 0.0, labels, guidance_scale=2.5).shape
        torch.Size([2, 4, 8, 8])
    """

    pos_embed: Tensor

    def __init__(self, config: DiTConfig | None = None) -> None:
        super().__init__()
        config = DiTConfig() if config is None else config
        if not isinstance(config, DiTConfig):
            raise TypeError(f"config must be a DiTConfig; got {type(config).__name__}")
        self.config = config
        d, p = config.hidden_size, config.patch_size
        self.patch_embed = nn.Conv2d(config.in_channels, d, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", grid_positions_2d(d, config.grid_size)[None])  # (1, N, D)
        self.t_embed = TimestepEmbedder(d, config.frequency_dim)
        self.gap_embed = TimestepEmbedder(d, config.frequency_dim)  # embeds t - s
        self.label_embed = nn.Embedding(config.num_labels, d)
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.final = FinalLayer(d, p, config.in_channels)
        self.guidance_embed = TimestepEmbedder(d, config.frequency_dim) if config.guidance_embed else None
        self.reset_parameters()
        self.register_load_state_dict_pre_hook(_fill_missing_guidance_embed)  # type: ignore[no-untyped-call]

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> DiT:
        """A DiT of a named size of [`DIT_SIZES`][soflow_toolkit.models.DIT_SIZES] (`"B/4"`, `"B/2"`, `"M/2"`, `"L/2"`, `"XL/2"`,
        `"T/4"`), with [`DiTConfig`][soflow_toolkit.models.DiTConfig] field overrides (e.g. `input_size=16`)."""
        return cls(DiTConfig.from_size(size, **overrides))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """DiT's initialisation (see the class docstring); the positions are recomputed."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)  # every linear layer of the DiT has a bias
        weight = self.patch_embed.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))  # as a linear map of the patch
        if self.patch_embed.bias is not None:
            nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.label_embed.weight, std=0.02)
        nn.init.normal_(self.t_embed.fc1.weight, std=0.02)
        nn.init.normal_(self.t_embed.fc2.weight, std=0.02)
        blocks = cast("list[DiTBlock]", list(self.blocks))
        zeroed = [*(block.modulation for block in blocks), self.final.modulation, self.final.linear]
        if self.guidance_embed is not None:
            nn.init.normal_(self.guidance_embed.fc1.weight, std=0.02)
            zeroed.append(self.guidance_embed.fc2)  # E_omega = 0: the same network for every scale
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.pos_embed.copy_(grid_positions_2d(self.config.hidden_size, self.config.grid_size)[None])

    def condition(
        self, t: Tensor, s: Tensor, labels: Tensor | None, guidance_scale: Tensor | None = None
    ) -> Tensor:
        r"""The conditioning vector $c = E_t(t) + E_s(t - s) + E_y(y)\,[+\,E_\omega(\omega)]$, shape `(B, D)`.

        Args:
            t: `(B,)` start times.
            s: `(B,)` target times.
            labels: `(B,)` integer labels, or None for the null class.
            guidance_scale: `(B,)` guidance scales $\omega$; required with `guidance_embed`, refused
                without.

        Raises:
            ValueError: for labels of the wrong shape, None labels without a null class, or a
                guidance scale missing, not expected or not of shape `(B,)`.
            TypeError: for labels that are not an integer tensor.
        """
        if labels is None:
            if not self.config.null_class:
                raise ValueError("labels=None selects the null class, but this DiT has no null class")
            labels = torch.full(t.shape, self.config.num_classes, dtype=torch.long, device=t.device)
        elif not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
            kind = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
            raise TypeError(f"labels must be an integer tensor of shape (B,); got {kind}")
        elif labels.shape != t.shape:
            raise ValueError(f"labels must have shape {tuple(t.shape)}; got {tuple(labels.shape)}")
        c: Tensor = self.t_embed(t) + self.gap_embed(t - s) + self.label_embed(labels)
        if self.guidance_embed is None:
            if guidance_scale is not None:
                raise ValueError(
                    "this DiT takes no guidance_scale: build it with DiTConfig(guidance_embed=True) to "
                    "train with a range of guidance scales"
                )
            return c
        if not isinstance(guidance_scale, Tensor) or guidance_scale.shape != t.shape:
            got = tuple(guidance_scale.shape) if isinstance(guidance_scale, Tensor) else guidance_scale
            raise ValueError(
                f"this DiT has a guidance-scale embedder: pass guidance_scale= of shape {tuple(t.shape)}; got {got}"
            )
        scale_embedding: Tensor = self.guidance_embed(guidance_scale)
        return c + scale_embedding

    def unpatchify(self, tokens: Tensor) -> Tensor:
        """Tokens `(B, N, p*p*C)` -> images `(B, C, H, W)` (each token fills its `p × p` patch)."""
        b, g, p, c = tokens.shape[0], self.config.grid_size, self.config.patch_size, self.config.in_channels
        x = tokens.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, g, p, g, p)
        return x.reshape(b, c, g * p, g * p)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        labels: Tensor | None = None,
        *,
        guidance_scale: Tensor | None = None,
    ) -> Tensor:
        """Evaluate $F_\\theta(x, t, s, y)$; see the class docstring for shapes.

        Raises:
            ValueError: for an input whose shape does not match the config, or times that are not
                `(B,)`; see also [`condition`][soflow_toolkit.models.DiT.condition].
        """
        cfg = self.config
        expected = (cfg.in_channels, cfg.input_size, cfg.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"DiT input must have shape (B, {', '.join(map(str, expected))}); got {tuple(x.shape)}"
            )
        for name, value in (("t", t), ("s", s)):
            if value.shape != (x.shape[0],):
                raise ValueError(f"{name} must have shape ({x.shape[0]},); got {tuple(value.shape)}")
        c = self.condition(t, s, labels, guidance_scale)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, D)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.unpatchify(self.final(tokens, c)).to(x.dtype)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"patch={cfg.patch_size}, hidden={cfg.hidden_size}, depth={cfg.depth}, heads={cfg.num_heads}, "
            f"input={cfg.in_channels}x{cfg.input_size}x{cfg.input_size}, classes={cfg.num_classes}"
            f"{' + null' if cfg.null_class else ''}{', guidance embed' if cfg.guidance_embed else ''}"
        )


def _fill_missing_guidance_embed(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook: a state dict without `guidance_embed.*` resets the embedder to zero output."""
    embedder = getattr(module, "guidance_embed", None)
    if embedder is None or any(key.startswith(prefix + "guidance_embed.") for key in state_dict):
        return
    with torch.no_grad():
        nn.init.zeros_(embedder.fc2.weight)
        nn.init.zeros_(embedder.fc2.bias)
    for key, value in embedder.state_dict().items():
        state_dict[f"{prefix}guidance_embed.{key}"] = value.detach().clone()
