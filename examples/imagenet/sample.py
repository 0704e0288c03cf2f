"""Sample a trained latent DiT in 1, 2 or N steps and write an `.npz` for FID evaluation.

    torchrun --nproc-per-node=8 sample.py --ckpt runs/B-4 --nfe 1 --out samples/B-4-nfe1.npz

Loads the EMA weights of the latest checkpoint of a run folder (or of a given `ckpt-*.pt`), draws
`--num-samples` (50,000) class-balanced labels (each class `N / num_classes` times, shuffled),
samples latents with SoFlow's sampler (`--nfe` network evaluations; no guidance at sampling time, it
was learned), decodes them with the SD-VAE (latent / 0.18215) and writes `arr_0`: uint8 `(N, 256,
256, 3)` plus `labels`, the format of the ADM evaluator's sample batches, and a PNG grid of the
first 64. Batch `j` of the run uses noise seeded by `(seed, j)`, so for a given `--batch-size` the
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
from common.config import sampling_parser
from common.distributed import DistInfo, cleanup, setup
from common.images import balanced_labels, to_uint8, write_samples_npz
from data import LATENT_SCALE
from vae import decode_latents, load_vae

from soflow_toolkit import SolutionFlowWrapper, sample
from soflow_toolkit.models import DiT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = sampling_parser(__doc__, fid_ref_help="an .npz of real uint8 images (arr_0) to compute FID against")
    p.add_argument("--vae", help="VAE (default: the one used to encode the training latents)")
    args = p.parse_args(argv)
    args.num_samples = args.num_samples or (8 if args.smoke else 50_000)
    args.batch_size = args.batch_size or (4 if args.smoke else 50)
    return args


def load_model(path: Path, weights: str) -> tuple[SolutionFlowWrapper, dict]:
    """The DiT of a checkpoint, with its EMA (or raw) weights, and the run's config."""
    payload = load_checkpoint(path)
    config = json.loads(payload["config"])
    c, h, _ = config["latent_shape"]
    model = SolutionFlowWrapper(
        DiT.from_size(config["model"], input_size=h, in_channels=c, num_classes=config["num_classes"])
    )
    load_weights(model, payload, weights)
    return model.eval(), config


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = setup(args.device)
    try:
        run(args, info)
    finally:
        cleanup()


def run(args: argparse.Namespace, info: DistInfo) -> None:
    path = args.ckpt if args.ckpt.is_file() else latest_checkpoint(args.ckpt / "checkpoints")
    if path is None:
        raise ValueError(f"no checkpoint found in {args.ckpt}/checkpoints")
    model, config = load_model(path, args.weights)
    model.to(info.device)
    vae = load_vae(args.vae or config["vae"], info.device)
    num, size, num_classes = args.num_samples, config["image_size"], config["num_classes"]
    if num % num_classes and info.is_main:
        print(f"note: {num} samples are not a multiple of {num_classes} classes: counts differ by one")
    labels = balanced_labels(num, num_classes, generator=torch.Generator().manual_seed(args.seed))
    c, h, w = config["latent_shape"]

    def make_batch(j: int, lo: int, hi: int) -> np.ndarray:
        generator = torch.Generator(info.device).manual_seed(args.seed * 2**32 + j)
        noise = torch.randn(hi - lo, c, h, w, generator=generator, device=info.device)
        cond = labels[lo:hi].to(info.device)
        latents = sample(model, noise, steps=args.nfe, cond=cond, method=args.method, generator=generator)
        return to_uint8(decode_latents(vae, latents, LATENT_SCALE))

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
