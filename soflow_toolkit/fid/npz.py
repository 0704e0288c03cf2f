"""Sample and reference `.npz` files in the layout of the ADM evaluator.

The ADM evaluator (openai/guided-diffusion, `evaluations/evaluator.py`; the official SoFlow
repository evaluates with a copy of it) reads these arrays of an `.npz`:

| key | content |
|---|---|
| `arr_0` | the images, uint8 `(N, H, W, 3)` in [0, 255], channels last |
| `mu`, `sigma` | (reference batches) mean `(2048,)` and covariance `(2048, 2048)` of the pool_3 Inception features of the reference images, used instead of `arr_0` when present |
| `mu_s`, `sigma_s` | (reference batches) the same for the spatial features of sFID |

A sample batch needs only `arr_0` (other arrays, such as labels, are ignored by the evaluator). The
ImageNet 256 reference batch, `VIRTUAL_imagenet256_labeled.npz`, holds reference images in `arr_0`
together with `mu`, `sigma`, `mu_s` and `sigma_s`; the evaluator takes the FID against the stored
`mu` and `sigma`, not against features of `arr_0`, and so does [`npz_statistics`][soflow_toolkit.fid.npz_statistics]. numpy
is needed here (the `fid` extra) and imported on first use.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .statistics import FeatureStatistics

if TYPE_CHECKING:
    import numpy as np

__all__ = ["NpzWriter", "npz_array_info", "read_npz_batches", "read_statistics", "save_statistics"]


def _numpy() -> ModuleType:
    try:
        import numpy
    except ImportError as error:  # pragma: no cover - numpy comes with the fid and test extras
        raise ImportError(
            "reading and writing .npz files needs numpy: pip install 'soflow-toolkit[fid]'"
        ) from error
    return numpy


def _open_member(archive: zipfile.ZipFile, path: Path | str, key: str) -> Any:
    name = f"{key}.npy"
    if name not in archive.namelist():
        keys = sorted(n.removesuffix(".npy") for n in archive.namelist())
        raise KeyError(f"{path} has no array {key!r}; it holds {keys}")
    return archive.open(name)


def _read_header(f: Any, path: Path | str, key: str) -> tuple[tuple[int, ...], Any]:
    np = _numpy()
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"{path}:{key} uses .npy format version {version}; versions 1.0 and 2.0 are read")
    if fortran:
        raise ValueError(f"{path}:{key} is stored in Fortran order; expected C order")
    if dtype.hasobject:
        raise ValueError(f"{path}:{key} holds Python objects (dtype {dtype}); expected a numeric array")
    return tuple(int(n) for n in shape), dtype


def npz_array_info(path: Path | str, key: str = "arr_0") -> tuple[tuple[int, ...], str]:
    """Shape and dtype name of the array `key` of an `.npz`, read from its header only.

    Args:
        path: the `.npz` file.
        key: the array's name (`arr_0`: the images).

    Returns:
        `(shape, dtype)`, e.g. `((50000, 256, 256, 3), "uint8")`.

    Raises:
        KeyError: if the file has no array `key` (the message lists those it has).

    Examples:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/s.npz"
        >>> np.savez(path, np.zeros((5, 8, 8, 3), np.uint8))
        >>> npz_array_info(path)
        ((5, 8, 8, 3), 'uint8')
    """
    with zipfile.ZipFile(path) as archive, _open_member(archive, path, key) as f:
        shape, dtype = _read_header(f, path, key)
    return shape, str(dtype)


def read_npz_batches(path: Path | str, *, key: str = "arr_0", batch_size: int = 500) -> Iterator[Tensor]:
    """Stream the array `key` of an `.npz` in batches along its first axis, as torch tensors.

    Only one batch is in memory at a time, so a 50,000-image ImageNet sample file (9.8 GB) can be read
    on a small machine. Stored (uncompressed, `np.savez`) and compressed (`np.savez_compressed`)
    files both work.

    Args:
        path: the `.npz` file.
        key: the array's name (`arr_0`: the images, uint8 `(N, H, W, 3)`).
        batch_size: rows per batch (the last batch may be smaller).

    Yields:
        Tensors of shape `(n, *shape[1:])` with the stored dtype (uint8 images stay uint8).

    Raises:
        KeyError: if the file has no array `key`.
        ValueError: if `batch_size` < 1, or the file is truncated or not a plain C-order array.

    Examples:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/s.npz"
        >>> np.savez(path, np.arange(10, dtype=np.uint8).reshape(5, 2))
        >>> [tuple(b.shape) for b in read_npz_batches(path, batch_size=2)]
        [(2, 2), (2, 2), (1, 2)]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    np = _numpy()
    with zipfile.ZipFile(path) as archive, _open_member(archive, path, key) as f:
        shape, dtype = _read_header(f, path, key)
        if not shape:
            raise ValueError(f"{path}:{key} is a 0-d array; expected an array with a batch axis")
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        for start in range(0, shape[0], batch_size):
            rows = min(batch_size, shape[0] - start)
            data = bytearray(f.read(rows * row_bytes))  # a writable buffer: torch.from_numpy needs one
            if len(data) != rows * row_bytes:
                raise ValueError(f"{path}:{key} is truncated: rows from {start} on are missing")
            yield torch.from_numpy(np.frombuffer(data, dtype=dtype).reshape(rows, *shape[1:]))


