"""Time samplers, their priors, consistency triples and the ratio schedule r(k, K) (docs: method, time sampling)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import float_dtypes, ratio_values, ratios, raw_time_pairs, schedule_kinds, seeds

from soflow_toolkit import (
    RatioSchedule,
    TimePriors,
    consistency_times,
    logit_normal_times,
    sample_drop_mask,
    uniform_times,
)
from soflow_toolkit.time_sampling import clamp_consistency_times, ratio_schedule

GAP = 1e-4


def _assert_valid_triple(t, l, s, dtype) -> None:
    assert t.dtype == l.dtype == s.dtype == dtype
    assert bool((s <= l).all()), (t, l, s)
    assert bool((l < t).all()), (t, l, s)
    assert bool((t >= GAP).all())
    assert bool((t <= 1).all())
    # l <= t - 1e-4, evaluated in the triple's own dtype (as the library computes it).
    assert bool((l <= t - GAP).all()), (t, l)
    assert bool((s >= 0).all())


@given(data=st.data(), r=ratios, dtype=float_dtypes)
def test_clamp_gives_ordered_clamped_triples(data, r, dtype) -> None:
    """s <= l < t, t >= 1e-4, l <= t - 1e-4 for any raw draws in [0, 1] and any r in [0, 1] (r = 1 included)."""
    t_raw, s_raw = data.draw(raw_time_pairs(4))
    t, l, s = clamp_consistency_times(torch.tensor(t_raw, dtype=dtype), torch.tensor(s_raw, dtype=dtype), r)
    _assert_valid_triple(t, l, s, dtype)


@given(r=ratios, seed=seeds, dtype=float_dtypes, mean_s=st.floats(-4, 1), mean_t=st.floats(-1, 2))
def test_consistency_times_are_ordered_and_clamped(r, seed, dtype, mean_s, mean_t) -> None:
    g = torch.Generator().manual_seed(seed)
    t, l, s = consistency_times(
        64, r, mean_s=mean_s, std_s=1.6, mean_t=mean_t, std_t=1.6, dtype=dtype, generator=g
    )
    assert t.shape == l.shape == s.shape == (64,)
    _assert_valid_triple(t, l, s, dtype)


def test_clamp_closed_form() -> None:
    """l = t + (s - t) r when no clamp is active; s' > t' puts s just below t (nothing is sorted)."""
    t_raw = torch.tensor([0.9, 0.3, 0.0, 0.5], dtype=torch.float64)
    s_raw = torch.tensor([0.1, 0.6, 0.2, 0.5], dtype=torch.float64)
    t, l, s = clamp_consistency_times(t_raw, s_raw, 0.25)
    torch.testing.assert_close(t, torch.tensor([0.9, 0.3, GAP, 0.5], dtype=torch.float64))
    torch.testing.assert_close(s, torch.tensor([0.1, 0.3 - GAP, 0.0, 0.5 - GAP], dtype=torch.float64))
    torch.testing.assert_close(l[0], torch.tensor(0.9 - 0.8 * 0.25, dtype=torch.float64))
    torch.testing.assert_close(l[1:], t[1:] - GAP)  # gaps below 1e-4 * 4 clamp to t - 1e-4
    # r = 1 gives l = s (the start of the CIFAR-10 curriculum); r = 0 gives the clamp l = t - 1e-4.
    t, l, s = clamp_consistency_times(t_raw, s_raw, 1.0)
    assert torch.equal(l, s)
    t, l, s = clamp_consistency_times(t_raw, s_raw, 0.0)
    torch.testing.assert_close(l, t - GAP)


def test_consistency_times_follow_the_logit_normals(generator) -> None:
    """With r small and means far apart, t and s follow LN(mean_t, std_t) and LN(mean_s, std_s)."""
    t, _, s = consistency_times(
        50_000, 0.1, mean_s=-2.0, std_s=0.5, mean_t=1.0, std_t=0.5, generator=generator
    )
    logit_t, logit_s = torch.logit(t.double()), torch.logit(s.double())
    assert float(logit_t.mean()) == pytest.approx(1.0, abs=0.02)
    assert float(logit_t.std()) == pytest.approx(0.5, abs=0.02)
    assert float(logit_s.mean()) == pytest.approx(-2.0, abs=0.02)


def test_consistency_times_reproducible_with_generator() -> None:
    a = consistency_times(8, 0.1, generator=torch.Generator().manual_seed(3))
    b = consistency_times(8, 0.1, generator=torch.Generator().manual_seed(3))
    c = consistency_times(8, 0.1, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_logit_normal_times(generator) -> None:
    t = logit_normal_times(100_000, mean=-0.2, std=1.0, generator=generator, dtype=torch.float64)
    assert t.shape == (100_000,)
    assert t.dtype == torch.float64
    assert bool(((t > 0) & (t < 1)).all())
    z = torch.logit(t)
    assert float(z.mean()) == pytest.approx(-0.2, abs=0.015)
    assert float(z.std()) == pytest.approx(1.0, abs=0.015)


def test_uniform_times(generator) -> None:
    t = uniform_times(10_000, low=0.25, high=0.75, generator=generator)
    assert t.dtype == torch.float32
    assert bool(((t >= 0.25) & (t < 0.75)).all())
    assert float(t.mean()) == pytest.approx(0.5, abs=0.01)
    assert uniform_times(0).shape == (0,)


# --- r(k, K) -----------------------------------------------------------------------------------------


@given(kind=schedule_kinds, r_init=ratio_values, r_end=ratio_values, total=st.integers(1, 10**6))
def test_schedule_end_points(kind, r_init, r_end, total) -> None:
    """r(0, K) = r_init (r_end for const) and r(K, K) = r_end, for all four kinds."""
    schedule = RatioSchedule(kind, r_init, r_end, total)
    start = r_end if kind == "const" else r_init
    # abs=1e-15: linear/cosine subtract r_init - r_end, which rounds at the scale of max(r_init, r_end).
    assert schedule(0) == pytest.approx(start, rel=1e-12, abs=1e-15)
    assert schedule(total) == pytest.approx(r_end, rel=1e-12, abs=1e-15)
    assert schedule(total + 5) == schedule(total)  # steps past K hold r_end


@given(
    kind=schedule_kinds,
    r_init=ratio_values,
    r_end=ratio_values,
    total=st.integers(1, 10**6),
    fraction=st.floats(0, 1),
)
def test_schedule_stays_between_r_init_and_r_end(kind, r_init, r_end, total, fraction) -> None:
    schedule = RatioSchedule(kind, r_init, r_end, total)
    step = round(fraction * total)
    lo, hi = min(r_init, r_end), max(r_init, r_end)
    value = schedule(step)
    assert lo * (1 - 1e-12) - 1e-15 <= value <= hi * (1 + 1e-12) + 1e-15


@given(kind=schedule_kinds, total=st.integers(2, 10**5), data=st.data())
def test_schedule_is_monotone_when_decreasing(kind, total, data) -> None:
    schedule = RatioSchedule(kind, 1.0, 3.125e-4, total)
    a = data.draw(st.integers(0, total))
    b = data.draw(st.integers(a, total))
    assert schedule(b) <= schedule(a) * (1 + 1e-12)


def test_schedule_closed_forms() -> None:
    r0, r1, k, total = 0.1, 0.002, 2500, 10_000
    progress = k / total
    expected = {
        "const": r1,
        "linear": r0 + (r1 - r0) * progress,
        "cosine": r1 + (r0 - r1) * 0.5 * (1 + math.cos(math.pi * progress)),
        "exponent": r0 * (r1 / r0) ** progress,
    }
    for kind, value in expected.items():
        assert RatioSchedule(kind, r0, r1, total)(k) == pytest.approx(value, rel=1e-14), kind
        assert RatioSchedule(kind.capitalize(), r0, r1, total)(k) == pytest.approx(value, rel=1e-14), kind
    # The default is the ImageNet curriculum: exponent, 0.1 -> 0.002 over 400k steps.
    default = RatioSchedule()
    assert default(0) == pytest.approx(0.1)
    assert default(400_000) == pytest.approx(0.002)
    assert default(200_000) == pytest.approx((0.1 * 0.002) ** 0.5)


def test_schedule_is_frozen() -> None:
    schedule = RatioSchedule()
    with pytest.raises(AttributeError):
        schedule.r_end = 0.5  # type: ignore[misc]


def test_ratio_schedule_function_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match=r"ratio_schedule.*is deprecated.*RatioSchedule"):
        value = ratio_schedule("cosine", 30, 100, 0.5, 0.01)
    assert value == RatioSchedule("cosine", 0.5, 0.01, 100)(30)


# --- priors and devices ----------------------------------------------------------------------------


def test_time_priors_defaults_are_the_imagenet_recipe() -> None:
    priors = TimePriors()
    assert (priors.mean_fm, priors.std_fm, priors.mean_s, priors.std_s) == (-0.2, 1.0, -1.0, 0.8)
    assert (priors.mean_t, priors.std_t, priors.min_gap) == (0.2, 0.8, 1e-4)
    with pytest.raises(AttributeError):
        priors.mean_s = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "draw",
    [
        lambda g, d: uniform_times(5, device=d, generator=g),
        lambda g, d: logit_normal_times(5, device=d, generator=g),
        lambda g, d: consistency_times(5, 0.3, device=d, generator=g)[1],
        lambda g, d: sample_drop_mask(5, 0.5, device=d, generator=g),
    ],
    ids=["uniform", "logit-normal", "consistency", "drop-mask"],
)
def test_draws_happen_on_the_generator_device_and_move_to_the_requested_one(draw) -> None:
    """A CPU generator feeds another device (here "meta"); the numbers depend on the generator only."""
    on_cpu = draw(torch.Generator().manual_seed(3), None)
    moved = draw(torch.Generator().manual_seed(3), "meta")
    assert on_cpu.device.type == "cpu"
    assert moved.device.type == "meta"
    assert moved.shape == on_cpu.shape
    assert moved.dtype == on_cpu.dtype
