"""One-step quality on 2-D toys: SoFlow against tuned MeanFlow, shortcut models and flow matching.

The protocol (docs/benchmarks/toys.md; `benchmarks/common.py`): every method trains the same MLP with
the same data, batch, optimizer, learning-rate schedule and evaluation; the time-embedding scale, the
EMA and the learning rate are tuned for every method, with its own knobs, by the same staged search of
12 settings per method and toy (`common.SEARCH`; `--search reduced`: the 8 of `common.SEARCH_REDUCED`),
on seeds 100 and 101; the table reports seeds 0-2 with the selected settings, at equal steps and at equal
wall-clock time. The default budget is 600 steps, batch 256, width 128: the committed tables, which
take about 25 minutes of wall time from scratch on an idle 2-core machine (`--jobs 2`); `--steps` runs
a longer budget.

Parts (`--part`, default all, in this order; each reads what the previous ones wrote):

- `cost`: the per-step cost of every method relative to SoFlow's, side by side -> `toys_cost.json`;
  the equal-time budget converts SoFlow's steps into each method's.
- `select`: the search -> `toys_selection.json`.
- `report`: the reported runs -> `toys.json` and `toys.png` (samples of seed 0, equal time).
- `render`: `toys.md` from the JSON files (measures nothing).

Usage:

    python benchmarks/toys.py --cache outputs/toys-cache   # the committed tables
    python benchmarks/toys.py --part render    # rewrite toys.md from the committed JSON
    python benchmarks/toys.py --quick          # CI smoke run: tiny budget, one toy (into outputs/)
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
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.common import (  # noqa: E402
    METHODS,
    SAMPLERS,
    SEARCH,
    SEARCH_REDUCED,
    SELECTION_SAMPLER,
    START,
    Budget,
    StagedSearch,
    Trainer,
    add_run_arguments,
    equal_time_steps,
    markdown_table,
    mean_std,
    pm,
    run_search,
    run_tasks,
    step_cost_ratios,
    write_markdown,
)
from soflow_toolkit.toy import (  # noqa: E402
    NUM_MODES,
    assign_modes,
    get_toy_dataset,
    precision_recall,
    sliced_energy_distance,
    sliced_wasserstein,
    support_scores,
)

TOYS = ("checkerboard", "eight_gaussians", "two_moons", "spiral", "ring")
REPORTED = ("checkerboard", "eight_gaussians")
"""The toys of the committed tables (`--toys` runs the others): the checkerboard, on which even flow
matching needs many steps for sharp samples, and eight well-separated Gaussians."""
FULL = {
    "budget": Budget(steps=600, batch=256, hidden=128),
    "eval_points": 10_000,
    "toys": REPORTED,
    "selection_seeds": (100, 101),
    "report_seeds": (0, 1, 2),
    "search": SEARCH,
    "search_stages": None,  # all
}
QUICK = {
    "budget": Budget(steps=40, batch=64, hidden=32, depth=2),
    "eval_points": 1000,
    "toys": TOYS[:1],
    "selection_seeds": (100,),
    "report_seeds": (0,),
    "search": SEARCH_REDUCED,
    "search_stages": 1,  # the first stage only: the code path, not the search
}
FIGURE_POINTS = 5000
SHARPNESS_POINTS = 5000
"""Precision and recall use the first 5000 points of each sample (k-NN balls cost O(n^2))."""
FIGURE_COLUMNS = (
    "data",
    "FM Euler 100 NFE",
    "FM midpoint 4 NFE",
    "FM Euler 2 NFE",
    "SoFlow 1 NFE",
    "SoFlow 2 NFE",
    "MeanFlow 1 NFE",
    "Shortcut 1 NFE",
)


def batches(toy: str, batch: int) -> Any:
    dataset = get_toy_dataset(toy)
    return lambda g: (dataset(batch, generator=g), None)


def eval_data(toy: str, seed: int, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Fresh reference data, a second independent data sample (the noise floor) and the sampling noise."""
    dataset = get_toy_dataset(toy)
    g = torch.Generator().manual_seed(seed + 12_345)
    return dataset(n, generator=g), dataset(n, generator=g), torch.randn(n, 2, generator=g)


