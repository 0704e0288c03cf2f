"""Training-time classifier-free guidance (docs: method, guidance): the decay kappa(t), the guided target, the losses."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import RandomBackbone
from strategies import unit_floats
from torch import nn

from soflow_toolkit import (
    GuidanceConfig,
    SolutionFlowWrapper,
    flow_matching_loss,
    guidance_decay,
    guided_velocity,
    sample_drop_mask,
    solution_consistency_loss,
)

NUM_CLASSES = 3


@given(tau=unit_floats, ts=st.lists(unit_floats, min_size=1, max_size=16))
def test_decay_properties(tau, ts) -> None:
    """kappa = 1 for t <= tau, kappa in [0, 1], non-increasing after tau, kappa(1) = 0 when tau < 1."""
    t = torch.tensor(sorted(ts), dtype=torch.float64)
    kappa = guidance_decay(t, tau)
    assert kappa.shape == t.shape
    assert kappa.dtype == t.dtype
    assert bool(((kappa >= 0) & (kappa <= 1)).all())
    assert bool((kappa[t <= tau] == 1).all())
    after = kappa[t > tau]
    assert bool((after[1:] <= after[:-1]).all())
    end = guidance_decay(torch.ones(1, dtype=torch.float64), tau)
    assert float(end) == (1.0 if tau >= 1 else 0.0)


def test_decay_closed_form() -> None:
    tau, k = 0.8, 0.025
    t = torch.tensor([0.5, 0.8, 0.9, 0.95, 1.0], dtype=torch.float64)
    u = ((1 - t) / (1 - tau)).clamp(0, 1 - 1e-6)
    expected = torch.where(t <= tau, torch.ones_like(t), 1 - torch.exp(-k * u / (1 - u)))
    torch.testing.assert_close(guidance_decay(t, tau), expected)
    assert float(guidance_decay(torch.tensor([0.9], dtype=torch.float64), tau)) == pytest.approx(
        1 - math.exp(-k * 0.5 / 0.5)
    )
    assert torch.equal(guidance_decay(t, 1.0), torch.ones_like(t))


def test_decay_is_continuous_at_tau() -> None:
    """Just after tau, u/(1 - u) is huge and kappa is still 1 to float precision (no jump)."""
    tau = 0.5
    t = torch.tensor([tau, tau + 1e-9], dtype=torch.float64)
    kappa = guidance_decay(t, tau)
    assert float(kappa[0]) == 1.0
    assert float(kappa[1]) == pytest.approx(1.0, abs=1e-12)


def test_guided_velocity_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    v, v_u, v_c = (torch.randn(4, 2, 3, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0.2, 0.85, 0.95, 0.5], dtype=torch.float64)
    cfg = GuidanceConfig(scale=3.0, mix_ratio=0.25, decay_time=0.8)
    kappa = guidance_decay(t, 0.8)[:, None, None]
    guided = v + kappa * 2.0 * (v - v_u)
    expected = 0.25 * guided + 0.75 * v_c
    torch.testing.assert_close(guided_velocity(v, v_u, t, cfg, v_cond=v_c), expected)
    mask = torch.tensor([True, False, True, False])
    masked = guided_velocity(v, v_u, t, cfg, v_cond=v_c, drop_mask=mask)
    torch.testing.assert_close(masked[mask], v[mask])
    torch.testing.assert_close(masked[~mask], expected[~mask])
    # mix_ratio = 1 ignores v_cond.
    plain = guided_velocity(v, v_u, t, GuidanceConfig(scale=3.0, decay_time=0.8))
    torch.testing.assert_close(plain, guided)
    assert not guided_velocity(v.requires_grad_(), v_u, t, cfg, v_cond=v_c).requires_grad


def test_guidance_config_flags() -> None:
    assert not GuidanceConfig().enabled
    assert GuidanceConfig(scale=1.5).enabled
    assert not GuidanceConfig(scale=1.5).needs_conditional_velocity
    assert GuidanceConfig(scale=1.5, mix_ratio=0.5).needs_conditional_velocity
    assert not GuidanceConfig(scale=1.0, mix_ratio=0.5).needs_conditional_velocity
    assert GuidanceConfig(scale=3, drop_rate=1, mix_ratio=0, decay_time=0).scale == 3  # ints accepted


def test_sample_drop_mask() -> None:
    assert not sample_drop_mask(16, 0.0).any()
    assert sample_drop_mask(16, 1.0).all()
    mask = sample_drop_mask(100_000, 0.1, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool
    assert mask.shape == (100_000,)
    assert float(mask.float().mean()) == pytest.approx(0.1, abs=0.005)
    a = sample_drop_mask(64, 0.5, generator=torch.Generator().manual_seed(1))
    b = sample_drop_mask(64, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


# --- guidance inside the losses ------------------------------------------------------------------------


class _CountingNet(RandomBackbone):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, x, t, s, y=None):
        self.calls += 1
        return super().forward(x, t, s, y)


def _setup(batch=6, param="euler", path="linear"):
    net = _CountingNet((2, 3), seed=0, num_classes=NUM_CLASSES)
    model = SolutionFlowWrapper(net, path=path, parametrization=param)
    g = torch.Generator().manual_seed(1)
    data = torch.randn(batch, 2, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(batch, 2, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    t = torch.linspace(0.2, 0.95, batch, dtype=torch.float64)
    return model, net, data, noise, labels, t


@pytest.mark.parametrize("param", ["euler", "trig"])
def test_guided_flow_matching_target(param) -> None:
    """The FM loss regresses on v + kappa (w - 1)(v - v_null), mixed with sg(v_cond); dropped samples on v."""
    model, _, data, noise, labels, t = _setup(param=param)
    mask = torch.tensor([False, True, False, False, True, False])
    cfg = GuidanceConfig(scale=2.5, mix_ratio=0.5, decay_time=0.7)
    out = flow_matching_loss(
        model, data, noise, t, cond=labels, p=0.0, guidance=cfg, drop_mask=mask, null_cond=NUM_CLASSES
    )
    x_t = model.path.interpolate(data, noise, t)
    v = model.path.velocity(data, noise, t)
    dropped = torch.where(mask, torch.full_like(labels, NUM_CLASSES), labels)
    v_cond = model.velocity(x_t, t, dropped)
    v_null = model.velocity(x_t, t, torch.full_like(labels, NUM_CLASSES))
    kappa = guidance_decay(t, 0.7)[:, None, None]
    target = 0.5 * (v + kappa * 1.5 * (v - v_null)) + 0.5 * v_cond
    target = torch.where(mask[:, None, None], v, target)
    mse = ((v_cond - target) ** 2).mean((1, 2))
    torch.testing.assert_close(out.per_sample_mse, mse.detach())
    torch.testing.assert_close(out.loss, (mse / model.parametrization.db_ds(t).abs()).mean())


def test_all_dropped_guidance_equals_unguided_null_loss() -> None:
    """Every sample dropped: the target is the plain v and the prediction uses the null class."""
    model, _, data, noise, labels, t = _setup()
    cfg = GuidanceConfig(scale=3.0, mix_ratio=0.25, decay_time=0.8)
    everything = torch.ones(6, dtype=torch.bool)
    null = torch.full_like(labels, NUM_CLASSES)
    for loss, extra in ((flow_matching_loss, ()), (solution_consistency_loss, (t - 0.05, t * 0.3))):
        guided = loss(
            model,
            data,
            noise,
            t,
            *extra,
            cond=labels,
            guidance=cfg,
            drop_mask=everything,
            null_cond=NUM_CLASSES,
        )
        plain = loss(model, data, noise, t, *extra, cond=null)
        torch.testing.assert_close(guided.loss, plain.loss)
        torch.testing.assert_close(guided.mse, plain.mse)


def test_scale_one_is_no_guidance() -> None:
    model, _, data, noise, labels, t = _setup()
    off = flow_matching_loss(model, data, noise, t, cond=labels, guidance=GuidanceConfig(scale=1.0))
    none = flow_matching_loss(model, data, noise, t, cond=labels)
    torch.testing.assert_close(off.loss, none.loss)


def test_guidance_changes_the_consistency_target() -> None:
    """The Euler step of the consistency target follows the guided velocity, so the metric changes."""
    model, _, data, noise, labels, t = _setup()
    l, s = t - 0.05, t * 0.3
    plain = solution_consistency_loss(model, data, noise, t, l, s, cond=labels)
    guided = solution_consistency_loss(
        model, data, noise, t, l, s, cond=labels, guidance=GuidanceConfig(scale=3.0), null_cond=NUM_CLASSES
    )
    x_t = model.path.interpolate(data, noise, t)
    v = model.path.velocity(data, noise, t)
    v_null = model.velocity(x_t, t, torch.full_like(labels, NUM_CLASSES))
    x_l = x_t + (l - t)[:, None, None] * (v + 2.0 * (v - v_null))
    q = (model(x_t, t, s, labels) - model(x_l, l, s, labels)) / (t - l)[:, None, None]
    torch.testing.assert_close(guided.per_sample_mse, (q**2).mean((1, 2)).detach())
    assert not torch.allclose(plain.mse, guided.mse)


@pytest.mark.parametrize(("mix_ratio", "expected_calls"), [(1.0, 3), (0.25, 4)])
def test_consistency_skips_the_conditional_pass_when_mix_is_one(mix_ratio, expected_calls) -> None:
    """Official behaviour: the model's conditional velocity is only evaluated when m < 1."""
    model, net, data, noise, labels, t = _setup()
    cfg = GuidanceConfig(scale=3.0, mix_ratio=mix_ratio)
    solution_consistency_loss(
        model, data, noise, t, t - 0.05, t * 0.3, cond=labels, guidance=cfg, null_cond=NUM_CLASSES
    )
    assert net.calls == expected_calls


