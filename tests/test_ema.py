"""EMA: the decay schedule with and without warm-up, `every`, dtype, and the state_dict round trip."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from soflow_toolkit import EMA


class Scalar(nn.Module):
    """One parameter, so the average can be re-derived by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros((), dtype=torch.float64))


def _drive(ema: EMA, model: Scalar, values: list[float]) -> None:
    for value in values:
        with torch.no_grad():
            model.w.fill_(value)
        ema.update(model)


def _reference(values: list[float], decay: float, every: int, warmup: bool) -> float:
    """Re-derivation: average <- g_k average + (1 - g_k) w on every `every`-th call, g_k as documented."""
    average, applied = 0.0, 0
    for call, value in enumerate(values, start=1):
        if call % every:
            continue
        gamma = min(decay, (1 + applied) / (10 + applied)) if warmup else decay
        average = gamma * average + (1 - gamma) * value
        applied += 1
    return average


@given(
    values=st.lists(st.floats(-10, 10), min_size=1, max_size=40),
    decay=st.floats(0.0, 0.999),
    every=st.integers(1, 4),
    warmup=st.booleans(),
)
def test_average_follows_the_documented_recursion(
    values: list[float], decay: float, every: int, warmup: bool
) -> None:
    model = Scalar()
    ema = EMA(model, decay=decay, every=every, warmup=warmup)
    _drive(ema, model, values)
    assert float(ema.shadow["w"]) == pytest.approx(_reference(values, decay, every, warmup), abs=1e-12)


def test_warmup_decay_sequence() -> None:
    model = Scalar()
    ema = EMA(model, decay=0.5, warmup=True)
    seen = []
    for _ in range(4):
        seen.append(ema.current_decay)
        ema.update(model)
    # (1 + k) / (10 + k) = 0.1, 2/11, 3/12, 4/13; capped at 0.5 only later (k >= 8)
    assert seen == pytest.approx([0.1, 2 / 11, 3 / 12, 4 / 13])
    for _ in range(20):
        ema.update(model)
    assert ema.current_decay == 0.5
    assert EMA(model, decay=0.5).current_decay == 0.5


def test_warmup_forgets_the_initial_weights_in_a_short_run() -> None:
    """After 1850 steps at decay 0.999 the plain EMA keeps 0.999^1850 = 16 % of the initial weights."""
    model = Scalar()
    plain, warm = EMA(model, decay=0.999), EMA(model, decay=0.999, warmup=True)
    with torch.no_grad():
        model.w.fill_(1.0)  # the initial weights were 0; every later weight is 1
    for _ in range(1850):
        plain.update(model)
        warm.update(model)
    assert 1 - float(plain.shadow["w"]) == pytest.approx(0.999**1850, rel=1e-9)
    assert 1 - float(warm.shadow["w"]) < 1e-6


@pytest.mark.parametrize("warmup", [False, True])
def test_state_dict_round_trip_resumes_exactly(warmup: bool) -> None:
    values = [float(v) for v in torch.randn(30, generator=torch.Generator().manual_seed(0))]
    model = Scalar()
    straight = EMA(model, decay=0.9, every=2, warmup=warmup, dtype=torch.float64)
    _drive(straight, model, values)

    first = EMA(Scalar(), decay=0.9, every=2, warmup=warmup, dtype=torch.float64)
    _drive(first, model, values[:13])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = EMA(Scalar(), decay=0.5)  # constructor settings are overwritten by the saved state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert (resumed.decay, resumed.every, resumed.warmup, resumed.num_calls) == (0.9, 2, warmup, 13)
    _drive(resumed, model, values[13:])
    assert torch.equal(resumed.shadow["w"], straight.shadow["w"])


def test_a_state_saved_before_warmup_existed_loads_without_warmup() -> None:
    ema = EMA(Scalar(), decay=0.9, warmup=True)
    state = ema.state_dict()
    del state["warmup"]
    ema.load_state_dict(state)
    assert ema.warmup is False


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"decay": 1.0}, ValueError, r"decay must be a number in \[0, 1\)"),
        ({"decay": -0.1}, ValueError, "decay must be"),
        ({"decay": True}, ValueError, "decay must be"),
        ({"every": 0}, ValueError, "every must be an int >= 1"),
        ({"warmup": 1}, TypeError, "warmup must be a bool"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        EMA(Scalar(), **kwargs)
