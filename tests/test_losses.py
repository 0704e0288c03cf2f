"""The two losses (docs: method, the flow matching loss; the solution consistency loss): closed forms, the surrogate's gradient, random state, dtypes, oracles."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import GaussianOracle, RandomBackbone, exact_velocity, marginal_std, posterior_data_noise
from strategies import consistency_times_batch, parametrizations, paths, seeds, shapes, times, unit_floats
from torch import nn

from soflow_toolkit import (
    LossOutput,
    SolutionFlowWrapper,
    adaptive_weight,
    flow_matching_loss,
    sample,
    solution_consistency_loss,
)

powers = st.sampled_from([0.0, 0.5, 0.75, 1.0])
epsilons = st.sampled_from([1e-3, 1e-2, 1.0])


def _setup(make_model, shape, seed, path="linear", parametrization="euler", dtype=torch.float64):
    model = make_model(tuple(shape[1:]), seed=seed, path=path, parametrization=parametrization, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 7)
    data = torch.randn(shape, generator=g, dtype=dtype)
    noise = torch.randn(shape, generator=g, dtype=dtype)
    return model, data, noise


def _col(values, x):
    return values.reshape(values.shape[0], *([1] * (x.ndim - 1)))


def _per_sample_mean(x):
    return x.reshape(x.shape[0], -1).mean(1)


# --- closed forms ----------------------------------------------------------------------------------


@given(data=st.data(), shape=shapes(), path=paths, param=parametrizations, p=powers, eps=epsilons, seed=seeds)
def test_flow_matching_closed_form(data, shape, path, param, p, eps, seed, make_model) -> None:
    model, x_data, noise = _setup(make_model, shape, seed, path, param)
    t = torch.tensor(data.draw(times(shape[0], unit_floats)), dtype=torch.float64)
    out = flow_matching_loss(model, x_data, noise, t, p=p, eps=eps)

    x_t = model.path.interpolate(x_data, noise, t)
    v = model.path.velocity(x_data, noise, t)
    mse = _per_sample_mean((model.velocity(x_t, t) - v) ** 2)
    db = model.parametrization.db_ds(t).abs()
    weight = 1 / (db * (mse + eps) ** p)
    torch.testing.assert_close(out.per_sample_mse, mse.detach())
    torch.testing.assert_close(out.per_sample_weight, weight.detach())
    torch.testing.assert_close(out.loss, (weight * mse).mean())
    torch.testing.assert_close(out.mse, mse.mean())
    torch.testing.assert_close(out.weight, weight.mean())
    assert out.per_sample_weight.requires_grad is False


@given(data=st.data(), shape=shapes(), path=paths, param=parametrizations, p=powers, eps=epsilons, seed=seeds)
def test_consistency_closed_form(data, shape, path, param, p, eps, seed, make_model) -> None:
    """mse, weight and the surrogate value re-derived from the definition of the consistency loss with the wrapper's own outputs."""
    model, x_data, noise = _setup(make_model, shape, seed, path, param)
    t, l, s = (torch.tensor(v, dtype=torch.float64) for v in data.draw(consistency_times_batch(shape[0])))
    out = solution_consistency_loss(model, x_data, noise, t, l, s, p=p, eps=eps)

    x_t = model.path.interpolate(x_data, noise, t)
    x_l = x_t + _col(l - t, x_t) * model.path.velocity(x_data, noise, t)
    q = (model(x_t, t, s) - model(x_l, l, s)) / _col(t - l, x_t)
    mse = _per_sample_mean(q**2)
    weight = 1 / (mse + eps) ** p
    backbone = model(x_t, t, s, output="backbone")
    surrogate = torch.sign(model.parametrization.b(t, s)) * _per_sample_mean(backbone * q * _col(weight, q))
    torch.testing.assert_close(out.per_sample_mse, mse.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.mse, mse.mean().detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.per_sample_weight, weight.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.loss, surrogate.mean().detach(), rtol=1e-9, atol=1e-12)


