"""The solution-flow wrapper (docs: method, the solution function): boundary condition, velocity read-out, calling conventions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import GaussianOracle, RandomBackbone, exact_solution, exact_velocity, posterior_data_noise
from strategies import (
    float_dtypes,
    interior_floats,
    parametrizations,
    paths,
    seeds,
    shapes,
    times,
    unit_floats,
)
from torch import nn

from soflow_toolkit import SolutionFlowWrapper, unwrap_model
from soflow_toolkit.wrapper import call_backbone


@given(
    data=st.data(),
    shape=shapes(),
    path=paths,
    parametrization=parametrizations,
    dtype=float_dtypes,
    seed=seeds,
)
def test_boundary_condition_is_exact(data, shape, path, parametrization, dtype, seed, make_model) -> None:
    """f(x, t, t) = x bit for bit, whatever the backbone returns."""
    model = make_model(shape[1:], seed=seed, path=path, parametrization=parametrization, dtype=dtype)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    t = torch.tensor(data.draw(times(shape[0], unit_floats)), dtype=dtype)
    out = model(x, t, t)
    assert out.dtype == dtype
    assert torch.equal(out, x)


@given(data=st.data(), shape=shapes(), path=paths, parametrization=parametrizations, seed=seeds)
def test_velocity_is_s_derivative_of_solution(data, shape, path, parametrization, seed, make_model) -> None:
    """velocity(x, t) = d/ds f(x, t, s) at s = t, the derivative taken by autograd (float64)."""
    model = make_model(shape[1:], seed=seed, path=path, parametrization=parametrization)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    t = torch.tensor(data.draw(times(shape[0], unit_floats)), dtype=torch.float64)
    _, ds = torch.autograd.functional.jvp(lambda s: model(x, t, s), t.clone(), torch.ones_like(t))
    torch.testing.assert_close(model.velocity(x, t), ds, rtol=1e-10, atol=1e-12)


def test_solution_closed_form_with_float_times(make_model) -> None:
    """Python floats broadcast over the batch; f = a x + b F with the backbone's own output."""
    model = make_model((2, 2), parametrization="trig")
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    f_out = model(x, 0.7, 0.2, output="backbone")
    expected_backbone = model.backbone(x, torch.full((3,), 0.7).double(), torch.full((3,), 0.2).double())
    torch.testing.assert_close(f_out, expected_backbone)
    angle = torch.tensor((0.2 - 0.7) * torch.pi / 2, dtype=torch.float64)
    torch.testing.assert_close(model(x, 0.7, 0.2), torch.cos(angle) * x + torch.sin(angle) * f_out)
    # A 0-d tensor time broadcasts like a float.
    torch.testing.assert_close(model(x, torch.tensor(0.7).double(), 0.2), model(x, 0.7, 0.2))


class _Recorder(nn.Module):
    """Returns zeros and records what it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple, dict]] = []

    def forward(self, x, t, s, *args, **kwargs):
        self.calls.append(((x, t, s, *args), kwargs))
        return torch.zeros_like(x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_backbone_receives_times_in_compute_dtype(dtype) -> None:
    recorder = _Recorder()
    model = SolutionFlowWrapper(recorder)
    x = torch.ones(2, 3, dtype=dtype)
    out = model(x, 0.5, 0.25)
    (x_in, t, s), _ = recorder.calls[0]
    assert x_in.dtype == dtype
    assert out.dtype == dtype
    expected = torch.float64 if dtype == torch.float64 else torch.float32
    assert t.dtype == expected
    assert s.dtype == expected
    assert t.shape == (2,)
    assert s.shape == (2,)
    assert torch.equal(t, torch.full((2,), 0.5, dtype=expected))


def test_velocity_calls_backbone_once_with_s_equal_t() -> None:
    recorder = _Recorder()
    model = SolutionFlowWrapper(recorder)
    model.velocity(torch.ones(2, 3), torch.tensor([0.1, 0.6]))
    assert len(recorder.calls) == 1
    (_, t, s), _ = recorder.calls[0]
    assert torch.equal(t, s)


def test_check_inputs_false_skips_the_value_checks() -> None:
    model = SolutionFlowWrapper(_Recorder(), check_inputs=False)
    out = model(torch.ones(2, 3), 1.5, -0.5)
    assert out.shape == (2, 3)
    assert model(torch.full((2, 3), float("nan")), 0.5, 0.5).isnan().all()
    checked = SolutionFlowWrapper(_Recorder())
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        checked(torch.ones(2, 3), 1.5, 0.0)
    # The per-call keyword overrides the wrapper's setting, both ways, without changing it.
    assert checked(torch.ones(2, 3), 1.5, 0.0, check_inputs=False).shape == (2, 3)
    with pytest.raises(ValueError, match=r"s must lie in \[0, 1\]"):
        model(torch.ones(2, 3), 0.5, -0.5, check_inputs=True)
    assert checked.check_inputs
    assert not model.check_inputs


def test_allow_s_above_t_opts_in_to_maps_towards_the_noise() -> None:
    x = torch.ones(2, 3)
    model = SolutionFlowWrapper(_Recorder(), allow_s_above_t=True)
    torch.testing.assert_close(model(x, 0.2, 0.7), x)  # F = 0: f = x for any (t, s)
    assert len(model.backbone.calls) == 1


def test_extra_repr_names_path_and_parametrization() -> None:
    text = repr(SolutionFlowWrapper(_Recorder(), path="trig", parametrization="trig"))
    assert "path='trig'" in text
    assert "parametrization='trig'" in text


def test_backbone_is_the_only_child_and_parameters_are_registered() -> None:
    backbone = RandomBackbone((3,))
    model = SolutionFlowWrapper(backbone)
    assert list(model.children()) == [backbone]
    assert {n for n, _ in model.named_parameters()} == {
        f"backbone.{n}" for n, _ in backbone.named_parameters()
    }


class _FakeDDP(nn.Module):
    """Stands in for DistributedDataParallel: holds the wrapped model as `.module`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class _FakeCompiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule: holds the model as `._orig_mod`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._orig_mod = module

    def forward(self, *args, **kwargs):
        return self._orig_mod(*args, **kwargs)


