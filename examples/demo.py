"""Train a one-step SoFlow model on a 2-D toy and compare it with 100-step flow matching.

This is what `make demo` runs. In under two minutes on two CPU cores it

1. trains SoFlow (a small MLP wrapped by `SolutionFlowWrapper`, objective `SoFlowLoss` with the
   low-dimensional preset `SoFlowConfig.lowdim()`) on a built-in 2-D dataset;
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
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

HIDDEN, DEPTH, LEARNING_RATE, EMA_DECAY = 128, 4, 3e-3, 0.999


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="checkerboard", choices=sorted(TOY_DATASETS))
    parser.add_argument("--steps", type=int, default=5000, help="training steps of each model")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-points", type=int, default=10_000, help="samples drawn from each model")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (one is fastest for this small MLP)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1; got {args.steps}")
    if args.batch_size < 2 or args.eval_points < 2 or args.threads < 1:
        parser.error("--batch-size and --eval-points must be >= 2, --threads >= 1")
    return args


def new_model(seed: int) -> SolutionFlowWrapper:
    torch.manual_seed(seed)  # initial weights only; every training draw goes through a generator
    return SolutionFlowWrapper(MLPBackbone(2, hidden=HIDDEN, depth=DEPTH))


LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def train(
    model: nn.Module,
    loss_fn: LossFn,
    args: argparse.Namespace,
    generator: torch.Generator,
    progress: Any,
    label: str,
) -> float:
    """Adam + EMA for `args.steps` steps; leaves the EMA weights in `model`; returns seconds."""
    dataset = get_toy_dataset(args.dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    # Cosine decay of the learning rate to zero over the run: on 2-D data it sharpens the one-step map
    # markedly (benchmarks/results/quality.md).
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, args.steps) / args.steps))
    )
    ema = EMA(model, decay=EMA_DECAY)
    progress.set_description(label)
    start = time.perf_counter()
    for _ in range(args.steps):
        data = dataset(args.batch_size, generator=generator)
        loss = loss_fn(model, data, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay.step()
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
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    config = SoFlowConfig.lowdim(total_steps=args.steps)
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
        dataset(args.eval_points, generator=g),
        dataset(args.eval_points, generator=g),
        torch.randn(args.eval_points, 2, generator=g),
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
        "eval_points": args.eval_points,
        "train_seconds": {"soflow": seconds_soflow, "flow_matching": seconds_fm},
        "soflow_config": {k: v for k, v in dataclasses.asdict(config).items() if k != "guidance"},
        "learning_rate": {"peak": LEARNING_RATE, "schedule": "cosine to 0"},
        "metrics": metrics,
    }
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    plot({"data": data, **samples}, args.out / "samples.png", f"{args.dataset}, {args.steps} training steps")

    evaluations = {"SoFlow, 1 NFE": "1", "SoFlow, 2 NFE": "2", "flow matching, 100 Euler steps": "100"}
    print(f"\n{args.dataset}: {args.eval_points} samples against fresh data (lower is better)")
    print(f"{'':32s} {'evaluations':>11s} {'energy distance':>16s} {'sliced W2':>10s}")
    for name, values in metrics.items():
        print(
            f"{name:32s} {evaluations.get(name, ''):>11s} "
            f"{values['energy_distance']:16.5f} {values['sliced_wasserstein']:10.4f}"
        )
    print(
        "(the noise floor is the distance between two independent data samples of the same size: "
        "values that close to it are as good as this sample size can tell)"
    )
    print(f"training: SoFlow {seconds_soflow:.0f} s, flow matching {seconds_fm:.0f} s")
    print(f"wrote {args.out / 'samples.png'} and {args.out / 'metrics.json'}")
    return report


if __name__ == "__main__":
    main()
