"""Run configuration: built-in defaults, then a JSON file, then command-line flags (highest priority).

Flags whose value is None were not given and do not override. The merged dict is what a run saves in
its checkpoints and in `<out>/config.json`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import torch

from soflow_toolkit import SoFlowConfig


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
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None, help="TF32 matmuls (CUDA)")
    p.add_argument(
        "--init-official",
        metavar="SOURCE",
        help="start from an official checkpoint: a run folder, a ckpts/<step>.pt or hf:<owner>/<repo>/<run>",
    )
    p.add_argument("--official-step", type=int, help="the step of the official checkpoint (default: newest)")
    p.add_argument(
        "--continue-official",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="continue the official run (raw weights, optimizer, step) instead of fine-tuning its EMA",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def sampling_parser(description: str | None, *, fid_ref_help: str) -> argparse.ArgumentParser:
    """The flags both sampling scripts share (`--num-samples`/`--batch-size` default to None)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--ckpt", type=Path, help="a run folder of this example (latest checkpoint) or a ckpt-*.pt"
    )
    source.add_argument(
        "--official",
        metavar="SOURCE",
        help="an official checkpoint: a run folder, a ckpts/<step>.pt or hf:<owner>/<repo>/<run>",
    )
    p.add_argument(
        "--official-step", type=int, help="with --official: the checkpoint's step (default: newest)"
    )
    p.add_argument("--out", type=Path, required=True, help="the .npz to write")
    p.add_argument("--nfe", type=int, default=1, help="network evaluations per sample (1, 2, ...)")
    p.add_argument("--method", choices=["renoise", "chain"], default="renoise", help="multi-step sampler")
    p.add_argument("--num-samples", type=int, help="number of images (default 50000)")
    p.add_argument("--batch-size", type=int, help="images per rank per forward pass")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA (default) or raw weights")
    p.add_argument("--fid-ref", type=Path, help=fid_ref_help)
    p.add_argument("--fid-weights", type=Path, help="local Inception weights file for the FID (offline use)")
    p.add_argument(
        "--bf16", action="store_true", help="bf16 autocast (the official inference runs in float32)"
    )
    p.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TF32 matmuls on CUDA (official: on)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--smoke", action="store_true", help="a few samples in small batches")
    p.add_argument("--no-progress", action="store_true")
    return p


def set_tf32(enabled: bool) -> None:
    """TF32 tensor cores for CUDA matmuls and convolutions, as the official scripts enable them."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


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
    """`SoFlowConfig.<preset>(total_steps=...)` with the run config's `soflow` overrides.

    Top-level fields (`fm_fraction`, `p`, `eps`) are replaced; a dict for a nested setting (`times`,
    `curriculum`, `guidance`) changes only the fields it names, e.g. `{"curriculum": {"kind": "const"}}`
    keeps the preset's `r_end`. The curriculum always runs over `total_steps` (the run's `steps`).
    """
    base = {"imagenet": SoFlowConfig.imagenet, "cifar10": SoFlowConfig.cifar10}[preset]()
    known = {f.name for f in fields(SoFlowConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown SoFlowConfig fields {unknown}; known: {sorted(known)}")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        nested = getattr(base, name)
        if is_dataclass(nested):
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"'soflow.{name}' must be a dict of {type(nested).__name__} fields; got {value!r}"
                )
            inner = {f.name for f in fields(nested)}
            bad = sorted(set(value) - inner)
            if bad:
                raise ValueError(
                    f"unknown {type(nested).__name__} fields {bad} in 'soflow.{name}'; known: {sorted(inner)}"
                )
            value = replace(nested, **value)
        changes[name] = value
    return replace(base, **changes).with_total_steps(total_steps)
