r"""Training-step cost of SoFlow against flow matching and MeanFlow (protocol: docs/benchmarks/step_cost.md).

Same backbone, same batch, same device, one process: a small DiT-style transformer (attention through
`scaled_dot_product_attention`) and a small conv UNet (`benchmarks/models.py`), and the toy MLP of the
quality benchmarks (`soflow_toolkit.toy.MLPBackbone`, 2-D points, batch 256). Rows:

- **FM**: flow matching (`flow_matching_loss`, ImageNet weighting), one forward and one backward (the floor).
- **FM + CFG**: flow matching with the guided target (docs: method, guidance; one more no-grad forward).
- **SoFlow**: the toolkit's `SoFlowLoss` with `SoFlowConfig.imagenet()` without guidance
  ($\rho = 0.75$), through `SolutionFlowWrapper` (input checks on, the default).
- **SoFlow, check_inputs=False**: the same with the wrapper's time-range checks off.
- **SoFlow + CFG**: `SoFlowConfig.imagenet()` ($\omega = 3$, mix 0.25, decay 0.8, drop 0.1).
- **Official structure (+ CFG)**: the official step's structure, built from the toolkit's two loss
  functions on the objective's own draws (`SoFlowLoss.draw`): `flow_matching_loss` on the flow matching
  rows and `solution_consistency_loss` on the consistency rows, each with its own forwards, as the
  official training step does (with guidance: five forwards instead of the objective's three).
- **MeanFlow** (`benchmarks/baselines.py`, inside `math_attention()`, since forward-mode AD has no
  rule for the fused attention kernels), in its two exact forms: the JVP's primal output carrying the
  gradient (`meanflow_loss_jvp_grad`), and the JVP without gradient plus one ordinary forward with
  gradient (`meanflow_loss`, the same gradient); the faster one also with CFG.

A step is: draw noise and times, compute the loss, `backward()`, drop the gradients
(`zero_grad(set_to_none=True)`); no optimizer update (it costs the same for every method).
Time: the rows run interleaved, one step each per round (the order rotates every round), after a
warm-up; the table gives the median step time, the ratio of medians to FM, and the range of that
ratio over three consecutive blocks of rounds. Memory: on CPU each row runs again in a fresh
subprocess (glibc told to return freed memory to the system: `MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`); after the warm-up the peak-RSS counter is reset (`/proc/self/clear_refs`)
and the table gives the peak RSS during the measured steps minus the RSS just before them (what the
step itself holds: activations, gradients, temporaries), and the whole-process peak. On CUDA:
`torch.cuda.max_memory_allocated` over the measured steps minus the memory allocated before them.

Usage:
    python benchmarks/step_cost.py              # the full run (a few minutes on 2 CPU cores)
    python benchmarks/step_cost.py --quick      # tiny models, a few steps: CI keeps the script alive
    python benchmarks/step_cost.py --out-dir /tmp/results --threads 2 --rounds 45
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.baselines import MeanFlowConfig, math_attention, meanflow_loss, meanflow_loss_jvp_grad  # noqa: E402
from benchmarks.models import TinyDiT, TinyUNet, count_parameters  # noqa: E402
from soflow_toolkit import (  # noqa: E402
    GuidanceConfig,
    SoFlowConfig,
    SoFlowLoss,
    SolutionFlowWrapper,
    flow_matching_loss,
    sample_drop_mask,
    solution_consistency_loss,
)
from soflow_toolkit.toy import MLPBackbone  # noqa: E402

NUM_CLASSES = 10
FM_TIME = (-0.2, 1.0)  # logit-normal (mean, std) of flow matching times (ImageNet recipe)
CONFIG = SoFlowConfig.imagenet(total_steps=100_000)
PLAIN = dataclasses.replace(CONFIG, guidance=GuidanceConfig())
GUIDANCE = CONFIG.guidance
MEANFLOW = MeanFlowConfig(p=CONFIG.p, eps=CONFIG.eps)
MEANFLOW_CFG = dataclasses.replace(MEANFLOW, guidance_scale=GUIDANCE.scale, drop_rate=GUIDANCE.drop_rate)
ROWS = (
    "FM",
    "FM + CFG",
    "SoFlow",
    "SoFlow, check_inputs=False",
    "SoFlow + CFG",
    "Official structure",
    "Official structure + CFG",
    "MeanFlow (JVP with grad)",
    "MeanFlow (no-grad JVP + forward)",
    "MeanFlow (no-grad JVP + forward) + CFG",
)
BLOCKS = 3
# Step memory below this is allocator and page-granularity noise (the --quick models hold tens of KiB
# per step, sometimes nothing measurable): ratios to an FM figure this small are not reported.
MEMORY_RESOLUTION_MIB = 1.0


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One backbone of a run: its constructor arguments, the shape of a sample and the batch size."""

    kwargs: dict[str, Any]
    shape: tuple[int, ...]
    batch: int


