"""Sample a latent DiT in 1, 2 or N steps and write an `.npz` for FID evaluation.

    torchrun --nproc-per-node=8 sample.py --official hf:zlab-princeton/SoFlow/XL-2-cond --nfe 1 --out samples/XL-2-nfe1.npz
    torchrun --nproc-per-node=8 sample.py --ckpt runs/B-4 --nfe 1 --out samples/B-4-nfe1.npz

`--official SOURCE` samples an official SoFlow checkpoint (`soflow_toolkit.pretrained.load_official`:
an official run folder, a `ckpts/<step>.pt` or a hub reference; the newest step unless
`--official-step`); `--ckpt` the latest checkpoint of a run folder of `train.py` (or a given
`ckpt-*.pt`). Both use the EMA weights unless `--weights model`. The `--num-samples` (50,000) class
labels are drawn as the official inference draws them, uniformly at random (`--labels balanced`: each
class `N / num_classes` times, shuffled). Latents come from SoFlow's sampler (`--nfe` network
evaluations; no guidance at sampling time, it was learned), are decoded with the SD-VAE
(latent / 0.18215; `stabilityai/sd-vae-ft-mse` for official checkpoints) and written as `arr_0`: uint8
`(N, 256, 256, 3)` plus `labels`, the format of the ADM evaluator's sample batches, with a PNG grid of
the first 64. Batch `j` of the run uses noise seeded by `(seed, j)`, so for a given `--batch-size` the
output does not depend on the number of ranks. With `--fid-ref` (an `.npz` of real images, e.g. the
ADM reference batch, whose stored statistics are then used) it also prints a FID computed with
`soflow_toolkit.fid` (the `fid` extra; see docs/guides/evaluation.md for how it relates to the ADM
evaluator's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.checkpoint import latest_checkpoint, load_checkpoint, load_weights
from common.config import sampling_parser, set_tf32
from common.distributed import DistInfo, distributed_context
from common.images import to_uint8, write_samples_npz
from common.official import check_backbone, load_located, locate
from data import LATENT_SCALE
from vae import DEFAULT_VAE, TINY_VAE, decode_latents, load_vae

from soflow_toolkit import SolutionFlowWrapper, sample
from soflow_toolkit.fid import class_labels
from soflow_toolkit.models import DiT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = sampling_parser(__doc__, fid_ref_help="an .npz of real uint8 images (arr_0) to compute FID against")
    p.add_argument(
        "--labels",
        choices=["uniform", "balanced"],
        default="uniform",
        help="class labels: uniform at random (official) or balanced per class",
    )
    p.add_argument(
        "--vae",
        help=f"VAE (default: the one that encoded the training latents; {DEFAULT_VAE} for --official)",
    )
    args = p.parse_args(argv)
    if args.official_step is not None and args.official is None:
        p.error("--official-step goes with --official")
    args.num_samples = args.num_samples or (8 if args.smoke else 50_000)
    args.batch_size = args.batch_size or (4 if args.smoke else 125)
    return args


def load_model(path: Path, weights: str) -> tuple[SolutionFlowWrapper, dict]:
    """The DiT of a checkpoint of `train.py`, with its EMA (or raw) weights, and the run's config."""
    payload = load_checkpoint(path)
    config = json.loads(payload["config"])
    c, h, _ = config["latent_shape"]
    backbone = DiT.from_size(
        config["model"],
        input_size=h,
        in_channels=c,
        num_classes=config["num_classes"],
        null_class=config.get("null_class", True),
    )
    model = SolutionFlowWrapper(
        backbone, path=config.get("path", "linear"), parametrization=config.get("parametrization", "euler")
    )
    load_weights(model, payload, weights)
    return model.eval(), config


def load_source(args: argparse.Namespace, info: DistInfo) -> tuple[SolutionFlowWrapper, str]:
    """The model to sample (`--official` or `--ckpt`) and the VAE to decode its latents with."""
    if args.official is not None:
        found = locate(args.official, args.official_step, info)
        model = load_located(found, args.weights, torch.device("cpu"))
        check_backbone(model.backbone, DiT, "examples/imagenet", "use examples/cifar10/sample.py")
        return model, args.vae or (TINY_VAE if args.smoke else DEFAULT_VAE)
    path = args.ckpt if args.ckpt.is_file() else latest_checkpoint(args.ckpt / "checkpoints")
    if path is None:
        raise ValueError(f"no checkpoint found in {args.ckpt}/checkpoints")
    model, config = load_model(path, args.weights)
    return model, args.vae or config["vae"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with distributed_context(args.device) as info:
        run(args, info)


def run(args: argparse.Namespace, info: DistInfo) -> None:
    set_tf32(args.tf32)
    model, vae_spec = load_source(args, info)
    model.to(info.device)
    vae = load_vae(vae_spec, info.device)
    cfg = model.backbone.config
    c, h, w = cfg.in_channels, cfg.input_size, cfg.input_size
    if c != vae.config.latent_channels:
        raise ValueError(
            f"the DiT takes {c}-channel inputs, the VAE {vae_spec} makes {vae.config.latent_channels}-channel "
            "latents"
        )
    size = h * 2 ** (len(vae.config.block_out_channels) - 1)
    num, num_classes = args.num_samples, cfg.num_classes
    balanced = args.labels == "balanced"
    if balanced and num % num_classes and info.is_main:
        print(f"note: {num} samples are not a multiple of {num_classes} classes: counts differ by one")
    labels = class_labels(
        num, num_classes, generator=torch.Generator().manual_seed(args.seed), balanced=balanced
    )

    def make_batch(j: int, lo: int, hi: int) -> np.ndarray:
        generator = torch.Generator(info.device).manual_seed(args.seed * 2**32 + j)
        noise = torch.randn(hi - lo, c, h, w, generator=generator, device=info.device)
        cond = labels[lo:hi].to(info.device)
        with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=args.bf16):
            latents = sample(model, noise, steps=args.nfe, cond=cond, method=args.method, generator=generator)
            images = decode_latents(vae, latents, LATENT_SCALE)
        return to_uint8(images.float())

    began = time.perf_counter()
    extra = {"labels": labels.numpy()}
    write_samples_npz(
        args.out,
        num,
        args.batch_size,
        (size, size, 3),
        make_batch,
        info,
        extra=extra,
        progress=not args.no_progress,
    )
    if info.is_main:
        seconds = time.perf_counter() - began
        print(f"wrote {args.out}: {num} images {size}x{size}, {args.nfe} NFE, in {seconds:.1f} s", flush=True)
        if args.fid_ref is not None:
            from common.fid import compute_fid

            fid = compute_fid(
                args.out,
                args.fid_ref,
                device=info.device,
                weights_path=args.fid_weights,
            )
            print(f"FID ({num} samples vs {args.fid_ref.name}, PyTorch Inception): {fid:.3f}", flush=True)


if __name__ == "__main__":
    main()