def test_unwrap_model_through_nested_wrappers() -> None:
    wrapper = SolutionFlowWrapper(_Recorder())
    assert unwrap_model(wrapper) is wrapper
    assert unwrap_model(_FakeDDP(wrapper)) is wrapper
    assert unwrap_model(_FakeCompiled(_FakeDDP(wrapper))) is wrapper


def test_call_backbone_conventions() -> None:
    recorder = _Recorder()
    x, t = torch.ones(2, 3), torch.zeros(2)
    call_backbone(recorder, x, t, t)
    call_backbone(recorder, x, t, t, torch.tensor([1, 2]))
    call_backbone(recorder, x, t, t, {"y": torch.tensor([1, 2]), "mask": None})
    assert len(recorder.calls[0][0]) == 3
    assert recorder.calls[0][1] == {}
    assert len(recorder.calls[1][0]) == 4
    assert recorder.calls[1][1] == {}
    assert len(recorder.calls[2][0]) == 3
    assert set(recorder.calls[2][1]) == {"y", "mask"}


# --- the Gaussian oracle of tests/oracles.py reproduces the exact solution map ------------------------


MU = torch.tensor([[1.5, -0.5, 0.0], [0.25, 2.0, -1.0]], dtype=torch.float64)


@given(data=st.data(), sigma=st.sampled_from([0.0, 0.3, 1.0, 2.0]), seed=seeds)
def test_oracle_reproduces_exact_solution_map(data, sigma, seed) -> None:
    # The exact map holds in both directions; s > t is evaluated on purpose (the documented opt-in).
    model = SolutionFlowWrapper(GaussianOracle(MU, sigma), allow_s_above_t=True)
    batch = 4
    lo = 0.05 if sigma == 0 else 0.0  # with sigma = 0 the marginal at t = 0 is a point mass
    t = torch.tensor(data.draw(times(batch, st.floats(lo, 1.0))), dtype=torch.float64)
    s = torch.tensor(data.draw(times(batch, st.floats(lo, 1.0))), dtype=torch.float64)
    x = torch.randn(batch, *MU.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(model(x, t, s), exact_solution(x, t, s, MU, sigma), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.velocity(x, t), exact_velocity(x, t, MU, sigma), rtol=1e-12, atol=1e-12)


@given(data=st.data(), seed=seeds)
def test_exact_map_is_a_flow_of_the_exact_velocity(data, seed) -> None:
    """Checks the oracle's own closed forms: semigroup law, d/ds f = v*, and v* = E[noise - data | x_t]."""
    sigma = 0.7
    t, u, s = (torch.tensor(data.draw(times(3, interior_floats)), dtype=torch.float64) for _ in range(3))
    x = torch.randn(3, *MU.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    two_hops = exact_solution(exact_solution(x, t, u, MU, sigma), u, s, MU, sigma)
    torch.testing.assert_close(two_hops, exact_solution(x, t, s, MU, sigma), rtol=1e-12, atol=1e-12)
    _, ds = torch.autograd.functional.jvp(
        lambda ss: exact_solution(x, t, ss, MU, sigma), t.clone(), torch.ones_like(t)
    )
    torch.testing.assert_close(exact_velocity(x, t, MU, sigma), ds, rtol=1e-10, atol=1e-12)
    post_data, post_noise = posterior_data_noise(x, t, MU, sigma)
    torch.testing.assert_close(
        exact_velocity(x, t, MU, sigma), post_noise - post_data, rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close((1 - t)[:, None, None] * post_data + t[:, None, None] * post_noise, x)


def test_exact_velocity_is_the_conditional_expectation_by_monte_carlo() -> None:
    """Independent of the algebra: regress noise - data on x_t over many samples at a fixed t."""
    sigma, t_value, n = 0.5, 0.4, 400_000
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.8], dtype=torch.float64)
    data = mu + sigma * torch.randn(n, 1, generator=g, dtype=torch.float64)
    noise = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x_t = (1 - t_value) * data + t_value * noise
    target = (noise - data)[:, 0]
    design = torch.stack([torch.ones(n, dtype=torch.float64), x_t[:, 0]], 1)
    coef = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
    t = torch.full((2,), t_value, dtype=torch.float64)
    probe = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    v = exact_velocity(probe, t, mu, sigma)[:, 0]
    torch.testing.assert_close(v, coef[0] + coef[1] * probe[:, 0], rtol=0, atol=5e-3)
