"""Train an unconditional UNet with SoFlow on CIFAR-10 (the paper's recipe).

    torchrun --nproc-per-node=8 train.py --data /data/cifar-10-batches-py --out runs/cifar10

Official recipe: `SoFlowConfig.cifar10()` (consistency loss only, p = 0.75, eps = 1e-3, curriculum r
1 -> 0.0003125 over the run), RAdam lr 1e-4, betas (0.9, 0.999), EMA 0.9999 applied every 16 steps
in float64, global batch 1024, 800k steps. The network is `soflow_toolkit.models.UNet`, the official
SoFlow UNet (EDM's DDPM++ layout, dropout 0.3; see `network.py`). The online and target passes of the
consistency loss see the same dropout masks (the objective restores the random state, as the
official code does).

Outputs, resuming, `--stop-at` and `--smoke` work as in `examples/imagenet/train.py`:
`config.json`, `metrics.csv` (and TensorBoard if installed), `checkpoints/ckpt-<step>.pt`,
`samples/step-<step>-nfe{1,2}.png`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar import load_cifar10, random_hflip, to_model_range
from common.checkpoint import TrainState
from common.config import run_config, soflow_config, training_parser
from common.distributed import DistInfo, cleanup, data_parallel, setup
from common.images import save_grid, to_uint8
from common.metrics import LossMeter, MetricLog
from common.sampler import ResumableSampler
from network import build_unet

from soflow_toolkit import EMA, SoFlowLoss, SolutionFlowWrapper, sample

HERE = Path(__file__).resolve().parent
DEFAULTS: dict[str, Any] = {
    # Overrides of soflow_toolkit.models.UNetConfig; the defaults are the official network. Its
    # augmentation-label input stays off until an augmentation pipeline feeds it labels.
    "unet": {"augment_dim": 0},
    "global_batch": 1024,
    "steps": 800_000,
    "lr": 1e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "ema_decay": 0.9999,
    "ema_every": 16,
    "soflow": {},  # overrides of SoFlowConfig.cifar10() fields
    "hflip": False,
    "seed": 0,
    "bf16": False,
    "compile": False,
    "log_every": 100,
    "ckpt_every": 10_000,
    "keep": 3,
    "sample_every": 10_000,
}
RESUME_MUST_MATCH = ("unet", "global_batch", "seed", "hflip", "ema_every")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return training_parser(__doc__, data_help="cifar-10-batches-py (or its parent folder)").parse_args(argv)


@torch.no_grad()
def save_grids(
    model: SolutionFlowWrapper, ema: EMA, noise: torch.Tensor, seed: int, out: Path, step: int
) -> None:
    """1- and 2-NFE samples of the EMA weights on fixed noise, as PNG grids."""
    ema.copy_to(model)
    for nfe in (1, 2):
        generator = torch.Generator(noise.device).manual_seed(seed)
        images = sample(model, noise, steps=nfe, generator=generator)
        save_grid(to_uint8(images), out / "samples" / f"step-{step:07d}-nfe{nfe}.png", nrow=8)


def train(config: dict[str, Any], info: DistInfo) -> None:
    out, device = Path(config["out"]), info.device
    images, _ = load_cifar10(config["data"])
    images = images.to(device)  # 150 MB of uint8 for the 50,000 training images
    if config["global_batch"] % info.world_size:
        raise ValueError(f"global batch {config['global_batch']} is not divisible by {info.world_size} ranks")
    batch = config["global_batch"] // info.world_size
    rank_seed = config["seed"] * 100_003 + info.rank
    torch.manual_seed(rank_seed)  # the global generators: dropout masks
    generators = {
        "augment": torch.Generator(device).manual_seed(3 * rank_seed + 1),
        "objective": torch.Generator(device).manual_seed(3 * rank_seed + 2),
    }

    model = SolutionFlowWrapper(build_unet(config)).to(device)
    ema = EMA(model, decay=config["ema_decay"], every=config["ema_every"], dtype=torch.float64)
    optimizer = torch.optim.RAdam(
        model.parameters(), lr=config["lr"], betas=tuple(config["betas"]), weight_decay=config["weight_decay"]
    )
    objective = SoFlowLoss(soflow_config("cifar10", config["steps"], config["soflow"]))
    sampler = ResumableSampler(
        len(images), batch, rank=info.rank, world_size=info.world_size, seed=config["seed"]
    )
    state = TrainState(
        model=model,
        ema=ema,
        optimizer=optimizer,
        objective=objective,
        sampler=sampler,
        generators=generators,
        config=config,
        dist=info,
    )
    ckpt_dir = out / "checkpoints"
    start = 0 if config["no_resume"] else state.resume(ckpt_dir, must_match=RESUME_MUST_MATCH)
    state.save_config(out)

    net = data_parallel(model, info)
    if config["compile"]:
        model.backbone.compile()  # compiles in place: parameter names (checkpoints, EMA) are unchanged
    log = MetricLog(out, resume_step=start, enabled=info.is_main)
    grid_model, grid_noise = None, None
    if info.is_main and config["sample_every"] > 0:
        grid_model = SolutionFlowWrapper(build_unet(config)).to(device).eval()
        grid_noise = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(config["seed"])).to(
            device
        )
    stop = min(config["stop_at"] or config["steps"], config["steps"])
    meter, began = LossMeter(device), time.perf_counter()
    progress = tqdm(
        total=stop, initial=start, disable=config["no_progress"] or not info.is_main, desc="train"
    )
    net.train()
    for step in range(start, stop):
        indices = torch.tensor(sampler.batch(sampler.position), device=device)
        data = to_model_range(images[indices])
        if config["hflip"]:
            data = random_hflip(data, generators["augment"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["bf16"]):
            out_step = objective(net, data, generator=generators["objective"])
        optimizer.zero_grad(set_to_none=True)
        out_step.loss.backward()
        optimizer.step()
        ema.update(model)
        sampler.position += 1
        meter.update(out_step, batch)
        done = step + 1
        progress.update()
        if done % config["log_every"] == 0 or done == stop:
            row = {"step": done, **meter.summary(info.world_size), "r": out_step.r}
            row.update(lr=optimizer.param_groups[0]["lr"], elapsed_s=time.perf_counter() - began)
            log.log(row)
            progress.set_postfix(sc_mse=f"{row['sc_mse']:.4f}")
            meter.reset()
        if done % config["ckpt_every"] == 0 or done == stop:
            state.save(ckpt_dir, done, keep=config["keep"])
        if (
            grid_model is not None
            and grid_noise is not None
            and (done % config["sample_every"] == 0 or done == stop)
        ):
            save_grids(grid_model, ema, grid_noise, config["seed"], out, done)
    progress.close()
    log.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = run_config(args, DEFAULTS, HERE / "configs" / "smoke.json")
    info = setup(args.device)
    try:
        train(config, info)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
