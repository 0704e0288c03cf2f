"""The conversion map from SiT's parameter names to the DiT's, and the weights with time reversed."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..models import DiT, grid_positions_2d
from ..wrapper import unwrap_model

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
