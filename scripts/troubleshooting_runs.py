r"""What healthy SoFlow runs and broken ones look like: the measurements of docs/troubleshooting.md.

Every run uses the public API (`SoFlowLoss` and its presets, `sample`) with a small MLP and Adam, and
logs the mean of `out.metrics()` over windows of steps, the gradient norm, and probes evaluated on
fixed inputs: the consistency metric `sc_mse` at a fixed curriculum ratio $r$ (the logged `sc_mse` is
measured at the current $r$, which the curriculum shrinks), and the quality of 1-NFE samples.

Healthy runs:

- `gaussian`: the README's data, a Gaussian $N((2, -1), 0.5^2 I)$, with the default config
  (flow matching and consistency rows). For Gaussian data the exact solution is known in closed form,
  so the script also computes the values that the exact solution would log: neither metric goes to
  zero, because both losses regress on the per-pair velocity $\text{noise} - \text{data}$.
- `two_modes`: the home page's run (two Gaussians at $(\pm 2, 0)$, `SoFlowConfig.lowdim`, 400 steps,
  learning rate 3e-3, EMA 0.99), with the energy distance of 1-NFE samples to fresh data.
- `checkerboard`: `soflow_toolkit.toy.checkerboard`, `SoFlowConfig.lowdim`, 3000 steps.
- `digits`: the 8x8 digits in [-1, 1], class-conditional, `SoFlowConfig.imagenet` with guidance scale
  1.5, 3000 steps; the probe is the accuracy of a logistic-regression classifier of the real digits on
  class-conditional 1-NFE samples.

Failures (checkerboard, 1500 steps, one change each against `baseline`): `p = 2`, learning rate 1.0,
`total_steps` left at the preset's 5000, data multiplied by 10 or by 0.1 (samples are divided back
before they are compared), bf16 autocast with a curriculum that ends at $r = 10^{-4}$ (and float32
with the same curriculum), and fp16 autocast with a gradient scaler. Also: `sc_mse` of the trained
checkerboard model at ratios from 0.3 to 1e-4 in float32 and under bf16 autocast, and the number of
graphs `torch.compile` builds for a training run with a fixed batch, then with a smaller last batch.

Writes `docs/assets/troubleshooting_runs/`: `runs.json` (every number the page quotes), the figures
`healthy.png` and `failures.png`, and the tables `healthy.md`, `failures.md` and `compile.md` that
the page includes. Usage:

    python scripts/troubleshooting_runs.py                 # about 15 minutes on one CPU core
    python scripts/troubleshooting_runs.py --tables-only   # redraw figures and tables from runs.json
    python scripts/troubleshooting_runs.py --quick         # a smoke run into /tmp
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docs_runs

import soflow_toolkit as sf
from soflow_toolkit.toy import MLPBackbone, checkerboard, energy_distance

Probe = Callable[[nn.Module], dict[str, float]]


# ------------------------------------------------------------------------------------------------
# Probes


def constant_curriculum(config: sf.SoFlowConfig, r: float) -> sf.RatioSchedule:
    """The config's curriculum held at the ratio `r` for every step."""
    return dataclasses.replace(config.curriculum, kind="const", r_end=r)


def ending_at(config: sf.SoFlowConfig, r_end: float) -> sf.SoFlowConfig:
    """The config with its curriculum ending at `r_end`."""
    return dataclasses.replace(config, curriculum=dataclasses.replace(config.curriculum, r_end=r_end))


def consistency_probe(config: sf.SoFlowConfig, data: Tensor, ratios: tuple[float, ...]) -> Probe:
    """`sc_mse` at fixed curriculum ratios, on fixed data, noise and times (the same for every call)."""
    draws = {}
    for r in ratios:
        fixed = sf.SoFlowLoss(
            dataclasses.replace(
                config, curriculum=constant_curriculum(config, r), guidance=sf.GuidanceConfig()
            )
        )
        draws[r] = (fixed, fixed.draw(data, step=0, generator=torch.Generator().manual_seed(7)))

    def probe(model: nn.Module) -> dict[str, float]:
        out = {}
        with torch.no_grad():
            for r, (objective, draw) in draws.items():
                cond = None
                out[f"sc_mse@r={r:g}"] = objective(model, data, cond, draw=draw, step=0).metrics()["sc_mse"]
        return out

    return probe