@given(
    data=st.data(),
    shape=shapes(),
    path=paths,
    param=parametrizations,
    p=powers,
    eps=epsilons,
    seed=seeds,
)
def test_surrogate_gradient_identity(data, shape, path, param, p, eps, seed, make_model) -> None:
    """docs: method, the solution consistency loss: grad of the surrogate = grad of mean_i((t-l)/|b| * 1/2 * w_i * mse_i), target and w detached."""
    model, x_data, noise = _setup(make_model, shape, seed, path, param)
    t, l, s = (torch.tensor(v, dtype=torch.float64) for v in data.draw(consistency_times_batch(shape[0])))
    params = list(model.parameters())

    out = solution_consistency_loss(model, x_data, noise, t, l, s, p=p, eps=eps)
    grads = torch.autograd.grad(out.loss, params)

    x_t = model.path.interpolate(x_data, noise, t)
    x_l = x_t + _col(l - t, x_t) * model.path.velocity(x_data, noise, t)
    with torch.no_grad():
        f_target = model(x_l, l, s)
    q = (model(x_t, t, s) - f_target) / _col(t - l, x_t)
    mse = _per_sample_mean(q**2)
    weight = (1 / (mse + eps) ** p).detach()
    reference = ((t - l) / model.parametrization.b(t, s).abs() * 0.5 * weight * mse).mean()
    expected = torch.autograd.grad(reference, params)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-14)


def test_l_equal_s_uses_x_l_as_target(make_model) -> None:
    """With l = s (r = 1) the target is f(x_l, s, s) = x_l, so q = (f_t - x_l)/(t - s)."""
    model, x_data, noise = _setup(make_model, (3, 2, 2), 0, "trig", "trig")
    t = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    s = torch.tensor([0.1, 0.0, 0.2 - 1e-4], dtype=torch.float64)
    out = solution_consistency_loss(model, x_data, noise, t, s, s, p=0.0)
    x_t = model.path.interpolate(x_data, noise, t)
    x_l = x_t + _col(s - t, x_t) * model.path.velocity(x_data, noise, t)
    q = (model(x_t, t, s) - x_l) / _col(t - s, x_t)
    torch.testing.assert_close(out.per_sample_mse, _per_sample_mean(q**2).detach())


def test_loss_output_shapes(make_model) -> None:
    model, x_data, noise = _setup(make_model, (4, 3), 0)
    for out in (
        flow_matching_loss(model, x_data, noise, 0.5),
        solution_consistency_loss(model, x_data, noise, 0.9, 0.8, 0.1),
    ):
        assert isinstance(out, LossOutput)
        assert out.loss.shape == out.mse.shape == out.weight.shape == ()
        assert out.per_sample_mse.shape == out.per_sample_weight.shape == (4,)
        assert out.loss.requires_grad
        assert not out.mse.requires_grad


def test_adaptive_weight() -> None:
    mse = torch.tensor([0.99, 3.99, 0.0], requires_grad=True)
    w = adaptive_weight(mse, p=1.0, eps=0.01)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.25, 100.0]))
    assert not w.requires_grad
    torch.testing.assert_close(adaptive_weight(mse, p=0.0, eps=0.01), torch.ones(3))
    torch.testing.assert_close(adaptive_weight(mse, p=0.5, eps=0.01), torch.tensor([1.0, 0.5, 10.0]))


