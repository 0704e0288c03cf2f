r"""Flow-matching checkpoints in SiT's layout as SoFlow's DiT: start SoFlow from a pretrained flow-matching model.

SiT (Ma et al., "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable Interpolant
Transformers", ECCV 2024; MIT-licensed code `github.com/willisma/SiT`) is DiT's transformer trained
with flow matching, in DiT's parameter layout (`x_embedder.proj`, `t_embedder.mlp.{0,2}`,
`y_embedder.embedding_table`, `blocks.i.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}`,
`final_layer.{linear, adaLN_modulation.1}`, `pos_embed`). SoFlow's DiT
([`soflow_toolkit.models.DiT`][soflow_toolkit.models.DiT]) is the same network plus an embedder of
$t - s$. [`load_sit`][soflow_toolkit.sit.load_sit] builds it from such a checkpoint so that it *is*
the pretrained flow-matching model, ready for SoFlow fine-tuning:

**Time direction and sign, folded into the weights.** SiT's time $\tau$ runs the other way: $\tau = 0$
is noise, $\tau = 1$ data, $x_\tau = \tau\,\text{data} + (1 - \tau)\,\text{noise}$ (its `Linear` path;
`GVP`: $\sin(\pi\tau/2)$ and $\cos(\pi\tau/2)$), and the network predicts
$u = \mathrm dx_\tau/\mathrm d\tau = \text{data} - \text{noise}$. With $\tau = 1 - t$ the states
coincide and this toolkit's velocity is $v(x, t) = \mathrm dx/\mathrm dt = -u(x, 1 - t)$. Both changes
are exact in exact arithmetic:

- the time embedder must see $1 - t$: its sinusoidal features satisfy $\phi(1 - t) = R\,\phi(t)$, since
  $\cos((1-t)\omega) = \cos\omega\cos t\omega + \sin\omega\sin t\omega$ and
  $\sin((1-t)\omega) = \sin\omega\cos t\omega - \cos\omega\sin t\omega$ for each frequency $\omega$, so
  its first layer's weight $W$ becomes $W R$ (computed in float64);
- the output is negated: the final linear layer's weight and bias are multiplied by $-1$.

**The $t - s$ embedder starts at zero**: its first layer is a copy of SiT's time embedder's (features
of a time in $[0, 1]$), its last layer is zero. So $F_\theta(x, t, s, y) = -\,\mathrm{SiT}(x, 1 - t, y)$ for
every $s$: the velocity read-out $v_\theta(x, t) = F_\theta(x, t, t)$ is the pretrained velocity,
$f_\theta(x_t, t, s) = x_t + (s - t)\,v_\theta(x_t, t)$ is one Euler step of the pretrained flow, and
$f_\theta(x, t, t) = x$ as for every SoFlow model.

**Layout details.** With `learn_sigma=True` (SiT's default, and its released SiT-XL/2 256 weights) the
output has twice the input's channels and SiT keeps the first half: the final layer's rows are ordered
(patch row, patch column, channel) per token, and the rows of the first half are kept. A label table
with `num_classes + 1` rows (`class_dropout_prob > 0`, SiT's default) has the null class of
classifier-free guidance as its last row, as this package's DiT. SiT feeds its time embedder the raw
$\tau \in [0, 1]$, as SoFlow's DiT does. Only velocity-predicting SiT models (`--prediction velocity`,
the default) are flow-matching models in this sense.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .models import DiT, DiTConfig, grid_positions_2d
from .wrapper import SolutionFlowWrapper, unwrap_model

__all__ = [
    "SIT_NUM_HEADS",
    "from_sit_state_dict",
    "load_sit",
    "read_sit_checkpoint",
    "sit_config",
    "sit_key_map",
]

SIT_NUM_HEADS = {384: 6, 768: 12, 1024: 16, 1152: 16}
"""SiT's sizes: hidden size -> attention heads (S, B, L and XL); other widths need `num_heads=`."""
_PATHS = {"linear": "linear", "trig": "trig"}  # SiT's Linear path -> linear, GVP -> trig
_BLOCK = re.compile(r"^blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|modulation)\.(weight|bias)$")
_RENAMES = (
    ("patch_embed.", "x_embedder.proj."),
    ("t_embed.fc1.", "t_embedder.mlp.0."),
    ("t_embed.fc2.", "t_embedder.mlp.2."),
    ("label_embed.", "y_embedder.embedding_table."),
    ("final.modulation.", "final_layer.adaLN_modulation.1."),
    ("final.linear.", "final_layer.linear."),
)
_FROM_SIT_INIT = ("gap_embed.", "guidance_embed.")  # initialised here (gap) or by the DiT (guidance)