def read_statistics(path: Path | str) -> FeatureStatistics:
    """The feature statistics `mu`, `sigma` stored in an `.npz` (an ADM reference batch, or a file of
    [`save_statistics`][soflow_toolkit.fid.save_statistics]).

    Args:
        path: the `.npz` file.

    Returns:
        [`FeatureStatistics`][soflow_toolkit.fid.FeatureStatistics] in float64 (`count` from the file's `count` array, else None).

    Raises:
        KeyError: if the file has no `mu` or no `sigma` (the message lists the arrays it has).

    Examples:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/stats.npz"
        >>> save_statistics(path, FeatureStatistics(torch.zeros(2), torch.eye(2), count=50))
        >>> read_statistics(path).count
        50
    """
    np = _numpy()
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("mu", "sigma") if key not in data.files]
        if missing:
            raise KeyError(
                f"{path} stores no feature statistics (no {missing}); it holds {sorted(data.files)}"
            )
        count = int(data["count"]) if "count" in data.files else None
        mean = torch.from_numpy(np.asarray(data["mu"], dtype=np.float64))
        cov = torch.from_numpy(np.asarray(data["sigma"], dtype=np.float64))
    return FeatureStatistics(mean, cov, count=count)


def save_statistics(path: Path | str, stats: FeatureStatistics) -> None:
    """Write feature statistics as `mu`, `sigma` (float64) and `count` of an `.npz`.

    The file can be passed to [`fid_from_npz`][soflow_toolkit.fid.fid_from_npz] and the command line in place of images. (The ADM
    evaluator additionally expects the sFID statistics `mu_s`, `sigma_s`, which are not written.)

    Args:
        path: the `.npz` file to write (parent folders are created).
        stats: the statistics.

    Raises:
        TypeError: if `stats` is not a [`FeatureStatistics`][soflow_toolkit.fid.FeatureStatistics].

    Examples:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/stats.npz"
        >>> save_statistics(path, FeatureStatistics(torch.zeros(2), torch.eye(2)))
        >>> read_statistics(path).dim
        2
    """
    if not isinstance(stats, FeatureStatistics):
        raise TypeError(f"stats must be a FeatureStatistics; got {type(stats).__name__}")
    np = _numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"mu": stats.mean.cpu().numpy(), "sigma": stats.cov.cpu().numpy()}
    if stats.count is not None:
        arrays["count"] = np.asarray(stats.count, dtype=np.int64)
    with path.open("wb") as f:  # a file object: np.savez would append ".npz" to other names
        np.savez(f, **arrays)


class NpzWriter:
    """Write a `(N, *shape)` array as `arr_0` of an `.npz`, chunk by chunk, in the ADM sample layout.

    The array is streamed into the (uncompressed, ZIP64) archive, so 50,000 ImageNet samples (9.8 GB)
    never sit in memory at once; `np.load` and the ADM evaluator read the file as if `np.savez` had
    written it. Further arrays (e.g. labels) can be added with [`add`][soflow_toolkit.fid.NpzWriter.add] once all rows are written.
    Used as a context manager, the file is completed on success and deleted if an error occurred.

    Args:
        path: the `.npz` file to write (parent folders are created).
        num: the number of rows $N$ that will be written.
        shape: the shape of one row, e.g. `(256, 256, 3)`.
        dtype: the stored dtype (`"uint8"` for images).

    Examples:
        >>> import tempfile, numpy as np, torch
        >>> path = tempfile.mkdtemp() + "/x.npz"
        >>> with NpzWriter(path, 3, (2, 2, 3)) as writer:
        ...     writer.write(np.zeros((1, 2, 2, 3), np.uint8))
        ...     writer.write(torch.ones(2, 2, 2, 3, dtype=torch.uint8))  # tensors work too
        >>> int(np.load(path)["arr_0"].sum())
        24
    """

    def __init__(self, path: Path | str, num: int, shape: tuple[int, ...], dtype: str = "uint8") -> None:
        np = _numpy()
        if isinstance(num, bool) or not isinstance(num, int) or num < 0:
            raise ValueError(f"num must be an int >= 0; got {num!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.num = num
        self.dtype = np.dtype(dtype)
        self.shape = (num, *(int(n) for n in shape))
        self.written = 0
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._file: Any = self._zip.open("arr_0.npy", "w", force_zip64=True)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, chunk: np.ndarray | Tensor) -> None:
        """Append rows: an array or tensor of shape `(n, *shape)` and the writer's dtype."""
        np = _numpy()
        if isinstance(chunk, Tensor):
            chunk = chunk.detach().cpu().numpy()
        if self._file is None:
            raise ValueError(f"{self.path}: all {self.num} rows were already written")
        if chunk.shape[1:] != self.shape[1:] or chunk.dtype != self.dtype:
            raise ValueError(
                f"expected chunks of shape (n, {', '.join(map(str, self.shape[1:]))}) and dtype {self.dtype}; "
                f"got {chunk.shape} {chunk.dtype}"
            )
        if self.written + len(chunk) > self.num:
            raise ValueError(f"more than the announced {self.num} rows")
        self._file.write(np.ascontiguousarray(chunk).tobytes())
        self.written += len(chunk)

    def add(self, name: str, array: np.ndarray | Tensor) -> None:
        """Store another array under `name` (call after all rows of `arr_0` are written)."""
        np = _numpy()
        if isinstance(array, Tensor):
            array = array.detach().cpu().numpy()
        self._finish_images()
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)

    def _finish_images(self) -> None:
        if self._file is not None:
            if self.written != self.num:
                raise ValueError(f"wrote {self.written} rows; {self.num} were announced")
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Complete the file (raises if fewer rows than announced were written)."""
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
            self._file = None
        self._zip.close()
        self.path.unlink(missing_ok=True)
