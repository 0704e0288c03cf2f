"""One-step quality on 8×8 digits, class-conditional with guidance: the toy protocol on real data.

scikit-learn's bundled digits (1,797 images, no download) scaled to [-1, 1], with labels; every method
trains the same class-conditional `MLPBackbone` (null class 10) with guidance learned in training
(SoFlow's guided target; flow matching the same; MeanFlow its guided velocity; shortcut models the
guided smallest step), so that one evaluation gives a guided sample. A small classifier trained here
on real digits scores the samples: accuracy on the requested class, the Fréchet distance between real
and generated images in its 64-d penultimate features, and precision and recall (k = 3) in those
features. The search (`SEARCH_DIGITS`, 12 settings per method with the guidance scale as a shared
stage; `--search reduced`: the 8 of `SEARCH_DIGITS_REDUCED`) runs on seeds 100 and 101 and is scored by the Fréchet
distance of the one-step sample (flow matching: of its 100-step sample); the tables report seeds 0-2,
at equal steps and at equal time. The default budget is 400 steps, batch 128, width 128: the committed
tables, which take about 11 minutes of wall time from scratch on an idle 2-core machine (`--jobs 2`);
`--steps` runs a longer budget.

Usage (parts as in `benchmarks/toys.py`: cost, select, report, render):

    python benchmarks/digits.py --cache outputs/digits-cache   # the committed tables
    python benchmarks/digits.py --part render
    python benchmarks/digits.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.common import (  # noqa: E402
    METHODS,
    SAMPLERS,
    SEARCH,
    SELECTION_SAMPLER,
    START,
    Budget,
    StagedSearch,
    Trainer,
    add_run_arguments,
    equal_time_steps,
    markdown_table,
    pm,
    run_search,
    run_tasks,
    step_cost_ratios,
    write_markdown,
)
from soflow_toolkit.toy import precision_recall  # noqa: E402

NUM_CLASSES = 10
FULL = {
    "budget": Budget(steps=400, batch=128, hidden=128, dim=64, num_classes=NUM_CLASSES),
    "classifier_steps": 3000,
    "selection_seeds": (100, 101),
    "report_seeds": (0, 1, 2),
    "search": "full",
    "search_stages": None,  # all
}
QUICK = {
    "budget": Budget(steps=30, batch=32, hidden=32, depth=2, dim=64, num_classes=NUM_CLASSES),
    "classifier_steps": 60,
    "selection_seeds": (100,),
    "report_seeds": (0,),
    "search": "reduced",
    "search_stages": 1,  # the first stage only: the code path, not the search
}
START_DIGITS = {m: {**START[m], "lr": 1e-3, "guidance_scale": 2.0} for m in METHODS}
METHOD_STAGES_DIGITS: dict[str, list[dict[str, list[Any]]]] = {
    "FM": [{"time_scale": [10.0, 100.0]}, {"ema": [0.99, 0.9995]}],
    "SoFlow": [{"r_end": [0.003, 0.03]}, {"fm_fraction": [0.25, 0.5]}],
    "MeanFlow": [{"noncollapsed": [0.5, 0.75]}, {"times": ["v0", "v1"]}],
    "Shortcut": [{"bootstrap_fraction": [0.25, 0.5]}, {"levels": [5, 9]}],
}
SEARCH_DIGITS = {
    m: [*SEARCH[m][:2], {"guidance_scale": [1.5, 3.0]}, *METHOD_STAGES_DIGITS[m]] for m in METHODS
}
"""12 settings per method: the shared stages of `SEARCH`, the guidance scale, two of the method's own."""
SEARCH_DIGITS_REDUCED = {
    m: [SEARCH[m][0], {"guidance_scale": [1.5, 3.0]}, METHOD_STAGES_DIGITS[m][0]] for m in METHODS
}
"""8 settings per method (`--search reduced`; the committed tables ran `SEARCH_DIGITS`): the shared grid
of time-embedding scale and EMA, the guidance scale, one knob of the method's own; the learning rate
stays at 1e-3 for every method."""
FIGURE_COLUMNS = (
    "real",
    "FM Euler 100 NFE",
    "FM midpoint 4 NFE",
    "SoFlow 1 NFE",
    "SoFlow 2 NFE",
    "MeanFlow 1 NFE",
    "Shortcut 1 NFE",
)


