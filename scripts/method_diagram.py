r"""Draw the method page's diagrams: the solution function, the consistency target and the batch split.

The left diagram is computed, not sketched: the data are a 1-D mixture of two Gaussians
($\pm 1.5$, standard deviation 0.3), whose probability-flow ODE on the linear path has a closed-form
marginal velocity, so the grey curves are exact ODE trajectories (integrated with RK4 from noise at
$t = 1$ to data at $t = 0$). One data-noise pair gives the straight conditional path
$x_\tau = (1 - \tau)\,\text{data} + \tau\,\text{noise}$; on it lie $x_t$ and the one-Euler-step point
$x_l = x_t + (l - t)\,v$. The online value $f(x_t, t, s)$ and the target $f(x_l, l, s)$ are where the
exact trajectories through $x_t$ and $x_l$ reach time $s$; the consistency loss regresses their
difference quotient. The right diagram shows how `SoFlowLoss` splits a batch and which network passes
each part takes.

Writes `docs/assets/method_diagram/solution_consistency.svg` and `batch_split.svg`. Usage:

    python scripts/method_diagram.py
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parents[1] / "docs" / "assets" / "method_diagram"
MEANS, STD = (-1.5, 1.5), 0.3

# Reproducible SVG files: no date, fixed element ids.
plt.rcParams.update({"svg.hashsalt": "soflow-toolkit", "font.size": 10})
METADATA = {"Date": None, "Creator": None}


def velocity(x: float, t: float) -> float:
    """Marginal velocity E[noise - data | x_t = x] of the two-Gaussian mixture on the linear path."""
    var = (1 - t) ** 2 * STD**2 + t**2
    weights, values = [], []
    for mean in MEANS:
        centre = (1 - t) * mean
        weights.append(math.exp(-((x - centre) ** 2) / (2 * var)))
        data = mean + (1 - t) * STD**2 / var * (x - centre)
        noise = t / var * (x - centre)
        values.append(noise - data)
    total = sum(weights)
    return sum(w * v for w, v in zip(weights, values, strict=True)) / total


def trajectory(x: float, t: float, s: float, steps: int = 400) -> tuple[list[float], list[float]]:
    """RK4 integration of dx/dtau = v(x, tau) from tau = t to tau = s; returns (times, states)."""
    h = (s - t) / steps
    times, states = [t], [x]
    tau = t
    for _ in range(steps):
        k1 = velocity(x, tau)
        k2 = velocity(x + h / 2 * k1, tau + h / 2)
        k3 = velocity(x + h / 2 * k2, tau + h / 2)
        k4 = velocity(x + h * k3, tau + h)
        x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        tau += h
        times.append(tau)
        states.append(x)
    return times, states


def solution_diagram(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8.6, 4.6), constrained_layout=True)
    # Exact ODE trajectories from a grid of noises, 1 -> 0 (nearly 1: the ODE starts at t = 1).
    for start in [-2.6 + 0.26 * i for i in range(21)]:
        times, states = trajectory(start, 1.0, 0.0)
        ax.plot(times, states, color="0.82", lw=0.8, zorder=1)
    data, noise = 1.4, -0.3
    t, l, s = 0.8, 0.55, 0.15
    # The conditional path of one pair and the points on it.
    ax.plot([0, 1], [data, noise], color="C0", ls="--", lw=1.2, zorder=2)
    x_t = (1 - t) * data + t * noise
    x_l = x_t + (l - t) * (noise - data)
    times_t, online = trajectory(x_t, t, s)
    times_l, target = trajectory(x_l, l, s)
    ax.plot(times_t, online, color="C3", lw=2.0, zorder=3)
    ax.plot(times_l, target, color="C2", lw=2.0, zorder=3)
    f_t, f_l = online[-1], target[-1]
    for x, y, color in ((t, x_t, "C3"), (l, x_l, "C2"), (0, data, "C0"), (1, noise, "C0")):
        ax.plot([x], [y], "o", color=color, ms=6, zorder=4)
    ax.plot([s], [f_t], "o", color="C3", ms=7, mfc="white", mew=2, zorder=4)
    ax.plot([s], [f_l], "o", color="C2", ms=7, mfc="white", mew=2, zorder=4)
    arrow = FancyArrowPatch(
        (t, x_t), (l, x_l), arrowstyle="-|>", mutation_scale=14, color="C0", lw=1.6, zorder=5
    )
    ax.add_patch(arrow)
    style = {"fontsize": 9.5, "zorder": 6}
    ax.annotate("data", (0, data), xytext=(0.012, data - 0.42), color="C0", **style)
    ax.annotate("noise", (1, noise), xytext=(0.93, noise + 0.2), color="C0", **style)
    ax.annotate(r"$x_t$", (t, x_t), xytext=(t + 0.012, x_t + 0.13), color="C3", fontsize=12, zorder=6)
    ax.annotate(r"$x_l$", (l, x_l), xytext=(l - 0.01, x_l + 0.16), color="C2", fontsize=12, zorder=6)
    ax.annotate(
        "one Euler step along the pair's velocity\n"
        r"$x_l = x_t + (l - t)\,v,\quad v = \mathrm{noise} - \mathrm{data}$",
        ((t + l) / 2, (x_t + x_l) / 2),
        xytext=(0.55, -2.05),
        color="C0",
        arrowprops={"arrowstyle": "-", "color": "C0", "lw": 0.8},
        **style,
    )
    ax.annotate(
        "online: $f_\\theta(x_t, t, s)$\nwith gradient",
        (s, f_t),
        xytext=(0.015, f_t + 0.55 if f_t > f_l else f_t - 0.75),
        color="C3",
        arrowprops={"arrowstyle": "->", "color": "C3", "lw": 0.9},
        **style,
    )
    ax.annotate(
        "target: $f_\\theta(x_l, l, s)$\nno gradient, same network",
        (s, f_l),
        xytext=(0.015, f_l - 0.85 if f_t > f_l else f_l + 0.45),
        color="C2",
        arrowprops={"arrowstyle": "->", "color": "C2", "lw": 0.9},
        **style,
    )
    ax.text(
        0.35,
        2.35,
        r"$q = \dfrac{f_\theta(x_t, t, s) - f_\theta(x_l, l, s)}{t - l}$,   loss on $\operatorname{mean}\,q^2$",
        fontsize=10.5,
        zorder=6,
    )
    for x, name in ((s, "s"), (l, "l"), (t, "t")):
        ax.axvline(x, color="0.55", lw=0.7, ls=":", zorder=0)
        ax.text(x, -2.82, f"${name}$", ha="center", fontsize=12)
    ax.annotate(
        "",
        xy=(l, -2.45),
        xytext=(t, -2.45),
        arrowprops={"arrowstyle": "<->", "color": "0.3", "lw": 0.9},
    )
    ax.text((l + t) / 2, -2.4, r"$t - l = r\,(t - s)$", ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-0.02, 1.04)
    ax.set_ylim(-2.95, 2.7)
    ax.set_xlabel(r"time $\tau$   (0 = data, 1 = noise; sampling runs from right to left)")
    ax.set_ylabel("state (1-D)")
    ax.set_yticks([])
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(
        "Grey: exact ODE trajectories. $f(x, t, s)$ follows the trajectory through $x$ from time $t$ to $s$.",
        fontsize=10,
    )
    fig.savefig(path, metadata=METADATA)
    plt.close(fig)


def batch_diagram(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8.6, 2.7), constrained_layout=True)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 30)
    ax.axis("off")

    def box(x: float, y: float, w: float, h: float, color: str, text: str, **kw: object) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0.3,rounding_size=0.8", fc=color, ec="0.35", lw=0.8
            )
        )
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9.5, **kw)

    ax.text(
        0,
        27.5,
        r"a batch of $B$ rows (data, noise):  $\rho$ = 0.75 for ImageNet, 0 for CIFAR-10 and lowdim",
        fontsize=10,
        va="center",
    )
    box(0.5, 16, 69, 8, "#dbe7f6", r"first $\lfloor \rho B \rfloor$ rows: flow matching, $s = t$, target $v$")
    box(70.5, 16, 29, 8, "#f8dfd4", "the rest: consistency,\n" r"$s \leq l < t$")
    ax.text(0, 11.5, "network passes per step, in order", fontsize=10, va="center")
    box(
        0.5,
        1,
        31,
        7,
        "#eeeeee",
        "1. only with guidance, no gradient:\n" r"$v_\theta(x_t, t \mid \varnothing)$, every row",
    )
    box(34, 1, 31, 7, "#e6e0f3", "2. with gradient, every row:\n" r"$F_\theta(x_t, t, s)$")
    box(67.5, 1, 32, 7, "#f8dfd4", "3. no gradient, same random state:\n" r"targets $F_\theta(x_l, l, s)$")
    fig.savefig(path, metadata=METADATA)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    solution_diagram(args.out / "solution_consistency.svg")
    batch_diagram(args.out / "batch_split.svg")
    print(f"wrote {args.out}/solution_consistency.svg and batch_split.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