def test_loss_through_a_ddp_like_wrapper_matches(make_model) -> None:
    class FakeDDP(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    model, x_data, noise = _setup(make_model, (4, 3), 3)
    t = torch.tensor([0.9, 0.6, 0.4, 0.3], dtype=torch.float64)
    plain = solution_consistency_loss(model, x_data, noise, t, t * 0.9, t * 0.1)
    wrapped = solution_consistency_loss(FakeDDP(model), x_data, noise, t, t * 0.9, t * 0.1)
    torch.testing.assert_close(plain.loss, wrapped.loss)
    torch.testing.assert_close(
        flow_matching_loss(model, x_data, noise, t).loss,
        flow_matching_loss(FakeDDP(model), x_data, noise, t).loss,
    )


# --- the random state of the paired forwards ---------------------------------------------------------


class _DropoutNet(nn.Module):
    """F = dropout(c): with different masks online and target, q would blow up like 1/(t - l)."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.ones(numel, dtype=torch.float64))
        self.drop = nn.Dropout(0.5)

    def forward(self, x, t, s):
        return self.drop(self.c.expand(x.shape[0], -1)).reshape(x.shape)


def test_consistency_target_reuses_the_online_random_state() -> None:
    """Same dropout mask in online and target passes; the loss consumes one forward's random numbers."""
    model = SolutionFlowWrapper(_DropoutNet(64)).train()
    g = torch.Generator().manual_seed(0)
    x_data = torch.randn(8, 64, generator=g, dtype=torch.float64)
    noise = torch.randn(8, 64, generator=g, dtype=torch.float64)
    t = torch.full((8,), 0.5, dtype=torch.float64)
    l = t - 1e-3
    s = torch.zeros(8, dtype=torch.float64)

    torch.manual_seed(123)
    out = solution_consistency_loss(model, x_data, noise, t, l, s, p=0.0)
    after_loss = torch.rand(5)
    # Same mask: f_t - f_l = (x_t - x_l) + (l - t) F, so q = v - F exactly (per element).
    torch.manual_seed(123)
    mask_f = model.backbone(x_data, t, s)
    q = (noise - x_data) - mask_f
    torch.testing.assert_close(out.per_sample_mse, _per_sample_mean(q**2), rtol=1e-9, atol=1e-9)
    after_one_forward = torch.rand(5)
    assert torch.equal(after_loss, after_one_forward)


# --- dtypes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("param", ["euler", "trig"])
@pytest.mark.parametrize(
    ("dtype", "loss_dtype"),
    [(torch.bfloat16, torch.float32), (torch.float32, torch.float32), (torch.float64, torch.float64)],
)
def test_dtypes_through_losses_and_sampling(dtype, loss_dtype, param) -> None:
    weights = torch.float64 if dtype == torch.float64 else torch.float32
    model = SolutionFlowWrapper(RandomBackbone((2, 3), seed=1, dtype=weights), parametrization=param)
    g = torch.Generator().manual_seed(0)
    x_data = torch.randn(4, 2, 3, generator=g).to(dtype)
    noise = torch.randn(4, 2, 3, generator=g).to(dtype)
    t = torch.tensor([0.9, 0.7, 0.5, 0.3])
    fm = flow_matching_loss(model, x_data, noise, t)
    sc = solution_consistency_loss(model, x_data, noise, t, t - 0.1, t * 0.5)
    for out in (fm, sc):
        assert out.loss.dtype == loss_dtype
        assert out.mse.dtype == loss_dtype
        assert torch.isfinite(out.loss)
        assert torch.isfinite(out.mse)
        out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model(x_data, t, t * 0).dtype == dtype
    assert model.velocity(x_data, t).dtype == dtype
    for steps in (1, 2):
        out = sample(model, noise, steps=steps, generator=g)
        assert out.dtype == dtype
        assert out.shape == noise.shape
        assert torch.isfinite(out.float()).all()


# --- oracle tests (tests/oracles.py: exact solution map of Gaussian data on the linear path) ---------

MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def _gaussian_batch(n, sigma, seed=0, mu=MU):
    g = torch.Generator().manual_seed(seed)
    x_data = mu + sigma * torch.randn(n, *mu.shape, generator=g, dtype=torch.float64)
    noise = torch.randn(n, *mu.shape, generator=g, dtype=torch.float64)
    return x_data, noise


def test_oracle_minimises_the_flow_matching_loss() -> None:
    """E|v_theta - v|^2 = E|v_theta - v*|^2 + const: the exact velocity beats every perturbation."""
    sigma, n = 0.6, 20_000
    x_data, noise = _gaussian_batch(n, sigma)
    t = torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def loss(backbone):
        out = flow_matching_loss(SolutionFlowWrapper(backbone), x_data, noise, t, p=0.0)
        return float(out.loss.detach())

    best = loss(GaussianOracle(MU, sigma))
    eye = torch.eye(3, dtype=torch.float64)
    offsets = [0.2 * sign * eye[k] for k in range(3) for sign in (1, -1)]
    offsets.append(0.2 * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64) / 3**0.5)
    for delta in offsets:
        # Excess loss = mean_D delta^2 up to a zero-mean cross term of order 1/sqrt(n).
        excess = loss(GaussianOracle(MU, sigma, perturbation=delta)) - best
        assert excess == pytest.approx(float((delta**2).mean()), rel=0.25), delta
    for gain in (0.2, -0.2):
        # A state-dependent error gamma * z with z ~ N(0, I) under the marginal: excess = gamma^2.
        excess = loss(GaussianOracle(MU, sigma, gain=gain)) - best
        assert excess == pytest.approx(gain**2, rel=0.25), gain