def _sit_name(name: str) -> str | None:
    if name == "pos_embed":
        return name
    for ours, theirs in _RENAMES:
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    match = _BLOCK.match(name)
    if match is None:
        return None
    index, part, leaf = match.groups()
    return f"blocks.{index}.{'adaLN_modulation.1' if part == 'modulation' else part}.{leaf}"


def _dit_of(model: nn.Module) -> DiT:
    backbone: Any = model
    if not isinstance(model, DiT):
        try:
            backbone = unwrap_model(model).backbone
        except TypeError:
            backbone = model
    if not isinstance(backbone, DiT):
        raise TypeError(
            f"SiT checkpoints load into soflow_toolkit.models.DiT; got a {type(backbone).__name__}"
        )
    return backbone


def sit_key_map(model: nn.Module) -> dict[str, str]:
    """The conversion map: each state-dict key of the DiT that comes from a SiT checkpoint -> its SiT key.

    The keys of the $t - s$ embedder (`gap_embed.*`, initialised by
    [`from_sit_state_dict`][soflow_toolkit.sit.from_sit_state_dict]) and of a guidance-scale embedder
    (`guidance_embed.*`, zero output) have no SiT counterpart and are not in the map.

    Args:
        model: a [`DiT`][soflow_toolkit.models.DiT], or a wrapper around one.

    Returns:
        `{our key: SiT key}`, in the order of the DiT's state dict.

    Raises:
        TypeError: for another backbone.

    Examples:
        >>> from soflow_toolkit.models import DiT
        >>> key_map = sit_key_map(DiT.from_size("T/4", input_size=8))
        >>> key_map["t_embed.fc1.weight"], key_map["blocks.0.modulation.bias"]
        ('t_embedder.mlp.0.weight', 'blocks.0.adaLN_modulation.1.bias')
    """
    out: dict[str, str] = {}
    for name in _dit_of(model).state_dict():
        if name.startswith(_FROM_SIT_INIT):
            continue
        sit = _sit_name(name)
        if sit is None:  # pragma: no cover - every other DiT parameter has a SiT name
            raise ValueError(f"the DiT parameter {name!r} has no SiT counterpart")
        out[name] = sit
    return out