FULL = {
    "dit": Backbone(
        {"image_size": 16, "channels": 4, "patch": 2, "hidden": 128, "depth": 4, "heads": 4}, (4, 16, 16), 32
    ),
    "unet": Backbone({"channels": 3, "base": 32, "mults": (1, 2)}, (3, 16, 16), 32),
    # the quality benchmark's toy backbone and batch (benchmarks/toys.py)
    "mlp": Backbone({"dim": 2, "hidden": 128, "depth": 4, "time_scale": 1.0}, (2,), 256),
}
QUICK = {
    "dit": Backbone(
        {"image_size": 8, "channels": 4, "patch": 2, "hidden": 32, "depth": 1, "heads": 2}, (4, 8, 8), 8
    ),
    "unet": Backbone({"channels": 3, "base": 8, "mults": (1, 2)}, (3, 8, 8), 8),
    "mlp": Backbone({"dim": 2, "hidden": 16, "depth": 2, "time_scale": 1.0}, (2,), 16),
}
MODELS = {"dit": TinyDiT, "unet": TinyUNet, "mlp": MLPBackbone}


def build_model(name: str, sizes: dict[str, Backbone]) -> tuple[nn.Module, Backbone]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](num_classes=NUM_CLASSES, **sizes[name].kwargs), sizes[name]


