"""SoFlowLoss under FSDP.

- FSDP2 (`torch.distributed.fsdp.fully_shard`) runs on CPU with the gloo backend: two processes, one
  FSDP unit per parametrized child of the backbone (the time embedder included) plus the root, the
  same checks as the DDP test (gradient = mean of per-rank gradients, identical full parameters on
  every rank, every gradient-bearing call through the sharded module).
- FSDP1 (`FullyShardedDataParallel`) refuses to run without an accelerator in this torch version; its
  test needs CUDA and is skipped otherwise.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from dist_worker import run_workers
from test_distributed import STEPS, check_results
from torch import nn


@pytest.mark.slow
def test_fsdp2_fully_shard_cpu_gloo(tmp_path):
    results = run_workers("fsdp2", tmp_path, device="cpu", nproc=2, steps=STEPS)
    assert [r["guided"]["world_size"] for r in results] == [2, 2]
    check_results(results)


@pytest.mark.skipif(torch.cuda.is_available(), reason="documents the CPU limitation only")
def test_fsdp1_is_refused_on_cpu_by_torch():
    """Why FSDP1 has no CPU test: torch's FullyShardedDataParallel needs an accelerator."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match="accelerator"):
            FullyShardedDataParallel(nn.Linear(2, 2))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP1 needs an accelerator (CUDA)")
def test_fsdp1_cuda_nccl(tmp_path):
    nproc = min(2, torch.cuda.device_count())
    check_results(run_workers("fsdp1", tmp_path, device="cuda", nproc=nproc, steps=STEPS))


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (NCCL backend)")
def test_fsdp2_fully_shard_cuda_nccl(tmp_path):
    nproc = min(2, torch.cuda.device_count())
    check_results(run_workers("fsdp2", tmp_path, device="cuda", nproc=nproc, steps=STEPS))
