"""The example's network and augmentation from a run config.

- `unet`: overrides of `soflow_toolkit.models.UNetConfig` fields (JSON lists become tuples); an empty
  dict is the official network: EDM's DDPM++ layout with 128 channels, multipliers (2, 2, 2), 4 blocks
  per level, attention at 16x16, dropout 0.3, resample filter (1, 3, 3, 1), and a 6-dimensional
  augmentation-label input.
- `path`, `parametrization`: the wrapper's noising path and parametrization (official: linear, euler).
- `augment`: overrides of `soflow_toolkit.augment.AugmentPipe` fields; an empty dict is the official
  augmentation (p = 0.12, x-flip, isotropic and anisotropic scaling, fractional translation), `None`
  (JSON `null`) none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from soflow_toolkit import SolutionFlowWrapper
from soflow_toolkit.augment import AugmentPipe
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


def build_model(config: Mapping[str, Any]) -> SolutionFlowWrapper:
    """The UNet of a run config in the wrapper with the config's path and parametrization.

    Run configs written before these keys existed train the official linear path and Euler
    parametrization.
    """
    return SolutionFlowWrapper(
        build_unet(config),
        path=config.get("path", "linear"),
        parametrization=config.get("parametrization", "euler"),
    )


def build_augment(config: Mapping[str, Any]) -> AugmentPipe | None:
    """The augmentation of a run config's `augment` overrides, or None when it is off (`null`)."""
    overrides = config["augment"]
    if overrides is None:
        return None
    if not isinstance(overrides, Mapping):
        raise ValueError(f"'augment' must be a dict of AugmentPipe fields or null; got {overrides!r}")
    known = {f.name for f in fields(AugmentPipe)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown AugmentPipe fields {unknown} in 'augment'; known: {sorted(known)}")
    return AugmentPipe(**overrides)