def load_digits() -> tuple[Tensor, Tensor]:
    """`(1797, 64)` images scaled from [0, 16] to [-1, 1], and their labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return torch.tensor(digits.data, dtype=torch.float32) / 8.0 - 1.0, torch.tensor(digits.target)


def split() -> dict[str, Tensor]:
    """Fixed index splits: classifier train/test (80/20), Fréchet reference half and other half."""
    count = load_digits()[0].shape[0]
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    halves = torch.randperm(count, generator=torch.Generator().manual_seed(1))
    return {
        "train": order[: int(0.8 * count)],
        "test": order[int(0.8 * count) :],
        "reference": halves[: count // 2],
        "other": halves[count // 2 : 2 * (count // 2)],
    }


class Classifier(nn.Module):
    """A small MLP classifier; its 64-d penultimate layer gives the features of the distances."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(64, 256), nn.SiLU(), nn.Dropout(0.2), nn.Linear(256, 64), nn.SiLU()
        )
        self.head = nn.Linear(64, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out


def train_classifier(steps: int) -> Classifier:
    images, labels = load_digits()
    train = split()["train"]
    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        index = train[torch.randint(train.shape[0], (128,), generator=g)]
        # light pixel noise makes the classifier less brittle on generated images
        x = images[index] + 0.1 * torch.randn(128, 64, generator=g)
        loss = nn.functional.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""$\lVert\mu_a - \mu_b\rVert^2 + \mathrm{tr}(\Sigma_a + \Sigma_b - 2(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2})$ in float64."""
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)

    def sqrtm(m: Tensor) -> Tensor:
        values, vectors = torch.linalg.eigh((m + m.T) / 2)
        return (vectors * values.clamp_min(0).sqrt()) @ vectors.T

    root_a = sqrtm(cov_a)
    cross = sqrtm(root_a @ cov_b @ root_a)
    return float((a.mean(0) - b.mean(0)).pow(2).sum() + torch.trace(cov_a + cov_b - 2 * cross))


@torch.no_grad()
def score(classifier: Classifier, generated: Tensor) -> dict[str, float]:
    """Accuracy on the requested classes, Fréchet distance, precision and recall against the reference half."""
    images, labels = load_digits()
    parts = split()
    wanted = labels[parts["other"]]
    reference = classifier.features(images[parts["reference"]])
    features = classifier.features(generated)
    precision, recall = precision_recall(reference, features, k=3)
    return {
        "accuracy": float((classifier.head(features).argmax(1) == wanted).float().mean()),
        "frechet": frechet_distance(features, reference),
        "precision": float(precision),
        "recall": float(recall),
    }


def train_and_sample(
    method: str,
    settings: dict[str, Any],
    budget: Budget,
    steps: int,
    seed: int,
    labels: tuple[str, ...],
    grid: bool,
) -> dict[str, Any]:
    """Train one method; sample the other half's labels (and a 10 × 10 grid) with each sampler in `labels`."""
    images, all_labels = load_digits()

    def batches(g: torch.Generator) -> tuple[Tensor, Tensor]:
        index = torch.randint(images.shape[0], (budget.batch,), generator=g)
        return images[index], all_labels[index]

    model, seconds = Trainer(method, settings, budget, steps, batches, seed).run()
    wanted = all_labels[split()["other"]]
    noise = torch.randn(wanted.shape[0], 64, generator=torch.Generator().manual_seed(seed + 7))
    grid_noise = torch.randn(100, 64, generator=torch.Generator().manual_seed(3))
    grid_labels = torch.arange(NUM_CLASSES).repeat_interleave(10)
    out: dict[str, Any] = {"s_per_step": seconds, "samples": {}, "grids": {}}
    for label in labels:
        g = torch.Generator().manual_seed(seed + 11)
        out["samples"][label] = SAMPLERS[method][label](model, noise, wanted, g).clamp(-1, 1)
        if grid and label in FIGURE_COLUMNS:
            out["grids"][label] = SAMPLERS[method][label](model, grid_noise, grid_labels, g).clamp(-1, 1)
    return out


def floors(classifier: Classifier) -> dict[str, Any]:
    images, labels = load_digits()
    parts = split()
    with torch.no_grad():
        test_accuracy = float(
            (classifier(images[parts["test"]]).argmax(1) == labels[parts["test"]]).float().mean()
        )
    return {
        "classifier_test_accuracy": test_accuracy,
        "other_half": score(classifier, images[parts["other"]]),
    }


# ------------------------------------------------------------------------------------------------
# Parts


def part_cost(config: dict[str, Any], rounds: int) -> dict[str, Any]:
    budget: Budget = config["budget"]
    images, labels = load_digits()

    def batches(g: torch.Generator) -> tuple[Tensor, Tensor]:
        index = torch.randint(images.shape[0], (budget.batch,), generator=g)
        return images[index], labels[index]

    def trainers() -> dict[str, Trainer]:
        return {m: Trainer(m, START_DIGITS[m], budget, 10**9, batches, 0) for m in METHODS}

    load = os.getloadavg()[0]
    costs = step_cost_ratios(trainers, rounds=rounds, steps_per_round=10)
    return {
        "budget": asdict(budget),
        "rounds": rounds,
        "steps_per_round": 10,
        "load_average": [load, os.getloadavg()[0]],
        "costs": costs,
        "equal_time_steps": equal_time_steps(budget.steps, costs),
    }


def part_select(
    config: dict[str, Any],
    cost: dict[str, Any],
    classifier: Classifier,
    jobs: int,
    progress: Any,
    cache: Path | None,
) -> dict[str, Any]:
    budget: Budget = config["budget"]
    steps = cost["equal_time_steps"]
    stages = SEARCH_DIGITS if config["search"] == "full" else SEARCH_DIGITS_REDUCED
    searches = {m: StagedSearch(START_DIGITS[m], stages[m][: config["search_stages"]]) for m in METHODS}

    def task(m: str, settings: dict[str, Any], seed: int) -> tuple[Any, ...]:
        return (m, settings, budget, steps[m], seed, (SELECTION_SAMPLER[m],), False)

    def frechet(m: str, result: dict[str, Any]) -> float:
        return score(classifier, result["samples"][SELECTION_SAMPLER[m]])["frechet"]

    run_search(searches, task, train_and_sample, frechet, config["selection_seeds"], jobs, progress, cache)
    return {
        "budget": asdict(budget),
        "seeds": list(config["selection_seeds"]),
        "steps": steps,
        "criterion": {m: f"Fréchet distance of '{SELECTION_SAMPLER[m]}'" for m in METHODS},
        "stages": {m: searches[m].stages for m in METHODS},
        "searches": {"digits": {m: {"best": searches[m].best, "log": searches[m].log} for m in METHODS}},
    }


def part_report(
    config: dict[str, Any],
    cost: dict[str, Any],
    selection: dict[str, Any],
    classifier: Classifier,
    jobs: int,
    progress: Any,
    cache: Path | None,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    budget: Budget = config["budget"]
    seeds = config["report_seeds"]
    budgets = {"equal steps": dict.fromkeys(METHODS, budget.steps), "equal time": cost["equal_time_steps"]}
    settings = {m: selection["searches"]["digits"][m]["best"] for m in METHODS}
    tasks, keys = [], []
    for m in METHODS:
        for steps in sorted({budgets["equal steps"][m], budgets["equal time"][m]}):
            for seed in seeds:
                grid = seed == seeds[0] and steps == budgets["equal time"][m]
                tasks.append((m, settings[m], budget, steps, seed, tuple(SAMPLERS[m]), grid))
                keys.append((m, steps, seed))
    progress.set_description("reported runs")
    results = run_tasks(train_and_sample, tasks, jobs, progress, cache)
    runs: dict[str, Any] = {}
    images, labels = load_digits()
    grids: dict[str, Tensor] = {"real": torch.cat([images[labels == k][:10] for k in range(NUM_CLASSES)])}
    for (m, steps, seed), result in zip(keys, results, strict=True):
        scores = {label: score(classifier, samples) for label, samples in result["samples"].items()}
        for name, per_method in budgets.items():
            if per_method[m] == steps:
                runs.setdefault(m, {}).setdefault(name, []).append(
                    {"seed": seed, "s_per_step": result["s_per_step"], **scores}
                )
        grids.update(result["grids"])
    result = {
        "budget": asdict(budget),
        "seeds": list(seeds),
        "steps": budgets,
        "settings": {"digits": settings},
        "floors": floors(classifier),
        "runs": runs,
    }
    return result, grids


# ------------------------------------------------------------------------------------------------
# Rendering


def plot_grids(grids: dict[str, Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in FIGURE_COLUMNS if n in grids]
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.9), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        # 10 rows (classes) × 10 columns of 8×8 images, one blank pixel between images
        padded = torch.nn.functional.pad(grids[name].reshape(NUM_CLASSES, 10, 8, 8), (0, 1, 0, 1), value=-1.0)
        ax.imshow(
            padded.permute(0, 2, 1, 3).reshape(90, 90).numpy(),
            cmap="gray_r",
            vmin=-1,
            vmax=1,
            interpolation="nearest",
        )
        ax.set(xticks=[], yticks=[])
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def metric_table(result: dict[str, Any], budget: str) -> str:
    rows = []
    for m in METHODS:
        for label in SAMPLERS[m]:
            runs = result["runs"][m][budget]
            rows.append(
                [label]
                + [
                    pm(report.values(runs, label, key), digits)
                    for key, digits in (("accuracy", 3), ("frechet", 2), ("precision", 3), ("recall", 3))
                ]
            )
    floor = result["floors"]["other_half"]
    rows.append(
        [
            "real digits (other half)",
            f"{floor['accuracy']:.3f}",
            f"{floor['frechet']:.2f}",
            f"{floor['precision']:.3f}",
            f"{floor['recall']:.3f}",
        ]
    )
    steps = ", ".join(f"{m} {n}" for m, n in result["steps"][budget].items())
    header = ["sample", "classifier accuracy", "Fréchet distance", "precision", "recall"]
    return f"**{budget}** (steps: {steps})\n\n" + markdown_table(header, rows)


def headline_table(result: dict[str, Any]) -> str:
    rows = []
    for rival in ("MeanFlow", "Shortcut"):
        cells = [rival]
        for budget in ("equal steps", "equal time"):
            sf = report.values(result["runs"]["SoFlow"][budget], "SoFlow 1 NFE", "frechet")
            other = report.values(result["runs"][rival][budget], f"{rival} 1 NFE", "frechet")
            verdict = report.compare(sf, other)
            cells += [verdict["ratio"], verdict["verdict"]]
        rows.append(cells)
    header = ["rival (1 NFE)", "ratio, equal steps", "verdict", "ratio, equal time", "verdict"]
    return (
        "**SoFlow 1 NFE against the rivals at 1 NFE**: Fréchet distance of SoFlow over the rival's, per seed, "
        "mean ± std over the seeds; below 1 SoFlow is closer to the real digits.\n\n"
        + markdown_table(header, rows)
    )


def render(cost: dict[str, Any], selection: dict[str, Any], result: dict[str, Any], out: Path) -> str:
    sections = [
        f"Commands: {report.commands_text({'step costs': cost, 'search': selection, 'reported runs': result})} (torch {result['torch']}, one torch thread per worker process). "
        f"Classifier accuracy on held-out real digits: {result['floors']['classifier_test_accuracy']:.3f}.",
        report.protocol_text(result["budget"], cost, result["seeds"], selection).replace(
            "energy distance of the one-step sample", "Fréchet distance of the one-step sample"
        ),
        "## Summary",
        headline_table(result),
        "## All samples",
        "Accuracy of the classifier on the requested class; Fréchet distance, precision and recall (k = 3) "
        "in its penultimate features, against the reference half of the real digits; the last row scores "
        "the other real half the same way (the floor).",
        metric_table(result, "equal time"),
        metric_table(result, "equal steps"),
        "## Selected settings",
        report.settings_table(result["settings"]),
        "## Step cost",
        report.cost_table(cost),
        f"![Class-conditional samples of seed {result['seeds'][0]} at equal time, one row per class](digits.png)",
    ]
    write_markdown(out / "digits.md", sections)
    return "\n\n".join(sections)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny budget, one seed")
    parts = ["cost", "select", "report", "render"]
    parser.add_argument("--part", nargs="+", default=parts, choices=parts)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    add_run_arguments(
        parser,
        steps=400,
        search_help="12 settings per method (SEARCH_DIGITS, the committed tables) or 8 (SEARCH_DIGITS_REDUCED)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(1)
    config = {**(QUICK if args.quick else FULL), "search": args.search}
    if args.search_stages:
        config = {**config, "search_stages": args.search_stages}
    if args.steps:
        config = {**config, "budget": replace(config["budget"], steps=args.steps)}
    out = args.out or (ROOT / "outputs" / "bench-quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/digits.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"command": command, "torch": torch.__version__, "cpu_count": os.cpu_count()}
    names = {"cost": "digits_cost", "select": "digits_selection", "report": "digits"}

    def load(part: str) -> dict[str, Any]:
        return json.loads((out / f"{names[part]}.json").read_text())

    def save(part: str, result: dict[str, Any]) -> None:
        (out / f"{names[part]}.json").write_text(json.dumps({**meta, **result}, indent=1) + "\n")

    classifier = (
        train_classifier(config["classifier_steps"]) if {"select", "report"} & set(args.part) else None
    )
    with tqdm(unit="run", dynamic_ncols=True) as progress:
        if "cost" in args.part:
            progress.set_description("step costs")
            save("cost", part_cost(config, args.rounds or (3 if args.quick else 30)))
        if "select" in args.part and classifier is not None:
            save("select", part_select(config, load("cost"), classifier, args.jobs, progress, args.cache))
        if "report" in args.part and classifier is not None:
            result, grids = part_report(
                config, load("cost"), load("select"), classifier, args.jobs, progress, args.cache
            )
            save("report", result)
            plot_grids(grids, out / "digits.png")
    if "render" in args.part:
        print(render(load("cost"), load("select"), load("report"), out))


if __name__ == "__main__":
    main()
