"""Bad input raises a clear exception, one test per kind of mistake (message checked).

The one home of the package's error tests: shapes, times, names, guidance and conditions, the loss
settings, the objective and its config, sampling, time sampling, the adapter's arguments, and the
values inside tensors (NaN and inf, `s > t`, a null class outside an embedding table, a generator of
the wrong type, a condition given to a backbone that takes none). Errors that need the adapter's
test backbones (a diffusers UNet, hooks that misfire) are in tests/test_adapters.py.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import RandomBackbone
from torch import Tensor, nn

from soflow_toolkit import (
    GuidanceConfig,
    Parametrization,
    RatioSchedule,
    SingleTimeAdapter,
    SoFlowConfig,
    SoFlowLoss,
    SolutionFlowWrapper,
    TimePriors,
    consistency_times,
    drop_condition,
    euler_sample,
    flow_matching_loss,
    get_parametrization,
    get_path,
    guided_velocity,
    logit_normal_times,
    sample,
    sample_drop_mask,
    solution_consistency_loss,
    time_grid,
    uniform_times,
    unwrap_model,
)
from soflow_toolkit._checks import ValueChecks


@pytest.fixture
def model(make_model: Any) -> SolutionFlowWrapper:
    return make_model((3,), num_classes=4)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(
        4, 3, generator=g, dtype=torch.float64
    )


T = torch.tensor([0.9, 0.7, 0.5, 0.3], dtype=torch.float64)
LABELS = torch.tensor([0, 1, 2, 3])


# --- shapes and batch sizes ----------------------------------------------------------------------------


def test_data_and_noise_batch_sizes_disagree(model, batch) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match="batch sizes disagree: data has 4 samples, noise has 3"):
        flow_matching_loss(model, data, noise[:3], T)
    with pytest.raises(ValueError, match="batch sizes disagree"):
        solution_consistency_loss(model, data, noise[:3], T, T - 0.1, T * 0)


def test_data_and_noise_shapes_disagree(model, batch) -> None:
    data, _ = batch
    with pytest.raises(
        ValueError, match=r"data and noise must have the same shape; got \(4, 3\) and \(4, 2\)"
    ):
        flow_matching_loss(model, data, torch.zeros(4, 2, dtype=torch.float64), T)


def test_cond_and_data_batch_sizes_disagree(model, batch) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match="the data has 4 samples but cond has 3 samples"):
        flow_matching_loss(model, data, noise, T, cond=LABELS[:3])
    with pytest.raises(ValueError, match="the data has 4 samples but cond has 3 samples"):
        model(data, T, T, LABELS[:3])


def test_drop_mask_and_cond_batch_sizes_disagree() -> None:
    with pytest.raises(ValueError, match="batch sizes disagree: drop_mask has 3 samples"):
        drop_condition(LABELS, torch.tensor([True, False, True]), 4)


@pytest.mark.parametrize(
    "bad", [torch.zeros(3), torch.zeros(4, 1), torch.zeros(2, 2)], ids=["short", "column", "matrix"]
)
def test_time_tensor_of_wrong_shape(model, batch, bad) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match=r"t must have shape \(4,\) to match the batch"):
        flow_matching_loss(model, data, noise, bad.double())
    with pytest.raises(ValueError, match=r"s must have shape \(4,\)"):
        model(data, T, bad.double())


def test_backbone_output_shape_differs_from_input(batch) -> None:
    class Flatten(nn.Module):
        def forward(self, x, t, s):
            return x.reshape(-1)

    with pytest.raises(
        ValueError, match=r"the backbone's output must have its input's shape \(4, 3\); got \(12,\)"
    ):
        SolutionFlowWrapper(Flatten())(batch[0], T, T)


def test_backbone_returns_a_tuple(batch) -> None:
    class Pair(nn.Module):
        def forward(self, x, t, s):
            return x, x

    with pytest.raises(TypeError, match="the backbone must return a tensor of the input's shape; got tuple"):
        SolutionFlowWrapper(Pair())(batch[0], T, T)


def test_data_without_batch_dimension(model) -> None:
    with pytest.raises(ValueError, match="x_t must have a batch dimension"):
        model(torch.tensor(1.0), 0.5, 0.5)


def test_integer_data(model) -> None:
    with pytest.raises(TypeError, match="data must be a floating-point tensor"):
        flow_matching_loss(model, torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3), 0.5)


# --- times ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, -0.1], ids=["above", "below"])
def test_times_outside_unit_interval(model, batch, value) -> None:
    data, noise = batch
    bad = torch.full((4,), value, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\] \(t = 0 is data, t = 1 is noise\)"):
        flow_matching_loss(model, data, noise, bad)
    with pytest.raises(ValueError, match=r"s must lie in \[0, 1\]"):
        model(data, T, bad)


def test_nan_times(model, batch) -> None:
    data, noise = batch
    bad = T.clone()
    bad[2] = math.nan
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\].*and NaN"):
        flow_matching_loss(model, data, noise, bad)
    with pytest.raises(ValueError, match=r"l must lie in \[0, 1\].*NaN"):
        solution_consistency_loss(model, data, noise, T, bad, T * 0)


@pytest.mark.parametrize(
    ("l", "s"),
    [(T, T * 0), (T + 0.05, T * 0), (T * 0.5, T * 0.6)],
    ids=["l-equals-t", "l-above-t", "s-above-l"],
)
def test_consistency_times_out_of_order(model, batch, l, s) -> None:
    data, noise = batch
    with pytest.raises(
        ValueError, match="consistency times must satisfy s <= l < t for every sample; sample 0"
    ):
        solution_consistency_loss(model, data, noise, T, l.clamp(0, 1), s)


def test_consistency_l_equal_s_is_accepted(model, batch) -> None:
    data, noise = batch
    out = solution_consistency_loss(model, data, noise, T, T * 0.5, T * 0.5)
    assert torch.isfinite(out.loss)


def test_integer_times(model, batch) -> None:
    data, noise = batch
    with pytest.raises(TypeError, match="t must be a floating-point tensor of times in"):
        flow_matching_loss(model, data, noise, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(TypeError, match="s must be a floating-point tensor"):
        model(data, T, torch.zeros(4, dtype=torch.long))


def test_non_numeric_times(model, batch) -> None:
    with pytest.raises(TypeError, match="t must be a float or a \\(B,\\) tensor; got str"):
        model(batch[0], "0.5", 0.0)
    with pytest.raises(TypeError, match="got bool"):
        model(batch[0], True, 0.0)


# --- names and objects ----------------------------------------------------------------------------------


def test_unknown_path_name() -> None:
    with pytest.raises(ValueError, match=r"unknown path 'cosine'; expected one of \['linear', 'trig'\]"):
        get_path("cosine")
    with pytest.raises(ValueError, match="unknown path"):
        SolutionFlowWrapper(RandomBackbone((3,)), path="vp")


def test_path_of_wrong_type() -> None:
    with pytest.raises(TypeError, match="path must be a string or a NoisePath; got int"):
        get_path(3)  # type: ignore[arg-type]


def test_unknown_parametrization_name() -> None:
    with pytest.raises(
        ValueError, match=r"unknown parametrization 'edm'; expected one of \['euler', 'trig'\]"
    ):
        get_parametrization("edm")
    with pytest.raises(ValueError, match="unknown parametrization"):
        SolutionFlowWrapper(RandomBackbone((3,)), parametrization="x")


def test_custom_parametrization_violating_boundary_condition() -> None:
    class Shifted(Parametrization):
        def a(self, t, s):
            return torch.ones_like(t)

        def b(self, t, s):
            return s - t + 0.1

        def da_ds(self, t):
            return torch.zeros_like(t)

        def db_ds(self, t):
            return torch.ones_like(t)

    with pytest.raises(
        ValueError, match=r"Shifted violates the boundary condition a\(t, t\) = 1, b\(t, t\) = 0"
    ):
        get_parametrization(Shifted())
    with pytest.raises(ValueError, match="violates the boundary condition"):
        SolutionFlowWrapper(RandomBackbone((3,)), parametrization=Shifted())


def test_backbone_that_is_not_a_module() -> None:
    with pytest.raises(TypeError, match=r"backbone must be a torch\.nn\.Module; got function"):
        SolutionFlowWrapper(lambda x, t, s: x)  # type: ignore[arg-type]


def test_unwrap_a_plain_module() -> None:
    with pytest.raises(TypeError, match="expected a SolutionFlowWrapper"):
        unwrap_model(nn.Linear(2, 2))


def test_loss_with_an_unwrapped_backbone(batch) -> None:
    with pytest.raises(TypeError, match="Wrap your backbone: SolutionFlowWrapper"):
        flow_matching_loss(RandomBackbone((3,)), batch[0], batch[1], T)


def test_unknown_output_kind(model, batch) -> None:
    with pytest.raises(ValueError, match="output must be 'solution' or 'backbone'; got 'velocity'"):
        model(batch[0], T, T, output="velocity")


# --- guidance -------------------------------------------------------------------------------------------


def test_guidance_scale_below_one() -> None:
    with pytest.raises(ValueError, match=r"GuidanceConfig.scale must be >= 1 \(1 = no guidance\); got 0.5"):
        GuidanceConfig(scale=0.5)


@pytest.mark.parametrize("field", ["drop_rate", "mix_ratio", "decay_time"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_guidance_fraction_outside_unit_interval(field, value) -> None:
    with pytest.raises(ValueError, match=rf"GuidanceConfig.{field} must lie in \[0, 1\]; got {value}"):
        GuidanceConfig(scale=2.0, **{field: value})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_guidance_non_finite(value) -> None:
    with pytest.raises(ValueError, match=r"GuidanceConfig\.scale must be a finite number"):
        GuidanceConfig(scale=value)


@pytest.mark.parametrize(("value", "kind"), [("2", "str"), (True, "bool"), (None, "NoneType")])
def test_guidance_non_numeric(value, kind) -> None:
    with pytest.raises(TypeError, match=rf"GuidanceConfig\.scale must be a number; got {kind}"):
        GuidanceConfig(scale=value)  # type: ignore[arg-type]


def test_drop_rate_outside_unit_interval_in_sampler() -> None:
    with pytest.raises(ValueError, match=r"drop_rate must lie in \[0, 1\]; got 1.2"):
        sample_drop_mask(4, 1.2)


def test_drop_mask_without_null_cond(model, batch) -> None:
    data, noise = batch
    mask = torch.tensor([True, False, False, True])
    with pytest.raises(ValueError, match="a drop_mask needs a null_cond"):
        flow_matching_loss(model, data, noise, T, cond=LABELS, drop_mask=mask)
    with pytest.raises(ValueError, match="a drop_mask needs a null_cond"):
        solution_consistency_loss(model, data, noise, T, T - 0.1, T * 0, cond=LABELS, drop_mask=mask)


def test_drop_mask_without_cond(model, batch) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match="a drop_mask needs a condition to drop: pass cond"):
        flow_matching_loss(model, data, noise, T, drop_mask=torch.ones(4, dtype=torch.bool), null_cond=4)


@pytest.mark.parametrize(
    "mask", [torch.tensor([1, 0, 0, 1]), torch.tensor([1.0, 0.0, 0.0, 1.0])], ids=["int", "float"]
)
def test_non_bool_drop_mask(model, batch, mask) -> None:
    data, noise = batch
    with pytest.raises(TypeError, match="drop_mask must be a bool tensor \\(True = drop\\); got dtype"):
        flow_matching_loss(model, data, noise, T, cond=LABELS, drop_mask=mask, null_cond=4)
    with pytest.raises(TypeError, match="drop_mask must be a bool tensor"):
        drop_condition(LABELS, mask, 4)


def test_drop_mask_of_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"drop_mask must have shape \(B,\); got \(4, 1\)"):
        drop_condition(LABELS, torch.ones(4, 1, dtype=torch.bool), 4)


def test_guidance_without_cond(model, batch) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match="guidance with scale > 1 needs a condition: pass cond"):
        flow_matching_loss(model, data, noise, T, guidance=GuidanceConfig(scale=2.0), null_cond=4)
    with pytest.raises(ValueError, match="guidance with scale > 1 needs a condition"):
        solution_consistency_loss(
            model, data, noise, T, T - 0.1, T * 0, guidance=GuidanceConfig(scale=2.0), null_cond=4
        )


def test_guidance_without_null_cond(model, batch) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match="guidance with scale > 1 needs a null_cond"):
        flow_matching_loss(model, data, noise, T, cond=LABELS, guidance=GuidanceConfig(scale=2.0))


def test_guidance_of_wrong_type(model, batch) -> None:
    with pytest.raises(TypeError, match="guidance must be a GuidanceConfig or None; got dict"):
        flow_matching_loss(model, batch[0], batch[1], T, cond=LABELS, guidance={"scale": 2.0})  # type: ignore[arg-type]


def test_guided_velocity_mix_without_conditional_velocity() -> None:
    v = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="guidance with mix_ratio < 1 needs v_cond"):
        guided_velocity(v, v, torch.zeros(2), GuidanceConfig(scale=2.0, mix_ratio=0.5))


def test_null_tensor_of_wrong_shape() -> None:
    with pytest.raises(
        ValueError, match=r"null_cond for cond must have shape \(5,\) \(one sample\) or \(4, 5\); got \(3,\)"
    ):
        drop_condition(torch.zeros(4, 5), torch.ones(4, dtype=torch.bool), torch.zeros(3))


def test_null_dict_with_unknown_key() -> None:
    with pytest.raises(ValueError, match=r"null_cond has keys \['text'\] that cond lacks"):
        drop_condition({"label": LABELS}, torch.ones(4, dtype=torch.bool), {"text": 0})


def test_drop_a_none_condition() -> None:
    with pytest.raises(ValueError, match="cannot drop a condition that is None"):
        drop_condition(None, torch.ones(4, dtype=torch.bool), 4)


# --- loss hyper-parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "message"),
    [
        (-0.5, r"p must be >= 0; got -0.5"),
        (math.nan, "p must be a finite number; got nan"),
        (math.inf, "finite"),
    ],
)
def test_negative_or_non_finite_power(model, batch, p, message) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match=message):
        flow_matching_loss(model, data, noise, T, p=p)
    with pytest.raises(ValueError, match=message):
        solution_consistency_loss(model, data, noise, T, T - 0.1, T * 0, p=p)


@pytest.mark.parametrize(
    ("eps", "message"),
    [
        (0.0, r"eps must be > 0; got 0.0"),
        (-1e-3, r"eps must be > 0"),
        (math.nan, "eps must be a finite number"),
    ],
)
def test_non_positive_eps(model, batch, eps, message) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match=message):
        flow_matching_loss(model, data, noise, T, eps=eps)
    with pytest.raises(ValueError, match=message):
        solution_consistency_loss(model, data, noise, T, T - 0.1, T * 0, eps=eps)


def test_non_numeric_loss_setting(model, batch) -> None:
    with pytest.raises(TypeError, match="p must be a number; got str"):
        flow_matching_loss(model, *batch, T, p="1")  # type: ignore[arg-type]


# --- sampling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -1])
def test_sample_steps_below_one(model, batch, steps) -> None:
    with pytest.raises(ValueError, match=rf"steps must be an int >= 1; got {steps}"):
        sample(model, batch[1], steps=steps)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        time_grid(steps)


@pytest.mark.parametrize(("steps", "kind"), [(1.5, "float"), (True, "bool")])
def test_sample_steps_not_an_int(model, batch, steps, kind) -> None:
    with pytest.raises(TypeError, match=rf"steps must be an int >= 1; got {kind}"):
        sample(model, batch[1], steps=steps)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="steps must be an int >= 1"):
        euler_sample(model, batch[1], steps=steps)  # type: ignore[arg-type]


def test_unknown_sample_method(model, batch) -> None:
    with pytest.raises(ValueError, match="method must be 'renoise' or 'chain'; got 'heun'"):
        sample(model, batch[1], steps=2, method="heun")  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_wrong_number_of_fresh_noises(model, batch, count) -> None:
    fresh = [torch.zeros_like(batch[1])] * count
    with pytest.raises(ValueError, match=rf"fresh_noise must hold steps - 1 = 2 tensors; got {count}"):
        sample(model, batch[1], steps=3, fresh_noise=fresh)


def test_fresh_noise_of_wrong_shape(model, batch) -> None:
    with pytest.raises(ValueError, match="batch sizes disagree: noise has 4 samples, fresh_noise has 2"):
        sample(model, batch[1], steps=2, fresh_noise=[torch.zeros(2, 3, dtype=torch.float64)])


# --- time sampling --------------------------------------------------------------------------------------


def test_unknown_schedule_kind() -> None:
    with pytest.raises(
        ValueError, match=r"RatioSchedule.kind must be 'const', 'linear', 'cosine' or 'exponent'; got 'step'"
    ):
        RatioSchedule("step")
    with pytest.raises(TypeError, match=r"RatioSchedule.kind must be 'const', .*; got int"):
        RatioSchedule(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["r_init", "r_end"])
@pytest.mark.parametrize("value", [0.0, 1.5, -0.1])
def test_schedule_ratio_outside_range(field, value) -> None:
    with pytest.raises(ValueError, match=rf"RatioSchedule.{field} must lie in \(0, 1\]"):
        RatioSchedule(**{field: value})


@pytest.mark.parametrize("total", [0, -5])
def test_schedule_total_steps_below_one(total) -> None:
    with pytest.raises(ValueError, match=rf"RatioSchedule\.total_steps must be an int >= 1; got {total}"):
        RatioSchedule(total_steps=total)


@pytest.mark.parametrize(("total", "kind"), [(2.5, "float"), (True, "bool")])
def test_schedule_total_steps_not_an_int(total, kind) -> None:
    with pytest.raises(TypeError, match=rf"RatioSchedule\.total_steps must be an int >= 1; got {kind}"):
        RatioSchedule(total_steps=total)  # type: ignore[arg-type]


def test_schedule_negative_step() -> None:
    with pytest.raises(ValueError, match="the training step must be an int >= 0; got -1"):
        RatioSchedule()(-1)


def test_consistency_times_ratio_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"the ratio r must lie in \[0, 1\]; got 1.5"):
        consistency_times(4, 1.5)


def test_logit_normal_bad_std_or_mean() -> None:
    with pytest.raises(ValueError, match=r"the logit-normal std must be > 0; got 0\.0"):
        logit_normal_times(4, std=0.0)
    with pytest.raises(ValueError, match="the logit-normal mean must be a finite number; got inf"):
        logit_normal_times(4, mean=math.inf)


def test_uniform_bad_bounds() -> None:
    with pytest.raises(ValueError, match="need 0 <= low <= high <= 1"):
        uniform_times(4, low=0.8, high=0.2)


def test_negative_batch_size() -> None:
    with pytest.raises(ValueError, match="batch must be an int >= 0; got -1"):
        uniform_times(-1)
    with pytest.raises(TypeError, match="batch must be an int >= 0; got float"):
        logit_normal_times(2.0)  # type: ignore[arg-type]


def test_drop_mask_that_is_not_a_tensor(model, batch) -> None:
    data, noise = batch
    with pytest.raises(TypeError, match="drop_mask must be a bool tensor of shape \\(B,\\); got list"):
        flow_matching_loss(
            model, data, noise, T, cond=LABELS, drop_mask=[True, False, True, False], null_cond=4
        )


def test_list_cond_and_data_batch_sizes_disagree(batch) -> None:
    class Ignore(nn.Module):
        def forward(self, x, t, s, cond):
            return torch.zeros_like(x)

    with pytest.raises(ValueError, match="the data has 4 samples but cond has 3"):
        SolutionFlowWrapper(Ignore())(batch[0], T, T, ["a", "b", "c"])


def test_consistency_times_in_bfloat16_rejected() -> None:
    with pytest.raises(ValueError, match="consistency times need float32 or float64"):
        consistency_times(256, 0.002, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(0))


# --- the objective's config -----------------------------------------------------------------------------

BAD_CONFIGS = [
    (
        lambda: SoFlowConfig(fm_fraction=1.5),
        ValueError,
        r"SoFlowConfig.fm_fraction must lie in \[0, 1\]; got 1.5",
    ),
    (lambda: SoFlowConfig(fm_fraction=-0.1), ValueError, r"fm_fraction must lie in \[0, 1\]"),
    (lambda: SoFlowConfig(fm_fraction=math.nan), ValueError, r"fm_fraction must be a finite number; got nan"),
    (lambda: SoFlowConfig(fm_fraction="0.5"), TypeError, r"fm_fraction must be a number; got str"),
    (lambda: SoFlowConfig(fm_fraction=True), TypeError, r"fm_fraction must be a number; got bool"),
    (lambda: SoFlowConfig(p=-1.0), ValueError, r"SoFlowConfig.p must be >= 0; got -1.0"),
    (lambda: SoFlowConfig(eps=0.0), ValueError, r"SoFlowConfig.eps must be > 0; got 0.0"),
    (lambda: SoFlowConfig(eps=math.inf), ValueError, r"eps must be a finite number"),
    (lambda: TimePriors(std_fm=0.0), ValueError, r"TimePriors.std_fm must be > 0; got 0.0"),
    (lambda: TimePriors(std_s=-1.0), ValueError, r"TimePriors.std_s must be > 0"),
    (lambda: TimePriors(std_t=0.0), ValueError, r"TimePriors.std_t must be > 0"),
    (lambda: TimePriors(mean_t=None), TypeError, r"TimePriors.mean_t must be a number; got NoneType"),
    (lambda: TimePriors(mean_s=math.nan), ValueError, r"TimePriors.mean_s must be a finite number; got nan"),
    (lambda: TimePriors(min_gap=0.0), ValueError, r"TimePriors.min_gap must lie in \(0, 0.5\); got 0.0"),
    (lambda: TimePriors(min_gap=0.5), ValueError, r"min_gap must lie in \(0, 0.5\)"),
    (lambda: RatioSchedule("quadratic"), ValueError, r"RatioSchedule.kind must be .*; got 'quadratic'"),
    (lambda: RatioSchedule(r_init=0.0), ValueError, r"RatioSchedule.r_init must lie in \(0, 1\]; got 0.0"),
    (lambda: RatioSchedule(r_init=1.5), ValueError, r"r_init must lie in \(0, 1\]"),
    (lambda: RatioSchedule(r_end=-0.1), ValueError, r"r_end must lie in \(0, 1\]"),
    (
        lambda: SoFlowConfig(times={"mean_s": 0.0}),
        TypeError,
        r"SoFlowConfig.times must be a TimePriors; got dict",
    ),
    (lambda: SoFlowConfig(curriculum=0.1), TypeError, r"curriculum must be a RatioSchedule; got float"),
    (
        lambda: SoFlowConfig(guidance={"scale": 3.0}),
        TypeError,
        r"guidance must be a GuidanceConfig; got dict",
    ),
    (
        lambda: SoFlowConfig(gudiance=GuidanceConfig()),
        TypeError,
        r"unexpected keyword arguments \['gudiance'\]",
    ),
    (lambda: SoFlowConfig.imagenet(total_steps=0), ValueError, r"total_steps must be an int >= 1; got 0"),
    (lambda: SoFlowConfig.imagenet(guidance=GuidanceConfig(scale=0.5)), ValueError, r"scale must be >= 1"),
    (lambda: SoFlowLoss("imagenet"), TypeError, r"config must be a SoFlowConfig; got str"),
]


@pytest.mark.parametrize(("build", "error", "message"), BAD_CONFIGS, ids=[c[2][:40] for c in BAD_CONFIGS])
def test_bad_config_is_rejected(build, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()


def test_deprecated_flat_setting_with_a_bad_value() -> None:
    with (
        pytest.warns(DeprecationWarning, match=r"SoFlowConfig\(r_init=\.\.\.\) is deprecated"),
        pytest.raises(ValueError, match=r"RatioSchedule.r_init must lie in \(0, 1\]; got 0.0"),
    ):
        SoFlowConfig(r_init=0.0)


# --- the objective's calls -------------------------------------------------------------------------------


def test_load_state_dict_errors() -> None:
    objective = SoFlowLoss()
    with pytest.raises(KeyError, match="no 'step' entry"):
        objective.load_state_dict({})
    with pytest.raises(ValueError, match="the training step must be an int >= 0; got -2"):
        objective.load_state_dict({"step": -2})
    with pytest.raises(TypeError, match="must be an int >= 0; got float"):
        objective.load_state_dict({"step": 2.5})
    objective.load_state_dict({"step": torch.tensor(5)})
    assert objective.step == 5


def test_objective_call_errors(model, generator) -> None:
    data = torch.randn(8, 3, generator=generator)
    labels = torch.zeros(8, dtype=torch.long)
    guided = SoFlowLoss(SoFlowConfig.imagenet())
    with pytest.raises(ValueError, match="pass null_cond"):
        guided(model, data, labels)
    with pytest.raises(ValueError, match="no cond was given"):
        guided(model, data)
    with pytest.raises(ValueError, match="no cond was given"):
        SoFlowLoss(SoFlowConfig(guidance=GuidanceConfig(drop_rate=0.1)))(model, data)
    plain = SoFlowLoss(SoFlowConfig())
    with pytest.raises(ValueError, match="at least one sample"):
        plain(model, data[:0])
    with pytest.raises(ValueError, match="must be an int >= 0; got -1"):
        plain(model, data, step=-1)
    with pytest.raises(TypeError, match="must be an int >= 0; got float"):
        plain(model, data, step=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="the training step must be an int >= 0; got bool"):
        plain.draw(data, step=True)
    assert plain.step == 0  # failed calls do not count


def test_explicit_draw_of_the_wrong_shape(model, generator) -> None:
    data = torch.randn(8, 3, generator=generator)
    plain = SoFlowLoss(SoFlowConfig())
    draw = plain.draw(data, generator=generator)
    with pytest.raises(ValueError, match=r"draw.t must have shape \(2,\)"):
        plain(model, data, draw=dataclasses.replace(draw, t=draw.t[:1]))
    with pytest.raises(ValueError, match=r"draw.noise must have the data's shape \(8, 3\)"):
        plain(model, data, draw=dataclasses.replace(draw, noise=draw.noise[:, :2]))
    with pytest.raises(ValueError, match=r"draw.drop_mask must be a bool tensor of shape \(8,\)"):
        plain(model, data, draw=dataclasses.replace(draw, drop_mask=torch.zeros(7, dtype=torch.bool)))
    assert plain.step == 0


def test_explicit_draw_with_bad_times(model, generator) -> None:
    data = torch.randn(8, 3, generator=generator)
    plain = SoFlowLoss(SoFlowConfig())
    draw = plain.draw(data, generator=generator)
    with pytest.raises(ValueError, match=r"draw.t_fm must lie in \[0, 1\]"):
        plain(model, data, draw=dataclasses.replace(draw, t_fm=draw.t_fm + 1.5))
    with pytest.raises(
        ValueError, match=r"the consistency times of draw must satisfy s <= l < t for every sample; sample 1"
    ):
        plain(model, data, draw=dataclasses.replace(draw, l=torch.stack([draw.l[0], draw.t[1]])))
    assert plain.step == 0


# --- the adapter's arguments -------------------------------------------------------------------------


class _OneTimeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.time_embed = nn.Linear(1, 4)
        self.body = nn.Linear(3 + 4, 3)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        return self.body(torch.cat([x, self.time_embed(time[:, None])], dim=1))


def test_adapter_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"has no submodule 'time_emb'.*time_embed"):
        SingleTimeAdapter(_OneTimeNet(), time_embedding="time_emb")
    with pytest.raises(ValueError, match=r"time_scale must be > 0; got 0.0"):
        SingleTimeAdapter(_OneTimeNet(), time_embedding="time_embed", time_scale=0.0)
    with pytest.raises(TypeError, match="time_scale must be a number; got str"):
        SingleTimeAdapter(_OneTimeNet(), time_embedding="time_embed", time_scale="1000")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"zero_init must be 'auto', 'linear' or 'gate'; got 'zeros'"):
        SingleTimeAdapter(_OneTimeNet(), time_embedding="time_embed", zero_init="zeros")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"backbone must be a torch\.nn\.Module; got function"):
        SingleTimeAdapter(lambda x, t: x, time_embedding="time_embed")  # type: ignore[arg-type]


# --- values inside tensors: NaN and inf --------------------------------------------------------------------


def _with_nan(x: Tensor, *rows: int) -> Tensor:
    x = x.clone()
    x[list(rows)] = math.nan
    return x


def test_non_finite_data_in_the_objective(model, generator) -> None:
    data = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    data[5, 1] = math.inf
    objective = SoFlowLoss(SoFlowConfig())
    with pytest.raises(
        ValueError, match=r"data has non-finite values \(NaN or inf\) in 1 of 8 samples \(\[5\]\)"
    ):
        objective(model, data, generator=generator)
    draw = objective.draw(data, generator=generator)
    with pytest.raises(ValueError, match=r"draw.noise has non-finite values .* 2 of 8 samples \(\[0, 3\]\)"):
        objective(
            model,
            data.nan_to_num(posinf=0.0),
            draw=dataclasses.replace(draw, noise=_with_nan(draw.noise, 0, 3)),
        )
    assert objective.step == 0


@given(rows=st.sets(st.integers(0, 11), min_size=1), value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_values_are_reported_by_sample(rows, value) -> None:
    """The message names exactly the samples with a NaN or an inf (the first eight of them)."""
    data = torch.zeros(12, 2, 3)
    for row in rows:
        data[row, 1, row % 3] = value
    checks = ValueChecks()
    checks.finite("data", data)
    shown = ", ".join(str(i) for i in sorted(rows)[:8]) + (", ..." if len(rows) > 8 else "")
    with pytest.raises(ValueError, match=re.escape(f"in {len(rows)} of 12 samples ([{shown}])")):
        checks.verify()


def test_non_finite_data_and_noise_in_the_functional_losses(model, batch) -> None:
    data, noise = batch
    with pytest.raises(
        ValueError, match=r"data has non-finite values \(NaN or inf\) in 2 of 4 samples \(\[1, 2\]\)"
    ):
        flow_matching_loss(model, _with_nan(data, 1, 2), noise, T)
    with pytest.raises(
        ValueError, match=r"noise has non-finite values \(NaN or inf\) in 1 of 4 samples \(\[3\]\)"
    ):
        solution_consistency_loss(model, data, _with_nan(noise, 3), T, T - 0.1, T * 0)


class _NaNAfter(nn.Module):
    """Returns its input, with NaN in sample 1 from the `start`-th call on."""

    def __init__(self, start: int = 0) -> None:
        super().__init__()
        self.start, self.calls = start, 0
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        self.calls += 1
        out = x * self.weight
        return _with_nan(out, 1) if self.calls > self.start else out


def test_non_finite_backbone_output(batch) -> None:
    data, noise = batch
    with pytest.raises(FloatingPointError, match=r"the backbone's output has non-finite values .* \(\[1\]\)"):
        SolutionFlowWrapper(_NaNAfter())(data, T, T * 0)
    with pytest.raises(FloatingPointError, match=r"the backbone's output has non-finite values .* \(\[1\]\)"):
        flow_matching_loss(SolutionFlowWrapper(_NaNAfter()), data, noise, T)
    with pytest.raises(
        FloatingPointError, match=r"the backbone's output at the consistency targets has non-finite"
    ):
        SoFlowLoss(SoFlowConfig.cifar10())(SolutionFlowWrapper(_NaNAfter(start=1)), data)
    unchecked = SolutionFlowWrapper(_NaNAfter(), check_inputs=False)
    assert unchecked(data, T, T * 0)[1].isnan().all()  # checks off: no error, no synchronisation


def test_non_finite_values_in_the_samplers(batch) -> None:
    noise = batch[1]
    with pytest.raises(
        FloatingPointError, match=r"the model's output at sampling step 2 of 3 \(t = 0.666667\)"
    ):
        sample(SolutionFlowWrapper(_NaNAfter(start=1)), noise, steps=3, generator=torch.Generator())
    with pytest.raises(FloatingPointError, match=r"the backbone's output at Euler step 3 of 4 \(t = 0.5\)"):
        euler_sample(SolutionFlowWrapper(_NaNAfter(start=2)), noise, steps=4)
    with pytest.raises(ValueError, match=r"noise has non-finite values"):
        sample(SolutionFlowWrapper(_NaNAfter(start=9)), _with_nan(noise, 0))


# --- values inside tensors: time order, null classes, generators, conditions --------------------------------


def test_s_above_t_is_an_error_unless_allowed(model, batch) -> None:
    x = batch[0]
    s = T.clone()
    s[2] = 0.6  # t[2] = 0.5
    with pytest.raises(
        ValueError,
        match=r"times must satisfy s <= t for every sample; sample 2 has t=0.5, s=0.6 .*allow_s_above_t=True",
    ):
        model(x, T, s)
    opted_in = SolutionFlowWrapper(model.backbone, allow_s_above_t=True)
    assert torch.isfinite(opted_in(x, T, s)).all()


class _LabelNet(nn.Module):
    """A backbone with a class table of `num_classes` rows, so without a null-class row."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.table = nn.Embedding(num_classes, 3, dtype=torch.float64)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor) -> Tensor:
        return x + self.table(y)


