"""CIFAR-10 from its standard python batches (`cifar-10-batches-py`), read from a local path.

Download `cifar-10-python.tar.gz` from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it; the
scripts never download anything. The batches are Python pickles (the dataset's official format):
read only files you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def find_batches(root: Path | str) -> Path:
    """The folder holding `data_batch_*`: `root` itself or `root/cifar-10-batches-py`."""
    root = Path(root)
    for folder in (root, root / "cifar-10-batches-py"):
        if any(folder.glob("data_batch_*")):
            return folder
    raise ValueError(f"no CIFAR-10 python batches (data_batch_1 ... data_batch_5) in {root}")


def load_cifar10(root: Path | str, *, train: bool = True) -> tuple[Tensor, Tensor]:
    """Images `(N, 3, 32, 32)` uint8 and labels `(N,)` int64 of the training (or test) batches."""
    folder = find_batches(root)
    files = sorted(folder.glob("data_batch_*")) if train else [folder / "test_batch"]
    images, labels = [], []
    for path in files:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def to_model_range(images: Tensor) -> Tensor:
    """uint8 `[0, 255]` -> float `[-1, 1]`."""
    return images.float() / 127.5 - 1.0


def random_hflip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2 (draws from `generator`)."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
