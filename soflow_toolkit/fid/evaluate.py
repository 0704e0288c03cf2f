"""FID between two `.npz` files, as the ADM evaluator computes it."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import torch

from .frechet import frechet_distance
from .inception import InceptionFeatures
from .npz import npz_array_info, read_npz_batches, read_statistics
from .statistics import FeatureExtractor, FeatureStatistics, feature_statistics

__all__ = ["fid_from_npz", "npz_statistics"]


def _stores_statistics(path: Path | str) -> bool:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return {"mu.npy", "sigma.npy"} <= names


def _extractor_for(
    paths: tuple[Path | str, ...],
    extractor: FeatureExtractor | None,
    *,
    use_stored: bool,
    weights: Path | str | None,
    device: torch.device | str | None,
) -> FeatureExtractor | None:
    """`extractor`, or the default Inception when a file needs features and none was given."""
    if extractor is None and any(not (use_stored and _stores_statistics(p)) for p in paths):
        return InceptionFeatures(weights, device=device)
    return extractor


def npz_statistics(
    path: Path | str,
    extractor: FeatureExtractor | None = None,
    *,
    use_stored: bool = True,
    batch_size: int = 100,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> FeatureStatistics:
    """Feature statistics of an `.npz`: the stored `mu`, `sigma` if any, else those of its images.

    As the ADM evaluator does, a file that stores `mu` and `sigma` (an ADM reference batch such as
    `VIRTUAL_imagenet256_labeled.npz`, or a file of [`save_statistics`][soflow_toolkit.fid.save_statistics]) is represented by them;
    otherwise the images `arr_0` (uint8 `(N, H, W, 3)`) are streamed through `extractor`.

    Args:
        path: the `.npz` file.
        extractor: uint8 `(B, 3, H, W)` -> features `(B, D)`, e.g. [`InceptionFeatures`][soflow_toolkit.fid.InceptionFeatures];
            needed only when the statistics are computed from images.
        use_stored: use stored statistics when present (False: always compute from `arr_0`).
        batch_size: images per forward pass of the extractor.
        device: where the extractor runs.
        progress: show a progress bar.

    Returns:
        [`FeatureStatistics`][soflow_toolkit.fid.FeatureStatistics] in float64.

    Raises:
        ValueError: if the images are needed but no extractor is given, or `arr_0` is not uint8
            `(N, H, W, 3)`.
        KeyError: if the file has neither statistics nor `arr_0`.

    Examples:
        >>> import tempfile, numpy as np, torch
        >>> path = tempfile.mkdtemp() + "/s.npz"
        >>> np.savez(path, np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8))
        >>> mean_colour = lambda x: x.float().mean(dim=(2, 3))
        >>> npz_statistics(path, mean_colour, batch_size=4).count
        6
    """
    if use_stored and _stores_statistics(path):
        return read_statistics(path)
    shape, dtype = npz_array_info(path, "arr_0")
    if dtype != "uint8" or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"{path}: arr_0 must hold uint8 images (N, H, W, 3); got {dtype} {shape}")
    if extractor is None:
        raise ValueError(
            f"{path} stores no feature statistics (mu, sigma): its images need a feature extractor, "
            "e.g. InceptionFeatures()"
        )
    return feature_statistics(
        read_npz_batches(path, batch_size=batch_size),
        extractor,
        device=device,
        progress=progress,
        total=math.ceil(shape[0] / batch_size),
    )


def fid_from_npz(
    samples: Path | str,
    reference: Path | str,
    *,
    extractor: FeatureExtractor | None = None,
    inception_weights: Path | str | None = None,
    use_stored: bool = True,
    batch_size: int = 100,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> float:
    r"""FID between a sample `.npz` and a reference `.npz` (ADM protocol).

    Each file is represented by [`npz_statistics`][soflow_toolkit.fid.npz_statistics] (stored `mu`, `sigma` when present, else the
    statistics of the features of `arr_0`), and the FID is their [`frechet_distance`][soflow_toolkit.fid.frechet_distance]. For the
    published ImageNet 256 numbers: 50,000 samples against `VIRTUAL_imagenet256_labeled.npz`; for
    CIFAR-10: 50,000 samples against the 50,000 training images.

    Args:
        samples: `.npz` of generated images (`arr_0`, uint8 `(N, H, W, 3)`) or of statistics.
        reference: the reference `.npz`.
        extractor: the feature extractor; default: [`InceptionFeatures`][soflow_toolkit.fid.InceptionFeatures] (torch-fidelity),
            built only if a file needs features.
        inception_weights: local weights file for the default extractor (offline use).
        use_stored: use stored statistics when a file has them.
        batch_size: images per forward pass.
        device: where the extractor runs (default: CPU).
        progress: show progress bars.

    Returns:
        The FID, a Python float.

    Raises:
        ImportError: if the default extractor is needed and torch-fidelity is not installed.

    Examples:
        >>> import tempfile, torch
        >>> from soflow_toolkit.fid import FeatureStatistics, save_statistics
        >>> folder = tempfile.mkdtemp()
        >>> save_statistics(folder + "/a.npz", FeatureStatistics(torch.zeros(2), torch.eye(2)))
        >>> save_statistics(folder + "/b.npz", FeatureStatistics(torch.ones(2), torch.eye(2)))
        >>> fid_from_npz(folder + "/a.npz", folder + "/b.npz")  # |mu_a - mu_b|^2
        2.0
    """
    extractor = _extractor_for(
        (samples, reference), extractor, use_stored=use_stored, weights=inception_weights, device=device
    )
    first, second = (
        npz_statistics(
            path, extractor, use_stored=use_stored, batch_size=batch_size, device=device, progress=progress
        )
        for path in (samples, reference)
    )
    return frechet_distance(first, second)