def metrics(toy: str, points: Tensor, reference: Tensor, sharpness: bool = True) -> dict[str, float]:
    """Energy distance, sliced W2, on-support share, modes covered; precision and recall (k = 3) too
    with `sharpness` (on the first `SHARPNESS_POINTS` points; the search scores energy alone)."""
    on_support, coverage = support_scores(assign_modes(toy, points), NUM_MODES[toy])
    out = {
        "energy": float(sliced_energy_distance(points, reference, num_projections=64)),
        "sw2": float(sliced_wasserstein(points, reference, num_projections=64)),
        "on_support": float(on_support),
        "coverage": float(coverage),
    }
    if sharpness:
        n = SHARPNESS_POINTS
        precision, recall = precision_recall(reference[:n], points[:n], k=3)
        out.update(precision=float(precision), recall=float(recall))
    return out


def train_and_evaluate(
    toy: str,
    method: str,
    settings: dict[str, Any],
    budget: Budget,
    steps: int,
    seed: int,
    labels: tuple[str, ...],
    eval_points: int,
    keep_points: bool,
    sharpness: bool = True,
) -> dict[str, Any]:
    """Train one method on one toy and seed; evaluate the samplers in `labels`."""
    model, seconds = Trainer(method, settings, budget, steps, batches(toy, budget.batch), seed).run()
    reference, _, noise = eval_data(toy, seed, eval_points)
    out: dict[str, Any] = {"s_per_step": seconds, "metrics": {}, "points": {}}
    for label in labels:
        points = SAMPLERS[method][label](model, noise, None, torch.Generator().manual_seed(seed))
        out["metrics"][label] = metrics(toy, points, reference, sharpness)
        if keep_points and label in FIGURE_COLUMNS:
            out["points"][label] = points[:FIGURE_POINTS]
    return out


def floors(toys: tuple[str, ...], eval_points: int, draws: int) -> dict[str, dict[str, list[float]]]:
    """Every metric between two independent data samples of the evaluation size: the noise floor."""
    out: dict[str, dict[str, list[float]]] = {}
    for toy in toys:
        values = []
        for draw in range(draws):
            reference, second, _ = eval_data(toy, 777 + draw, eval_points)
            values.append(metrics(toy, second, reference))
        out[toy] = {key: [v[key] for v in values] for key in values[0]}
    return out


# ------------------------------------------------------------------------------------------------
# Parts


def part_cost(config: dict[str, Any], rounds: int) -> dict[str, Any]:
    budget: Budget = config["budget"]
    toy = config["toys"][0]

    def trainers() -> dict[str, Trainer]:
        return {m: Trainer(m, START[m], budget, 10**9, batches(toy, budget.batch), 0) for m in METHODS}

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
    config: dict[str, Any], cost: dict[str, Any], jobs: int, progress: Any, cache: Path | None
) -> dict[str, Any]:
    budget: Budget = config["budget"]
    steps = cost["equal_time_steps"]
    searches = {
        (toy, m): StagedSearch(START[m], config["search"][m][: config["search_stages"]])
        for toy in config["toys"]
        for m in METHODS
    }

    def task(key: tuple[str, str], settings: dict[str, Any], seed: int) -> tuple[Any, ...]:
        toy, m = key
        return (
            toy,
            m,
            settings,
            budget,
            steps[m],
            seed,
            (SELECTION_SAMPLER[m],),
            config["eval_points"],
            False,
            False,
        )

    def score(key: tuple[str, str], result: dict[str, Any]) -> float:
        return float(result["metrics"][SELECTION_SAMPLER[key[1]]]["energy"])

    run_search(searches, task, train_and_evaluate, score, config["selection_seeds"], jobs, progress, cache)
    return {
        "budget": asdict(budget),
        "seeds": list(config["selection_seeds"]),
        "steps": steps,
        "criterion": {m: f"energy distance of '{SELECTION_SAMPLER[m]}'" for m in METHODS},
        "stages": {m: searches[(config["toys"][0], m)].stages for m in METHODS},
        "searches": {
            toy: {m: {"best": searches[(toy, m)].best, "log": searches[(toy, m)].log} for m in METHODS}
            for toy in config["toys"]
        },
    }


