"""Tests of the combined training objective `SoFlowLoss` and its `SoFlowConfig`.

- Presets: every setting of `SoFlowConfig.imagenet()` and `.cifar10()` against the official recipes;
  the flat settings of earlier versions keep working with a deprecation warning.
- Exactness: with the same noise, times and masks, the objective equals
  (n_fm/B) * flow_matching_loss(first rows) + (n_sc/B) * solution_consistency_loss(other rows), which
  the parity tests tie to the official code: losses, metrics and every gradient to 1e-10 in float64.
- Curriculum step: counted, explicit, saved and restored.
- Network evaluations: the backbone calls of one step (batch sizes and grad mode).
- Random layers: the online and target evaluations of every consistency sample use the same dropout
  mask, and the target equals the deterministic recomputation with that mask.
- Value checks: one host synchronisation per step with the wrapper's checks on, none with them off;
  the wrapper is never modified. (Bad configs and bad calls: tests/test_errors.py.)
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import io
import itertools
import math
import pickle
import textwrap
from typing import Any

import pytest
import torch
from reference import load_vectors
from torch import Tensor, nn

from soflow_toolkit import (
    GuidanceConfig,
    LossOutput,
    RatioSchedule,
    SoFlowConfig,
    SoFlowDraw,
    SoFlowLoss,
    SoFlowOutput,
    SolutionFlowWrapper,
    TimePriors,
    flow_matching_loss,
    select_condition,
    solution_consistency_loss,
)

RTOL = 1e-10
VECTORS = load_vectors()
NUM_CLASSES = VECTORS["num_classes"]
SHAPE = (2, 4, 4)  # the reference backbone's sample shape (D = 32)
BATCH = 12
COND_DIM = 6
GUIDED = GuidanceConfig(scale=3.0, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8)


# --------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------

IMAGENET = {  # the official ImageNet 256 recipe
    "fm_fraction": 0.75,
    "p": 1.0,
    "eps": 0.01,
    "times": TimePriors(
        mean_fm=-0.2, std_fm=1.0, mean_s=-1.0, std_s=0.8, mean_t=0.2, std_t=0.8, min_gap=1e-4
    ),
    "curriculum": RatioSchedule(kind="exponent", r_init=0.1, r_end=0.002, total_steps=400_000),
    "guidance": GuidanceConfig(scale=3.0, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8),
}
CIFAR10 = {  # the official CIFAR-10 recipe: unconditional, so no guidance and no label dropping
    "fm_fraction": 0.0,
    "p": 0.75,
    "eps": 1e-3,
    "times": TimePriors(
        mean_fm=-0.9, std_fm=1.6, mean_s=-4.0, std_s=1.6, mean_t=-0.9, std_t=1.6, min_gap=1e-4
    ),
    "curriculum": RatioSchedule(kind="exponent", r_init=1.0, r_end=0.0003125, total_steps=800_000),
    "guidance": GuidanceConfig(scale=1.0, drop_rate=0.0, mix_ratio=1.0, decay_time=1.0),
}


@pytest.mark.parametrize(
    ("preset", "expected"),
    [(SoFlowConfig.imagenet, IMAGENET), (SoFlowConfig.cifar10, CIFAR10)],
    ids=["imagenet", "cifar10"],
)
def test_preset_equals_official_recipe(preset: Any, expected: dict[str, Any]) -> None:
    config = preset()
    assert {f.name for f in dataclasses.fields(config)} == set(expected), "a field is not checked here"
    for name, value in expected.items():
        assert getattr(config, name) == value, name
    schedule, total = config.curriculum, expected["curriculum"].total_steps
    assert schedule(0) == pytest.approx(expected["curriculum"].r_init, rel=1e-12)
    assert schedule(total) == pytest.approx(expected["curriculum"].r_end, rel=1e-12)
    assert schedule(10 * total) == pytest.approx(expected["curriculum"].r_end, rel=1e-12)


LOWDIM = {
    **CIFAR10,
    "curriculum": RatioSchedule(kind="exponent", r_init=0.2, r_end=0.01, total_steps=5000),
}


def test_lowdim_preset_is_cifar10_with_the_documented_changes() -> None:
    config = SoFlowConfig.lowdim()
    assert {f.name for f in dataclasses.fields(config)} == set(LOWDIM), "a field is not checked here"
    for name, value in LOWDIM.items():
        assert getattr(config, name) == value, name
    assert SoFlowConfig.lowdim(total_steps=123).curriculum.total_steps == 123
    with pytest.raises(ValueError, match="eps"):
        SoFlowConfig.lowdim(eps=-1.0)


def test_default_config_is_imagenet_without_guidance() -> None:
    assert SoFlowConfig() == SoFlowConfig.imagenet(guidance=GuidanceConfig())


def test_preset_overrides_change_only_the_named_fields() -> None:
    config = SoFlowConfig.cifar10(total_steps=1000, fm_fraction=0.5)
    assert (config.curriculum.total_steps, config.fm_fraction) == (1000, 0.5)
    assert config.curriculum == dataclasses.replace(CIFAR10["curriculum"], total_steps=1000)
    for name, value in CIFAR10.items():
        if name not in ("curriculum", "fm_fraction"):
            assert getattr(config, name) == value, name
    assert SoFlowConfig().with_total_steps(7) == SoFlowConfig(curriculum=RatioSchedule(total_steps=7))
    with pytest.raises(ValueError, match="fm_fraction"):
        SoFlowConfig.imagenet(fm_fraction=2.0)


def test_configs_are_frozen() -> None:
    config = SoFlowConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.p = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.times.mean_s = 0.5  # type: ignore[misc]


def test_config_copies_pickles_and_hashes() -> None:
    """The deprecated-attribute hook must not interfere with copying, pickling or hashing."""
    config = SoFlowConfig.imagenet(total_steps=10)
    for copied in (copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert copied == config
        assert hash(copied) == hash(config)
    assert dataclasses.asdict(config)["curriculum"] == {
        "kind": "exponent",
        "r_init": 0.1,
        "r_end": 0.002,
        "total_steps": 10,
    }
    with pytest.raises(AttributeError, match="'SoFlowConfig' object has no attribute 'r_final'"):
        config.r_final  # noqa: B018


@pytest.mark.parametrize("cls", [SoFlowConfig, TimePriors, RatioSchedule])
def test_every_config_field_has_a_comment(cls: type) -> None:
    """Each field of the config and of its nested settings is followed by its docstring."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    documented = set()
    for stmt, following in itertools.pairwise(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            is_doc = (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
                and following.value.value.strip()
            )
            if is_doc:
                documented.add(stmt.target.id)
    assert documented == {f.name for f in dataclasses.fields(cls)}


# The flat settings before 0.1.0, with the nested field and attribute that replace them.
FLAT_SETTINGS = {
    "fm_time_mean": ("times", "mean_fm", 0.3),
    "fm_time_std": ("times", "std_fm", 1.3),
    "s_time_mean": ("times", "mean_s", -2.0),
    "s_time_std": ("times", "std_s", 1.1),
    "t_time_mean": ("times", "mean_t", 0.4),
    "t_time_std": ("times", "std_t", 0.9),
    "min_time_gap": ("times", "min_gap", 1e-3),
    "schedule": ("curriculum", "kind", "cosine"),
    "r_init": ("curriculum", "r_init", 0.5),
    "r_end": ("curriculum", "r_end", 0.01),
    "total_steps": ("curriculum", "total_steps", 123),
}


@pytest.mark.parametrize("old", list(FLAT_SETTINGS))
def test_flat_settings_still_work_with_a_deprecation_warning(old: str) -> None:
    nested, attribute, value = FLAT_SETTINGS[old]
    with pytest.warns(DeprecationWarning, match=rf"SoFlowConfig\({old}=\.\.\.\) is deprecated"):
        config = SoFlowConfig(**{old: value})
    assert getattr(getattr(config, nested), attribute) == value
    with pytest.warns(DeprecationWarning, match=rf"SoFlowConfig\({old}=\.\.\.\) is deprecated"):
        replaced = dataclasses.replace(SoFlowConfig.cifar10(), **{old: value})
    base = SoFlowConfig.cifar10()
    expected = dataclasses.replace(
        base, **{nested: dataclasses.replace(getattr(base, nested), **{attribute: value})}
    )
    assert replaced == expected
    with pytest.warns(DeprecationWarning, match=rf"SoFlowConfig\.{old} is deprecated.*{nested}\.{attribute}"):
        assert getattr(config, old) == value


def test_deprecated_config_and_output_attributes(generator: torch.Generator, make_model: Any) -> None:
    config = SoFlowConfig.imagenet()
    with pytest.warns(DeprecationWarning, match="SoFlowConfig.ratio_schedule is deprecated"):
        assert config.ratio_schedule == config.curriculum
    objective = SoFlowLoss(SoFlowConfig())
    with pytest.warns(DeprecationWarning, match="SoFlowLoss.schedule is deprecated"):
        assert objective.schedule == objective.config.curriculum
    out = objective(
        make_model(), torch.randn(8, 3, generator=generator, dtype=torch.float64), generator=generator
    )
    for old, new in (("flow_matching", "fm"), ("consistency", "sc"), ("num_consistency", "num_sc")):
        with pytest.warns(
            DeprecationWarning, match=rf"SoFlowOutput\.{old} is deprecated.*SoFlowOutput\.{new}"
        ):
            assert getattr(out, old) is getattr(out, new)


# --------------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------------


class EmbeddingNet(nn.Module):
    """The reference backbone with an embedding condition `(B, COND_DIM)` and a learnable null embedding.

    h = tanh(vec(x) W1 + t ut + (t - s) ud + c Wc + b1); out = (h W2 + b2).reshape(x.shape).
    """

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        for name in ("W1", "ut", "ud", "b1", "W2", "b2"):
            self.register_parameter(name, nn.Parameter(VECTORS["net"][name].clone()))
        hidden = self.W1.shape[1]
        self.Wc = nn.Parameter(torch.randn(COND_DIM, hidden, dtype=torch.float64, generator=generator) * 0.3)
        self.null = nn.Parameter(torch.randn(COND_DIM, dtype=torch.float64, generator=generator))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, c: Tensor) -> Tensor:
        h = torch.tanh(
            x.reshape(x.shape[0], -1) @ self.W1
            + t[:, None] * self.ut
            + (t - s)[:, None] * self.ud
            + c @ self.Wc
            + self.b1
        )
        return (h @ self.W2 + self.b2).reshape(x.shape)


