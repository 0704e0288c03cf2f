"""Losses, gradients, draws and samples of fixed seeds in float64, for a before/after comparison.

`tests/data/frozen_behaviour.pt` holds what this module computes; `tests/test_frozen_behaviour.py`
recomputes it with the current code and requires a relative error below 1e-12 for every tensor. The
cases cover both official presets and `lowdim`, guided and unguided objectives, label, embedding
and dict conditions, the linear and trig paths with the euler and trig parametrizations, dropout
with matched random state, `SingleTimeAdapter`, the functional losses, the time samplers, guidance,
and `sample` (re-noising and chaining) and `euler_sample`.

Regenerate (only when a change of the numbers is intended, and say so in the commit):

    python tests/frozen_behaviour.py --write
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soflow_toolkit import (
    GuidanceConfig,
    RatioSchedule,
    SingleTimeAdapter,
    SoFlowConfig,
    SoFlowLoss,
    SolutionFlowWrapper,
    consistency_times,
    euler_sample,
    flow_matching_loss,
    guidance_decay,
    guided_velocity,
    logit_normal_times,
    sample,
    sample_drop_mask,
    solution_consistency_loss,
    uniform_times,
)

DATA = Path(__file__).parent / "data" / "frozen_behaviour.pt"
SHAPE = (2, 3)  # one sample's shape
BATCH = 10
NUM_CLASSES = 4
EMBED = 5
HIDDEN = 16
DTYPE = torch.float64
GUIDED = GuidanceConfig(scale=3.0, drop_rate=0.3, mix_ratio=0.25, decay_time=0.8)


class Net(nn.Module):
    """A tiny two-time backbone with an optional condition of each kind the toolkit supports.

    h = tanh(vec(x) W1 + t ut + (t - s) ud + cond_term + b1), optionally dropped out;
    out = (h W2 + b2).reshape(x.shape). cond_term: `E[y]` for labels (row `NUM_CLASSES` is the null
    class), `c Wc` for embeddings, both for a dict `{"y": labels, "emb": embeddings}`.
    """

    def __init__(self, kind: str, seed: int, dropout: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        numel = SHAPE[0] * SHAPE[1]

        def param(*shape: int, scale: float = 0.5) -> nn.Parameter:
            return nn.Parameter(scale * torch.randn(*shape, generator=g, dtype=DTYPE))

        self.kind = kind
        self.W1, self.ut, self.ud = param(numel, HIDDEN), param(HIDDEN), param(HIDDEN)
        self.b1, self.W2, self.b2 = param(HIDDEN), param(HIDDEN, numel), param(numel)
        self.E = param(NUM_CLASSES + 1, HIDDEN) if kind in ("labels", "dict") else None
        self.Wc = param(EMBED, HIDDEN) if kind in ("embedding", "dict") else None
        self.null = param(EMBED, scale=1.0) if kind in ("embedding", "dict") else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, cond: Any = None, **kw: Tensor) -> Tensor:
        pre = x.reshape(x.shape[0], -1) @ self.W1 + t[:, None] * self.ut + (t - s)[:, None] * self.ud
        if self.kind == "labels":
            pre = pre + self.E[cond]
        elif self.kind == "embedding":
            pre = pre + cond @ self.Wc
        elif self.kind == "dict":
            pre = pre + self.E[kw["y"]] + kw["emb"] @ self.Wc
        h = self.drop(torch.tanh(pre + self.b1))
        return (h @ self.W2 + self.b2).reshape(x.shape)


def conditions(kind: str, net: Net, g: torch.Generator) -> tuple[Any, Any]:
    """(cond, null_cond) of a batch for a condition kind."""
    if kind == "labels":
        return torch.randint(0, NUM_CLASSES, (BATCH,), generator=g), NUM_CLASSES
    if kind == "embedding":
        return torch.randn(BATCH, EMBED, generator=g, dtype=DTYPE), net.null
    if kind == "dict":
        labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=g)
        emb = torch.randn(BATCH, EMBED, generator=g, dtype=DTYPE)
        return {"y": labels, "emb": emb}, {"y": NUM_CLASSES, "emb": net.null}
    return None, None


def grads(prefix: str, model: nn.Module) -> dict[str, Tensor]:
    return {
        f"{prefix}/grad/{name}": p.grad.detach().clone()
        for name, p in model.named_parameters()
        if p.grad is not None
    }


def loss_output(prefix: str, out: Any) -> dict[str, Tensor]:
    names = ("loss", "mse", "weight", "per_sample_mse", "per_sample_weight")
    return {f"{prefix}/{name}": getattr(out, name).detach().clone() for name in names}


# --------------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------------

OBJECTIVE_CASES: dict[str, tuple[Callable[[], SoFlowConfig], str, str, str, float]] = {
    # name: (config, condition kind, path, parametrization, dropout)
    "imagenet-labels-linear-euler": (SoFlowConfig.imagenet, "labels", "linear", "euler", 0.0),
    "imagenet-embedding-trig-trig": (SoFlowConfig.imagenet, "embedding", "trig", "trig", 0.0),
    "imagenet-dict-linear-trig": (SoFlowConfig.imagenet, "dict", "linear", "trig", 0.0),
    "imagenet-unguided-none-trig-euler": (
        lambda: SoFlowConfig.imagenet(guidance=GuidanceConfig(), total_steps=7),
        "none",
        "trig",
        "euler",
        0.0,
    ),
    "imagenet-droponly-labels-linear-euler": (
        lambda: SoFlowConfig.imagenet(guidance=GuidanceConfig(drop_rate=0.3)),
        "labels",
        "linear",
        "euler",
        0.0,
    ),
    "cifar10-none-linear-euler": (SoFlowConfig.cifar10, "none", "linear", "euler", 0.0),
    "cifar10-guided-embedding-trig-trig": (
        lambda: SoFlowConfig.cifar10(guidance=GUIDED),
        "embedding",
        "trig",
        "trig",
        0.0,
    ),
    "lowdim-none-linear-euler": (lambda: SoFlowConfig.lowdim(total_steps=3), "none", "linear", "euler", 0.0),
    "lowdim-guided-mix1-labels-trig-trig": (
        lambda: SoFlowConfig.lowdim(
            guidance=GuidanceConfig(scale=2.0, drop_rate=0.3, mix_ratio=1.0, decay_time=0.5)
        ),
        "labels",
        "trig",
        "trig",
        0.0,
    ),
    "half-cosine-dict-linear-euler": (
        lambda: SoFlowConfig.imagenet(fm_fraction=0.5, curriculum=RatioSchedule("cosine", 1.0, 0.002, 4)),
        "dict",
        "linear",
        "euler",
        0.0,
    ),
    "rho1-guided-labels-linear-euler": (
        lambda: SoFlowConfig.imagenet(fm_fraction=1.0),
        "labels",
        "linear",
        "euler",
        0.0,
    ),
    "dropout-half-none-linear-euler": (
        lambda: SoFlowConfig(fm_fraction=0.5, curriculum=RatioSchedule("linear", total_steps=10)),
        "none",
        "linear",
        "euler",
        0.3,
    ),
}


def objective_case(name: str) -> dict[str, Tensor]:
    config_fn, kind, path, parametrization, dropout = OBJECTIVE_CASES[name]
    net = Net(kind, seed=len(name), dropout=dropout)
    model = SolutionFlowWrapper(net, path=path, parametrization=parametrization).train()
    g = torch.Generator().manual_seed(7)
    data = torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE)
    cond, null_cond = conditions(kind, net, g)
    objective = SoFlowLoss(config_fn())
    torch.manual_seed(11)  # the dropout masks
    result: dict[str, Tensor] = {}
    for step in range(2):
        model.zero_grad(set_to_none=True)
        out = objective(model, data, cond, null_cond, generator=g)
        out.loss.backward()
        prefix = f"objective/{name}/step{step}"
        result[f"{prefix}/loss"] = out.loss.detach().clone()
        result[f"{prefix}/r"] = torch.tensor(out.r, dtype=DTYPE)
        result[f"{prefix}/split"] = torch.tensor([out.step, out.num_fm, out.num_sc])
        for part_name, part in (("fm", out.fm), ("sc", out.sc)):
            if part is not None:
                result.update(loss_output(f"{prefix}/{part_name}", part))
        metrics = out.metrics()
        result[f"{prefix}/metrics"] = torch.tensor([metrics[k] for k in sorted(metrics)], dtype=DTYPE)
        result.update(grads(prefix, model))
    draw = objective.draw(data, step=5, conditional=cond is not None, generator=g)
    for field in ("noise", "t_fm", "t", "l", "s", "drop_mask"):
        value = getattr(draw, field)
        if value is not None:
            result[f"objective/{name}/draw/{field}"] = value.clone()
    # An explicit draw (range-checked path) gives the same loss as the draw it replays.
    model.zero_grad(set_to_none=True)
    out = objective(model.eval(), data, cond, null_cond, step=5, draw=draw)
    out.loss.backward()
    result[f"objective/{name}/explicit/loss"] = out.loss.detach().clone()
    result.update(grads(f"objective/{name}/explicit", model))
    return result


# --------------------------------------------------------------------------------------------------
# The functional losses
# --------------------------------------------------------------------------------------------------

LOSS_CASES: dict[str, tuple[str, str, str, GuidanceConfig | None, bool, float, float]] = {
    # name: (condition kind, path, parametrization, guidance, drop, p, eps)
    "labels-guided-linear-euler": ("labels", "linear", "euler", GUIDED, True, 1.0, 0.01),
    "embedding-drop-trig-trig": ("embedding", "trig", "trig", None, True, 0.75, 1e-3),
    "dict-guided-mix1-linear-trig": (
        "dict",
        "linear",
        "trig",
        GuidanceConfig(scale=2.0, mix_ratio=1.0, decay_time=0.6),
        True,
        0.5,
        0.1,
    ),
    "none-trig-euler": ("none", "trig", "euler", None, False, 0.0, 0.01),
    "labels-guided-nodrop-trig-trig": ("labels", "trig", "trig", GUIDED, False, 1.0, 0.01),
}


def loss_case(name: str) -> dict[str, Tensor]:
    kind, path, parametrization, guidance, drop, p, eps = LOSS_CASES[name]
    result: dict[str, Tensor] = {}
    for loss_kind in ("flow_matching", "consistency"):
        net = Net(kind, seed=3 + len(name))
        model = SolutionFlowWrapper(net, path=path, parametrization=parametrization)
        g = torch.Generator().manual_seed(5)
        data = torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE)
        noise = torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE)
        cond, null_cond = conditions(kind, net, g)
        mask = sample_drop_mask(BATCH, 0.4, generator=g) if drop else None
        kwargs: dict[str, Any] = {"cond": cond, "p": p, "eps": eps, "guidance": guidance}
        if mask is not None or guidance is not None:
            kwargs.update(drop_mask=mask, null_cond=null_cond)
        if loss_kind == "flow_matching":
            t = uniform_times(BATCH, dtype=DTYPE, generator=g)
            out = flow_matching_loss(model, data, noise, t, **kwargs)
        else:
            t, l, s = consistency_times(BATCH, 0.3, dtype=DTYPE, generator=g)
            l = torch.where(torch.arange(BATCH) == 0, s, l)  # one sample with l = s (r = 1)
            out = solution_consistency_loss(model, data, noise, t, l, s, **kwargs)
        out.loss.backward()
        result.update(loss_output(f"loss/{name}/{loss_kind}", out))
        result.update(grads(f"loss/{name}/{loss_kind}", model))
    return result


# --------------------------------------------------------------------------------------------------
# Sampling, the adapter, time sampling and guidance
# --------------------------------------------------------------------------------------------------


def sampling_cases() -> dict[str, Tensor]:
    result: dict[str, Tensor] = {}
    for kind, path, parametrization in (("labels", "linear", "euler"), ("dict", "trig", "trig")):
        net = Net(kind, seed=21)
        model = SolutionFlowWrapper(net, path=path, parametrization=parametrization)
        g = torch.Generator().manual_seed(9)
        noise = torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE)
        cond, _ = conditions(kind, net, g)
        prefix = f"sample/{kind}-{path}-{parametrization}"
        result[f"{prefix}/one"] = sample(model, noise, cond=cond)
        result[f"{prefix}/renoise2"] = sample(model, noise, steps=2, cond=cond, generator=g)
        fresh = [torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE) for _ in range(2)]
        result[f"{prefix}/renoise3-fresh"] = sample(model, noise, steps=3, cond=cond, fresh_noise=fresh)
        result[f"{prefix}/chain3"] = sample(model, noise, steps=3, cond=cond, method="chain")
        result[f"{prefix}/euler5"] = euler_sample(model, noise, steps=5, cond=cond)
        t = uniform_times(BATCH, dtype=DTYPE, generator=g)
        result[f"{prefix}/velocity"] = model.velocity(noise, t, cond).detach()
        result[f"{prefix}/solution"] = model(noise, t, t * 0.3, cond).detach()
    return result


class SingleTimeNet(nn.Module):
    """A single-time velocity model `net(x, time, labels)` with its own time embedder."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        numel = SHAPE[0] * SHAPE[1]
        self.time_embed = nn.Sequential(nn.Linear(1, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, HIDDEN))
        self.label_embed = nn.Embedding(NUM_CLASSES + 1, HIDDEN)
        self.body = nn.Sequential(nn.Linear(numel + HIDDEN, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, numel))
        self.to(DTYPE)

    def forward(self, x: Tensor, time: Tensor, labels: Tensor) -> Tensor:
        emb = self.time_embed(time[:, None]) + self.label_embed(labels)
        return self.body(torch.cat([x.reshape(x.shape[0], -1), emb], dim=1)).reshape(x.shape)


