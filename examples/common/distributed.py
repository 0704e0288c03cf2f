"""Distributed setup for `torchrun` (or a plain single-process run).

`torchrun --nproc-per-node=N script.py` (or `python -m torch.distributed.run ...`) sets `RANK`,
`WORLD_SIZE` and `LOCAL_RANK`; without them the script runs as a single process. The backend is NCCL
on CUDA and Gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def pick_device(name: str, local_rank: int) -> torch.device:
    """`"auto"` (CUDA when available), `"cuda"` or `"cpu"` -> this process's device."""
    if name not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu'; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(device: str = "auto", *, process_group: bool = True) -> DistInfo:
    """Read the `torchrun` environment, choose the device and start the process group if needed."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local_rank)
    if process_group and world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            dist.init_process_group(backend, device_id=dev)
        else:
            dist.init_process_group(backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup() -> None:
    """Destroy the process group (if one was started)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (a one-element list without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (the tensor itself without a process group)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def data_parallel(model: nn.Module, info: DistInfo) -> nn.Module:
    """`model` inside DistributedDataParallel when there are several ranks; `model` itself otherwise."""
    if info.world_size == 1:
        return model
    return DistributedDataParallel(
        model, device_ids=[info.device.index] if info.device.type == "cuda" else None
    )
