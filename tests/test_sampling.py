"""Few-step sampling (docs: method, sampling): 1 NFE, re-noising, chaining, Euler integration; oracle moments."""

from __future__ import annotations

import itertools

import pytest
import torch
from oracles import GaussianOracle, RandomBackbone
from torch import nn

from soflow_toolkit import SolutionFlowWrapper, euler_sample, sample, time_grid

MU = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
SIGMA = 0.4


def _noise(n, shape=(2, 3), seed=0, dtype=torch.float64):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_time_grid() -> None:
    assert time_grid(1) == [1.0]
    assert time_grid(4) == [1.0, 0.75, 0.5, 0.25]


@pytest.mark.parametrize("path", ["linear", "trig"])
@pytest.mark.parametrize("param", ["euler", "trig"])
def test_one_step_is_f_noise_1_0(path, param, make_model) -> None:
    model = make_model((2, 3), seed=5, path=path, parametrization=param)
    noise = _noise(4)
    out = sample(model, noise)
    assert torch.equal(out, model(noise, 1.0, 0.0))
    assert not out.requires_grad


@pytest.mark.parametrize("path", ["linear", "trig"])
@pytest.mark.parametrize("steps", [2, 3, 4])
def test_renoise_matches_the_official_loop(path, steps, make_model) -> None:
    """x_hat = f(x, t_i, 0); x = alpha(t_{i+1}) x_hat + beta(t_{i+1}) eps_i; last: f(x, t_{N-1}, 0)."""
    model = make_model((2, 3), seed=5, path=path)
    noises = [_noise(3, seed=i) for i in range(steps)]
    out = sample(model, noises[0], steps=steps, fresh_noise=noises[1:])
    x = noises[0]
    grid = [1 - i / steps for i in range(steps)]
    with torch.no_grad():
        for i, t_i in enumerate(grid):
            x_hat = model(x, t_i, 0.0)
            if i == steps - 1:
                break
            t_next = torch.full((3,), grid[i + 1], dtype=torch.float64)
            x = model.path.interpolate(x_hat, noises[i + 1], t_next)
    torch.testing.assert_close(out, x_hat, rtol=0, atol=0)


def test_renoise_with_generator_is_reproducible_and_random(make_model) -> None:
    model = make_model((2, 3), seed=5)
    noise = _noise(3)
    a = sample(model, noise, steps=3, generator=torch.Generator().manual_seed(0))
    b = sample(model, noise, steps=3, generator=torch.Generator().manual_seed(0))
    c = sample(model, noise, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_chain_composes_solution_maps(steps, make_model) -> None:
    model = make_model((2, 3), seed=5, parametrization="trig")
    noise = _noise(3)
    out = sample(model, noise, steps=steps, method="chain")
    grid = [*[1 - i / steps for i in range(steps)], 0.0]
    x = noise
    with torch.no_grad():
        for t_i, t_next in itertools.pairwise(grid):
            x = model(x, t_i, t_next)
    torch.testing.assert_close(out, x, rtol=0, atol=0)


def test_euler_sample_matches_manual_loop(make_model) -> None:
    model = make_model((2, 3), seed=5, parametrization="trig")
    noise = _noise(3)
    out = euler_sample(model, noise, steps=5)
    x = noise
    grid = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    with torch.no_grad():
        for t_i, t_next in itertools.pairwise(grid):
            x = x + (t_next - t_i) * model.velocity(x, t_i)
    torch.testing.assert_close(out, x)


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conds: list = []

    def forward(self, x, t, s, cond=None):
        self.conds.append(cond)
        return torch.zeros_like(x)


@pytest.mark.parametrize("method", ["renoise", "chain"])
def test_condition_reaches_every_evaluation(method) -> None:
    recorder = _Recorder()
    labels = torch.tensor([0, 2, 1])
    sample(SolutionFlowWrapper(recorder), _noise(3), steps=4, cond=labels, method=method)
    assert len(recorder.conds) == 4
    assert all(c is labels for c in recorder.conds)
    euler_sample(SolutionFlowWrapper(recorder), _noise(3), steps=2, cond=labels)
    assert len(recorder.conds) == 6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["renoise", "chain"])
def test_output_dtype_follows_noise(dtype, method) -> None:
    model = SolutionFlowWrapper(RandomBackbone((2, 3), dtype=torch.float32))
    noise = _noise(2).to(dtype)
    out = sample(model, noise, steps=3, method=method, generator=torch.Generator().manual_seed(0))
    assert out.dtype == dtype
    assert euler_sample(model, noise, steps=2).dtype == dtype


# --- oracle: the exact solution map of Gaussian data turns noise into data ---------------------------


def _moments(x):
    centred = x - MU
    return float(centred.mean()), float(centred.std())


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_oracle_samples_have_data_moments(steps) -> None:
    """One step maps noise to mu + sigma * noise; re-noising keeps the marginals, so every N gives data."""
    n = 20_000
    model = SolutionFlowWrapper(GaussianOracle(MU, SIGMA))
    noise = _noise(n, MU.shape)
    out = sample(model, noise, steps=steps, generator=torch.Generator().manual_seed(9))
    mean, std = _moments(out)
    per_element_mean = (out - MU).mean(0)
    standard_error = SIGMA / n**0.5
    assert abs(mean) < 4 * standard_error / MU.numel() ** 0.5
    assert bool((per_element_mean.abs() < 4 * standard_error).all())
    assert std == pytest.approx(SIGMA, rel=0.02)
    if steps == 1:
        torch.testing.assert_close(out, MU + SIGMA * noise)


def test_oracle_chain_equals_one_step() -> None:
    """The exact map obeys the semigroup law, so chaining N jumps equals one jump."""
    model = SolutionFlowWrapper(GaussianOracle(MU, SIGMA))
    noise = _noise(64, MU.shape)
    one = sample(model, noise)
    for steps in (2, 3, 7):
        torch.testing.assert_close(
            sample(model, noise, steps=steps, method="chain"), one, rtol=1e-12, atol=1e-12
        )


def test_oracle_euler_integration_converges() -> None:
    """Integrating the exact velocity converges to the exact one-step sample as the step count grows."""
    model = SolutionFlowWrapper(GaussianOracle(MU, SIGMA))
    noise = _noise(256, MU.shape)
    exact = MU + SIGMA * noise
    errors = [float((euler_sample(model, noise, steps=n) - exact).abs().max()) for n in (10, 20, 40, 80)]
    assert all(a > b for a, b in itertools.pairwise(errors))
    assert errors[-1] < 0.05
    # Euler is first order: doubling the steps halves the error.
    assert errors[2] / errors[3] == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("method", ["renoise", "chain"])
def test_one_host_synchronisation_per_sampling_run(method, host_syncs, make_model) -> None:
    """Every network output of a run is checked at once: one sync with checks on, none off."""
    for check_inputs, expected in ((True, ["__bool__"]), (False, [])):
        model = make_model((2, 3), seed=5)
        model.check_inputs = check_inputs
        noise = _noise(4)
        with host_syncs() as calls:
            sample(model, noise, steps=3, method=method, generator=torch.Generator().manual_seed(0))
            assert calls == expected
        with host_syncs() as calls:
            euler_sample(model, noise, steps=3)
            assert calls == expected