def _conditioned(
    kind: str, generator: torch.Generator, reference_net: nn.Module
) -> tuple[nn.Module, Any, Any]:
    """A float64 backbone with its batch condition and null condition."""
    if kind == "labels":
        labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)
        return reference_net, labels, NUM_CLASSES
    if kind == "embedding":
        net = EmbeddingNet(generator)
        return net, torch.randn(BATCH, COND_DIM, dtype=torch.float64, generator=generator), net.null
    return reference_net, None, None


# --------------------------------------------------------------------------------------------------
# Exactness against the functional losses
# --------------------------------------------------------------------------------------------------

R1 = RatioSchedule(r_init=1.0)  # the ImageNet curriculum starting at r = 1 (l = s)
EXACT_CONFIGS = {
    "imagenet": SoFlowConfig.imagenet(),
    "imagenet-unguided": SoFlowConfig.imagenet(guidance=GuidanceConfig()),
    "imagenet-drop-only": SoFlowConfig.imagenet(guidance=GuidanceConfig(drop_rate=0.1)),
    "cifar10": SoFlowConfig.cifar10(),
    "cifar10-guided": SoFlowConfig.cifar10(guidance=GUIDED),
    "half-r1": SoFlowConfig.imagenet(fm_fraction=0.5, curriculum=R1, guidance=GuidanceConfig()),
    "half-r1-guided": SoFlowConfig.imagenet(fm_fraction=0.5, curriculum=R1),
    "half-r1-guided-mix1": SoFlowConfig.imagenet(
        fm_fraction=0.5,
        curriculum=R1,
        guidance=GuidanceConfig(3.0, drop_rate=0.1, mix_ratio=1.0, decay_time=0.8),
    ),
}
PATH_PARAMS = [("linear", "euler"), ("trig", "trig")]


