"""SoFlowLoss with `torch.compile`: the compiled backbone, and the compiled wrapper (whole graph).

Each test trains an eager model and a compiled copy side by side for a few steps on the same draws
(guided and class-conditional, so the objective makes three network passes of three batch shapes, with
and without gradient), checks that the losses agree within 1e-5 in float32, and that nothing is
compiled again after the first step (`torch.compiler.set_stance("fail_on_recompile")` and dynamo's
graph counter). The `aot_eager` backend (dynamo + AOTAutograd, no code generation) runs in the quick
suite; the `inductor` backend (C++ code generation on CPU) is marked slow.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from torch._dynamo.utils import counters

from soflow_toolkit import GuidanceConfig, SingleTimeAdapter, SoFlowConfig, SoFlowLoss, SolutionFlowWrapper

NUM_CLASSES = 3
BACKENDS = ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]


class TwoTimeNet(nn.Module):
    def __init__(self, dim: int = 4, width: int = 32) -> None:
        super().__init__()
        self.label_embed = nn.Embedding(NUM_CLASSES + 1, width)
        self.inp = nn.Linear(dim + 2, width)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor) -> Tensor:
        h = self.inp(torch.cat([x, t[:, None], s[:, None]], dim=1)) + self.label_embed(labels)
        return self.out(h)


class SingleTimeNet(nn.Module):
    def __init__(self, dim: int = 4, width: int = 32) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.label_embed = nn.Embedding(NUM_CLASSES + 1, width)
        self.body = nn.Sequential(nn.Linear(dim + width, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, time: Tensor, labels: Tensor) -> Tensor:
        emb = self.time_embed(time[:, None]) + self.label_embed(labels)
        return self.body(torch.cat([x, emb], dim=1))


def config() -> SoFlowConfig:
    guidance = GuidanceConfig(scale=2.0, drop_rate=0.2, mix_ratio=0.5, decay_time=0.8)
    return SoFlowConfig(guidance=guidance).with_total_steps(100)


def train_side_by_side(eager: nn.Module, compiled: nn.Module, steps: int = 4) -> list[float]:
    """Train both models on the same draws; return |loss difference| per step.

    The first step compiles; the later ones run under `fail_on_recompile` and must not add graphs.
    """
    objective = SoFlowLoss(config())
    opt_eager = torch.optim.SGD(eager.parameters(), lr=0.05)
    opt_compiled = torch.optim.SGD(compiled.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    differences = []
    graphs_after_warmup = None
    for step in range(steps):
        data = torch.randn(16, 4, generator=generator)
        labels = torch.randint(0, NUM_CLASSES, (16,), generator=generator)
        draw = objective.draw(data, step=step, conditional=True, generator=generator)
        losses = []
        for model, optimizer in ((eager, opt_eager), (compiled, opt_compiled)):
            if step == 0 or model is eager:
                out = objective(model, data, labels, NUM_CLASSES, draw=draw, step=step)
            else:
                with torch.compiler.set_stance("fail_on_recompile"):
                    out = objective(model, data, labels, NUM_CLASSES, draw=draw, step=step)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            losses.append(float(out.loss.detach()))
        differences.append(abs(losses[0] - losses[1]))
        if step == 0:
            graphs_after_warmup = counters["stats"]["unique_graphs"]
            assert graphs_after_warmup >= 1
    assert counters["stats"]["unique_graphs"] == graphs_after_warmup
    for (name, p_eager), (_, p_compiled) in zip(
        eager.named_parameters(), compiled.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p_compiled, p_eager, rtol=1e-5, atol=1e-6, msg=name)
    return differences


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_backbone_matches_eager_without_recompiling(backend):
    torch.manual_seed(0)
    backbone = TwoTimeNet()
    eager = SolutionFlowWrapper(backbone)
    compiled = SolutionFlowWrapper(torch.compile(copy.deepcopy(backbone), backend=backend))
    differences = train_side_by_side(eager, compiled)
    assert max(differences) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_wrapper_with_adapter_is_one_graph_and_matches_eager(backend):
    torch.manual_seed(0)
    eager = SolutionFlowWrapper(SingleTimeAdapter(SingleTimeNet(), time_embedding="time_embed"))
    # fullgraph=True: the wrapper's checks, the adapter's hooks and the backbone trace without breaks.
    compiled = torch.compile(copy.deepcopy(eager), backend=backend, fullgraph=True)
    differences = train_side_by_side(eager, compiled)
    assert max(differences) <= 1e-5
