"""Train a class-conditional latent DiT with SoFlow on ImageNet 256 (the paper's recipe).

    torchrun --nproc-per-node=8 train.py --config configs/B-4.json --data /data/in256-latents --out runs/B-4

Official recipe: `SoFlowConfig.imagenet()` (75% flow matching, p = 1, eps = 0.01, training-time CFG
with scale 3, drop 0.1, mix 0.25, decay 0.8; curriculum r 0.1 -> 0.002 over the run), AdamW lr 1e-4,
betas (0.9, 0.99), no weight decay, constant lr, EMA 0.9999 every step, global batch 256. Latents are
drawn from the stored VAE posterior as 0.18215 * (mean + std * eps) at every step.

The run writes to `--out`: `config.json`, `metrics.csv` (and TensorBoard if installed),
`checkpoints/ckpt-<step>.pt` (every `ckpt_every` steps and at the end; a restarted command resumes
from the latest one exactly: model, EMA, optimizer, curriculum step, data position, every rank's RNG)
and `samples/step-<step>-nfe{1,2}.png` grids from the EMA weights. `--stop-at K` ends the job at step
K with a checkpoint (for clusters with time limits); `--smoke` trains a tiny DiT for a few steps.

The network is `soflow_toolkit.models.DiT`, architecture-identical to the official SoFlow DiT (times t
and t - s embedded as they are, in [0, 1]; the official positional layout), on the official Linear path
with the Euler parametrization; float32 with TF32 matmuls, as the official run.

`--init-official SOURCE` (an official run folder, a `ckpts/<step>.pt` or `hf:zlab-princeton/SoFlow/XL-2-cond`)
builds the network, path and parametrization of the official checkpoint and fine-tunes its EMA weights
(fresh optimizer, step 0); with `--continue-official` it continues the official run instead (raw weights,
EMA, optimizer moments and step `finished_steps`, as the official train.py resumes). See
`examples/common/official.py`.

`--init-fm SOURCE` starts from a flow-matching model instead: a SiT checkpoint (SiT's `train.py`
checkpoint, its EMA weights, or a bare state dict such as the released `SiT-XL-2-256x256.pt`) in SiT's /
DiT's layout. `soflow_toolkit.sit` folds SiT's time direction (1 = data) and sign (velocity data - noise)
into the weights and starts the t - s embedder at zero, so step 0 samples the pretrained flow (one
Euler step per network evaluation) and SoFlow fine-tunes it into a one-step model (fresh optimizer,
step 0). The size is read from the checkpoint's shapes (one of `DIT_SIZES`); the path stays the
config's (`linear`, SiT's default; `"path": "trig"` for a SiT trained with `--path-type GVP`).
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

from common.checkpoint import TrainState
from common.config import run_config, set_tf32, soflow_config, training_parser
from common.distributed import DistInfo, data_parallel, distributed_context
from common.images import save_grid, to_uint8
from common.metrics import LossMeter, MetricLog
from common.official import OfficialStart, check_backbone, dit_size, official_start, resumes_instead
from common.sampler import ResumableSampler
from data import LATENT_SCALE, LatentDataset, sample_latents

from soflow_toolkit import EMA, SoFlowLoss, SolutionFlowWrapper, sample
from soflow_toolkit.models import DIT_SIZES, DiT, DiTConfig
from soflow_toolkit.sit import from_sit_state_dict, read_sit_checkpoint, sit_config

HERE = Path(__file__).resolve().parent
DEFAULTS: dict[str, Any] = {
    "model": "B/4",
    "path": "linear",  # official noising_type Linear
    "parametrization": "euler",  # official coefficient_type Euler
    "global_batch": 256,
    "steps": 400_000,
    "lr": 1e-4,
    "betas": [0.9, 0.99],
    "weight_decay": 0.0,
    "ema_decay": 0.9999,
    "soflow": {},  # overrides of SoFlowConfig.imagenet(), e.g. {"curriculum": {"kind": "const"}}
    "hflip": False,  # the official pipeline does not flip (latents of centre crops, used as they are)
    "seed": 42,
    "bf16": False,
    "tf32": True,  # the official run trains in float32 with TF32 matmuls
    "compile": False,
    "num_workers": 8,
    "log_every": 100,
    "ckpt_every": 25_000,
    "keep": 3,
    "sample_every": 1_000,
    "vae": None,  # for sample grids; default: the VAE that encoded the latents
    "init_official": None,  # an official checkpoint to start from (see --init-official)
    "official_step": None,
    "continue_official": False,
    "init_fm": None,  # a SiT-layout flow-matching checkpoint to start from (see --init-fm)
}
GRID_CLASSES = [207, 360, 387, 974, 88, 979, 417, 279]  # ImageNet classes shown in the sample grids
RESUME_MUST_MATCH = ("model", "path", "parametrization", "num_classes", "global_batch", "seed", "hflip")
NETWORK_KEYS = (
    "model",
    "path",
    "parametrization",
    "num_classes",
    "null_class",
)  # what an official source sets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = training_parser(__doc__, data_help="folder written by extract_latents.py")
    p.add_argument("--model", choices=sorted(DIT_SIZES))
    p.add_argument("--num-workers", type=int, help="data loading workers per rank")
    p.add_argument("--vae", help="VAE for the sample grids (Hub name or folder)")
    p.add_argument(
        "--init-fm",
        metavar="SOURCE",
        help="start from a flow-matching checkpoint in SiT's layout (SiT's train.py checkpoint or a state dict)",
    )
    return p.parse_args(argv)


class SampleGrids:
    """PNG grids of 1- and 2-NFE samples from the EMA weights, on fixed noise and labels (main rank)."""

    def __init__(
        self, config: dict[str, Any], dataset: LatentDataset, device: torch.device, out: Path
    ) -> None:
        from vae import load_vae

        self.vae = load_vae(config["vae"], device)
        self.model = build_model(config).to(device).eval()
        c, h, w = dataset.latent_shape
        n = len(GRID_CLASSES) * 2
        generator = torch.Generator().manual_seed(config["seed"])
        self.noise = torch.randn(n, c, h, w, generator=generator).to(device)
        classes = GRID_CLASSES if config["num_classes"] == 1000 else range(dataset.num_classes)
        self.labels = torch.tensor(list(classes), device=device).repeat(n)[:n]
        self.seed = config["seed"]
        self.out = out / "samples"

    @torch.no_grad()
    def __call__(self, ema: EMA, step: int) -> None:
        ema.copy_to(self.model)
        for nfe in (1, 2):
            generator = torch.Generator(self.noise.device).manual_seed(self.seed)
            latents = sample(self.model, self.noise, steps=nfe, cond=self.labels, generator=generator)
            images = self.vae.decode(latents / LATENT_SCALE).sample
            save_grid(to_uint8(images), self.out / f"step-{step:07d}-nfe{nfe}.png", nrow=len(GRID_CLASSES))


def build_model(config: dict[str, Any]) -> SolutionFlowWrapper:
    """The DiT a run config describes (`model`, `latent_shape`, `num_classes`, path, parametrization)."""
    c, h, _ = config["latent_shape"]
    backbone = DiT.from_size(
        config["model"],
        input_size=h,
        in_channels=c,
        num_classes=config["num_classes"],
        null_class=config.get("null_class", True),
    )
    return SolutionFlowWrapper(backbone, path=config["path"], parametrization=config["parametrization"])


def use_official_network(config: dict[str, Any], info: DistInfo) -> OfficialStart | None:
    """With `--init-official`: take the network from the official checkpoint (or from the run's own
    config.json when the run resumes its own checkpoints); the official start, if the run starts now."""
    return official_start(config, info, NETWORK_KEYS, lambda net: describe_official_dit(net, config))


def check_fits_data(cfg: DiTConfig, config: dict[str, Any], network: str) -> None:
    """A DiT that starts the run must take the run's latents and know at least its classes."""
    shape = [cfg.in_channels, cfg.input_size, cfg.input_size]
    if shape != list(config["latent_shape"]):
        raise ValueError(f"{network} takes latents {shape}, the data has {config['latent_shape']}")
    if config["num_classes"] > cfg.num_classes:
        raise ValueError(f"the data has {config['num_classes']} classes, {network} {cfg.num_classes}")