def test_flow_matching_guidance_uses_two_passes() -> None:
    """FM with guidance: the prediction (reused, detached, for the mix) and one no-grad null pass."""
    model, net, data, noise, labels, t = _setup()
    cfg = GuidanceConfig(scale=3.0, mix_ratio=0.25)
    flow_matching_loss(model, data, noise, t, cond=labels, guidance=cfg, null_cond=NUM_CLASSES)
    assert net.calls == 2


def test_guidance_passes_carry_no_gradient() -> None:
    """Only the prediction is differentiated: the null and mix passes are under no_grad."""
    model, net, data, noise, labels, t = _setup()
    cfg = GuidanceConfig(scale=3.0, mix_ratio=0.25, decay_time=0.8)
    out = flow_matching_loss(model, data, noise, t, cond=labels, guidance=cfg, null_cond=NUM_CLASSES, p=0.0)
    out.loss.backward()
    got = [p.grad.clone() for p in net.parameters()]
    # Same loss with the target frozen by hand: regress v_cond on a constant target.
    net.zero_grad()
    x_t = model.path.interpolate(data, noise, t)
    v = model.path.velocity(data, noise, t)
    with torch.no_grad():
        v_null = model.velocity(x_t, t, torch.full_like(labels, NUM_CLASSES))
        v_cond0 = model.velocity(x_t, t, labels)
    kappa = guidance_decay(t, 0.8)[:, None, None]
    target = 0.25 * (v + kappa * 2.0 * (v - v_null)) + 0.75 * v_cond0
    ((model.velocity(x_t, t, labels) - target) ** 2).mean().backward()
    for a, p in zip(got, net.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


class _DictNet(nn.Module):
    """Takes a dict condition as keyword arguments: `emb` (B, E) and an optional `scale`."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3 + 2 + 4, 3, dtype=torch.float64)

    def forward(self, x, t, s, emb, scale=None):
        out = self.lin(torch.cat([x, t[:, None], s[:, None], emb], 1))
        return out if scale is None else out * scale


def test_guidance_with_dict_condition_and_null_embedding() -> None:
    net = _DictNet()
    model = SolutionFlowWrapper(net)
    g = torch.Generator().manual_seed(0)
    data, noise = (
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(5, 3, generator=g, dtype=torch.float64),
    )
    cond = {
        "emb": torch.randn(5, 4, generator=g, dtype=torch.float64),
        "scale": torch.tensor(2.0, dtype=torch.float64),
    }
    null = {"emb": nn.Parameter(torch.zeros(4, dtype=torch.float64))}
    mask = torch.tensor([True, False, False, True, False])
    t = torch.full((5,), 0.5, dtype=torch.float64)
    out = solution_consistency_loss(
        model,
        data,
        noise,
        t,
        t - 0.1,
        t * 0.2,
        cond=cond,
        guidance=GuidanceConfig(scale=2.0),
        drop_mask=mask,
        null_cond=null,
    )
    out.loss.backward()
    assert torch.isfinite(out.loss)
    # The learnable null embedding receives a gradient through the dropped samples' online pass.
    assert null["emb"].grad is not None
    assert bool(null["emb"].grad.abs().sum() > 0)
