"""The budget of `make demo`: SoFlow's one-step share on the checkerboard's support against width, batch and steps.

`make demo` must show one-step samples that look like the data (at least 90 % of SoFlow's 1-NFE
samples on the black squares of the checkerboard) within two minutes on two CPU cores, where it trains
SoFlow and flow matching side by side, one process and one torch thread each. This script trains
SoFlow with the demo's own training function (`examples/demo.py`) over a grid of widths, batch sizes
and step counts, and reports for each the share of 10,000 one-step samples on the support, the modes
covered, the energy distance, and the CPU seconds of the training (on an idle core, about its wall
time; the shared machine's wall time is given too). Flow matching trains at the demo's default
budget as the reference.

Usage:

    python benchmarks/demo_budget.py            # the grid (about half an hour of CPU time)
    python benchmarks/demo_budget.py --cells 128,512,7000 --seeds 0 1 2   # the demo's default, 3 seeds
    python benchmarks/demo_budget.py --part render
    python benchmarks/demo_budget.py --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import markdown_table, pm, run_tasks, write_markdown  # noqa: E402
from soflow_toolkit import SolutionFlowWrapper, euler_sample, sample  # noqa: E402
from soflow_toolkit.toy import MLPBackbone, assign_modes, checkerboard, sliced_energy_distance, support_scores  # noqa: E402

GRID = [  # (hidden, batch, steps)
    (128, 256, 4000),
    (128, 512, 6000),
    (256, 256, 6000),
    (256, 512, 4000),
    (256, 512, 6000),
    (256, 512, 8000),
    (384, 512, 6000),
]
QUICK_GRID = [(16, 32, 20), (16, 64, 20)]
DEMO_DEFAULT = (128, 512, 7000)  # examples/demo.py: --hidden, --batch-size, --steps


def load_demo() -> Any:
    spec = importlib.util.spec_from_file_location("soflow_demo", ROOT / "examples" / "demo.py")
    if spec is None or spec.loader is None:
        raise ImportError("cannot load examples/demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(kind: str, hidden: int, batch: int, steps: int, seed: int, eval_points: int) -> dict[str, Any]:
    demo = load_demo()
    options = {
        "dataset": "checkerboard",
        "steps": steps,
        "batch_size": batch,
        "hidden": hidden,
        "seed": seed,
        "threads": 1,
    }
    start_wall = os.times().elapsed
    state, wall, cpu = demo.train(kind, options, 0)
    model = SolutionFlowWrapper(MLPBackbone(2, hidden=hidden, depth=demo.DEPTH, time_scale=demo.TIME_SCALE))
    model.load_state_dict(state)
    model.eval()
    g = torch.Generator().manual_seed(seed + 3)
    reference, noise = checkerboard(eval_points, generator=g), torch.randn(eval_points, 2, generator=g)
    points = sample(model, noise) if kind == "soflow" else euler_sample(model, noise, steps=100)
    on_support, coverage = support_scores(assign_modes("checkerboard", points), 8)
    return {
        "kind": kind,
        "hidden": hidden,
        "batch": batch,
        "steps": steps,
        "seed": seed,
        "on_support": float(on_support),
        "modes_covered": float(coverage),
        "energy": float(sliced_energy_distance(points, reference)),
        "cpu_s": cpu,
        "wall_s": wall,
        "elapsed_s": os.times().elapsed - start_wall,
    }


def _groups(runs: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """The runs of each (kind, hidden, batch, steps), in the order measured."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["kind"], r["hidden"], r["batch"], r["steps"]), []).append(r)
    return groups


def render(result: dict[str, Any], out: Path) -> str:
    rows = []
    for (kind, hidden, batch, steps), runs in _groups(result["runs"]).items():
        label = "SoFlow 1 NFE" if kind == "soflow" else "flow matching, 100 Euler steps"
        default = " (demo default)" if (hidden, batch, steps) == tuple(result["demo_default"]) else ""
        rows.append(
            [
                label + default,
                str(hidden),
                str(batch),
                str(steps),
                ", ".join(str(r["seed"]) for r in runs),
                pm([100 * r["on_support"] for r in runs], 2) + " %",
                f"{100 * min(r['on_support'] for r in runs):.2f} %",
                pm([100 * r["modes_covered"] for r in runs], 0) + " %",
                pm([1000 * r["energy"] for r in runs], 2),
                pm([r["cpu_s"] for r in runs], 0),
            ]
        )
    header = [
        "model",
        "hidden",
        "batch",
        "steps",
        "seeds",
        "on the support",
        "lowest seed",
        "modes",
        "ED × 1000",
        "CPU s",
    ]
    commands = "; ".join(f"`{c}`" for c in result["commands"])
    loads = ", ".join(f"{a:.1f} → {b:.1f}" for a, b in result["load_averages"])
    sections = [
        f"Commands: {commands} (torch {result['torch']}, one torch thread per training; "
        f"{result['eval_points']} one-step samples per model; 1-minute load average at the start and end "
        f"of each command: {loads}). Values are mean ± std over the seeds. The demo trains SoFlow and "
        "flow matching in parallel, one core each, so its training wall time on an idle two-core machine "
        "is about the larger of the two CPU times. Data: 100 % on the support.",
        markdown_table(header, rows),
    ]
    write_markdown(out / "demo_budget.md", sections)
    return "\n\n".join(sections)


def parse_cell(text: str) -> tuple[int, int, int]:
    """`"HIDDEN,BATCH,STEPS"` as three positive integers."""
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"a cell is HIDDEN,BATCH,STEPS (three positive integers); got {text!r}")
    hidden, batch, steps = (int(p) for p in parts)
    return hidden, batch, steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: two tiny settings")
    parser.add_argument("--part", nargs="+", default=["measure", "render"], choices=["measure", "render"])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--cells",
        nargs="+",
        default=None,
        metavar="HIDDEN,BATCH,STEPS",
        help="the settings to measure instead of the grid, e.g. 256,512,6000",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the flow-matching run at the demo's default"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds of every cell")
    parser.add_argument(
        "--append",
        action="store_true",
        help="add these runs to the existing demo_budget.json instead of replacing it",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (1: the CPU times are cleanest)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or (ROOT / "outputs" / "bench-quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo_budget.json"
    if "measure" in args.part:
        from tqdm import tqdm

        grid = QUICK_GRID if args.quick else GRID
        if args.cells:
            grid = [parse_cell(cell) for cell in args.cells]
        default = grid[-1] if args.quick else DEMO_DEFAULT
        eval_points = 1000 if args.quick else 10_000
        tasks = [("soflow", *cell, seed, eval_points) for cell in grid for seed in args.seeds]
        if not args.no_reference:
            tasks += [("fm", *default, seed, eval_points) for seed in args.seeds]
        load = os.getloadavg()[0]
        with tqdm(total=len(tasks), unit="run") as progress:
            runs = run_tasks(run, tasks, args.jobs, progress)
        command = " ".join(["python benchmarks/demo_budget.py", *(sys.argv[1:] if argv is None else argv)])
        result = {
            "commands": [],
            "torch": torch.__version__,
            "demo_default": list(default),
            "eval_points": eval_points,
            "load_averages": [],
            "runs": [],
        }
        if args.append and path.exists():
            result = json.loads(path.read_text())
        result["commands"].append(command)
        result["load_averages"].append([load, os.getloadavg()[0]])
        result["runs"] += runs
        path.write_text(json.dumps(result, indent=1) + "\n")
    if "render" in args.part:
        print(render(json.loads(path.read_text()), out))


if __name__ == "__main__":
    main()
