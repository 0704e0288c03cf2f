r"""One-command GPU check: CUDA correctness, training-step and sampling throughput at the paper's scale.

Absolute times hold only on a GPU (protocol: docs/benchmarks/gpu.md). The check runs the package from
this source tree (no install step) and needs only torch; pytest runs the CUDA tests, diffusers (when
importable) adds the VAE decode. Everything that needs a missing package is skipped with a line saying
so. Parts, in the order they run (`--parts` picks some; the environment is always recorded):

- **tests**: the CUDA tests that skip on CPU, through pytest in a child process: the files of `tests/`
  that test `torch.cuda.is_available()`, with `-k cuda` (tests named `*cuda*`, and every test of
  `tests/test_cuda.py`). A test file that cannot be imported (a package missing on the machine) is
  recorded and left out; the others still run.
- **steps**: one training step (loss, `backward()`, gradients dropped; no optimizer update) of
  DiT-B/4 and DiT-XL/2 (`soflow_toolkit.models`, random weights, 32×32×4 latents, 10 classes + null)
  under bf16 autocast with the fused attention kernels (flash or memory-efficient; the math kernel is
  refused): flow matching (FM), `SoFlowLoss` with `SoFlowConfig.imagenet()` without and with its
  guidance, the official step's structure, and MeanFlow through `torch.func.jvp` in its two exact
  forms (math attention, the only kernel with forward-mode AD). The implementations are those of
  `benchmarks/step_cost.py` and `benchmarks/baselines.py`. Rows run interleaved, one step each per
  round, the order rotating; the figures are the median step time, images/s, the median over rounds of
  the step time divided by FM's in the same round with its range over three blocks of rounds, and the
  peak `torch.cuda.max_memory_allocated` of one step.
- **sampling**: DiT-XL/2 (1000 classes) with bf16 weights at batch 125: 1 and 2 network evaluations,
  without and with the decode of a randomly initialised diffusers `AutoencoderKL` of the SD-VAE's
  configuration (no download); then 1,000 images at batch 125, end to end (noise to host memory).
- **compile**: the FM and SoFlow rows again with the DiT's blocks compiled (`torch.compile` on each
  block: regional compilation, one graph reused by all blocks; `--compile-scope model` compiles the
  whole backbone); the graphs compiled during the measured rounds are counted (0 expected).
- **compile-meanflow**: FM, SoFlow and MeanFlow compiled: `torch.func.jvp` cannot run a compiled
  function from eager code, so the whole MeanFlow loss is compiled (the JVP inside the graph).

Each part (and each model) runs in its own process with a time limit taken from the budget
(`--budget-min`, default 8): a part that fails, runs out of memory or out of time records its error
and the run goes on. Inside a part, the number of rounds adapts to the time left (at least
`--min-rounds`), and a row whose warm-up (compile) would not leave time to measure it is skipped.
`--dry-run` rehearses all of it on CPU: tiny stand-in models with the same patch sizes, the steps of
B/4 only (`--models` adds XL/2), a few of the compiled rows, the `eager` compile backend (dynamo
without code generation), 2 rounds, a 15-minute budget.

Usage:
    python benchmarks/gpu_check.py                      # the whole check (about 8 minutes on one H200)
    python benchmarks/gpu_check.py --parts steps,sampling --models XL/2
    python benchmarks/gpu_check.py --dry-run            # every part at tiny sizes on CPU (CI)
    python benchmarks/gpu_check.py --render benchmarks/results/gpu/nvidia-h200.json

Output: `benchmarks/results/gpu/<device>.json` and `.md` (`<device>` is the GPU's name in lower case,
e.g. `nvidia-h200`; `--dry-run` writes `cpu-dry-run.*` under `outputs/gpu-check/`), rewritten after
every part and while a part runs, so an interrupted run leaves what it measured. The folder's
`index.md` lists the results (dry runs excepted) for the documentation page. The JSON holds:

- `meta`: `command`, `dry_run`, `device`, `budget_s`, `started`, `wall_s`, `status` (`running`,
  `done` or `interrupted`), `load_average` (`start`, `end`);
- `environment`: `gpu` (`name`, `count`, `capability`, `memory_gib`, `driver`), `cuda`, `cudnn`,
  `torch`, `triton`, `python`, `platform`, `cpu`, `cpu_count`, `git` (`commit`, `dirty`),
  `soflow_toolkit` (version, path), `packages` (installed or not, for the optional ones),
  `precision` (TF32 flags, float32 matmul precision, SDPA kernels enabled, autocast dtype);
- `plan`: the tasks with their rough time estimate;
- `parts`: one entry per task (`tests`, `steps:B/4`, `sampling`, `compile:XL/2`, ...), each with
  `status` (`ok`, `failed`, `timeout`, `skipped`, `running`), `wall_s`, `error` or `reason`, and:
  tests: `counts`, `tests` (`nodeid`, `outcome`, `duration_s`, `message`), `not_importable`,
  `collection_errors`, `files`; steps: `model`, `parameters`, `batch`, `compile`, `sdpa_ops` (the
  attention kernels seen by the profiler in a forward of the fused and of the math rows),
  `graphs_compiled_while_timing`, `rounds`, and `rows` (each: `method`, `status`, `warmup_s`,
  `median_ms`, `images_per_s`, `images_per_s_iqr`, `ratio_to_fm`, `ratio_range`, `peak_mib`,
  `step_mib`, `samples_ms`, `error`); sampling: `batch`, `vae`, `variants` (as rows) and `thousand`
  (`images`, `seconds`, `images_per_s` per variant).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from benchmarks import step_cost  # noqa: E402
from benchmarks.baselines import math_attention, meanflow_loss, meanflow_loss_jvp_grad  # noqa: E402
from benchmarks.models import count_parameters  # noqa: E402
from examples.common import sd_vae  # noqa: E402  (plain data: no imports)
from soflow_toolkit import SoFlowLoss, SolutionFlowWrapper, sample  # noqa: E402
from soflow_toolkit.fid.conventions import to_uint8  # noqa: E402
from soflow_toolkit.models import DiT, DiTConfig  # noqa: E402

TESTS = ROOT / "tests"
RESULTS = ROOT / "benchmarks" / "results" / "gpu"
DRY_OUT = ROOT / "outputs" / "gpu-check"
PARTS = ("tests", "steps", "sampling", "compile", "compile-meanflow")
MODELS = ("B/4", "XL/2")

STEP_ROWS = (
    "FM",
    "SoFlow",
    "SoFlow, check_inputs=False",
    "SoFlow + CFG",
    "Official structure",
    "Official structure + CFG",
    "MeanFlow (no-grad JVP + forward)",
    "MeanFlow (JVP with grad)",
)
COMPILE_ROWS = ("FM", "SoFlow", "SoFlow + CFG", "Official structure", "Official structure + CFG")
COMPILE_MEANFLOW_ROWS = (
    "FM",
    "SoFlow",
    "SoFlow + CFG",
    "MeanFlow (no-grad JVP + forward)",
    "MeanFlow (JVP with grad)",
)
# The dry run compiles fewer rows (compiling is slow on CPU; every compiled row takes the same path).
DRY_COMPILE_ROWS = {
    "compile": ("FM", "SoFlow + CFG"),
    "compile-meanflow": ("FM", "MeanFlow (no-grad JVP + forward)", "MeanFlow (JVP with grad)"),
}
SAMPLING_VARIANTS = ("1 NFE", "2 NFE", "1 NFE + VAE decode", "2 NFE + VAE decode")
BLOCKS = 3  # the ratio's range: over this many consecutive blocks of rounds

SD_VAE_CONFIG: dict[str, Any] = dict(sd_vae.SD_VAE_CONFIG)  # the architecture of stabilityai/sd-vae-ft-mse
TINY_VAE_CONFIG: dict[str, Any] = {
    **SD_VAE_CONFIG,
    "block_out_channels": [8, 8, 8, 8],
    "layers_per_block": 1,
    "norm_num_groups": 4,
}
VAE_SCALE = sd_vae.SD_VAE_SCALE


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The sizes of one run: full on a GPU, tiny stand-ins for `--dry-run`."""

    models: dict[str, DiTConfig]  # step-throughput backbones (10 classes + null)
    batch: dict[str, int]  # training batch per model
    sampler: DiTConfig  # the sampling backbone (XL/2, 1000 classes)
    sample_batch: int
    sample_images: int
    vae: dict[str, Any]
    rounds: int  # timed rounds per part (fewer when time runs short)
    sample_rounds: int
    warmup: int  # warm-up steps per row, eager
    compile_warmup: int  # warm-up steps per row, compiled (the first compiles)