def describe_official_dit(net: SolutionFlowWrapper, config: dict[str, Any]) -> dict[str, Any]:
    """Check the official DiT against the run's latents and classes; the config entries recording it."""
    check_backbone(net.backbone, DiT, "examples/imagenet", "use examples/cifar10 for the UNet")
    cfg = net.backbone.config
    check_fits_data(cfg, config, "the official network")
    return {
        "model": dit_size(net.backbone),
        "path": net.path.name,
        "parametrization": net.parametrization.name,
        "num_classes": cfg.num_classes,
        "null_class": cfg.null_class,
    }


def use_fm_network(config: dict[str, Any], info: DistInfo) -> dict[str, torch.Tensor] | None:
    """With `--init-fm`: the SiT state dict to start from, after setting the config's size and classes
    from its shapes (None when the run resumes its own checkpoints: the source is not read again)."""
    if not config["init_fm"]:
        return None
    if config["init_official"]:
        raise ValueError("--init-fm and --init-official are two starts: give one of them")
    if resumes_instead(config, info, NETWORK_KEYS, config["init_fm"]):
        return None
    state = read_sit_checkpoint(config["init_fm"])
    read = sit_config(state, num_heads=1)  # the shapes (the heads are not stored: the size gives them)
    patch, hidden, depth = read.patch_size, read.hidden_size, read.depth
    sizes = [name for name, (p, h, d, _) in DIT_SIZES.items() if (p, h, d) == (patch, hidden, depth)]
    if not sizes:
        raise ValueError(
            f"the flow-matching checkpoint has patch {patch}, width {hidden}, depth {depth}: not one of "
            f"DIT_SIZES {list(DIT_SIZES)}"
        )
    cfg = sit_config(state, num_heads=DIT_SIZES[sizes[0]][3])
    check_fits_data(cfg, config, "the flow-matching network")
    config.update(model=sizes[0], num_classes=cfg.num_classes, null_class=cfg.null_class)
    if info.is_main:
        print(f"fine-tuning the flow-matching model {config['init_fm']} ({sizes[0]}) with SoFlow", flush=True)
    return state