def _strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a `module.` (DDP) or `_orig_mod.` (torch.compile) prefix shared by every key."""
    out = dict(state_dict)
    for prefix in ("module.", "_orig_mod."):
        if out and all(str(key).startswith(prefix) for key in out):
            out = {key[len(prefix) :]: value for key, value in out.items()}
    return out


def read_sit_checkpoint(
    path: str | os.PathLike[str], *, weights: Literal["ema", "model"] = "ema"
) -> dict[str, Tensor]:
    """The state dict of a SiT checkpoint file.

    SiT's `train.py` saves `{"model", "ema", "opt", "args"}` (`args` an `argparse.Namespace`, allowed
    here, with `torch.load(weights_only=True)`); its released weights (`SiT-XL-2-256x256.pt`) are a bare
    state dict, used as it is. A `module.` or `_orig_mod.` prefix on every key is removed.

    Args:
        path: the `.pt` file.
        weights: `"ema"` (what SiT samples with) or `"model"`, for a checkpoint of SiT's `train.py`.

    Returns:
        `{SiT key: tensor}`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for an unknown `weights`, a file that does not load with `weights_only=True`, or
            one that holds neither a state dict nor `ema` / `model` entries.

    Examples:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "0001000.pt"
        >>> torch.save({"model": {"pos_embed": torch.zeros(1)}, "ema": {"pos_embed": torch.ones(1)}, "opt": {},
        ...             "args": argparse.Namespace(model="SiT-XL/2")}, file)
        >>> read_sit_checkpoint(file)
        {'pos_embed': tensor([1.])}
    """
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model'; got {weights!r}")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no SiT checkpoint at {file}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as err:  # not a torch file
        raise ValueError(
            f"{file} does not load with torch.load(weights_only=True) ({type(err).__name__}: {err})"
        ) from err
    if isinstance(payload, Mapping) and weights in payload and isinstance(payload[weights], Mapping):
        payload = payload[weights]
    if (
        not isinstance(payload, Mapping)
        or not payload
        or not all(isinstance(v, Tensor) for v in payload.values())
    ):
        held = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) else type(payload).__name__
        raise ValueError(
            f"{file} is not a SiT checkpoint: expected a state dict or a dict with '{weights}' (SiT's "
            f"train.py); it holds {held}"
        )
    return _strip_prefix(payload)


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"not a SiT state dict: it has no {key!r} (keys: {sorted(state)[:6]} ...)")
    return tuple(state[key].shape)


def sit_config(
    state_dict: Mapping[str, Tensor],
    *,
    num_heads: int | None = None,
    num_classes: int | None = None,
    guidance_embed: bool = False,
) -> DiTConfig:
    """The [`DiTConfig`][soflow_toolkit.models.DiTConfig] of a SiT state dict, read from its shapes.

    Patch size, channels and width from `x_embedder.proj.weight`, depth from the blocks, input size
    from `pos_embed`, MLP ratio from `blocks.0.mlp.fc1.weight`, the frequency features from
    `t_embedder.mlp.0.weight`, the classes from the label table: `rows - 1` classes and a null class,
    SiT's default (`class_dropout_prob > 0`), unless `num_classes` says otherwise. The number of heads
    is not stored: SiT's widths give it ([`SIT_NUM_HEADS`][soflow_toolkit.sit.SIT_NUM_HEADS]), or pass
    `num_heads`.

    Args:
        state_dict: a SiT state dict (see [`read_sit_checkpoint`][soflow_toolkit.sit.read_sit_checkpoint]).
        num_heads: the attention heads; default: from the width.
        num_classes: the classes, when the label table has no null row (`rows == num_classes`).
        guidance_embed: give the DiT a guidance-scale embedder (zero output; for training with a range
            of scales, [`GuidanceConfig`][soflow_toolkit.GuidanceConfig]`(scale=(low, high))`).

    Returns:
        The config of the DiT that holds the checkpoint.

    Raises:
        ValueError: for a state dict without the SiT keys, an unknown width without `num_heads`, a
            `num_classes` that does not fit the label table, or shapes no DiT has.

    Examples:
        >>> state = {"x_embedder.proj.weight": torch.zeros(1152, 4, 2, 2), "pos_embed": torch.zeros(1, 256, 1152),
        ...          "t_embedder.mlp.0.weight": torch.zeros(1152, 256), "blocks.0.mlp.fc1.weight": torch.zeros(4608, 1152),
        ...          "y_embedder.embedding_table.weight": torch.zeros(1001, 1152)}
        >>> state.update({f"blocks.{i}.attn.qkv.weight": torch.zeros(1) for i in range(28)})
        >>> config = sit_config(state)
        >>> config.patch_size, config.hidden_size, config.depth, config.num_heads, config.input_size, config.num_classes
        (2, 1152, 28, 16, 32, 1000)
    """
    hidden, channels, patch, _ = _shape(state_dict, "x_embedder.proj.weight")
    tokens = _shape(state_dict, "pos_embed")[1]
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise ValueError(f"pos_embed has {tokens} tokens, not a square grid")
    depth = len({int(m[1]) for key in state_dict if (m := re.match(r"^blocks\.(\d+)\.", key))})
    rows = _shape(state_dict, "y_embedder.embedding_table.weight")[0]
    if num_classes is None:
        num_classes = rows - 1
    if rows not in (num_classes, num_classes + 1):
        raise ValueError(
            f"the label table has {rows} rows: num_classes={num_classes} needs {num_classes} or {num_classes + 1}"
        )
    heads = num_heads if num_heads is not None else SIT_NUM_HEADS.get(hidden)
    if heads is None:
        raise ValueError(
            f"SiT's sizes have widths {sorted(SIT_NUM_HEADS)}; for width {hidden} pass num_heads="
        )
    return DiTConfig(
        input_size=grid * patch,
        in_channels=channels,
        patch_size=patch,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        mlp_ratio=_shape(state_dict, "blocks.0.mlp.fc1.weight")[0] / hidden,
        num_classes=num_classes,
        null_class=rows == num_classes + 1,
        frequency_dim=_shape(state_dict, "t_embedder.mlp.0.weight")[1],
        guidance_embed=guidance_embed,
    )


def _reversed_time_weight(weight: Tensor) -> Tensor:
    """`W R` with $R\\,\\phi(t) = \\phi(1 - t)$ for the `[cos, sin]` features of the DiT's time embedder."""
    half = weight.shape[1] // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float64) / half)
    cos, sin = torch.cos(freqs), torch.sin(freqs)
    w = weight.to(torch.float64)
    w_cos, w_sin = w[:, :half], w[:, half:]
    return torch.cat([w_cos * cos + w_sin * sin, w_cos * sin - w_sin * cos], dim=1).to(weight.dtype)


