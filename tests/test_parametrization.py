"""Parametrizations f = a(t,s) x + b(t,s) F (docs: method, the solution function): boundary values and s-derivatives at s = t."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import parametrizations, times, unit_floats

from soflow_toolkit import (
    EulerParametrization,
    Parametrization,
    SolutionFlowWrapper,
    TrigParametrization,
    get_parametrization,
)


@given(data=st.data(), name=parametrizations)
def test_boundary_condition(data, name) -> None:
    """a(t, t) = 1 and b(t, t) = 0 exactly, for every t."""
    param = get_parametrization(name)
    t = torch.tensor(data.draw(times(4, unit_floats)), dtype=torch.float64)
    assert torch.equal(param.a(t, t), torch.ones_like(t))
    assert torch.equal(param.b(t, t), torch.zeros_like(t))


@given(data=st.data(), name=parametrizations)
def test_s_derivatives_match_autograd(data, name) -> None:
    param = get_parametrization(name)
    t = torch.tensor(data.draw(times(4, unit_floats)), dtype=torch.float64)
    ones = torch.ones_like(t)
    # jvp (strict=False) gives zeros for a coefficient that does not depend on s (euler's a = 1).
    _, da = torch.autograd.functional.jvp(lambda s: param.a(t, s), t.clone(), ones)
    _, db = torch.autograd.functional.jvp(lambda s: param.b(t, s), t.clone(), ones)
    torch.testing.assert_close(param.da_ds(t), da, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(param.db_ds(t), db, rtol=1e-12, atol=1e-12)


def test_closed_forms() -> None:
    t = torch.tensor([0.9, 0.5], dtype=torch.float64)
    s = torch.tensor([0.1, 0.5], dtype=torch.float64)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    f_out = torch.tensor([[-1.0, 0.5], [2.0, 2.0]], dtype=torch.float64)
    euler = EulerParametrization().solution(x, f_out, t, s)
    torch.testing.assert_close(euler, x + (s - t)[:, None] * f_out)
    angle = (s - t) * math.pi / 2
    trig = TrigParametrization().solution(x, f_out, t, s)
    torch.testing.assert_close(trig, torch.cos(angle)[:, None] * x + torch.sin(angle)[:, None] * f_out)
    torch.testing.assert_close(EulerParametrization().velocity(x, f_out, t), f_out)
    torch.testing.assert_close(TrigParametrization().velocity(x, f_out, t), (math.pi / 2) * f_out)


def test_get_parametrization_resolves_names_and_objects() -> None:
    assert isinstance(get_parametrization("euler"), EulerParametrization)
    assert isinstance(get_parametrization("Trig"), TrigParametrization)
    custom = TrigParametrization()
    assert get_parametrization(custom) is custom
    assert repr(get_parametrization("euler")) == "EulerParametrization()"


class _Quadratic(Parametrization):
    """A valid custom parametrization: a = 1, b = (s - t) + (s - t)^2."""

    name = "quadratic"

    def a(self, t, s):
        return torch.ones_like(t)

    def b(self, t, s):
        return (s - t) + (s - t) ** 2

    def da_ds(self, t):
        return torch.zeros_like(t)

    def db_ds(self, t):
        return torch.ones_like(t)


def test_custom_parametrization_in_wrapper() -> None:
    """A valid custom object is accepted and its velocity read-out is d/ds f at s = t."""
    from oracles import RandomBackbone

    model = SolutionFlowWrapper(RandomBackbone((3,)), parametrization=_Quadratic())
    x = torch.randn(2, 3, dtype=torch.float64)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    assert torch.equal(model(x, t, t), x)
    _, ds = torch.autograd.functional.jvp(lambda s: model(x, t, s), t.clone(), torch.ones_like(t))
    torch.testing.assert_close(model.velocity(x, t), ds, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["euler", "trig"])
def test_solution_promotes_dtype(name) -> None:
    param = get_parametrization(name)
    x = torch.ones(2, 3, dtype=torch.bfloat16)
    t = torch.tensor([0.5, 0.5])
    s = torch.tensor([0.0, 0.25])
    assert param.solution(x, x, t, s).dtype == torch.float32