def test_null_class_outside_the_embedding_table(batch) -> None:
    data, noise = batch
    model = SolutionFlowWrapper(_LabelNet())
    message = r"null class 4: a class-embedding table needs num_classes \+ 1 rows, the last one \(row 4\)"
    with pytest.raises(IndexError, match=message):
        SoFlowLoss(SoFlowConfig.imagenet())(model, data, LABELS, null_cond=4)
    with pytest.raises(IndexError, match=message):
        flow_matching_loss(
            model, data, noise, T, cond=LABELS, guidance=GuidanceConfig(scale=2.0), null_cond=4
        )
    with pytest.raises(IndexError, match=r"null class 4: .*nn.Embedding\(num_classes \+ 1, dim\)"):
        flow_matching_loss(
            model, data, noise, T, cond=LABELS, drop_mask=torch.ones(4, dtype=torch.bool), null_cond=4
        )


@pytest.mark.parametrize("bad", [0, 1234, "seed"], ids=["zero", "int", "str"])
def test_generator_of_the_wrong_type(model, batch, bad) -> None:
    data, noise = batch
    message = rf"generator must be a torch.Generator or None; got {type(bad).__name__}"
    with pytest.raises(TypeError, match=message):
        SoFlowLoss(SoFlowConfig())(model, data, generator=bad)
    with pytest.raises(TypeError, match=message):
        SoFlowLoss(SoFlowConfig()).draw(data, generator=bad)
    with pytest.raises(TypeError, match=message):
        sample(model, noise, generator=bad)
    for draw in (
        uniform_times,
        logit_normal_times,
        lambda n, generator: consistency_times(n, 0.5, generator=generator),
    ):
        with pytest.raises(TypeError, match=message):
            draw(4, generator=bad)
    with pytest.raises(TypeError, match=message):
        sample_drop_mask(4, 0.5, generator=bad)


