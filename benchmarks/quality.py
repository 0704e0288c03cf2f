"""One-step quality at equal budget: SoFlow against flow matching and MeanFlow (protocol: docs/benchmarks.md).

Parts (`--part`, default `toys digits`):

- `toys`: 2-D checkerboard, eight Gaussians, two moons, spiral and the ring of six sharp Gaussians,
  one small MLP backbone (`soflow_toolkit.toy.MLPBackbone`) for every method, the same optimizer,
  batch, EMA and number of training steps. Methods: flow matching (FM) sampled with 1, 2 and 100 Euler
  steps, SoFlow with 1 and 2 NFE, MeanFlow (JVP, `baselines.py`) with 1 and 2 NFE. Metrics: energy
  distance and sliced Wasserstein-2 against fresh data, next to the noise floor (two independent data
  samples of the same size). Mean ± standard deviation over seeds. Equal wall-clock: the median step
  time of every method is measured side by side in this process, and FM and MeanFlow are also
  evaluated after the number of steps that costs as much time as SoFlow's training.
- `digits`: scikit-learn's bundled 8×8 digits scaled to [-1, 1], class-conditional with training-time
  classifier-free guidance (null class 10). A small classifier trained here on real digits scores the
  samples (accuracy on the requested class) and gives the features of a Fréchet distance.
- `ablation`: the ring study: which settings of the official CIFAR-10 recipe make one-step quality
  worse in 2-D, and which close the gap (time priors, the r schedule, p/eps, the FM share).
- `budget`: FM and SoFlow only, trained longer (`--budget-steps`, default 10,000): does the gap to
  100-step FM close with training length?

Usage (exact commands of the published results in docs/benchmarks.md):

    python benchmarks/quality.py --quick           # CI smoke run, under a minute
    python benchmarks/quality.py                   # toys + digits
    python benchmarks/quality.py --part ablation   # the ring study
    python benchmarks/quality.py --part budget     # longer training
    python benchmarks/quality.py --part budget --budget-steps 4000 --hidden 512 --lr 1e-3 --name quality_width

Results go to `--out` (default benchmarks/results): quality.json, quality.md and PNG figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soflow_toolkit import (
    EMA,
    GuidanceConfig,
    SoFlowConfig,
    SoFlowLoss,
    SolutionFlowWrapper,
    TimePriors,
    euler_sample,
    flow_matching_loss,
    sample,
    sample_drop_mask,
    uniform_times,
)
from soflow_toolkit.toy import MLPBackbone, energy_distance, get_toy_dataset, sliced_wasserstein

try:
    from benchmarks.baselines import meanflow_loss, meanflow_sample
except ImportError:  # run as a script: python benchmarks/quality.py
    from baselines import meanflow_loss, meanflow_sample  # type: ignore[no-redef]

# ------------------------------------------------------------------------------------------------
# Settings

LOWDIM = SoFlowConfig.lowdim()
"""The low-dimensional preset (`SoFlowConfig.lowdim`); total_steps is set per run."""

CIFAR10 = SoFlowConfig.cifar10()
"""The plain transcription of the official CIFAR-10 recipe, for comparison."""

NOTES_MARKER = (
    "<!-- Notes below this line are written by hand and kept when the script rewrites the tables. -->"
)

TOYS = ("checkerboard", "eight_gaussians", "two_moons", "spiral", "ring")


@dataclass(frozen=True)
class Setup:
    """The training and evaluation budget shared by every method."""

    steps: int = 4000
    batch: int = 256
    hidden: int = 128
    depth: int = 4
    lr: float = 3e-3
    lr_schedule: str = "cosine"
    ema: float = 0.999
    eval_points: int = 10_000
    seeds: tuple[int, ...] = (0, 1, 2)
    projections: int = 64


@dataclass(frozen=True)
class DigitSetup(Setup):
    """The digits budget: a wider backbone and the classifier's own training steps."""

    steps: int = 3000
    hidden: int = 256
    lr: float = 1e-3
    classifier_steps: int = 3000


# ------------------------------------------------------------------------------------------------
# Methods: each is a loss over (model, data, generator, labels) and a set of samplers.

LossFn = Callable[[nn.Module, Tensor, torch.Generator, Tensor | None], Tensor]
Sampler = Callable[[nn.Module, Tensor, torch.Generator, Tensor | None], Tensor]


def fm_loss(guidance: GuidanceConfig | None = None, null: int | None = None) -> LossFn:
    """Plain flow matching (uniform times, unweighted MSE), optionally with training-time guidance."""

    def loss(model: nn.Module, data: Tensor, g: torch.Generator, labels: Tensor | None) -> Tensor:
        noise = torch.randn(data.shape, generator=g)
        t = uniform_times(data.shape[0], generator=g)
        drop = None
        if labels is not None and guidance is not None and guidance.drop_rate > 0:
            drop = sample_drop_mask(data.shape[0], guidance.drop_rate, generator=g)
        use = guidance if labels is not None and guidance is not None and guidance.enabled else None
        return flow_matching_loss(
            model, data, noise, t, cond=labels, p=0.0, guidance=use, drop_mask=drop, null_cond=null
        ).loss

    return loss


