"""Tiny official-format SoFlow run folders for the tests, written offline from this package's networks.

An official run folder is `config.yaml` + `ckpts/<step>.pt`, each checkpoint a dict with `model`,
`ema_model` (state dicts of the official `Soflow` module, keys `network.…`), `optimizer`,
`finished_steps` and `finished_epochs`. The published networks are large, so the tests register tiny
ones under official names (`register_tiny_networks`, by monkeypatching the private registries of
`soflow_toolkit.pretrained`): `DiT-T-4` for the DiT "T/4", a small UNet in place of the official one,
and optionally extra dataset types.

The `optimizer` entry is an AdamW state over the network's parameters in the order of the checkpoint's
`model` entry, which is how the official `train.py` builds it (`Module.parameters()` visits the
modules in the state dict's order). With `order_seed` the keys are written in a shuffled order, so that
a test can tell this order from the order of this package's modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from soflow_toolkit import SolutionFlowWrapper, pretrained
from soflow_toolkit.models import UNetConfig
from soflow_toolkit.pretrained import build_official, official_key_map, to_official_state_dict

TINY_UNET = UNetConfig(
    image_size=16, model_channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,)
)


def register_tiny_networks(
    monkeypatch: pytest.MonkeyPatch,
    *,
    unet: UNetConfig = TINY_UNET,
    datasets: dict[str, tuple[int, int]] | None = None,
) -> None:
    """Register the DiT "T/4" as the official type `DiT-T-4`, `unet` as the official UNet (its image size
    and channels come from each config) and `datasets` (`{dataset_type: (channels, classes)}`)."""
    monkeypatch.setitem(pretrained._DIT_TYPES, "DiT-T-4", "T/4")
    monkeypatch.setattr(pretrained, "_UNET_TEMPLATE", unet)
    for name, value in (datasets or {}).items():
        monkeypatch.setitem(pretrained._DATASETS, name, value)


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Add N(0, 0.05^2) noise to every parameter (the networks' initialisations zero whole layers)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return module


def official_optimizer_state(
    model_state: dict[str, torch.Tensor], model: SolutionFlowWrapper, seed: int, *, radam: bool = False
) -> dict[str, Any]:
    """An AdamW (or RAdam) state after two steps on random gradients, over the official parameters in the
    order of `model_state`; the fixed DiT positions (an official parameter without gradient) get no
    state."""
    official_params = set(official_key_map(model).values())
    frozen = {"network.pos_embed"}
    params = [
        nn.Parameter(value.clone(), requires_grad=key not in frozen)
        for key, value in model_state.items()
        if key in official_params
    ]
    optimizer_class = torch.optim.RAdam if radam else torch.optim.AdamW
    optimizer = optimizer_class(params, lr=1e-4, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator) if p.requires_grad else None
        optimizer.step()
    return optimizer.state_dict()


def _reorder(state: dict[str, torch.Tensor], order_seed: int | None) -> dict[str, torch.Tensor]:
    if order_seed is None:
        return state
    keys = list(state)
    permutation = torch.randperm(len(keys), generator=torch.Generator().manual_seed(order_seed)).tolist()
    return {keys[i]: state[keys[i]] for i in permutation}


def official_payload(
    config: dict[str, Any], seed: int, *, order_seed: int | None = None
) -> tuple[dict[str, Any], SolutionFlowWrapper]:
    """An official checkpoint dict (model, ema_model, optimizer, ...) and the model of its EMA weights."""
    raw = randomize(build_official(config), seed)
    ema = randomize(build_official(config), seed + 1)
    model_state = _reorder(to_official_state_dict(raw), order_seed)
    payload = {
        "model": model_state,
        "ema_model": _reorder(to_official_state_dict(ema), order_seed),
        # The official run optimises ImageNet with AdamW and CIFAR-10 with RAdam.
        "optimizer": official_optimizer_state(
            model_state, raw, seed, radam=config["dataset_type"] == "CIFAR10"
        ),
        "finished_steps": seed,
        "finished_epochs": 1,
    }
    return payload, ema


def write_run(
    root: Path,
    config: dict[str, Any],
    steps: tuple[int, ...] = (0, 100),
    *,
    order_seed: int | None = None,
) -> dict[int, Any]:
    """An official run folder: config.yaml and ckpts/<step>.pt; returns {step: (payload, ema model)}.

    The checkpoint of step `k` says `finished_steps = k + 1` (its seed).
    """
    (root / "ckpts").mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "ckpts" / "notes.txt").write_text("not a checkpoint")
    out = {}
    for step in steps:
        payload, ema = official_payload(config, seed=step + 1, order_seed=order_seed)
        torch.save(payload, root / "ckpts" / f"{step}.pt")
        out[step] = (payload, ema)
    return out