def full_sizes() -> Sizes:
    """The paper's scale: 32×32×4 latents of ImageNet 256."""
    classes = step_cost.NUM_CLASSES
    return Sizes(
        models={m: DiTConfig.from_size(m, num_classes=classes) for m in MODELS},
        batch={"B/4": 256, "XL/2": 64},
        sampler=DiTConfig.from_size("XL/2"),
        sample_batch=125,
        sample_images=1000,
        vae=SD_VAE_CONFIG,
        rounds=20,
        sample_rounds=15,
        warmup=2,
        compile_warmup=3,
    )


def dry_sizes() -> Sizes:
    """Tiny stand-ins with the same patch sizes, for a CPU rehearsal of every code path."""
    classes = step_cost.NUM_CLASSES
    tiny = {"input_size": 8, "hidden_size": 32, "depth": 1, "num_heads": 2, "frequency_dim": 32}
    return Sizes(
        models={m: DiTConfig.from_size(m, num_classes=classes, **tiny) for m in MODELS},
        batch={"B/4": 8, "XL/2": 8},
        sampler=DiTConfig.from_size("XL/2", num_classes=10, **tiny),
        sample_batch=5,
        sample_images=10,
        vae=TINY_VAE_CONFIG,
        rounds=2,
        sample_rounds=2,
        warmup=1,
        compile_warmup=1,
    )


# --------------------------------------------------------------------------------------------------
# Small helpers


def slug(name: str) -> str:
    """A file-name stem: `"NVIDIA H200"` -> `"nvidia-h200"`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader (or a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 2000 else text[:2000] + " ..."


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _randomize_zero_layers(net: nn.Module, generator: torch.Generator) -> None:
    """Give the zero-initialised layers (adaLN-Zero, output layer) small random weights.

    A DiT at initialisation outputs exactly 0; a trained one does not. Random non-zero weights make
    every evaluation do real work (no all-zero shortcut in any kernel) and the outputs non-trivial.
    """
    with torch.no_grad():
        for param in net.parameters():
            if not param.any():
                noise = torch.randn(param.shape, generator=generator, device=generator.device)
                param.copy_(0.02 * noise)


def build_dit(config: DiTConfig, device: torch.device, seed: int = 0) -> DiT:
    """A DiT with random non-zero weights, built directly on `device`."""
    torch.manual_seed(seed)
    with device:
        net = DiT(config)
    _randomize_zero_layers(net, torch.Generator(device=device).manual_seed(seed))
    return net


def fused_attention(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Only the fused SDPA kernels: flash or memory-efficient on CUDA, flash on CPU (math refused)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if device.type == "cuda":
        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


def attention_ops(fn: Callable[[], Any]) -> list[str]:
    """The attention operators that `fn` runs, as the profiler sees them (the SDPA kernel in use)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = {event.key for event in prof.key_averages()}
    return sorted(n for n in names if "scaled_dot_product" in n or "attention" in n.lower())


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
# The training-step bench: step_cost's rows on a DiT from soflow_toolkit.models, under bf16 autocast