def _consistency_mse(model, x_data, noise, t, gap, s):
    out = solution_consistency_loss(model, x_data, noise, t, t - gap, s, p=0.0)
    return float(out.mse)


GAPS = [0.2, 0.1, 0.05, 0.02, 0.01, 3e-3, 1e-3, 3e-4, 1e-4]


def test_oracle_consistency_mse_vanishes_along_the_marginal_velocity() -> None:
    r"""For the exact map f*, d/dt f*(x_t, t, s) along the *marginal* velocity v* is 0 (f* is constant
    along the probability-flow ODE). Feeding the loss the posterior means (E[data|x_t], E[noise|x_t]) as
    data and noise keeps x_t but makes its Euler step use v*(x_t, t); then q = (f*(x_t) - f*(x_l))/(t - l)
    is Euler's local error over the gap, q = O(t - l), and the mse falls to 0 like (t - l)^2: monotone
    over shrinking gaps, about 4x per halving, and ~0 at the smallest gap.
    """
    sigma, n = 0.6, 2048
    model = SolutionFlowWrapper(GaussianOracle(MU, sigma))
    x_data, noise = _gaussian_batch(n, sigma)
    g = torch.Generator().manual_seed(2)
    t = 0.3 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    s = (t - 0.25) * torch.rand(n, generator=g, dtype=torch.float64)
    x_t = (1 - t)[:, None] * x_data + t[:, None] * noise
    post_data, post_noise = posterior_data_noise(x_t, t, MU, sigma)

    mses = [_consistency_mse(model, post_data, post_noise, t, gap, s) for gap in GAPS]
    assert all(a > b for a, b in itertools.pairwise(mses)), mses
    assert mses[0] > 1e-4  # non-trivial at a large gap
    assert mses[-1] < 1e-6 * mses[0]
    # Second order: halving the gap (0.02 -> 0.01) divides the mse by about 4.
    assert 3.0 < mses[3] / mses[4] < 5.0


def test_oracle_consistency_mse_along_conditional_velocity_tends_to_closed_form() -> None:
    r"""The loss steps along the *conditional* velocity v = noise - data. As l -> t,
    q -> d_t f* + d_x f* . v = d_x f* . (v - v*(x_t, t)) = (s_s/s_t)(v - v*(x_t, t)) (because
    d_t f* + d_x f* . v* = 0). So the mse tends to L = mean (s_s/s_t)^2 (v - v*)^2 > 0 for sigma > 0,
    with |mse - L| shrinking monotonically; the exact map does not make the metric vanish.
    """
    sigma, n = 0.6, 2048
    model = SolutionFlowWrapper(GaussianOracle(MU, sigma))
    x_data, noise = _gaussian_batch(n, sigma, seed=3)
    g = torch.Generator().manual_seed(4)
    t = 0.3 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    s = (t - 0.25) * torch.rand(n, generator=g, dtype=torch.float64)
    x_t = (1 - t)[:, None] * x_data + t[:, None] * noise
    ratio = (marginal_std(sigma, s) / marginal_std(sigma, t))[:, None]
    limit = float((ratio**2 * (noise - x_data - exact_velocity(x_t, t, MU, sigma)) ** 2).mean())

    errors = [abs(_consistency_mse(model, x_data, noise, t, gap, s) - limit) for gap in GAPS]
    assert limit > 0.05
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-3 * limit


