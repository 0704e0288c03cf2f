"""Train an unconditional UNet with SoFlow on CIFAR-10 (the paper's recipe).

    torchrun --nproc-per-node=8 train.py --data /data/cifar-10-batches-py --out runs/cifar10

Official recipe: `SoFlowConfig.cifar10()` (consistency loss only, p = 0.75, eps = 1e-3, curriculum r
1 -> 0.0003125 over the run), RAdam lr 1e-4, betas (0.9, 0.999), EMA 0.9999 per step applied every 16
steps (as 0.9999^16) in float64, global batch 1024, 800k steps, float32 with TF32 matmuls. The network
is `soflow_toolkit.models.UNet`, the official SoFlow UNet (EDM's DDPM++ layout, dropout 0.3; see
`network.py`), on the Linear path with the Euler parametrization. Every batch goes through EDM's
non-leaking augmentation with the official settings (`soflow_toolkit.augment.AugmentPipe`: p = 0.12,
x-flip, isotropic and anisotropic scaling, fractional translation) and its 6 labels are fed to the
UNet (`augment_labels`); samples are drawn with no labels (no augmentation). The online and target
passes of the consistency loss see the same dropout masks (the objective restores the random state,
as the official code does).

`--init-official SOURCE` (an official run folder, a `ckpts/<step>.pt` or `hf:zlab-princeton/SoFlow/UNet-uncond`)
fine-tunes the official checkpoint's EMA weights (fresh optimizer, step 0); with `--continue-official`
it continues the official run (raw weights, EMA, optimizer moments, step), see
`examples/common/official.py`.

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
from common.config import run_config, set_tf32, soflow_config, training_parser
from common.distributed import DistInfo, data_parallel, distributed_context
from common.images import save_grid, to_uint8
from common.metrics import LossMeter, MetricLog
from common.official import (
    OfficialStart,
    check_backbone,
    official_start,
    unet_overrides,
)
from common.sampler import ResumableSampler
from network import build_augment, build_model

from soflow_toolkit import EMA, SoFlowLoss, SolutionFlowWrapper, sample
from soflow_toolkit.augment import AUGMENT_DIM, AugmentPipe
from soflow_toolkit.models import UNet

HERE = Path(__file__).resolve().parent
DEFAULTS: dict[str, Any] = {
    "unet": {},  # overrides of soflow_toolkit.models.UNetConfig; {} is the official network
    "path": "linear",  # official noising_type Linear
    "parametrization": "euler",  # official coefficient_type Euler
    # Overrides of soflow_toolkit.augment.AugmentPipe; {} is the official augmentation, null turns it off
    # (the UNet's augmentation input, if any, then gets zeros).
    "augment": {},
    "global_batch": 1024,
    "steps": 800_000,
    "lr": 1e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "ema_decay": 0.9999,  # per step; the average moves by ema_decay ** ema_every every ema_every steps
    "ema_every": 16,
    "soflow": {},  # overrides of SoFlowConfig.cifar10(), e.g. {"curriculum": {"kind": "const"}}
    "hflip": False,  # extra random flips; the augmentation already mirrors half the images
    "seed": 42,
    "bf16": False,
    "tf32": True,  # the official run trains in float32 with TF32 matmuls
    "compile": False,
    "log_every": 100,
    "ckpt_every": 25_000,
    "keep": 3,
    "sample_every": 1_000,
    "init_official": None,  # an official checkpoint to start from (see --init-official)
    "official_step": None,
    "continue_official": False,
}
RESUME_MUST_MATCH = (
    "unet",
    "path",
    "parametrization",
    "augment",
    "global_batch",
    "seed",
    "hflip",
    "ema_every",
)
NETWORK_KEYS = ("unet", "path", "parametrization")  # what an official source sets


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


def use_official_network(config: dict[str, Any], info: DistInfo) -> OfficialStart | None:
    """With `--init-official`: take the network from the official checkpoint (or from the run's own
    config.json when the run resumes its own checkpoints); the official start, if the run starts now."""
    return official_start(config, info, NETWORK_KEYS, describe_official_unet)


def describe_official_unet(net: SolutionFlowWrapper) -> dict[str, Any]:
    """Check that the official network is a UNet for CIFAR-10's images; the config entries recording it."""
    check_backbone(net.backbone, UNet, "examples/cifar10", "use examples/imagenet for the DiT")
    cfg = net.backbone.config
    if (cfg.in_channels, cfg.image_size) != (3, 32):
        raise ValueError(
            f"the official UNet takes {cfg.in_channels} x {cfg.image_size} x {cfg.image_size} images; "
            "CIFAR-10 has 3 x 32 x 32"
        )
    return {"unet": unet_overrides(cfg), "path": net.path.name, "parametrization": net.parametrization.name}


def augment_batch(
    augment: AugmentPipe | None, data: torch.Tensor, augment_dim: int, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """Augmented images and the condition that feeds their labels to the UNet (`augment_labels`).

    Without augmentation the UNet's augmentation input (if it has one) gets zeros, what it gets at
    sampling time.
    """
    if augment is not None:
        data, labels = augment(data, generator=generator)
    else:
        labels = torch.zeros(data.shape[0], AUGMENT_DIM, dtype=data.dtype, device=data.device)
    if augment_dim == 0:
        if augment is not None:
            raise ValueError(
                'the augmentation needs a UNet with augmentation labels ("unet": {"augment_dim": 6}); '
                'set "augment": null to train without it'
            )
        return data, None
    if augment_dim != labels.shape[1]:
        raise ValueError(
            f"the UNet takes {augment_dim} augmentation labels; the pipeline makes {labels.shape[1]}"
        )
    return data, {"augment_labels": labels}


def train(config: dict[str, Any], info: DistInfo) -> None:
    out, device = Path(config["out"]), info.device
    if not config["init_official"] and (config["continue_official"] or config["official_step"] is not None):
        raise ValueError("--continue-official and --official-step go with --init-official SOURCE")
    official = use_official_network(config, info)
    set_tf32(config["tf32"])
    augment = build_augment(config)
    if augment is not None and config["hflip"] and augment.xflip > 0:
        raise ValueError("the augmentation already mirrors images (x-flip): turn --hflip off")
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

    model = build_model(config).to(device)
    if official is not None:
        if info.is_main:
            print(official.describe(config["steps"]), flush=True)
        official.init_weights(model)
    augment_dim = model.backbone.config.augment_dim
    # The official update every 16 steps uses decay ** 16: the same horizon as ema_decay every step.
    every = config["ema_every"]
    ema = EMA(model, decay=config["ema_decay"] ** every, every=every, dtype=torch.float64)
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
    if official is not None and official.continue_run:
        start = official.continue_state(model, ema, optimizer, objective, sampler, config["steps"])
    state.save_config(out)

    net = data_parallel(model, info)
    if config["compile"]:
        model.backbone.compile()  # compiles in place: parameter names (checkpoints, EMA) are unchanged
    log = MetricLog(out, resume_step=start, enabled=info.is_main)
    grid_model, grid_noise = None, None
    if info.is_main and config["sample_every"] > 0:
        grid_model = build_model(config).to(device).eval()
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
        data, cond = augment_batch(augment, data, augment_dim, generators["augment"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["bf16"]):
            out_step = objective(net, data, cond, generator=generators["objective"])
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
    # The DDP module lives and dies inside train(): released before the group is destroyed.
    with distributed_context(args.device) as info:
        train(config, info)


if __name__ == "__main__":
    main()