def energy_probe(sampler_data: Tensor, scale: float = 1.0) -> Probe:
    """Energy distance (x 1000) between 1-NFE samples on fixed noise and fixed data."""
    noise = torch.randn(sampler_data.shape, generator=torch.Generator().manual_seed(11))

    def probe(model: nn.Module) -> dict[str, float]:
        x = sf.sample(model, noise) / scale
        if not torch.isfinite(x).all():
            return {"energy_x1000": float("nan")}
        return {"energy_x1000": 1000 * float(energy_distance(x, sampler_data))}

    return probe


def both(*probes: Probe) -> Probe:
    def probe(model: nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in probes:
            out.update(p(model))
        return out

    return probe


# ------------------------------------------------------------------------------------------------
# The exact solution for Gaussian data


def gaussian_exact_metrics(
    config: sf.SoFlowConfig, sigma: float, r: float, n: int = 200_000
) -> dict[str, float]:
    r"""`fm_mse` and `sc_mse` that the exact solution logs for data $N(m, \sigma^2 I)$ (linear path).

    With $\sigma_\tau^2 = (1 - \tau)^2\sigma^2 + \tau^2$ the flow maps $x_\tau = (1 - \tau)m + \sigma_\tau z$,
    so $f(x, t, s) = (1 - s)m + \tfrac{\sigma_s}{\sigma_t}(x - (1 - t)m)$ and the marginal velocity is
    $\bar v(x, t) = -m + \tfrac{\sigma_t'}{\sigma_t}(x - (1 - t)m)$. For data $m + \sigma e$ and noise $n$
    (independent standard normals per element), $v - \bar v = (1 - k t)\,n - \sigma(1 + k(1 - t))\,e$
    with $k = \sigma_t'/\sigma_t$, and since $x_l$ is the same pair's point at time $l$,
    $q = \sigma_s\,(A_t - A_l)/(t - l)$ with $A_\tau = ((1 - \tau)\sigma e + \tau n)/\sigma_\tau$. Their mean
    squares per element are averaged over the objective's own draws of times.
    """
    objective = sf.SoFlowLoss(dataclasses.replace(config, curriculum=constant_curriculum(config, r)))
    draw = objective.draw(
        torch.zeros(n, 1, dtype=torch.float64), step=0, generator=torch.Generator().manual_seed(3)
    )

    def sd(tau: Tensor) -> Tensor:
        return ((1 - tau) ** 2 * sigma**2 + tau**2).sqrt()

    out = {}
    if draw.t_fm.numel():
        t = draw.t_fm
        k = (t - (1 - t) * sigma**2) / sd(t) ** 2
        out["fm_mse"] = float(((1 - k * t) ** 2 + sigma**2 * (1 + k * (1 - t)) ** 2).mean())
    t, l, s = draw.t, draw.l, draw.s
    a_e = sigma * ((1 - t) / sd(t) - (1 - l) / sd(l))
    a_n = t / sd(t) - l / sd(l)
    out["sc_mse"] = float((sd(s) ** 2 * (a_e**2 + a_n**2) / (t - l) ** 2).mean())
    return out


# ------------------------------------------------------------------------------------------------
# Runs


def mlp(seed: int, dim: int = 2, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    return sf.SolutionFlowWrapper(MLPBackbone(dim, **kwargs))


class TwoLayer(nn.Module):
    """The home page's backbone: two hidden layers of 128, the times as two extra inputs."""

    def __init__(self, dim: int = 2, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 2, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        out: Tensor = self.net(torch.cat([x, t[:, None], s[:, None]], dim=1))
        return out


def run_gaussian(steps: int, every: int) -> dict[str, Any]:
    sigma, mean = 0.5, torch.tensor([2.0, -1.0])
    config = sf.SoFlowConfig().with_total_steps(steps)
    probe_data = torch.randn(2048, 2, generator=torch.Generator().manual_seed(5)) * sigma + mean
    fixed_r = config.curriculum.r_end
    torch.manual_seed(0)
    model = sf.SolutionFlowWrapper(TwoLayer())
    _, history = docs_runs.train(
        model,
        sf.SoFlowLoss(config),
        lambda g: (torch.randn(256, 2, generator=g) * sigma + mean, None),
        steps=steps,
        lr=1e-3,
        seed=0,
        every=every,
        probe=consistency_probe(config, probe_data, (fixed_r,)),
    )
    exact_now = [gaussian_exact_metrics(config, sigma, r) for r in history.metrics["r"]]
    return {
        "history": history.as_dict(),
        "exact": {
            "fm_mse": exact_now[0]["fm_mse"],
            "sc_mse_at_current_r": [e["sc_mse"] for e in exact_now],
            f"sc_mse@r={fixed_r:g}": gaussian_exact_metrics(config, sigma, fixed_r)["sc_mse"],
        },
        "fixed_r": fixed_r,
    }


def two_modes(n: int, generator: torch.Generator) -> Tensor:
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    which = torch.randint(0, 2, (n,), generator=generator)
    return centres[which] + 0.3 * torch.randn(n, 2, generator=generator)


def run_two_modes(steps: int, every: int) -> dict[str, Any]:
    config = sf.SoFlowConfig.lowdim(total_steps=steps)
    data = two_modes(4000, torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    model = sf.SolutionFlowWrapper(TwoLayer())
    _, history = docs_runs.train(
        model,
        sf.SoFlowLoss(config),
        lambda g: (two_modes(256, g), None),
        steps=steps,
        lr=3e-3,
        seed=0,
        every=every,
        ema_decay=0.99,
        probe=both(consistency_probe(config, data[:2048], (0.2, 0.01)), energy_probe(data)),
    )
    return {"history": history.as_dict()}


def run_toy(
    steps: int,
    every: int,
    *,
    config: sf.SoFlowConfig | None = None,
    lr: float = 3e-3,
    scale: float = 1.0,
    autocast: torch.dtype | None = None,
    probe_ratios: tuple[float, ...] = (0.2, 0.01),
) -> tuple[nn.Module, dict[str, Any]]:
    config = config or sf.SoFlowConfig.lowdim(total_steps=steps)
    data = checkerboard(4000, generator=torch.Generator().manual_seed(5))
    probe = both(consistency_probe(config, data[:2048] * scale, probe_ratios), energy_probe(data, scale))
    model, history = docs_runs.train(
        mlp(0),
        sf.SoFlowLoss(config),
        lambda g: (checkerboard(256, generator=g) * scale, None),
        steps=steps,
        lr=lr,
        seed=0,
        every=every,
        autocast=autocast,
        probe=probe,
    )
    return model, {"history": history.as_dict()}


def run_fp16_scaler(steps: int, every: int) -> dict[str, Any]:
    """fp16 autocast with `torch.amp.GradScaler`: the loss is scaled before backward."""
    config = sf.SoFlowConfig.lowdim(total_steps=steps)
    data = checkerboard(4000, generator=torch.Generator().manual_seed(5))
    model = mlp(0)
    objective = sf.SoFlowLoss(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scaler = torch.amp.GradScaler("cpu")
    generator = torch.Generator().manual_seed(0)
    probe = energy_probe(data)
    history = docs_runs.History(every)
    window: list[float] = []
    ratio = 0.0
    skipped = 0
    for step in range(steps):
        with torch.autocast("cpu", dtype=torch.float16):
            out = objective(model, checkerboard(256, generator=generator), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        scale_before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        skipped += scaler.get_scale() < scale_before
        window.append(out.metrics()["sc_mse"])
        ratio = out.r
        if (step + 1) % every == 0:
            values = {"sc_mse": sum(window) / len(window), "r": ratio, "grad_scale": scaler.get_scale()}
            history.add(step + 1, values | probe(model))
            window = []
    return {"history": history.as_dict(), "skipped_steps": int(skipped)}


def precision_sweep(model: nn.Module, ratios: tuple[float, ...]) -> dict[str, list[float]]:
    """`sc_mse` of one model at each ratio, in float32 and under bf16 autocast, on the same inputs."""
    config = sf.SoFlowConfig.lowdim()
    data = checkerboard(4096, generator=torch.Generator().manual_seed(6))
    out: dict[str, list[float]] = {"ratios": list(ratios), "float32": [], "bfloat16": []}
    for r in ratios:
        probe = consistency_probe(config, data, (r,))
        out["float32"].append(probe(model)[f"sc_mse@r={r:g}"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out["bfloat16"].append(probe(model)[f"sc_mse@r={r:g}"])
    return out


def count_graphs(steps: int) -> dict[str, list[int]]:
    """Graphs `torch.compile` builds, counted after each step: fixed batch, then a smaller last batch."""
    graphs = 0

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable[..., Any]:
        nonlocal graphs
        graphs += 1
        return gm.forward

    out: dict[str, list[int]] = {}
    cases = {
        "lowdim, batch 256": (sf.SoFlowConfig.lowdim(total_steps=100), [256] * steps),
        "default config (75 % flow matching), batch 256": (
            sf.SoFlowConfig().with_total_steps(100),
            [256] * steps,
        ),
        "default config, batch 256 then a last batch of 200": (
            sf.SoFlowConfig().with_total_steps(100),
            [256] * (steps - 1) + [200],
        ),
    }
    for name, (config, sizes) in cases.items():
        torch._dynamo.reset()
        graphs = 0
        torch.manual_seed(0)
        model = sf.SolutionFlowWrapper(torch.compile(MLPBackbone(2, hidden=32, depth=2), backend=backend))
        objective = sf.SoFlowLoss(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        counts = []
        for size in sizes:
            step = objective(model, checkerboard(size, generator=generator), generator=generator)
            optimizer.zero_grad()
            step.loss.backward()
            optimizer.step()
            counts.append(graphs)
        out[name] = counts
    torch._dynamo.reset()
    return out


# ------------------------------------------------------------------------------------------------
# Figures and tables


def final(history: dict[str, Any], key: str) -> float:
    values = history.get(key, [])
    return values[-1] if values else float("nan")


def plot_healthy(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2), constrained_layout=True)
    # (a) Gaussian: both metrics against the exact solution's.
    g = result["gaussian"]
    h = g["history"]
    ax = axes[0, 0]
    ax.plot(h["steps"], h["fm_mse"], color="C0", label="fm_mse")
    ax.axhline(g["exact"]["fm_mse"], color="C0", ls=":", label="fm_mse of the exact solution")
    ax.plot(h["steps"], h["sc_mse"], color="C1", label="sc_mse (current r)")
    ax.plot(
        h["steps"],
        g["exact"]["sc_mse_at_current_r"],
        color="C1",
        ls=":",
        label="sc_mse of the exact solution",
    )
    ax.set_title("(a) Gaussian data: neither metric goes to zero")
    ax.set_xlabel("training step")
    ax.legend(fontsize=8)
    # (b, c) two modes and checkerboard: sc_mse at the current and at fixed r, energy distance.
    for ax, key, title in (
        (axes[0, 1], "two_modes", "(b) the home page's run: two modes, 400 steps"),
        (axes[1, 0], "checkerboard", "(c) checkerboard, 3000 steps"),
    ):
        h = result[key]["history"]
        ax.plot(h["steps"], h["sc_mse"], color="C1", label="sc_mse (current r)")
        ax.plot(h["steps"], h["sc_mse@r=0.01"], color="C1", ls="--", label="sc_mse at r = 0.01")
        ax.plot(h["steps"], h["sc_mse@r=0.2"], color="C1", ls=":", label="sc_mse at r = 0.2")
        ax.set_xlabel("training step")
        ax.set_ylabel("sc_mse")
        ax.set_title(title)
        twin = ax.twinx()
        twin.plot(h["steps"], h["energy_x1000"], color="C2", label="energy distance x 1000 (1 NFE)")
        twin.set_ylabel("energy distance x 1000", color="C2")
        twin.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    # (d) digits: fm_mse, sc_mse and classifier accuracy.
    h = result["digits"]["history"]
    ax = axes[1, 1]
    ax.plot(h["steps"], h["fm_mse"], color="C0", label="fm_mse")
    ax.plot(h["steps"], h["sc_mse"], color="C1", label="sc_mse (current r)")
    ax.set_xlabel("training step")
    ax.set_title("(d) 8x8 digits, class-conditional, guidance 1.5")
    twin = ax.twinx()
    twin.plot(h["steps"], h["accuracy"], color="C2", label="classifier accuracy (1 NFE)")
    twin.set_ylim(0, 1)
    twin.set_ylabel("accuracy", color="C2")
    lines, more = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_failures(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Two panels above, the bar chart of every failure below at full width, so that the labels stay
    # readable at the width of the page's column.
    fig = plt.figure(figsize=(10, 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
    axes = dict(zip("ab", top.subplots(1, 2), strict=True)) | {"c": bottom.subplots()}
    ax = axes["a"]
    for key, label in (("baseline", "baseline"), ("p2", "p = 2"), ("lr1", "learning rate 1.0")):
        h = result["failures"][key]["history"]
        ax.semilogy(h["steps"], h["sc_mse"], label=label)
    ax.set_title("(a) divergence: sc_mse explodes")
    ax.set_xlabel("training step")
    ax.set_ylabel("sc_mse (log scale)")
    ax.legend(fontsize=8)
    ax = axes["b"]
    sweep = result["precision_sweep"]
    ax.loglog(sweep["ratios"], sweep["float32"], "o-", label="float32")
    ax.loglog(sweep["ratios"], sweep["bfloat16"], "s-", label="bf16 autocast")
    ax.invert_xaxis()
    ax.set_xlabel("curriculum ratio r = (t - l) / (t - s)")
    ax.set_ylabel("sc_mse of one trained model")
    ax.set_title("(b) bf16 rounding divided by t - l")
    ax.legend(fontsize=8)
    ax = axes["c"]
    rows = failure_rows(result)
    names = [row["label"] for row in rows]
    values = [row["energy"] for row in rows]
    bars = ax.barh(range(len(rows)), [v if math.isfinite(v) else 0 for v in values], color="C2")
    ax.set_yticks(range(len(rows)), names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("energy distance x 1000 of 1-NFE samples (log scale)")
    ax.set_title("(c) sample quality after 1500 steps")
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.3g}", va="center", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


FAILURES = {
    "baseline": "baseline: `SoFlowConfig.lowdim(total_steps=1500)`, learning rate 3e-3",
    "p2": "`p=2` (adaptive weight power)",
    "lr1": "learning rate 1.0",
    "total_steps": "`total_steps` left at the preset's 5000",
    "scale10": "data multiplied by 10",
    "scale0.1": "data multiplied by 0.1",
    "float32_rend1e-4": "float32, curriculum ending at r = 1e-4",
    "bf16_rend1e-4": "bf16 autocast, curriculum ending at r = 1e-4",
    "fp16_scaler": "fp16 autocast with a gradient scaler",
}


def failure_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, label in FAILURES.items():
        h = result["failures"][key]["history"]
        rows.append(
            {
                "key": key,
                "label": label.replace("`", ""),
                "markdown": label,
                "r": final(h, "r"),
                "sc_mse": final(h, "sc_mse"),
                "sc_weight": final(h, "sc_weight"),
                "grad_norm": final(h, "grad_norm"),
                "energy": final(h, "energy_x1000"),
            }
        )
    return rows


def _first_last(history: dict[str, Any], key: str) -> tuple[float, float]:
    values = history[key]
    return values[0], values[-1]


def healthy_table(result: dict[str, Any]) -> str:
    """First and last logged window of each healthy run: the metrics and the probes."""

    def f(value: float) -> str:
        return f"{value:.3g}"

    lines = [
        "| run | steps | metric | first window | last window | the exact solution's |",
        "|---|---|---|---|---|---|",
    ]
    g = result["gaussian"]
    h = g["history"]
    fixed = f"sc_mse@r={g['fixed_r']:g}"
    rows = [
        ("Gaussian, default config", h, "fm_mse", "fm_mse", f(g["exact"]["fm_mse"])),
        (
            "",
            h,
            "sc_mse",
            "sc_mse (current r)",
            f"{f(g['exact']['sc_mse_at_current_r'][0])} → {f(g['exact']['sc_mse_at_current_r'][-1])}",
        ),
        ("", h, fixed, f"sc_mse at r = {g['fixed_r']:g}", f(g["exact"][fixed])),
    ]
    for key, title in (("two_modes", "two modes, the home page's run"), ("checkerboard", "checkerboard")):
        h = result[key]["history"]
        rows += [
            (title, h, "sc_mse", "sc_mse (current r)", ""),
            ("", h, "sc_mse@r=0.01", "sc_mse at r = 0.01", ""),
            ("", h, "sc_mse@r=0.2", "sc_mse at r = 0.2", ""),
            ("", h, "energy_x1000", "energy distance × 1000, 1 NFE", ""),
        ]
    h = result["digits"]["history"]
    rows += [
        ("digits, guidance 1.5", h, "fm_mse", "fm_mse", ""),
        ("", h, "sc_mse", "sc_mse (current r)", ""),
        (
            "",
            h,
            "accuracy",
            "classifier accuracy, 1 NFE",
            f"{result['digits']['real_accuracy']:.3g} (real digits)",
        ),
    ]
    for title, history, key, label, exact in rows:
        steps = f"{history['steps'][-1]}" if title else ""
        first, last = _first_last(history, key)
        lines.append(f"| {title} | {steps} | {label} | {f(first)} | {f(last)} | {exact} |")
    return "\n".join(lines) + "\n"


def failures_table(result: dict[str, Any]) -> str:
    lines = [
        "| run (checkerboard, 1500 steps) | r at the end | sc_mse, last 100 steps | sc_weight | "
        "gradient norm | energy distance × 1000, 1 NFE |",
        "|---|---|---|---|---|---|",
    ]

    def f(value: float, digits: int = 3) -> str:
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}g}"

    for row in failure_rows(result):
        lines.append(
            f"| {row['markdown']} | {f(row['r'], 2)} | {f(row['sc_mse'])} | {f(row['sc_weight'])} | "
            f"{f(row['grad_norm'], 2)} | {f(row['energy'])} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=docs_runs.ASSETS / "troubleshooting_runs")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, output to /tmp")
    parser.add_argument(
        "--tables-only", action="store_true", help="redraw the figures and tables from an existing runs.json"
    )
    args = parser.parse_args(argv)
    if args.tables_only:
        write_outputs(json.loads((args.out / "runs.json").read_text(encoding="utf-8")), args.out)
        return 0
    torch.set_num_threads(1)
    long, short, home, every = 3000, 1500, 400, 100
    if args.quick:
        long, short, home, every = 60, 40, 40, 20
        args.out = Path("/tmp/soflow-troubleshooting")
    start = time.perf_counter()
    result: dict[str, Any] = {
        "command": "python scripts/troubleshooting_runs.py" + (" --quick" if args.quick else ""),
        "torch": torch.__version__,
    }

    def log(name: str) -> None:
        print(f"{time.perf_counter() - start:7.0f} s  {name}", flush=True)

    log("gaussian")
    result["gaussian"] = run_gaussian(long, every)
    log("two modes")
    result["two_modes"] = run_two_modes(home, every // 2)
    log("checkerboard")
    trained, result["checkerboard"] = run_toy(long, every)
    log("precision sweep")
    result["precision_sweep"] = precision_sweep(trained, (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4))

    log("digits")
    images, labels = docs_runs.load_digits()
    scorer = docs_runs.DigitScorer(images, labels)
    wanted = torch.arange(10).repeat_interleave(100)
    digit_noise = torch.randn(1000, 1, 8, 8, generator=torch.Generator().manual_seed(11))

    def accuracy(model: nn.Module) -> dict[str, float]:
        return {"accuracy": scorer.accuracy(sf.sample(model, digit_noise, cond=wanted), wanted)}

    guidance = sf.GuidanceConfig(scale=1.5, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8)

    def digit_batches(g: torch.Generator) -> docs_runs.Batch:
        index = torch.randint(images.shape[0], (128,), generator=g)
        return images[index], labels[index]

    _, history = docs_runs.train(
        mlp(0, 64, hidden=256, depth=3, num_classes=10),
        sf.SoFlowLoss(sf.SoFlowConfig.imagenet(total_steps=long, guidance=guidance)),
        digit_batches,
        steps=long,
        lr=1e-3,
        seed=0,
        null_cond=10,
        every=every,
        probe=accuracy,
    )
    result["digits"] = {"history": history.as_dict(), "real_accuracy": scorer.real_accuracy}

    lowdim = sf.SoFlowConfig.lowdim
    failures: dict[str, Any] = {}
    cases: dict[str, dict[str, Any]] = {
        "baseline": {},
        "p2": {"config": lowdim(total_steps=short, p=2.0)},
        "lr1": {"lr": 1.0},
        "total_steps": {"config": lowdim()},
        "scale10": {"scale": 10.0},
        "scale0.1": {"scale": 0.1},
        "float32_rend1e-4": {"config": ending_at(lowdim(total_steps=short), 1e-4)},
        "bf16_rend1e-4": {"config": ending_at(lowdim(total_steps=short), 1e-4), "autocast": torch.bfloat16},
    }
    for key, kwargs in cases.items():
        log(f"failure: {key}")
        _, failures[key] = run_toy(short, every, **kwargs)
    log("failure: fp16 with a gradient scaler")
    failures["fp16_scaler"] = run_fp16_scaler(short, every)
    result["failures"] = failures
    log("torch.compile graphs")
    result["compile_graphs"] = count_graphs(6)
    result["seconds"] = round(time.perf_counter() - start)

    args.out.mkdir(parents=True, exist_ok=True)
    docs_runs.write_json(args.out / "runs.json", result)
    write_outputs(json.loads((args.out / "runs.json").read_text(encoding="utf-8")), args.out)
    log(f"wrote {args.out}")
    return 0


def compile_table(result: dict[str, Any]) -> str:
    counts = result["compile_graphs"]
    steps = len(next(iter(counts.values())))
    lines = [
        "| training run, `torch.compile(backbone)` | "
        + " | ".join(f"step {i + 1}" for i in range(steps))
        + " |",
        "|---|" + "---|" * steps,
    ]
    for name, values in counts.items():
        lines.append(f"| {name} | " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """The tables and figures, from the rounded numbers of runs.json (what the page quotes)."""
    (out / "compile.md").write_text(compile_table(result), encoding="utf-8")
    (out / "healthy.md").write_text(healthy_table(result), encoding="utf-8")
    (out / "failures.md").write_text(failures_table(result), encoding="utf-8")
    plot_healthy(result, out / "healthy.png")
    plot_failures(result, out / "failures.png")


if __name__ == "__main__":
    sys.exit(main())
