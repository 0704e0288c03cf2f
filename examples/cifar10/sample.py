"""Sample a CIFAR-10 UNet in 1, 2 or N steps and write an `.npz` for FID evaluation.

    torchrun --nproc-per-node=8 sample.py --official hf:zlab-princeton/SoFlow/UNet-uncond --nfe 1 --out samples/cifar10-nfe1.npz
    torchrun --nproc-per-node=8 sample.py --ckpt runs/cifar10 --nfe 1 --out samples/cifar10-nfe1.npz

`--official SOURCE` samples an official SoFlow checkpoint (`soflow_toolkit.pretrained.load_official`:
an official run folder, a `ckpts/<step>.pt` or a hub reference; the newest step unless
`--official-step`); `--ckpt` the latest checkpoint of a run folder of `train.py` (or a given
`ckpt-*.pt`). Both use the EMA weights unless `--weights model`; the UNet gets no augmentation labels
(no augmentation), as in the official inference. Writes `arr_0`: uint8 `(N, 32, 32, 3)` (50,000 by
default) plus a PNG grid of the first 64. Batch `j` uses noise seeded by `(seed, j)`, so for a given
`--batch-size` the output does not depend on the number of ranks. With `--fid-ref` (the CIFAR-10
batches folder, whose 50,000 training images are the usual reference, or an `.npz`) and the `fid`
extra installed it also prints a FID.
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
from common.config import sampling_parser, set_tf32
from common.distributed import DistInfo, distributed_context
from common.images import to_uint8, write_samples_npz
from common.official import check_backbone, load_located, locate
from network import build_model

from soflow_toolkit import SolutionFlowWrapper, sample
from soflow_toolkit.models import UNet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = sampling_parser(__doc__, fid_ref_help="CIFAR-10 batches folder or an .npz of real uint8 images")
    args = p.parse_args(argv)
    if args.official_step is not None and args.official is None:
        p.error("--official-step goes with --official")
    args.num_samples = args.num_samples or (16 if args.smoke else 50_000)
    args.batch_size = args.batch_size or (8 if args.smoke else 125)
    return args


def load_model(path: Path, weights: str) -> tuple[SolutionFlowWrapper, dict[str, Any]]:
    """The UNet of a checkpoint of `train.py` with its EMA (or raw) weights, and the run's config."""
    payload = load_checkpoint(path)
    config = json.loads(payload["config"])
    model = build_model(config)
    load_weights(model, payload, weights)
    return model.eval(), config


def load_source(args: argparse.Namespace, info: DistInfo) -> SolutionFlowWrapper:
    """The model to sample: `--official` or `--ckpt`."""
    if args.official is not None:
        found = locate(args.official, args.official_step, info)
        model = load_located(found, args.weights, torch.device("cpu"))
        check_backbone(model.backbone, UNet, "examples/cifar10", "use examples/imagenet/sample.py")
        return model
    path = args.ckpt if args.ckpt.is_file() else latest_checkpoint(args.ckpt / "checkpoints")
    if path is None:
        raise ValueError(f"no checkpoint found in {args.ckpt}/checkpoints")
    return load_model(path, args.weights)[0]


def reference_images(path: Path) -> Path | Iterator[np.ndarray]:
    """An `.npz` as it is (its stored statistics are used if it has them), or the CIFAR-10 batches."""
    if path.suffix == ".npz":
        return path
    images, _ = load_cifar10(path)
    return iter(images.permute(0, 2, 3, 1).numpy().reshape(-1, 500, 32, 32, 3))


def run(args: argparse.Namespace, info: DistInfo) -> None:
    set_tf32(args.tf32)
    model = load_source(args, info).to(info.device)
    cfg = model.backbone.config
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)

    def make_batch(j: int, lo: int, hi: int) -> np.ndarray:
        generator = torch.Generator(info.device).manual_seed(args.seed * 2**32 + j)
        noise = torch.randn(hi - lo, *shape, generator=generator, device=info.device)
        with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=args.bf16):
            images = sample(model, noise, steps=args.nfe, method=args.method, generator=generator)
        return to_uint8(images.float())

    began = time.perf_counter()
    write_samples_npz(
        args.out,
        args.num_samples,
        args.batch_size,
        (shape[1], shape[2], shape[0]),
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
    with distributed_context(args.device) as info:
        run(args, info)


if __name__ == "__main__":
    main()
