"""The conversion map between this package's parameter names and the official ones, and state dicts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..models import DiT, UNet, UNetBlock
from ..wrapper import unwrap_model

PREFIX = "network."  # the official Soflow module holds its backbone as `network`


_DIT_RENAMES = (  # (ours, official) module prefixes, first match wins
    ("patch_embed.", "x_embedder.proj."),
    ("t_embed.fc1.", "t_embedder.mlp.0."),
    ("t_embed.fc2.", "t_embedder.mlp.2."),
    ("gap_embed.fc1.", "s_embedder.mlp.0."),
    ("gap_embed.fc2.", "s_embedder.mlp.2."),
    ("label_embed.", "y_embedder.embedding_table."),
    ("final.modulation.", "final_layer.adaLN_modulation.1."),
    ("final.linear.", "final_layer.linear."),
)
_DIT_BLOCK = re.compile(
    r"^blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|modulation)\.(weight|bias)$"
)
_UNET_BLOCK_PARTS = {
    "norm1": "norm0",
    "conv1": "conv0",
    "emb_proj": "affine",
    "norm2": "norm1",
    "conv2": "conv1",
    "skip": "skip",
    "attn_norm": "norm2",
    "qkv": "qkv",
    "attn_proj": "proj",
}
_UNET_BLOCK = re.compile(r"^(encoder|decoder)\.(\d+)\.(\w+)\.(weight|bias)$")


def _dit_official_name(name: str) -> str | None:
    if name == "pos_embed":
        return "pos_embed"
    for ours, theirs in _DIT_RENAMES:
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    match = _DIT_BLOCK.match(name)
    if match is None:
        return None
    index, part, leaf = match.groups()
    part = "adaLN_modulation.1" if part == "modulation" else part
    return f"blocks.{index}.{part}.{leaf}"


def _unet_official_name(backbone: UNet, name: str) -> str | None:
    res = backbone.config.image_size
    simple = {
        "augment_embed.weight": "map_augment.weight",
        "embed_fc1.weight": "map_layer0.weight",
        "embed_fc1.bias": "map_layer0.bias",
        "embed_fc2.weight": "map_layer1.weight",
        "embed_fc2.bias": "map_layer1.bias",
        "conv_in.weight": f"enc.{res}x{res}_conv.weight",
        "conv_in.bias": f"enc.{res}x{res}_conv.bias",
        "norm_out.weight": f"dec.{res}x{res}_aux_norm.weight",
        "norm_out.bias": f"dec.{res}x{res}_aux_norm.bias",
        "conv_out.weight": f"dec.{res}x{res}_aux_conv.weight",
        "conv_out.bias": f"dec.{res}x{res}_aux_conv.bias",
    }
    if name in simple:
        return simple[name]
    match = _UNET_BLOCK.match(name)
    if match is None or match[3] not in _UNET_BLOCK_PARTS:
        return None
    side, index, part, leaf = match.groups()
    labels = backbone.encoder_labels if side == "encoder" else backbone.decoder_labels
    return f"{'enc' if side == 'encoder' else 'dec'}.{labels[int(index)]}.{_UNET_BLOCK_PARTS[part]}.{leaf}"


def _backbone_of(model: nn.Module) -> DiT | UNet:
    if isinstance(model, (DiT, UNet)):
        return model
    backbone = unwrap_model(model).backbone
    if not isinstance(backbone, (DiT, UNet)):
        raise TypeError(
            f"the official networks are soflow_toolkit.models.DiT and UNet; got a {type(backbone).__name__} backbone"
        )
    return backbone


def official_key_map(model: nn.Module) -> dict[str, str]:
    """The conversion map: each state-dict key of the backbone -> its key in an official checkpoint.

    Official keys carry the `network.` prefix of the official `Soflow` module. The map is one-to-one;
    the official UNet additionally stores its fixed resampling filters (`...resample_filter`), which
    [`to_official_state_dict`][soflow_toolkit.pretrained.to_official_state_dict] writes and [`from_official_state_dict`][soflow_toolkit.pretrained.from_official_state_dict] checks.

    Args:
        model: a [`DiT`][soflow_toolkit.models.DiT] or [`UNet`][soflow_toolkit.models.UNet], or a
            wrapper around one.

    Returns:
        `{our key: official key}`, in the order of the backbone's state dict.

    Raises:
        TypeError: for another backbone.
        ValueError: if the backbone has parameters the official network does not have (e.g. the
            guidance-scale embedder of `DiTConfig(guidance_embed=True)`).

    Examples:
        >>> from soflow_toolkit.models import DiT
        >>> key_map = official_key_map(DiT.from_size("T/4", input_size=8))
        >>> key_map["gap_embed.fc1.weight"], key_map["blocks.1.modulation.bias"]
        ('network.s_embedder.mlp.0.weight', 'network.blocks.1.adaLN_modulation.1.bias')
    """
    backbone = _backbone_of(model)
    _refuse_guidance_embed(backbone)
    return _key_map(backbone)


def _key_map(backbone: DiT | UNet) -> dict[str, str]:
    """`official_key_map` without the guidance-embedder check; `guidance_embed.*` keys are skipped."""
    out: dict[str, str] = {}
    unknown: list[str] = []
    for name in backbone.state_dict():
        if name.startswith("guidance_embed.") and isinstance(backbone, DiT):
            continue
        official = (
            _dit_official_name(name) if isinstance(backbone, DiT) else _unet_official_name(backbone, name)
        )
        if official is None:
            unknown.append(name)
        else:
            out[name] = PREFIX + official
    if unknown:
        raise ValueError(f"the official network has no counterpart for these parameters: {unknown[:8]}")
    return out


def _refuse_guidance_embed(backbone: nn.Module) -> None:
    if isinstance(backbone, DiT) and backbone.config.guidance_embed:
        raise ValueError(
            "this DiT has a guidance-scale embedder (DiTConfig(guidance_embed=True), for a range of "
            "guidance scales), which the official network lacks: the official format holds only DiTs "
            "built with guidance_embed=False"
        )


def _official_constants(backbone: DiT | UNet) -> dict[str, Tensor]:
    """State the official network stores but this package recomputes: the UNet's resampling filters."""
    if isinstance(backbone, DiT):
        return {}
    out: dict[str, Tensor] = {}
    for side, labels, blocks in (
        ("enc", backbone.encoder_labels, backbone.encoder),
        ("dec", backbone.decoder_labels, backbone.decoder),
    ):
        for label, block in zip(labels, blocks, strict=True):
            if isinstance(block, UNetBlock) and block.resample is not None:
                kernel = block.resample.kernel.detach().to(torch.float32)
                out[f"{PREFIX}{side}.{label}.conv0.resample_filter"] = kernel
                out[f"{PREFIX}{side}.{label}.skip.resample_filter"] = kernel
    return out


