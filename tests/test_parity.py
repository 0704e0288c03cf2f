"""Parity with the official SoFlow code (zlab-princeton/SoFlow), through the reference vectors.

`tests/data/soflow_official_vectors.pt` holds inputs, outputs and gradients of the official
implementation in float64 with a tiny backbone (see `tests/reference.py`). Every case is its own
test id. Agreement required: relative error < 1e-10.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from reference import PARAMETRIZATIONS, PATHS, load_vectors

from soflow_toolkit import (
    GuidanceConfig,
    RatioSchedule,
    flow_matching_loss,
    guidance_decay,
    sample,
    solution_consistency_loss,
)

RTOL = 1e-10
VECTORS = load_vectors()
NUM_CLASSES = VECTORS["num_classes"]


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['kind']}-{case['noising']}-{case['coefficient']}-{case['variant']}"


LOSS_CASES = [case for case in VECTORS["cases"] if case["kind"] != "sample"]
SAMPLE_CASES = [case for case in VECTORS["cases"] if case["kind"] == "sample"]


def test_vectors_cover_every_combination() -> None:
    """The file must hold every kind for every path x parametrization (else parity is partial)."""
    combos = {(c["kind"], c["noising"], c["coefficient"]) for c in VECTORS["cases"]}
    expected = {
        (kind, path, param)
        for kind in ("flow_matching", "solution_consistency", "sample")
        for path in PATHS
        for param in PARAMETRIZATIONS
    }
    assert combos == expected
    assert any(bool((c["l"] == c["s"]).any()) for c in LOSS_CASES if c["kind"] == "solution_consistency")
    assert any(c["cfg_scale"] > 1 for c in LOSS_CASES)


@pytest.mark.parametrize("case", LOSS_CASES, ids=_case_id)
def test_loss_parity(case: dict[str, Any], reference_model, rel_err) -> None:
    model = reference_model(PATHS[case["noising"]], PARAMETRIZATIONS[case["coefficient"]])
    net = model.backbone
    kwargs: dict[str, Any] = {"cond": case["labels"], "p": case["p"], "eps": case["eps"]}
    if case["cfg_scale"] > 1:
        kwargs.update(
            guidance=GuidanceConfig(
                case["cfg_scale"], mix_ratio=case["mix_ratio"], decay_time=case["cfg_decay_time"]
            ),
            drop_mask=case["cfg_mask"],
            null_cond=NUM_CLASSES,
        )
    if case["kind"] == "flow_matching":
        out = flow_matching_loss(model, case["data"], case["noise"], case["t"], **kwargs)
    else:
        out = solution_consistency_loss(
            model, case["data"], case["noise"], case["t"], case["l"], case["s"], **kwargs
        )
    out.loss.backward()

    assert out.loss.dtype == torch.float64
    assert rel_err(out.loss, case["loss"]) < RTOL
    assert rel_err(out.mse, case["mse"]) < RTOL
    assert rel_err(out.weight, case["weight"]) < RTOL
    names = {name for name, _ in net.named_parameters()}
    assert names == set(case["grads"])
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert rel_err(param.grad, case["grads"][name]) < RTOL, name


@pytest.mark.parametrize("case", SAMPLE_CASES, ids=_case_id)
def test_sample_parity(case: dict[str, Any], reference_model, rel_err) -> None:
    model = reference_model(PATHS[case["noising"]], PARAMETRIZATIONS[case["coefficient"]])
    noises = case["noises"]
    assert len(noises) == case["steps"]
    out = sample(model, noises[0], steps=case["steps"], cond=case["labels"], fresh_noise=noises[1:])
    assert out.dtype == torch.float64
    assert rel_err(out, case["out"]) < RTOL


@pytest.mark.parametrize(
    "entry",
    VECTORS["schedules"],
    ids=lambda e: f"{e['method']}-step{e['step']}of{e['total_steps']}",
)
def test_schedule_parity(entry: dict[str, Any]) -> None:
    schedule = RatioSchedule(entry["method"].lower(), entry["r_init"], entry["r_end"], entry["total_steps"])
    r = schedule(entry["step"])
    l = entry["t"] + (entry["s"] - entry["t"]) * r
    assert abs(l - entry["l"]) <= RTOL * abs(entry["l"])


@pytest.mark.parametrize("entry", VECTORS["cfg_decay"], ids=lambda e: f"tau{e['decay_time']}")
def test_cfg_decay_parity(entry: dict[str, Any], rel_err) -> None:
    kappa = guidance_decay(entry["t"], entry["decay_time"])
    assert kappa.shape == entry["scale"].shape
    assert rel_err(kappa, entry["scale"]) < RTOL
