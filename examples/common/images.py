"""Images: float tensors to uint8, PNG grids with Pillow, and `.npz` sample files for FID evaluators.

The `.npz` layout is the one the ADM evaluator (openai/guided-diffusion `evaluations/evaluator.py`)
and most FID tools read: key `arr_0`, uint8, shape `(N, H, W, 3)`. `NpzWriter` (from
`soflow_toolkit.fid`) streams the array into the zip file so 50,000 ImageNet samples (9.8 GB) never
sit in memory at once.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from soflow_toolkit import fid
from soflow_toolkit.fid import NpzWriter

from .distributed import DistInfo, barrier

__all__ = ["NpzWriter", "balanced_labels", "save_grid", "to_uint8", "write_samples_npz"]


def to_uint8(images: Tensor) -> np.ndarray:
    """`(N, C, H, W)` floats in [-1, 1] -> `(N, H, W, C)` uint8, as the official FID sampling converts them.

    `floor(clamp(127.5 x + 128, 0, 255))` (see `soflow_toolkit.fid.to_uint8`).
    """
    return fid.to_uint8(images).cpu().numpy()


def save_grid(images: np.ndarray, path: Path | str, *, nrow: int | None = None, pad: int = 2) -> None:
    """Save `(N, H, W, C)` uint8 images as one PNG grid (`nrow` images per row, default ~sqrt(N))."""
    n, h, w, c = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        y, x = divmod(i, nrow)
        grid[pad + y * (h + pad) : pad + y * (h + pad) + h, pad + x * (w + pad) : pad + x * (w + pad) + w] = (
            image
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.squeeze(-1) if c == 1 else grid).save(path)


def balanced_labels(num: int, num_classes: int, *, generator: torch.Generator) -> Tensor:
    """`num` class labels, each class `num // num_classes` or one more times, in random order."""
    return fid.class_labels(num, num_classes, generator=generator, balanced=True)


def write_samples_npz(
    path: Path,
    num: int,
    batch_size: int,
    shape: tuple[int, ...],
    make_batch: Callable[[int, int, int], np.ndarray],
    info: DistInfo,
    *,
    extra: dict[str, np.ndarray] | None = None,
    progress: bool = True,
) -> None:
    """Generate `num` images over all ranks and write them, in order, as `arr_0` of the `.npz` at `path`.

    Global batch `j` covers images `[j * batch_size, min(num, (j + 1) * batch_size))` and is made by
    rank `j mod world_size` as `make_batch(j, lo, hi)` (uint8 `(hi - lo, *shape)`). Each rank stores its
    batches in a memory-mapped part file; the main rank then streams the parts into the `.npz` in
    global order (with the arrays of `extra`) and saves a PNG grid of the first 64 images next to it.
    All ranks must call this.
    """
    num_batches = math.ceil(num / batch_size)
    mine = range(info.rank, num_batches, info.world_size)

    def bounds(j: int) -> tuple[int, int]:
        return j * batch_size, min(num, (j + 1) * batch_size)

    parts = path.with_name(path.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    rows = sum(hi - lo for lo, hi in map(bounds, mine))
    part = np.lib.format.open_memmap(parts / f"rank-{info.rank:05d}.npy", "w+", np.uint8, (rows, *shape))
    row = 0
    for j in tqdm(mine, desc="sample", disable=not (progress and info.is_main)):
        lo, hi = bounds(j)
        part[row : row + hi - lo] = make_batch(j, lo, hi)
        row += hi - lo
    part.flush()
    del part
    barrier()
    if info.is_main:
        readers = [np.load(parts / f"rank-{r:05d}.npy", mmap_mode="r") for r in range(info.world_size)]
        offsets, first = [0] * info.world_size, []
        with NpzWriter(path, num, shape) as writer:
            for j in range(num_batches):
                r, (lo, hi) = j % info.world_size, bounds(j)
                chunk = readers[r][offsets[r] : offsets[r] + hi - lo]
                writer.write(chunk)
                offsets[r] += hi - lo
                if lo < 64:
                    first.append(np.array(chunk[: 64 - lo]))
            for name, array in (extra or {}).items():
                writer.add(name, array)
        del readers
        shutil.rmtree(parts)
        save_grid(np.concatenate(first), path.with_suffix(".png"), nrow=8)
    barrier()
