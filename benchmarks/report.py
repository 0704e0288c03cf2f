"""Reporting shared by the quality benchmarks: the protocol paragraph, verdicts, settings and cost tables.

Nothing here measures anything: every function turns the JSON that a benchmark wrote into Markdown
(or a figure), so a table can be rewritten from the committed results with `--part render`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    METHODS,
    REFERENCE,
    markdown_table,
    mean_std,
    pm,
    seed_ratios,
    settings_text,
)


def compare(
    soflow: Sequence[float], rival: Sequence[float], floor_std: float | None = None
) -> dict[str, Any]:
    """SoFlow's per-seed values of a lower-is-better metric against a rival's, seed by seed.

    With `floor_std` (the spread of the metric between two data samples), a mean below twice that
    spread is "at the noise floor": a ratio to it would be a ratio of noise, so none is given.

    Returns:
        `{"ratios": [...] or None, "ratio": "mean ± std" or "–", "verdict": str}`.
    """
    n = len(soflow)
    rival_mean, soflow_mean = mean_std(rival)[0], mean_std(soflow)[0]
    if floor_std is not None and rival_mean < 2 * floor_std:
        at_floor = soflow_mean < 2 * floor_std
        verdict = "both at the noise floor" if at_floor else "rival at the noise floor, SoFlow above it"
        return {"ratios": None, "ratio": "–", "verdict": verdict}
    ratios = seed_ratios(soflow, rival)
    wins = sum(r < 1 for r in ratios)
    if floor_std is not None and soflow_mean < 2 * floor_std:
        verdict = "SoFlow leads (SoFlow at the noise floor)"
    elif wins == n:
        verdict = "SoFlow leads" + ("" if n > 1 else " (one seed)")
    elif wins == 0:
        verdict = "rival leads" + ("" if n > 1 else " (one seed)")
    else:
        verdict = f"mixed: SoFlow lower on {wins} of {n} seeds"
    return {"ratios": ratios, "ratio": pm(ratios, 2), "verdict": verdict}


def search_size(selection: dict[str, Any]) -> dict[str, int]:
    """The settings each method's search evaluated on each dataset (from the search log)."""
    sizes = {
        (name, m): len({repr(sorted(entry["settings"].items())) for entry in search["log"]})
        for name, per in selection["searches"].items()
        for m, search in per.items()
    }
    return {f"{name}/{m}": size for (name, m), size in sizes.items()}


def protocol_text(
    budget: dict[str, Any], cost: dict[str, Any], seeds: Sequence[int], selection: dict[str, Any]
) -> str:
    """The protocol every method follows, as it was run (the search as `selection` records it)."""
    steps = cost["equal_time_steps"]
    selection_seeds = selection["seeds"]
    ratios = ", ".join(
        f"{m} {c['ratio']:.2f} ({c['ratio_range'][0]:.2f}–{c['ratio_range'][1]:.2f})"
        for m, c in cost["costs"].items()
    )
    stages = "; ".join(
        f"{m}: "
        + " → ".join("×".join(f"{k} {v}" for k, v in stage.items()) for stage in selection["stages"][m])
        for m in METHODS
    )
    sizes = sorted(set(search_size(selection).values()))
    size = " to ".join(map(str, sizes))
    return (
        f"**Protocol.** Every method trains the same `MLPBackbone` (hidden {budget['hidden']}, depth "
        f"{budget['depth']}) on the same data stream with batch {budget['batch']}, Adam with a cosine "
        "learning-rate decay to 0 over the run, and is evaluated with the weights of an EMA with warm-up "
        "(`EMA(decay, warmup=True)`: decay $\\min(\\beta, (1 + k)/(10 + k))$) on the same evaluation data and "
        "noise. The settings named in the search stages below (always the time-embedding scale of the "
        "backbone and the EMA decay $\\beta$) are tuned for every method by the same staged coordinate "
        f"search of {size} distinct settings per method and dataset (every other setting stays at its "
        "start value: the method's default, printed with the rest under Selected settings), on "
        f"seed{'s' if len(selection_seeds) > 1 else ''} "
        f"{', '.join(map(str, selection_seeds))}, scored by the energy distance of the one-step sample "
        "(flow matching: of its 100-step Euler sample); the tables report seeds "
        f"{', '.join(map(str, seeds))}, which the search did not see. Search stages (each starts from the "
        f"best so far): {stages}.\n\n"
        f"**Equal steps**: {budget['steps']} training steps for every method. **Equal time**: each method "
        f"runs the steps that cost the wall-clock time of {REFERENCE}'s {budget['steps']}, from its per-step "
        f"cost relative to {REFERENCE} measured side by side ({cost['rounds']} interleaved rounds of "
        f"{cost['steps_per_round']} training steps each, median of the per-round ratios, range over three "
        f"blocks of rounds): {ratios}; steps at equal time: "
        + ", ".join(f"{m} {s}" for m, s in steps.items())
        + ". Each method runs at its cheapest faithful implementation: MeanFlow's JVP without gradient "
        "plus one forward with gradient (the same gradient as the JVP with gradient, tested, and faster)."
    )


