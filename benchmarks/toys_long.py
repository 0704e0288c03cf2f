"""Every method on the toys at a longer budget, and MeanFlow at 1850 steps against its earlier figures.

`toys.py` compares every method at 600 steps. This study trains them longer with the settings that
`toys.py` selected (`toys_selection.json`) and its measured per-step costs (`toys_cost.json`), after
searching the learning rate again at this budget for every method (`LR_STAGE`, scored on seeds 100
and 101: the best rate depends on the run's length):

- SoFlow for `--steps` steps (4000), and flow matching, MeanFlow and shortcut models for the steps
  that cost the same time;
- MeanFlow for 1850 steps, the budget of an earlier MeanFlow run with time-embedding scale 1 and EMA
  0.995 (no warm-up) that reached energy distance × 1000 of 9.5 on the checkerboard and 11.0 on the
  eight Gaussians (2 seeds); the study checks MeanFlow against 10 and 12 (`TARGETS`);
- MeanFlow for 1850 steps at that earlier run's settings (scale 1, EMA 0.995, the rest at MeanFlow's
  start), where they differ from the selected ones.

Every run uses the protocol of `toys.py` (same backbone, data, batch, Adam with cosine decay, EMA with
warm-up, evaluation data and noise) on the reported seeds 0-2.

Usage:

    python benchmarks/toys_long.py                    # the committed table (about 45 CPU minutes)
    python benchmarks/toys_long.py --part render      # rewrite toys_long.md from the JSON
    python benchmarks/toys_long.py --quick            # CI smoke run (into outputs/bench-quick)
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import report, toys  # noqa: E402
from benchmarks.common import (  # noqa: E402
    METHODS,
    SAMPLERS,
    SELECTION_SAMPLER,
    START,
    StagedSearch,
    markdown_table,
    pm,
    run_search,
    run_tasks,
    seed_ratios,
    settings_text,
    write_markdown,
)

EARLIER_STEPS = 1850
EARLIER_SETTINGS = {"time_scale": 1.0, "ema": 0.995}
"""The earlier MeanFlow run: its steps and the two settings it changed from MeanFlow's start."""
TARGETS = {"checkerboard": 10.0, "eight_gaussians": 12.0}
"""Energy distance × 1000 that MeanFlow at 1850 steps should reach on the mean over the seeds (the earlier
run's figures, rounded up)."""
FULL = {
    "steps": 4000,
    "seeds": (0, 1, 2),
    "toys": toys.REPORTED,
    "eval_points": 10_000,
    "earlier": EARLIER_STEPS,
    "selection_seeds": (100, 101),
}
QUICK = {
    "steps": 30,
    "seeds": (0,),
    "toys": toys.REPORTED[:1],
    "eval_points": 1000,
    "earlier": 20,
    "selection_seeds": (100,),
}
LR_STAGE = {"lr": [1e-3, 3e-3, 1e-2]}
"""The setting searched again at this budget, the same for every method: the learning rate, whose best
value depends on the run's length; every other setting stays as `toys.py` selected it."""
RIVALS = ("MeanFlow", "Shortcut")


def equal_time_steps(config: dict[str, Any], cost: dict[str, Any]) -> dict[str, int]:
    """Every method's steps in the time of SoFlow's `config["steps"]`, from the measured per-step costs."""
    soflow = cost["costs"]["SoFlow"]["ratio"]
    return {m: max(1, round(config["steps"] * soflow / cost["costs"][m]["ratio"])) for m in METHODS}


def select_lr(
    config: dict[str, Any],
    cost: dict[str, Any],
    selection: dict[str, Any],
    budget: Any,
    jobs: int,
    progress: Any,
    cache: Path | None,
) -> dict[str, Any]:
    """`LR_STAGE` for every method at its equal-time steps, scored as in `toys.py` (the one-step energy
    distance; flow matching: of its 100-step sample), mean over the selection seeds; returns
    `{toy: {method: {"best", "log"}}}`."""
    steps = equal_time_steps(config, cost)
    searches = {
        (toy, m): StagedSearch(selection["searches"][toy][m]["best"], [LR_STAGE])
        for toy in config["toys"]
        for m in METHODS
    }

    def task(key: tuple[str, str], settings: dict[str, Any], seed: int) -> tuple[Any, ...]:
        toy, m = key
        labels = (SELECTION_SAMPLER[m],)
        return (toy, m, settings, budget, steps[m], seed, labels, config["eval_points"], False, False)

    def score(key: tuple[str, str], result: dict[str, Any]) -> float:
        return float(result["metrics"][SELECTION_SAMPLER[key[1]]]["energy"])

    run_search(
        searches, task, toys.train_and_evaluate, score, config["selection_seeds"], jobs, progress, cache
    )
    return {
        toy: {m: {"best": searches[(toy, m)].best, "log": searches[(toy, m)].log} for m in METHODS}
        for toy in config["toys"]
    }


