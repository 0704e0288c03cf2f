"""The example's network: `soflow_toolkit.models.UNet` (the official SoFlow CIFAR-10 UNet) from a run config.

The run config's `unet` entry holds overrides of `UNetConfig` fields (JSON lists become tuples); an
empty dict is the official network: EDM's DDPM++ layout with 128 channels, multipliers (2, 2, 2),
4 blocks per level, attention at 16x16, dropout 0.3, resample filter (1, 3, 3, 1), and a 6-dimensional
augmentation-label input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from soflow_toolkit.models import UNet, UNetConfig


def unet_config(config: Mapping[str, Any]) -> UNetConfig:
    """The `UNetConfig` of a run config's `unet` overrides."""
    overrides = dict(config["unet"])
    known = {f.name for f in fields(UNetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown UNetConfig fields {unknown} in 'unet'; known: {sorted(known)}")
    return UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


def build_unet(config: Mapping[str, Any]) -> UNet:
    """The UNet a run config describes."""
    return UNet(unet_config(config))