def settings_table(settings: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The selected settings of every method on every dataset."""
    rows = [[name, m, settings_text(values)] for name, per in settings.items() for m, values in per.items()]
    return markdown_table(["data", "method", "selected settings"], rows)


def cost_table(cost: dict[str, Any]) -> str:
    rows = [
        [
            m,
            f"{c['ratio']:.2f} ({c['ratio_range'][0]:.2f}–{c['ratio_range'][1]:.2f})",
            f"{1000 * c['median_step_s']:.1f}",
            str(cost["equal_time_steps"][m]),
        ]
        for m, c in cost["costs"].items()
    ]
    load = cost["load_average"]
    header = [
        "method",
        f"step cost / {REFERENCE} (range)",
        "median step (ms, shared machine)",
        f"steps at equal time ({REFERENCE}: {cost['budget']['steps']})",
    ]
    return (
        f"Measured with 1 torch thread, 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at "
        "the end (the machine is shared: the absolute times are not the point, the ratios are measured "
        "in the same rounds).\n\n" + markdown_table(header, rows)
    )


def search_table(searches: dict[str, dict[str, Any]], scale: float, digits: int) -> str:
    """Every evaluated setting per method: its stage, the settings it changed, its score."""
    rows = []
    for name, per in searches.items():
        for m, search in per.items():
            scores = [entry["score"] for entry in search["log"]]
            best = min(scores)
            rows.append(
                [name, m, str(len(scores)), f"{scale * best:.{digits}f}", f"{scale * max(scores):.{digits}f}"]
            )
    return markdown_table(["data", "method", "settings evaluated", "best score", "worst score"], rows)


def plot_panels(panels: dict[str, dict[str, Any]], columns: Sequence[str], path: Path) -> None:
    """A grid of 2-D scatter plots: one row per dataset, one column per sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(
        len(panels), len(columns), figsize=(2.1 * len(columns), 2.1 * len(panels)), squeeze=False
    )
    for i, (name, points) in enumerate(panels.items()):
        for j, column in enumerate(columns):
            ax = axes[i][j]
            if column in points:
                xy = np.asarray(points[column])
                ax.scatter(xy[:, 0], xy[:, 1], s=0.3, alpha=0.35, color="C0", linewidths=0, rasterized=True)
            ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xticks=[], yticks=[])
            if i == 0:
                ax.set_title(column, fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def values(runs: list[dict[str, Any]], label: str, key: str) -> list[float]:
    return [run[label][key] for run in runs]


__all__ = [
    "compare",
    "cost_table",
    "plot_panels",
    "protocol_text",
    "search_size",
    "search_table",
    "settings_table",
    "values",
]
_ = (mean_std, pm)


def commands_text(parts: dict[str, dict[str, Any]]) -> str:
    """The commands that wrote each part's result file, each once, with the parts it wrote.

    `parts` maps a part's name (e.g. "step costs") to its result, which holds the `command`.
    """
    by_command: dict[str, list[str]] = {}
    for name, result in parts.items():
        by_command.setdefault(result["command"], []).append(name)
    return "; ".join(f"`{command}` ({', '.join(names)})" for command, names in by_command.items())