def _fixed_mask() -> Tensor:
    """A drop mask with dropped samples in both parts of every batch split used here."""
    return torch.arange(BATCH) % 3 == 1


def _reference_loss(
    model: nn.Module, config: SoFlowConfig, data: Tensor, draw: SoFlowDraw, cond: Any, null_cond: Any
) -> tuple[Tensor, LossOutput | None, LossOutput | None]:
    """(n_fm/B) * flow_matching_loss + (n_sc/B) * solution_consistency_loss with the same draws."""
    batch, num_fm = data.shape[0], draw.t_fm.shape[0]
    num_sc = batch - num_fm
    guidance = config.guidance if cond is not None and config.guidance.enabled else None
    mask = draw.drop_mask

    def kwargs(rows: slice) -> dict[str, Any]:
        return {
            "cond": select_condition(cond, rows),
            "p": config.p,
            "eps": config.eps,
            "guidance": guidance,
            "drop_mask": None if mask is None else mask[rows],
            "null_cond": null_cond,
        }

    total = torch.zeros((), dtype=data.dtype)
    fm = sc = None
    if num_fm > 0:
        rows = slice(0, num_fm)
        fm = flow_matching_loss(model, data[rows], draw.noise[rows], draw.t_fm, **kwargs(rows))
        total = total + (num_fm / batch) * fm.loss
    if num_sc > 0:
        rows = slice(num_fm, batch)
        sc = solution_consistency_loss(
            model, data[rows], draw.noise[rows], draw.t, draw.l, draw.s, **kwargs(rows)
        )
        total = total + (num_sc / batch) * sc.loss
    return total, fm, sc