def plan(config: dict[str, Any], cost: dict[str, Any], searches: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs: one entry per (toy, name) with method, settings and steps; `searches` as `select_lr`
    returns them."""
    equal_time = equal_time_steps(config, cost)
    runs = []
    for toy in config["toys"]:
        chosen = searches[toy]
        earlier = {**START["MeanFlow"], **EARLIER_SETTINGS}
        entries = [
            (
                m,
                f"{m}, selected" + ("" if m == "SoFlow" else ", equal time"),
                chosen[m]["best"],
                equal_time[m],
            )
            for m in METHODS
        ]
        entries.append(("MeanFlow", "MeanFlow, selected", chosen["MeanFlow"]["best"], config["earlier"]))
        if earlier != chosen["MeanFlow"]["best"]:
            entries.append(("MeanFlow", "MeanFlow, earlier run's settings", earlier, config["earlier"]))
        for method, name, settings, steps in entries:
            runs.append({"toy": toy, "method": method, "name": name, "settings": settings, "steps": steps})
    return runs


def measure(
    config: dict[str, Any],
    runs: list[dict[str, Any]],
    budget: Any,
    jobs: int,
    progress: Any,
    cache: Path | None,
) -> dict[str, dict[str, Any]]:
    """Train and evaluate every run on every seed (results into `runs`); returns the figure's panels:
    per toy, the data and the samples of the first seed of the equal-time runs."""
    first = config["seeds"][0]
    tasks = []
    for run in runs:
        labels = tuple(SAMPLERS[run["method"]])
        keep = run["steps"] != config["earlier"]  # the equal-time runs
        for seed in config["seeds"]:
            args = (run["toy"], run["method"], run["settings"], budget, run["steps"], seed, labels)
            tasks.append((*args, config["eval_points"], keep and seed == first))
    results = iter(run_tasks(toys.train_and_evaluate, tasks, jobs, progress, cache))
    figure: dict[str, dict[str, Any]] = {
        toy: {"data": toys.eval_data(toy, first, config["eval_points"])[0][: toys.FIGURE_POINTS]}
        for toy in config["toys"]
    }
    for run in runs:
        run["seeds"] = []
        for seed in config["seeds"]:
            result = next(results)
            run["seeds"].append({"seed": seed, "s_per_step": result["s_per_step"], **result["metrics"]})
            figure[run["toy"]].update(result["points"])
    return figure


def values(run: dict[str, Any], label: str, key: str) -> list[float]:
    return [float(s[label][key]) for s in run["seeds"]]


def render(result: dict[str, Any], out: Path) -> str:
    rows = []
    for run in result["runs"]:
        for label in SAMPLERS[run["method"]]:
            target = TARGETS.get(run["toy"]) if run["steps"] == result["earlier_steps"] else None
            energy = [1000 * v for v in values(run, label, "energy")]
            verdict = ""
            if target is not None and "1 NFE" in label:
                met = sum(energy) / len(energy) <= target
                verdict = f"{'met' if met else 'not met'} (mean ≤ {target:g})"
            rows.append(
                [
                    run["toy"],
                    run["name"],
                    label,
                    str(run["steps"]),
                    pm(energy, 2),
                    pm(values(run, label, "on_support"), 3),
                    pm(values(run, label, "precision"), 3),
                    pm(values(run, label, "recall"), 3),
                    verdict,
                ]
            )
    header = [
        "toy",
        "run",
        "sample",
        "steps",
        "ED × 1000",
        "on the support",
        "precision",
        "recall",
        "MeanFlow target",
    ]
    ratio_rows = []
    for toy in result["toys"]:
        by_name = {r["name"]: r for r in result["runs"] if r["toy"] == toy}
        soflow = values(by_name["SoFlow, selected"], "SoFlow 1 NFE", "energy")
        for name in (
            "MeanFlow, selected, equal time",
            "MeanFlow, selected",
            "Shortcut, selected, equal time",
        ):
            rival = by_name[name]
            ratios = seed_ratios(soflow, values(rival, SELECTION_SAMPLER[rival["method"]], "energy"))
            lead = "SoFlow leads" if max(ratios) < 1 else ("rival leads" if min(ratios) > 1 else "mixed")
            ratio_rows.append([toy, f"{name} ({rival['steps']} steps)", pm(ratios, 2), lead])
    lr_header = [f"lr {v:g}" for v in LR_STAGE["lr"]]
    lr_rows = []
    for toy, per_method in result["lr_search"].items():
        for m, search in per_method.items():
            scores = {entry["settings"]["lr"]: entry["score"] for entry in search["log"]}
            best = search["best"]["lr"]
            cells = [
                (f"**{1000 * scores[v]:.2f}**" if v == best else f"{1000 * scores[v]:.2f}")
                for v in LR_STAGE["lr"]
            ]
            lr_rows.append([toy, m, *cells])
    settings_rows = [
        [r["toy"], r["name"], settings_text(r["settings"])]
        for r in result["runs"]
        if r["name"] != "MeanFlow, selected"
    ]
    steps_text = ", ".join(
        f"{m} {n} ({result['cost_ratios'][m]:.2f}×)" for m, n in result["equal_time_steps"].items()
    )
    sections = [
        f"Command: `{result['command']}` (torch {result['torch']}, one torch thread per worker process, "
        f"{result['eval_points']} evaluation points per sample, seeds {', '.join(map(str, result['seeds']))}). "
        f"Protocol of `toys.py` (hidden {result['budget']['hidden']}, depth {result['budget']['depth']}, batch "
        f"{result['budget']['batch']}, Adam with cosine decay, EMA with warm-up). Steps at equal time, from the "
        f"per-step costs relative to SoFlow's (`toys_cost.json`): {steps_text}.",
        "**SoFlow 1 NFE over each rival at 1 NFE**, energy distance per seed (shared evaluation data and "
        f"noise), SoFlow at {result['steps']} steps:\n\n"
        + markdown_table(["toy", "rival run", "ratio", "verdict"], ratio_rows),
        "**Every run** (mean ± std over the seeds; the MeanFlow target applies to the 1-NFE rows at "
        f"{result['earlier_steps']} steps):\n\n" + markdown_table(header, rows),
        "**Learning rate at this budget**: every other setting as `toys.py` selected it (at 600 steps), the "
        f"learning rate searched again over {', '.join(f'{v:g}' for v in LR_STAGE['lr'])} for every method "
        "at its equal-time steps, each scored by the energy distance × 1000 of its one-step sample (flow "
        "matching: of its 100-step sample), mean over the selection seeds "
        f"{', '.join(map(str, result['selection_seeds']))}:\n\n"
        + markdown_table(["toy", "method", *lr_header], lr_rows),
        "**Settings**:\n\n" + markdown_table(["toy", "run", "settings"], settings_rows),
        f"![Samples of seed {result['seeds'][0]} at equal time](toys_long.png)",
    ]
    write_markdown(out / "toys_long.md", sections)
    return "\n\n".join(sections)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny budget, one toy, one seed")
    parser.add_argument("--part", nargs="+", default=["measure", "render"], choices=["measure", "render"])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--steps", type=int, default=None, help="SoFlow's training steps (4000)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--cache", type=Path, default=None, help="keep every run's result here (resume)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = QUICK if args.quick else FULL
    if args.steps:
        config = {**config, "steps": args.steps}
    out = args.out or (ROOT / "outputs" / "bench-quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "toys_long.json"
    if "measure" in args.part:
        cost = json.loads((out / "toys_cost.json").read_text())
        selection = json.loads((out / "toys_selection.json").read_text())
        budget = toys.QUICK["budget"] if args.quick else replace(toys.FULL["budget"])
        with tqdm(unit="run", dynamic_ncols=True) as progress:
            searches = select_lr(config, cost, selection, budget, args.jobs, progress, args.cache)
            runs = plan(config, cost, searches)
            progress.set_description("reported runs")
            figure = measure(config, runs, budget, args.jobs, progress, args.cache)
        report.plot_panels(figure, toys.FIGURE_COLUMNS, out / "toys_long.png")
        command = " ".join(["python benchmarks/toys_long.py", *(sys.argv[1:] if argv is None else argv)])
        result = {
            "command": command,
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "budget": asdict(budget),
            "steps": config["steps"],
            "earlier_steps": config["earlier"],
            "equal_time_steps": equal_time_steps(config, cost),
            "cost_ratios": {m: cost["costs"][m]["ratio"] / cost["costs"]["SoFlow"]["ratio"] for m in METHODS},
            "targets": TARGETS,
            "seeds": list(config["seeds"]),
            "selection_seeds": list(config["selection_seeds"]),
            "lr_search": searches,
            "toys": list(config["toys"]),
            "eval_points": config["eval_points"],
            "runs": runs,
        }
        path.write_text(json.dumps(result, indent=1) + "\n")
    if "render" in args.part:
        print(render(json.loads(path.read_text()), out))


if __name__ == "__main__":
    main()