def soflow_loss(config: SoFlowConfig, null: int | None = None) -> LossFn:
    objective = SoFlowLoss(config)

    def loss(model: nn.Module, data: Tensor, g: torch.Generator, labels: Tensor | None) -> Tensor:
        return objective(
            model, data, labels, null_cond=null if labels is not None else None, generator=g
        ).loss

    return loss


def mf_loss(guidance_scale: float = 1.0, drop_rate: float = 0.0, null: int | None = None) -> LossFn:
    """MeanFlow with its published settings (75% of the pairs with r = t, p = 1, eps = 1e-3)."""

    def loss(model: nn.Module, data: Tensor, g: torch.Generator, labels: Tensor | None) -> Tensor:
        backbone = model.backbone  # type: ignore[union-attr]
        drop = None
        if labels is not None and drop_rate > 0:
            drop = sample_drop_mask(data.shape[0], drop_rate, generator=g)
        value, _ = meanflow_loss(
            backbone,
            data,
            cond=labels,
            null_cond=null if labels is not None else None,
            guidance_scale=guidance_scale if labels is not None else 1.0,
            drop_mask=drop,
            generator=g,
        )
        return value

    return loss


def euler(steps: int) -> Sampler:
    return lambda model, noise, g, labels: euler_sample(model, noise, steps=steps, cond=labels)


def soflow(steps: int) -> Sampler:
    return lambda model, noise, g, labels: sample(model, noise, steps=steps, cond=labels, generator=g)


def meanflow(steps: int) -> Sampler:
    return lambda model, noise, g, labels: meanflow_sample(model.backbone, noise, steps=steps, cond=labels)  # type: ignore[arg-type]


SAMPLERS: dict[str, dict[str, Sampler]] = {
    "FM": {"FM 1 step": euler(1), "FM 2 steps": euler(2), "FM 100 steps": euler(100)},
    "SoFlow": {"SoFlow 1 NFE": soflow(1), "SoFlow 2 NFE": soflow(2)},
    "MeanFlow": {"MeanFlow 1 NFE": meanflow(1), "MeanFlow 2 NFE": meanflow(2)},
}


# ------------------------------------------------------------------------------------------------
# Training


def new_model(setup: Setup, seed: int, dim: int = 2, num_classes: int | None = None) -> SolutionFlowWrapper:
    torch.manual_seed(seed)  # initial weights only; the training draws use explicit generators
    return SolutionFlowWrapper(
        MLPBackbone(dim, hidden=setup.hidden, depth=setup.depth, num_classes=num_classes)
    )


def train(
    model: SolutionFlowWrapper,
    loss_fn: LossFn,
    batches: Callable[[torch.Generator], tuple[Tensor, Tensor | None]],
    setup: Setup,
    snapshots: Sequence[int],
    seed: int,
) -> tuple[dict[int, SolutionFlowWrapper], float]:
    """Adam + EMA; returns EMA copies of the model after each step count in `snapshots`, and s/step.

    With `setup.lr_schedule == "cosine"` the learning rate decays to 0 over `max(snapshots)` steps, so
    pass one snapshot per run (an earlier snapshot would be taken before the decay ends).
    """
    g = torch.Generator().manual_seed(10_000 + seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    last = max(snapshots)
    if setup.lr_schedule == "cosine":
        if len(snapshots) != 1:
            raise ValueError("a cosine learning-rate schedule needs one snapshot per training run")
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, last) / last))
        )
    elif setup.lr_schedule == "constant":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
    else:
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant'; got {setup.lr_schedule!r}")
    ema = EMA(model, decay=setup.ema)
    out: dict[int, SolutionFlowWrapper] = {}
    start = time.perf_counter()
    for step in range(1, last + 1):
        data, labels = batches(g)
        loss = loss_fn(model, data, g, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update(model)
        if step in snapshots:
            snapshot = copy.deepcopy(model)
            ema.copy_to(snapshot)
            out[step] = snapshot.eval()
    return out, (time.perf_counter() - start) / last


def step_times(
    losses: dict[str, LossFn],
    make_model: Callable[[], SolutionFlowWrapper],
    batches: Callable[[torch.Generator], tuple[Tensor, Tensor | None]],
    *,
    repeats: int,
    steps: int,
) -> dict[str, float]:
    """Median seconds per training step of each method, measured round-robin in this process."""
    models = {name: make_model() for name in losses}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in losses}
    for repeat in range(repeats + 1):
        for name, loss_fn in losses.items():
            start = time.perf_counter()
            for _ in range(steps):
                data, labels = batches(g)
                loss = loss_fn(models[name], data, g, labels)
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
            if repeat > 0:  # the first round warms up
                times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


# ------------------------------------------------------------------------------------------------
# Statistics and tables


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: Sequence[float], digits: int = 4) -> str:
    mean, std = mean_std(values)
    scale = 1000.0
    if len(values) == 1:
        return f"{mean * scale:.{digits - 2}f}"
    return f"{mean * scale:.{digits - 2}f} ± {std * scale:.{digits - 2}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# 2-D toys


def toy_metrics(points: Tensor, reference: Tensor, setup: Setup) -> dict[str, float]:
    return {
        "energy": float(energy_distance(points, reference, num_projections=setup.projections)),
        "sw2": float(sliced_wasserstein(points, reference, num_projections=setup.projections)),
    }