def _gradients(model: nn.Module, loss: Tensor) -> dict[str, Tensor | None]:
    """Every parameter's gradient (None for a parameter the loss does not reach)."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {
        name: None if param.grad is None else param.grad.clone() for name, param in model.named_parameters()
    }


def _guides_or_drops(config: SoFlowConfig) -> bool:
    return config.guidance.enabled or config.guidance.drop_rate > 0


# Guided or dropping configs need a condition (without one the objective raises: see test_call_errors).
EXACT_CASES = [
    (name, cond_kind)
    for name, config in EXACT_CONFIGS.items()
    for cond_kind in ("labels", "embedding", "none")
    if cond_kind != "none" or not _guides_or_drops(config)
]


@pytest.mark.parametrize(("path", "parametrization"), PATH_PARAMS, ids=["linear-euler", "trig-trig"])
@pytest.mark.parametrize(("config_name", "cond_kind"), EXACT_CASES, ids=["-".join(c) for c in EXACT_CASES])
def test_objective_equals_weighted_functional_losses(
    config_name: str,
    cond_kind: str,
    path: str,
    parametrization: str,
    generator: torch.Generator,
    reference_model: Any,
    rel_err: Any,
) -> None:
    config = EXACT_CONFIGS[config_name]
    guides_or_drops = _guides_or_drops(config)
    net, cond, null_cond = _conditioned(cond_kind, generator, reference_model().backbone)
    model = SolutionFlowWrapper(net, path=path, parametrization=parametrization)
    data = torch.randn(BATCH, *SHAPE, dtype=torch.float64, generator=generator)
    objective = SoFlowLoss(config)
    draw = objective.draw(data, step=0, conditional=cond is not None, generator=generator)
    assert draw.noise.dtype == draw.t.dtype == torch.float64
    if config.guidance.drop_rate > 0 and cond is not None:
        assert draw.drop_mask is not None
        assert draw.drop_mask.shape == (BATCH,)
        draw = dataclasses.replace(draw, drop_mask=_fixed_mask())
    else:
        assert draw.drop_mask is None
    if config.curriculum.r_init == 1.0:
        # r = 1: the target time is s itself, up to the rounding of t + (s - t) * 1 (never below s)
        assert bool((draw.l >= draw.s).all())
        assert torch.allclose(draw.l, draw.s, rtol=0, atol=1e-15)

    out = objective(model, data, cond, null_cond, step=0, draw=draw)
    expected, fm, sc = _reference_loss(model, config, data, draw, cond, null_cond)

    num_fm = math.floor(config.fm_fraction * BATCH)
    assert (out.num_fm, out.num_sc) == (num_fm, BATCH - num_fm)
    assert out.loss.dtype == torch.float64
    assert rel_err(out.loss, expected) < RTOL
    for part, reference in ((out.fm, fm), (out.sc, sc)):
        assert (part is None) == (reference is None)
        if part is not None and reference is not None:
            for field in ("mse", "weight", "per_sample_mse", "per_sample_weight"):
                assert rel_err(getattr(part, field), getattr(reference, field)) < RTOL, field

    grads = _gradients(model, out.loss)
    expected_grads = _gradients(model, expected)
    assert grads.keys() == expected_grads.keys()
    if cond_kind == "embedding" and guides_or_drops:
        null_grad = expected_grads["backbone.null"]  # the learnable null embedding is trained
        assert null_grad is not None
        assert float(null_grad.abs().max()) > 0
    for name, grad in grads.items():
        expected_grad = expected_grads[name]
        # Only the null embedding can be out of reach (no sample dropped, no guidance).
        assert (grad is None, expected_grad is None) in ((False, False), (name == "backbone.null",) * 2), name
        if grad is not None and expected_grad is not None:
            assert rel_err(grad, expected_grad) < RTOL, name


def test_exactness_check_detects_a_wrong_weighting(
    generator: torch.Generator, rel_err: Any, reference_model: Any
) -> None:
    """The comparison above is sharp: weighting both parts equally is far off the objective."""
    config = SoFlowConfig.imagenet(guidance=GuidanceConfig())
    model = SolutionFlowWrapper(reference_model().backbone)
    data = torch.randn(BATCH, *SHAPE, dtype=torch.float64, generator=generator)
    objective = SoFlowLoss(config)
    draw = objective.draw(data, step=0, generator=generator)
    out = objective(model, data, step=0, draw=draw)
    _, fm, sc = _reference_loss(model, config, data, draw, None, None)
    assert fm is not None
    assert sc is not None
    assert rel_err(out.loss, 0.5 * (fm.loss + sc.loss)) > 1e-3


# --------------------------------------------------------------------------------------------------
# Draws and the curriculum step
# --------------------------------------------------------------------------------------------------


def test_draw_shapes_and_time_order(generator: torch.Generator) -> None:
    objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=100))
    data = torch.randn(40, 3, 2)
    draw = objective.draw(data, conditional=True, generator=generator)
    assert draw.noise.shape == data.shape
    assert draw.t_fm.shape == (30,)
    assert draw.t.shape == draw.l.shape == draw.s.shape == (10,)
    assert draw.drop_mask is not None
    assert draw.drop_mask.dtype == torch.bool
    assert draw.drop_mask.shape == (40,)
    assert bool(((draw.s <= draw.l) & (draw.l < draw.t)).all())
    assert bool(((draw.t_fm > 0) & (draw.t_fm < 1)).all())
    assert objective.draw(data, conditional=False, generator=generator).drop_mask is None


def test_draw_is_reproducible_with_a_generator() -> None:
    objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=100))
    data = torch.zeros(16, 3)
    first = objective.draw(data, conditional=True, generator=torch.Generator().manual_seed(3))
    second = objective.draw(data, conditional=True, generator=torch.Generator().manual_seed(3))
    other = objective.draw(data, conditional=True, generator=torch.Generator().manual_seed(4))
    for name in ("noise", "t_fm", "t", "l", "s", "drop_mask"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert not torch.equal(first.noise, other.noise)


def test_step_is_counted_and_drives_the_curriculum(generator: torch.Generator, make_model: Any) -> None:
    config = SoFlowConfig(curriculum=RatioSchedule("exponent", r_init=0.5, r_end=0.01, total_steps=4))
    objective = SoFlowLoss(config)
    model, data = make_model(), torch.randn(8, 3, generator=generator)
    for k in range(6):
        out = objective(model, data, generator=generator)
        assert out.step == k
        assert out.r == config.curriculum(k)
        assert objective.step == k + 1
    assert out.r == pytest.approx(0.01)  # past total_steps, r stays at r_end
    metrics = out.metrics()
    assert set(metrics) == {"fm_mse", "fm_weight", "sc_mse", "sc_weight", "r", "step"}
    assert metrics["step"] == 5.0
    assert metrics["r"] == out.r
    assert metrics["sc_mse"] == pytest.approx(float(out.sc.mse))  # type: ignore[union-attr]


def test_explicit_step_does_not_advance_the_counter(generator: torch.Generator, make_model: Any) -> None:
    config = SoFlowConfig(curriculum=RatioSchedule("exponent", r_init=0.5, r_end=0.01, total_steps=10))
    objective = SoFlowLoss(config)
    model, data = make_model(), torch.randn(8, 3, generator=generator)
    out = objective(model, data, generator=generator, step=7)
    assert (out.step, out.r, objective.step) == (7, config.curriculum(7), 0)


def test_step_sets_the_draw_ratio() -> None:
    """The intermediate time l follows r(k): l = t + (s - t) r(k) (away from the clamps)."""
    config = SoFlowConfig(curriculum=RatioSchedule("exponent", r_init=0.5, r_end=0.01, total_steps=10))
    objective = SoFlowLoss(config)
    data = torch.zeros(400, 2)
    for k in (0, 5, 10):
        draw = objective.draw(data, step=k, generator=torch.Generator().manual_seed(0))
        free = (draw.t - draw.s) > 1e-2  # l not clamped to t - gap
        ratio = (draw.t - draw.l)[free] / (draw.t - draw.s)[free]
        assert torch.allclose(ratio, torch.full_like(ratio, config.curriculum(k)), rtol=1e-4)


def test_state_dict_round_trip(generator: torch.Generator, make_model: Any) -> None:
    config = SoFlowConfig(curriculum=RatioSchedule("exponent", r_init=0.5, r_end=0.01, total_steps=10))
    objective = SoFlowLoss(config)
    model, data = make_model(), torch.randn(8, 3, generator=generator)
    for _ in range(3):
        objective(model, data, generator=generator)
    assert objective.state_dict() == {"step": 3}

    buffer = io.BytesIO()
    torch.save(objective.state_dict(), buffer)
    buffer.seek(0)
    resumed = SoFlowLoss(config)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.step == 3

    def next_draw(obj: SoFlowLoss) -> SoFlowDraw:
        return obj.draw(data, generator=torch.Generator().manual_seed(11))

    assert torch.equal(next_draw(resumed).l, next_draw(objective).l)
    assert not torch.equal(next_draw(SoFlowLoss(config)).l, next_draw(objective).l)  # step 0 differs
    assert resumed(model, data, generator=generator).step == 3
    assert resumed.step == 4


# --------------------------------------------------------------------------------------------------
# Network evaluations per step
# --------------------------------------------------------------------------------------------------


class CallRecorder(nn.Module):
    """Wraps a backbone and records `(batch size, grad enabled)` of every call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: Tensor, t: Tensor, s: Tensor, *cond: Any) -> Tensor:
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.inner(x, t, s, *cond)


