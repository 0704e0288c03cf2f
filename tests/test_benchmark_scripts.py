"""The benchmarks' rivals and bookkeeping: the baselines against closed forms, the search, the verdicts.

The measurements themselves belong to the benchmarks (`make bench-quick` runs them in CI); these
tests pin down that the rivals are implemented as written (MeanFlow's two forms give one gradient;
the exact mean flow and shortcut of a point mass have zero loss), that every method gets the same
search, and how figures become verdicts, including the degenerate cases a tiny or noisy run produces
(a step that holds no measurable memory, a rival at the noise floor).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import baselines, common, digits, report, step_cost  # noqa: E402  (the root is no package path)
from soflow_toolkit.toy import MLPBackbone  # noqa: E402


def _row(method: str, times: list[float], step_mib: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"method": method, "samples_ms": times}
    if step_mib is not None:
        row["step_mib"] = step_mib
    return row


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    # per-round ratios 2, 2, 3 -> median 2: a round slow for both rows is one vote, not an outlier
    assert step_cost.paired_ratio([2.0, 4.0, 600.0], [1.0, 2.0, 200.0]) == 2.0
    with pytest.raises(ValueError, match="shorter"):
        step_cost.paired_ratio([1.0, 2.0], [1.0])


def _memory_check(table: list[dict[str, Any]]) -> dict[str, Any]:
    checks = [c for c in step_cost.check_targets(table) if "memory" in c["target"]]
    assert len(checks) == 1
    return checks[0]


def test_memory_target_is_a_ratio_of_step_memory() -> None:
    table = [_row("FM", [1.0, 1.0, 1.0], 40.0), _row("SoFlow", [1.1, 1.0, 1.2], 42.0)]
    check = _memory_check(table)
    assert check["value"] == pytest.approx(42.0 / 40.0)
    assert check["met"] is True
    assert step_cost._format_check(check) == ("1.05", "yes")
    table[1]["step_mib"] = 50.0
    check = _memory_check(table)
    assert check["met"] is False
    assert step_cost._format_check(check) == ("1.25", "no")


@pytest.mark.parametrize("fm_mib", [0.0, 0.05, -0.01])
def test_memory_below_resolution_is_reported_not_divided(fm_mib: float) -> None:
    """A step that holds (almost) nothing measurable gives no ratio rather than a crash or noise."""
    table = [_row("FM", [1.0, 1.0, 1.0], fm_mib), _row("SoFlow", [1.1, 1.1, 1.1], 0.08)]
    check = _memory_check(table)
    assert check["value"] is None
    assert check["met"] is None
    value, verdict = step_cost._format_check(check)
    assert verdict == "not measurable"
    assert "MiB" in value
    # the time targets of the same table are still computed
    time_checks = [c for c in step_cost.check_targets(table) if c["target"] == "SoFlow / FM"]
    assert time_checks[0]["value"] == pytest.approx(1.1)


def test_summarize_omits_the_memory_ratio_below_resolution() -> None:
    samples = {"FM": [1.0, 1.0, 1.0], "SoFlow": [1.2, 1.2, 1.2]}
    memory = {"FM": {"step_mib": 0.0, "peak_mib": 200.0}, "SoFlow": {"step_mib": 0.1, "peak_mib": 201.0}}
    rows = {r["method"]: r for r in step_cost.summarize(samples, samples, memory)}
    assert "memory_ratio_to_fm" not in rows["SoFlow"]
    assert rows["SoFlow"]["ratio_to_fm"] == pytest.approx(1.2)
    memory["FM"]["step_mib"] = 10.0
    rows = {r["method"]: r for r in step_cost.summarize(samples, samples, memory)}
    assert rows["SoFlow"]["memory_ratio_to_fm"] == pytest.approx(0.01)


class PointMass(nn.Module):
    """The exact average velocity of the data distribution delta_0: z_t = t * noise, so u(z, r, t) = z / t."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return x / t.reshape(-1, *([1] * (x.ndim - 1)))