class DiTBench(step_cost.Bench):
    """`step_cost.Bench` (its FM, SoFlow, official-structure and MeanFlow rows) on a given DiT.

    The steps run under bf16 autocast: the MeanFlow rows with the math attention kernel (forward-mode
    AD has no rule for the fused ones), every other row with the fused kernels only.
    `compiled_meanflow` compiles the MeanFlow losses whole, the JVP inside the graph.
    """

    def __init__(
        self,
        backbone: DiT,
        batch: int,
        device: torch.device,
        *,
        compiled_meanflow: bool = False,
        compile_backend: str = "inductor",
    ) -> None:
        config = backbone.config
        shape = (config.in_channels, config.input_size, config.input_size)
        self.backbone = backbone.train()
        self.wrapper = SolutionFlowWrapper(self.backbone)
        self.wrapper_unchecked = SolutionFlowWrapper(self.backbone, check_inputs=False)
        data_gen = torch.Generator().manual_seed(1)
        self.data = torch.randn(batch, *shape, generator=data_gen).to(device)
        self.labels = torch.randint(0, step_cost.NUM_CLASSES, (batch,), generator=data_gen).to(device)
        self.generator = torch.Generator(device=device).manual_seed(2)
        self.plain = SoFlowLoss(step_cost.PLAIN)
        self.plain_unchecked = SoFlowLoss(step_cost.PLAIN)
        self.guided = SoFlowLoss(step_cost.CONFIG)
        self.device = device
        mf_grad: Callable[..., Tensor] = meanflow_loss_jvp_grad
        mf: Callable[..., Tensor] = meanflow_loss
        if compiled_meanflow:
            mf_grad = torch.compile(meanflow_loss_jvp_grad, backend=compile_backend)
            mf = torch.compile(meanflow_loss, backend=compile_backend)
        g, n = self.generator, step_cost.NUM_CLASSES
        self.steps: dict[str, Callable[[], Tensor]] = {
            "FM": lambda: self.flow_matching(guided=False),
            "SoFlow": lambda: self.plain(self.wrapper, self.data, self.labels, generator=g).loss,
            "SoFlow, check_inputs=False": lambda: (
                self.plain_unchecked(self.wrapper_unchecked, self.data, self.labels, generator=g).loss
            ),
            "SoFlow + CFG": lambda: self.guided(self.wrapper, self.data, self.labels, n, generator=g).loss,
            "Official structure": lambda: self.official(self.plain),
            "Official structure + CFG": lambda: self.official(self.guided),
            "MeanFlow (JVP with grad)": lambda: self.meanflow(mf_grad, step_cost.MEANFLOW),
            "MeanFlow (no-grad JVP + forward)": lambda: self.meanflow(mf, step_cost.MEANFLOW),
        }

    def attention(self, row: str) -> contextlib.AbstractContextManager[Any]:
        return math_attention() if row.startswith("MeanFlow") else fused_attention(self.device)

    def step(self, row: str) -> None:
        with self.attention(row), torch.autocast(self.device.type, dtype=torch.bfloat16):
            loss = self.steps[row]()
        loss.backward()
        self.backbone.zero_grad(set_to_none=True)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _peak_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, float]:
    """Peak `max_memory_allocated` during one call, and the peak minus the memory held before (MiB)."""
    if device.type != "cuda":
        return {}
    _free(device)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_mib": peak / 2**20, "step_mib": (peak - base) / 2**20}


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class Deadline:
    """Seconds left before the part's time limit (none: infinite)."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def left(self) -> float:
        return math.inf if self.at is None else self.at - time.time()


def interleaved_rounds(
    calls: dict[str, Callable[[], Any]],
    device: torch.device,
    *,
    max_rounds: int,
    min_rounds: int,
    deadline: Deadline,
    reserve_s: float,
    on_round: Callable[[dict[str, list[float]], dict[str, str]], None],
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Time every call once per round, the order rotating each round; stop early when time runs short.

    A call that raises is dropped (its error returned) and the others go on. Returns the per-round
    seconds of every remaining call and the errors.
    """
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    errors: dict[str, str] = {}
    for i in range(max_rounds):
        live = [n for n in names if n not in errors]
        if not live:
            break
        shift = i % len(live)
        round_start = time.perf_counter()
        for name in live[shift:] + live[:shift]:
            try:
                samples[name].append(_timed(calls[name], device))
            except Exception as error:  # a row that fails (e.g. out of memory) must not stop the others
                errors[name] = _error_text(error)
                _free(device)
        # equal-length series: a row that failed mid-way loses its samples
        for name in errors:
            samples.pop(name, None)
        on_round(samples, errors)
        round_s = time.perf_counter() - round_start
        if i + 1 >= min_rounds and deadline.left() < reserve_s + 1.5 * round_s:
            break
    return samples, errors