class Bench:
    """Everything one backbone's rows share: the model, a batch, generators and the objectives."""

    def __init__(
        self, model_name: str, sizes: dict[str, Backbone], device: torch.device, dtype: torch.dtype
    ) -> None:
        torch.manual_seed(0)
        backbone, spec = build_model(model_name, sizes)
        self.backbone = backbone.to(device=device, dtype=dtype).train()
        self.wrapper = SolutionFlowWrapper(self.backbone)
        self.wrapper_unchecked = SolutionFlowWrapper(self.backbone, check_inputs=False)
        data_gen = torch.Generator().manual_seed(1)
        self.data = torch.randn(spec.batch, *spec.shape, generator=data_gen).to(device, dtype)
        self.labels = torch.randint(0, NUM_CLASSES, (spec.batch,), generator=data_gen).to(device)
        self.generator = torch.Generator(device=device).manual_seed(2)
        self.plain = SoFlowLoss(PLAIN)
        self.plain_unchecked = SoFlowLoss(PLAIN)
        self.guided = SoFlowLoss(CONFIG)
        self.device = device
        g = self.generator
        self.steps: dict[str, Callable[[], Tensor]] = {
            "FM": lambda: self.flow_matching(guided=False),
            "FM + CFG": lambda: self.flow_matching(guided=True),
            "SoFlow": lambda: self.plain(self.wrapper, self.data, self.labels, generator=g).loss,
            "SoFlow, check_inputs=False": lambda: (
                self.plain_unchecked(self.wrapper_unchecked, self.data, self.labels, generator=g).loss
            ),
            "SoFlow + CFG": lambda: (
                self.guided(self.wrapper, self.data, self.labels, NUM_CLASSES, generator=g).loss
            ),
            "Official structure": lambda: self.official(self.plain),
            "Official structure + CFG": lambda: self.official(self.guided),
            "MeanFlow (JVP with grad)": lambda: self.meanflow(meanflow_loss_jvp_grad, MEANFLOW),
            "MeanFlow (no-grad JVP + forward)": lambda: self.meanflow(meanflow_loss, MEANFLOW),
            "MeanFlow (no-grad JVP + forward) + CFG": lambda: self.meanflow(meanflow_loss, MEANFLOW_CFG),
        }

    def flow_matching(self, guided: bool) -> Tensor:
        """Flow matching with the ImageNet adaptive weight: one forward with gradient (+ one without for CFG)."""
        data, batch = self.data, self.data.shape[0]
        noise = torch.randn(data.shape, generator=self.generator, device=self.device, dtype=data.dtype)
        z = torch.randn(batch, generator=self.generator, device=self.device, dtype=data.dtype)
        t = torch.sigmoid(FM_TIME[0] + FM_TIME[1] * z)
        mask = sample_drop_mask(batch, GUIDANCE.drop_rate, generator=self.generator).to(self.device)
        return flow_matching_loss(
            self.wrapper_unchecked,
            data,
            noise,
            t,
            cond=self.labels,
            p=CONFIG.p,
            eps=CONFIG.eps,
            guidance=GUIDANCE if guided else None,
            drop_mask=mask if guided else None,
            null_cond=NUM_CLASSES if guided else None,
        ).loss

    def official(self, objective: SoFlowLoss) -> Tensor:
        """The official step's structure: a flow matching loss and a consistency loss, each with its own forwards.

        The same draws as the objective (`SoFlowLoss.draw`) and the toolkit's two loss functions on the
        two parts of the batch: what the official training step computes, without batching the forwards.
        """
        cfg, data, batch = objective.config, self.data, self.data.shape[0]
        guided = cfg.guidance.scale > 1
        draw = objective.draw(data, conditional=guided, generator=self.generator)
        n_fm = draw.t_fm.shape[0]
        mask = draw.drop_mask
        common: dict[str, Any] = {
            "p": cfg.p,
            "eps": cfg.eps,
            "guidance": cfg.guidance if guided else None,
            "null_cond": NUM_CLASSES if guided else None,
        }
        fm = flow_matching_loss(
            self.wrapper_unchecked,
            data[:n_fm],
            draw.noise[:n_fm],
            draw.t_fm,
            cond=self.labels[:n_fm],
            drop_mask=None if mask is None else mask[:n_fm],
            **common,
        )
        sc = solution_consistency_loss(
            self.wrapper_unchecked,
            data[n_fm:],
            draw.noise[n_fm:],
            draw.t,
            draw.l,
            draw.s,
            cond=self.labels[n_fm:],
            drop_mask=None if mask is None else mask[n_fm:],
            **common,
        )
        return (n_fm / batch) * fm.loss + ((batch - n_fm) / batch) * sc.loss

    def meanflow(self, loss: Callable[..., Tensor], config: MeanFlowConfig) -> Tensor:
        with math_attention():
            return loss(
                self.backbone, self.data, config, cond=self.labels, null=NUM_CLASSES, generator=self.generator
            )

    def step(self, row: str) -> None:
        loss = self.steps[row]()
        if row.startswith("MeanFlow"):
            with math_attention():
                loss.backward()
        else:
            loss.backward()
        self.backbone.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rows(
    bench: Bench, rows: list[str], rounds: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved timing: every round runs one step of each row; the order rotates every round.

    Returns the wall-clock and the process CPU time of every step, in seconds.
    """
    for row in rows:
        for _ in range(warmup):
            bench.step(row)
    samples: dict[str, list[float]] = {row: [] for row in rows}
    cpu: dict[str, list[float]] = {row: [] for row in rows}
    for i in range(rounds):
        shift = i % len(rows)
        for row in rows[shift:] + rows[:shift]:
            _sync(bench.device)
            start, start_cpu = time.perf_counter(), time.process_time()
            bench.step(row)
            _sync(bench.device)
            samples[row].append(time.perf_counter() - start)
            cpu[row].append(time.process_time() - start_cpu)
    return samples, cpu


def _proc_status(key: str) -> int:
    """A `/proc/self/status` entry in KiB."""
    with open("/proc/self/status") as f:
        match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {key} in /proc/self/status")
    return int(match.group(1))


def measure_memory_here(bench: Bench, row: str, steps: int, warmup: int) -> dict[str, float]:
    """Peak memory of `steps` steps of one row, after `warmup` steps, in this process (MiB)."""
    for _ in range(warmup):
        bench.step(row)
    gc.collect()
    if bench.device.type == "cuda":
        torch.cuda.synchronize(bench.device)
        base = torch.cuda.memory_allocated(bench.device)
        torch.cuda.reset_peak_memory_stats(bench.device)
        for _ in range(steps):
            bench.step(row)
        torch.cuda.synchronize(bench.device)
        peak = torch.cuda.max_memory_allocated(bench.device)
        return {"step_mib": (peak - base) / 2**20, "peak_mib": peak / 2**20}
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
    base = _proc_status("VmRSS")
    for _ in range(steps):
        bench.step(row)
    peak = _proc_status("VmHWM")
    return {"step_mib": (peak - base) / 1024, "peak_mib": peak / 1024}


def measure_memory_subprocess(args: argparse.Namespace, model: str, row: str) -> dict[str, float]:
    """Run one row in a fresh interpreter and read its memory figures."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    command = [
        sys.executable,
        __file__,
        "--child-model",
        model,
        "--child-row",
        row,
        "--threads",
        str(args.threads),
    ]
    if args.quick:
        command.append("--quick")
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory subprocess for {model}/{row} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def paired_ratio(samples: list[float], reference: list[float]) -> float:
    """Median over rounds of the ratio of two rows' step times in the same round."""
    return statistics.median(a / b for a, b in zip(samples, reference, strict=True))