def part_report(
    config: dict[str, Any],
    cost: dict[str, Any],
    selection: dict[str, Any],
    jobs: int,
    progress: Any,
    cache: Path | None,
) -> tuple[dict[str, Any], dict[str, dict[str, Tensor]]]:
    """The reported runs; returns the results and the samples of the first seed at equal time."""
    budget: Budget = config["budget"]
    seeds = config["report_seeds"]
    budgets = {"equal steps": dict.fromkeys(METHODS, budget.steps), "equal time": cost["equal_time_steps"]}
    tasks, keys = [], []
    for toy in config["toys"]:
        for m in METHODS:
            settings = selection["searches"][toy][m]["best"]
            for steps in sorted({budgets["equal steps"][m], budgets["equal time"][m]}):
                for seed in seeds:
                    keep = seed == seeds[0] and steps == budgets["equal time"][m]
                    labels = tuple(SAMPLERS[m])
                    tasks.append((toy, m, settings, budget, steps, seed, labels, config["eval_points"], keep))
                    keys.append((toy, m, steps, seed))
    progress.set_description("reported runs")
    results = run_tasks(train_and_evaluate, tasks, jobs, progress, cache)
    runs: dict[str, Any] = {}
    figure: dict[str, dict[str, Tensor]] = {}
    for (toy, m, steps, seed), result in zip(keys, results, strict=True):
        for name, per_method in budgets.items():
            if per_method[m] == steps:
                entry = runs.setdefault(toy, {}).setdefault(m, {}).setdefault(name, [])
                entry.append({"seed": seed, "s_per_step": result["s_per_step"], **result["metrics"]})
        figure.setdefault(toy, {}).update(result["points"])
    for toy in config["toys"]:
        figure[toy]["data"] = eval_data(toy, seeds[0], config["eval_points"])[0][:FIGURE_POINTS]
    result = {
        "budget": asdict(budget),
        "seeds": list(seeds),
        "eval_points": config["eval_points"],
        "steps": budgets,
        "settings": {
            toy: {m: selection["searches"][toy][m]["best"] for m in METHODS} for toy in config["toys"]
        },
        "floors": floors(config["toys"], config["eval_points"], draws=10),
        "runs": runs,
    }
    return result, figure


# ------------------------------------------------------------------------------------------------
# Rendering

RIVALS = ("MeanFlow", "Shortcut")
METRIC_NAMES = {
    "energy": "energy distance × 1000",
    "sw2": "sliced Wasserstein-2 × 1000",
    "precision": "precision",
    "recall": "recall",
    "on_support": "share on the support",
    "coverage": "modes covered",
}


def _cell(values: list[float], key: str) -> str:
    if key in ("energy", "sw2"):
        return pm(values, 2, scale=1000.0)
    return pm(values, 3)


def metric_table(result: dict[str, Any], key: str, budget: str) -> str:
    """One metric at one budget: a row per sampler, a column per toy, the noise floor last."""
    runs, toys = result["runs"], list(result["runs"])
    rows = []
    for m in METHODS:
        for label in SAMPLERS[m]:
            rows.append([label] + [_cell(report.values(runs[t][m][budget], label, key), key) for t in toys])
    rows.append(["data vs data (floor)"] + [_cell(result["floors"][t][key], key) for t in toys])
    steps = ", ".join(f"{m} {n}" for m, n in result["steps"][budget].items())
    return f"**{METRIC_NAMES[key]}, {budget}** (steps: {steps})\n\n" + markdown_table(["sample", *toys], rows)


def headline_table(result: dict[str, Any]) -> str:
    """SoFlow 1 NFE against each rival at 1 NFE, per toy and budget: ratios of energy distances."""
    rows = []
    for toy, per in result["runs"].items():
        spread = mean_std(result["floors"][toy]["energy"])[1]
        for rival in RIVALS:
            cells = [toy, rival]
            for budget in ("equal steps", "equal time"):
                sf = report.values(per["SoFlow"][budget], "SoFlow 1 NFE", "energy")
                other = report.values(per[rival][budget], f"{rival} 1 NFE", "energy")
                verdict = report.compare(sf, other, spread)
                cells += [verdict["ratio"], verdict["verdict"]]
            rows.append(cells)
    header = ["toy", "rival (1 NFE)", "ratio, equal steps", "verdict", "ratio, equal time", "verdict"]
    return (
        "**SoFlow 1 NFE against the rivals at 1 NFE**: energy distance of SoFlow over the rival's, per seed "
        "(the two share each seed's evaluation data and noise), mean ± std over the seeds; below 1 SoFlow is "
        "closer to the data. A rival within twice the floor's spread gets no ratio.\n\n"
        + markdown_table(header, rows)
    )


