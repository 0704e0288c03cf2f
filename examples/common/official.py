"""The official SoFlow checkpoints in the examples: sample them, or start a training run from one.

`sample.py --official SOURCE` samples `soflow_toolkit.pretrained.load_official(SOURCE)`; SOURCE is an
official run folder (`config.yaml` + `ckpts/<step>.pt`), a checkpoint file or a hub reference such as
`hf:zlab-princeton/SoFlow/XL-2-cond`. `train.py --init-official SOURCE` builds the run's network from
the official config and starts from the checkpoint in one of two ways:

- **fine-tune** (default): the network and its EMA start from the checkpoint's EMA weights (the
  published model); the optimizer state is fresh and the step counter, hence the curriculum
  $r(k, K)$ and the data position, starts at 0.
- **continue** (`--continue-official`): what the official `train.py` does when it resumes a run folder.
  The network starts from the checkpoint's raw weights (`model`), the EMA from `ema_model`, the
  optimizer from `optimizer` (its moments, mapped onto this run's parameters), and the step counter
  from `finished_steps`, so the curriculum continues at $r(k, K)$ with $K$ = this run's `--steps`.

Where this run already has checkpoints of its own, it resumes from them instead and the official
checkpoint is not read again; the network is then the one recorded in the run's `config.json`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soflow_toolkit import EMA, SoFlowLoss, SolutionFlowWrapper
from soflow_toolkit.models import DIT_SIZES, DiT, UNetConfig
from soflow_toolkit.pretrained import (
    OfficialCheckpoint,
    build_official,
    load_official,
    locate_official,
    official_key_map,
)

from .checkpoint import latest_checkpoint
from .distributed import DistInfo, barrier
from .sampler import ResumableSampler

__all__ = [
    "OfficialStart",
    "check_backbone",
    "dit_size",
    "load_located",
    "locate",
    "official_network",
    "official_start",
    "optimizer_state_from_official",
    "resumed_network",
    "resumes_instead",
    "unet_overrides",
]


def locate(source: str, step: int | None, info: DistInfo) -> OfficialCheckpoint:
    """`locate_official(source, step=step)` on the main rank first (it may download), then on the others.

    All ranks must call this.
    """
    found = locate_official(source, step=step) if info.is_main else None
    barrier()
    return found if found is not None else locate_official(source, step=step)


def load_located(found: OfficialCheckpoint, weights: str, device: torch.device) -> SolutionFlowWrapper:
    """`load_official` of an already located checkpoint (no second hub look-up)."""
    return load_official(found.path, config=found.config, weights=weights, map_location=device)  # type: ignore[arg-type]


def official_network(found: OfficialCheckpoint) -> SolutionFlowWrapper:
    """The network an official config describes, on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        return build_official(found.config)


def dit_size(backbone: DiT) -> str:
    """The name in `DIT_SIZES` of a DiT's shape (patch, hidden, depth, heads)."""
    cfg = backbone.config
    shape = (cfg.patch_size, cfg.hidden_size, cfg.depth, cfg.num_heads)
    names = [name for name, value in DIT_SIZES.items() if value == shape]
    if not names:
        raise ValueError(f"the official DiT has a shape that is not in DIT_SIZES: {shape}")
    return names[0]


def unet_overrides(config: UNetConfig) -> dict[str, Any]:
    """The fields of `config` that differ from `UNetConfig()` (the official network), JSON-ready."""
    default = UNetConfig()
    return {
        f.name: list(value) if isinstance(value, tuple) else value
        for f in fields(UNetConfig)
        if (value := getattr(config, f.name)) != getattr(default, f.name)
    }


def resumed_network(config: dict[str, Any], keys: tuple[str, ...]) -> bool:
    """If the run in `config["out"]` has checkpoints (and is resumed), copy `keys` from its config.json.

    Returns True when it did: the official checkpoint is then not needed.
    """
    out = Path(config["out"])
    if config["no_resume"] or latest_checkpoint(out / "checkpoints") is None:
        return False
    saved_path = out / "config.json"
    if not saved_path.is_file():
        raise ValueError(f"{out} has checkpoints but no config.json: cannot tell which network it trains")
    saved = json.loads(saved_path.read_text())
    config.update({key: saved[key] for key in keys if key in saved})
    return True


def resumes_instead(config: dict[str, Any], info: DistInfo, keys: tuple[str, ...], source: str) -> bool:
    """True when the run resumes its own checkpoints instead of starting from `source` (`keys` then
    come from its config.json, see `resumed_network`); the main rank says so."""
    if not resumed_network(config, keys):
        return False
    if info.is_main:
        print(f"{config['out']} has checkpoints: resuming them, not {source}", flush=True)
    return True


def official_start(
    config: dict[str, Any],
    info: DistInfo,
    keys: tuple[str, ...],
    describe: Callable[[SolutionFlowWrapper], dict[str, Any]],
) -> OfficialStart | None:
    """What `--init-official` starts from, shared by the examples' `train.py`.

    None without `--init-official`, or when the run in `config["out"]` resumes its own checkpoints
    (then `keys` come from its config.json, see `resumed_network`). Otherwise the checkpoint is located
    (`locate`), its network built, and `describe(network)` (the example's checks of the network
    against its data; it returns the config entries that record the network) updates `config`.
    """
    if not config["init_official"]:
        return None
    if resumes_instead(config, info, keys, config["init_official"]):
        return None
    found = locate(config["init_official"], config["official_step"], info)
    config.update(describe(official_network(found)))
    return OfficialStart(found, continue_run=bool(config["continue_official"]))