def _block_ratios(samples: list[float], reference: list[float]) -> list[float]:
    size = max(1, len(samples) // BLOCKS)
    return [
        paired_ratio(samples[b : b + size], reference[b : b + size])
        for b in range(0, len(samples) - size + 1, size)
    ]


def _passes() -> dict[str, str]:
    """Rows evaluated per sample of the batch, by kind of evaluation (rho and mix of the config)."""
    sc = 1 - CONFIG.fm_fraction
    guide = 1 + (sc if GUIDANCE.mix_ratio < 1 else 0)
    return {
        "FM": "1 grad",
        "FM + CFG": "1 grad + 1 no-grad",
        "SoFlow": f"1 grad + {sc:g} no-grad",
        "SoFlow, check_inputs=False": f"1 grad + {sc:g} no-grad",
        "SoFlow + CFG": f"1 grad + {guide + sc:g} no-grad",
        "Official structure": f"1 grad + {sc:g} no-grad",
        "Official structure + CFG": f"1 grad + {guide + sc:g} no-grad",
        "MeanFlow (JVP with grad)": "1 JVP with grad",
        "MeanFlow (no-grad JVP + forward)": "1 JVP no-grad + 1 grad",
        "MeanFlow (no-grad JVP + forward) + CFG": "1 JVP no-grad + 1 grad + 1 no-grad",
    }


def summarize(
    samples: dict[str, list[float]], cpu: dict[str, list[float]], memory: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    fm, fm_cpu = samples["FM"], cpu["FM"]
    passes = _passes()
    rows = []
    for row, values in samples.items():
        ratios = _block_ratios(values, fm)
        entry: dict[str, Any] = {
            "method": row,
            "passes": passes[row],
            "median_ms": 1000 * statistics.median(values),
            "ratio_to_fm": paired_ratio(values, fm),
            "ratio_range": [min(ratios), max(ratios)],
            "cpu_median_ms": 1000 * statistics.median(cpu[row]),
            "cpu_ratio_to_fm": paired_ratio(cpu[row], fm_cpu),
            "samples_ms": [1000 * v for v in values],
            "cpu_samples_ms": [1000 * v for v in cpu[row]],
        }
        if row in memory:
            entry.update(memory[row])
            ratio = memory_ratio(memory[row], memory.get("FM"))
            if ratio is not None:
                entry["memory_ratio_to_fm"] = ratio
        rows.append(entry)
    return rows


TARGETS = (
    ("SoFlow / FM", "SoFlow", "FM", "time", 1.10),
    ("SoFlow + CFG / FM", "SoFlow + CFG", "FM", "time", 1.40),
    ("SoFlow / MeanFlow (its faster form)", "SoFlow", "MeanFlow (no-grad JVP + forward)", "time", 0.60),
    ("SoFlow / official structure", "SoFlow", "Official structure", "time", 1.00),
    ("SoFlow + CFG / official structure + CFG", "SoFlow + CFG", "Official structure + CFG", "time", 1.00),
    ("SoFlow / FM, step memory", "SoFlow", "FM", "memory", 1.10),
)


def memory_ratio(row: dict[str, float], reference: dict[str, float] | None) -> float | None:
    """Step memory of `row` over that of `reference`; None when the reference is below the resolution."""
    if reference is None or "step_mib" not in row or "step_mib" not in reference:
        return None
    if reference["step_mib"] < MEMORY_RESOLUTION_MIB:
        return None
    return row["step_mib"] / reference["step_mib"]


def check_targets(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Time targets as paired ratios of step times (median over rounds); memory as ratios of step memory.

    A memory target whose reference row holds less than `MEMORY_RESOLUTION_MIB` per step is listed
    with `value` None and `met` None (not measurable at that size), never as a ratio of noise.
    """
    by_method = {row["method"]: row for row in table}
    out: list[dict[str, Any]] = []
    for label, num, den, kind, limit in TARGETS:
        if num not in by_method or den not in by_method:
            continue
        if kind == "time":
            value = paired_ratio(by_method[num]["samples_ms"], by_method[den]["samples_ms"])
            out.append({"target": label, "value": value, "limit": limit, "met": value <= limit})
        elif "step_mib" in by_method[num] and "step_mib" in by_method[den]:
            ratio = memory_ratio(by_method[num], by_method[den])
            met = None if ratio is None else ratio <= limit
            out.append({"target": label, "value": ratio, "limit": limit, "met": met})
    return out


def _format_check(check: dict[str, Any]) -> tuple[str, str]:
    """Measured value and verdict of one target for the Markdown table."""
    if check["value"] is None:
        return f"– (FM step memory < {MEMORY_RESOLUTION_MIB:g} MiB)", "not measurable"
    return f"{check['value']:.2f}", "yes" if check["met"] else "no"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    device = meta["device"]
    memory_note = (
        "peak `torch.cuda.max_memory_allocated` during the measured steps minus the memory allocated "
        "before them"
        if device.startswith("cuda")
        else "peak RSS during the measured steps minus the RSS just before them, each row in a fresh "
        "subprocess (`/proc/self/status` VmHWM after resetting it through `/proc/self/clear_refs`; "
        "glibc made to return freed memory with `MALLOC_MMAP_THRESHOLD_=65536`)"
    )
    models = "; ".join(
        f"{m['name']}: {m['description']}, {m['parameters'] / 1e6:.2f} M parameters" for m in meta["models"]
    )
    threads = f"{meta['threads']} torch thread" + ("s" if meta["threads"] != 1 else "")
    load = meta["load_average"]
    lines = [
        f"Measured with `{meta['command']}` on {meta['device_name']} ({device}, {meta['cpu_count']} cores, "
        f"{threads}), torch {meta['torch']}, {meta['dtype']}, "
        f"{meta['rounds']} interleaved rounds after {meta['warmup']} warm-up step{'s' if meta['warmup'] != 1 else ''} per row "
        f"(1-minute load average {load['start']:.2f} at the start, {load['end']:.2f} at the end; the "
        f"machine is shared). Backbones: "
        f"{models}. A step is loss + `backward()` (no optimizer update). Time: median step; "
        f'"× FM" is the median over rounds of the step time divided by the FM step time of the same '
        f"round, with its range over {BLOCKS} consecutive blocks of rounds; "
        f'"× FM, CPU" the same for the process CPU time of a step. '
        f"Step memory: {memory_note}; the whole-process peak is in the last column.",
        "",
        "Rows: FM is flow matching (`flow_matching_loss`); SoFlow is `SoFlowLoss` with "
        "`SoFlowConfig.imagenet()` (75% flow matching rows), without guidance or with its guidance "
        "(scale 3, mix 0.25, decay 0.8, drop 0.1); the official-structure rows compute the official "
        "step's structure (a flow matching loss and a consistency loss, each with its own forwards, on "
        "the objective's draws); MeanFlow uses `torch.func.jvp` with the math attention kernel, either "
        "with the gradient through the JVP's primal output or with a no-grad JVP plus one forward with "
        "gradient (the same gradient). "
        '"Evaluations per sample" counts backbone rows per batch sample: with guidance, every sample '
        "gets an unconditional evaluation and each consistency sample a conditional one (mix < 1), plus "
        "the consistency targets.",
        "",
        "| Backbone | Method | Evaluations per sample | Median step (ms) | × FM (range) | × FM, CPU "
        "| Step memory (MiB) | × FM | Peak (MiB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, table in result["tables"].items():
        for row in table:
            lo, hi = row["ratio_range"]
            mem = f"{row['step_mib']:.1f}" if "step_mib" in row else "–"
            mem_ratio = f"{row['memory_ratio_to_fm']:.2f}" if "memory_ratio_to_fm" in row else "–"
            peak = f"{row['peak_mib']:.0f}" if "peak_mib" in row else "–"
            lines.append(
                f"| {model} | {row['method']} | {row['passes']} | {row['median_ms']:.1f} | {row['ratio_to_fm']:.2f} "
                f"({lo:.2f}–{hi:.2f}) | {row['cpu_ratio_to_fm']:.2f} | {mem} | {mem_ratio} | {peak} |"
            )
    if meta["quick"]:
        lines += [
            "",
            "`--quick` run: tiny models, a few steps; it shows that the script runs, not what SoFlow costs.",
        ]
    lines += ["", "| Backbone | Target | Measured | Limit | Met |", "|---|---|---:|---:|---|"]
    for model, checks in result["targets"].items():
        for c in checks:
            value, verdict = _format_check(c)
            lines.append(f"| {model} | {c['target']} | {value} | ≤ {c['limit']:.2f} | {verdict} |")
    if not meta["quick"]:
        lines += ["", floor_note(result)]
    return "\n".join(lines) + "\n"


def floor_note(result: dict[str, Any]) -> str:
    """What the measured rows say about the cost that the evaluations themselves set."""
    parts = []
    for model, table in result["tables"].items():
        ratio = {row["method"]: row["ratio_to_fm"] for row in table}
        parts.append(
            f"{model}: FM + CFG {ratio['FM + CFG']:.2f}, official structure {ratio['Official structure']:.2f} "
            f"and {ratio['Official structure + CFG']:.2f} with CFG; MeanFlow with grad through the JVP "
            f"{ratio['MeanFlow (JVP with grad)']:.2f}, with a no-grad JVP and a forward "
            f"{ratio['MeanFlow (no-grad JVP + forward)']:.2f}"
        )
    return (
        "Reading the figures: rows with the same evaluations per sample cost about the same. FM + CFG"
        " adds only the unconditional forward of the batch; SoFlow adds a no-grad forward of "
        "the consistency rows (0.25 of the batch), and with guidance the unconditional forward of the batch, "
        "the conditional forward of the consistency rows (mix < 1) and the targets (1.5 no-grad rows per "
        "sample), which the official step needs as well. Measured ratios to FM: " + "; ".join(parts) + "."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny models and few steps (CI)")
    parser.add_argument("--models", default="dit,unet,mlp", help="comma-separated: dit, unet, mlp")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 30; quick 3)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per row (default 2; quick 1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared machine a second thread that is descheduled "
        "stalls every parallel region, which swamps the ratios)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    parser.add_argument("--memory-steps", type=int, default=2, help="measured steps per memory row")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--name", default="step_cost", help="file name stem of the outputs")
    parser.add_argument("--render", type=Path, help="rewrite NAME.md from a saved NAME.json, measure nothing")
    parser.add_argument("--child-model", help=argparse.SUPPRESS)
    parser.add_argument("--child-row", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render is not None:  # rewrite the Markdown from a saved JSON result
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(result))
        return
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    device = torch.device(args.device)
    if args.child_model is not None:  # memory subprocess: one row, print JSON, exit
        bench = Bench(args.child_model, sizes, device, torch.float32)
        print(json.dumps(measure_memory_here(bench, args.child_row, args.memory_steps, warmup=2)))
        return

    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    result: dict[str, Any] = {"tables": {}, "targets": {}}
    model_meta = []
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    for model in models:
        bench = Bench(model, sizes, device, torch.float32)
        shape = tuple(bench.data.shape[1:])
        described = sizes[model].kwargs
        model_meta.append(
            {
                "name": model,
                "parameters": count_parameters(bench.backbone),
                "description": f"{type(bench.backbone).__name__}({', '.join(f'{k}={v}' for k, v in described.items())}), input {shape}, batch {sizes[model].batch}",
            }
        )
        print(f"[{model}] timing {len(ROWS)} rows x {rounds} rounds ...", file=sys.stderr, flush=True)
        samples, cpu = time_rows(bench, list(ROWS), rounds, warmup)
        memory: dict[str, dict[str, float]] = {}
        if not args.no_memory:
            print(f"[{model}] memory, one subprocess per row ...", file=sys.stderr, flush=True)
            # --quick measures two rows only: it keeps the subprocess path alive in CI, no more.
            for row in ("FM", "SoFlow") if args.quick else ROWS:
                if device.type == "cuda":
                    memory[row] = measure_memory_here(bench, row, args.memory_steps, warmup=1)
                else:
                    memory[row] = measure_memory_subprocess(args, model, row)
        table = summarize(samples, cpu, memory)
        result["tables"][model] = table
        result["targets"][model] = check_targets(table)
        del bench
        gc.collect()

    command = (
        "python benchmarks/step_cost.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    result["meta"] = {
        "command": command.strip(),
        "quick": args.quick,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": "float32",
        "rounds": rounds,
        "warmup": warmup,
        "models": model_meta,
        "wall_s": time.perf_counter() - started,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
    }
    text = markdown(result)
    print(text)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out_dir / f"{args.name}.md").write_text(text)
    print(
        f"wrote {args.out_dir / (args.name + '.md')} and .json ({result['meta']['wall_s']:.0f} s)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
