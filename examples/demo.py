"""Train a one-step SoFlow model on a 2-D toy and compare it with 100-step flow matching.

This is what `make demo` runs. On two CPU cores it

1. trains SoFlow (a small MLP wrapped by `SolutionFlowWrapper`, objective `SoFlowLoss` with the
   low-dimensional preset `SoFlowConfig.lowdim()`) on a built-in 2-D dataset, and, at the same time in
   a second process, a flow-matching model of the same size for the same number of steps (the same
   wrapper and backbone trained with `flow_matching_loss` alone), to be sampled with 100 Euler steps;
2. draws 10,000 points from each and writes `samples.png` (data | SoFlow 1 NFE | SoFlow 2 NFE |
   flow matching 100 steps) and `metrics.json` to the output folder;
3. prints, for each sample and for a second sample of fresh data (the noise floor), the share of
   points on the data's support (checkerboard: on the black squares), the share of modes covered and
   the energy distance to fresh data.

Both models use Adam with a cosine learning-rate decay to 0 and are evaluated with an EMA of their
weights with warm-up (`EMA(..., warmup=True)`). Only the public API is used (`soflow_toolkit` and
`soflow_toolkit.toy`), so the script doubles as a worked example. Usage:

    python examples/demo.py                        # checkerboard, default budget
    python examples/demo.py --dataset ring --steps 8000 --out outputs/ring
    python examples/demo.py --jobs 1               # train the two models one after the other
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
from soflow_toolkit.toy import (
    NUM_MODES,
    TOY_DATASETS,
    MLPBackbone,
    assign_modes,
    get_toy_dataset,
    sliced_energy_distance,
    support_scores,
)

DEPTH, LEARNING_RATE, EMA_DECAY, TIME_SCALE = 4, 2e-3, 0.999, 1000.0
FLOOR_NOTE = (
    "The energy distance is estimated without bias: two samples of the same distribution give values "
    "scattered around 0, negative about half of the time. The noise floor row is such a pair (two "
    "independent data samples); a model within about that distance of 0 is as close as this sample "
    "size can tell, and a negative value means exactly that."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="checkerboard", choices=sorted(TOY_DATASETS))
    parser.add_argument("--steps", type=int, default=7000, help="training steps of each model")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=128, help="width of the MLP backbone")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-points", type=int, default=10_000, help="samples drawn from each model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per training process")
    parser.add_argument(
        "--jobs", type=int, default=2, choices=[1, 2], help="2: train the two models in parallel processes"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1; got {args.steps}")
    if args.batch_size < 2 or args.eval_points < 2 or args.threads < 1 or args.hidden < 1:
        parser.error("--batch-size and --eval-points must be >= 2, --threads and --hidden >= 1")
    return args


LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def make_loss(kind: str, steps: int) -> LossFn:
    """SoFlow's objective with the low-dimensional preset, or plain flow matching."""
    if kind == "soflow":
        objective = SoFlowLoss(SoFlowConfig.lowdim(total_steps=steps))
        return lambda model, data, g: objective(model, data, generator=g).loss

    def fm_loss(model: nn.Module, data: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        noise = torch.randn(data.shape, generator=g)
        t = uniform_times(data.shape[0], generator=g)
        return flow_matching_loss(model, data, noise, t, p=0.0).loss  # plain flow matching

    return fm_loss


def train(kind: str, options: dict[str, Any], position: int) -> tuple[dict[str, torch.Tensor], float, float]:
    """Adam + cosine decay + EMA with warm-up for `steps` steps; returns the EMA weights, wall and CPU seconds."""
    from tqdm import tqdm

    torch.set_num_threads(options["threads"])
    torch.manual_seed(options["seed"])  # initial weights only; every training draw goes through a generator
    model = SolutionFlowWrapper(MLPBackbone(2, hidden=options["hidden"], depth=DEPTH, time_scale=TIME_SCALE))
    steps, batch = options["steps"], options["batch_size"]
    dataset = get_toy_dataset(options["dataset"])
    generator = torch.Generator().manual_seed(options["seed"] + (1 if kind == "soflow" else 2))
    loss_fn = make_loss(kind, steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    # Cosine decay of the learning rate to zero over the run: on 2-D data it sharpens the one-step map.
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, steps) / steps))
    )
    ema = EMA(model, decay=EMA_DECAY, warmup=True)
    label = "SoFlow" if kind == "soflow" else "flow matching"
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in tqdm(range(steps), desc=label, unit="step", position=position, dynamic_ncols=True, leave=True):
        loss = loss_fn(model, dataset(batch, generator=generator), generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay.step()
        ema.update(model)
    ema.copy_to(model)
    return model.state_dict(), time.perf_counter() - start, time.process_time() - start_cpu


def plot(panels: dict[str, torch.Tensor], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), constrained_layout=True)
    for ax, (name, points) in zip(axes, panels.items(), strict=True):
        xy = points.numpy()
        ax.scatter(xy[:, 0], xy[:, 1], s=0.5, alpha=0.4, color="C0", linewidths=0, rasterized=True)
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xticks=[], yticks=[], title=name)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    options = {k: getattr(args, k) for k in ("dataset", "steps", "batch_size", "hidden", "seed", "threads")}
    start = time.perf_counter()
    if args.jobs == 2:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train, kind, options, i) for i, kind in enumerate(("soflow", "fm"))]
            trained = [future.result() for future in futures]
    else:
        trained = [train(kind, options, 0) for kind in ("soflow", "fm")]
    wall = time.perf_counter() - start
    models = []
    for state, _, _ in trained:
        model = SolutionFlowWrapper(MLPBackbone(2, hidden=args.hidden, depth=DEPTH, time_scale=TIME_SCALE))
        model.load_state_dict(state)
        models.append(model.eval())
    soflow, fm = models

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

    def scores(points: torch.Tensor) -> dict[str, float]:
        on_support, coverage = support_scores(assign_modes(args.dataset, points), NUM_MODES[args.dataset])
        return {
            "on_support": float(on_support),
            "modes_covered": float(coverage),
            "energy_distance": float(sliced_energy_distance(points, fresh, num_projections=64)),
        }

    metrics = {name: scores(points) for name, points in samples.items()}
    metrics["noise floor (data vs data)"] = scores(data)
    config = SoFlowConfig.lowdim(total_steps=args.steps)
    report = {
        "dataset": args.dataset,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "seed": args.seed,
        "eval_points": args.eval_points,
        "soflow_1nfe_on_support": metrics["SoFlow, 1 NFE"]["on_support"],
        "train_seconds": {"soflow": trained[0][1], "flow_matching": trained[1][1], "wall": wall},
        "train_cpu_seconds": {"soflow": trained[0][2], "flow_matching": trained[1][2]},
        "soflow_config": {k: v for k, v in dataclasses.asdict(config).items() if k != "guidance"},
        "optimizer": {
            "learning_rate": LEARNING_RATE,
            "schedule": "cosine to 0",
            "ema": EMA_DECAY,
            "ema_warmup": True,
        },
        "time_scale": TIME_SCALE,
        "metrics": metrics,
        "energy_distance_note": FLOOR_NOTE,
    }
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    plot({"data": data, **samples}, args.out / "samples.png", f"{args.dataset}, {args.steps} training steps")

    evaluations = {"SoFlow, 1 NFE": "1", "SoFlow, 2 NFE": "2", "flow matching, 100 Euler steps": "100"}
    print(f"\n{args.dataset}: {args.eval_points} samples against fresh data")
    print(f"{'':32s} {'evaluations':>11s} {'on support':>10s} {'modes':>6s} {'energy distance':>16s}")
    for name, values in metrics.items():
        print(
            f"{name:32s} {evaluations.get(name, ''):>11s} {100 * values['on_support']:9.1f}% "
            f"{100 * values['modes_covered']:5.0f}% {values['energy_distance']:16.6f}"
        )
    print(
        f"\nSoFlow, 1 NFE: {100 * metrics['SoFlow, 1 NFE']['on_support']:.1f}% of the samples on the support."
    )
    print(FLOOR_NOTE)
    print(
        f"training: {wall:.0f} s wall for both models ({'in parallel' if args.jobs == 2 else 'one after the other'}); "
        f"CPU time SoFlow {trained[0][2]:.0f} s, flow matching {trained[1][2]:.0f} s"
    )
    print(f"wrote {args.out / 'samples.png'} and {args.out / 'metrics.json'}")
    return report


if __name__ == "__main__":
    main()