MEANFLOW_CONFIGS = [
    baselines.MeanFlowConfig(),
    baselines.MeanFlowConfig(noncollapsed=0.75, times="v0", p=0.5),
    baselines.MeanFlowConfig(noncollapsed=0.5, times="v1", p=0.75, guidance_scale=2.0, drop_rate=0.3),
]


@pytest.mark.parametrize("config", MEANFLOW_CONFIGS)
def test_meanflow_no_grad_jvp_plus_forward_has_the_gradient_of_the_jvp_with_grad(config) -> None:
    """The cheaper form (JVP under no_grad, one forward with grad) is the same loss and gradient, float64."""
    torch.manual_seed(0)
    net = MLPBackbone(2, hidden=16, depth=2, num_classes=3, time_scale=1.0).double()
    data = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(3, (64,), generator=torch.Generator().manual_seed(2))
    out = []
    for loss_fn in (baselines.meanflow_loss, baselines.meanflow_loss_jvp_grad):
        net.zero_grad()
        loss = loss_fn(net, data, config, cond=labels, null=3, generator=torch.Generator().manual_seed(3))
        loss.backward()
        out.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = out
    assert abs(float(loss_a - loss_b)) <= 1e-12 * abs(float(loss_b))
    for a, b in zip(grads_a, grads_b, strict=True):
        assert float((a - b).abs().max()) <= 1e-12 * float(b.abs().max())


@pytest.mark.parametrize("config", MEANFLOW_CONFIGS[:2])
def test_meanflow_loss_vanishes_at_the_exact_mean_flow(config) -> None:
    """For data at 0, u(z, r, t) = z / t is the exact average velocity: u_tgt = v - (t - r) du/dt = u."""
    data = torch.zeros(256, 3, dtype=torch.float64)
    for loss_fn in (baselines.meanflow_loss, baselines.meanflow_loss_jvp_grad):
        loss = loss_fn(PointMass(), data, config, generator=torch.Generator().manual_seed(0))
        assert float(loss) < 1e-20


@pytest.mark.parametrize("times", ["imagenet", "v0", "v1"])
@pytest.mark.parametrize("noncollapsed", [0.25, 0.75])
def test_meanflow_times_follow_their_definitions(times: str, noncollapsed: float) -> None:
    config = baselines.MeanFlowConfig(times=times, noncollapsed=noncollapsed)
    like = torch.zeros(1, dtype=torch.float64)
    t, r = baselines.meanflow_times(40_000, config, like, torch.Generator().manual_seed(0))
    assert bool((r <= t).all())
    assert bool(((t > 0) & (t < 1)).all())
    (t_mean, t_std), (r_mean, r_std) = baselines.MEANFLOW_TIMES[times]
    distinct = float((r < t).double().mean())
    median_t = float(torch.logit(t).median())
    if times == "v1":
        # collapse first, then r = min(t, r): a pair stays distinct only if its drawn r is below t
        below = 0.5 * (1 + math.erf((t_mean - r_mean) / math.hypot(t_std, r_std) / math.sqrt(2)))
        assert distinct == pytest.approx(noncollapsed * below, abs=0.01)
        assert median_t == pytest.approx(t_mean, abs=0.05)  # t keeps its own prior
    else:
        assert distinct == pytest.approx(noncollapsed, abs=0.01)
        # t = max of two iid logit-normal draws: the median of the max is mu + sigma * Phi^-1(sqrt(1/2))
        assert median_t == pytest.approx(t_mean + 0.5449 * t_std, abs=0.05)


def test_shortcut_loss_vanishes_at_the_exact_shortcut_and_not_elsewhere() -> None:
    """For data at 0 the exact shortcut is z / t at every step size: both targets equal the prediction."""
    data = torch.zeros(512, 2, dtype=torch.float64)
    for config in (baselines.ShortcutConfig(), baselines.ShortcutConfig(bootstrap_fraction=0.5, levels=3)):
        assert (
            float(
                baselines.shortcut_loss(PointMass(), data, config, generator=torch.Generator().manual_seed(0))
            )
            < 1e-24
        )

    class Off(PointMass):
        def forward(self, x, t, s, cond=None):
            return super().forward(x, t, s) + 0.1 * (t - s).reshape(-1, 1)  # wrong only for d = t - s > 0

    value = baselines.shortcut_loss(
        Off(), data, baselines.ShortcutConfig(), generator=torch.Generator().manual_seed(0)
    )
    assert float(value) > 1e-4


