"""Bad input raises a clear exception up front, one test per kind of mistake (message checked)."""

from __future__ import annotations

import math

import pytest
import torch
from oracles import RandomBackbone
from torch import nn

from soflow_toolkit import (
    GuidanceConfig,
    Parametrization,
    RatioSchedule,
    SolutionFlowWrapper,
    consistency_times,
    drop_condition,
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


@pytest.fixture
def model() -> SolutionFlowWrapper:
    return SolutionFlowWrapper(RandomBackbone((3,), num_classes=4))


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


@pytest.mark.parametrize("value", [math.nan, math.inf, "2", True])
def test_guidance_non_finite_or_non_numeric(value) -> None:
    with pytest.raises(ValueError, match=r"GuidanceConfig\.scale must be a finite number"):
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


@pytest.mark.parametrize("p", [-0.5, math.nan, math.inf])
def test_negative_or_non_finite_power(model, batch, p) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match="p must be a finite number >= 0"):
        flow_matching_loss(model, data, noise, T, p=p)
    with pytest.raises(ValueError, match="p must be a finite number >= 0"):
        solution_consistency_loss(model, data, noise, T, T - 0.1, T * 0, p=p)


@pytest.mark.parametrize("eps", [0.0, -1e-3, math.nan])
def test_non_positive_eps(model, batch, eps) -> None:
    data, noise = batch
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        flow_matching_loss(model, data, noise, T, eps=eps)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        solution_consistency_loss(model, data, noise, T, T - 0.1, T * 0, eps=eps)


# --- sampling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_sample_steps_below_one(model, batch, steps) -> None:
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        sample(model, batch[1], steps=steps)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        time_grid(steps)  # type: ignore[arg-type]


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
    with pytest.raises(ValueError, match=r"unknown schedule kind 'step'; expected one of"):
        RatioSchedule("step")


@pytest.mark.parametrize("field", ["r_init", "r_end"])
@pytest.mark.parametrize("value", [0.0, 1.5, -0.1])
def test_schedule_ratio_outside_range(field, value) -> None:
    with pytest.raises(ValueError, match=rf"RatioSchedule.{field} must lie in \(0, 1\]"):
        RatioSchedule(**{field: value})


@pytest.mark.parametrize("total", [0, -5, 2.5])
def test_schedule_total_steps(total) -> None:
    with pytest.raises(ValueError, match=r"RatioSchedule\.total_steps must be an int >= 1"):
        RatioSchedule(total_steps=total)  # type: ignore[arg-type]


def test_schedule_negative_step() -> None:
    with pytest.raises(ValueError, match="the training step must be >= 0; got -1"):
        RatioSchedule()(-1)


def test_consistency_times_ratio_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"the ratio r must lie in \[0, 1\]; got 1.5"):
        consistency_times(4, 1.5)


def test_logit_normal_bad_std() -> None:
    with pytest.raises(ValueError, match="logit-normal needs a finite mean and std > 0"):
        logit_normal_times(4, std=0.0)


def test_uniform_bad_bounds() -> None:
    with pytest.raises(ValueError, match="need 0 <= low <= high <= 1"):
        uniform_times(4, low=0.8, high=0.2)


def test_negative_batch_size() -> None:
    with pytest.raises(ValueError, match="batch must be a non-negative int"):
        uniform_times(-1)


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
