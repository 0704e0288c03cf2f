"""SoFlowLoss under FSDP.

- FSDP2 (`torch.distributed.fsdp.fully_shard`) runs on CPU with the gloo backend: two processes, one
  FSDP unit per parametrized child of the backbone (the time embedder included) plus the root, the
  same checks as the DDP test (gradient = mean of per-rank gradients, identical full parameters on
  every rank, every gradient-bearing call through the sharded module) and the same teardown checks,
  after a normal run and after one that raises.
- FSDP1 (`FullyShardedDataParallel`) refuses to run without an accelerator in this torch version; its
  test needs CUDA and is skipped otherwise.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from dist_worker import run_workers
from test_distributed import STEPS, check_results, check_teardown
from torch import nn


@pytest.mark.slow
def test_fsdp2_fully_shard_cpu_gloo(tmp_path):
    results = run_workers("fsdp2", tmp_path, device="cpu", nproc=2, steps=STEPS)
    assert [r["scenarios"]["guided"]["world_size"] for r in results] == [2, 2]
    check_results(results)


@pytest.mark.slow
def test_fsdp2_failure_in_training_still_releases_the_group(tmp_path):
    """As for DDP; FSDP2 also leaves its group referenced by DTensor's caches until they are cleared."""
    results = run_workers("fsdp2", tmp_path, device="cpu", nproc=1, steps=STEPS, fail_at_step=1)
    output = results[0]["output"]
    assert "RequestedFailure: requested failure at step 1 (fsdp2, plain)" in output, output
    assert "terminate called" not in output, output
    check_teardown(results)


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