def _guided(mix: float) -> GuidanceConfig:
    return GuidanceConfig(scale=3.0, drop_rate=0.1, mix_ratio=mix, decay_time=0.8)


# B = 12. Sequences of (rows, with gradient):
#  pass 1 (guidance only, no grad): unconditional rows for all B + conditional rows of the consistency
#    samples when mix < 1; pass 2 (grad): all B rows; pass 3 (no grad): the consistency targets.
#  Edge cases: mix = 1 drops the conditional rows from pass 1 (still 3 calls); fm_fraction = 1 has no
#  consistency samples, so no pass 3 (1 call, 2 with guidance); fm_fraction = 0 evaluates everything
#  at (t, s) and pass 1 doubles to 2B rows when mix < 1.
CALL_CASES = {
    "imagenet-unguided": (0.75, GuidanceConfig(), [(12, True), (3, False)]),
    "imagenet-guided": (0.75, _guided(0.25), [(15, False), (12, True), (3, False)]),
    "imagenet-guided-mix1": (0.75, _guided(1.0), [(12, False), (12, True), (3, False)]),
    "rho0-unguided": (0.0, GuidanceConfig(), [(12, True), (12, False)]),
    "rho0-guided": (0.0, _guided(0.25), [(24, False), (12, True), (12, False)]),
    "rho0-guided-mix1": (0.0, _guided(1.0), [(12, False), (12, True), (12, False)]),
    "rho1-unguided": (1.0, GuidanceConfig(), [(12, True)]),
    "rho1-guided": (1.0, _guided(0.25), [(12, False), (12, True)]),
    "rho1-guided-mix1": (1.0, _guided(1.0), [(12, False), (12, True)]),
}


