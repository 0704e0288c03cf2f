"""Official run configs (`config.yaml`) and the networks they describe, both ways."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from ..models import DIT_SIZES, DiT, DiTConfig, UNet, UNetConfig
from ..wrapper import SolutionFlowWrapper, unwrap_model
from .keys import _refuse_guidance_embed

_DIT_TYPES = {"DiT-B-4": "B/4", "DiT-B-2": "B/2", "DiT-M-2": "M/2", "DiT-L-2": "L/2", "DiT-XL-2": "XL/2"}
_DATASETS = {"Imagenet": (4, 1000), "CIFAR10": (3, 10)}  # dataset_type -> (channels, classes)
_PATHS = {"Linear": "linear", "Trig": "trig"}
# The official Scheduler treats every coefficient_type but 'Euler' as trigonometric; its config
# comments call it 'Triangular'.
_PARAMETRIZATIONS = {"Euler": "euler", "Trig": "trig", "Triangular": "trig"}
_UNET_TEMPLATE = UNetConfig()  # the official CIFAR-10 network; image size and channels from the config
_REQUIRED = ("model_type", "dataset_type", "data_size", "noising_type", "coefficient_type")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        raise ImportError(
            f"reading {path} needs PyYAML: pip install 'soflow-toolkit[pretrained]' (or pyyaml), "
            "or pass config= as a dict"
        ) from None
    with path.open(encoding="utf-8") as file:
        data = yaml.safe_load(file)
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} is not an official SoFlow config: expected a mapping, got {type(data).__name__}"
        )
    return data


def _as_config(config: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    if isinstance(config, Mapping):
        data = dict(config)
    elif isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = _read_yaml(path)
    else:
        raise TypeError(f"config must be a mapping or a path to config.yaml; got {type(config).__name__}")
    missing = [key for key in _REQUIRED if key not in data]
    if data.get("model_type") != "UNet" and "cfg_drop_rate" not in data:
        missing.append("cfg_drop_rate")
    if missing:
        raise ValueError(f"the config is not an official SoFlow config: it lacks {missing}")
    return data


def _choice(config: Mapping[str, Any], key: str, options: Mapping[str, Any]) -> Any:
    value = config[key]
    if value not in options:
        raise ValueError(f"unknown {key} {value!r} in the config; the official code accepts {list(options)}")
    return options[value]


def _official_backbone(config: Mapping[str, Any]) -> DiT | UNet:
    channels, classes = _choice(config, "dataset_type", _DATASETS)
    size = config["data_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"data_size must be a positive int; got {size!r}")
    if config["model_type"] == "UNet":
        return UNet(replace(_UNET_TEMPLATE, image_size=size, in_channels=channels))
    name = _choice(config, "model_type", {**_DIT_TYPES, "UNet": None})
    drop = config["cfg_drop_rate"]
    if isinstance(drop, bool) or not isinstance(drop, (int, float)):
        raise ValueError(f"cfg_drop_rate must be a number; got {drop!r}")
    dit_config = DiTConfig.from_size(
        name, input_size=size, in_channels=channels, num_classes=classes, null_class=drop > 0
    )
    return DiT(dit_config)


def build_official(config: Mapping[str, Any] | str | os.PathLike[str]) -> SolutionFlowWrapper:
    """The network an official config describes, freshly initialised, in the official wrapper.

    The backbone is [`DiT`][soflow_toolkit.models.DiT] (`model_type` `DiT-B-4`, `DiT-B-2`, `DiT-M-2`,
    `DiT-L-2`, `DiT-XL-2`; 4 channels and 1000 classes for `dataset_type: Imagenet`, 3 and 10 for
    `CIFAR10`; the null-class row when `cfg_drop_rate > 0`) or [`UNet`][soflow_toolkit.models.UNet]
    (`model_type: UNet`, the official CIFAR-10 network); the path is `noising_type` (`Linear`, `Trig`),
    the parametrization `coefficient_type` (`Euler`, `Trig`).

    Args:
        config: the official config: a mapping or the path of a `config.yaml`.

    Returns:
        A [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] in training mode (as constructors return).

    Raises:
        ValueError: for a config that lacks a key or has a value the official code does not accept.

    Examples:
        >>> import torch
        >>> cfg = {"model_type": "DiT-B-4", "dataset_type": "Imagenet", "data_size": 32,
        ...        "noising_type": "Trig", "coefficient_type": "Trig", "cfg_drop_rate": 0.1}
        >>> with torch.device("meta"):
        ...     model = build_official(cfg)
        >>> model.path.name, model.parametrization.name
        ('trig', 'trig')
        >>> model.backbone.extra_repr()
        'patch=4, hidden=768, depth=12, heads=12, input=4x32x32, classes=1000 + null'
    """
    data = _as_config(config)
    path = _choice(data, "noising_type", _PATHS)
    parametrization = _choice(data, "coefficient_type", _PARAMETRIZATIONS)
    return SolutionFlowWrapper(_official_backbone(data), path=path, parametrization=parametrization)


def official_config(model: nn.Module, *, working_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The official config keys that describe `model`, for the official inference script.

    Returns `model_type`, `dataset_type`, `data_size`, `noising_type`, `coefficient_type` and
    `cfg_drop_rate` (0.1 when the DiT has a null class, the official ImageNet rate: the network only
    needs it to be positive), plus `working_dir` when given (the official inference script reads
    `<working_dir>/ckpts/<step>.pt`).

    Args:
        model: a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] around a
            [`DiT`][soflow_toolkit.models.DiT] or [`UNet`][soflow_toolkit.models.UNet] (possibly
            inside DDP or `torch.compile`).
        working_dir: the run folder to name in the config.

    Raises:
        TypeError: if `model` is not such a wrapper.
        ValueError: for a network the official code cannot build (another size, channel or class
            count, a guidance-scale embedder, a custom path or parametrization).

    Examples:
        >>> import torch
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> from soflow_toolkit.models import UNet
        >>> with torch.device("meta"):
        ...     model = SolutionFlowWrapper(UNet())
        >>> official_config(model)["model_type"]
        'UNet'
    """
    wrapper = unwrap_model(model)
    backbone = wrapper.backbone
    paths = {v: k for k, v in _PATHS.items()}
    parametrizations = {"euler": "Euler", "trig": "Trig"}
    if wrapper.path.name not in paths or wrapper.parametrization.name not in parametrizations:
        raise ValueError(
            f"the official code supports the paths {list(paths)} and parametrizations "
            f"{list(parametrizations)}; got {wrapper.path.name!r} and {wrapper.parametrization.name!r}"
        )
    out: dict[str, Any] = {}
    if isinstance(backbone, DiT):
        _refuse_guidance_embed(backbone)
        cfg = backbone.config
        shape = (cfg.patch_size, cfg.hidden_size, cfg.depth, cfg.num_heads)
        names = {DIT_SIZES[size]: model_type for model_type, size in _DIT_TYPES.items()}
        if shape not in names or cfg.mlp_ratio != 4.0 or cfg.frequency_dim != 256:
            raise ValueError(f"the official code has no DiT of this shape: {cfg}")
        datasets = {v: k for k, v in _DATASETS.items()}
        if (cfg.in_channels, cfg.num_classes) not in datasets:
            raise ValueError(
                "the official DiT has 4 channels and 1000 classes (Imagenet) or 3 and 10 (CIFAR10); got "
                f"{cfg.in_channels} and {cfg.num_classes}"
            )
        out.update(
            model_type=names[shape],
            dataset_type=datasets[(cfg.in_channels, cfg.num_classes)],
            data_size=cfg.input_size,
            cfg_drop_rate=0.1 if cfg.null_class else 0.0,
        )
    elif isinstance(backbone, UNet):
        cfg_u = backbone.config
        official = replace(_UNET_TEMPLATE, image_size=cfg_u.image_size, in_channels=cfg_u.in_channels)
        if cfg_u != official or cfg_u.in_channels not in (3, 4):
            raise ValueError(f"the official code has one UNet, {official}; got {cfg_u}")
        out.update(
            model_type="UNet",
            dataset_type="CIFAR10" if cfg_u.in_channels == 3 else "Imagenet",
            data_size=cfg_u.image_size,
            cfg_drop_rate=0.0,
        )
    else:
        raise ValueError(
            f"the official code has a DiT or a UNet of soflow_toolkit.models; got {type(backbone).__name__}"
        )
    out.update(
        noising_type=paths[wrapper.path.name], coefficient_type=parametrizations[wrapper.parametrization.name]
    )
    if working_dir is not None:
        out["working_dir"] = str(working_dir)
    return out
