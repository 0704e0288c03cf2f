r"""The protocol shared by the quality benchmarks: one training loop, one search, one way to report.

Every method trains the same `soflow_toolkit.toy.MLPBackbone` wrapped in `SolutionFlowWrapper`, with
Adam, a cosine learning-rate decay to 0 over the run, and the evaluated weights an EMA with warm-up
(`EMA(decay, warmup=True)`). What differs between methods is only the loss and the samplers
(`make_loss`, `SAMPLERS`) and their own knobs. Settings are flat dicts:
`{"lr", "time_scale", "ema", ...method knobs}`.

- :class:`Trainer`: one training run (also the unit that the step-cost ratios time, so the timed
  step is the trained step: loss, backward, optimizer, schedule, EMA, target copy).
- :func:`step_cost_ratios`: per-step cost of every method relative to a reference, measured side by
  side (interleaved rounds, median of per-round ratios), and :func:`equal_time_steps`.
- :class:`StagedSearch`, :func:`run_search`: the same staged coordinate search for every method
  (`SEARCH`, or `SEARCH_REDUCED` of the same size for every method), on seeds
  that the reported tables do not use.
- :func:`run_tasks`: worker processes with one torch thread each.
- Reporting: :func:`mean_std`, :func:`seed_ratios`, :func:`markdown_table`, :func:`write_markdown`.

The sampling-time guidance benchmark and any later one reuse these helpers.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.baselines import (
    MeanFlowConfig,
    ShortcutConfig,
    euler_fm_sample,
    meanflow_loss,
    meanflow_sample,
    midpoint_fm_sample,
    shortcut_loss,
    shortcut_sample,
)
from soflow_toolkit import EMA, GuidanceConfig, SoFlowConfig, SoFlowLoss, SolutionFlowWrapper, sample
from soflow_toolkit import flow_matching_loss as toolkit_flow_matching_loss
from soflow_toolkit.toy import MLPBackbone

METHODS = ("FM", "SoFlow", "MeanFlow", "Shortcut")
REFERENCE = "SoFlow"  # the method whose training time defines the equal-time budget
NOTES_MARKER = (
    "<!-- Notes below this line are written by hand and kept when the script rewrites the tables. -->"
)

Batches = Callable[[torch.Generator], tuple[Tensor, Tensor | None]]
LossFn = Callable[[SolutionFlowWrapper, Tensor, Tensor | None, torch.Generator, nn.Module | None], Tensor]
Sampler = Callable[[SolutionFlowWrapper, Tensor, Tensor | None, torch.Generator], Tensor]


@dataclass(frozen=True)
class Budget:
    """What every method shares: the backbone's size, the batch, the training steps."""

    steps: int
    batch: int
    hidden: int
    depth: int = 4
    dim: int = 2
    num_classes: int | None = None


# ------------------------------------------------------------------------------------------------
# Methods: a loss per method and its samplers


SHARED_KNOBS = ("lr", "time_scale", "ema", "guidance_scale")
"""Settings of the protocol (optimizer, backbone, EMA, guidance strength); the rest are the method's own."""


def method_knobs(settings: dict[str, Any]) -> dict[str, Any]:
    """The method's own knobs: every setting that is not a shared one (passed on by name, never dropped)."""
    return {k: v for k, v in settings.items() if k not in SHARED_KNOBS}


def soflow_config(settings: dict[str, Any], steps: int) -> SoFlowConfig:
    """`SoFlowConfig.lowdim` with the knobs of `settings` (and guidance, for class-conditional data).

    The curriculum's knobs (`r_init`, `r_end`) go to `config.curriculum`, the others to the config.
    """
    knobs = method_knobs(settings)
    curriculum = {k: knobs.pop(k) for k in ("r_init", "r_end") if k in knobs}
    if "guidance_scale" in settings:
        knobs["guidance"] = GuidanceConfig(
            scale=settings["guidance_scale"], drop_rate=0.1, mix_ratio=0.5, decay_time=0.8
        )
    config = SoFlowConfig.lowdim(total_steps=steps, **knobs)
    return replace(config, curriculum=replace(config.curriculum, **curriculum))


