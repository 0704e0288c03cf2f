"""Encode an ImageNet-style image folder into SD-VAE latent moments, in parallel over ranks.

    torchrun --nproc-per-node=8 extract_latents.py --images /data/imagenet/train --out /data/in256-latents

Each image is read with Pillow, ADM-centre-cropped to `--image-size` (256), encoded by the VAE
(`--vae`, default `stabilityai/sd-vae-ft-mse`, or a local folder), and the posterior mean and std are
stored with the label (see `data.py` for the file layout). Rank `r` of `W` encodes the `r`-th of `W`
contiguous chunks of the sorted file list and writes one part; a part whose `.json` exists is skipped,
so an interrupted extraction can simply be started again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.distributed import DistInfo, distributed_context
from data import LATENT_SCALE, CroppedImages, part_name, scan_image_folder
from vae import DEFAULT_VAE, TINY_VAE, encode_moments, latent_shape, load_vae


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the latent parts")
    parser.add_argument("--vae", default=None, help=f"Hub name or local folder (default {DEFAULT_VAE})")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=None, help="images per rank per batch (64)")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding workers per rank (8)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="storage dtype")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny settings: --vae {TINY_VAE}, small batches"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.vae = args.vae or (TINY_VAE if args.smoke else DEFAULT_VAE)
    args.batch_size = args.batch_size or (8 if args.smoke else 64)
    args.num_workers = args.num_workers if args.num_workers is not None else (0 if args.smoke else 8)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with distributed_context(args.device, process_group=False) as info:  # no collectives: no group
        extract(args, info)


def extract(args: argparse.Namespace, info: DistInfo) -> None:
    """Encode this rank's share of the images into its part of the latent folder."""
    classes, items = scan_image_folder(args.images)
    start, end = info.rank * len(items) // info.world_size, (info.rank + 1) * len(items) // info.world_size
    stem = args.out / part_name(info.rank, info.world_size)
    if Path(f"{stem}.json").exists():
        print(f"[rank {info.rank}] {stem}.json exists: part already extracted, skipping", flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    vae = load_vae(args.vae, info.device)
    shape = latent_shape(vae, args.image_size)
    count = end - start
    moments = np.lib.format.open_memmap(f"{stem}.npy", mode="w+", dtype=args.dtype, shape=(count, 2, *shape))
    np.save(f"{stem}.labels.npy", np.array([label for _, label in items[start:end]], dtype=np.int64))
    loader = torch.utils.data.DataLoader(
        CroppedImages(items[start:end], args.image_size),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        pin_memory=info.device.type == "cuda",
    )
    began, row = time.perf_counter(), 0
    for pixels, _ in tqdm(loader, desc=f"rank {info.rank}", disable=args.no_progress or not info.is_main):
        batch = encode_moments(vae, pixels.to(info.device, non_blocking=True))
        moments[row : row + len(batch)] = batch.float().cpu().numpy().astype(args.dtype)
        row += len(batch)
    moments.flush()
    meta = {
        "part": info.rank,
        "num_parts": info.world_size,
        "count": count,
        "first_index": start,
        "num_images": len(items),
        "classes": classes,
        "image_size": args.image_size,
        "latent_shape": list(shape),
        "dtype": args.dtype,
        "vae": args.vae,
        "latent_scale": LATENT_SCALE,
        "source": str(args.images),
    }
    Path(f"{stem}.json").write_text(json.dumps(meta))  # last: marks the part complete
    seconds = time.perf_counter() - began
    print(f"[rank {info.rank}] encoded {count} images in {seconds:.1f} s -> {stem}.npy", flush=True)


if __name__ == "__main__":
    main()