@pytest.mark.parametrize("case", list(CALL_CASES))
def test_backbone_calls_per_step(case: str, generator: torch.Generator, reference_model: Any) -> None:
    fm_fraction, guidance, expected = CALL_CASES[case]
    recorder = CallRecorder(reference_model().backbone)
    model = SolutionFlowWrapper(recorder)
    objective = SoFlowLoss(SoFlowConfig.imagenet(fm_fraction=fm_fraction, guidance=guidance))
    data = torch.randn(BATCH, *SHAPE, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)
    for _ in range(2):
        recorder.calls.clear()
        out = objective(model, data, labels, NUM_CLASSES, generator=generator)
        out.loss.backward()
        assert recorder.calls == expected
    guided = guidance.enabled
    core = 2 if fm_fraction < 1 else 1
    assert len(expected) == core + guided  # 2 without guidance, 3 with (fewer without consistency rows)


# --------------------------------------------------------------------------------------------------
# Random layers: dropout masks of online and target evaluations
# --------------------------------------------------------------------------------------------------


class DropoutNet(nn.Module):
    """An MLP backbone with dropout that records its masks, or applies a forced mask instead."""

    def __init__(self, dim: int, hidden: int = 64, p: float = 0.5) -> None:
        super().__init__()
        self.inp = nn.Linear(dim + 2, hidden)
        self.drop = nn.Dropout(p)
        self.out = nn.Linear(hidden, dim)
        self.p = p
        self.records: list[tuple[bool, Tensor]] = []
        self.forced: Tensor | None = None

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        h = torch.tanh(self.inp(torch.cat([x.reshape(x.shape[0], -1), t[:, None], (t - s)[:, None]], 1)))
        if self.forced is None:
            h = self.drop(h)
            mask = h != 0  # tanh of a generic input is never exactly 0
        else:
            mask = self.forced
            h = h * (mask.to(h.dtype) / (1 - self.p))
        self.records.append((torch.is_grad_enabled(), mask.detach().clone()))
        return self.out(h).reshape(x.shape)