def toy_losses(config: SoFlowConfig, steps: int) -> dict[str, LossFn]:
    return {"FM": fm_loss(), "SoFlow": soflow_loss(config.with_total_steps(steps)), "MeanFlow": mf_loss()}


def toy_batches(name: str, batch: int) -> Callable[[torch.Generator], tuple[Tensor, Tensor | None]]:
    dataset = get_toy_dataset(name)
    return lambda g: (dataset(batch, generator=g), None)


def toy_eval_data(toy: str, setup: Setup, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Fresh reference data, a second independent data sample (the noise floor) and the sampling noise."""
    dataset = get_toy_dataset(toy)
    g = torch.Generator().manual_seed(seed + 12_345)
    reference, second = dataset(setup.eval_points, generator=g), dataset(setup.eval_points, generator=g)
    return reference, second, torch.randn(setup.eval_points, 2, generator=g)


def toy_task(
    toy: str, seed: int, setup: Setup, config: SoFlowConfig, equal_time: dict[str, int]
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """One toy and seed: train the three methods, evaluate at equal steps and at equal wall-clock."""
    reference, second, noise = toy_eval_data(toy, setup, seed)
    row: dict[str, Any] = {"seed": seed, "noise floor": toy_metrics(second, reference, setup)}
    points_for_figure: dict[str, Tensor] = {"data": reference}
    for method in toy_losses(config, setup.steps):
        models: dict[int, SolutionFlowWrapper] = {}
        for steps in sorted({setup.steps, equal_time[method]}):  # one run per budget (lr decays to 0)
            loss_fn = toy_losses(config, steps)[method]
            trained, per_step = train(
                new_model(setup, seed), loss_fn, toy_batches(toy, setup.batch), setup, [steps], seed
            )
            models.update(trained)
            if steps == setup.steps:
                row[f"{method} s/step"] = per_step
        budgets = [("equal steps", setup.steps)] + (
            [] if method == "SoFlow" else [("equal time", equal_time[method])]
        )
        for budget, steps in budgets:
            for label, sampler in SAMPLERS[method].items():
                points = sampler(models[steps], noise, torch.Generator().manual_seed(seed), None)
                row[f"{label} | {budget}"] = toy_metrics(points, reference, setup)
                if budget == "equal steps":
                    points_for_figure[label] = points
    return row, points_for_figure


def run_tasks(
    function: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], jobs: int, progress: Any, threads: int
) -> list[Any]:
    """Run `function(*task)` for every task, in `jobs` worker processes (or in this one), in order."""
    if jobs <= 1:
        results = []
        for task in tasks:
            results.append(function(*task))
            progress.update(1)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(function, *task) for task in tasks]
        for future in futures:
            future.add_done_callback(lambda _: progress.update(1))
        return [future.result() for future in futures]


def run_toys(
    setup: Setup, toys: Sequence[str], config: SoFlowConfig, out: Path, progress: Any, jobs: int, threads: int
) -> dict[str, Any]:
    """Every method on every toy and seed, at equal steps and at equal wall-clock."""
    timing_steps = max(2, min(20, setup.steps // 10))
    progress.set_description("timing the training steps")
    seconds = step_times(
        toy_losses(config, setup.steps),
        lambda: new_model(setup, 0),
        toy_batches(toys[0], setup.batch),
        repeats=5,
        steps=timing_steps,
    )
    # Equal wall-clock: the number of steps each method runs in the time SoFlow needs for setup.steps.
    equal_time = {name: max(1, round(setup.steps * seconds["SoFlow"] / s)) for name, s in seconds.items()}
    progress.set_description("toys")
    tasks = [(toy, seed, setup, config, equal_time) for toy in toys for seed in setup.seeds]
    outputs = run_tasks(toy_task, tasks, jobs, progress, threads)
    results: dict[str, Any] = {
        "step_seconds": seconds,
        "equal_time_steps": equal_time,
        "floors": noise_floors(toys, setup, draws=3 if setup.eval_points < 5000 else 10),
        "toys": {},
    }
    figures: dict[str, dict[str, Tensor]] = {}
    for (toy, seed, *_), (row, points) in zip(tasks, outputs, strict=True):
        results["toys"].setdefault(toy, []).append(row)
        if seed == setup.seeds[0]:
            figures[toy] = points
    plot_toys(figures, out / "quality_toys.png")
    return results


def plot_toys(figures: dict[str, dict[str, Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [
        "data",
        "FM 100 steps",
        "FM 1 step",
        "SoFlow 1 NFE",
        "SoFlow 2 NFE",
        "MeanFlow 1 NFE",
        "MeanFlow 2 NFE",
    ]
    fig, axes = plt.subplots(
        len(figures), len(columns), figsize=(2.1 * len(columns), 2.1 * len(figures)), squeeze=False
    )
    for i, (toy, panels) in enumerate(figures.items()):
        for j, column in enumerate(columns):
            ax = axes[i][j]
            points = panels[column].numpy()
            ax.scatter(points[:, 0], points[:, 1], s=0.2, alpha=0.3, color="C0", rasterized=True)
            ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xticks=[], yticks=[])
            if i == 0:
                ax.set_title(column, fontsize=9)
            if j == 0:
                ax.set_ylabel(toy, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def noise_floors(toys: Sequence[str], setup: Setup, draws: int = 10) -> dict[str, dict[str, list[float]]]:
    """Distances between independent data samples of the evaluation size: the noise floor of each metric."""
    floors: dict[str, dict[str, list[float]]] = {}
    for toy in toys:
        dataset = get_toy_dataset(toy)
        g = torch.Generator().manual_seed(777)
        values = [
            toy_metrics(
                dataset(setup.eval_points, generator=g), dataset(setup.eval_points, generator=g), setup
            )
            for _ in range(draws)
        ]
        floors[toy] = {metric: [v[metric] for v in values] for metric in ("energy", "sw2")}
    return floors


def _key(label: str, budget: str) -> str:
    # SoFlow defines the wall-clock budget, so its equal-time row is its equal-steps row
    return f"{label} | equal steps" if label.startswith("SoFlow") else f"{label} | {budget}"


def toy_tables(results: dict[str, Any], setup: Setup) -> str:
    toys = list(results["toys"])
    labels = [label for method in SAMPLERS.values() for label in method]
    floors = results["floors"]
    sections = []
    for metric, name in (("energy", "Energy distance × 1000"), ("sw2", "Sliced Wasserstein-2 × 1000")):
        for budget in ("equal steps", "equal time"):
            rows = [
                [label] + [fmt([r[_key(label, budget)][metric] for r in results["toys"][t]]) for t in toys]
                for label in labels
            ]
            rows.append(["noise floor (data vs data)"] + [fmt(floors[t][metric]) for t in toys])
            steps_note = (
                f"{setup.steps} steps each"
                if budget == "equal steps"
                else "steps: " + ", ".join(f"{m} {n}" for m, n in results["equal_time_steps"].items())
            )
            sections.append(
                f"**{name}, {budget}** ({steps_note}; mean ± std over seeds {list(setup.seeds)}; "
                f"{setup.eval_points} points; the floor over {len(floors[toys[0]][metric])} pairs of data samples)"
                "\n\n" + markdown_table(["method", *toys], rows)
            )
    sections.append(target_table(results))
    seconds = results["step_seconds"]
    sections.append(
        f"**Median step time** (measured side by side in this run, batch {setup.batch}, "
        f"{setup.hidden}-wide MLP of depth {setup.depth}): "
        + ", ".join(f"{m} {1000 * s:.2f} ms ({s / seconds['FM']:.2f}× FM)" for m, s in seconds.items())
    )
    return "\n\n".join(sections)


def _versus(sf: float, reference: float, floor_std: float, *, name: str, factor: float) -> str:
    """SoFlow's mean energy distance against a reference method's; target `sf <= factor * reference`.

    When the reference is within the noise floor's spread (below twice its std) a ratio to it would be
    noise, so SoFlow is judged against that resolution instead: met when `sf < factor * 2 * floor_std`.
    """
    if reference < 2 * floor_std:
        met = sf < factor * 2 * floor_std
        return (
            f"{name} at the floor (< 2 × its std {1000 * floor_std:.2f}); SoFlow {sf / floor_std:.0f} × floor std: "
            + ("met" if met else "missed")
        )
    return f"{sf / reference:.2f}: " + ("met" if sf <= factor * reference else "missed")


def versus_fm(sf: float, fm: float, floor_std: float) -> str:
    """The target against 100-step FM: within 2× of it."""
    return _versus(sf, fm, floor_std, name="FM", factor=2.0)


def versus_meanflow(sf: float, mf: float, floor_std: float) -> str:
    """The target against MeanFlow 1 NFE: no worse than it."""
    return _versus(sf, mf, floor_std, name="MeanFlow", factor=1.0)


def target_table(results: dict[str, Any]) -> str:
    """The two targets per toy, with the noise floor's spread as the resolution of the energy distance."""
    rows = []
    for toy, runs in results["toys"].items():
        floor_std = statistics.stdev(results["floors"][toy]["energy"])
        sf = statistics.fmean(r["SoFlow 1 NFE | equal steps"]["energy"] for r in runs)
        fm = statistics.fmean(r["FM 100 steps | equal steps"]["energy"] for r in runs)
        mf = statistics.fmean(r["MeanFlow 1 NFE | equal time"]["energy"] for r in runs)
        rows.append([toy, versus_fm(sf, fm, floor_std), versus_meanflow(sf, mf, floor_std)])
    header = [
        "toy",
        "SoFlow 1 NFE / FM 100 steps, equal steps (target ≤ 2)",
        "SoFlow 1 NFE / MeanFlow 1 NFE, equal time (target ≤ 1)",
    ]
    return "**Targets** (ratios of mean energy distances)\n\n" + markdown_table(header, rows)


# ------------------------------------------------------------------------------------------------
# 8×8 digits, class-conditional


NUM_CLASSES = 10
NULL_CLASS = 10


def load_digits_tensors() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits: `(1797, 64)` images scaled from [0, 16] to [-1, 1], and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.data, dtype=torch.float32) / 8.0 - 1.0
    return images, torch.tensor(digits.target, dtype=torch.long)


