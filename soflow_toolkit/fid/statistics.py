r"""Feature statistics for FID: mean and covariance, accumulated over chunks in float64.

The ADM evaluator computes $\mu$ = `np.mean` and $\Sigma$ = `np.cov` (the unbiased covariance,
divisor $N - 1$) of all Inception features at once. [`StatisticsAccumulator`][soflow_toolkit.fid.StatisticsAccumulator] gives the same
numbers chunk by chunk, so 50,000 features never need to sit in memory: each chunk's mean and centred
scatter matrix are merged into the running ones with the pairwise update of Chan, Golub & LeVeque
(1979), which does not cancel catastrophically as $\sum x x^\top - N \mu\mu^\top$ can.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

__all__ = ["FeatureExtractor", "FeatureStatistics", "StatisticsAccumulator", "feature_statistics"]

FeatureExtractor = Callable[[Tensor], Tensor]
"""A feature extractor: uint8 images `(B, 3, H, W)` in [0, 255] -> features `(B, D)`."""


@dataclass(frozen=True)
class FeatureStatistics:
    r"""Mean $\mu$ and covariance $\Sigma$ of a set of features, in float64.

    Args:
        mean: $\mu$, shape `(D,)`; stored as float64.
        cov: $\Sigma$, shape `(D, D)`, the unbiased covariance (divisor $N - 1$, as `np.cov`); stored
            as float64 on `mean`'s device.
        count: the number of features $N$ they were computed from, or None when unknown (e.g. the
            statistics stored in an ADM reference batch).

    Raises:
        TypeError: if `mean` or `cov` is not a floating tensor.
        ValueError: if the shapes do not match `(D,)` and `(D, D)`, or `count` is below 2.

    Examples:
        >>> import torch
        >>> stats = FeatureStatistics(torch.zeros(3), torch.eye(3), count=10)
        >>> stats.dim, stats.cov.dtype
        (3, torch.float64)
    """

    mean: Tensor
    cov: Tensor
    count: int | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "cov"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or not value.is_floating_point():
                kind = f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
                raise TypeError(f"FeatureStatistics.{name} must be a floating-point tensor; got {kind}")
        if self.mean.ndim != 1:
            raise ValueError(f"FeatureStatistics.mean must have shape (D,); got {tuple(self.mean.shape)}")
        dim = self.mean.shape[0]
        if self.cov.shape != (dim, dim):
            raise ValueError(
                f"FeatureStatistics.cov must have shape ({dim}, {dim}) to match the mean; "
                f"got {tuple(self.cov.shape)}"
            )
        if self.count is not None and (isinstance(self.count, bool) or int(self.count) < 2):
            raise ValueError(f"FeatureStatistics.count must be None or an int >= 2; got {self.count!r}")
        object.__setattr__(self, "mean", self.mean.to(torch.float64))
        object.__setattr__(self, "cov", self.cov.to(device=self.mean.device, dtype=torch.float64))
        if self.count is not None:
            object.__setattr__(self, "count", int(self.count))

    @property
    def dim(self) -> int:
        """The feature dimension $D$."""
        return int(self.mean.shape[0])


class StatisticsAccumulator:
    r"""Running mean and covariance of features, merged chunk by chunk in float64.

    For the running $(n_a, \mu_a, M_a)$ and a chunk $(n_b, \mu_b, M_b)$, where
    $M = \sum_i (x_i - \mu)(x_i - \mu)^\top$, with $n = n_a + n_b$ and $\delta = \mu_b - \mu_a$:

    $$\mu = \mu_a + \delta\,\frac{n_b}{n}, \qquad
      M = M_a + M_b + \delta\delta^\top \frac{n_a n_b}{n}, \qquad \Sigma = \frac{M}{n - 1}.$$

    The result does not depend on how the features are split into chunks (up to rounding). Use
    [`merge`][soflow_toolkit.fid.StatisticsAccumulator.merge] to combine the accumulators of several processes.

    Args:
        device: where the running sums live (default: the device of the first chunk).

    Examples:
        >>> import torch
        >>> features = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
        >>> acc = StatisticsAccumulator()
        >>> for chunk in features.split(30):
        ...     acc.update(chunk)
        >>> stats = acc.compute()
        >>> torch.allclose(stats.cov, torch.cov(features.double().T))
        True
    """

    def __init__(self, *, device: torch.device | str | None = None) -> None:
        self.device = None if device is None else torch.device(device)
        self.count = 0
        self._mean: Tensor | None = None
        self._scatter: Tensor | None = None

    @property
    def dim(self) -> int | None:
        """The feature dimension, or None before the first chunk."""
        return None if self._mean is None else int(self._mean.shape[0])

    def update(self, features: Tensor) -> None:
        """Add a chunk of features, shape `(B, D)` (any floating dtype; accumulated in float64)."""
        if not isinstance(features, Tensor) or not features.is_floating_point():
            kind = f"dtype {features.dtype}" if isinstance(features, Tensor) else type(features).__name__
            raise TypeError(f"features must be a floating-point tensor of shape (B, D); got {kind}")
        if features.ndim != 2:
            raise ValueError(f"features must have shape (B, D); got {tuple(features.shape)}")
        if self.dim is not None and features.shape[1] != self.dim:
            raise ValueError(
                f"features must have {self.dim} columns like the earlier chunks; got {features.shape[1]}"
            )
        if features.shape[0] == 0:
            return
        device = self.device if self.device is not None else features.device
        chunk = features.detach().to(device=device, dtype=torch.float64)
        if not bool(torch.isfinite(chunk).all()):
            raise ValueError("features contain NaN or infinite values")
        mean = chunk.mean(dim=0)
        centred = chunk - mean
        self._merge(chunk.shape[0], mean, centred.T @ centred)

    def merge(self, other: StatisticsAccumulator) -> None:
        """Fold the features of another accumulator into this one (e.g. gathered from other ranks)."""
        if not isinstance(other, StatisticsAccumulator):
            raise TypeError(f"other must be a StatisticsAccumulator; got {type(other).__name__}")
        if other._mean is None or other._scatter is None:
            return
        if self.dim is not None and other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into dimension {self.dim}")
        device = self.device if self.device is not None else other._mean.device
        self._merge(other.count, other._mean.to(device), other._scatter.to(device))

    def _merge(self, count: int, mean: Tensor, scatter: Tensor) -> None:
        if self._mean is None or self._scatter is None:
            self.count, self._mean, self._scatter = count, mean, scatter
            return
        total = self.count + count
        delta = mean.to(self._mean.device) - self._mean
        self._mean = self._mean + delta * (count / total)
        self._scatter = (
            self._scatter
            + scatter.to(self._mean.device)
            + torch.outer(delta, delta) * (self.count * count / total)
        )
        self.count = total

    def compute(self) -> FeatureStatistics:
        """The mean and the unbiased covariance of all features added so far.

        Raises:
            ValueError: if fewer than 2 features were added.
        """
        if self._mean is None or self._scatter is None or self.count < 2:
            raise ValueError(f"need at least 2 features to estimate a covariance; got {self.count}")
        return FeatureStatistics(self._mean.clone(), self._scatter / (self.count - 1), count=self.count)


def _progress(batches: Iterable[Tensor], total: int | None, desc: str, enabled: bool) -> Iterable[Tensor]:
    if not enabled:
        return batches
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:  # the bar is cosmetic: without tqdm, run without one
        return batches
    return cast(Iterable[Tensor], tqdm(batches, total=total, desc=desc, unit="batch"))


def feature_statistics(
    batches: Iterable[Tensor],
    extractor: FeatureExtractor,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
    total: int | None = None,
) -> FeatureStatistics:
    r"""Mean and covariance of `extractor`'s features over a stream of uint8 image batches.

    Each batch is laid out as the ADM `.npz` files store images, `(B, H, W, 3)` uint8 in [0, 255];
    it is moved to `device`, permuted to `(B, 3, H, W)` and passed to `extractor`, which returns
    `(B, D)` features (for FID, [`InceptionFeatures`][soflow_toolkit.fid.InceptionFeatures]: $D = 2048$). Features are accumulated in
    float64 with [`StatisticsAccumulator`][soflow_toolkit.fid.StatisticsAccumulator], under `torch.inference_mode()`.

    Args:
        batches: iterable of uint8 tensors `(B, H, W, 3)` (e.g. [`read_npz_batches`][soflow_toolkit.fid.read_npz_batches]).
        extractor: callable from uint8 `(B, 3, H, W)` to features `(B, D)`.
        device: where the extractor runs (default: where each batch is).
        progress: show a tqdm progress bar (when tqdm is installed).
        total: number of batches, for the progress bar.

    Returns:
        The [`FeatureStatistics`][soflow_toolkit.fid.FeatureStatistics] of all features.

    Raises:
        TypeError: if a batch is not a uint8 tensor.
        ValueError: if a batch is not `(B, H, W, 3)`, the extractor returns a wrong shape, or fewer
            than 2 images came.

    Examples:
        >>> import torch
        >>> images = torch.randint(0, 256, (8, 4, 4, 3), dtype=torch.uint8)
        >>> mean_colour = lambda x: x.float().mean(dim=(2, 3))  # a toy 3-feature extractor
        >>> feature_statistics(images.split(3), mean_colour).count
        8
    """
    accumulator = StatisticsAccumulator()
    for batch in _progress(batches, total, "features", progress):
        if not isinstance(batch, Tensor) or batch.dtype != torch.uint8:
            kind = f"dtype {batch.dtype}" if isinstance(batch, Tensor) else type(batch).__name__
            raise TypeError(f"image batches must be uint8 tensors (B, H, W, 3) in [0, 255]; got {kind}")
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(
                f"image batches must have shape (B, H, W, 3) (channels last, as in ADM .npz files); "
                f"got {tuple(batch.shape)}"
            )
        images = batch.to(device if device is not None else batch.device).permute(0, 3, 1, 2)
        with torch.inference_mode():
            features = extractor(images)
        if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[0] != batch.shape[0]:
            shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ValueError(
                f"the extractor must return features of shape ({batch.shape[0]}, D); got {shape}"
            )
        accumulator.update(features)
    return accumulator.compute()