def adapter_cases() -> dict[str, Tensor]:
    result: dict[str, Tensor] = {}
    variants = {
        "linear": {"zero_init": "linear"},
        "gate-reversed-1000": {"zero_init": "gate", "reverse_time": True, "time_scale": 1000.0},
    }
    for name, options in variants.items():
        adapter = SingleTimeAdapter(SingleTimeNet(seed=4), time_embedding="time_embed", **options)
        g = torch.Generator().manual_seed(13)
        with torch.no_grad():  # move the zero-initialised gap branch away from zero
            for p in adapter.gap_embedding.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model = SolutionFlowWrapper(adapter)
        data = torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE)
        labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=g)
        t = uniform_times(BATCH, dtype=DTYPE, generator=g)
        prefix = f"adapter/{name}"
        result[f"{prefix}/solution"] = model(data, t, t * 0.5, labels).detach()
        result[f"{prefix}/velocity"] = model.velocity(data, t, labels).detach()
        objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=10))
        out = objective(model, data, labels, NUM_CLASSES, generator=g)
        out.loss.backward()
        result[f"{prefix}/loss"] = out.loss.detach()
        result.update(grads(prefix, model))
    return result


def sampler_cases() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(17)
    result = {
        "times/uniform": uniform_times(64, low=0.2, high=0.7, dtype=DTYPE, generator=g),
        "times/logit_normal": logit_normal_times(64, mean=-0.4, std=1.3, dtype=DTYPE, generator=g),
        "times/drop_mask": sample_drop_mask(64, 0.3, generator=g),
    }
    for r in (0.0, 0.25, 1.0):
        t, l, s = consistency_times(
            64, r, mean_s=-1.5, std_s=1.2, mean_t=0.4, std_t=0.9, dtype=DTYPE, generator=g
        )
        result.update({f"times/consistency-r{r}/{k}": v for k, v in (("t", t), ("l", l), ("s", s))})
    kinds = ("const", "linear", "cosine", "exponent")
    steps = (0, 1, 37, 99, 100, 250)
    result["times/schedules"] = torch.tensor(
        [RatioSchedule(kind, 0.7, 0.003, 100)(k) for kind in kinds for k in steps], dtype=DTYPE
    )
    grid = torch.linspace(0, 1, 41, dtype=DTYPE)
    result["guidance/decay"] = torch.stack([guidance_decay(grid, tau) for tau in (0.0, 0.5, 0.8, 1.0)])
    v, v_u, v_c = (torch.randn(BATCH, *SHAPE, generator=g, dtype=DTYPE) for _ in range(3))
    t = uniform_times(BATCH, dtype=DTYPE, generator=g)
    mask = sample_drop_mask(BATCH, 0.5, generator=g)
    result["guidance/guided"] = guided_velocity(v, v_u, t, GUIDED, v_cond=v_c, drop_mask=mask)
    return result


def compute() -> dict[str, Tensor]:
    """Every frozen value, by name."""
    result: dict[str, Tensor] = {}
    for name in OBJECTIVE_CASES:
        result.update(objective_case(name))
    for name in LOSS_CASES:
        result.update(loss_case(name))
    result.update(sampling_cases())
    result.update(adapter_cases())
    result.update(sampler_cases())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write tests/data/frozen_behaviour.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    values = compute()
    print(f"{len(values)} tensors, {sum(v.numel() for v in values.values())} values")
    if args.write:
        torch.save(values, DATA)
        print(f"wrote {DATA}")


if __name__ == "__main__":
    main()