def make_loss(method: str, settings: dict[str, Any], steps: int, null: int | None) -> LossFn:
    """The training loss of `method` with its knobs; `null` is the null class of conditional data."""
    if method == "FM":
        guidance = None
        if "guidance_scale" in settings:  # training-time guidance, as SoFlow's (so that 1 NFE stays 1)
            guidance = GuidanceConfig(
                scale=settings["guidance_scale"], drop_rate=0.1, mix_ratio=0.5, decay_time=0.8
            )

        def fm(
            model: SolutionFlowWrapper, data: Tensor, labels: Tensor | None, g: torch.Generator, _: Any
        ) -> Tensor:
            noise = torch.randn(data.shape, generator=g)
            t = torch.rand(data.shape[0], generator=g)
            drop = None
            if guidance is not None and labels is not None:
                drop = torch.rand(data.shape[0], generator=g) < guidance.drop_rate
            return toolkit_flow_matching_loss(
                model, data, noise, t, cond=labels, p=0.0, guidance=guidance, drop_mask=drop, null_cond=null
            ).loss

        return fm
    if method == "SoFlow":
        objective = SoFlowLoss(soflow_config(settings, steps))

        def soflow(
            model: SolutionFlowWrapper, data: Tensor, labels: Tensor | None, g: torch.Generator, _: Any
        ) -> Tensor:
            return objective(
                model, data, labels, null_cond=null if labels is not None else None, generator=g
            ).loss

        return soflow
    if method == "MeanFlow":
        knobs = method_knobs(settings)
        if "guidance_scale" in settings:
            knobs.update(guidance_scale=settings["guidance_scale"], drop_rate=0.1)
        mf_config = MeanFlowConfig(**knobs)

        def meanflow(
            model: SolutionFlowWrapper, data: Tensor, labels: Tensor | None, g: torch.Generator, _: Any
        ) -> Tensor:
            return meanflow_loss(model.backbone, data, mf_config, cond=labels, null=null, generator=g)

        return meanflow
    if method == "Shortcut":
        knobs = method_knobs(settings)
        if "guidance_scale" in settings:
            knobs.update(guidance_scale=settings["guidance_scale"], drop_rate=0.1)
        sc_config = ShortcutConfig(**knobs)

        def shortcut(
            model: SolutionFlowWrapper, data: Tensor, labels: Tensor | None, g: torch.Generator, target: Any
        ) -> Tensor:
            backbone = target.backbone if target is not None else None
            return shortcut_loss(
                model.backbone, data, sc_config, target=backbone, cond=labels, null=null, generator=g
            )

        return shortcut
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def _fm(sampler: Callable[..., Tensor], steps: int) -> Sampler:
    return lambda model, noise, labels, g: sampler(model.backbone, noise, steps=steps, cond=labels)


def _soflow(steps: int) -> Sampler:
    return lambda model, noise, labels, g: sample(model, noise, steps=steps, cond=labels, generator=g)


def _meanflow(steps: int) -> Sampler:
    return lambda model, noise, labels, g: meanflow_sample(model.backbone, noise, steps=steps, cond=labels)


def _shortcut(steps: int) -> Sampler:
    return lambda model, noise, labels, g: shortcut_sample(model.backbone, noise, steps=steps, cond=labels)


SAMPLERS: dict[str, dict[str, Sampler]] = {
    "FM": {
        "FM Euler 1 NFE": _fm(euler_fm_sample, 1),
        "FM Euler 2 NFE": _fm(euler_fm_sample, 2),
        "FM midpoint 2 NFE": _fm(midpoint_fm_sample, 1),
        "FM midpoint 4 NFE": _fm(midpoint_fm_sample, 2),
        "FM midpoint 8 NFE": _fm(midpoint_fm_sample, 4),
        "FM Euler 100 NFE": _fm(euler_fm_sample, 100),
    },
    "SoFlow": {"SoFlow 1 NFE": _soflow(1), "SoFlow 2 NFE": _soflow(2)},
    "MeanFlow": {"MeanFlow 1 NFE": _meanflow(1), "MeanFlow 2 NFE": _meanflow(2)},
    "Shortcut": {"Shortcut 1 NFE": _shortcut(1), "Shortcut 2 NFE": _shortcut(2)},
}
"""Per method, the samplers evaluated (label -> sampler); the label ends with the evaluations it costs."""

