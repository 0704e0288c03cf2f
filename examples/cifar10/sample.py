"""Sample a trained CIFAR-10 UNet in 1, 2 or N steps and write an `.npz` for FID evaluation.

    torchrun --nproc-per-node=8 sample.py --ckpt runs/cifar10 --nfe 1 --out samples/cifar10-nfe1.npz

Loads the EMA weights of the latest checkpoint of a run folder (or of a given `ckpt-*.pt`) and
writes `arr_0`: uint8 `(N, 32, 32, 3)` (50,000 by default) plus a PNG grid of the first 64. Batch
`j` uses noise seeded by `(seed, j)`, so for a given `--batch-size` the output does not depend on
the number of ranks. With `--fid-ref` (the CIFAR-10 batches folder, whose 50,000 training images are
the usual reference, or an `.npz`) and the `fid` extra installed it also prints a FID.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar import load_cifar10
from common.checkpoint import latest_checkpoint, load_checkpoint, load_weights
from common.config import sampling_parser
from common.distributed import DistInfo, cleanup, setup
from common.images import to_uint8, write_samples_npz
from network import build_unet

from soflow_toolkit import SolutionFlowWrapper, sample


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = sampling_parser(__doc__, fid_ref_help="CIFAR-10 batches folder or an .npz of real uint8 images")
    args = p.parse_args(argv)
    args.num_samples = args.num_samples or (16 if args.smoke else 50_000)
    args.batch_size = args.batch_size or (8 if args.smoke else 500)
    return args


def load_model(path: Path, weights: str) -> tuple[SolutionFlowWrapper, dict[str, Any]]:
    """The UNet of a checkpoint with its EMA (or raw) weights, and the run's config."""
    payload = load_checkpoint(path)
    config = json.loads(payload["config"])
    model = SolutionFlowWrapper(build_unet(config))
    load_weights(model, payload, weights)
    return model.eval(), config


def reference_images(path: Path) -> Path | Iterator[np.ndarray]:
    """An `.npz` as it is (its stored statistics are used if it has them), or the CIFAR-10 batches."""
    if path.suffix == ".npz":
        return path
    images, _ = load_cifar10(path)
    return iter(images.permute(0, 2, 3, 1).numpy().reshape(-1, 500, 32, 32, 3))


def run(args: argparse.Namespace, info: DistInfo) -> None:
    path = args.ckpt if args.ckpt.is_file() else latest_checkpoint(args.ckpt / "checkpoints")
    if path is None:
        raise ValueError(f"no checkpoint found in {args.ckpt}/checkpoints")
    model, _ = load_model(path, args.weights)
    model.to(info.device)

    def make_batch(j: int, lo: int, hi: int) -> np.ndarray:
        generator = torch.Generator(info.device).manual_seed(args.seed * 2**32 + j)
        noise = torch.randn(hi - lo, 3, 32, 32, generator=generator, device=info.device)
        return to_uint8(sample(model, noise, steps=args.nfe, method=args.method, generator=generator))

    began = time.perf_counter()
    write_samples_npz(
        args.out,
        args.num_samples,
        args.batch_size,
        (32, 32, 3),
        make_batch,
        info,
        progress=not args.no_progress,
    )
    if info.is_main:
        seconds = time.perf_counter() - began
        print(f"wrote {args.out}: {args.num_samples} images, {args.nfe} NFE, in {seconds:.1f} s", flush=True)
        if args.fid_ref is not None:
            from common.fid import compute_fid

            fid = compute_fid(
                args.out,
                reference_images(args.fid_ref),
                device=info.device,
                weights_path=args.fid_weights,
            )
            print(
                f"FID ({args.num_samples} samples vs {args.fid_ref.name}, PyTorch Inception): {fid:.3f}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = setup(args.device)
    try:
        run(args, info)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
