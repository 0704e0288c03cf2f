"""Train a one-step SoFlow model on a 2-D toy and compare it with 100-step flow matching.

This is what `make demo` runs. In about a minute on two CPU cores it

1. trains SoFlow (a small MLP wrapped by `SolutionFlowWrapper`, objective `SoFlowLoss` with the
   low-dimensional settings below) on a built-in 2-D dataset;
2. trains a flow-matching model of the same size for the same number of steps (the same wrapper and
   backbone trained with `flow_matching_loss` alone), to be sampled with 100 Euler steps;
3. draws 10,000 points from each and writes `samples.png` (data | SoFlow 1 NFE | SoFlow 2 NFE |
   flow matching 100 steps) and `metrics.json` to the output folder, and prints the energy distance of
   each to fresh data next to the noise floor (the distance between two independent data samples).

Only the public API is used (`soflow_toolkit` and `soflow_toolkit.toy`), so the script doubles as a
worked example. Usage:

    python examples/demo.py                        # checkerboard, default budget
    python examples/demo.py --dataset ring --steps 6000 --out outputs/ring
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from soflow_toolkit import (
    EMA,
    SoFlowConfig,
    SoFlowLoss,
    SolutionFlowWrapper,
    euler_sample,
    flow_matching_loss,
    sample,
    uniform_times,
)
from soflow_toolkit.toy import TOY_DATASETS, MLPBackbone, energy_distance, get_toy_dataset, sliced_wasserstein

# SoFlow settings for low-dimensional data (see docs/benchmarks.md for the evidence): plain MSE
# (p = 0), because a per-sample adaptive weight over only two coordinates re-weights the random
# targets and biases the learned field; times that cover the whole of [0, 1] including the noise end
# t = 1 that one-step sampling starts from; and a short curriculum.
LOWDIM = {
    "fm_fraction": 0.5,
    "p": 0.0,
    "eps": 0.01,
    "fm_time_mean": 0.0,
    "fm_time_std": 1.0,
    "s_time_mean": -2.0,
    "s_time_std": 1.6,
    "t_time_mean": 0.8,
    "t_time_std": 1.6,
    "schedule": "exponent",
    "r_init": 0.5,
    "r_end": 0.005,
}
HIDDEN, DEPTH, LEARNING_RATE, EMA_DECAY, EVAL_POINTS = 128, 4, 1e-3, 0.999, 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="checkerboard", choices=sorted(TOY_DATASETS))
    parser.add_argument("--steps", type=int, default=4000, help="training steps of each model")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 2:
        parser.error("--steps must be >= 1 and --batch-size >= 2")
    return args


def new_model(seed: int) -> SolutionFlowWrapper:
    torch.manual_seed(seed)  # initial weights only; every training draw goes through a generator
    return SolutionFlowWrapper(MLPBackbone(2, hidden=HIDDEN, depth=DEPTH))


def train(
    model: nn.Module,
    loss_fn,  # (model, data, generator) -> scalar loss
    args: argparse.Namespace,
    generator: torch.Generator,
    progress,
    label: str,
) -> float:
    """Adam + EMA for `args.steps` steps; leaves the EMA weights in `model`; returns seconds."""
    dataset = get_toy_dataset(args.dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    ema = EMA(model, decay=EMA_DECAY)
    progress.set_description(label)
    start = time.perf_counter()
    for _ in range(args.steps):
        data = dataset(args.batch_size, generator=generator)
        loss = loss_fn(model, data, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        progress.update(1)
    ema.copy_to(model)
    model.eval()
    return time.perf_counter() - start


def plot(panels: dict[str, torch.Tensor], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), constrained_layout=True)
    for ax, (name, points) in zip(axes, panels.items(), strict=True):
        xy = points.numpy()
        ax.scatter(xy[:, 0], xy[:, 1], s=0.5, alpha=0.4, color="C0", rasterized=True)
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xticks=[], yticks=[], title=name)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, object]:
    from tqdm import tqdm

    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    config = SoFlowConfig(**LOWDIM, total_steps=args.steps)
    objective = SoFlowLoss(config)

    def soflow_loss(model: nn.Module, data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return objective(model, data, generator=generator).loss

    def fm_loss(model: nn.Module, data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(data.shape, generator=generator)
        t = uniform_times(data.shape[0], generator=generator)
        return flow_matching_loss(model, data, noise, t, p=0.0).loss  # plain flow matching

    soflow, fm = new_model(args.seed), new_model(args.seed)
    with tqdm(total=2 * args.steps, unit="step", dynamic_ncols=True) as progress:
        seconds_soflow = train(
            soflow, soflow_loss, args, torch.Generator().manual_seed(args.seed + 1), progress, "SoFlow"
        )
        seconds_fm = train(
            fm, fm_loss, args, torch.Generator().manual_seed(args.seed + 2), progress, "flow matching"
        )

    g = torch.Generator().manual_seed(args.seed + 3)
    dataset = get_toy_dataset(args.dataset)
    data, fresh, noise = (
        dataset(EVAL_POINTS, generator=g),
        dataset(EVAL_POINTS, generator=g),
        torch.randn(EVAL_POINTS, 2, generator=g),
    )
    samples = {
        "SoFlow, 1 NFE": sample(soflow, noise, steps=1),
        "SoFlow, 2 NFE": sample(soflow, noise, steps=2, generator=g),
        "flow matching, 100 Euler steps": euler_sample(fm, noise, steps=100),
    }

    def distances(points: torch.Tensor) -> dict[str, float]:
        return {
            "energy_distance": float(energy_distance(points, fresh, num_projections=64)),
            "sliced_wasserstein": float(sliced_wasserstein(points, fresh, num_projections=64)),
        }

    metrics = {name: distances(points) for name, points in samples.items()}
    metrics["noise floor (data vs data)"] = distances(data)
    report = {
        "dataset": args.dataset,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "eval_points": EVAL_POINTS,
        "train_seconds": {"soflow": seconds_soflow, "flow_matching": seconds_fm},
        "soflow_config": {**LOWDIM, "total_steps": args.steps},
        "metrics": metrics,
    }
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    plot({"data": data, **samples}, args.out / "samples.png", f"{args.dataset}, {args.steps} training steps")

    print(f"\n{args.dataset}: {EVAL_POINTS} points against fresh data (lower is better)")
    print(f"{'':34s} {'energy distance':>16s} {'sliced W2':>10s}")
    for name, values in metrics.items():
        print(f"{name:34s} {values['energy_distance']:16.5f} {values['sliced_wasserstein']:10.4f}")
    ratio = metrics["SoFlow, 1 NFE"]["energy_distance"] / max(
        metrics["flow matching, 100 Euler steps"]["energy_distance"], 1e-12
    )
    print(f"SoFlow 1 NFE / flow matching 100 steps: {ratio:.2f}x the energy distance, 100x fewer evaluations")
    print(
        f"training: SoFlow {seconds_soflow:.0f} s, flow matching {seconds_fm:.0f} s; wrote {args.out}/samples.png and metrics.json"
    )
    return report


if __name__ == "__main__":
    main()
