"""Reading SiT checkpoints, the DiT config their shapes describe, and `load_sit`."""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ..models import DiT, DiTConfig
from ..wrapper import SolutionFlowWrapper
from .keys import _PATHS, SIT_NUM_HEADS, _strip_prefix, from_sit_state_dict


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
        >>> shapes = {
        ...     "x_embedder.proj.weight": (1152, 4, 2, 2),
        ...     "pos_embed": (1, 256, 1152),
        ...     "t_embedder.mlp.0.weight": (1152, 256),
        ...     "blocks.0.mlp.fc1.weight": (4608, 1152),
        ...     "y_embedder.embedding_table.weight": (1001, 1152),
        ... }
        >>> state = {key: torch.zeros(shape) for key, shape in shapes.items()}
        >>> state.update({f"blocks.{i}.attn.qkv.weight": torch.zeros(1) for i in range(28)})
        >>> c = sit_config(state)
        >>> c.patch_size, c.hidden_size, c.depth, c.num_heads, c.input_size, c.num_classes
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
