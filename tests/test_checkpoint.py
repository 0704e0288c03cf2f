"""Checkpoint and resume: an interrupted run continues exactly like an uninterrupted one.

The checkpoint holds the model (a single-time backbone with dropout, wrapped by `SingleTimeAdapter`
and `SolutionFlowWrapper`), the objective's curriculum step, the optimizer, the EMA, the generator
that draws noise, times and condition drops, and the global random state (dropout). It is written with
`torch.save` and read with `torch.load(weights_only=True)` into freshly built objects whose initial
weights differ. After resuming, every parameter, EMA average and optimizer state equals the
uninterrupted run's exactly (CPU, fixed seeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soflow_toolkit import (
    EMA,
    GuidanceConfig,
    SingleTimeAdapter,
    SoFlowConfig,
    SoFlowLoss,
    SolutionFlowWrapper,
)

NUM_CLASSES = 3
TOTAL = 6
INTERRUPT = 3


class DropoutNet(nn.Module):
    def __init__(self, dim: int = 4, width: int = 32) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.label_embed = nn.Embedding(NUM_CLASSES + 1, width)
        self.body = nn.Sequential(
            nn.Linear(dim + width, width), nn.SiLU(), nn.Dropout(0.2), nn.Linear(width, dim)
        )

    def forward(self, x: Tensor, time: Tensor, labels: Tensor) -> Tensor:
        emb = self.time_embed(time[:, None]) + self.label_embed(labels)
        return self.body(torch.cat([x, emb], dim=1))


class Run:
    """Everything a training run holds."""

    def __init__(self, init_seed: int) -> None:
        torch.manual_seed(init_seed)
        self.model = SolutionFlowWrapper(SingleTimeAdapter(DropoutNet(), time_embedding="time_embed"))
        guidance = GuidanceConfig(scale=2.0, drop_rate=0.2, mix_ratio=0.5, decay_time=0.8)
        self.objective = SoFlowLoss(SoFlowConfig(guidance=guidance).with_total_steps(TOTAL))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2, weight_decay=0.01)
        self.ema = EMA(self.model, decay=0.9, every=2, dtype=torch.float64)
        self.generator = torch.Generator().manual_seed(1234)

    def train(self, steps: int) -> None:
        for _ in range(steps):
            data = torch.randn(16, 4, generator=self.generator)
            labels = torch.randint(0, NUM_CLASSES, (16,), generator=self.generator)
            out = self.objective(self.model, data, labels, NUM_CLASSES, generator=self.generator)
            self.optimizer.zero_grad()
            out.loss.backward()
            self.optimizer.step()
            self.ema.update(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any], *, rng: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        if rng:
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])


def tensors(run: Run) -> dict[str, Tensor]:
    """Every tensor of the run's state, flattened by name."""
    out = {f"param.{n}": p for n, p in run.model.named_parameters()}
    out.update({f"ema.{n}": v for n, v in run.ema.shadow.items()})
    for index, state in run.optimizer.state_dict()["state"].items():
        out.update({f"opt.{index}.{k}": v for k, v in state.items() if isinstance(v, Tensor)})
    return out


def resumed(path: Path, *, restore_rng: bool = True) -> Run:
    run = Run(init_seed=0)
    torch.manual_seed(99)  # the global random state of the interrupted process
    run.train(INTERRUPT)
    torch.save(run.state_dict(), path)
    del run
    torch.manual_seed(7)  # a new process: other initial weights, other random state
    fresh = Run(init_seed=1)
    fresh.load_state_dict(torch.load(path, weights_only=True), rng=restore_rng)
    fresh.train(TOTAL - INTERRUPT)
    return fresh


def uninterrupted() -> Run:
    run = Run(init_seed=0)
    torch.manual_seed(99)
    run.train(TOTAL)
    return run


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    reference = uninterrupted()
    run = resumed(tmp_path / "checkpoint.pt")
    assert run.objective.step == reference.objective.step == TOTAL
    assert run.ema.num_calls == reference.ema.num_calls == TOTAL
    expected, got = tensors(reference), tensors(run)
    assert expected.keys() == got.keys()
    assert any(name.startswith("param.backbone.gap_embedding") for name in got)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    assert torch.equal(run.generator.get_state(), reference.generator.get_state())


def test_resume_without_random_state_diverges(tmp_path):
    """The generator and global random state are part of the checkpoint: without them the runs differ."""
    reference = uninterrupted()
    run = resumed(tmp_path / "checkpoint.pt", restore_rng=False)
    expected, got = tensors(reference), tensors(run)
    assert any(
        not torch.equal(got[name], value) for name, value in expected.items() if name.startswith("param.")
    )


def test_checkpoint_holds_only_weights_only_types(tmp_path):
    run = Run(init_seed=0)
    run.train(1)
    path = tmp_path / "checkpoint.pt"
    torch.save(run.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert state["objective"] == {"step": 1}
    assert state["ema"]["shadow"]["backbone.gap_embedding.stages.0.2.weight"].dtype == torch.float64
