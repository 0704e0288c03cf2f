"""A distributed batch sampler whose position is one integer, so a resumed run reads the same data.

Each epoch is a fresh permutation of the dataset drawn from `seed + epoch`; rank `r` of `W` takes
every `W`-th index of it starting at `r` (the last `N mod W` indices are dropped, so all ranks see
the same number), and cuts its share into batches (dropping the last partial one). Batch `k` of the
run is therefore a pure function of `k`: the data position saved in a checkpoint is the number of
batches consumed, and resuming at step `k` reads exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch


class ResumableSampler:
    """Infinite batch sampler over `num_samples` indices for one rank; usable as `batch_sampler`.

    Args:
        num_samples: dataset size N.
        batch_size: batch size of this rank.
        rank: this rank.
        world_size: number of ranks.
        seed: seed of the epoch permutations (the same on every rank).

    Example:
        >>> sampler = ResumableSampler(10, 2, rank=0, world_size=2, seed=0)
        >>> sampler.batches_per_epoch
        2
        >>> sampler.batch(3) == sampler.batch(1 + sampler.batches_per_epoch)
        True
    """

    def __init__(self, num_samples: int, batch_size: int, *, rank: int, world_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}); got {rank}")
        per_rank = num_samples // world_size
        if per_rank < batch_size:
            raise ValueError(
                f"the dataset has {num_samples} samples: too few for {world_size} rank(s) with "
                f"{batch_size} samples each per step"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.per_rank = per_rank
        self.batches_per_epoch = per_rank // batch_size
        self.position = 0  # batches consumed: the data position
        self._cached: tuple[int, torch.Tensor] | None = None

    def _share(self, epoch: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.num_samples, generator=generator)
            self._cached = (epoch, perm[self.rank : self.per_rank * self.world_size : self.world_size])
        return self._cached[1]

    def batch(self, k: int) -> list[int]:
        """The indices of this rank's `k`-th batch of the run (k = 0, 1, ...)."""
        epoch, b = divmod(k, self.batches_per_epoch)
        share = self._share(epoch)
        return share[b * self.batch_size : (b + 1) * self.batch_size].tolist()

    def epoch(self, k: int | None = None) -> int:
        """The epoch of batch `k` (default: the current position)."""
        return (self.position if k is None else k) // self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        """Batches from the current position on, forever. Iterating does not move `position`."""
        k = self.position
        while True:
            yield self.batch(k)
            k += 1

    def state_dict(self) -> dict[str, int]:
        """The data position and what it depends on (ints only)."""
        return {
            "position": self.position,
            "epoch": self.epoch(),
            "seed": self.seed,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; warns when the data or the layout of ranks changed."""
        changed = [
            key
            for key in ("seed", "num_samples", "batch_size", "world_size")
            if int(state[key]) != getattr(self, key)
        ]
        if changed:
            warnings.warn(
                f"the data position was saved with different {', '.join(changed)}: the resumed run "
                "continues at the same batch count but reads other samples than an uninterrupted run",
                stacklevel=2,
            )
        self.position = int(state["position"])
