"""Guidance chosen at sampling time on 8×8 digits: one model trained with a range of scales.

One class-conditional SoFlow model is trained with `GuidanceConfig(scale=(1, 4))` (each sample draws
its scale uniformly in [1, 4]; the network gets it as the keyword `guidance_scale`) and sampled at
1 NFE with the scales 1, 1.5, 2, 3 and 4; three models are trained with the fixed scales 1, 2 and 3
and sampled at 1 NFE. Same protocol as `benchmarks/digits.py` (`benchmarks/common.py`): the same
`MLPBackbone` (the range model adds a zero-initialised embedder of the scale, `ScaleMLP`), data,
batch, steps, Adam with a cosine decay, EMA with warm-up, guidance drop 0.1, mix 0.5, decay time 0.8;
the learning rate tuned for every model by the same search on seed 100 (fixed models: the Fréchet
distance at their scale; the range model: its mean over the scales 1, 2 and 3); seeds 0-2 reported.
Scores: accuracy of the digits classifier on the requested class and the Fréchet distance in its
features; the ratio of Fréchet distances of the range model over each fixed model at that model's
scale, per seed.

    python benchmarks/guidance_range.py                 # search, reported runs, table and figure
    python benchmarks/guidance_range.py --part render   # rewrite guidance_range.md and the figure
    python benchmarks/guidance_range.py --quick         # CI smoke run (into outputs/)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import digits  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Budget,
    StagedSearch,
    Trainer,
    markdown_table,
    pm,
    run_search,
    run_tasks,
    seed_ratios,
    settings_text,
    write_markdown,
)
from soflow_toolkit import sample  # noqa: E402
from soflow_toolkit.toy import MLPBackbone, timestep_embedding  # noqa: E402

RANGE = (1.0, 4.0)
SAMPLING_SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)
FIXED_SCALES = (1.0, 2.0, 3.0)
MODELS = ("range [1, 4]", *(f"fixed {w:g}" for w in FIXED_SCALES))
FULL: dict[str, Any] = {
    # sized for a shared 2-core CPU: half the digits benchmark's steps, no search (every model at the
    # digits benchmark's start, lr 1e-3); `--search` adds the learning-rate search
    "budget": Budget(steps=1500, batch=256, hidden=256, dim=64, num_classes=10),
    "classifier_steps": 3000,
    "selection_seeds": (100,),
    "report_seeds": (0, 1, 2),
    "search": [],
}
SEARCH: list[dict[str, list[Any]]] = [{"lr": [3e-4, 1e-3, 3e-3]}]
QUICK: dict[str, Any] = {
    "budget": Budget(steps=30, batch=32, hidden=32, depth=2, dim=64, num_classes=10),
    "classifier_steps": 60,
    "selection_seeds": (100,),
    "report_seeds": (0,),
    "search": [{"lr": [1e-3]}],
}


def start(model: str) -> dict[str, Any]:
    """The digits benchmark's SoFlow start, with the model's guidance scale (a list for the range)."""
    scale: Any = list(RANGE) if model.startswith("range") else float(model.split()[-1])
    return {**digits.START_DIGITS["SoFlow"], "guidance_scale": scale}


def scales_of(model: str) -> tuple[float, ...]:
    """The scales a model is sampled with: every sampling scale for the range model, else its own."""
    return SAMPLING_SCALES if model.startswith("range") else (float(model.split()[-1]),)


class ScaleMLP(MLPBackbone):
    r"""`MLPBackbone` with the guidance scale as an input: $E_\omega(\omega)$ added to the first layer.

    $E_\omega$ = Linear -> SiLU -> Linear of the sinusoidal features of the raw scale (scale 1), with the
    last layer zero-initialised, so the network starts as the `MLPBackbone` for every scale.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hidden = self.inp.out_features
        self.scale_embed = nn.Sequential(
            nn.Linear(self.frequencies, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        nn.init.zeros_(self.scale_embed[2].weight)
        nn.init.zeros_(self.scale_embed[2].bias)
        self._scale_embedding: Tensor | None = None
        self.inp.register_forward_hook(self._add_scale_embedding)

    def _add_scale_embedding(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        if self._scale_embedding is None:
            raise RuntimeError("ScaleMLP was called without guidance_scale")
        return output + self._scale_embedding

    def forward(  # type: ignore[override]
        self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor | None = None, *, guidance_scale: Tensor
    ) -> Tensor:
        features = timestep_embedding(guidance_scale, self.frequencies, scale=1.0).to(self.inp.weight.dtype)
        self._scale_embedding = self.scale_embed(features)
        try:
            return super().forward(x, t, s, labels)
        finally:
            self._scale_embedding = None


class Run(Trainer):
    """The digits benchmark's SoFlow run; the range model gets `ScaleMLP`."""

    def build_backbone(self, budget: Budget, settings: dict[str, Any]) -> nn.Module:
        if not isinstance(settings["guidance_scale"], list):
            return super().build_backbone(budget, settings)
        return ScaleMLP(
            budget.dim,
            hidden=budget.hidden,
            depth=budget.depth,
            num_classes=budget.num_classes,
            time_scale=float(settings["time_scale"]),
        )


def train_and_sample(model_name: str, settings: dict[str, Any], budget: Budget, seed: int) -> dict[str, Any]:
    """Train one model; 1-NFE samples of the other half's labels at each of its sampling scales."""
    images, all_labels = digits.load_digits()

    def batches(g: torch.Generator) -> tuple[Tensor, Tensor]:
        index = torch.randint(images.shape[0], (budget.batch,), generator=g)
        return images[index], all_labels[index]

    model, seconds = Run("SoFlow", settings, budget, budget.steps, batches, seed).run()
    wanted = all_labels[digits.split()["other"]]
    noise = torch.randn(wanted.shape[0], 64, generator=torch.Generator().manual_seed(seed + 7))
    ranged = model_name.startswith("range")
    out: dict[str, Any] = {"s_per_step": seconds, "samples": {}}
    for w in scales_of(model_name):
        extra = {"guidance_scale": w} if ranged else {}
        out["samples"][w] = sample(model, noise, cond=wanted, **extra).clamp(-1, 1)
    return out


# ------------------------------------------------------------------------------------------------
# Parts


def selection_score(model_name: str, frechet: dict[float, float]) -> float:
    """Fixed models: the Fréchet distance at their scale; the range model: its mean at the fixed scales."""
    if model_name.startswith("range"):
        return statistics.fmean(frechet[w] for w in FIXED_SCALES)
    return frechet[float(model_name.split()[-1])]


def part_select(
    config: dict[str, Any], classifier: Any, jobs: int, progress: Any, cache: Path | None
) -> dict[str, Any]:
    budget: Budget = config["budget"]
    searches = {m: StagedSearch(start(m), config["search"]) for m in MODELS}

    def task(m: str, settings: dict[str, Any], seed: int) -> tuple[Any, ...]:
        return (m, settings, budget, seed)

    def score(m: str, result: dict[str, Any]) -> float:
        frechet = {w: digits.score(classifier, s)["frechet"] for w, s in result["samples"].items()}
        return selection_score(m, frechet)

    run_search(searches, task, train_and_sample, score, config["selection_seeds"], jobs, progress, cache)
    return {
        "budget": asdict(budget),
        "seeds": list(config["selection_seeds"]),
        "search": config["search"],
        "searches": {m: {"best": searches[m].best, "log": searches[m].log} for m in MODELS},
    }


def part_report(
    config: dict[str, Any],
    selection: dict[str, Any],
    classifier: Any,
    jobs: int,
    progress: Any,
    cache: Path | None,
) -> dict[str, Any]:
    budget: Budget = config["budget"]
    seeds = config["report_seeds"]
    settings = {m: selection["searches"][m]["best"] for m in MODELS}
    tasks = [(m, settings[m], budget, seed) for m in MODELS for seed in seeds]
    progress.set_description("reported runs")
    results = run_tasks(train_and_sample, tasks, jobs, progress, cache)
    runs: dict[str, list[dict[str, Any]]] = {}
    for (m, _, _, seed), result in zip(tasks, results, strict=True):
        scores = {f"{w:g}": digits.score(classifier, s) for w, s in result["samples"].items()}
        runs.setdefault(m, []).append({"seed": seed, "s_per_step": result["s_per_step"], "scales": scores})
    return {
        "budget": asdict(budget),
        "seeds": list(seeds),
        "settings": settings,
        "floors": digits.floors(classifier),
        "runs": runs,
    }


# ------------------------------------------------------------------------------------------------
# Rendering


def values(runs: list[dict[str, Any]], scale: float, key: str) -> list[float]:
    return [run["scales"][f"{scale:g}"][key] for run in sorted(runs, key=lambda run: run["seed"])]


def scale_table(result: dict[str, Any]) -> str:
    runs, ranged = result["runs"], MODELS[0]
    rows = []
    for w in SAMPLING_SCALES:
        cells = [
            f"{w:g}",
            pm(values(runs[ranged], w, "accuracy"), 3),
            pm(values(runs[ranged], w, "frechet"), 2),
        ]
        fixed = f"fixed {w:g}"
        if fixed in runs:
            ratio = seed_ratios(values(runs[ranged], w, "frechet"), values(runs[fixed], w, "frechet"))
            cells += [
                pm(values(runs[fixed], w, "accuracy"), 3),
                pm(values(runs[fixed], w, "frechet"), 2),
                pm(ratio, 2),
            ]
        else:
            cells += ["–", "–", "–"]
        rows.append(cells)
    floor = result["floors"]["other_half"]
    rows.append(
        ["real digits (other half)", f"{floor['accuracy']:.3f}", f"{floor['frechet']:.2f}", "", "", ""]
    )
    header = [
        "ω at sampling",
        "range model: accuracy",
        "range model: Fréchet",
        "model trained at this ω: accuracy",
        "its Fréchet",
        "Fréchet ratio, range / fixed",
    ]
    return (
        f"**One model trained with ω ∈ [{RANGE[0]:g}, {RANGE[1]:g}], sampled at 1 NFE with each ω, against "
        "models trained at that fixed ω** (equal steps; mean ± std over the seeds; the ratio is per seed, "
        "below 1 the range model is closer to the real digits).\n\n" + markdown_table(header, rows)
    )


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    ranged = MODELS[0]
    means = [
        (
            statistics.fmean(values(runs[ranged], w, "frechet")),
            statistics.fmean(values(runs[ranged], w, "accuracy")),
        )
        for w in SAMPLING_SCALES
    ]
    ax.plot(
        *zip(*means, strict=True),
        "o-",
        color="C0",
        label=f"one model, ω ∈ [{RANGE[0]:g}, {RANGE[1]:g}] (sampled at ω)",
    )
    for i, (w, (x, y)) in enumerate(zip(SAMPLING_SCALES, means, strict=True)):
        offset = (6, 6) if i % 2 else (-34, -12)  # alternate sides: neighbouring scales lie close together
        ax.annotate(f"ω = {w:g}", (x, y), textcoords="offset points", xytext=offset, fontsize=8, color="C0")
    for i, w in enumerate(FIXED_SCALES):
        fixed = f"fixed {w:g}"
        x, y = values(runs[fixed], w, "frechet"), values(runs[fixed], w, "accuracy")
        ax.errorbar(
            statistics.fmean(x),
            statistics.fmean(y),
            xerr=pm_std(x),
            yerr=pm_std(y),
            fmt="s",
            color=f"C{i + 1}",
            label=f"trained at ω = {w:g}",
        )
    ax.set(xlabel="Fréchet distance (classifier features; lower is better)", ylabel="classifier accuracy")
    ax.set_title(f"8×8 digits, 1 NFE, seeds {', '.join(map(str, result['seeds']))}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def search_text(selection: dict[str, Any]) -> str:
    """How the settings were chosen: the search, or the shared start for every model."""
    if not selection["search"]:
        return (
            "No search: every model runs the digits benchmark's start settings (the same for all), so the "
            "comparison is at equal settings, not at each model's best."
        )
    stages = "; ".join(settings_text(stage) for stage in selection["search"])
    return (
        f"The learning rate is tuned for every model by the same search ({stages}) on seed "
        f"{', '.join(map(str, selection['seeds']))}; fixed models are scored by the Fréchet distance at "
        "their scale, the range model by its mean over the scales 1, 2 and 3."
    )


def pm_std(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def render(selection: dict[str, Any], result: dict[str, Any], out: Path) -> str:
    sections = [
        f"Command: `{result['command']}` (torch {result['torch']}, one torch thread per worker process). "
        f"Classifier accuracy on held-out real digits: {result['floors']['classifier_test_accuracy']:.3f}.",
        "**Protocol.** The class-conditional `MLPBackbone` of the digits benchmark "
        f"(hidden {result['budget']['hidden']}, depth {result['budget']['depth']}), batch "
        f"{result['budget']['batch']}, {result['budget']['steps']} steps for every model, Adam with a cosine "
        "decay to 0, EMA with warm-up; SoFlow's `lowdim` settings with guidance drop 0.1, mix 0.5, decay "
        "time 0.8. The range model adds a zero-initialised embedder of the scale (`ScaleMLP`). "
        + search_text(selection),
        scale_table(result),
        "![Accuracy against Fréchet distance at 1 NFE](guidance_range.png)",
        "**Selected settings**\n\n"
        + markdown_table(
            ["model", "settings"], [[m, settings_text(s)] for m, s in result["settings"].items()]
        ),
    ]
    write_markdown(out / "guidance_range.md", sections)
    plot(result, out / "guidance_range.png")
    return "\n\n".join(sections)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny budget, one seed")
    parts = ["select", "report", "render"]
    parser.add_argument("--part", nargs="+", default=parts, choices=parts)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--cache", type=Path, default=None, help="keep every run's result here (resume)")
    parser.add_argument("--search", action="store_true", help="tune the learning rate of every model first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(1)
    config = QUICK if args.quick else FULL
    if args.search:
        config = {**config, "search": SEARCH}
    out = args.out or (ROOT / "outputs" / "bench-quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/guidance_range.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"command": command, "torch": torch.__version__, "cpu_count": os.cpu_count()}
    names = {"select": "guidance_range_selection", "report": "guidance_range"}

    def load(part: str) -> dict[str, Any]:
        return json.loads((out / f"{names[part]}.json").read_text())

    def save(part: str, result: dict[str, Any]) -> None:
        (out / f"{names[part]}.json").write_text(json.dumps({**meta, **result}, indent=1) + "\n")

    classifier = (
        digits.train_classifier(config["classifier_steps"]) if {"select", "report"} & set(args.part) else None
    )
    with tqdm(unit="run", dynamic_ncols=True) as progress:
        if "select" in args.part and classifier is not None:
            save("select", part_select(config, classifier, args.jobs, progress, args.cache))
        if "report" in args.part and classifier is not None:
            save("report", part_report(config, load("select"), classifier, args.jobs, progress, args.cache))
    if "render" in args.part:
        print(render(load("select"), load("report"), out))


if __name__ == "__main__":
    main()