def paired_ratio_range(samples: list[float], reference: list[float]) -> list[float]:
    """The paired ratio of medians over `BLOCKS` consecutive blocks of rounds: min and max."""
    size = max(1, len(samples) // BLOCKS)
    ratios = [
        step_cost.paired_ratio(samples[b : b + size], reference[b : b + size])
        for b in range(0, len(samples) - size + 1, size)
    ]
    return [min(ratios), max(ratios)]


def summarize_rows(
    samples: dict[str, list[float]], batch: int, reference: str | None = "FM"
) -> dict[str, dict[str, Any]]:
    """Median time, images/s with its interquartile range, and the paired ratio to `reference`."""
    out: dict[str, dict[str, Any]] = {}
    ref = samples.get(reference) if reference else None
    for name, values in samples.items():
        if not values:
            continue
        rates = [batch / v for v in values]
        entry: dict[str, Any] = {
            "median_ms": 1000 * statistics.median(values),
            "images_per_s": statistics.median(rates),
            "images_per_s_iqr": [_quantile(rates, 0.25), _quantile(rates, 0.75)],
            "samples_ms": [1000 * v for v in values],
        }
        if ref:
            entry["ratio_to_fm"] = step_cost.paired_ratio(values, ref)
            entry["ratio_range"] = paired_ratio_range(values, ref)
        out[name] = entry
    return out


def run_steps(task: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One step-throughput part: one model, eager or compiled, its rows interleaved."""
    sizes = dry_sizes() if task["dry_run"] else full_sizes()
    device = torch.device(task["device"])
    model = task["model"]
    compiled = task["kind"] in ("compile", "compile-meanflow")
    rows = {"steps": STEP_ROWS, "compile": COMPILE_ROWS, "compile-meanflow": COMPILE_MEANFLOW_ROWS}[
        task["kind"]
    ]
    if task["dry_run"] and not task.get("rows"):
        rows = DRY_COMPILE_ROWS.get(task["kind"], rows)
    rows = tuple(r for r in rows if not task.get("rows") or r in task["rows"] or r == "FM")

    batch = task.get("batch") or sizes.batch[model]
    deadline = Deadline(task.get("deadline"))
    config = sizes.models[model]
    net = build_dit(config, device)
    result: dict[str, Any] = {
        "model": f"DiT-{model}",
        "config": dataclasses.asdict(config),
        "parameters": count_parameters(net),
        "batch": batch,
        "input": [config.in_channels, config.input_size, config.input_size],
        "autocast": "bfloat16",
        "compile": None,
        "rows": {r: {"method": r, "status": "pending"} for r in rows},
    }
    emit(result)
    bench = DiTBench(
        net,
        batch,
        device,
        compiled_meanflow=task["kind"] == "compile-meanflow",
        compile_backend=task["compile_backend"],
    )
    # Which attention kernel runs: one profiled forward (eager) of the fused and of the math rows.
    x, t = bench.data[:2], torch.full((2,), 0.5, device=device)
    ops: dict[str, Any] = {}
    for label, row in (("fused rows", "FM"), ("MeanFlow rows", "MeanFlow (JVP with grad)")):
        with torch.no_grad(), bench.attention(row), torch.autocast(device.type, dtype=torch.bfloat16):
            try:
                ops[label] = attention_ops(lambda: net(x, t, t, bench.labels[:2]))
            except Exception as error:
                ops[label] = _error_text(error)
    result["sdpa_ops"] = ops
    if compiled:
        # More graph variants than dynamo's default limit (8) may be needed per block (grad and no-grad
        # passes, several batch sizes, the JVP): past the limit it would fall back to eager silently.
        dynamo_config = torch._dynamo.config
        limit_name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        setattr(dynamo_config, limit_name, max(64, getattr(dynamo_config, limit_name)))
        scope, backend = task["compile_scope"], task["compile_backend"]
        if scope == "blocks":
            for block in net.blocks:
                block.compile(backend=backend)
        else:
            compiled_net = torch.compile(net, backend=backend)
            bench.wrapper = SolutionFlowWrapper(compiled_net)
            bench.wrapper_unchecked = SolutionFlowWrapper(compiled_net, check_inputs=False)
        result["compile"] = {
            "scope": scope,
            "backend": backend,
            limit_name: getattr(dynamo_config, limit_name),
        }
    emit(result)

    warmup = sizes.compile_warmup if compiled else sizes.warmup
    calls: dict[str, Callable[[], None]] = {}
    longest_warmup = 0.0
    per_step: dict[str, float] = {}
    for row in rows:
        entry = result["rows"][row]
        needed = 1.5 * longest_warmup + task["min_rounds"] * sum(per_step.values())
        if row != "FM" and deadline.left() < needed:
            entry.update(
                status="skipped", reason=f"time budget: {deadline.left():.0f} s left, ~{needed:.0f} s needed"
            )
            emit(result)
            continue
        entry["status"] = "warming up"
        emit(result)
        start = time.perf_counter()
        try:
            for _ in range(warmup):
                per_step[row] = _timed(lambda r=row: bench.step(r), device)
        except Exception as error:
            entry.update(status="failed", error=_error_text(error), out_of_memory=_is_oom(error))
            per_step.pop(row, None)
            _free(device)
        else:
            entry["status"] = "warm"
            calls[row] = lambda r=row: bench.step(r)
        entry["warmup_s"] = time.perf_counter() - start
        longest_warmup = max(longest_warmup, entry["warmup_s"])
        emit(result)

    graphs_before = _graphs_compiled()

    def on_round(samples: dict[str, list[float]], errors: dict[str, str]) -> None:
        result["rounds"] = max((len(v) for v in samples.values()), default=0)
        for name, text in errors.items():
            result["rows"][name].update(status="failed", error=text)
        for name, entry in summarize_rows(samples, batch).items():
            result["rows"][name].update(status="measured", **entry)
        emit(result)

    memory_reserve = sum(per_step.values()) + 5.0
    interleaved_rounds(
        calls,
        device,
        max_rounds=task.get("rounds") or sizes.rounds,
        min_rounds=task["min_rounds"],
        deadline=deadline,
        reserve_s=memory_reserve,
        on_round=on_round,
    )
    result["graphs_compiled_while_timing"] = _graphs_compiled() - graphs_before if compiled else None
    for row in calls:
        entry = result["rows"][row]
        if entry["status"] != "measured":
            continue
        try:
            entry.update(_peak_memory(lambda r=row: bench.step(r), device))
        except Exception as error:
            entry["memory_error"] = _error_text(error)
        fm = result["rows"]["FM"]
        if "step_mib" in entry and fm.get("step_mib"):
            entry["memory_ratio_to_fm"] = entry["step_mib"] / fm["step_mib"]
        emit(result)
    measured = [row for row in result["rows"].values() if row.get("status") == "measured"]
    result["targets"] = step_cost.check_targets(measured)  # the step-cost benchmark's targets
    result["status"] = part_status(result["rows"])
    return result


def part_status(rows: dict[str, dict[str, Any]]) -> str:
    """`ok` when every row was measured (or skipped for time), `partial` when some failed, else `failed`."""
    statuses = [row.get("status") for row in rows.values()]
    if "measured" not in statuses:
        return "failed"
    return "partial" if "failed" in statuses else "ok"


# --------------------------------------------------------------------------------------------------
# Sampling throughput


def build_vae(config: dict[str, Any], device: torch.device) -> tuple[Any, str]:
    """A randomly initialised diffusers `AutoencoderKL` (bf16, eval), or None and the reason."""
    try:
        from diffusers import AutoencoderKL
    except ImportError as error:
        return None, f"skipped: diffusers is not importable ({error})"
    torch.manual_seed(0)
    with device:
        vae = AutoencoderKL(**config)
    return vae.to(dtype=torch.bfloat16).eval().requires_grad_(False), "random AutoencoderKL"


def run_sampling(task: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """1- and 2-NFE sampling of XL/2 in bf16, without and with a VAE decode; then 1,000 images."""
    sizes = dry_sizes() if task["dry_run"] else full_sizes()
    device = torch.device(task["device"])
    deadline = Deadline(task.get("deadline"))
    batch = task.get("sample_batch") or sizes.sample_batch
    config = sizes.sampler
    net = build_dit(config, device).to(torch.bfloat16).eval().requires_grad_(False)
    model = SolutionFlowWrapper(net)
    vae, vae_note = build_vae(sizes.vae, device)
    result: dict[str, Any] = {
        "model": "DiT-XL/2" + (" (tiny stand-in)" if task["dry_run"] else ""),
        "config": dataclasses.asdict(config),
        "parameters": count_parameters(net),
        "batch": batch,
        "dtype": "bfloat16 weights and activations",
        "vae": {
            "status": vae_note,
            "config": sizes.vae,
            "parameters": None if vae is None else count_parameters(vae),
        },
        "variants": {},
    }
    emit(result)
    shape = (config.in_channels, config.input_size, config.input_size)
    generator = torch.Generator(device=device).manual_seed(3)

    def generate(steps: int, decode: bool, n: int) -> Tensor:
        noise = torch.randn((n, *shape), generator=generator, device=device, dtype=torch.bfloat16)
        labels = torch.randint(0, config.num_classes, (n,), generator=generator, device=device)
        with torch.no_grad():
            with fused_attention(device):  # the DiT only: the VAE's attention has 512-wide heads
                latents = sample(model, noise, steps=steps, cond=labels, generator=generator)
            if not decode:
                return latents
            images: Tensor = vae.decode(latents / VAE_SCALE).sample
        return images

    variants: dict[str, Callable[[], Any]] = {}
    for name in SAMPLING_VARIANTS:
        decode = "VAE" in name
        if decode and vae is None:
            result["variants"][name] = {"method": name, "status": "skipped", "reason": vae_note}
            continue
        steps = int(name[0])
        variants[name] = lambda s=steps, d=decode: generate(s, d, batch)
        result["variants"][name] = {"method": name, "status": "pending", "nfe": steps}
    for name, call in list(variants.items()):
        try:
            for _ in range(sizes.warmup):
                _timed(call, device)
            result["variants"][name]["status"] = "warm"
        except Exception as error:
            result["variants"][name].update(
                status="failed", error=_error_text(error), out_of_memory=_is_oom(error)
            )
            variants.pop(name)
            _free(device)
    emit(result)

    def on_round(samples: dict[str, list[float]], errors: dict[str, str]) -> None:
        for name, text in errors.items():
            result["variants"][name].update(status="failed", error=text)
        for name, entry in summarize_rows(samples, batch, reference=None).items():
            result["variants"][name].update(status="measured", **entry)
        result["rounds"] = max((len(v) for v in samples.values()), default=0)
        emit(result)

    interleaved_rounds(
        variants,
        device,
        max_rounds=task.get("rounds") or sizes.sample_rounds,
        min_rounds=task["min_rounds"],
        deadline=deadline,
        reserve_s=10.0,
        on_round=on_round,
    )
    for name, call in variants.items():
        if result["variants"][name]["status"] == "measured":
            result["variants"][name].update(_peak_memory(call, device))
    result["status"] = part_status(result["variants"])

    # 1,000 images end to end: noise, sampling (and decode to uint8), copied to host memory.
    total = sizes.sample_images
    result["thousand"] = {"images": total, "batch": batch, "variants": {}}
    for name in ("1 NFE", "2 NFE", "1 NFE + VAE decode"):
        if name not in variants:
            continue
        steps, decode = int(name[0]), "VAE" in name

        def run_all(s: int = steps, d: bool = decode) -> None:
            for start in range(0, total, batch):
                out = generate(s, d, min(batch, total - start))
                if d:
                    out = to_uint8(out.float())  # as the official FID sampling writes them
                out.cpu()

        try:
            seconds = _timed(run_all, device)
            result["thousand"]["variants"][name] = {"seconds": seconds, "images_per_s": total / seconds}
        except Exception as error:
            result["thousand"]["variants"][name] = {"error": _error_text(error)}
        emit(result)
    return result


# --------------------------------------------------------------------------------------------------
# The CUDA tests through pytest


def cuda_test_files() -> list[Path]:
    """The test files that test for CUDA (their CUDA tests skip elsewhere)."""
    files = []
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == "test_gpu_check.py":  # runs this script: never from itself
            continue
        if "torch.cuda.is_available()" in path.read_text():
            files.append(path)
    return files


def missing_imports(path: Path, seen: set[Path] | None = None) -> list[str]:
    """The modules that `path` imports at its top level and that cannot be found here.

    Read from the source (nothing is imported: pytest must import the test files itself, to rewrite
    their asserts); helper modules next to it (`tests/*.py`) are followed. Imports inside `try`
    blocks are optional by construction and not counted.
    """
    seen = set() if seen is None else seen
    seen.add(path)
    missing: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            local = path.parent / f"{top}.py"
            if local.exists():
                if local not in seen:
                    missing += [m for m in missing_imports(local, seen) if m not in missing]
            elif importlib.util.find_spec(top) is None and top not in missing:
                missing.append(top)
    return missing


class _Collector:
    """A pytest plugin that records every test's outcome and every collection error."""

    def __init__(self, emit: Callable[[], None]) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        self.collection_errors: list[dict[str, str]] = []
        self.emit = emit

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collection_errors.append({"nodeid": report.nodeid, "message": report.longreprtext[-3000:]})

    def pytest_runtest_logreport(self, report: Any) -> None:
        entry = self.tests.setdefault(
            report.nodeid, {"nodeid": report.nodeid, "outcome": "passed", "duration_s": 0.0}
        )
        entry["duration_s"] += report.duration
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry.update(outcome="skipped", message=reason)
        elif report.failed:
            entry.update(
                outcome="failed" if report.when == "call" else "error", message=report.longreprtext[-3000:]
            )

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.emit()


def run_tests(task: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The CUDA tests (`-k cuda` in the files that test for CUDA), each file only if it imports."""
    result: dict[str, Any] = {"files": [], "not_importable": {}, "counts": {}}
    try:
        import pytest
    except ImportError:
        return {**result, "status": "skipped", "reason": "pytest is not installed"}
    for path in (TESTS, ROOT):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    files = []
    for path in cuda_test_files():
        missing = missing_imports(path)
        if missing:  # a package missing here: record it, run the other files
            result["not_importable"][path.name] = f"needs {', '.join(missing)}, not installed here"
            continue
        files.append(path)
    result["files"] = [p.name for p in files]
    if not files:
        return {**result, "status": "skipped", "reason": "no CUDA test file can be imported"}

    def update() -> None:
        tests = list(collector.tests.values())
        counts: dict[str, int] = {}
        for test in tests:
            counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
        result.update(tests=tests, counts=counts, collection_errors=collector.collection_errors)
        emit(result)

    collector = _Collector(update)
    args = [*map(str, files), "-k", "cuda", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
    code = int(pytest.main(args, plugins=[collector]))
    update()
    result["exit_code"] = code
    failed = (
        result["counts"].get("failed", 0)
        + result["counts"].get("error", 0)
        + len(collector.collection_errors)
    )
    result["status"] = "failed" if failed or code not in (0, 5) else "ok"
    if failed:
        result["error"] = f"{failed} test(s) failed or errored"
    return result


# --------------------------------------------------------------------------------------------------
# The environment


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device, commit: str | None) -> dict[str, Any]:
    """GPU, driver, CUDA, torch, precision settings and the source revision."""
    import soflow_toolkit

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": step_cost._cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _version("triton"),
        "soflow_toolkit": {
            "version": soflow_toolkit.__version__,
            "path": str(Path(soflow_toolkit.__file__).parent),
        },
        "packages": {
            p: _version(p) for p in ("pytest", "hypothesis", "diffusers", "timm", "torchmetrics", "numpy")
        },
    }
    head = commit or os.environ.get("GIT_COMMIT") or _run(["git", "rev-parse", "HEAD"])
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    env["git"] = {"commit": head, "dirty": None if status is None else bool(status)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
        env["gpu"] = {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": props.total_memory / 2**30,
            "multiprocessors": props.multi_processor_count,
            "driver": smi.splitlines()[0].split(",")[1].strip() if smi else None,
            "nvidia_smi": smi,
        }
    else:
        env["gpu"] = None
    cuda_backends = torch.backends.cuda
    env["precision"] = {
        "autocast_dtype": "bfloat16 (training steps); sampling: bfloat16 weights",
        "matmul_allow_tf32": cuda_backends.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "sdpa_enabled": {
            "flash": cuda_backends.flash_sdp_enabled(),
            "mem_efficient": cuda_backends.mem_efficient_sdp_enabled(),
            "math": cuda_backends.math_sdp_enabled(),
            "cudnn": getattr(cuda_backends, "cudnn_sdp_enabled", lambda: None)(),
        },
    }
    return env


# --------------------------------------------------------------------------------------------------
# Plan, parent loop, children

# Rough seconds on one H200 (compile on 16 cores), for the plan printed up front and for the order of
# the time limits; each part records what it really took.
ESTIMATE_S = {
    "tests": 120,
    "steps:B/4": 35,
    "steps:XL/2": 50,
    "sampling": 35,
    "compile:B/4": 70,
    "compile:XL/2": 90,
    "compile-meanflow:B/4": 90,
    "compile-meanflow:XL/2": 150,
}
DRY_ESTIMATE_S = {"tests": 8, "steps": 6, "sampling": 8, "compile": 10, "compile-meanflow": 15}
START_S = 8.0  # starting a child (python, torch, CUDA context)


def plan_tasks(parts: list[str], models: list[str]) -> list[dict[str, Any]]:
    """The tasks in the order they run: what matters most first, the long compiles last."""
    tasks: list[dict[str, Any]] = []
    for part in PARTS:
        if part not in parts:
            continue
        if part in ("tests", "sampling"):
            tasks.append({"name": part, "kind": part})
        else:
            tasks += [{"name": f"{part}:{m}", "kind": part, "model": m} for m in models]
    order = ["tests", "steps", "sampling", "compile", "compile-meanflow"]
    return sorted(tasks, key=lambda t: order.index(t["kind"]))


def estimate(task: dict[str, Any], dry_run: bool) -> float:
    if dry_run:
        return DRY_ESTIMATE_S[task["kind"]]
    return ESTIMATE_S.get(task["name"], 60)


class Run:
    """The parent: runs the tasks as children, merges their partial results, writes the files."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args = args
        self.device = device
        self.started = time.time()
        self.json_path = args.out_dir / f"{args.name}.json"
        self.md_path = args.out_dir / f"{args.name}.md"
        self.child: subprocess.Popen[str] | None = None
        self.result: dict[str, Any] = {
            "meta": {
                "command": "python benchmarks/gpu_check.py" + "".join(f" {a}" for a in args.argv),
                "dry_run": args.dry_run,
                "device": str(device),
                "budget_s": args.budget_min * 60,
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "status": "running",
                "load_average": {"start": os.getloadavg()[0]},
            },
            "environment": environment(device, args.commit),
            "plan": [],
            "parts": {},
        }

    def write(self) -> None:
        meta = self.result["meta"]
        meta["wall_s"] = time.time() - self.started
        own = os.times()
        meta["cpu_s"] = own.user + own.system + _children_cpu_s()
        meta["load_average"]["end"] = os.getloadavg()[0]
        _write_json(self.json_path, self.result)
        try:
            text = markdown(self.result)
        except Exception as error:  # the report must never stop the run: the JSON has everything
            text = f"Rendering this report failed ({_error_text(error)}); the JSON file holds the results.\n"
        self.md_path.write_text(text)
        write_index(self.args.out_dir)

    def interrupt(self, signum: int, frame: Any) -> None:
        self._kill_child()
        self.result["meta"]["status"] = f"interrupted (signal {signum})"
        for part in self.result["parts"].values():
            if part.get("status") == "running":
                part["status"] = "timeout"
                part["error"] = "the whole run was interrupted while this part ran"
        self.write()
        sys.exit(128 + signum)

    def _kill_child(self) -> None:
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()

    def run(self, tasks: list[dict[str, Any]]) -> None:
        budget = self.args.budget_min * 60
        for task in tasks:
            task["estimate_s"] = estimate(task, self.args.dry_run)
        self.result["plan"] = [{"task": t["name"], "estimate_s": t["estimate_s"]} for t in tasks]
        total = sum(t["estimate_s"] + (0 if self.args.dry_run else START_S) for t in tasks)
        print(
            f"gpu_check on {self.result['environment']['gpu']['name'] if self.device.type == 'cuda' else 'CPU (dry run)'}: "
            f"{len(tasks)} tasks, estimated {total / 60:.1f} min (rough), budget {budget / 60:.1f} min",
            flush=True,
        )
        for t in tasks:
            print(f"  {t['name']:<24} ~{t['estimate_s']:.0f} s", flush=True)
        if total > budget:
            print(
                "  more than the budget: the parts at the end run in the time left, or are skipped and "
                "recorded as such (run them alone with --parts)",
                flush=True,
            )

        self.write()
        for i, task in enumerate(tasks):
            left = budget - (time.time() - self.started)
            # what the later tasks need at least: a third of their estimate, so that each gets a go
            later = sum(t["estimate_s"] / 3 for t in tasks[i + 1 :])
            limit = left - later if i + 1 < len(tasks) else left
            if not self.args.dry_run:  # a part that hangs must not take the whole budget
                limit = min(limit, max(2.0 * task["estimate_s"], 60.0))
            entry: dict[str, Any] = {"status": "running", "limit_s": limit}
            self.result["parts"][task["name"]] = entry
            if limit < min(30.0, task["estimate_s"] / 3):
                entry.update(
                    status="skipped", reason=f"time budget: {max(left, 0):.0f} s left of {budget:.0f} s"
                )
                print(f"[{task['name']}] skipped: {entry['reason']}", flush=True)
                self.write()
                continue
            self.run_child(task, entry, limit)
            print(f"[{task['name']}] {summary_line(task['name'], entry)}", flush=True)
            self.write()
        self.result["meta"]["status"] = "done"
        self.write()

    def run_child(self, task: dict[str, Any], entry: dict[str, Any], limit: float) -> None:
        args = self.args
        spec = {
            **task,
            "dry_run": args.dry_run,
            "device": str(self.device),
            "deadline": time.time() + limit,
            "min_rounds": args.min_rounds,
            "rounds": args.rounds,
            "compile_backend": args.compile_backend,
            "compile_scope": args.compile_scope,
            "batch": args.batch.get(task.get("model", "")),
            "rows": args.rows,
        }
        with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
            out = Path(tmp) / "part.json"
            log = Path(tmp) / "log.txt"
            env = dict(
                os.environ,
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            )
            if args.dry_run:
                env.setdefault("OMP_NUM_THREADS", "1")
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                json.dumps(spec),
                "--child-out",
                str(out),
            ]
            start, cpu_start = time.time(), _children_cpu_s()
            killed = False
            with open(log, "w") as log_file:
                self.child = subprocess.Popen(
                    command,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=ROOT,
                    text=True,
                    start_new_session=True,
                )
                seen = 0.0
                while self.child.poll() is None:
                    if time.time() - start > limit:
                        self._kill_child()
                        killed = True
                        break
                    time.sleep(0.5)
                    if out.exists() and out.stat().st_mtime != seen:
                        seen = out.stat().st_mtime
                        self._merge(entry, out)
                        self.write()
            code = self.child.returncode
            self.child = None
            self._merge(entry, out)
            entry["wall_s"] = time.time() - start
            entry["cpu_s"] = _children_cpu_s() - cpu_start
            tail = log.read_text()[-4000:] if log.exists() else ""
            if killed:
                entry["status"] = "timeout"
                entry["error"] = f"stopped at its time limit of {limit:.0f} s; what it measured is kept"
                entry["log_tail"] = tail
            elif code != 0 or entry.get("status") in (None, "running"):
                # the child died without writing its final state (a crash, or killed for memory)
                entry["status"] = "failed"
                entry.setdefault("error", f"the part's process ended with exit code {code}")
                entry["log_tail"] = tail
            elif entry.get("status") in ("failed", "partial"):
                entry["log_tail"] = tail
            if self.args.verbose:
                print(tail, flush=True)

    @staticmethod
    def _merge(entry: dict[str, Any], out: Path) -> None:
        if out.exists():
            with contextlib.suppress(ValueError, OSError):
                entry.update(json.loads(out.read_text()))


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(spec: dict[str, Any], out: Path) -> int:
    """A task in this (child) process; its result goes to `out`, rewritten as it grows."""
    if spec["dry_run"]:
        torch.set_num_threads(1)
    state: dict[str, Any] = {"status": "running"}

    def emit(partial: dict[str, Any]) -> None:
        state.update(partial)
        _write_json(out, state)

    kind = spec["kind"]
    runner = {"tests": run_tests, "sampling": run_sampling}.get(kind, run_steps)
    try:
        final = runner(spec, emit)
        state.update(final)
        state.setdefault("status", "ok")
        if state["status"] == "running":
            state["status"] = "ok"
    except Exception as error:
        state.update(status="failed", error=_error_text(error), traceback=traceback.format_exc()[-4000:])
        traceback.print_exc()
    _write_json(out, state)
    return 0  # the state says how the part went; a non-zero exit means the process itself broke


# --------------------------------------------------------------------------------------------------
# Report


def summary_line(name: str, part: dict[str, Any]) -> str:
    """One line per part for the console."""
    status = part.get("status", "?")
    if status in ("skipped",):
        return f"skipped: {part.get('reason', '')}"
    bits = [status, f"{part.get('wall_s', 0):.0f} s"]
    if name == "tests":
        counts = part.get("counts", {})
        bits.append(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no tests")
        if part.get("not_importable"):
            bits.append(f"not importable: {', '.join(part['not_importable'])}")
    elif "rows" in part:
        for row in part["rows"].values():
            if "images_per_s" in row:
                ratio = f", {row['ratio_to_fm']:.2f}x FM" if "ratio_to_fm" in row else ""
                bits.append(f"{row['method']}: {row['images_per_s']:.0f} img/s{ratio}")
    elif "variants" in part:
        for row in part["variants"].values():
            if "images_per_s" in row:
                bits.append(f"{row['method']}: {row['images_per_s']:.0f} img/s")
    if part.get("error"):
        bits.append(f"error: {_first_line(part['error'])}")
    return "; ".join(bits)


def _first_line(text: str | None, width: int = 160) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:width] if lines else ""


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _params(count: int) -> str:
    return f"{count / 1e6:.1f} M" if count >= 100_000 else f"{count:,}"


def _rows_table(part: dict[str, Any], key: str, steps: bool = True) -> list[str]:
    """One line per row (a step method, or a sampling variant)."""
    if steps:
        lines = [
            "| Method | Status | Median step (ms) | Images/s (IQR) | × FM step time (range) | Peak memory (GiB) "
            "| Step memory (GiB) | × FM step memory | Warm-up (s) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        lines = [
            "| Variant | Status | Median batch (ms) | Images/s (IQR) | Peak memory (GiB) |",
            "|---|---|---:|---:|---:|",
        ]
    for row in part.get(key, {}).values():
        status = row.get("status", "?")
        if status != "measured":
            note = row.get("reason") or _first_line(row.get("error"))
            status = f"{status}: {note}" if note else status
        iqr = row.get("images_per_s_iqr")
        rate = f"{row['images_per_s']:.0f} ({iqr[0]:.0f}–{iqr[1]:.0f})" if "images_per_s" in row else "–"
        ratio = (
            f"{row['ratio_to_fm']:.2f} ({row['ratio_range'][0]:.2f}–{row['ratio_range'][1]:.2f})"
            if "ratio_to_fm" in row
            else "–"
        )
        peak = f"{row['peak_mib'] / 1024:.2f}" if "peak_mib" in row else "–"
        step = f"{row['step_mib'] / 1024:.2f}" if "step_mib" in row else "–"
        first = f"| {row['method']} | {status} | {_fmt(row.get('median_ms'), 1)} | {rate} |"
        if steps:
            lines.append(
                f"{first} {ratio} | {peak} | {step} | {_fmt(row.get('memory_ratio_to_fm'))} "
                f"| {_fmt(row.get('warmup_s'), 1)} |"
            )
        else:
            lines.append(f"{first} {peak} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The results file as Markdown: environment, correctness, step and sampling throughput."""
    meta, env = result["meta"], result["environment"]
    gpu = env.get("gpu")
    device = (
        f"{gpu['name']} ({gpu['memory_gib']:.0f} GiB, compute capability {gpu['capability']}, driver {gpu['driver']})"
        if gpu
        else f"CPU: {env['cpu']} ({env['cpu_count']} cores)"
    )
    prec = env["precision"]
    lines = [
        f"Measured with `{meta['command']}` on {device}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN "
        f"{env['cudnn']}, Triton {env['triton']}, Python {env['python']}; commit `{env['git']['commit']}`"
        f"{' (uncommitted changes)' if env['git']['dirty'] else ''}; started {meta['started']}, "
        f"{meta.get('wall_s', 0) / 60:.1f} min, status {meta['status']}.",
        "",
        f"Precision: training steps under `torch.autocast(dtype=torch.bfloat16)` (weights and loss in float32), "
        f"sampling with bf16 weights; TF32 matmul {prec['matmul_allow_tf32']}, TF32 cuDNN "
        f"{prec['cudnn_allow_tf32']}, float32 matmul precision `{prec['float32_matmul_precision']}`.",
    ]
    if meta["dry_run"]:
        lines += [
            "",
            "**Dry run**: tiny stand-in models on CPU; it shows that every part runs, not what anything costs "
            f"(1-minute load average {meta['load_average']['start']:.1f} at the start, "
            f"{meta['load_average'].get('end', 0):.1f} at the end).",
        ]
    parts = result["parts"]
    tests = parts.get("tests")
    if tests:
        lines += ["", "## Correctness on CUDA", ""]
        counts = tests.get("counts", {})
        lines.append(
            f"pytest `-k cuda` on {', '.join(f'`{f}`' for f in tests.get('files', [])) or 'no file'}: "
            + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no test ran")
            + f" (status {tests.get('status')})."
        )
        for name, why in tests.get("not_importable", {}).items():
            lines.append(f"- `{name}` not run: {why}.")
        for error in tests.get("collection_errors", []):
            lines.append(
                f"- collection error in `{error['nodeid']}`: {_first_line(error['message'].strip().splitlines()[-1] if error['message'].strip() else '')}"
            )
        if tests.get("reason"):
            lines.append(f"- {tests['reason']}.")
        ran = [t for t in tests.get("tests", []) if t["outcome"] != "skipped"]
        skipped = [t for t in tests.get("tests", []) if t["outcome"] == "skipped"]
        if ran:
            lines += ["", "| Test | Outcome | Time (s) |", "|---|---|---:|"]
            lines += [f"| `{t['nodeid']}` | {t['outcome']} | {t['duration_s']:.1f} |" for t in ran]
        if skipped:
            reasons = sorted({t.get("message", "") for t in skipped})
            lines.append(f"\n{len(skipped)} skipped ({'; '.join(reasons)}).")
    for kind, title in (
        ("steps", "Training-step throughput, eager"),
        ("compile", "Training-step throughput, compiled"),
        ("compile-meanflow", "Training-step throughput, compiled, with MeanFlow"),
    ):
        for name, part in parts.items():
            if name.split(":")[0] != kind:
                continue
            lines += ["", f"## {title}: DiT-{name.split(':')[1]}", ""]
            if part.get("status") == "skipped" or "rows" not in part:
                lines.append(f"Status {part.get('status')}: {part.get('reason') or part.get('error') or ''}")
                continue
            comp = part.get("compile")
            lines.append(
                f"{part['model']} ({_params(part['parameters'])} parameters), input {'×'.join(map(str, part['input']))}, "
                f"batch {part['batch']}, bf16 autocast, {part.get('rounds', 0)} interleaved rounds; "
                + (
                    f"`torch.compile` ({comp['scope']}, backend `{comp['backend']}`), graphs compiled while timing: "
                    f"{part.get('graphs_compiled_while_timing')}; "
                    if comp
                    else "eager; "
                )
                + f"attention kernels seen: {part.get('sdpa_ops')}; status {part.get('status')}"
                + (f" ({_first_line(part['error'])})" if part.get("error") else "")
                + "."
            )
            lines += ["", *_rows_table(part, "rows")]
            if part.get("targets"):
                lines += [
                    "",
                    "| Ratio (paired, median over rounds) | Measured | Target |",
                    "|---|---:|---:|",
                    *(
                        f"| {c['target']} | {_fmt(c['value'])} | ≤ {c['limit']:.2f} |"
                        for c in part["targets"]
                    ),
                ]

    sampling = parts.get("sampling")
    if sampling:
        lines += ["", "## Sampling throughput", ""]
        if "variants" not in sampling:
            lines.append(
                f"Status {sampling.get('status')}: {sampling.get('reason') or sampling.get('error') or ''}"
            )
        else:
            lines.append(
                f"{sampling['model']} ({_params(sampling['parameters'])} parameters), batch {sampling['batch']}, "
                f"{sampling['dtype']}; VAE: {sampling['vae']['status']}; {sampling.get('rounds', 0)} interleaved rounds; "
                f"status {sampling.get('status')}."
            )
            lines += ["", *_rows_table(sampling, "variants", steps=False)]
            thousand = sampling.get("thousand")
            if thousand:
                lines += [
                    "",
                    f"{thousand['images']} images at batch {thousand['batch']}, end to end (noise to host memory; "
                    "decoded images as uint8):",
                    "",
                    "| Variant | Seconds | Images/s |",
                    "|---|---:|---:|",
                ]
                for name, row in thousand["variants"].items():
                    if "error" in row:
                        lines.append(f"| {name} | failed: {_first_line(row['error'])} | – |")
                    else:
                        lines.append(f"| {name} | {row['seconds']:.2f} | {row['images_per_s']:.0f} |")
    lines += ["", "## Parts", "", "| Part | Status | Time (s) | Estimate (s) |", "|---|---|---:|---:|"]
    estimates = {p["task"]: p["estimate_s"] for p in result.get("plan", [])}
    for name, part in parts.items():
        lines.append(
            f"| {name} | {part.get('status')} | {_fmt(part.get('wall_s'), 0)} | {_fmt(estimates.get(name), 0)} |"
        )
    return "\n".join(lines) + "\n"


def write_index(folder: Path) -> None:
    """`index.md` of a results folder: every non-dry-run result, included for the docs page."""
    results = []
    for path in sorted(folder.glob("*.json")):
        with contextlib.suppress(ValueError, OSError, KeyError):
            data = json.loads(path.read_text())
            if not data["meta"]["dry_run"] and path.with_suffix(".md").exists():
                results.append((path.stem, data))
    if not results:
        text = (
            "No GPU result exists yet. Produce one with `python benchmarks/gpu_check.py` (or `make gpu-check`) "
            "on a CUDA machine, about 8 minutes on one H200; it writes `<device>.json` and `<device>.md` here.\n"
        )
    else:
        lines = []
        for stem, data in results:
            gpu = data["environment"].get("gpu") or {}
            lines += [f"### {gpu.get('name', stem)}", "", f'--8<-- "benchmarks/results/gpu/{stem}.md"', ""]
        text = "\n".join(lines)
    (folder / "index.md").write_text(text)


# --------------------------------------------------------------------------------------------------
# Command line


def _parse_batch(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, text.split(",")):
        model, _, value = item.partition("=")
        if model not in MODELS or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(
                f"--batch expects MODEL=N[,MODEL=N] with MODEL in {MODELS}; got {item!r}"
            )
        out[model] = int(value)
    return out


def _parse_list(choices: tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{what} must be a comma-separated subset of {', '.join(choices)}; got {text!r}"
            )
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny sizes on CPU (CI)")
    parser.add_argument(
        "--parts", type=_parse_list(PARTS, "--parts"), default=list(PARTS), help=f"default: {','.join(PARTS)}"
    )
    parser.add_argument(
        "--models",
        type=_parse_list(MODELS, "--models"),
        default=None,
        help="step models (default B/4,XL/2; dry run B/4)",
    )
    parser.add_argument(
        "--rows", type=_parse_list(STEP_ROWS, "--rows"), default=None, help="step rows (default: all)"
    )
    parser.add_argument(
        "--batch", type=_parse_batch, default={}, help="training batch per model, e.g. B/4=256,XL/2=64"
    )
    parser.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="time budget in minutes (default 8; dry run 15: a rehearsal, not a measurement)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds per part (default 20; dry run 2)"
    )
    parser.add_argument(
        "--min-rounds", type=int, default=None, help="rounds even when time runs short (default 6; dry run 2)"
    )
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (default inductor; dry run eager)"
    )
    parser.add_argument(
        "--compile-scope",
        choices=["blocks", "model"],
        default="blocks",
        help="compile each DiT block or the whole backbone",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="default benchmarks/results/gpu (dry run: outputs/gpu-check)",
    )
    parser.add_argument("--name", default=None, help="file name stem (default: the device's name)")
    parser.add_argument("--commit", default=None, help="the source revision, where git is not available")
    parser.add_argument("--verbose", action="store_true", help="print every part's log")
    parser.add_argument("--render", type=Path, help="rewrite NAME.md from a saved NAME.json, measure nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    dry = args.dry_run
    args.models = args.models or (["B/4"] if dry else list(MODELS))
    args.budget_min = args.budget_min if args.budget_min is not None else (15.0 if dry else 8.0)
    args.min_rounds = args.min_rounds if args.min_rounds is not None else (2 if dry else 6)
    args.compile_backend = args.compile_backend or ("eager" if dry else "inductor")
    for flag in ("rounds", "min_rounds"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return run_child(json.loads(args.child), args.child_out)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(result))
        return 0
    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", 0)
    else:
        print("gpu_check: no CUDA device here; --dry-run rehearses every part on CPU", file=sys.stderr)
        return 2
    args.out_dir = args.out_dir or (DRY_OUT if args.dry_run else RESULTS)
    args.name = args.name or ("cpu-dry-run" if args.dry_run else slug(torch.cuda.get_device_name(device)))
    run = Run(args, device)
    signal.signal(signal.SIGTERM, run.interrupt)
    signal.signal(signal.SIGINT, run.interrupt)
    run.run(plan_tasks(args.parts, args.models))
    meta = run.result["meta"]
    print(
        f"\nwrote {run.md_path} and {run.json_path.name}: {meta['wall_s']:.0f} s, {meta['cpu_s']:.0f} CPU s, "
        f"1-minute load average {meta['load_average']['start']:.1f} -> {meta['load_average']['end']:.1f}",
        flush=True,
    )

    failed = [
        n for n, p in run.result["parts"].items() if p.get("status") in ("failed", "partial", "timeout")
    ]
    if failed:
        print(f"parts that failed: {', '.join(failed)} (see the results file)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
