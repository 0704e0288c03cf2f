"""Run configuration: built-in defaults, then a JSON file, then command-line flags (highest priority).

Flags whose value is None were not given and do not override. The merged dict is what a run saves in
its checkpoints and in `<out>/config.json`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from soflow_toolkit import GuidanceConfig, SoFlowConfig


def training_parser(description: str | None, *, data_help: str) -> argparse.ArgumentParser:
    """The flags both training scripts share; each flag left out (None) keeps the config's value."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="JSON file of settings (see configs/)")
    p.add_argument("--smoke", action="store_true", help="use configs/smoke.json: a tiny model, a few steps")
    p.add_argument("--data", type=Path, required=True, help=data_help)
    p.add_argument("--out", type=Path, required=True, help="run folder (resumed if it has checkpoints)")
    p.add_argument("--global-batch", type=int, help="batch over all ranks")
    p.add_argument("--steps", type=int, help="training steps; also the curriculum length K")
    p.add_argument("--stop-at", type=int, help="end this job at this step (with a checkpoint)")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None, help="random flips")
    p.add_argument("--log-every", type=int)
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--keep", type=int, help="checkpoints to keep (0: all)")
    p.add_argument("--sample-every", type=int, help="steps between sample grids (0: never)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def sampling_parser(description: str | None, *, fid_ref_help: str) -> argparse.ArgumentParser:
    """The flags both sampling scripts share (`--num-samples`/`--batch-size` default to None)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, required=True, help="a run folder (latest checkpoint) or a ckpt-*.pt")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write")
    p.add_argument("--nfe", type=int, default=1, help="network evaluations per sample (1, 2, ...)")
    p.add_argument("--method", choices=["renoise", "chain"], default="renoise", help="multi-step sampler")
    p.add_argument("--num-samples", type=int, help="number of images (default 50000)")
    p.add_argument("--batch-size", type=int, help="images per rank per forward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA (default) or raw weights")
    p.add_argument("--fid-ref", type=Path, help=fid_ref_help)
    p.add_argument("--fid-weights", type=Path, help="local Inception weights file for the FID (offline use)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--smoke", action="store_true", help="a few samples in small batches")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_config(args: argparse.Namespace, defaults: Mapping[str, Any], smoke_file: Path) -> dict[str, Any]:
    """The run's settings: `defaults` <- `--config` (or `smoke_file` with `--smoke`) <- flags."""
    config = merge_config({**defaults, "stop_at": None}, smoke_file if args.smoke else args.config, args)
    config.update(
        data=str(args.data), out=str(args.out), no_resume=args.no_resume, no_progress=args.no_progress
    )
    return config


def merge_config(defaults: Mapping[str, Any], path: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    """`defaults` <- the JSON file at `path` <- the flags in `args` that are not None."""
    config = dict(defaults)
    if path is not None:
        loaded = json.loads(Path(path).read_text())
        unknown = sorted(set(loaded) - set(config))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known keys: {sorted(config)}")
        config.update(loaded)
    for key, value in vars(args).items():
        if key in config and value is not None:
            config[key] = value
    return config


def soflow_config(preset: str, total_steps: int, overrides: Mapping[str, Any]) -> SoFlowConfig:
    """`SoFlowConfig.<preset>(total_steps=..., **overrides)`; a `guidance` dict becomes a GuidanceConfig."""
    known = {f.name for f in fields(SoFlowConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown SoFlowConfig fields {unknown}; known: {sorted(known)}")
    kwargs = dict(overrides)
    if isinstance(kwargs.get("guidance"), Mapping):
        kwargs["guidance"] = GuidanceConfig(**kwargs["guidance"])
    factory = {"imagenet": SoFlowConfig.imagenet, "cifar10": SoFlowConfig.cifar10}[preset]
    return factory(**{"total_steps": total_steps, **kwargs})
