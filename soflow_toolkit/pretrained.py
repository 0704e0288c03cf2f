r"""The official SoFlow checkpoints: load them as a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper], and back.

The official code (`github.com/zlab-princeton/SoFlow`, Luo, Yuan & Liu, arXiv 2512.15657) saves a run
folder `config.yaml` + `ckpts/<step>.pt`, each checkpoint a `torch.save` dict with `model`,
`ema_model`, `optimizer`, `finished_steps`, `finished_epochs`; `model` and `ema_model` are state dicts
of its whole `Soflow` module, so the network's keys start with `network.`. Its checkpoints are public
on the Hugging Face hub (repository `zlab-princeton/SoFlow`, run folders `XL-2-cond`, `UNet-uncond`).

- [`load_official`][soflow_toolkit.pretrained.load_official]: a run folder, a checkpoint file or `"hf:zlab-princeton/SoFlow/XL-2-cond"` ->
  a wrapper with the official path and parametrization whose `model(x, t, s, cond=labels)` is the
  official `Soflow.solution_operator(x, t, s, labels)` and `model.velocity(x, t, cond=labels)` its
  `predict_velocity`.
- [`to_official_state_dict`][soflow_toolkit.pretrained.to_official_state_dict] and [`official_config`][soflow_toolkit.pretrained.official_config]: the other way, so that the official
  inference script runs a model trained here.
- [`official_key_map`][soflow_toolkit.pretrained.official_key_map]: the conversion map between this package's parameter names
  ([`soflow_toolkit.models`][soflow_toolkit.models]) and the official ones.

Reading `config.yaml` needs PyYAML (`pip install "soflow-toolkit[pretrained]"`), hub references also
`huggingface_hub` (`pip install "soflow-toolkit[hub]"`).
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .models import DIT_SIZES, DiT, DiTConfig, UNet, UNetBlock, UNetConfig
from .wrapper import SolutionFlowWrapper, unwrap_model

__all__ = [
    "OfficialCheckpoint",
    "build_official",
    "from_official_state_dict",
    "load_official",
    "locate_official",
    "official_config",
    "official_key_map",
    "to_official_state_dict",
]

PREFIX = "network."  # the official Soflow module holds its backbone as `network`
CHECKPOINT_KEYS = ("model", "ema_model", "optimizer", "finished_steps", "finished_epochs")
_WEIGHT_KEYS = {"ema": "ema_model", "model": "model"}
_DIT_TYPES = {"DiT-B-4": "B/4", "DiT-B-2": "B/2", "DiT-M-2": "M/2", "DiT-L-2": "L/2", "DiT-XL-2": "XL/2"}
_DATASETS = {"Imagenet": (4, 1000), "CIFAR10": (3, 10)}  # dataset_type -> (channels, classes)
_PATHS = {"Linear": "linear", "Trig": "trig"}
# The official Scheduler treats every coefficient_type but 'Euler' as trigonometric; its config
# comments call it 'Triangular'.
_PARAMETRIZATIONS = {"Euler": "euler", "Trig": "trig", "Triangular": "trig"}
_UNET_TEMPLATE = UNetConfig()  # the official CIFAR-10 network; image size and channels from the config
_REQUIRED = ("model_type", "dataset_type", "data_size", "noising_type", "coefficient_type")


# ---------------------------------------------------------------------------------------------------
# Configs and networks


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


# ---------------------------------------------------------------------------------------------------
# The conversion map

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
# Locating and loading checkpoints


@dataclass(frozen=True)
class OfficialCheckpoint:
    """A located official checkpoint: the local file, its run's config and its step.

    Attributes:
        path: the local `.pt` file (in the hub cache for hub references).
        config: the run's official config (the keys of `config.yaml`).
        step: the training step in the file name (`ckpts/<step>.pt`), or None for another name.

    Examples:
        >>> from pathlib import Path
        >>> found = OfficialCheckpoint(Path("run/ckpts/400000.pt"), {"network": "DiT-B-4"}, 400000)
        >>> found.step
        400000
    """

    path: Path
    config: dict[str, Any]
    step: int | None


def _steps(names: list[str]) -> dict[int, str]:
    """`{step: name}` of the names `<int>.pt`."""
    out: dict[int, str] = {}
    for name in names:
        stem, dot, ext = name.rpartition(".")
        if dot and ext == "pt" and stem.isdigit():
            out[int(stem)] = name
    return out


def _pick_step(available: dict[int, str], step: int | None, where: str) -> int:
    if not available:
        raise FileNotFoundError(f"no checkpoints <step>.pt in {where}")
    if step is None:
        return max(available)
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int or None; got {type(step).__name__}")
    if step not in available:
        raise FileNotFoundError(f"no checkpoint for step {step} in {where}; available: {sorted(available)}")
    return step


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            "hub references (hf:...) need huggingface_hub: pip install 'soflow-toolkit[hub]'; or download "
            "the run folder (config.yaml and ckpts/<step>.pt) and pass its path"
        ) from None
    return huggingface_hub


def _locate_hub(reference: str, step: int | None, config: Any) -> OfficialCheckpoint:
    parts = [part for part in reference[len("hf:") :].split("/") if part]
    if len(parts) < 2:
        raise ValueError(f"a hub reference is 'hf:<owner>/<repository>[/<run folder>]'; got {reference!r}")
    repo_id, folder = "/".join(parts[:2]), "/".join(parts[2:])
    hub = _hub()
    prefix = f"{folder}/" if folder else ""
    where = f"{reference} (ckpts/)"
    if step is None:
        try:
            files = hub.list_repo_files(repo_id)
        except Exception as err:  # the hub raises many kinds (HTTP, connection, offline mode)
            raise RuntimeError(
                f"could not list the files of the hub repository {repo_id} ({type(err).__name__}: {err}); "
                "offline? Pass step= to use a checkpoint in the local hub cache, or pass a local run folder"
            ) from err
        ckpts = [name[len(prefix + "ckpts/") :] for name in files if name.startswith(prefix + "ckpts/")]
        chosen = _pick_step(_steps([name for name in ckpts if "/" not in name]), None, where)
    else:
        chosen = _pick_step({step: f"{step}.pt"}, step, where)

    def download(filename: str) -> Path:
        try:
            return Path(hub.hf_hub_download(repo_id=repo_id, filename=prefix + filename))
        except Exception as err:
            raise RuntimeError(
                f"could not download {prefix + filename} from the hub repository {repo_id} "
                f"({type(err).__name__}: {err}); offline and not in the local hub cache?"
            ) from err

    data = _as_config(config if config is not None else download("config.yaml"))
    return OfficialCheckpoint(path=download(f"ckpts/{chosen}.pt"), config=data, step=chosen)


def locate_official(
    source: str | os.PathLike[str],
    *,
    step: int | None = None,
    config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> OfficialCheckpoint:
    """Find an official checkpoint and read its config (downloading both for hub references).

    Args:
        source: a run folder (`config.yaml` + `ckpts/<step>.pt`), a checkpoint file (its config is
            `../../config.yaml` from the file), or a hub reference `"hf:<owner>/<repo>/<run folder>"`
            (e.g. `"hf:zlab-princeton/SoFlow/XL-2-cond"`; only `config.yaml` and the one checkpoint
            are downloaded).
        step: the checkpoint's step; default: the newest. Not for a checkpoint file.
        config: the config instead of the run's `config.yaml`: a mapping or a path.

    Returns:
        An [`OfficialCheckpoint`][soflow_toolkit.pretrained.OfficialCheckpoint].

    Raises:
        FileNotFoundError: for a source, config or step that does not exist.
        ValueError: for `step=` with a checkpoint file, a malformed hub reference or config.
        ImportError: for hub references without `huggingface_hub`, or `config.yaml` without PyYAML.
        RuntimeError: when the hub cannot be reached (offline) and the files are not cached.

    Examples:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())  # an official run folder: config.yaml and ckpts/<step>.pt
        >>> (run / "ckpts").mkdir()
        >>> _ = (run / "config.yaml").write_text(
        ...     "model_type: DiT-B-4\\ndataset_type: Imagenet\\ndata_size: 32\\nnoising_type: Linear\\n"
        ...     "coefficient_type: Euler\\ncfg_drop_rate: 0.1\\n"
        ... )
        >>> for name in ("1000.pt", "2000.pt"):
        ...     _ = (run / "ckpts" / name).write_bytes(b"")
        >>> found = locate_official(run)  # the newest step unless step= is given
        >>> found.step, found.path.name, found.config["model_type"]
        (2000, '2000.pt', 'DiT-B-4')
    """
    if isinstance(source, str) and source.startswith("hf:"):
        return _locate_hub(source, step, config)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or a hub reference 'hf:...'; got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        ckpts = path / "ckpts"
        names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
        chosen: int | None = _pick_step(_steps(names), step, str(ckpts))
        file, config_path = ckpts / f"{chosen}.pt", path / "config.yaml"
    elif path.is_file():
        if step is not None:
            raise ValueError(f"step= selects a checkpoint of a run folder; {path} is a checkpoint file")
        file, config_path = path, path.parent.parent / "config.yaml"
        chosen_step = _steps([path.name])
        chosen = next(iter(chosen_step)) if chosen_step else None
    else:
        raise FileNotFoundError(f"{path} is neither a run folder nor a checkpoint file")
    if config is None and not config_path.is_file():
        raise FileNotFoundError(f"no config at {config_path}: pass config= (a path or a dict)")
    data = _as_config(config if config is not None else config_path)
    return OfficialCheckpoint(path=file, config=data, step=chosen)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    # mmap: only the tensors that are used are read (an XL/2 file also holds the optimizer's moments).
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path} is not an official SoFlow checkpoint: it does not load with torch.load("
            f"weights_only=True) ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(payload, dict):
        raise ValueError(
            f"{path} is not an official SoFlow checkpoint: expected a dict with {list(CHECKPOINT_KEYS)}, "
            f"got a {type(payload).__name__}"
        )
    return payload


def load_official(
    source: str | os.PathLike[str],
    *,
    weights: Literal["ema", "model"] = "ema",
    step: int | None = None,
    config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    map_location: str | torch.device = "cpu",
) -> SolutionFlowWrapper:
    r"""Load an official SoFlow checkpoint as a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper].

    The wrapper has the run's path (`noising_type`) and parametrization (`coefficient_type`) and is in
    eval mode (call `.train()` to fine-tune; parameters require gradients). For the same weights and
    inputs, `model(x, t, s, cond=labels)` equals the official `Soflow.solution_operator(x, t, s,
    labels)` and `model.velocity(x, t, cond=labels)` its `predict_velocity(x, t, labels)`;
    `cond=None` is the null class of the DiT and the only input of the unconditional UNet.

    Args:
        source: a run folder, a checkpoint file or a hub reference, as for [`locate_official`][soflow_toolkit.pretrained.locate_official].
        weights: `"ema"` (the `ema_model` entry, what the official inference samples) or `"model"`.
        step: the step of the checkpoint in a run folder or hub reference; default: the newest.
        config: the config instead of the run's `config.yaml` (a mapping or a path).
        map_location: the device of the returned model.

    Returns:
        The model, with the checkpoint's weights, on `map_location`.

    Raises:
        ValueError: for an unknown `weights`, a file that is not an official checkpoint (no dict, or no
            `ema_model` / `model` entry; the message names what is missing), or weights that do not
            fit the config's network; see also [`locate_official`][soflow_toolkit.pretrained.locate_official].

    Examples:
        One-step samples of the published DiT-XL/2 (downloads about 2.7 GB of weights once; the
        test suite runs the same calls on small official-format run folders):

        ```python
        import torch
        from soflow_toolkit import sample
        from soflow_toolkit.pretrained import load_official

        model = load_official("hf:zlab-princeton/SoFlow/XL-2-cond", map_location="cuda")
        labels = torch.randint(0, 1000, (8,), device="cuda")
        latents = sample(model, torch.randn(8, 4, 32, 32, device="cuda"), steps=1, cond=labels)
        ```
    """
    if weights not in _WEIGHT_KEYS:
        raise ValueError(f"weights must be 'ema' or 'model'; got {weights!r}")
    checkpoint = locate_official(source, step=step, config=config)
    model = build_official(checkpoint.config)
    payload = _read_checkpoint(checkpoint.path)
    key = _WEIGHT_KEYS[weights]
    if key not in payload:
        missing = [k for k in CHECKPOINT_KEYS if k not in payload]
        raise ValueError(
            f"{checkpoint.path} is not an official SoFlow checkpoint: it lacks {missing} "
            f"(weights={weights!r} reads {key!r}); it holds {sorted(map(str, payload))[:8]}"
        )
    state = from_official_state_dict(payload[key], model.backbone)
    model.backbone.load_state_dict(state)
    return model.to(torch.device(map_location)).eval()