def test_oracle_consistency_mse_is_zero_for_point_data() -> None:
    """With sigma = 0 (every data point is mu) the conditional and marginal velocities agree, x_t moves on a
    straight line, the Euler step is exact and q = 0 at every gap, not just in the limit."""
    n = 256
    model = SolutionFlowWrapper(GaussianOracle(MU, 0.0))
    x_data, noise = _gaussian_batch(n, 0.0)
    g = torch.Generator().manual_seed(5)
    t = 0.3 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    s = (t - 0.25) * torch.rand(n, generator=g, dtype=torch.float64)
    for gap in GAPS:
        assert _consistency_mse(model, x_data, noise, t, gap, s) < 1e-20
    # The same oracle with an offset is penalised: q = -delta, so mse = mean(delta^2).
    offset = torch.tensor([0.1, 0.0, -0.2], dtype=torch.float64)
    perturbed = SolutionFlowWrapper(GaussianOracle(MU, 0.0, perturbation=offset))
    assert _consistency_mse(perturbed, x_data, noise, t, 1e-2, s) == pytest.approx(float((offset**2).mean()))


def test_oracle_is_a_stationary_point_of_the_consistency_surrogate() -> None:
    r"""Although its mse does not vanish (previous test), the exact map is a stationary point: as l -> t,
    E[q | x_t] = (s_s/s_t)(E[v | x_t] - v*) = 0, so the surrogate's gradient w.r.t. an offset delta,
    sign(b) mean(q)/D, averages to 0; with an offset it is (delta - mean(q*))/D and pulls delta back."""
    sigma, n, d = 0.6, 16_384, MU.numel()
    x_data, noise = _gaussian_batch(n, sigma, seed=6)
    g = torch.Generator().manual_seed(7)
    t = 0.3 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    s = (t - 0.25) * torch.rand(n, generator=g, dtype=torch.float64)
    offset = torch.tensor([0.3, -0.3, 0.2], dtype=torch.float64)
    grads = []
    for delta in (torch.zeros(3, dtype=torch.float64), offset):
        oracle = GaussianOracle(MU, sigma, perturbation=delta)
        out = solution_consistency_loss(SolutionFlowWrapper(oracle), x_data, noise, t, t - 1e-4, s, p=0.0)
        out.loss.backward()
        grads.append(oracle.perturbation.grad * d)
    torch.testing.assert_close(grads[0], torch.zeros(3, dtype=torch.float64), rtol=0, atol=0.04)
    torch.testing.assert_close(grads[1], offset, rtol=0, atol=0.04)


def test_one_host_synchronisation_per_loss(host_syncs, make_model) -> None:
    """Data, noise, times and every backbone output are checked at once: one sync, none when off."""
    for check_inputs, expected in ((True, ["__bool__"]), (False, [])):
        model, data, noise = _setup(make_model, (4, 3), 1)
        model.check_inputs = check_inputs
        t = torch.tensor([0.9, 0.7, 0.5, 0.3], dtype=torch.float64)
        with host_syncs() as calls:
            flow_matching_loss(model, data, noise, t)
            assert calls == expected
        with host_syncs() as calls:
            solution_consistency_loss(model, data, noise, t, t * 0.5, t * 0.25)
            assert calls == expected