class _NoCondition(nn.Module):
    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        return torch.zeros_like(x)


def test_condition_given_to_a_backbone_that_takes_none(batch) -> None:
    data, noise = batch
    model = SolutionFlowWrapper(_NoCondition())
    message = r"the backbone _NoCondition takes no condition \(forward\(x: 'Tensor', t: 'Tensor', s: 'Tensor'\) -> 'Tensor'\) but was given one \(a tensor of shape \(4,\)\)"
    with pytest.raises(TypeError, match=message):
        model(data, T, T, LABELS)
    with pytest.raises(TypeError, match="takes no condition"):
        flow_matching_loss(model, data, noise, T, cond=LABELS)
    with pytest.raises(TypeError, match=r"takes no condition .* \(a dict with keys \['y'\]\)"):
        model(data, T, T, {"y": LABELS})
    adapter = SolutionFlowWrapper(SingleTimeAdapter(_OneTimeNet(), time_embedding="time_embed"))
    with pytest.raises(TypeError, match="the backbone _OneTimeNet takes no condition"):
        adapter(data.float(), T.float(), T.float(), LABELS)


def test_condition_of_the_wrong_kind_for_the_backbone(batch) -> None:
    class Keywords(nn.Module):
        def forward(self, x: Tensor, t: Tensor, s: Tensor, *, label: Tensor) -> Tensor:
            return x

    model = SolutionFlowWrapper(Keywords())
    with pytest.raises(
        TypeError, match=r"cannot take the condition it was given \(a dict with keys \['y'\]\)"
    ):
        model(batch[0], T, T, {"y": LABELS})


def test_type_errors_inside_the_backbone_are_not_rewritten(batch) -> None:
    class Broken(nn.Module):
        def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor) -> Tensor:
            return x + "not a tensor"  # type: ignore[operator]

    with pytest.raises(TypeError, match="unsupported operand"):
        SolutionFlowWrapper(Broken())(batch[0], T, T, LABELS)