def to_official_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The state dict of the official `Soflow` module holding this network (keys `network.…`).

    Save it as `ema_model` (and `model`) of a checkpoint `<run>/ckpts/<step>.pt`, next to a
    `<run>/config.yaml` with [`official_config`][soflow_toolkit.pretrained.official_config] (`working_dir=<run>`), and the official
    `inference.py --config <run>/config.yaml --ckpt-steps <step>` samples it. To export EMA weights,
    copy them into the model first ([`soflow_toolkit.EMA.copy_to`][soflow_toolkit.EMA.copy_to]).

    Args:
        model: a [`DiT`][soflow_toolkit.models.DiT] or [`UNet`][soflow_toolkit.models.UNet], or a
            wrapper around one.

    Returns:
        `{official key: tensor}` (detached; tensors share storage with the model's).

    Raises:
        TypeError, ValueError: as [`official_key_map`][soflow_toolkit.pretrained.official_key_map].

    Examples:
        >>> from soflow_toolkit.models import DiT
        >>> net = DiT.from_size("T/4", input_size=8)
        >>> state = to_official_state_dict(net)
        >>> state["network.y_embedder.embedding_table.weight"].shape  # 1000 classes + the null class
        torch.Size([1001, 64])
        >>> from_official_state_dict(state, net).keys() == net.state_dict().keys()
        True
    """
    backbone = _backbone_of(model)
    key_map = official_key_map(backbone)
    state = backbone.state_dict()
    out = {key_map[name]: value.detach() for name, value in state.items()}
    out.update(_official_constants(backbone))
    return out


def from_official_state_dict(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """Convert an official state dict (of the `Soflow` module, keys `network.…`) to `model`'s names.

    Every key and shape is checked: the result loads with `load_state_dict(strict=True)`. A DiT with a
    guidance-scale embedder (`DiTConfig(guidance_embed=True)`) receives the official weights and keeps
    its embedder at zero output, so it starts as the official network for every scale.

    Args:
        state_dict: the `model` or `ema_model` entry of an official checkpoint.
        model: the receiving [`DiT`][soflow_toolkit.models.DiT] or [`UNet`][soflow_toolkit.models.UNet]
            (or a wrapper around one), of the architecture the checkpoint was trained with.

    Returns:
        `{our key: tensor}`.

    Raises:
        ValueError: if keys lack the `network.` prefix, keys are missing or unexpected, shapes differ,
            or the stored resampling filters are not the network's.
        TypeError: for values that are not tensors.

    Examples:
        >>> from soflow_toolkit.models import DiT
        >>> net = DiT.from_size("T/4", input_size=8)
        >>> ours = from_official_state_dict(to_official_state_dict(net), net)
        >>> net.load_state_dict(ours, strict=True)
        <All keys matched successfully>
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"expected an official state dict (a mapping); got {type(state_dict).__name__}")
    bare = [key for key in state_dict if not str(key).startswith(PREFIX)]
    if bare:
        raise ValueError(
            f"not a state dict of the official Soflow module: keys must start with {PREFIX!r} "
            f"(the backbone), e.g. {bare[:3]}"
        )
    for key, value in state_dict.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{key!r} of the official state dict is a {type(value).__name__}, not a tensor")
    backbone = _backbone_of(model)
    key_map = _key_map(backbone)  # a DiT with a guidance embedder takes the rest from its load hook
    ours = backbone.state_dict()
    constants = _official_constants(backbone)
    missing = [k for k in (*key_map.values(), *constants) if k not in state_dict]
    unexpected = [k for k in state_dict if k not in constants and k not in set(key_map.values())]
    if missing or unexpected:
        raise ValueError(
            f"the official state dict does not fit this {type(backbone).__name__} "
            f"({len(missing)} keys missing, {len(unexpected)} unexpected; missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}): does the config describe this checkpoint?"
        )
    out: dict[str, Tensor] = {}
    for name, official in key_map.items():
        value = state_dict[official]
        if value.shape != ours[name].shape:
            raise ValueError(
                f"{official} has shape {tuple(value.shape)} in the checkpoint but {tuple(ours[name].shape)} "
                "in the network the config describes"
            )
        out[name] = value
    for key, expected in constants.items():
        stored = state_dict[key]
        if stored.shape != expected.shape or not torch.equal(stored.to(expected), expected):
            raise ValueError(f"{key} differs from the network's resampling filter")
    return out


# ---------------------------------------------------------------------------------------------------
