"""FID for the sampling scripts: a thin use of `soflow_toolkit.fid` (ADM protocol, PyTorch Inception).

The Inception network is torch-fidelity's port of the TensorFlow one (`pip install
"soflow-toolkit[fid]"`); its weights are downloaded on first use, or read from `weights_path` on
machines without network access. A reference `.npz` that stores `mu` and `sigma` (the ADM reference
batch `VIRTUAL_imagenet256_labeled.npz`) is represented by them, as the ADM evaluator does. See
docs/guides/evaluation.md for how the numbers compare with the TensorFlow evaluator's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from soflow_toolkit.fid import (
    FeatureStatistics,
    InceptionFeatures,
    feature_statistics,
    fid_from_npz,
    frechet_distance,
    npz_statistics,
    read_npz_batches,
)

Source = Path | str | Iterable[np.ndarray]


def _statistics(source: Source, extractor: InceptionFeatures, device: torch.device) -> FeatureStatistics:
    if isinstance(source, (str, Path)):
        return npz_statistics(source, extractor, device=device, progress=True)
    chunks = (torch.from_numpy(np.asarray(chunk)) for chunk in source)
    return feature_statistics(chunks, extractor, device=device)


def compute_fid(
    fake: Source, real: Source, *, device: torch.device, weights_path: Path | str | None = None
) -> float:
    """FID between two sets of `(N, H, W, 3)` uint8 images: `.npz` paths or streams of chunks.

    Raises:
        ImportError: if torch-fidelity is not installed and a side needs Inception features.
    """
    if isinstance(fake, (str, Path)) and isinstance(real, (str, Path)):
        return fid_from_npz(fake, real, inception_weights=weights_path, device=device, progress=True)
    extractor = InceptionFeatures(weights_path, device=device)
    return frechet_distance(_statistics(fake, extractor, device), _statistics(real, extractor, device))


def npz_chunks(path: Path | str, key: str = "arr_0", chunk: int = 500) -> Iterator[np.ndarray]:
    """Chunks of the array `key` of an `.npz` (e.g. an ADM reference batch), read without loading it whole."""
    for batch in read_npz_batches(path, key=key, batch_size=chunk):
        yield batch.numpy()