SELECTION_SAMPLER = {
    "FM": "FM Euler 100 NFE",
    "SoFlow": "SoFlow 1 NFE",
    "MeanFlow": "MeanFlow 1 NFE",
    "Shortcut": "Shortcut 1 NFE",
}
"""The sample each method is selected on: one evaluation for the one-step methods; FM is the reference."""


# ------------------------------------------------------------------------------------------------
# Training


class Trainer:
    """One training run of one method: Adam, cosine decay to 0, EMA with warm-up (the evaluated weights)."""

    def __init__(
        self, method: str, settings: dict[str, Any], budget: Budget, steps: int, batches: Batches, seed: int
    ) -> None:
        torch.manual_seed(seed)  # the initial weights; every training draw uses the generator below
        self.model = SolutionFlowWrapper(self.build_backbone(budget, settings))
        self.steps, self.batches, self.step_count = steps, batches, 0
        self.generator = torch.Generator().manual_seed(10_000 + seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(settings["lr"]))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
        )
        self.ema = EMA(self.model, decay=float(settings["ema"]), warmup=True)
        null = budget.num_classes
        self.loss = make_loss(method, settings, steps, null)
        # shortcut models build their targets with the EMA weights (the authors' default)
        uses_target = method == "Shortcut" and settings.get("ema_targets", True)
        self.target = copy.deepcopy(self.model).requires_grad_(False) if uses_target else None

    def build_backbone(self, budget: Budget, settings: dict[str, Any]) -> nn.Module:
        """The backbone of the run (a hook: a benchmark may subclass to give it another input)."""
        return MLPBackbone(
            budget.dim,
            hidden=budget.hidden,
            depth=budget.depth,
            num_classes=budget.num_classes,
            time_scale=float(settings["time_scale"]),
        )

    def step(self) -> None:
        data, labels = self.batches(self.generator)
        loss = self.loss(self.model, data, labels, self.generator, self.target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        if self.target is not None:
            self.ema.copy_to(self.target)
        self.step_count += 1

    def run(self) -> tuple[SolutionFlowWrapper, float]:
        """Train to the end; return the EMA model (eval mode) and the seconds per step."""
        start = time.perf_counter()
        while self.step_count < self.steps:
            self.step()
        seconds = (time.perf_counter() - start) / max(1, self.steps)
        averaged = copy.deepcopy(self.model)
        self.ema.copy_to(averaged)
        return averaged.eval(), seconds


def step_cost_ratios(
    make_trainers: Callable[[], dict[str, Trainer]], *, rounds: int, steps_per_round: int
) -> dict[str, dict[str, Any]]:
    """Per-step cost of each trainer relative to `REFERENCE`, measured side by side.

    Every round runs `steps_per_round` training steps of each method, in an order that rotates every
    round, after one warm-up round; the ratio of a round is its step time over the reference's in the
    same round, so load that changes between rounds cancels. Returns, per method, the median ratio,
    its range over three consecutive blocks of rounds, and the median step time (s).
    """
    trainers = make_trainers()
    names = list(trainers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds + 1):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for _ in range(steps_per_round):
                trainers[name].step()
            if index > 0:
                samples[name].append((time.perf_counter() - start) / steps_per_round)
    out: dict[str, dict[str, Any]] = {}
    reference = samples[REFERENCE]
    block = max(1, rounds // 3)
    for name, values in samples.items():
        ratios = [a / b for a, b in zip(values, reference, strict=True)]
        blocks = [statistics.median(ratios[b : b + block]) for b in range(0, len(ratios) - block + 1, block)]
        out[name] = {
            "ratio": statistics.median(ratios),
            "ratio_range": [min(blocks), max(blocks)],
            "median_step_s": statistics.median(values),
        }
    return out


def equal_time_steps(reference_steps: int, costs: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The steps each method runs in the time the reference needs for `reference_steps`."""
    return {name: max(1, round(reference_steps / cost["ratio"])) for name, cost in costs.items()}


# ------------------------------------------------------------------------------------------------
# The search


def _shared_stages() -> list[dict[str, list[Any]]]:
    return [{"time_scale": [1.0, 1000.0], "ema": [0.995, 0.999]}, {"lr": [1e-3, 1e-2]}]


START: dict[str, dict[str, Any]] = {
    "FM": {"lr": 3e-3, "time_scale": 1000.0, "ema": 0.999},
    "SoFlow": {"lr": 3e-3, "time_scale": 1000.0, "ema": 0.999},  # + the lowdim preset's knobs
    "MeanFlow": {
        "lr": 3e-3,
        "time_scale": 1000.0,
        "ema": 0.999,
        "noncollapsed": 0.25,
        "times": "imagenet",
        "p": 1.0,
    },
    "Shortcut": {
        "lr": 3e-3,
        "time_scale": 1000.0,
        "ema": 0.999,
        "bootstrap_fraction": 0.125,
        "levels": 7,
        "ema_targets": True,
    },
}
"""Where each method's search starts: its published defaults and the previous shared optimizer."""

SEARCH: dict[str, list[dict[str, list[Any]]]] = {
    "FM": [*_shared_stages(), {"time_scale": [10.0, 100.0]}, {"ema": [0.99, 0.9995]}, {"lr": [2e-3, 5e-3]}],
    "SoFlow": [*_shared_stages(), {"r_end": [0.003, 0.03]}, {"fm_fraction": [0.25, 0.5]}, {"p": [0.5, 1.0]}],
    "MeanFlow": [
        *_shared_stages(),
        {"noncollapsed": [0.5, 0.75]},
        {"times": ["v0", "v1"]},
        {"p": [0.5, 0.75]},
    ],
    "Shortcut": [
        *_shared_stages(),
        {"bootstrap_fraction": [0.0625, 0.25, 0.5]},
        {"levels": [5, 9]},
        {"ema_targets": [False]},
    ],
}
"""The staged search of each method: 12 evaluated settings for every method (the first stage is a grid
that contains the start; each later stage tries its values with everything else at the best so far)."""

SEARCH_REDUCED: dict[str, list[dict[str, list[Any]]]] = {
    "FM": [*_shared_stages(), {"time_scale": [10.0, 100.0]}],
    "SoFlow": [*_shared_stages(), {"r_end": [0.003, 0.03]}],
    "MeanFlow": [*_shared_stages(), {"noncollapsed": [0.5, 0.75]}],
    "Shortcut": [*_shared_stages(), {"bootstrap_fraction": [0.0625, 0.25]}],
}
"""A smaller search of the same size for every method (`--search reduced`): 8 evaluated settings (the
shared grid of time-embedding scale and EMA, the learning rate, then one knob of the method's own); the
committed tables ran `SEARCH` (the default, `--search full`)."""


class StagedSearch:
    """A coordinate search (lower scores are better), one stage at a time.

    Stage $i$ evaluates the grid of its values with every other setting at the best so far
    (:meth:`candidates`); :meth:`record` takes their scores, and a candidate becomes the best only if
    it scores lower. Stages of several searches can run together, in parallel.
    """

    def __init__(self, start: dict[str, Any], stages: Sequence[dict[str, list[Any]]]) -> None:
        self.best, self.best_score = dict(start), math.inf
        self.stages = list(stages)
        self.log: list[dict[str, Any]] = []

    def candidates(self, index: int) -> list[dict[str, Any]]:
        grid: list[dict[str, Any]] = [{}]
        for key, values in self.stages[index].items():
            grid = [{**g, key: value} for g in grid for value in values]
        return [{**self.best, **g} for g in grid]

    def record(self, index: int, candidates: Sequence[dict[str, Any]], scores: Sequence[float]) -> None:
        for candidate, score in zip(candidates, scores, strict=True):
            self.log.append({"stage": index, "settings": candidate, "score": score})
            if score < self.best_score:
                self.best, self.best_score = dict(candidate), score


def run_search(
    searches: dict[Any, StagedSearch],
    task: Callable[[Any, dict[str, Any], int], tuple[Any, ...]],
    function: Callable[..., Any],
    score: Callable[[Any, Any], float],
    seeds: Sequence[int],
    jobs: int,
    progress: Any,
    cache: Path | None = None,
) -> None:
    """Run several staged searches together, stage by stage, every run of a stage in parallel.

    `task(key, settings, seed)` gives the arguments of `function` for one run; `score(key, result)`
    turns its result into a score; a setting scores the mean over `seeds`.
    """
    for index in range(max(len(search.stages) for search in searches.values())):
        work = [
            (key, search.candidates(index)) for key, search in searches.items() if index < len(search.stages)
        ]
        tasks = [task(key, c, seed) for key, candidates in work for c in candidates for seed in seeds]
        progress.set_description(f"search, stage {index + 1}")
        results = iter(run_tasks(function, tasks, jobs, progress, cache))
        for key, candidates in work:
            scores = [statistics.fmean(score(key, next(results)) for _ in seeds) for _ in candidates]
            searches[key].record(index, candidates, scores)


# ------------------------------------------------------------------------------------------------
# Worker processes


def run_tasks(
    function: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    jobs: int,
    progress: Any,
    cache: Path | None = None,
) -> list[Any]:
    """`function(*task)` for every task in `jobs` processes with one torch thread each, results in order.

    With `cache`, every result is also saved there under a hash of the function's name and its task,
    and a task whose result is already there is not run again (so an interrupted run resumes). The
    key does not see the code: use a fresh folder after changing what a task computes.
    """

    def path(task: tuple[Any, ...]) -> Path | None:
        if cache is None:
            return None
        key = hashlib.sha1(repr((function.__name__, task)).encode()).hexdigest()
        return cache / f"{key}.pt"

    results: dict[int, Any] = {}
    for index, task in enumerate(tasks):
        saved = path(task)
        if saved is not None and saved.exists():
            results[index] = torch.load(saved, weights_only=False)
            progress.update(1)
    todo = [i for i in range(len(tasks)) if i not in results]
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)

    def done(index: int, result: Any) -> None:
        saved = path(tasks[index])
        if saved is not None:
            torch.save(result, saved)
        results[index] = result
        progress.update(1)

    if jobs <= 1:
        for i in todo:
            done(i, function(*tasks[i]))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            futures = {pool.submit(function, *tasks[i]): i for i in todo}
            for future in as_completed(futures):
                done(futures[future], future.result())
    return [results[i] for i in range(len(tasks))]


# ------------------------------------------------------------------------------------------------
# Reporting


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def pm(values: Sequence[float], digits: int = 2, scale: float = 1.0) -> str:
    """`mean ± std` of `scale * values` (the mean alone for one value); negative values stay negative."""
    mean, std = mean_std([scale * v for v in values])
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def seed_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-seed ratios (the two methods share each seed's evaluation data and noise)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def settings_text(settings: dict[str, Any]) -> str:
    """Settings as `key=value` pairs, numbers in short form."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())


def write_markdown(path: Path, sections: Sequence[str]) -> None:
    """Write the generated sections; keep whatever follows `NOTES_MARKER` in the existing file."""
    notes = NOTES_MARKER + "\n"
    if path.exists() and NOTES_MARKER in (old := path.read_text()):
        notes = old[old.index(NOTES_MARKER) :]
    path.write_text("\n\n".join(sections) + "\n\n" + notes)


def with_steps(budget: Budget, steps: int) -> Budget:
    return replace(budget, steps=steps)


def add_run_arguments(parser: argparse.ArgumentParser, *, steps: int, search_help: str) -> None:
    """The options every quality benchmark shares: workers, step-cost rounds, search size, budget, cache."""
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the step-cost measurement (30)")
    parser.add_argument(
        "--search-stages",
        type=int,
        default=None,
        help="run only the first N stages of the search (the same N for every method)",
    )
    parser.add_argument("--steps", type=int, default=None, help=f"training steps at equal steps ({steps})")
    parser.add_argument("--search", choices=["reduced", "full"], default="full", help=search_help)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep every run's result here and skip runs already there (resume)",
    )
