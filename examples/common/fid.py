"""Optional FID with `torchmetrics` (Inception-v3 features of `torch-fidelity`).

Install `torchmetrics[image]` (it pulls `torch-fidelity` and `scipy`); the Inception weights are
downloaded on first use, or read from `weights_path` on machines without network access. The numbers
are close to, but not the same as, those of the TensorFlow ADM evaluator that papers report (other
resizing and weights port): use the ADM evaluator on the `.npz` for numbers comparable with the published ones.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch


def compute_fid(
    fake: Iterable[np.ndarray],
    real: Iterable[np.ndarray],
    *,
    device: torch.device,
    weights_path: Path | str | None = None,
) -> float:
    """FID between two streams of `(n, H, W, 3)` uint8 image chunks.

    Raises:
        RuntimeError: if `torchmetrics` (with `torch-fidelity`) is not installed.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as error:
        raise RuntimeError(
            "FID needs torchmetrics with its image extras: pip install 'torchmetrics[image]' "
            "(or evaluate the .npz with the ADM evaluator, see the README)"
        ) from error
    kwargs = {} if weights_path is None else {"feature_extractor_weights_path": str(weights_path)}
    metric = FrechetInceptionDistance(feature=2048, **kwargs).to(device)
    for is_real, chunks in ((True, real), (False, fake)):
        for chunk in chunks:
            images = torch.from_numpy(np.array(chunk)).permute(0, 3, 1, 2).to(device)
            metric.update(images, real=is_real)
    return float(metric.compute())


def npz_chunks(path: Path | str, key: str = "arr_0", chunk: int = 500) -> Iterator[np.ndarray]:
    """Chunks of the array `key` of an `.npz` (e.g. an ADM reference batch), read without loading it whole."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ValueError(f"{path}:{key} is stored in Fortran order; expected C order")
        row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
        for start in range(0, shape[0], chunk):
            n = min(chunk, shape[0] - start)
            yield np.frombuffer(f.read(n * row_bytes), dtype=dtype).reshape(n, *shape[1:])
