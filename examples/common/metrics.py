"""Loss bookkeeping without per-step host synchronisation, a CSV log, and TensorBoard when installed.

:class:`LossMeter` sums the detached loss terms of each step on the device; :meth:`LossMeter.summary`
averages them over steps and ranks once per logging interval. :class:`MetricLog` appends rows to
`metrics.csv` (rows past the resumed step are dropped on resume, so the file matches the run) and
mirrors them to TensorBoard if `torch.utils.tensorboard` imports.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import torch

from soflow_toolkit import SoFlowOutput

from .distributed import all_reduce_mean

COLUMNS = ("step", "loss", "fm_mse", "fm_weight", "sc_mse", "sc_weight", "r", "lr", "img_per_s", "elapsed_s")
_TERMS = ("loss", "fm_mse", "fm_weight", "sc_mse", "sc_weight")


class LossMeter:
    """Running sums of the loss terms of :class:`~soflow_toolkit.SoFlowOutput` (on the device)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(_TERMS), dtype=torch.float64, device=self.device)
        self.counts = torch.zeros(len(_TERMS), dtype=torch.float64, device=self.device)
        self.samples = 0
        self.started = time.perf_counter()

    def update(self, out: SoFlowOutput, batch_size: int) -> None:
        terms = {"loss": out.loss}
        for prefix, part in (("fm", out.fm), ("sc", out.sc)):
            if part is not None:  # e.g. no flow matching part with the CIFAR-10 recipe
                terms.update({f"{prefix}_mse": part.mse, f"{prefix}_weight": part.weight})
        for i, name in enumerate(_TERMS):
            if name in terms:
                self.sums[i] += terms[name].detach().to(torch.float64)
                self.counts[i] += 1
        self.samples += batch_size

    def summary(self, world_size: int) -> dict[str, float]:
        """Mean of each term over the steps since :meth:`reset` and over ranks; images per second."""
        totals = all_reduce_mean(torch.cat([self.sums, self.counts]))
        sums, counts = totals[: len(_TERMS)], totals[len(_TERMS) :]
        out = {
            name: (float(s / c) if c > 0 else math.nan)
            for name, s, c in zip(_TERMS, sums.tolist(), counts.tolist(), strict=True)
        }
        seconds = time.perf_counter() - self.started
        out["img_per_s"] = self.samples * world_size / max(seconds, 1e-9)
        return out


class MetricLog:
    """Append rows to `<directory>/metrics.csv` and, if available, TensorBoard (main rank only).

    Args:
        directory: the run directory.
        resume_step: on resume, rows with `step > resume_step` (logged after the checkpoint by the
            interrupted run) are dropped.
        enabled: False on non-main ranks.
    """

    def __init__(self, directory: Path, *, resume_step: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = directory / "metrics.csv"
        self.writer: Any = None
        if not enabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, str]] = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is optional
            return
        self.writer = SummaryWriter(str(directory / "tensorboard"), purge_step=resume_step + 1)

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writerow(
                {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            )
        if self.writer is not None:
            step = int(row["step"])
            for key, value in row.items():
                if key != "step" and not (isinstance(value, float) and math.isnan(value)):
                    self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Read `metrics.csv` back as floats (empty cells become NaN)."""
    with path.open(newline="") as f:
        return [{k: (float(v) if v != "" else math.nan) for k, v in row.items()} for row in csv.DictReader(f)]