def _dropout_step(
    fm_fraction: float, match: bool | None, device: str, generator: torch.Generator
) -> tuple[DropoutNet, SoFlowOutput, Tensor, SoFlowDraw, Tensor]:
    net = DropoutNet(dim=6).to(device=device, dtype=torch.float64)
    model = SolutionFlowWrapper(net).train()
    objective = SoFlowLoss(
        SoFlowConfig(fm_fraction=fm_fraction).with_total_steps(10), match_random_state=match
    )
    data = torch.randn(BATCH, 6, dtype=torch.float64, generator=generator).to(device)
    draw = objective.draw(data, step=0, generator=generator)
    torch.manual_seed(0)
    out = objective(model, data, draw=draw)
    return net, out, data, draw, torch.get_rng_state()


def _recomputed_consistency_mse(net: DropoutNet, data: Tensor, draw: SoFlowDraw, mask: Tensor) -> Tensor:
    """The consistency metric recomputed by hand, both evaluations with the same forced dropout mask."""
    num_sc = draw.t.shape[0]
    data_sc, noise_sc = data[-num_sc:], draw.noise[-num_sc:]
    t, l, s = draw.t[:, None], draw.l[:, None], draw.s[:, None]
    x_t = (1 - t) * data_sc + t * noise_sc  # linear path
    x_l = x_t + (l - t) * (noise_sc - data_sc)
    net.forced = mask
    try:
        with torch.no_grad():
            f_online = x_t + (s - t) * net(x_t, draw.t, draw.s)  # euler: f = x + (s - t) F
            f_target = x_l + (s - l) * net(x_l, draw.l, draw.s)
    finally:
        net.forced = None
    return ((f_online - f_target) / (t - l)).pow(2).mean(dim=1)


def _check_matched_masks(
    fm_fraction: float, match: bool | None, device: str, generator: torch.Generator, rel_err: Any
) -> None:
    net, out, data, draw, _ = _dropout_step(fm_fraction, match, device, generator)
    (online_grad, online), (target_grad, target) = net.records
    assert online_grad
    assert not target_grad
    num_sc = out.num_sc
    assert num_sc > 0
    # The consistency samples are the last rows of both evaluations.
    assert torch.equal(online[-num_sc:], target[-num_sc:])
    assert 0.2 < float(online.double().mean()) < 0.8  # dropout really dropped
    assert out.sc is not None
    expected = _recomputed_consistency_mse(net, data, draw, online[-num_sc:])
    rtol = RTOL if device == "cpu" else 1e-8
    assert rel_err(out.sc.per_sample_mse, expected) < rtol


@pytest.mark.parametrize("match", [None, True], ids=["auto", "on"])
@pytest.mark.parametrize("fm_fraction", [0.0, 0.5])
def test_dropout_masks_match_between_online_and_target(
    fm_fraction: float, match: bool | None, generator: torch.Generator, rel_err: Any
) -> None:
    _check_matched_masks(fm_fraction, match, "cpu", generator, rel_err)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("match", [None, True], ids=["auto", "on"])
@pytest.mark.parametrize("fm_fraction", [0.0, 0.5])
def test_dropout_masks_match_on_cuda(
    fm_fraction: float, match: bool | None, generator: torch.Generator, rel_err: Any
) -> None:
    _check_matched_masks(fm_fraction, match, "cuda", generator, rel_err)