def from_sit_state_dict(
    state_dict: Mapping[str, Tensor], model: nn.Module, *, reverse_time: bool = True
) -> dict[str, Tensor]:
    r"""Convert a SiT state dict to the names of `model`'s DiT, with time direction and sign folded in.

    The result loads with `load_state_dict(strict=True)` and makes $F_\theta(x, t, s, y) =
    -\mathrm{SiT}(x, 1 - t, y)$ for every $s$ (see the module docstring): the time embedder's first
    layer rotated, the output layer negated (and cut to the first half of its channels for
    `learn_sigma`), the $t - s$ embedder with SiT's first time layer and a zero last layer.
    `reverse_time=False` is for a DiT-layout flow-matching model already in this toolkit's direction
    (time 1 = noise, velocity noise - data): the weights are copied as they are.

    Args:
        state_dict: a SiT state dict (see [`read_sit_checkpoint`][soflow_toolkit.sit.read_sit_checkpoint]).
        model: the receiving [`DiT`][soflow_toolkit.models.DiT] (or a wrapper around one), e.g. built
            from [`sit_config`][soflow_toolkit.sit.sit_config].
        reverse_time: fold SiT's time direction (1 = data) and sign (velocity data - noise) into the weights.

    Returns:
        `{our key: tensor}`, every key of the DiT except a guidance-scale embedder (which the DiT keeps at
        zero output when it is missing).

    Raises:
        ValueError: for missing or unexpected keys, shapes that do not fit the DiT, or stored
            positions that are not the DiT's.
        TypeError: for a backbone that is not a DiT.

    Examples:
        >>> from soflow_toolkit.models import DiT
        >>> dit = DiT.from_size("T/4", input_size=8, num_classes=10)
        >>> sit = {theirs: dit.state_dict()[ours] for ours, theirs in sit_key_map(dit).items()}  # a SiT state dict
        >>> dit.load_state_dict(from_sit_state_dict(sit, dit))
        <All keys matched successfully>
    """
    dit = _dit_of(model)
    ours = dit.state_dict()
    key_map = sit_key_map(dit)
    state = _strip_prefix(state_dict)
    missing = [sit for sit in key_map.values() if sit not in state]
    unexpected = [key for key in state if key not in set(key_map.values())]
    if missing or unexpected:
        raise ValueError(
            f"the SiT state dict does not fit this DiT ({len(missing)} keys missing, {len(unexpected)} "
            f"unexpected; missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    channels, patch = dit.config.in_channels, dit.config.patch_size
    out: dict[str, Tensor] = {}
    for name, sit in key_map.items():
        value = state[sit].detach().to(ours[name].dtype)
        if name.startswith("final.linear.") and value.shape[0] == 2 * patch * patch * channels:
            keep = (torch.arange(value.shape[0]) % (2 * channels)) < channels  # learn_sigma: first half
            value = value[keep]
        if value.shape != ours[name].shape:
            raise ValueError(
                f"{sit} has shape {tuple(value.shape)} in the checkpoint but {tuple(ours[name].shape)} in the DiT"
            )
        out[name] = value
    positions = grid_positions_2d(dit.config.hidden_size, dit.config.grid_size)[None].to(
        out["pos_embed"].dtype
    )
    if not torch.allclose(out["pos_embed"], positions, atol=1e-5, rtol=0):
        raise ValueError("the checkpoint's pos_embed is not the DiT's fixed 2-D sin-cos positions")
    out["pos_embed"] = positions
    if reverse_time:
        out["t_embed.fc1.weight"] = _reversed_time_weight(out["t_embed.fc1.weight"])
        out["final.linear.weight"] = -out["final.linear.weight"]
        out["final.linear.bias"] = -out["final.linear.bias"]
    time_layer = state[key_map["t_embed.fc1.weight"]], state[key_map["t_embed.fc1.bias"]]
    out["gap_embed.fc1.weight"], out["gap_embed.fc1.bias"] = (
        v.detach().to(ours["gap_embed.fc1.weight"].dtype) for v in time_layer
    )
    out["gap_embed.fc2.weight"] = torch.zeros_like(ours["gap_embed.fc2.weight"])
    out["gap_embed.fc2.bias"] = torch.zeros_like(ours["gap_embed.fc2.bias"])
    return {name: out[name] for name in ours if name in out}


def load_sit(
    source: str | os.PathLike[str],
    *,
    weights: Literal["ema", "model"] = "ema",
    num_heads: int | None = None,
    num_classes: int | None = None,
    path: Literal["linear", "trig"] = "linear",
    guidance_embed: bool = False,
    reverse_time: bool = True,
    map_location: str | torch.device = "cpu",
) -> SolutionFlowWrapper:
    r"""A SiT flow-matching checkpoint as a SoFlow model: the pretrained velocity, ready for fine-tuning.

    Reads the file ([`read_sit_checkpoint`][soflow_toolkit.sit.read_sit_checkpoint]), builds the DiT its
    shapes describe ([`sit_config`][soflow_toolkit.sit.sit_config]), converts the weights
    ([`from_sit_state_dict`][soflow_toolkit.sit.from_sit_state_dict]) and wraps it with the euler
    parametrization. Then `model.velocity(x, t, cond=labels)` equals $-\mathrm{SiT}(x, 1 - t, y)$ (the
    pretrained velocity in this toolkit's direction), `model(x, t, s, labels)` is one Euler step of it,
    and [`SoFlowLoss`][soflow_toolkit.SoFlowLoss] fine-tunes it into a one-step model.

    Args:
        source: a SiT checkpoint file (SiT's `train.py` checkpoint or a bare state dict).
        weights: `"ema"` or `"model"` entry of a `train.py` checkpoint.
        num_heads: attention heads, for widths other than SiT's sizes.
        num_classes: classes, for a label table without the null row.
        path: the noising path SiT was trained on: `"linear"` (SiT's `Linear`, default) or `"trig"`
            (SiT's `GVP`, $\sin/\cos$ of $\pi\tau/2$, which is this toolkit's trig path in reversed time).
        guidance_embed: give the DiT a zero-initialised guidance-scale embedder (for a range of scales).
        reverse_time: see [`from_sit_state_dict`][soflow_toolkit.sit.from_sit_state_dict].
        map_location: device of the returned model.

    Returns:
        A [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] around the DiT, in eval mode.

    Raises:
        ValueError: for an unknown `path`, or a checkpoint that does not fit (see the functions above).

    Examples:
        ```python
        import torch
        from soflow_toolkit import SoFlowConfig, SoFlowLoss
        from soflow_toolkit.sit import load_sit

        model = load_sit("pretrained_models/SiT-XL-2-256x256.pt", map_location="cuda").train()
        objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=50_000))
        # ... the usual training loop: objective(model, latents, labels, null_cond=1000, generator=g)
        ```
    """
    if path not in _PATHS:
        raise ValueError(f"path must be 'linear' (SiT's Linear) or 'trig' (SiT's GVP); got {path!r}")
    state = read_sit_checkpoint(source, weights=weights)
    config = sit_config(state, num_heads=num_heads, num_classes=num_classes, guidance_embed=guidance_embed)
    backbone = DiT(config)
    backbone.load_state_dict(from_sit_state_dict(state, backbone, reverse_time=reverse_time), strict=True)
    model = SolutionFlowWrapper(backbone, path=_PATHS[path], parametrization="euler")
    return model.to(torch.device(map_location)).eval()
