"""Checkpoints that resume a run exactly, loadable with `torch.load(weights_only=True)`.

A checkpoint holds everything a training step depends on: the model, the EMA, the optimizer, the
objective's curriculum step, the data position and, for every rank, the states of its random
generators (the global CPU/CUDA generators used by dropout, and the named generators of the script).
Only tensors, dicts, lists, ints, floats and strings are stored; the run's configuration is a JSON
string. Files are written atomically (a temporary file, then a rename), so a run killed while saving
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soflow_toolkit import EMA, SoFlowLoss

from .distributed import DistInfo, barrier, gather_objects
from .sampler import ResumableSampler

_NAME = re.compile(r"ckpt-(\d+)\.pt")


def capture_rng(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, Tensor]:
    """This process's random states: the global CPU (and CUDA) generator and each named generator."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    for name, generator in generators.items():
        state[f"gen.{name}"] = generator.get_state()
    return state


def restore_rng(
    state: Mapping[str, Tensor], generators: Mapping[str, torch.Generator], device: torch.device
) -> None:
    """Restore what :func:`capture_rng` captured."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    for name, generator in generators.items():
        generator.set_state(state[f"gen.{name}"])


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:07d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """`(step, path)` of the checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.fullmatch(p.name))]
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def check_resume(saved: Mapping[str, Any], config: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse to resume a checkpoint whose settings `keys` differ from this run's."""
    changed = [key for key in keys if saved.get(key) != config.get(key)]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ValueError(f"the checkpoint was trained with other settings ({details}); use another --out")


def load_weights(model: nn.Module, payload: Mapping[str, Any], weights: str = "ema") -> None:
    """Put a checkpoint's EMA (`weights="ema"`) or raw (`"model"`) weights into `model`."""
    if weights == "ema":
        ema = EMA(model)
        ema.load_state_dict(payload["ema"])
        ema.copy_to(model)
    elif weights == "model":
        model.load_state_dict(payload["model"])
    else:
        raise ValueError(f"weights must be 'ema' or 'model'; got {weights!r}")


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint on the CPU with `weights_only=True`."""
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return payload


class TrainState:
    """Everything a run saves and restores, with the collectives that gather every rank's RNG.

    Args:
        model: the module whose weights are trained (not its DDP wrapper).
        ema: the weight average.
        optimizer: the optimizer.
        objective: the SoFlow objective (holds the curriculum step).
        sampler: the data sampler (holds the data position).
        generators: the script's named random generators (e.g. latent noise, objective draws).
        config: the run's settings (JSON-serialisable), stored with each checkpoint.
        dist: this process's rank and device.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        ema: EMA,
        optimizer: torch.optim.Optimizer,
        objective: SoFlowLoss,
        sampler: ResumableSampler,
        generators: Mapping[str, torch.Generator],
        config: Mapping[str, Any],
        dist: DistInfo,
    ) -> None:
        self.model = model
        self.ema = ema
        self.optimizer = optimizer
        self.objective = objective
        self.sampler = sampler
        self.generators = dict(generators)
        self.config = dict(config)
        self.dist = dist

    def save(self, directory: Path, step: int, *, keep: int = 0) -> Path:
        """Write `ckpt-<step>.pt` (rank 0) after gathering every rank's RNG; keep the last `keep` (0: all).

        Every rank must call this at the same step (it is a collective).
        """
        rng = gather_objects(capture_rng(self.generators, self.dist.device))
        path = checkpoint_path(directory, step)
        if self.dist.is_main:
            payload = {
                "step": step,
                "world_size": self.dist.world_size,
                "config": json.dumps(self.config, sort_keys=True),
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "objective": self.objective.state_dict(),
                "data": self.sampler.state_dict(),
                "rng": rng,
            }
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(payload, tmp)
            os.replace(tmp, path)
            if keep > 0:
                for _, old in list_checkpoints(directory)[:-keep]:
                    old.unlink(missing_ok=True)
        barrier()
        return path

    def save_config(self, directory: Path) -> None:
        """Write the run's settings to `<directory>/config.json` (main rank)."""
        if self.dist.is_main:
            directory.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.config, indent=2, sort_keys=True, default=str)
            (directory / "config.json").write_text(text)

    def resume(self, directory: Path, *, must_match: tuple[str, ...]) -> int:
        """Restore the latest checkpoint in `directory`, if any; the step to start from (0 if none).

        Raises:
            ValueError: if the checkpoint was written with other values of the settings `must_match`.
        """
        path = latest_checkpoint(directory)
        if path is None:
            return 0
        payload = load_checkpoint(path)
        check_resume(json.loads(payload["config"]), self.config, must_match)
        step = self.load(payload, source=str(path))
        if self.dist.is_main:
            print(f"resumed from {path} at step {step}", flush=True)
        return step

    def load(self, payload: Mapping[str, Any], *, source: str = "the checkpoint") -> int:
        """Restore a checkpoint written by :meth:`save` (as loaded by :func:`load_checkpoint`); its step."""
        step = int(payload["step"])
        self.model.load_state_dict(payload["model"])
        self.ema.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.objective.load_state_dict(payload["objective"])
        self.sampler.load_state_dict(payload["data"])
        if self.objective.step != step or self.sampler.position != step:
            raise ValueError(
                f"inconsistent checkpoint {source}: step {step}, objective step {self.objective.step}, "
                f"data position {self.sampler.position}"
            )
        if int(payload["world_size"]) == self.dist.world_size:
            restore_rng(payload["rng"][self.dist.rank], self.generators, self.dist.device)
        else:
            warnings.warn(
                f"{source} was written by {payload['world_size']} rank(s), this run has "
                f"{self.dist.world_size}: random generators are re-seeded, so the run continues but does "
                "not repeat an uninterrupted one",
                stacklevel=2,
            )
            # Fold the step into the seeds so the resumed run does not replay the first steps' noise.
            torch.manual_seed(torch.initial_seed() + 7919 * step)
            for generator in self.generators.values():
                generator.manual_seed(generator.initial_seed() + 7919 * step)
        return step
