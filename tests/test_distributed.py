"""SoFlowLoss under DistributedDataParallel: two CPU processes on the gloo backend.

`tests/dist_worker.py` trains `DistributedDataParallel(SolutionFlowWrapper(backbone))` for a few steps
with each rank on its own data, without and with training-time guidance (the latter with a
single-time backbone wrapped by `SingleTimeAdapter`) and with a range of guidance scales (the scale of
each sample passed to the backbone as a keyword through DDP), and recomputes each step's gradients
without DDP.
The objective evaluates the network two or three times per step (one with gradient, the others under
`no_grad`); DDP runs with its defaults (`broadcast_buffers=True`) and `find_unused_parameters=False`.
"""

from __future__ import annotations

import pytest
import torch
from dist_worker import run_workers

STEPS = 3


def check_results(results: list[dict], steps: int = STEPS) -> None:
    """The assertions shared by the DDP and FSDP tests, for every rank and scenario."""
    assert len(results) >= 1
    for rank, by_scenario in enumerate(results):
        assert set(by_scenario) == {"plain", "guided", "scales"}
        for scenario, r in by_scenario.items():
            where = f"rank {rank}, {scenario}"
            # The distributed gradient is the mean of the per-rank gradients computed without wrapper.
            assert r["grad_max_abs_diff"] <= 1e-5 * max(1.0, r["grad_max_abs"]), where
            assert r["grad_max_abs"] > 0, where
            # Same parameters and inputs give the same loss with and without the wrapper.
            assert r["loss_max_abs_diff"] <= 1e-6, where
            # Every rank holds the same parameters after training, and training moved them.
            assert r["param_max_rank_diff"] == 0.0, where
            assert r["param_change"] > 1e-3, where
            # Every network call with gradient went through the distributed module's forward.
            assert r["backbone_with_grad"] == steps, where
            assert r["distributed_with_grad"] == r["backbone_with_grad"], where
            assert r["objective_step"] == steps, where


@pytest.mark.slow
def test_ddp_cpu_gloo_matches_mean_of_local_gradients(tmp_path):
    results = run_workers("ddp", tmp_path, device="cpu", nproc=2, steps=STEPS)
    assert [r["plain"]["world_size"] for r in results] == [2, 2]
    check_results(results)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (NCCL backend)")
def test_ddp_cuda_nccl_matches_mean_of_local_gradients(tmp_path):
    nproc = min(2, torch.cuda.device_count())
    check_results(run_workers("ddp", tmp_path, device="cuda", nproc=nproc, steps=STEPS))
