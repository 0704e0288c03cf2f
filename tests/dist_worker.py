"""Multi-process check of SoFlowLoss under DDP or FSDP, launched by tests/test_distributed.py and
tests/test_fsdp.py (not collected by pytest itself):

    python -m torch.distributed.run --standalone --nproc-per-node=2 tests/dist_worker.py \
        --mode ddp --device cpu --out RESULT_DIR

Each rank trains a copy of the same model (same seed) on its own data (seed per rank) for a few steps,
in three scenarios: a two-time MLP without guidance, a class-conditional single-time network
wrapped by SingleTimeAdapter with training-time guidance (three network passes per step), and a
class-conditional network that takes the guidance scale of each sample (keyword `guidance_scale`),
trained with a range of scales. At every
step it recomputes the loss and gradients on the same inputs with an unwrapped copy of the current
parameters, gathers these local gradients from all ranks and compares their mean with the
distributed (all-reduced / reduce-scattered) gradient. It also counts the backbone calls made with
gradient enabled and the calls of the distributed module's forward with gradient enabled: every
gradient-bearing network call must go through the distributed module. At the end it compares the
full parameters across ranks.

The process group is owned by `distributed_context` of `examples/common/distributed.py` (the helper
of the example scripts): the DDP/FSDP modules, their optimizers and losses live inside
`run_scenario`, so they are gone before the group is destroyed, and on an exception the failed
frames' locals are cleared first. After the group is destroyed each rank records whether anything
still references it (a weak reference to it) and how many of the threads the backend started are
still running: both must be zero, or the backend outlives the group and can abort the process at
exit. Each rank writes `rank{r}.json` with the measured differences and this teardown record; the
pytest side asserts on them. `--fail-at-step K` raises inside the training loop at step K (the
distributed module alive in the failing frame), to check the teardown on an exception.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from soflow_toolkit import GuidanceConfig, SingleTimeAdapter, SoFlowConfig, SoFlowLoss, SolutionFlowWrapper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from common.distributed import distributed_context  # noqa: E402


class TwoTimeMLP(nn.Module):
    """`F(x, t, s)` with a registered buffer (exercises DDP's buffer broadcast)."""

    def __init__(self, dim: int = 2, width: int = 32) -> None:
        super().__init__()
        self.register_buffer("shift", torch.linspace(-0.1, 0.1, dim))
        self.net = nn.Sequential(
            nn.Linear(dim + 2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim)
        )

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        return self.net(torch.cat([x + self.shift, t[:, None], s[:, None]], dim=1))


class LabelTimeNet(nn.Module):
    """A single-time, class-conditional network `net(x, time, labels)` with its own time embedder."""

    def __init__(self, dim: int = 2, width: int = 32, num_classes: int = 3) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.label_embed = nn.Embedding(num_classes + 1, width)
        self.net = nn.Sequential(nn.Linear(dim + width, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, time: Tensor, labels: Tensor) -> Tensor:
        emb = self.time_embed(time[:, None]) + self.label_embed(labels)
        return self.net(torch.cat([x, emb], dim=1))


class ScaleNet(nn.Module):
    """`F(x, t, s, labels, guidance_scale=w)`: the guidance scale of each sample is an input."""

    def __init__(self, dim: int = 2, width: int = 32, num_classes: int = 3) -> None:
        super().__init__()
        self.label_embed = nn.Embedding(num_classes + 1, width)
        self.scale_embed = nn.Linear(1, width)
        self.inp = nn.Linear(dim + 2, width)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor, *, guidance_scale: Tensor) -> Tensor:
        h = self.inp(torch.cat([x, t[:, None], s[:, None]], dim=1)) + self.label_embed(labels)
        return self.out(h + self.scale_embed(guidance_scale[:, None]))


NUM_CLASSES = 3
SCENARIOS = ("plain", "guided", "scales")


def build(scenario: str) -> tuple[SolutionFlowWrapper, SoFlowConfig]:
    torch.manual_seed(0)  # identical initial weights on every rank
    if scenario == "plain":
        return SolutionFlowWrapper(TwoTimeMLP()), SoFlowConfig().with_total_steps(10)
    if scenario == "scales":
        guidance = GuidanceConfig(scale=(1.0, 4.0), drop_rate=0.25, mix_ratio=0.5, decay_time=0.8)
        return SolutionFlowWrapper(ScaleNet()), SoFlowConfig(guidance=guidance).with_total_steps(10)
    guidance = GuidanceConfig(scale=2.0, drop_rate=0.25, mix_ratio=0.5, decay_time=0.8)
    model = SolutionFlowWrapper(SingleTimeAdapter(LabelTimeNet(), time_embedding="time_embed"))
    return model, SoFlowConfig(guidance=guidance).with_total_steps(10)


def full(tensor: Tensor) -> Tensor:
    """The full (unsharded) value of a parameter or gradient (FSDP2 keeps DTensor shards)."""
    full_tensor = getattr(tensor, "full_tensor", None)
    return full_tensor() if callable(full_tensor) else tensor


def flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in tensors])