def render(cost: dict[str, Any], selection: dict[str, Any], result: dict[str, Any], out: Path) -> str:
    sections = [
        f"Commands: {report.commands_text({'step costs': cost, 'search': selection, 'reported runs': result})} (torch {result['torch']}, one torch thread per worker process, "
        f"{result['eval_points']} evaluation points per sample).",
        report.protocol_text(result["budget"], cost, result["seeds"], selection),
        "## Summary",
        headline_table(result),
        "## Energy distance",
        "An unbiased estimate: two samples of one distribution give values around 0, negative about half "
        "of the time. The floor row is that spread (10 pairs of independent data samples); values within "
        "about twice its spread are as good as this sample size can tell.",
        metric_table(result, "energy", "equal time"),
        metric_table(result, "energy", "equal steps"),
        "## Sharpness: precision, recall, support",
        "Precision and recall with k-nearest-neighbour manifolds (k = 3, Kynkäänniemi et al. 2019); the "
        "share of samples on the known support (checkerboard: the black squares; Gaussians: within 3 std of "
        "a centre; moons and spiral: within 3 noise std of the curve) and the share of modes holding at "
        "least a quarter of their equal share. The floor rows score fresh data the same way.",
        *(
            metric_table(result, key, "equal time")
            for key in ("precision", "recall", "on_support", "coverage")
        ),
        metric_table(result, "sw2", "equal time"),
        "## Selected settings",
        report.settings_table(result["settings"]),
        "## Step cost",
        report.cost_table(cost),
        f"![Samples of seed {result['seeds'][0]} at equal time](toys.png)",
    ]
    write_markdown(out / "toys.md", sections)
    return "\n\n".join(sections)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny budget, one toy, one seed")
    parts = ["cost", "select", "report", "render"]
    parser.add_argument("--part", nargs="+", default=parts, choices=parts)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--toys", nargs="+", default=None, choices=TOYS, help=f"default: {' '.join(REPORTED)}"
    )
    add_run_arguments(
        parser,
        steps=600,
        search_help="12 settings per method (SEARCH, the committed tables) or 8 (SEARCH_REDUCED)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(1)
    config = QUICK if args.quick else FULL
    if args.toys:
        config = {**config, "toys": tuple(args.toys)}
    if args.steps:
        config = {**config, "budget": replace(config["budget"], steps=args.steps)}
    config = {**config, "search": SEARCH if args.search == "full" else SEARCH_REDUCED}
    if args.search_stages:
        config = {**config, "search_stages": args.search_stages}
    out = args.out or (ROOT / "outputs" / "bench-quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/toys.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"command": command, "torch": torch.__version__, "cpu_count": os.cpu_count()}
    names = {"cost": "toys_cost", "select": "toys_selection", "report": "toys"}

    def load(part: str) -> dict[str, Any]:
        return json.loads((out / f"{names[part]}.json").read_text())

    def save(part: str, result: dict[str, Any]) -> None:
        (out / f"{names[part]}.json").write_text(json.dumps({**meta, **result}, indent=1) + "\n")

    with tqdm(unit="run", dynamic_ncols=True) as progress:
        if "cost" in args.part:
            progress.set_description("step costs")
            save("cost", part_cost(config, args.rounds or (3 if args.quick else 30)))
        if "select" in args.part:
            save("select", part_select(config, load("cost"), args.jobs, progress, args.cache))
        if "report" in args.part:
            result, figure = part_report(
                config, load("cost"), load("select"), args.jobs, progress, args.cache
            )
            save("report", result)
            report.plot_panels(figure, FIGURE_COLUMNS, out / "toys.png")
    if "render" in args.part:
        print(render(load("cost"), load("select"), load("report"), out))


if __name__ == "__main__":
    main()