def train(config: dict[str, Any], info: DistInfo) -> None:
    out, device = Path(config["out"]), info.device
    dataset = LatentDataset(config["data"])
    config.update(
        num_classes=dataset.num_classes,
        latent_shape=list(dataset.latent_shape),
        image_size=dataset.info["image_size"],
    )
    config["vae"] = config["vae"] or dataset.info["vae"]
    if not config["init_official"] and (config["continue_official"] or config["official_step"] is not None):
        raise ValueError("--continue-official and --official-step go with --init-official SOURCE")
    fm_state = use_fm_network(config, info)
    official = use_official_network(config, info)
    set_tf32(config["tf32"])
    if config["global_batch"] % info.world_size:
        raise ValueError(f"global batch {config['global_batch']} is not divisible by {info.world_size} ranks")
    batch = config["global_batch"] // info.world_size
    rank_seed = config["seed"] * 100_003 + info.rank
    torch.manual_seed(rank_seed)  # the global generators (used by random layers, if any)
    generators = {
        "latents": torch.Generator(device).manual_seed(3 * rank_seed + 1),
        "objective": torch.Generator(device).manual_seed(3 * rank_seed + 2),
    }

    model = build_model(config).to(device)
    if official is not None:
        if info.is_main:
            print(official.describe(config["steps"]), flush=True)
        official.init_weights(model)
    if fm_state is not None:
        model.backbone.load_state_dict(from_sit_state_dict(fm_state, model.backbone), strict=True)
    ema = EMA(model, decay=config["ema_decay"])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["lr"], betas=tuple(config["betas"]), weight_decay=config["weight_decay"]
    )
    objective = SoFlowLoss(soflow_config("imagenet", config["steps"], config["soflow"]))
    sampler = ResumableSampler(
        len(dataset), batch, rank=info.rank, world_size=info.world_size, seed=config["seed"]
    )
    guidance = objective.config.guidance
    if not model.backbone.config.null_class and (guidance.enabled or guidance.drop_rate > 0):
        raise ValueError(
            "the network has no null class (the official run dropped no labels), but training-time "
            'guidance drops labels: set "soflow": {"guidance": {"scale": 1.0, "drop_rate": 0.0}}'
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
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,  # starts at the restored data position
        num_workers=config["num_workers"],
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(rank_seed),  # worker seeds; keeps the global RNG untouched
    )
    log = MetricLog(out, resume_step=start, enabled=info.is_main)
    grids = SampleGrids(config, dataset, device, out) if info.is_main and config["sample_every"] > 0 else None
    stop = min(config["stop_at"] or config["steps"], config["steps"])
    meter, began = LossMeter(device), time.perf_counter()
    progress = tqdm(
        total=stop, initial=start, disable=config["no_progress"] or not info.is_main, desc="train"
    )
    null_class = config["num_classes"]  # the model's null row (an official network may have more classes)
    net.train()
    batches = iter(loader)
    for step in range(start, stop):
        moments, labels = next(batches)
        moments = moments.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        latents = sample_latents(moments, generator=generators["latents"], hflip=config["hflip"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["bf16"]):
            out_step = objective(
                net, latents, labels, null_cond=null_class, generator=generators["objective"]
            )
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
            progress.set_postfix(fm_mse=f"{row['fm_mse']:.4f}", sc_mse=f"{row['sc_mse']:.4f}")
            meter.reset()
        if done % config["ckpt_every"] == 0 or done == stop:
            state.save(ckpt_dir, done, keep=config["keep"])
        if grids is not None and (done % config["sample_every"] == 0 or done == stop):
            grids(ema, done)
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