class DigitClassifier(nn.Module):
    """A small MLP classifier; its 64-d penultimate layer gives the Fréchet distance's features."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(64, 256), nn.SiLU(), nn.Dropout(0.2), nn.Linear(256, 64), nn.SiLU()
        )
        self.head = nn.Linear(64, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out


def train_classifier(images: Tensor, labels: Tensor, seed: int, steps: int) -> DigitClassifier:
    torch.manual_seed(seed)
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(images.shape[0], (128,), generator=g)
        # light pixel noise makes the classifier less brittle on generated images
        x = images[index] + 0.1 * torch.randn(128, 64, generator=g)
        loss = nn.functional.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""$\lVert\mu_a - \mu_b\rVert^2 + \mathrm{tr}(\Sigma_a + \Sigma_b - 2(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2})$, float64."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(dim=0), b.mean(dim=0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)

    def sqrtm(m: Tensor) -> Tensor:
        values, vectors = torch.linalg.eigh((m + m.T) / 2)
        return (vectors * values.clamp_min(0).sqrt()) @ vectors.T

    root_a = sqrtm(cov_a)
    cross = sqrtm(root_a @ cov_b @ root_a)
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a + cov_b - 2 * cross))


def digits_guidance() -> GuidanceConfig:
    return GuidanceConfig(scale=2.0, drop_rate=0.1, mix_ratio=0.5, decay_time=0.8)


def digit_split() -> dict[str, Tensor]:
    """The digits, their labels and fixed index splits: classifier train/test, Fréchet reference/other half."""
    images, labels = load_digits_tensors()
    count = images.shape[0]
    split = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    halves = torch.randperm(count, generator=torch.Generator().manual_seed(1))
    return {
        "images": images,
        "labels": labels,
        "train": split[: int(0.8 * count)],
        "test": split[int(0.8 * count) :],
        "reference": halves[: count // 2],
        "other": halves[count // 2 : 2 * (count // 2)],
    }


def digit_losses(config: SoFlowConfig, steps: int) -> dict[str, LossFn]:
    guidance = digits_guidance()
    return {
        "FM": fm_loss(guidance, NULL_CLASS),
        "SoFlow": soflow_loss(replace(config.with_total_steps(steps), guidance=guidance), NULL_CLASS),
        "MeanFlow": mf_loss(guidance.scale, guidance.drop_rate, NULL_CLASS),
    }


def digit_task(method: str, seed: int, setup: DigitSetup, config: SoFlowConfig) -> dict[str, Any]:
    """Train one method on the digits; return its samples for the other half's labels and for a grid."""
    data = digit_split()
    images, labels = data["images"], data["labels"]

    def batches(g: torch.Generator) -> tuple[Tensor, Tensor | None]:
        index = torch.randint(images.shape[0], (setup.batch,), generator=g)
        return images[index], labels[index]

    loss_fn = digit_losses(config, setup.steps)[method]
    models, per_step = train(
        new_model(setup, seed, dim=64, num_classes=NUM_CLASSES), loss_fn, batches, setup, [setup.steps], seed
    )
    model = models[setup.steps]
    wanted = labels[data["other"]]  # the class mix of the real half the samples are compared with
    noise = torch.randn(wanted.shape[0], 64, generator=torch.Generator().manual_seed(seed + 7))
    grid_noise = torch.randn(NUM_CLASSES * 10, 64, generator=torch.Generator().manual_seed(3))
    grid_labels = torch.arange(NUM_CLASSES).repeat_interleave(10)
    out: dict[str, Any] = {"s/step": per_step, "samples": {}, "grids": {}}
    for label, sampler in SAMPLERS[method].items():
        g = torch.Generator().manual_seed(seed + 11)
        with torch.no_grad():
            out["samples"][label] = sampler(model, noise, g, wanted).clamp(-1, 1)
            out["grids"][label] = sampler(model, grid_noise, g, grid_labels).clamp(-1, 1)
    return out