def test_shortcut_targets_come_from_the_target_network() -> None:
    torch.manual_seed(0)
    online, other = MLPBackbone(2, hidden=8, depth=1), MLPBackbone(2, hidden=8, depth=1)
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    config = baselines.ShortcutConfig(bootstrap_fraction=0.5)

    def loss(target: nn.Module | None) -> float:
        with torch.no_grad():
            return float(
                baselines.shortcut_loss(
                    online, data, config, target=target, generator=torch.Generator().manual_seed(2)
                )
            )

    assert loss(None) == loss(online)
    assert loss(other) != loss(online)


def test_few_step_samplers_are_exact_on_the_point_mass() -> None:
    noise = torch.randn(100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    samplers = [
        lambda: baselines.euler_fm_sample(PointMass(), noise, steps=3),
        lambda: baselines.midpoint_fm_sample(PointMass(), noise, steps=2),
        lambda: baselines.meanflow_sample(PointMass(), noise, steps=1),
        lambda: baselines.shortcut_sample(PointMass(), noise, steps=4),
    ]
    for run in samplers:
        assert float(run().abs().max()) < 1e-12


class Linear(nn.Module):
    """The velocity field F(x) = a x: integrating dx/dt = a x from t = 1 to 0 multiplies by exp(-a)."""

    def forward(self, x, t, s, cond=None):
        return 0.7 * x


def test_euler_and_midpoint_have_their_closed_form_factors() -> None:
    x = torch.ones(1, 1, dtype=torch.float64)
    a, n = 0.7, 4
    h = 1 / n
    euler = float(baselines.euler_fm_sample(Linear(), x, steps=n))
    midpoint = float(baselines.midpoint_fm_sample(Linear(), x, steps=n))
    assert euler == pytest.approx((1 - a * h) ** n, rel=1e-12)
    assert midpoint == pytest.approx((1 - a * h + (a * h) ** 2 / 2) ** n, rel=1e-12)
    assert abs(midpoint - torch.exp(torch.tensor(-a)).item()) < abs(
        euler - torch.exp(torch.tensor(-a)).item()
    )


# ---------------------------------------------------------------------------------------------- protocol


def test_every_method_trains_one_step_with_the_shared_loop() -> None:
    budget = common.Budget(steps=3, batch=16, hidden=8, depth=1)

    def batches(g: torch.Generator) -> tuple[torch.Tensor, None]:
        return torch.randn(16, 2, generator=g), None

    for method in common.METHODS:
        trainer = common.Trainer(method, common.START[method], budget, 3, batches, seed=0)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        model, seconds = trainer.run()
        assert trainer.step_count == 3
        assert seconds > 0
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
        # the evaluated model holds the EMA weights, not the last ones
        assert torch.equal(model.backbone.out.weight, trainer.ema.shadow["backbone.out.weight"])
        if method == "Shortcut":  # its targets use the EMA weights
            assert torch.equal(trainer.target.backbone.out.weight, model.backbone.out.weight)


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown method 'GAN'"):
        common.make_loss("GAN", {}, 10, None)


def _count_settings(start: dict[str, Any], stages: list[dict[str, list[Any]]]) -> int:
    search = common.StagedSearch(start, stages)
    for index in range(len(stages)):
        candidates = search.candidates(index)
        search.record(index, candidates, [float(i) for i in range(len(candidates))])
    return len(search.log)


@pytest.mark.parametrize("method", common.METHODS)
def test_every_method_gets_a_search_of_the_same_size(method: str) -> None:
    assert _count_settings(common.START[method], common.SEARCH[method]) == 12
    assert _count_settings(digits.START_DIGITS[method], digits.SEARCH_DIGITS[method]) == 12
    # the shared settings are searched for every method, from the same start
    assert common.SEARCH[method][:2] == common.SEARCH["SoFlow"][:2]
    assert {k: common.START[method][k] for k in ("lr", "time_scale", "ema")} == {
        "lr": 3e-3,
        "time_scale": 1000.0,
        "ema": 0.999,
    }


def test_staged_search_keeps_the_best_and_moves_one_stage_at_a_time() -> None:
    stages = [{"a": [1, 2], "b": [10, 20]}, {"c": [5, 6]}]
    search = common.StagedSearch({"a": 1, "b": 10, "c": 7}, stages)
    first = search.candidates(0)
    assert first == [
        {"a": 1, "b": 10, "c": 7},
        {"a": 1, "b": 20, "c": 7},
        {"a": 2, "b": 10, "c": 7},
        {"a": 2, "b": 20, "c": 7},
    ]
    search.record(0, first, [3.0, 1.0, 2.0, 4.0])
    assert search.best == {"a": 1, "b": 20, "c": 7}
    second = search.candidates(1)
    assert second == [{"a": 1, "b": 20, "c": 5}, {"a": 1, "b": 20, "c": 6}]
    search.record(1, second, [1.5, 0.5])  # 1.5 is worse than the best so far: not taken
    assert search.best == {"a": 1, "b": 20, "c": 6}
    assert search.best_score == 0.5
    assert [entry["stage"] for entry in search.log] == [0, 0, 0, 0, 1, 1]


def test_equal_time_steps_divide_the_reference_steps_by_the_cost_ratio() -> None:
    costs = {"SoFlow": {"ratio": 1.0}, "MeanFlow": {"ratio": 1.95}, "FM": {"ratio": 0.765}}
    assert common.equal_time_steps(4000, costs) == {"SoFlow": 4000, "MeanFlow": 2051, "FM": 5229}


def test_method_knobs_pass_every_non_shared_setting_on() -> None:
    settings = {
        "lr": 1e-3,
        "time_scale": 1.0,
        "ema": 0.99,
        "guidance_scale": 2.0,
        "r_end": 0.03,
        "renamed_field": 1,
    }
    assert common.method_knobs(settings) == {"r_end": 0.03, "renamed_field": 1}
    with pytest.raises(TypeError):  # an unknown knob is an error, never silently dropped
        common.make_loss("SoFlow", settings, 10, None)


def test_pm_prints_negative_means_as_negative() -> None:
    assert common.pm([-1e-4, -3e-4], 2, scale=1000.0) == "-0.20 ± 0.14"
    assert common.pm([0.5], 3) == "0.500"


# ---------------------------------------------------------------------------------------------- verdicts


def test_compare_gives_per_seed_ratios_and_a_verdict() -> None:
    lead = report.compare([1.0, 2.0, 3.0], [2.0, 4.0, 4.0])
    assert lead["ratios"] == [0.5, 0.5, 0.75]
    assert lead["ratio"] == "0.58 ± 0.14"
    assert lead["verdict"] == "SoFlow leads"
    assert report.compare([3.0, 3.0], [2.0, 1.0])["verdict"] == "rival leads"
    assert report.compare([1.0, 3.0], [2.0, 2.0])["verdict"] == "mixed: SoFlow lower on 1 of 2 seeds"
    assert report.compare([1.0], [2.0])["verdict"] == "SoFlow leads (one seed)"


def test_compare_gives_no_ratio_to_a_rival_at_the_noise_floor() -> None:
    """An unbiased energy distance near 0 can be negative: no ratio to it, SoFlow judged against the floor."""
    at_floor = report.compare([1e-5, 2e-5], [-1e-5, 1e-5], floor_std=1e-4)
    assert (at_floor["ratio"], at_floor["verdict"]) == ("–", "both at the noise floor")
    above = report.compare([1e-3, 2e-3], [-1e-5, 1e-5], floor_std=1e-4)
    assert above["verdict"] == "rival at the noise floor, SoFlow above it"
    assert (
        report.compare([1e-5, 1e-5], [1e-3, 2e-3], floor_std=1e-4)["verdict"]
        == "SoFlow leads (SoFlow at the noise floor)"
    )


@pytest.mark.parametrize("method", common.METHODS)
def test_the_reduced_search_has_the_same_size_for_every_method(method: str) -> None:
    """The committed tables use 8 settings per method and dataset, the shared stages first."""
    assert _count_settings(common.START[method], common.SEARCH_REDUCED[method]) == 8
    assert _count_settings(digits.START_DIGITS[method], digits.SEARCH_DIGITS_REDUCED[method]) == 8
    assert common.SEARCH_REDUCED[method][:2] == common.SEARCH["SoFlow"][:2]
    assert digits.SEARCH_DIGITS_REDUCED[method][:2] == digits.SEARCH_DIGITS_REDUCED["SoFlow"][:2]


# ---------------------------------------------------------------------------------------------- selection


class _Progress:
    def set_description(self, text: str) -> None:
        self.text = text

    def update(self, count: int) -> None:
        pass


def _fake_run(calls: list[dict[str, Any]]) -> Any:
    """Stands in for `toys.train_and_evaluate`: records each run; the lowest learning rate scores best."""
    keys = ("energy", "sw2", "precision", "recall", "on_support", "coverage")

    def run(
        toy: str,
        method: str,
        settings: dict[str, Any],
        budget: common.Budget,
        steps: int,
        seed: int,
        labels: tuple[str, ...],
        eval_points: int,
        keep_points: bool,
        sharpness: bool = True,
    ) -> dict[str, Any]:
        calls.append({"method": method, "settings": settings, "steps": steps, "seed": seed, "labels": labels})
        score = settings["lr"] + seed * 1e-6
        return {
            "s_per_step": 0.01,
            "metrics": {label: dict.fromkeys(keys, score) for label in labels},
            "points": {label: torch.zeros(4, 2) for label in labels} if keep_points else {},
        }

    return run


def test_selection_uses_seed_100_and_the_report_seeds_0_to_2_with_the_selected_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import toys

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(toys, "train_and_evaluate", _fake_run(calls))
    budget = common.Budget(steps=10, batch=8, hidden=8, depth=2)
    config = {**toys.FULL, "budget": budget, "toys": ("checkerboard",), "eval_points": 40}
    cost = {"equal_time_steps": {"FM": 13, "SoFlow": 10, "MeanFlow": 6, "Shortcut": 11}}

    selection = toys.part_select(config, cost, 1, _Progress(), None)
    assert {c["seed"] for c in calls} == {100, 101}  # two selection seeds, neither reported
    assert all(c["steps"] == cost["equal_time_steps"][c["method"]] for c in calls)  # search at equal time
    assert all(c["labels"] == (common.SELECTION_SAMPLER[c["method"]],) for c in calls)
    for m in common.METHODS:
        best = selection["searches"]["checkerboard"][m]["best"]
        assert best["lr"] == 1e-3  # the lowest score wins
        assert report.search_size(selection)[f"checkerboard/{m}"] == 12  # the default: SEARCH

    calls.clear()
    result, figure = toys.part_report(config, cost, selection, 1, _Progress(), None)
    assert {c["seed"] for c in calls} == {0, 1, 2}
    for m in common.METHODS:
        assert all(
            c["settings"] == selection["searches"]["checkerboard"][m]["best"]
            for c in calls
            if c["method"] == m
        )
        runs = result["runs"]["checkerboard"][m]
        assert [r["seed"] for r in runs["equal steps"]] == [0, 1, 2]
        assert [r["seed"] for r in runs["equal time"]] == [0, 1, 2]
        steps = sorted(c["steps"] for c in calls if c["method"] == m)
        assert set(steps) == {10, cost["equal_time_steps"][m]}
    # SoFlow's equal-time budget is its equal-step budget: its runs are shared, not repeated
    assert sum(c["method"] == "SoFlow" for c in calls) == 3
    assert sum(c["method"] == "MeanFlow" for c in calls) == 6
    assert "data" in figure["checkerboard"]


@pytest.mark.parametrize("module", ["toys", "digits"])
def test_selection_and_report_seeds_are_disjoint(module: str) -> None:
    import importlib

    full = importlib.import_module(f"benchmarks.{module}").FULL
    assert min(full["selection_seeds"]) >= 100
    assert tuple(full["report_seeds"]) == (0, 1, 2)


# ---------------------------------------------------------------------------------------------- tables


def _fake_result(floor: list[float]) -> dict[str, Any]:
    from benchmarks import toys

    keys = ("energy", "sw2", "precision", "recall", "on_support", "coverage")
    runs = {
        m: {
            b: [
                {"seed": s, **{label: dict.fromkeys(keys, 0.004 + s * 1e-3) for label in common.SAMPLERS[m]}}
                for s in range(3)
            ]
            for b in ("equal steps", "equal time")
        }
        for m in common.METHODS
    }
    steps = dict.fromkeys(common.METHODS, 10)
    assert toys.METRIC_NAMES
    return {
        "runs": {"checkerboard": runs},
        "floors": {"checkerboard": dict.fromkeys(keys, floor) | {"energy": floor}},
        "steps": {"equal steps": steps, "equal time": steps},
    }


def test_a_negative_energy_floor_is_printed_as_negative() -> None:
    """The unbiased energy distance between two data samples is often below 0: it is shown, not clipped."""
    from benchmarks import toys

    floor = [-2e-5, 1e-5, -5e-5]
    table = toys.metric_table(_fake_result(floor), "energy", "equal time")
    row = next(line for line in table.splitlines() if line.startswith("| data vs data (floor)"))
    assert row == "| data vs data (floor) | -0.02 ± 0.03 |"
    assert "| SoFlow 1 NFE | 5.00 ± 1.00 |" in table  # mean ± std over the three seeds, × 1000


def test_headline_gives_every_rival_a_ratio_with_its_spread() -> None:
    from benchmarks import toys

    result = _fake_result([-2e-5, 1e-5, -5e-5])
    per = result["runs"]["checkerboard"]["MeanFlow"]
    for run in per["equal time"]:
        run["MeanFlow 1 NFE"]["energy"] *= 2  # SoFlow at half the rival's distance on every seed
    for run in per["equal steps"]:
        run["MeanFlow 1 NFE"]["energy"] /= 2  # the rival at half SoFlow's on every seed
    table = toys.headline_table(result)
    assert "| checkerboard | MeanFlow | 2.00 ± 0.00 | rival leads | 0.50 ± 0.00 | SoFlow leads |" in table


def test_make_bench_quick_runs_every_benchmark_script_in_its_quick_mode() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nbench-quick:", 1)[1].split("\n\n", 1)[0]
    scripts = sorted(
        p.name for p in (ROOT / "benchmarks").glob("*.py") if 'if __name__ == "__main__":' in p.read_text()
    )
    assert scripts == [
        "demo_budget.py",
        "digits.py",
        "finetune.py",
        "gpu_check.py",
        "guidance_range.py",
        "step_cost.py",
        "toys.py",
        "toys_long.py",
    ]
    for name in scripts:
        if name == "gpu_check.py":  # its CPU smoke run is --dry-run, a make target of its own (CI runs it)
            dry_run = makefile.split("\ngpu-check-dry-run:", 1)[1].split("\n\n", 1)[0]
            assert "benchmarks/gpu_check.py --dry-run" in dry_run
            continue
        assert f"benchmarks/{name} --quick" in recipe, name


def test_demo_budget_cells_are_checked() -> None:
    from benchmarks import demo_budget

    assert demo_budget.parse_cell("256,512,6000") == (256, 512, 6000)
    for bad in ("256,512", "256,0,10", "a,b,c"):
        with pytest.raises(ValueError, match="HIDDEN,BATCH,STEPS"):
            demo_budget.parse_cell(bad)


def test_toys_long_runs_meanflow_at_equal_time_and_at_the_earlier_budget() -> None:
    from benchmarks import toys_long
    from benchmarks.common import START

    selected = {**START["MeanFlow"], "time_scale": 1.0, "ema": 0.995}  # the earlier run's settings
    selection = {
        "searches": {
            "checkerboard": {**{m: {"best": START[m]} for m in START}, "MeanFlow": {"best": selected}},
            "eight_gaussians": {m: {"best": START[m]} for m in START},
        }
    }
    cost = {
        "costs": {
            "FM": {"ratio": 0.8},
            "SoFlow": {"ratio": 1.0},
            "MeanFlow": {"ratio": 2.0},
            "Shortcut": {"ratio": 0.5},
        }
    }
    runs = toys_long.plan(toys_long.FULL, cost, selection["searches"])
    steps = {(r["toy"], r["name"]): r["steps"] for r in runs}
    assert steps[("checkerboard", "SoFlow, selected")] == 4000
    assert steps[("checkerboard", "MeanFlow, selected, equal time")] == 2000
    assert steps[("checkerboard", "FM, selected, equal time")] == 5000
    assert steps[("checkerboard", "Shortcut, selected, equal time")] == 8000
    assert steps[("checkerboard", "MeanFlow, selected")] == toys_long.EARLIER_STEPS == 1850
    # the earlier run's settings get a row of their own only where the selection differs from them
    assert ("checkerboard", "MeanFlow, earlier run's settings") not in steps
    earlier = next(r for r in runs if r["name"] == "MeanFlow, earlier run's settings")
    assert earlier["toy"] == "eight_gaussians"
    assert earlier["settings"]["time_scale"] == 1.0
    assert earlier["settings"]["ema"] == 0.995


def test_demo_budget_table_gives_each_cell_its_seeds_mean_and_lowest_seed(tmp_path: Path) -> None:
    from benchmarks import demo_budget

    def run(seed: int, on_support: float) -> dict[str, Any]:
        return {
            "kind": "soflow",
            "hidden": 128,
            "batch": 512,
            "steps": 6000,
            "seed": seed,
            "on_support": on_support,
            "modes_covered": 1.0,
            "energy": 0.004,
            "cpu_s": 70.0,
            "wall_s": 71.0,
        }

    result = {
        "commands": ["python benchmarks/demo_budget.py --cells 128,512,6000 --seeds 0 1 2"],
        "torch": "x",
        "demo_default": [128, 512, 6000],
        "eval_points": 10,
        "load_averages": [[0.1, 0.2]],
        "runs": [run(0, 0.92), run(1, 0.90), run(2, 0.94)],
    }
    table = demo_budget.render(result, tmp_path)
    row = "| SoFlow 1 NFE (demo default) | 128 | 512 | 6000 | 0, 1, 2 | 92.00 ± 2.00 % | 90.00 % |"
    assert row in table
    assert (tmp_path / "demo_budget.md").read_text().startswith("Commands:")


def test_demo_budget_append_adds_runs_and_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import demo_budget

    def fake(kind: str, hidden: int, batch: int, steps: int, seed: int, eval_points: int) -> dict[str, Any]:
        return {
            "kind": kind,
            "hidden": hidden,
            "batch": batch,
            "steps": steps,
            "seed": seed,
            "on_support": 0.9,
            "modes_covered": 1.0,
            "energy": 0.0,
            "cpu_s": 1.0,
            "wall_s": 1.0,
        }

    monkeypatch.setattr(demo_budget, "run", fake)
    out = ["--out", str(tmp_path), "--no-reference", "--part", "measure"]
    demo_budget.main(["--cells", "16,32,10", *out])
    demo_budget.main(["--cells", "16,32,10", "--seeds", "1", "2", "--append", *out])
    result = json.loads((tmp_path / "demo_budget.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 1, 2]
    assert len(result["commands"]) == len(result["load_averages"]) == 2
    demo_budget.main(["--cells", "16,32,10", *out])  # without --append the file starts over
    assert len(json.loads((tmp_path / "demo_budget.json").read_text())["runs"]) == 1


def test_commands_text_names_each_command_once_with_the_parts_it_wrote() -> None:
    from benchmarks import report

    text = report.commands_text(
        {"step costs": {"command": "a"}, "search": {"command": "b"}, "reported runs": {"command": "b"}}
    )
    assert text == "`a` (step costs); `b` (search, reported runs)"