def _load_payload(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = torch.load(
        path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
    )
    return payload


def optimizer_state_from_official(
    payload: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """An official checkpoint's optimizer state, re-indexed for `optimizer` over `model.parameters()`.

    The official optimizer was built over the official network's `parameters()`, so its state is
    indexed by their order. `Module.parameters()` and `Module.state_dict()` visit the modules in the same
    order (the state dict adds each module's buffers after its parameters), so that order is the order
    of the checkpoint's `model` entry without its buffers: the keys that the conversion map names
    (the DiT's fixed `pos_embed` is an official parameter, without optimizer state; the UNet's
    resampling filters are buffers). Each moment's shape is checked against its parameter. The
    returned state keeps this run's hyper-parameters (`param_groups`: learning rate, betas, ...).

    Raises:
        ValueError: if the checkpoint has no optimizer state, or one that does not fit the network.
    """
    for key in ("model", "optimizer"):
        if key not in payload:
            raise ValueError(f"the official checkpoint has no {key!r} entry: it cannot be continued")
    wrapper = model if isinstance(model, SolutionFlowWrapper) else None
    backbone = wrapper.backbone if wrapper is not None else model
    key_map = official_key_map(backbone)  # our backbone key -> official key
    named = set(key_map.values())
    official_order = [key for key in payload["model"] if key in named]
    saved = payload["optimizer"]
    groups = saved.get("param_groups", []) if isinstance(saved, dict) else []
    indices = [index for group in groups for index in group["params"]]
    if len(indices) != len(official_order):
        raise ValueError(
            f"the official optimizer state covers {len(indices)} parameters, the official network has "
            f"{len(official_order)}: it does not belong to this checkpoint's network"
        )
    official_index = dict(zip(official_order, indices, strict=True))
    shapes = {key: tuple(payload["model"][key].shape) for key in official_order}
    prefix = "backbone." if wrapper is not None else ""
    state: dict[int, dict[str, Any]] = {}
    for position, (name, _) in enumerate(model.named_parameters()):
        official = key_map[name[len(prefix) :]]
        entry = saved["state"].get(official_index[official])
        if entry is None:
            continue  # a parameter the official run never updated
        for field, value in entry.items():
            if isinstance(value, Tensor) and value.ndim > 0 and tuple(value.shape) != shapes[official]:
                raise ValueError(
                    f"the official optimizer state of {official} ({field}) has shape {tuple(value.shape)}, "
                    f"the parameter {shapes[official]}: the checkpoint's key order is not the official one"
                )
        state[position] = dict(entry)
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


@dataclass
class OfficialStart:
    """An official checkpoint that a training run starts from (see the module docstring).

    Args:
        found: the located checkpoint (`locate`).
        continue_run: continue the official run (raw weights, optimizer state, step) instead of
            fine-tuning its EMA weights.
    """

    found: OfficialCheckpoint
    continue_run: bool = False

    def describe(self, total_steps: int) -> str:
        """A line for the log: what is loaded, and a note when the curriculum length differs."""
        mode = "continuing the official run" if self.continue_run else "fine-tuning its EMA weights"
        step = f"step {self.found.step}" if self.found.step is not None else "unknown step"
        text = f"starting from the official checkpoint {self.found.path} ({step}), {mode}"
        official_total = self.found.config.get("total_steps")
        if self.continue_run and official_total is not None and official_total != total_steps:
            text += (
                f"; note: the official run's curriculum spans {official_total} steps, this run's "
                f"{total_steps}, so r(k, K) continues on another schedule"
            )
        return text

    def init_weights(self, model: SolutionFlowWrapper) -> None:
        """Put the checkpoint's EMA weights into `model` (the network the run config describes)."""
        official = load_located(self.found, "ema", torch.device("cpu"))
        _copy_weights(official, model, self.found.path)

    def continue_state(
        self,
        model: SolutionFlowWrapper,
        ema: EMA,
        optimizer: torch.optim.Optimizer,
        objective: SoFlowLoss,
        sampler: ResumableSampler,
        total_steps: int,
    ) -> int:
        """After :meth:`init_weights` and building the EMA from it: the official run's state; its step.

        The network gets the raw weights, the optimizer the official moments, the objective, the data
        position and the EMA counter the official `finished_steps`.

        Raises:
            ValueError: if the checkpoint lacks what is needed, or has finished `total_steps` already.
        """
        payload = _load_payload(self.found.path)
        if "finished_steps" not in payload:
            raise ValueError(f"{self.found.path} has no 'finished_steps' entry: it cannot be continued")
        step = int(payload["finished_steps"])
        if step >= total_steps:
            raise ValueError(
                f"the official run finished {step} steps; --steps {total_steps} leaves nothing to train "
                "(raise --steps to continue it)"
            )
        raw = load_located(self.found, "model", torch.device("cpu"))
        _copy_weights(raw, model, self.found.path)
        optimizer.load_state_dict(optimizer_state_from_official(payload, model, optimizer))
        objective.load_state_dict({"step": step})
        sampler.position = step
        ema.num_calls = step
        return step


def _copy_weights(source: SolutionFlowWrapper, target: SolutionFlowWrapper, path: Path) -> None:
    if source.backbone.config != target.backbone.config:
        raise ValueError(
            f"{path} holds a {source.backbone.config}, the run builds a {target.backbone.config}"
        )
    target.load_state_dict(source.state_dict())


def check_backbone(backbone: nn.Module, kind: type[nn.Module], example: str, script: str) -> None:
    """Refuse an official network of another kind than the example trains."""
    if not isinstance(backbone, kind):
        raise ValueError(
            f"{example} trains and samples a {kind.__name__}; the official checkpoint holds a "
            f"{type(backbone).__name__} ({script})"
        )