def run_digits(
    setup: DigitSetup, config: SoFlowConfig, out: Path, progress: Any, jobs: int, threads: int
) -> dict[str, Any]:
    """Class-conditional digits: accuracy of a real-data classifier on samples and a Fréchet distance."""
    data = digit_split()
    images, labels = data["images"], data["labels"]
    progress.set_description("digits")
    tasks = [(method, seed, setup, config) for seed in setup.seeds for method in SAMPLERS]
    outputs = run_tasks(digit_task, tasks, jobs, progress, threads)
    classifier = train_classifier(
        images[data["train"]], labels[data["train"]], seed=0, steps=setup.classifier_steps
    )
    wanted = labels[data["other"]]
    with torch.no_grad():
        test = data["test"]
        real_accuracy = float((classifier(images[test]).argmax(1) == labels[test]).float().mean())
        ref_features = classifier.features(images[data["reference"]])
        # the floor: the other real half against the reference half (same sizes as the samples)
        floor = frechet_distance(classifier.features(images[data["other"]]), ref_features)
        real_half_accuracy = float((classifier(images[data["other"]]).argmax(1) == wanted).float().mean())
    runs: dict[int, dict[str, Any]] = {}
    grids: dict[str, Tensor] = {"real": _real_grid(images, labels)}
    for (method, seed, *_), result in zip(tasks, outputs, strict=True):
        row = runs.setdefault(seed, {"seed": seed})
        row[f"{method} s/step"] = result["s/step"]
        for label, generated in result["samples"].items():
            with torch.no_grad():
                accuracy = float((classifier(generated).argmax(1) == wanted).float().mean())
                fd = frechet_distance(classifier.features(generated), ref_features)
            row[label] = {"accuracy": accuracy, "frechet": fd}
            if seed == setup.seeds[0]:
                grids[label] = result["grids"][label]
    plot_digits(grids, out / "quality_digits.png")
    return {
        "classifier_test_accuracy": real_accuracy,
        "classifier_accuracy_on_other_half": real_half_accuracy,
        "frechet_floor": floor,
        "guidance": asdict(digits_guidance()),
        "runs": list(runs.values()),
    }


