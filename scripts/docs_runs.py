"""Shared pieces of the scripts that measure the numbers and draw the figures of the documentation.

The scripts `guidance_strength.py` and `troubleshooting_runs.py` train small models on 2-D points and
on scikit-learn's bundled 8x8 digits (1,797 images, no download) with the public API of
`soflow_toolkit`, and write their results under `docs/assets/`: a JSON file of every number the pages
quote, Markdown tables that the pages include, and figures. This module holds the data, the training
loop with its metric log, and the sample statistics they share.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import soflow_toolkit as sf

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "docs" / "assets"

NUM_CLASSES = 10
CENTRES = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
"""The four class centres of the guidance guide's toy (standard deviation 0.3 around each)."""


def load_digits(*, scaled: bool = True) -> tuple[Tensor, Tensor]:
    """The 1,797 digits as `(N, 1, 8, 8)` float32, in [-1, 1] (or the raw [0, 16]), and their labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, 1, 8, 8)
    if scaled:
        images = images / 8.0 - 1.0
    return images, torch.tensor(digits.target, dtype=torch.long)


def four_gaussians(labels: Tensor, generator: torch.Generator) -> Tensor:
    """Points of the guidance guide's toy for the given labels."""
    return CENTRES[labels] + 0.3 * torch.randn(labels.shape[0], 2, generator=generator)


class ConditionalMLP(nn.Module):
    """The class-conditional backbone of the guidance guide (the same layers, 4 classes + null)."""

    def __init__(self, num_classes: int = 4, hidden: int = 128) -> None:
        super().__init__()
        self.label_embed = nn.Embedding(num_classes + 1, hidden)
        self.inp = nn.Linear(2 + 2, hidden)
        self.body = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor) -> Tensor:
        h = self.inp(torch.cat([x, t[:, None], s[:, None]], dim=1)) + self.label_embed(labels)
        out: Tensor = self.body(h)
        return out


Batch = tuple[Tensor, Tensor | None]


@dataclass
class History:
    """Metrics averaged over windows of `every` steps, and optional probe values at the same steps."""

    every: int
    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: int, values: dict[str, float]) -> None:
        self.steps.append(step)
        for key, value in values.items():
            self.metrics.setdefault(key, []).append(value)

    def as_dict(self) -> dict[str, Any]:
        return {"every": self.every, "steps": self.steps, **self.metrics}


def train(
    model: nn.Module,
    objective: sf.SoFlowLoss,
    batches: Callable[[torch.Generator], Batch],
    *,
    steps: int,
    lr: float,
    seed: int,
    null_cond: Any = None,
    every: int = 50,
    ema_decay: float | None = None,
    cosine: bool = False,
    grad_clip: float | None = None,
    autocast: torch.dtype | None = None,
    probe: Callable[[nn.Module], dict[str, float]] | None = None,
    stop_on_nan: bool = True,
) -> tuple[nn.Module, History]:
    """Adam on `objective`; log the mean of `out.metrics()` (and `probe(model)`) every `every` steps.

    Returns the model (the EMA weights copied in when `ema_decay` is given) and the history. With
    `stop_on_nan`, training stops at the first non-finite loss (the history then ends with NaN).
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    ema = sf.EMA(model, decay=ema_decay) if ema_decay is not None else None
    history = History(every)
    window: dict[str, list[float]] = {}
    for step in range(steps):
        data, cond = batches(generator)
        context = torch.autocast("cpu", dtype=autocast) if autocast is not None else _nullcontext()
        with context:
            out = objective(model, data, cond, null_cond=null_cond, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        finite = bool(torch.isfinite(out.loss))
        if grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        else:
            norm = torch.sqrt(
                sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None)
            )
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if ema is not None:
            ema.update(model)
        values = out.metrics()
        values["grad_norm"] = float(norm)
        for key, value in values.items():
            window.setdefault(key, []).append(value)
        last = step == steps - 1 or (stop_on_nan and not finite)
        if (step + 1) % every == 0 or last:
            mean = {k: _mean(v) for k, v in window.items() if k != "step"}
            if probe is not None:
                mean.update(probe(model))
            history.add(step + 1, mean)
            window = {}
        if stop_on_nan and not finite:
            break
    if ema is not None:
        ema.copy_to(model)
    return model, history


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return float("nan")
    return sum(finite) / len(finite)


class DigitScorer:
    """A logistic-regression classifier of the real digits (scikit-learn), to score generated ones."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        from sklearn.linear_model import LogisticRegression

        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
        train, test = order[:1400], order[1400:]
        flat = images.reshape(images.shape[0], -1).numpy()
        self.model = LogisticRegression(max_iter=2000, C=0.5)
        self.model.fit(flat[train.numpy()], labels[train].numpy())
        self.real_accuracy = float(self.model.score(flat[test.numpy()], labels[test].numpy()))

    def accuracy(self, generated: Tensor, labels: Tensor) -> float:
        flat = generated.reshape(generated.shape[0], -1).clamp(-1, 1).numpy()
        return float(self.model.score(flat, labels.numpy()))


def class_contrast(samples: Tensor, labels: Tensor, images: Tensor, data_labels: Tensor) -> float:
    r"""$\operatorname{mean}_c \lVert \mu_c - \mu \rVert$ of the samples over the same for the data (1 = data)."""

    def spread(x: Tensor, y: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        overall = x.mean(dim=0)
        return torch.stack([(x[y == c].mean(dim=0) - overall).norm() for c in range(NUM_CLASSES)]).mean()

    return float(spread(samples, labels) / spread(images, data_labels))


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write `result` with floats rounded to 5 significant digits (stable diffs, no false precision)."""

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return value if not math.isfinite(value) or value == 0 else float(f"{value:.5g}")
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [rounded(v) for v in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rounded(result), indent=1, allow_nan=True) + "\n", encoding="utf-8")
