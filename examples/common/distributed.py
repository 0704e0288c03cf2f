"""Distributed setup for `torchrun` (or a plain single-process run).

`torchrun --nproc-per-node=N script.py` (or `python -m torch.distributed.run ...`) sets `RANK`,
`WORLD_SIZE` and `LOCAL_RANK`; without them the script runs as a single process. The backend is NCCL
on CUDA and Gloo on CPU.

The scripts own their process group with `distributed_context`:

    with distributed_context(args.device) as info:
        train(config, info)  # builds, uses and drops the DDP module inside this call

Teardown order matters. `destroy_process_group()` only destroys a backend that nothing else still
references; a DDP reducer, an FSDP state, a `DeviceMesh` kept by DTensor's caches, or a local variable
of a frame in a pending traceback keeps it alive, and a gloo backend alive at interpreter exit can
abort the process ("terminate called without an active exception") when its worker threads outlive
Python. So on the way out (normally or on an exception) `cleanup` drops the failed frames' locals,
clears DTensor's caches, collects garbage and then destroys the group; it warns if the group is
still referenced afterwards. Keep DDP/FSDP modules, their optimizers and any loss with its graph
inside the function called in the `with` block, so that they are gone when it returns.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import os
import sys
import traceback
import warnings
import weakref
from collections.abc import Iterator
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


def setup(device: str = "auto", *, process_group: bool = True, min_world_size: int = 2) -> DistInfo:
    """Read the `torchrun` environment, choose the device and start the process group if needed.

    The group is started when `process_group` is true and there are at least `min_world_size`
    processes (the default 2: a single process needs no collectives; 1 gives a one-rank group).
    Prefer `distributed_context`, which also tears the group down in the right order.
    """
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local_rank)
    if process_group and world_size >= min_world_size and not dist.is_initialized():
        # `torch.distributed.nn.functional` binds `group.WORLD` as the default argument of its
        # functions when it is first imported (DDP imports it through torch._dynamo). Imported while
        # a group exists, it would keep that group alive past `destroy_process_group()`: import it
        # before the group exists, so that its defaults are `None`.
        importlib.import_module("torch.distributed.nn.functional")

        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            dist.init_process_group(backend, device_id=dev)
        else:
            dist.init_process_group(backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup(error: BaseException | None = None) -> bool:
    """Release what still references the process group, then destroy it (if one was started).

    With `error` (an exception on its way out), the locals of the finished frames of its traceback
    (and of the exceptions it chains) are cleared first: a DDP module held by a failed `train()` call
    is released too (the traceback keeps its lines, only the local variables go).

    Returns:
        True if the group was destroyed and nothing references it any more (or there was none);
        False (with a `RuntimeWarning` naming the holders) if something still does.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return True
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__
    clear_dtensor_caches()
    gc.collect()
    world = dist.group.WORLD
    if world is None:
        return True
    group = weakref.ref(world)
    del world
    dist.destroy_process_group()
    gc.collect()
    alive = group()
    if alive is None:
        return True
    holders = sorted({_describe(r) for r in gc.get_referrers(alive)})
    del alive
    warnings.warn(
        "the process group is still referenced after destroy_process_group() (by objects of type "
        f"{', '.join(holders) or 'none the garbage collector sees: C++ code or function defaults'}): its backend outlives the group and can "
        "abort the process at exit; drop DDP/FSDP modules, their optimizers and losses before cleanup()",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


def _describe(referrer: object) -> str:
    """A referrer's type; for an instance's `__dict__`, the instance's type."""
    if isinstance(referrer, dict):
        for owner in gc.get_referrers(referrer):
            if getattr(owner, "__dict__", None) is referrer:
                return type(owner).__qualname__
    return type(referrer).__qualname__


_LRU_CACHE = type(functools.lru_cache(None)(lambda: None))  # what `functools.cache` returns


def clear_dtensor_caches() -> None:
    """Empty DTensor's caches (sharding propagation, redistribution plans, mesh topology), if loaded.

    Their entries hold `DTensorSpec`s or `DeviceMesh`es, and a mesh holds its process groups: after
    an FSDP2 (`fully_shard`) run these caches keep the group referenced although the model is gone.
    They are torch internals, so rather than naming each one this empties every `functools` cache
    defined in a `torch.distributed.tensor` module (at module level or on a class) plus the two
    caches that are not `functools` ones; the caches only save recomputation.
    """
    if "torch.distributed.tensor" not in sys.modules:
        return
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("torch.distributed.tensor"):
            continue
        for value in list(vars(module).values()):
            members = list(vars(value).values()) if isinstance(value, type) else []
            for member in (value, *members):
                member = getattr(member, "__func__", member)  # staticmethod / classmethod
                if isinstance(member, _LRU_CACHE):
                    member.cache_clear()
    with contextlib.suppress(ImportError, AttributeError):
        from torch.distributed.tensor import _redistribute, debug

        debug._clear_sharding_prop_cache()  # the per-thread Python cache and the C++ fast path
        _redistribute.clear_redistribute_planner_cache()


@contextlib.contextmanager
def distributed_context(
    device: str = "auto", *, process_group: bool = True, min_world_size: int = 2
) -> Iterator[DistInfo]:
    """`setup` on entry, `cleanup` on exit (also when the block raises): the process group's owner.

    Example:
        >>> with distributed_context("cpu") as info:  # a single process: no group is started
        ...     info.world_size, info.distributed
        (1, False)
    """
    info = setup(device, process_group=process_group, min_world_size=min_world_size)
    try:
        yield info
    except BaseException as error:
        cleanup(error)
        raise
    cleanup()


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
