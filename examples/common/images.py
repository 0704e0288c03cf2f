"""Images: float tensors to uint8, PNG grids with Pillow, and `.npz` sample files for FID evaluators.

The `.npz` layout is the one the ADM evaluator (openai/guided-diffusion `evaluations/evaluator.py`)
and most FID tools read: key `arr_0`, uint8, shape `(N, H, W, 3)`. :class:`NpzWriter` streams the
array into the zip file so 50,000 ImageNet samples (9.8 GB) never sit in memory at once.
"""

from __future__ import annotations

import math
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from .distributed import DistInfo, barrier


def to_uint8(images: Tensor) -> np.ndarray:
    """`(N, C, H, W)` floats in [-1, 1] -> `(N, H, W, C)` uint8 in [0, 255] (clamped, rounded)."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got {tuple(images.shape)}")
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


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


class NpzWriter:
    """Write a `(N, *shape)` uint8 array as `arr_0` of an `.npz` file, chunk by chunk.

    Extra arrays (e.g. labels) can be added with :meth:`add` after the images are complete.

    Example:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/x.npz"
        >>> with NpzWriter(path, 3, (2, 2, 3)) as writer:
        ...     writer.write(np.zeros((1, 2, 2, 3), np.uint8))
        ...     writer.write(np.ones((2, 2, 2, 3), np.uint8))
        >>> int(np.load(path)["arr_0"].sum())
        24
    """

    def __init__(self, path: Path | str, num: int, shape: tuple[int, ...], dtype: str = "uint8") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.num = num
        self.dtype = np.dtype(dtype)
        self.shape = (num, *shape)
        self.written = 0
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._file = self._zip.open("arr_0.npy", "w", force_zip64=True)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, chunk: np.ndarray) -> None:
        if chunk.shape[1:] != self.shape[1:] or chunk.dtype != self.dtype:
            raise ValueError(
                f"expected chunks of shape (n, {self.shape[1:]}) and dtype {self.dtype}; got {chunk.shape} {chunk.dtype}"
            )
        if self.written + len(chunk) > self.num:
            raise ValueError(f"more than the announced {self.num} rows")
        self._file.write(np.ascontiguousarray(chunk).tobytes())
        self.written += len(chunk)

    def add(self, name: str, array: np.ndarray) -> None:
        """Store another array under `name` (call after all image chunks)."""
        self._finish_images()
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)

    def _finish_images(self) -> None:
        if self._file is not None:
            if self.written != self.num:
                raise ValueError(f"wrote {self.written} rows; {self.num} were announced")
            self._file.close()
            self._file = None  # type: ignore[assignment]

    def close(self) -> None:
        self._finish_images()
        self._zip.close()

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            try:
                self.close()
                return
            except BaseException:
                self._abort()
                raise
        self._abort()

    def _abort(self) -> None:
        """Close everything and delete the half-written file."""
        if self._file is not None:
            self._file.close()
            self._file = None  # type: ignore[assignment]
        self._zip.close()
        self.path.unlink(missing_ok=True)


def balanced_labels(num: int, num_classes: int, *, generator: torch.Generator) -> Tensor:
    """`num` class labels, each class `num // num_classes` or one more times, in random order."""
    labels = torch.arange(num) % num_classes
    return labels[torch.randperm(num, generator=generator)]


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