def test_unmatched_random_state_gives_different_masks(generator: torch.Generator, rel_err: Any) -> None:
    """With matching off and flow matching rows, the target pass draws new masks (the test can fail)."""
    net, out, data, draw, _ = _dropout_step(0.5, False, "cpu", generator)
    (_, online), (_, target) = net.records
    num_sc = out.num_sc
    assert target.shape[0] == num_sc  # only the consistency rows are evaluated
    assert not torch.equal(online[-num_sc:], target)
    assert out.sc is not None
    expected = _recomputed_consistency_mse(net, data, draw, online[-num_sc:])
    assert rel_err(out.sc.per_sample_mse, expected) > 1e-3


def test_matching_is_free_without_flow_matching_rows(generator: torch.Generator) -> None:
    """fm_fraction = 0: the target pass has the online pass's shape, so masks match even when off."""
    net, _out, *_ = _dropout_step(0.0, False, "cpu", generator)
    (_, online), (_, target) = net.records
    assert torch.equal(online, target)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_auto_matching_evaluates_the_whole_batch_only_when_needed(training: bool) -> None:
    recorder = CallRecorder(DropoutNet(dim=6))
    model = SolutionFlowWrapper(recorder).train(training)
    objective = SoFlowLoss(SoFlowConfig(fm_fraction=0.5))
    objective(model, torch.randn(BATCH, 6), generator=torch.Generator().manual_seed(0))
    target_rows = BATCH if training else BATCH // 2
    assert recorder.calls == [(BATCH, True), (target_rows, False)]


def test_matching_leaves_the_global_random_stream_as_the_online_pass_left_it() -> None:
    """Restoring the random state for the target pass must not replay or skip numbers afterwards."""
    states = []
    for match in (True, False):
        *_, state = _dropout_step(0.5, match, "cpu", torch.Generator().manual_seed(5))
        states.append(state)
    assert torch.equal(states[0], states[1])


# --------------------------------------------------------------------------------------------------
# Value checks: one host synchronisation per step, none when off, the wrapper never modified
# --------------------------------------------------------------------------------------------------


class KeywordRecorder(nn.Module):
    """Stands in for DDP or `torch.compile` (`_orig_mod`): forwards every call, records its keywords."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner
        self.keywords: list[dict[str, Any]] = []

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        self.keywords.append(kwargs)
        return self._orig_mod(*args, **kwargs)


@pytest.mark.parametrize("config", [SoFlowConfig.imagenet(), SoFlowConfig.cifar10()], ids=["guided", "plain"])
@pytest.mark.parametrize("explicit", [False, True], ids=["own-draw", "explicit-draw"])
def test_one_host_synchronisation_per_step(
    config: SoFlowConfig, explicit: bool, host_syncs: Any, generator: torch.Generator, reference_model: Any
) -> None:
    """Data, draws and every backbone output are checked together: one sync with checks on, none off."""
    data = torch.randn(BATCH, *SHAPE, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)
    for check_inputs, expected in ((True, ["__bool__"]), (False, [])):
        model = reference_model()
        model.check_inputs = check_inputs
        objective = SoFlowLoss(config)
        draw = objective.draw(data, conditional=True, generator=generator) if explicit else None
        with host_syncs() as calls:
            out = objective(model, data, labels, NUM_CLASSES, generator=generator, draw=draw)
        assert calls == expected
        out.loss.backward()
        assert model.check_inputs is check_inputs  # never modified


def test_every_forward_passes_check_inputs_false(generator: torch.Generator, reference_model: Any) -> None:
    """The per-call checks are turned off by a keyword that passes through DDP and torch.compile."""
    outer = KeywordRecorder(reference_model())
    data = torch.randn(BATCH, *SHAPE, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)
    SoFlowLoss(SoFlowConfig.imagenet())(outer, data, labels, NUM_CLASSES, generator=generator)
    assert len(outer.keywords) == 3
    assert all(kw == {"output": "backbone", "check_inputs": False} for kw in outer.keywords)


def test_a_failing_backbone_leaves_the_wrapper_unchanged(generator: torch.Generator) -> None:
    class Failing(nn.Module):
        def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
            raise RuntimeError("backbone failed")

    model = SolutionFlowWrapper(Failing())
    with pytest.raises(RuntimeError, match="backbone failed"):
        SoFlowLoss(SoFlowConfig())(model, torch.randn(4, 3), generator=generator)
    assert model.check_inputs