def distribute(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)
    if mode == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        # One FSDP unit per parametrized child of the backbone (the time embedder included), then the root.
        backbone = (
            model.backbone.backbone if isinstance(model.backbone, SingleTimeAdapter) else model.backbone
        )
        for child in backbone.children():
            if any(True for _ in child.parameters()):
                fully_shard(child, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    if mode == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(model, device_id=device, use_orig_params=True)
    raise ValueError(f"unknown mode {mode!r}")


def full_params_and_grads(model: nn.Module, mode: str) -> tuple[dict[str, Tensor], list[Tensor]]:
    if mode == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, with_grads=True):
            params = {n: p.detach().clone() for n, p in model.named_parameters()}
            grads = [p.grad.detach().clone() for p in model.parameters()]
        return params, grads
    params = {n: full(p.detach()).clone() for n, p in model.named_parameters()}
    grads = [full(p.grad).clone() for p in model.parameters()]
    return params, grads


def strip(name: str) -> str:
    for prefix in ("module.", "_fsdp_wrapped_module.", "_orig_mod."):
        name = name.replace(prefix, "")
    return name


class RequestedFailure(RuntimeError):
    """Raised by `--fail-at-step`."""


def run_scenario(
    scenario: str, mode: str, device: torch.device, steps: int, fail_at_step: int | None = None
) -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    model, config = build(scenario)
    model.to(device)
    reference = copy.deepcopy(model)
    initial = flat(list(model.parameters()))
    distributed = distribute(model, mode, device)
    optimizer = torch.optim.Adam(distributed.parameters(), lr=1e-2)
    objective, ref_objective = SoFlowLoss(config), SoFlowLoss(config)
    conditional = scenario in ("guided", "scales")

    counts = {"backbone_with_grad": 0, "distributed_with_grad": 0}

    def count(key: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            if torch.is_grad_enabled():
                counts[key] += 1

        return hook

    backbone = model.backbone if mode != "fsdp1" else distributed.module.backbone  # type: ignore[union-attr]
    backbone.register_forward_pre_hook(count("backbone_with_grad"))
    distributed.register_forward_pre_hook(count("distributed_with_grad"))

    grad_diff = grad_scale = loss_diff = 0.0
    for step in range(steps):
        generator = torch.Generator().manual_seed(1000 * (rank + 1) + step)
        data = torch.randn(8, 2, generator=generator).to(device)
        labels = torch.randint(0, NUM_CLASSES, (8,), generator=generator).to(device) if conditional else None
        null = NUM_CLASSES if conditional else None
        draw = objective.draw(data, step=step, conditional=conditional, generator=generator)

        out = objective(distributed, data, labels, null, draw=draw)
        optimizer.zero_grad()
        out.loss.backward()
        params, grads = full_params_and_grads(distributed, mode)

        # The same step without any wrapper, on this rank's inputs only.
        current = {strip(n): p for n, p in params.items()}
        with torch.no_grad():
            for name, param in reference.named_parameters():
                param.copy_(current[name])
        reference.zero_grad()
        ref_out = ref_objective(reference, data, labels, null, draw=draw, step=step)
        ref_out.loss.backward()
        local = flat([p.grad for p in reference.parameters()])
        gathered = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(gathered, local)
        mean = torch.stack(gathered).mean(dim=0)
        grad_diff = max(grad_diff, float((flat(grads) - mean).abs().max()))
        grad_scale = max(grad_scale, float(mean.abs().max()))
        loss_diff = max(loss_diff, abs(float(out.loss.detach()) - float(ref_out.loss.detach())))
        optimizer.step()
        if step == fail_at_step:
            raise RequestedFailure(f"requested failure at step {step} ({mode}, {scenario})")

    final, _ = full_params_and_grads(distributed, mode)
    mine = flat(list(final.values()))
    everyone = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    return {
        "grad_max_abs_diff": grad_diff,
        "grad_max_abs": grad_scale,
        "loss_max_abs_diff": loss_diff,
        "param_max_rank_diff": max(float((p - everyone[0]).abs().max()) for p in everyone),
        "param_change": float((mine - initial).abs().max()),
        "num_params": mine.numel(),
        "steps": steps,
        "world_size": world,
        **counts,
        "objective_step": objective.step,
    }


def threads() -> set[str] | None:
    """The ids of this process's threads (Linux: `/proc/self/task`); None where that is not available."""
    try:
        return set(os.listdir("/proc/self/task"))
    except OSError:
        return None


def run_workers(
    mode: str,
    out: Path,
    *,
    device: str = "cpu",
    nproc: int = 2,
    steps: int = 3,
    fail_at_step: int | None = None,
) -> list[dict[str, Any]]:
    """Launch this script on `nproc` processes with `python -m torch.distributed.run`; return each rank's results.

    With `fail_at_step`, the workers are expected to fail: the results are then the teardown records
    alone, each with the workers' output under `"output"`.

    Raises:
        RuntimeError: with the workers' whole output (stdout and stderr) if the launch fails when it
            should not, succeeds when it should not, or leaves a rank without its result file.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        str(Path(__file__).resolve()), "--mode", mode, "--device", device, "--steps", str(steps), "--out", str(out),
    ]  # fmt: skip
    if fail_at_step is not None:
        command += ["--fail-at-step", str(fail_at_step)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = f"command: {' '.join(command)}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    expected_failure = fail_at_step is not None
    if (done.returncode != 0) != expected_failure:
        raise RuntimeError(f"{mode} workers exited with {done.returncode}:\n{output}")
    paths = [out / f"rank{rank}.json" for rank in range(nproc)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise RuntimeError(f"{mode} workers wrote no {', '.join(missing)}:\n{output}")
    results = [json.loads(p.read_text()) for p in paths]
    for result in results:
        result["output"] = output
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["ddp", "fsdp2", "fsdp1"], required=True)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--fail-at-step", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.set_num_threads(1)
    before = threads()
    record: dict[str, Any] = {}
    try:
        # A group even for one process (a one-rank run checks the teardown on an exception).
        with distributed_context(args.device, min_world_size=1) as info:
            started = threads()
            backend_threads = None if before is None or started is None else started - before
            group = weakref.ref(dist.group.WORLD)  # type: ignore[arg-type]
            record["rank"] = info.rank
            record["scenarios"] = {
                scenario: run_scenario(scenario, args.mode, info.device, args.steps, args.fail_at_step)
                for scenario in SCENARIOS
            }
    finally:
        if "rank" in record:
            now = threads()
            record["teardown"] = {
                "group_referenced": group() is not None,
                "backend_threads": None if backend_threads is None else len(backend_threads),
                "backend_threads_left": None
                if backend_threads is None or now is None
                else len(backend_threads & now),
            }
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"rank{record['rank']}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