def _real_grid(images: Tensor, labels: Tensor) -> Tensor:
    return torch.cat([images[labels == k][:10] for k in range(NUM_CLASSES)])


def plot_digits(grids: dict[str, Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["real", "FM 100 steps", "SoFlow 1 NFE", "SoFlow 2 NFE", "MeanFlow 1 NFE", "FM 1 step"]
    names = [n for n in names if n in grids]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.7))
    for ax, name in zip(axes, names, strict=True):
        # 10 rows (classes) × 10 columns of 8×8 images, one blank pixel between images
        padded = torch.nn.functional.pad(grids[name].reshape(NUM_CLASSES, 10, 8, 8), (0, 1, 0, 1), value=-1.0)
        tiles = padded.permute(0, 2, 1, 3).reshape(90, 90)
        ax.imshow(tiles.numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set(xticks=[], yticks=[], title=name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def digit_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    labels = [label for method in SAMPLERS.values() for label in method]
    rows = [
        [label, _pm([r[label]["accuracy"] for r in runs], 3), _pm([r[label]["frechet"] for r in runs], 2)]
        for label in labels
    ]
    rows.append(
        [
            "real held-out digits",
            f"{results['classifier_test_accuracy']:.3f}",
            f"{results['frechet_floor']:.2f} (floor)",
        ]
    )
    return markdown_table(
        ["method", "classifier accuracy on samples", "Fréchet distance (classifier features)"], rows
    )


def _pm(values: Sequence[float], digits: int) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


# ------------------------------------------------------------------------------------------------
# The ring study: which settings make one-step quality worse in 2-D, and which close the gap

IMAGENET_TIMES = TimePriors()  # the ImageNet recipe: mu = (-0.2, -1.0, 0.2), sigma = (1.0, 0.8, 0.8)
ABLATION: list[tuple[str, SoFlowConfig | None]] = [
    ("FM, 100 Euler steps (reference)", None),
    ("CIFAR-10 recipe (plain transcription)", CIFAR10),
    ("ImageNet recipe, no guidance", SoFlowConfig()),
    ("CIFAR-10 + fm_fraction 0.5", replace(CIFAR10, fm_fraction=0.5)),
    ("CIFAR-10 + p = 1, eps = 1", replace(CIFAR10, p=1.0, eps=1.0)),
    ("CIFAR-10 + t ~ LN(0.8, 1.6)", replace(CIFAR10, times=replace(CIFAR10.times, mean_t=0.8))),
    ("low-dim preset (CIFAR-10 + r: 0.2 → 0.01)", LOWDIM),
    ("preset + r: 0.5 → 0.01", replace(LOWDIM, curriculum=replace(LOWDIM.curriculum, r_init=0.5))),
    ("preset + r: 0.2 → 0.002", replace(LOWDIM, curriculum=replace(LOWDIM.curriculum, r_end=0.002))),
    ("preset + fm_fraction 0.5", replace(LOWDIM, fm_fraction=0.5)),
    ("preset + fm_fraction 0.75", replace(LOWDIM, fm_fraction=0.75)),
    ("preset + p = 1, eps = 1", replace(LOWDIM, p=1.0, eps=1.0)),
    ("preset + p = 1, eps = 10", replace(LOWDIM, p=1.0, eps=10.0)),
    ("preset + p = 0 (plain MSE)", replace(LOWDIM, p=0.0)),
    ("preset + ImageNet time priors", replace(LOWDIM, times=IMAGENET_TIMES)),
]
RING_RADIUS, RING_STD, RING_MODES = 2.0, 0.1, 6


def off_mode_share(points: Tensor) -> float:
    """Share of points farther than 4 standard deviations from the nearest centre of `toy.ring`."""
    angle = torch.atan2(points[:, 1], points[:, 0])
    mode = torch.round(angle * RING_MODES / (2 * math.pi))
    centre_angle = 2 * math.pi * mode / RING_MODES
    centres = RING_RADIUS * torch.stack([torch.cos(centre_angle), torch.sin(centre_angle)], dim=1)
    return float(((points - centres).norm(dim=1) > 4 * RING_STD).float().mean())


def ablation_task(index: int, seed: int, setup: Setup) -> dict[str, Any]:
    name, config = ABLATION[index]
    reference, second, noise = toy_eval_data("ring", setup, seed)
    batches = toy_batches("ring", setup.batch)
    g = torch.Generator().manual_seed(seed)
    if config is None:
        models, _ = train(new_model(setup, seed), fm_loss(), batches, setup, [setup.steps], seed)
        points = {"1 NFE": euler_sample(models[setup.steps], noise, steps=100)}
        floor = toy_metrics(second, reference, setup) | {"off_mode": off_mode_share(second)}
    else:
        loss_fn = soflow_loss(config.with_total_steps(setup.steps))
        models, _ = train(new_model(setup, seed), loss_fn, batches, setup, [setup.steps], seed)
        model = models[setup.steps]
        points = {"1 NFE": sample(model, noise), "2 NFE": sample(model, noise, steps=2, generator=g)}
        floor = None
    row: dict[str, Any] = {"name": name, "seed": seed, "floor": floor}
    for key, value in points.items():
        row[key] = toy_metrics(value, reference, setup) | {"off_mode": off_mode_share(value)}
    return row


def run_ablation(setup: Setup, progress: Any, jobs: int, threads: int) -> dict[str, Any]:
    progress.set_description("ring study")
    tasks = [(index, seed, setup) for index in range(len(ABLATION)) for seed in setup.seeds]
    rows = run_tasks(ablation_task, tasks, jobs, progress, threads)
    configs = {
        name: None
        if config is None
        else {k: v for k, v in asdict(config.with_total_steps(setup.steps)).items() if k != "guidance"}
        for name, config in ABLATION
    }
    return {"rows": rows, "configs": configs}


def ablation_table(results: dict[str, Any], setup: Setup) -> str:
    rows = results["rows"]
    table = []
    for name, _ in ABLATION:
        mine = [r for r in rows if r["name"] == name]
        cells = [name]
        for key in ("1 NFE", "2 NFE"):
            if key in mine[0]:
                cells += [fmt([r[key]["energy"] for r in mine]), _pm([r[key]["off_mode"] for r in mine], 3)]
            else:
                cells += ["", ""]
        table.append(cells)
    floors = [r["floor"] for r in rows if r["floor"] is not None]
    table.append(
        [
            "noise floor (data vs data)",
            fmt([f["energy"] for f in floors]),
            _pm([f["off_mode"] for f in floors], 4),
            "",
            "",
        ]
    )
    header = [
        "setting",
        "ED × 1000, 1 NFE",
        "off-mode share, 1 NFE",
        "ED × 1000, 2 NFE",
        "off-mode share, 2 NFE",
    ]
    return (
        f"Ring of six Gaussians (radius {RING_RADIUS}, std {RING_STD}), {setup.steps} steps of batch {setup.batch}, "
        f"seeds {list(setup.seeds)}; the FM row is sampled with 100 Euler steps. Off-mode share: points farther than "
        f"4 std from every centre.\n\n" + markdown_table(header, table)
    )


# ------------------------------------------------------------------------------------------------
# The budget study: does the gap to 100-step flow matching close with longer training?


def budget_task(toy: str, seed: int, setup: Setup, config: SoFlowConfig) -> dict[str, Any]:
    """FM (100 Euler steps) and SoFlow (1 and 2 NFE) trained for `setup.steps` on one toy and seed."""
    reference, second, noise = toy_eval_data(toy, setup, seed)
    row: dict[str, Any] = {"toy": toy, "seed": seed, "floor": toy_metrics(second, reference, setup)}
    for method in ("FM", "SoFlow"):
        loss_fn = toy_losses(config, setup.steps)[method]
        models, _ = train(
            new_model(setup, seed), loss_fn, toy_batches(toy, setup.batch), setup, [setup.steps], seed
        )
        samplers = {"FM 100 steps": SAMPLERS["FM"]["FM 100 steps"]} if method == "FM" else SAMPLERS[method]
        for label, sampler in samplers.items():
            points = sampler(models[setup.steps], noise, torch.Generator().manual_seed(seed), None)
            row[label] = toy_metrics(points, reference, setup)
    return row


def run_budget(
    setup: Setup, toys: Sequence[str], config: SoFlowConfig, progress: Any, jobs: int, threads: int
) -> dict[str, Any]:
    progress.set_description(f"budget study ({setup.steps} steps)")
    tasks = [(toy, seed, setup, config) for toy in toys for seed in setup.seeds]
    return {"rows": run_tasks(budget_task, tasks, jobs, progress, threads)}


def budget_table(results: dict[str, Any], setup: Setup) -> str:
    labels = ("FM 100 steps", "SoFlow 1 NFE", "SoFlow 2 NFE")
    table = []
    for toy in dict.fromkeys(r["toy"] for r in results["rows"]):
        mine = [r for r in results["rows"] if r["toy"] == toy]
        cells = [toy] + [fmt([r[label]["energy"] for r in mine]) for label in labels]
        cells.append(fmt([r["floor"]["energy"] for r in mine]))
        fm, sf = (mean_std([r[label]["energy"] for r in mine])[0] for label in labels[:2])
        cells.append(versus_fm(sf, fm, mean_std([r["floor"]["energy"] for r in mine])[1]))
        table.append(cells)
    header = [
        "toy",
        *(f"ED × 1000, {label}" for label in labels),
        "floor",
        "SoFlow 1 NFE / FM 100 (target ≤ 2)",
    ]
    return (
        f"FM and SoFlow (`SoFlowConfig.lowdim(total_steps={setup.steps})`) trained for {setup.steps} steps of "
        f"batch {setup.batch}, seeds {list(setup.seeds)}, {setup.eval_points} points; otherwise the setup above.\n\n"
        + markdown_table(header, table)
    )


# ------------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny budget, one toy, one seed")
    parser.add_argument(
        "--part", nargs="+", default=["toys", "digits"], choices=["toys", "digits", "ablation", "budget"]
    )
    parser.add_argument("--toys", nargs="+", default=list(TOYS), choices=list(TOYS))
    parser.add_argument("--steps", type=int, default=None, help="training steps of every method (toys)")
    parser.add_argument(
        "--budget-steps", type=int, default=None, help="training steps of the budget study (default 10000)"
    )
    parser.add_argument("--digits-steps", type=int, default=None, help="training steps (digits)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--eval-points", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate of every method")
    parser.add_argument(
        "--hidden", type=int, default=None, help="width of the toys' MLP backbone (default 128)"
    )
    parser.add_argument(
        "--lr-schedule", default="cosine", choices=["cosine", "constant"], help="learning-rate schedule"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--name", default=None, help="file name stem of the outputs (default: from the parts, e.g. quality)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes (each trains one run at a time)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    seeds = tuple(range(args.seeds if args.seeds is not None else (1 if quick else 3)))
    toy_setup = Setup(
        steps=args.steps or (150 if quick else 4000),
        ema=0.95 if quick else 0.999,
        lr=args.lr or Setup.lr,
        hidden=args.hidden or Setup.hidden,
        lr_schedule=args.lr_schedule,
        eval_points=args.eval_points or (2000 if quick else 10_000),
        seeds=seeds,
    )
    digit_setup = DigitSetup(
        steps=args.digits_steps or (60 if quick else 3000),
        ema=0.95 if quick else 0.999,
        seeds=seeds[:1] if quick else seeds[:2],
        classifier_steps=100 if quick else 3000,
        lr_schedule=args.lr_schedule,
    )
    toys = args.toys[:1] if quick else args.toys
    report: dict[str, Any] = {
        "command": " ".join(["python benchmarks/quality.py", *(sys.argv[1:] if argv is None else argv)]),
        "torch": torch.__version__,
        "threads": args.threads,
        "lowdim_config": {k: v for k, v in asdict(LOWDIM).items() if k != "guidance"},
    }
    markdown = [
        f"Command: `{report['command']}` (torch {torch.__version__}, {args.threads} CPU thread(s)).",
        f"Every method trains the same `MLPBackbone` (toys: hidden {toy_setup.hidden}, depth "
        f"{toy_setup.depth}; digits: hidden {digit_setup.hidden}) with Adam (toys lr {toy_setup.lr}, digits "
        f"lr {digit_setup.lr}), a {args.lr_schedule} learning-rate schedule over each run, batch "
        f"{toy_setup.batch} and an EMA of the weights ({toy_setup.ema}) that is evaluated. SoFlow uses "
        "`SoFlowConfig.lowdim()`.",
    ]
    total = 0  # progress counts finished training runs
    if "toys" in args.part:
        total += len(toys) * len(seeds)
    if "digits" in args.part:
        total += 3 * len(digit_setup.seeds)
    if "ablation" in args.part:
        total += len(ABLATION) * len(seeds[:2] if not quick else seeds)
    budget_setup = replace(
        toy_setup,
        steps=args.budget_steps or (300 if quick else 10_000),
        seeds=seeds[:2] if not quick else seeds,
    )
    if "budget" in args.part:
        total += len(toys) * len(budget_setup.seeds)
    with tqdm(total=total, unit="run", dynamic_ncols=True) as progress:
        if "toys" in args.part:
            report["toy_setup"] = asdict(toy_setup)
            report["toys"] = run_toys(toy_setup, toys, LOWDIM, args.out, progress, args.jobs, args.threads)
            markdown += ["## 2-D toys", toy_tables(report["toys"], toy_setup)]
        if "digits" in args.part:
            report["digit_setup"] = asdict(digit_setup)
            report["digits"] = run_digits(digit_setup, LOWDIM, args.out, progress, args.jobs, args.threads)
            markdown += ["## 8×8 digits, class-conditional", digit_table(report["digits"])]
        if "ablation" in args.part:
            ablation_setup = replace(toy_setup, seeds=seeds[:2] if not quick else seeds)
            report["ablation"] = run_ablation(ablation_setup, progress, args.jobs, args.threads)
            markdown += ["## Ring study", ablation_table(report["ablation"], ablation_setup)]
        if "budget" in args.part:
            report["budget_setup"] = asdict(budget_setup)
            report["budget"] = run_budget(budget_setup, toys, LOWDIM, progress, args.jobs, args.threads)
            markdown += [
                f"## FM and SoFlow alone: {budget_setup.steps} steps, {budget_setup.hidden}-wide backbone",
                budget_table(report["budget"], budget_setup),
            ]
    single = {("ablation",): "quality_ablation", ("budget",): "quality_budget"}
    name = args.name or ("quality_quick" if quick else single.get(tuple(args.part), "quality"))
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    path = args.out / f"{name}.md"
    notes = NOTES_MARKER + "\n"
    if path.exists() and NOTES_MARKER in (old := path.read_text()):
        notes = old[old.index(NOTES_MARKER) :]  # keep the hand-written analysis below the marker
    path.write_text("\n\n".join(markdown) + "\n\n" + notes)
    print("\n\n".join(markdown))
    return report


if __name__ == "__main__":
    main()
