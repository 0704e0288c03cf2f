"""SoFlowLoss under DistributedDataParallel: two CPU processes on the gloo backend.

`tests/dist_worker.py` trains `DistributedDataParallel(SolutionFlowWrapper(backbone))` for a few steps
with each rank on its own data, without and with training-time guidance (the latter with a
single-time backbone wrapped by `SingleTimeAdapter`) and with a range of guidance scales (the scale of
each sample passed to the backbone as a keyword through DDP), and recomputes each step's gradients
without DDP.
The objective evaluates the network two or three times per step (one with gradient, the others under
`no_grad`); DDP runs with its defaults (`broadcast_buffers=True`) and `find_unused_parameters=False`.

Every run also checks the teardown: once the process group is destroyed nothing references it and
the threads its gloo backend started have ended (a backend that outlives its group can abort the
process at exit with "terminate called without an active exception"), after a normal run and after
one that raises in the middle of training.
"""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from dist_worker import TwoTimeMLP, run_workers
from torch import nn

import soflow_toolkit as sf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
from common.distributed import cleanup, distributed_context  # noqa: E402

STEPS = 3


def check_teardown(results: list[dict]) -> None:
    """After `destroy_process_group()` nothing holds the group and its backend's threads are gone."""
    for rank, result in enumerate(results):
        teardown = result["teardown"]
        where = f"rank {rank}: {teardown}\n{result['output']}"
        assert not teardown["group_referenced"], where
        if teardown["backend_threads"] is not None:  # Linux (/proc)
            assert teardown["backend_threads"] > 0, where
            assert teardown["backend_threads_left"] == 0, where


def check_results(results: list[dict], steps: int = STEPS) -> None:
    """The assertions shared by the DDP and FSDP tests, for every rank and scenario."""
    assert len(results) >= 1
    assert [r["rank"] for r in results] == list(range(len(results)))
    check_teardown(results)
    for rank, result in enumerate(results):
        by_scenario = result["scenarios"]
        assert set(by_scenario) == {"plain", "guided", "scales"}
        for scenario, r in by_scenario.items():
            where = f"rank {rank}, {scenario}: {r}"
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
    assert [r["scenarios"]["plain"]["world_size"] for r in results] == [2, 2]
    check_results(results)


@pytest.mark.slow
def test_ddp_failure_in_training_still_releases_the_group(tmp_path):
    """An exception with the DDP module alive in the failing frame: the worker fails with that
    exception (not an abort) and the group is released before it is destroyed. One process, so that
    the launcher has no other rank to stop before it writes its record."""
    results = run_workers("ddp", tmp_path, device="cpu", nproc=1, steps=STEPS, fail_at_step=1)
    output = results[0]["output"]
    assert "RequestedFailure: requested failure at step 1 (ddp, plain)" in output, output
    assert "terminate called" not in output, output
    assert "scenarios" not in results[0]
    check_teardown(results)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (NCCL backend)")
def test_ddp_cuda_nccl_matches_mean_of_local_gradients(tmp_path):
    nproc = min(2, torch.cuda.device_count())
    check_results(run_workers("ddp", tmp_path, device="cuda", nproc=nproc, steps=STEPS))


# ----------------------------------------------------------------------------------------------------
# The process group's owner of the examples (and of tests/dist_worker.py), in this process: a one-rank
# gloo group, DDP with its defaults.


@pytest.fixture
def one_rank(monkeypatch):
    """The environment torchrun would set for a single process."""
    for name, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", "0")  # rank 0 hosts the store on a free port
    yield
    if dist.is_initialized():  # a failed test must not leave its group to the next one
        dist.destroy_process_group()


def train_ddp(steps: int, fail_at: int | None = None, keep: list | None = None) -> float:
    """A few DDP steps of SoFlowLoss; the DDP module, optimizer and loss are locals of this frame."""
    generator = torch.Generator().manual_seed(0)
    model = sf.SolutionFlowWrapper(TwoTimeMLP())
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    objective = sf.SoFlowLoss(sf.SoFlowConfig().with_total_steps(steps))
    for step in range(steps):
        out = objective(ddp, torch.randn(8, 2, generator=generator), generator=generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if step == fail_at:
            raise ValueError(f"failure at step {step}")
    if keep is not None:
        keep.append(ddp)
    return float(out.loss.detach())


@pytest.mark.filterwarnings("error::RuntimeWarning")  # cleanup() warns if the group is still held
def test_distributed_context_releases_ddp_before_destroying_the_group(one_rank):
    with distributed_context("cpu", min_world_size=1) as info:
        group = weakref.ref(dist.group.WORLD)
        assert info.distributed
        loss = train_ddp(steps=2)
    assert not dist.is_initialized()
    assert group() is None  # destroyed, and nothing else holds it
    assert loss == loss  # a number came out


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_distributed_context_releases_ddp_held_by_a_failed_frame(one_rank):
    """The exception's traceback keeps train_ddp's frame (and its DDP module): its locals are cleared."""
    with (  # noqa: PT012
        pytest.raises(ValueError, match="failure at step 1") as caught,
        distributed_context("cpu", min_world_size=1),
    ):
        group = weakref.ref(dist.group.WORLD)
        train_ddp(steps=3, fail_at=1)
    assert caught.traceback[-1].name == "train_ddp"  # the traceback still says where it failed
    assert not dist.is_initialized()
    gc.collect()
    assert group() is None


def test_cleanup_warns_when_a_ddp_module_still_holds_the_group(one_rank):
    kept: list = []
    with (
        pytest.warns(RuntimeWarning, match=r"still referenced .*DistributedDataParallel"),
        distributed_context("cpu", min_world_size=1),
    ):
        train_ddp(steps=1, keep=kept)
    assert not dist.is_initialized()
    kept.clear()


def test_cleanup_without_a_group_does_nothing():
    assert not dist.is_initialized()
    assert cleanup() is True
    with distributed_context("cpu") as info:  # one process and the default min_world_size: no group
        assert not info.distributed
