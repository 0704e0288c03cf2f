"""Guidance chosen at sampling time: a range of scales in training, the scale as a network input.

`GuidanceConfig(scale=(low, high))` makes the objective draw one scale per sample, build each
sample's guided target with it and give it to the network (keyword `guidance_scale`) in every pass;
`sample` and `euler_sample` take the scale to sample with. The checks here:

- the config, the draw (uniform in the range, after every other draw, through the generator) and the
  per-sample guided target against its closed form;
- exactness: a degenerate range `(w, w)` gives the fixed-scale objective to 1e-12 in float64 (loss,
  parts and gradients), for label, embedding and dict conditions, both paths and parametrizations;
- the plumbing: each pass gives the network the scales of its own rows (recorded by the backbone),
  and the objective equals the weighted functional losses given the same per-sample scales;
- sampling, the adapter, the functional losses, `torch.compile` without recompilation across scales,
  and the error messages.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from frozen_behaviour import BATCH, DTYPE, NUM_CLASSES, OBJECTIVE_CASES, SHAPE, Net, conditions
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch._dynamo.utils import counters

from soflow_toolkit import (
    GuidanceConfig,
    SingleTimeAdapter,
    SoFlowConfig,
    SoFlowLoss,
    SolutionFlowWrapper,
    euler_sample,
    flow_matching_loss,
    guided_velocity,
    sample,
    solution_consistency_loss,
)

GUIDED_CASES = [
    name
    for name, (config_fn, kind, *_rest) in OBJECTIVE_CASES.items()
    if kind != "none" and config_fn().guidance.enabled
]


class ScaleNet(Net):
    """`Net` plus a term linear in the guidance scale, recording the scales of every call."""

    def __init__(self, kind: str, seed: int, dropout: float = 0.0, *, uses_scale: bool = True) -> None:
        super().__init__(kind, seed, dropout)
        g = torch.Generator().manual_seed(seed + 1)
        self.uw = nn.Parameter(0.5 * torch.randn(self.b1.shape[0], generator=g, dtype=DTYPE))
        self.uses_scale = uses_scale
        self.calls: list[Tensor] = []

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        cond: Any = None,
        *,
        guidance_scale: Tensor | None = None,
        **kw: Tensor,
    ) -> Tensor:
        out = super().forward(x, t, s, cond, **kw)
        if guidance_scale is None:
            return out
        self.calls.append(guidance_scale.detach().clone())
        if not self.uses_scale:
            return out
        return out + (torch.tanh(guidance_scale[:, None] * self.uw) @ self.W2).reshape(x.shape)


def ranged(config: SoFlowConfig, scale: tuple[float, float]) -> SoFlowConfig:
    return dataclasses.replace(config, guidance=dataclasses.replace(config.guidance, scale=scale))


def data_and_conditions(kind: str, net: Net, seed: int = 7) -> tuple[Tensor, Any, Any]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE)
    cond, null_cond = conditions(kind, net, g)
    return data, cond, null_cond


def relative_error(a: Tensor, b: Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)


# --- the config and the draw ----------------------------------------------------------------------------


def test_a_range_is_stored_as_a_tuple_of_floats() -> None:
    config = GuidanceConfig(scale=[1, 4], drop_rate=0.1)  # a list, as from JSON
    assert config.scale == (1.0, 4.0)
    assert config.scale_range == (1.0, 4.0)
    assert config.max_scale == 4.0
    assert config.enabled
    assert hash(config) == hash(GuidanceConfig(scale=(1.0, 4.0), drop_rate=0.1))
    assert GuidanceConfig(scale=2.0).scale_range is None
    assert not GuidanceConfig(scale=(1.0, 1.0)).enabled  # no guided target, but the network gets the scale
    assert GuidanceConfig(scale=(1.0, 1.5), mix_ratio=0.5).needs_conditional_velocity


@pytest.mark.parametrize(
    ("scale", "error", "message"),
    [
        ((1.0, 2.0, 3.0), ValueError, r"a range \(low, high\) of two numbers; got 3 values"),
        (
            (0.5, 2.0),
            ValueError,
            r"GuidanceConfig.scale\[0\] \(low\) must be >= 1 \(1 = no guidance\); got 0.5",
        ),
        ((2.0, 0.9), ValueError, r"GuidanceConfig.scale\[1\] \(high\) must be >= 1; got 0.9"),
        ((3.0, 2.0), ValueError, r"a range \(low, high\) with low <= high; got \(3.0, 2.0\)"),
        ((1.0, float("nan")), ValueError, r"GuidanceConfig.scale\[1\] \(high\) must be a finite number"),
        (("1", 2.0), TypeError, r"GuidanceConfig.scale\[0\] \(low\) must be a number; got str"),
    ],
)
def test_bad_ranges_are_refused(scale: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        GuidanceConfig(scale=scale)


def test_scales_are_uniform_in_the_range_and_reproducible() -> None:
    config = GuidanceConfig(scale=(1.5, 4.0))
    w = config.draw_scales(20_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    again = config.draw_scales(20_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(w, again)
    assert w.shape == (20_000,)
    assert w.dtype == torch.float64
    assert bool((w >= 1.5).all() and (w <= 4.0).all())
    # U[a, b]: mean (a + b)/2, variance (b - a)^2 / 12; the empirical CDF is within the DKW band.
    assert abs(float(w.mean()) - 2.75) < 4 * (2.5 / 12**0.5) / 20_000**0.5
    assert abs(float(w.var()) - 2.5**2 / 12) < 0.02
    grid = torch.linspace(1.5, 4.0, 11, dtype=torch.float64)
    cdf = (w[None, :] <= grid[:, None]).double().mean(dim=1)
    assert float((cdf - (grid - 1.5) / 2.5).abs().max()) < 0.015


def test_a_degenerate_range_draws_exactly_its_scale() -> None:
    w = GuidanceConfig(scale=(2.5, 2.5)).draw_scales(64, dtype=torch.float64)
    assert torch.equal(w, torch.full((64,), 2.5, dtype=torch.float64))


def test_a_fixed_scale_has_nothing_to_draw() -> None:
    with pytest.raises(ValueError, match="needs a range of scales"):
        GuidanceConfig(scale=2.0).draw_scales(4)


def test_the_scales_are_drawn_after_every_other_draw(generator: torch.Generator) -> None:
    base = SoFlowConfig.imagenet(total_steps=10)
    data = torch.randn(BATCH, 3, dtype=DTYPE)
    fixed = SoFlowLoss(base).draw(data, conditional=True, generator=torch.Generator().manual_seed(3))
    with_range = SoFlowLoss(ranged(base, (1.0, 4.0))).draw(
        data, conditional=True, generator=torch.Generator().manual_seed(3)
    )
    for field in ("noise", "t_fm", "t", "l", "s", "drop_mask"):
        assert torch.equal(getattr(fixed, field), getattr(with_range, field)), field
    assert fixed.guidance_scale is None
    assert with_range.guidance_scale is not None
    assert with_range.guidance_scale.shape == (BATCH,)
    assert with_range.guidance_scale.dtype == DTYPE


# --- the guided target -------------------------------------------------------------------------------


@given(
    scales=st.lists(st.floats(1.0, 8.0), min_size=1, max_size=8),
    mix=st.sampled_from([0.25, 1.0]),
    tau=st.sampled_from([0.5, 1.0]),
)
def test_per_sample_target_equals_the_fixed_scale_target_row_by_row(
    scales: list[float], mix: float, tau: float
) -> None:
    n = len(scales)
    g = torch.Generator().manual_seed(n)
    v, v_u, v_c = (torch.randn(n, 2, 3, generator=g, dtype=DTYPE) for _ in range(3))
    t = torch.rand(n, generator=g, dtype=DTYPE)
    mask = torch.rand(n, generator=g) < 0.3
    config = GuidanceConfig(scale=(1.0, 8.0), mix_ratio=mix, decay_time=tau)
    w = torch.tensor(scales, dtype=DTYPE)
    out = guided_velocity(v, v_u, t, config, v_cond=v_c, drop_mask=mask, scale=w)
    for i, omega in enumerate(scales):
        fixed = GuidanceConfig(scale=omega, mix_ratio=mix, decay_time=tau)
        row = slice(i, i + 1)
        expected = guided_velocity(v[row], v_u[row], t[row], fixed, v_cond=v_c[row], drop_mask=mask[row])
        torch.testing.assert_close(out[row], expected, rtol=1e-14, atol=1e-14)


def test_a_range_needs_per_sample_scales_of_the_batch_shape() -> None:
    v = torch.ones(3, 2)
    config = GuidanceConfig(scale=(1.0, 4.0))
    with pytest.raises(ValueError, match=r"needs the per-sample scales: pass scale="):
        guided_velocity(v, v, torch.rand(3), config)
    with pytest.raises(
        ValueError, match=r"scale must be a tensor of shape \(3,\), one per sample; got \(2,\)"
    ):
        guided_velocity(v, v, torch.rand(3), config, scale=torch.ones(2))


# --- exactness: a degenerate range is the fixed scale ---------------------------------------------------


@pytest.mark.parametrize("case", GUIDED_CASES)
def test_degenerate_range_equals_the_fixed_scale_to_1e12(case: str) -> None:
    config_fn, kind, path, parametrization, dropout = OBJECTIVE_CASES[case]
    fixed_config = config_fn()
    w = fixed_config.guidance.max_scale
    results = []
    for config in (fixed_config, ranged(fixed_config, (w, w))):
        net = ScaleNet(kind, seed=len(case), dropout=dropout, uses_scale=False)
        model = SolutionFlowWrapper(net, path=path, parametrization=parametrization).train()
        data, cond, null_cond = data_and_conditions(kind, net)
        objective = SoFlowLoss(config)
        draw = SoFlowLoss(ranged(fixed_config, (w, w))).draw(
            data, conditional=True, generator=torch.Generator().manual_seed(1)
        )
        if config is fixed_config:
            draw = dataclasses.replace(draw, guidance_scale=None)
        torch.manual_seed(11)  # dropout masks
        out = objective(model, data, cond, null_cond, draw=draw, step=1)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        results.append((out, grads, net.calls))
    (fixed, fixed_grads, fixed_calls), (degenerate, degenerate_grads, calls) = results
    assert not fixed_calls
    assert calls
    assert all(torch.equal(c, torch.full_like(c, w)) for c in calls)
    assert relative_error(degenerate.loss, fixed.loss) <= 1e-12
    for part in ("fm", "sc"):
        a, b = getattr(degenerate, part), getattr(fixed, part)
        assert (a is None) == (b is None)
        if a is not None:
            assert relative_error(a.per_sample_mse, b.per_sample_mse) <= 1e-12
            assert relative_error(a.per_sample_weight, b.per_sample_weight) <= 1e-12
    assert fixed_grads.keys() == degenerate_grads.keys()
    for name, grad in fixed_grads.items():
        assert relative_error(degenerate_grads[name], grad) <= 1e-12, name


@pytest.mark.parametrize("case", GUIDED_CASES[:3])
def test_each_row_gets_the_target_of_its_own_scale(case: str) -> None:
    """With a backbone that ignores the scale, row i of a range step is row i of a fixed-scale step at omega_i."""
    config_fn, kind, path, parametrization, _ = OBJECTIVE_CASES[case]
    config = ranged(config_fn(), (1.0, 5.0))
    net = ScaleNet(kind, seed=3, uses_scale=False)
    model = SolutionFlowWrapper(net, path=path, parametrization=parametrization)
    data, cond, null_cond = data_and_conditions(kind, net)
    draw = SoFlowLoss(config).draw(data, conditional=True, generator=torch.Generator().manual_seed(2))
    assert draw.guidance_scale is not None
    out = SoFlowLoss(config)(model, data, cond, null_cond, draw=draw, step=0)
    num_fm = out.num_fm
    for i, omega in enumerate(draw.guidance_scale.tolist()):
        fixed = dataclasses.replace(config, guidance=dataclasses.replace(config.guidance, scale=omega))
        row = SoFlowLoss(fixed)(
            model, data, cond, null_cond, draw=dataclasses.replace(draw, guidance_scale=None), step=0
        )
        part, index = (out.fm, row.fm) if i < num_fm else (out.sc, row.sc)
        j = i if i < num_fm else i - num_fm
        assert part is not None
        assert index is not None
        assert relative_error(part.per_sample_mse[j], index.per_sample_mse[j]) <= 1e-12, i


# --- the plumbing: every pass gives the network its rows' scales ---------------------------------------


@pytest.mark.parametrize("kind", ["labels", "embedding", "dict"])
@pytest.mark.parametrize("mix", [0.25, 1.0])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_every_pass_gets_the_scales_of_its_rows(kind: str, mix: float, dropout: float) -> None:
    guidance = GuidanceConfig(scale=(1.0, 4.0), drop_rate=0.3, mix_ratio=mix, decay_time=0.8)
    config = SoFlowConfig.imagenet(fm_fraction=0.5, guidance=guidance, total_steps=10)
    net = ScaleNet(kind, seed=5, dropout=dropout)
    model = SolutionFlowWrapper(net).train()
    data, cond, null_cond = data_and_conditions(kind, net)
    objective = SoFlowLoss(config)
    draw = objective.draw(data, conditional=True, generator=torch.Generator().manual_seed(4))
    objective(model, data, cond, null_cond, draw=draw, step=0).loss.backward()
    w = draw.guidance_scale
    assert w is not None
    sc = slice(BATCH // 2, None)
    guidance_pass = torch.cat([w, w[sc]]) if mix < 1 else w  # all unconditional rows, then the mix rows
    target_pass = w if dropout > 0 else w[sc]  # matched random state repeats the whole batch
    expected = [guidance_pass, w, target_pass]
    assert len(net.calls) == len(expected)
    for got, want in zip(net.calls, expected, strict=True):
        assert torch.equal(got, want)
    assert net.uw.grad is not None
    assert float(net.uw.grad.abs().max()) > 0


@pytest.mark.parametrize("kind", ["labels", "embedding", "dict"])
def test_the_objective_equals_the_functional_losses_with_per_sample_scales(kind: str) -> None:
    guidance = GuidanceConfig(scale=(1.0, 4.0), drop_rate=0.3, mix_ratio=0.25, decay_time=0.8)
    config = SoFlowConfig.imagenet(guidance=guidance, total_steps=10)
    net = ScaleNet(kind, seed=6)
    model = SolutionFlowWrapper(net)
    data, cond, null_cond = data_and_conditions(kind, net)
    objective = SoFlowLoss(config)
    draw = objective.draw(data, conditional=True, generator=torch.Generator().manual_seed(5))
    out = objective(model, data, cond, null_cond, draw=draw, step=0)
    assert draw.guidance_scale is not None
    assert draw.drop_mask is not None
    n_fm = out.num_fm

    def rows(x: Any, part: slice) -> Any:
        if isinstance(x, dict):
            return {k: rows(v, part) for k, v in x.items()}
        return x[part]

    def common(part: slice) -> dict[str, Any]:
        return {
            "cond": rows(cond, part),
            "null_cond": null_cond,
            "p": config.p,
            "eps": config.eps,
            "guidance": guidance,
            "drop_mask": draw.drop_mask[part],
            "guidance_scale": draw.guidance_scale[part],
        }

    fm_rows, sc_rows = slice(0, n_fm), slice(n_fm, None)
    fm = flow_matching_loss(model, data[fm_rows], draw.noise[fm_rows], draw.t_fm, **common(fm_rows))
    sc = solution_consistency_loss(
        model, data[sc_rows], draw.noise[sc_rows], draw.t, draw.l, draw.s, **common(sc_rows)
    )
    expected = (n_fm / BATCH) * fm.loss + ((BATCH - n_fm) / BATCH) * sc.loss
    assert relative_error(out.loss, expected) <= 1e-12
    assert out.fm is not None
    assert out.sc is not None
    assert relative_error(out.fm.per_sample_mse, fm.per_sample_mse) <= 1e-12
    assert relative_error(out.sc.per_sample_mse, sc.per_sample_mse) <= 1e-12


def test_the_adapter_passes_the_scale_to_a_single_time_backbone() -> None:
    class SingleTime(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.time_embed = nn.Linear(1, 4)
            self.out = nn.Linear(4, 2)
            self.seen: list[Tensor] = []

        def forward(self, x: Tensor, time: Tensor, labels: Tensor, *, guidance_scale: Tensor) -> Tensor:
            self.seen.append(guidance_scale)
            return x + self.out(self.time_embed(time[:, None])) * guidance_scale[:, None]

    backbone = SingleTime()
    model = SolutionFlowWrapper(SingleTimeAdapter(backbone, time_embedding="time_embed"))
    labels = torch.tensor([0, 1, 2])
    out = sample(model, torch.randn(3, 2), cond=labels, guidance_scale=torch.tensor([1.0, 2.0, 3.0]))
    assert out.shape == (3, 2)
    assert torch.equal(backbone.seen[-1], torch.tensor([1.0, 2.0, 3.0]))


# --- sampling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["labels", "embedding", "dict"])
def test_samplers_give_every_evaluation_the_scale(kind: str) -> None:
    net = ScaleNet(kind, seed=8)
    model = SolutionFlowWrapper(net)
    _, cond, _ = data_and_conditions(kind, net)
    noise = torch.randn(BATCH, *SHAPE, dtype=DTYPE)
    sample(model, noise, steps=3, cond=cond, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    euler_sample(model, noise, steps=2, cond=cond, guidance_scale=2.0)
    assert len(net.calls) == 5
    assert all(torch.equal(c, torch.full((BATCH,), 2.0, dtype=DTYPE)) for c in net.calls)
    per_sample = torch.linspace(1, 4, BATCH, dtype=DTYPE)
    one = sample(model, noise, cond=cond, guidance_scale=per_sample)
    assert torch.equal(net.calls[-1], per_sample)
    # The scale is an input: different scales give different samples, the same scale the same ones.
    assert not torch.equal(one, sample(model, noise, cond=cond, guidance_scale=1.0))
    assert torch.equal(
        model(noise, 1.0, 0.0, cond, guidance_scale=per_sample),
        sample(model, noise, cond=cond, guidance_scale=per_sample),
    )


def test_bad_sampling_scales_are_refused() -> None:
    model = SolutionFlowWrapper(ScaleNet("labels", seed=9))
    noise, labels = torch.randn(4, *SHAPE, dtype=DTYPE), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"guidance_scale must have shape \(4,\)"):
        sample(model, noise, cond=labels, guidance_scale=torch.ones(3, dtype=DTYPE))
    with pytest.raises(TypeError, match="guidance_scale must be a float or a floating-point"):
        sample(model, noise, cond=labels, guidance_scale=torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="guidance_scale has non-finite values"):
        sample(model, noise, cond=labels, guidance_scale=float("nan"))


# --- error messages ------------------------------------------------------------------------------------


def test_a_backbone_without_the_keyword_is_explained() -> None:
    class NoScale(nn.Module):
        def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor) -> Tensor:
            return x

    model = SolutionFlowWrapper(NoScale())
    config = SoFlowConfig.imagenet(guidance=GuidanceConfig(scale=(1.0, 4.0), drop_rate=0.1), total_steps=5)
    with pytest.raises(
        TypeError, match=r"the backbone NoScale takes no guidance_scale keyword \(forward\(x: 'Tensor', t"
    ):
        SoFlowLoss(config)(model, torch.randn(8, 2), torch.randint(0, 3, (8,)), null_cond=3)
    with pytest.raises(TypeError, match="give its forward a keyword argument guidance_scale"):
        sample(model, torch.randn(2, 2), cond=torch.tensor([0, 1]), guidance_scale=2.0)


def test_a_dict_condition_must_not_use_the_keyword() -> None:
    net = ScaleNet("dict", seed=2)
    cond = {"y": torch.tensor([0, 1]), "emb": torch.zeros(2, 5, dtype=DTYPE), "guidance_scale": torch.ones(2)}
    with pytest.raises(ValueError, match="must not have the key 'guidance_scale'"):
        sample(SolutionFlowWrapper(net), torch.randn(2, *SHAPE, dtype=DTYPE), cond=cond, guidance_scale=2.0)


def test_explicit_draws_must_match_the_config() -> None:
    net = ScaleNet("labels", seed=3)
    model = SolutionFlowWrapper(net)
    data, cond, null_cond = data_and_conditions("labels", net)
    config = SoFlowConfig.imagenet(guidance=GuidanceConfig(scale=(1.0, 4.0), drop_rate=0.1), total_steps=5)
    draw = SoFlowLoss(config).draw(data, conditional=True, generator=torch.Generator().manual_seed(0))
    with pytest.raises(
        ValueError, match=r"draw.guidance_scale must be a floating tensor of shape \(10,\); got None"
    ):
        SoFlowLoss(config)(model, data, cond, null_cond, draw=dataclasses.replace(draw, guidance_scale=None))
    fixed = SoFlowConfig.imagenet(total_steps=5)
    with pytest.raises(
        ValueError, match=r"draw\.guidance_scale is set but the config has a fixed guidance scale"
    ):
        SoFlowLoss(fixed)(model, data, cond, null_cond, draw=draw)
    outside = dataclasses.replace(draw, guidance_scale=torch.full((BATCH,), 5.0, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"draw must satisfy low <= guidance_scale <= high for every sample"):
        SoFlowLoss(config)(model, data, cond, null_cond, draw=outside)


def test_the_functional_losses_need_scales_for_a_range() -> None:
    model = SolutionFlowWrapper(ScaleNet("labels", seed=4))
    data = torch.randn(4, *SHAPE, dtype=DTYPE)
    guidance = GuidanceConfig(scale=(1.0, 3.0))
    with pytest.raises(ValueError, match=r"needs the scale of each sample: pass guidance_scale="):
        flow_matching_loss(
            model, data, data, 0.5, cond=torch.tensor([0, 1, 2, 3]), guidance=guidance, null_cond=4
        )


# --- torch.compile ---------------------------------------------------------------------------------------


class CompiledNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.label_embed = nn.Embedding(NUM_CLASSES + 1, 32)
        self.scale_embed = nn.Linear(1, 32)
        self.inp = nn.Linear(4 + 2, 32)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(32, 4))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor, *, guidance_scale: Tensor) -> Tensor:
        h = self.inp(torch.cat([x, t[:, None], s[:, None]], dim=1)) + self.label_embed(labels)
        return self.out(h + self.scale_embed(guidance_scale[:, None]))


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def test_compiled_model_takes_any_scale_without_recompiling(fresh_dynamo: None) -> None:
    torch.manual_seed(0)
    eager = SolutionFlowWrapper(CompiledNet())
    compiled = torch.compile(copy.deepcopy(eager), backend="aot_eager", fullgraph=True)
    guidance = GuidanceConfig(scale=(1.0, 4.0), drop_rate=0.2, mix_ratio=0.5, decay_time=0.8)
    objective = SoFlowLoss(SoFlowConfig(guidance=guidance).with_total_steps(10))
    g = torch.Generator().manual_seed(0)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (eager, compiled)]
    graphs = None
    for step in range(3):
        data, labels = torch.randn(16, 4, generator=g), torch.randint(0, NUM_CLASSES, (16,), generator=g)
        draw = objective.draw(data, step=step, conditional=True, generator=g)
        losses = []
        for model, opt in zip((eager, compiled), opts, strict=True):
            stance = "fail_on_recompile" if step > 0 and model is compiled else "default"
            with torch.compiler.set_stance(stance):
                out = objective(model, data, labels, NUM_CLASSES, draw=draw, step=step)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(float(out.loss.detach()))
        assert abs(losses[0] - losses[1]) <= 1e-5
        if step == 0:
            graphs = counters["stats"]["unique_graphs"]
    noise, labels = torch.randn(16, 4, generator=g), torch.randint(0, NUM_CLASSES, (16,), generator=g)
    sample(compiled, noise, cond=labels, guidance_scale=1.0)  # sampling shapes: compiled once more
    graphs = counters["stats"]["unique_graphs"]
    with torch.compiler.set_stance("fail_on_recompile"):
        for omega in (1.5, 2.0, 3.0, 4.0):
            torch.testing.assert_close(
                sample(compiled, noise, cond=labels, guidance_scale=omega),
                sample(eager, noise, cond=labels, guidance_scale=omega),
                rtol=1e-5,
                atol=1e-6,
            )
    assert counters["stats"]["unique_graphs"] == graphs
