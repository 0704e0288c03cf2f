"""Noising paths (docs: method, the noising path): boundary values, the time direction, and v = d x_t / dt."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import interior_floats, paths, seeds, shapes, times, unit_floats

from soflow_toolkit import LinearPath, NoisePath, SolutionFlowWrapper, TrigPath, get_path


def _pair(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(shape, generator=g, dtype=dtype)
    noise = torch.randn(shape, generator=g, dtype=dtype)
    return data, noise


@given(shape=shapes(), path=paths, seed=seeds)
def test_data_at_zero_and_noise_at_one(shape, path, seed) -> None:
    """Time runs from data (t = 0) to noise (t = 1) for every path and any rank."""
    data, noise = _pair(shape, seed)
    p = get_path(path)
    zeros = torch.zeros(shape[0], dtype=torch.float64)
    x0 = p.interpolate(data, noise, zeros)
    x1 = p.interpolate(data, noise, zeros + 1)
    assert x0.shape == shape
    if path == "linear":
        assert torch.equal(x0, data)
        assert torch.equal(x1, noise)
    else:
        torch.testing.assert_close(x0, data, rtol=0, atol=1e-12)
        torch.testing.assert_close(x1, noise, rtol=0, atol=1e-12)


@given(data=st.data(), shape=shapes(), path=paths, seed=seeds)
def test_velocity_is_time_derivative_of_x_t(data, shape, path, seed) -> None:
    """`path.velocity` equals d x_t / dt computed by autograd (float64)."""
    x_data, noise = _pair(shape, seed)
    t = torch.tensor(data.draw(times(shape[0], unit_floats)), dtype=torch.float64)
    p = get_path(path)
    _, tangent = torch.autograd.functional.jvp(
        lambda tt: p.interpolate(x_data, noise, tt), t, torch.ones_like(t)
    )
    torch.testing.assert_close(p.velocity(x_data, noise, t), tangent, rtol=1e-12, atol=1e-12)


@given(data=st.data(), path=paths)
def test_coefficient_derivatives_match_autograd(data, path) -> None:
    p = get_path(path)
    t = torch.tensor(data.draw(times(4, interior_floats)), dtype=torch.float64, requires_grad=True)
    (d_alpha,) = torch.autograd.grad(p.alpha(t).sum(), t)
    (d_beta,) = torch.autograd.grad(p.beta(t).sum(), t)
    torch.testing.assert_close(p.d_alpha(t.detach()), d_alpha, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p.d_beta(t.detach()), d_beta, rtol=1e-12, atol=1e-12)


def test_linear_velocity_is_noise_minus_data() -> None:
    data, noise = _pair((3, 2, 5), 0)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    assert torch.equal(LinearPath().velocity(data, noise, t), noise - data)


def test_trig_path_preserves_variance() -> None:
    """alpha^2 + beta^2 = 1: with unit-variance data, x_t keeps unit variance."""
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    p = TrigPath()
    torch.testing.assert_close(p.alpha(t) ** 2 + p.beta(t) ** 2, torch.ones_like(t))
    torch.testing.assert_close(
        p.d_beta(torch.zeros(1, dtype=torch.float64)), torch.tensor([math.pi / 2]).double()
    )


def test_interpolation_closed_form() -> None:
    data = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    noise = torch.tensor([[0.5, 3.0]], dtype=torch.float64)
    t = torch.tensor([0.25], dtype=torch.float64)
    torch.testing.assert_close(LinearPath().interpolate(data, noise, t), 0.75 * data + 0.25 * noise)
    c, s = math.cos(math.pi / 8), math.sin(math.pi / 8)
    torch.testing.assert_close(TrigPath().interpolate(data, noise, t), c * data + s * noise)
    torch.testing.assert_close(
        TrigPath().velocity(data, noise, t), -(math.pi / 2) * s * data + (math.pi / 2) * c * noise
    )


def test_get_path_resolves_names_and_objects() -> None:
    assert isinstance(get_path("linear"), LinearPath)
    assert isinstance(get_path("TRIG"), TrigPath)
    custom = TrigPath()
    assert get_path(custom) is custom
    assert repr(get_path("linear")) == "LinearPath()"


class _QuadraticPath(NoisePath):
    name = "quadratic"

    def alpha(self, t):
        return 1 - t**2

    def beta(self, t):
        return t**2

    def d_alpha(self, t):
        return -2 * t

    def d_beta(self, t):
        return 2 * t


def test_custom_path_is_used_by_the_wrapper() -> None:
    """A user path object is passed through and drives interpolation in the losses."""
    from oracles import RandomBackbone

    from soflow_toolkit import flow_matching_loss

    model = SolutionFlowWrapper(RandomBackbone((3,)), path=_QuadraticPath())
    assert model.path.name == "quadratic"
    data, noise = _pair((4, 3), 1)
    t = torch.full((4,), 0.5, dtype=torch.float64)
    out = flow_matching_loss(model, data, noise, t, p=0.0)
    x_t = 0.75 * data + 0.25 * noise
    v = -1.0 * data + 1.0 * noise
    expected = (model.velocity(x_t, t) - v).pow(2).mean()
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("path", ["linear", "trig"])
def test_dtype_promotion(path) -> None:
    data, noise = _pair((2, 3), 0, torch.float32)
    t = torch.tensor([0.1, 0.9], dtype=torch.float64)
    assert get_path(path).interpolate(data, noise, t).dtype == torch.float64
    assert get_path(path).interpolate(data, noise, t.float()).dtype == torch.float32
