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


def check_resume(saved: Mapping[str, Any], config: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse to resume a checkpoint whose settings `keys` differ from this run's."""
    changed = [key for key in keys if saved.get(key) != config.get(key)]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ValueError(f"the checkpoint was trained with other settings ({details}); use another --out")


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
