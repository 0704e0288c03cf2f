"""The GPU check (`benchmarks/gpu_check.py`): its dry run, and how it records what goes wrong.

No GPU is needed: `--dry-run` runs every part at tiny sizes on CPU, through the same child processes,
time limits and result files as a GPU run. The slow tests run the script itself (a full dry run, a
part that fails, a part stopped at its time limit); the others pin down the bookkeeping: the import
check that keeps a test file whose packages are missing out of pytest, the ratios, the order of the
parts, the report of partial results, the index of the results folder and the command line's errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu_check  # noqa: E402  (the root is no package path)

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run_script(
    *args: str, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    out = Path(args[args.index("--out-dir") + 1])
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    name = args[args.index("--name") + 1] if "--name" in args else "cpu-dry-run"
    result = json.loads((out / f"{name}.json").read_text())
    return done, result, (out / f"{name}.md").read_text()


@pytest.mark.slow
def test_dry_run_runs_every_part_and_writes_the_results(tmp_path: Path) -> None:
    done, result, text = run_script("--dry-run", "--out-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    meta = result["meta"]
    assert meta["dry_run"] is True
    assert meta["status"] == "done"
    assert meta["device"] == "cpu"
    parts = result["parts"]
    assert list(parts) == ["tests", "steps:B/4", "sampling", "compile:B/4", "compile-meanflow:B/4"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(parts, "ok")

    tests = parts["tests"]  # on CPU every CUDA test is collected and skips
    assert "test_cuda.py" in tests["files"]
    assert "test_objective.py" in tests["files"]
    assert tests["counts"].get("skipped", 0) >= 10
    assert set(tests["counts"]) == {"skipped"}

    steps = parts["steps:B/4"]
    assert steps["rows"]["FM"]["ratio_to_fm"] == 1.0
    for name in gpu_check.STEP_ROWS:
        row = steps["rows"][name]
        assert row["status"] == "measured", name
        assert row["images_per_s"] > 0
        assert len(row["samples_ms"]) == steps["rounds"] >= 2
        lo, hi = row["ratio_range"]
        assert lo <= hi
    # the fused rows ran the flash kernel, the MeanFlow rows the math kernel
    assert any("flash" in op for op in steps["sdpa_ops"]["fused rows"])
    assert any("math" in op for op in steps["sdpa_ops"]["MeanFlow rows"])
    compiled = parts["compile:B/4"]
    assert compiled["compile"]["scope"] == "blocks"
    assert compiled["graphs_compiled_while_timing"] == 0
    assert set(compiled["rows"]) == set(gpu_check.DRY_COMPILE_ROWS["compile"])
    meanflow = parts["compile-meanflow:B/4"]  # the JVP inside a compiled graph, both forms
    for name in gpu_check.DRY_COMPILE_ROWS["compile-meanflow"]:
        assert meanflow["rows"][name]["status"] == "measured", name

    sampling = parts["sampling"]
    for name in gpu_check.SAMPLING_VARIANTS:
        assert sampling["variants"][name]["status"] == "measured", name
    assert set(sampling["thousand"]["variants"]) == {"1 NFE", "2 NFE", "1 NFE + VAE decode"}

    env = result["environment"]
    assert env["torch"]
    assert env["precision"]["float32_matmul_precision"]
    assert env["gpu"] is None
    for heading in (
        "## Correctness on CUDA",
        "## Training-step throughput, eager: DiT-B/4",
        "## Sampling throughput",
    ):
        assert heading in text
    assert "**Dry run**" in text
    index = (tmp_path / "index.md").read_text()  # a dry run is not listed as a GPU result
    assert "No GPU result exists yet" in index


@pytest.mark.slow
def test_a_failing_part_records_its_error_and_the_run_goes_on(tmp_path: Path) -> None:
    done, result, text = run_script(
        "--dry-run", "--parts", "compile,compile-meanflow", "--rows", "FM", "--compile-backend", "no_such_backend",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1
    parts = result["parts"]
    assert list(parts) == ["compile:B/4", "compile-meanflow:B/4"]  # the second ran after the first failed
    for part in parts.values():
        assert part["status"] == "failed"
        assert "no_such_backend" in part["error"]
    assert result["meta"]["status"] == "done"
    assert "no_such_backend" in text


@pytest.mark.slow
def test_a_part_past_its_time_limit_is_stopped_and_recorded(tmp_path: Path) -> None:
    # far more rounds than fit on any machine (--rounds caps them, --min-rounds forbids stopping early):
    # the part is killed at the end of the budget, the run still finishes
    done, result, _ = run_script(
        "--dry-run", "--parts", "steps", "--rows", "FM", "--rounds", "1000000", "--min-rounds", "1000000",
        "--budget-min", "0.4", "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1
    part = result["parts"]["steps:B/4"]
    assert part["status"] == "timeout"
    assert "time limit" in part["error"]
    assert result["meta"]["status"] == "done"


def test_missing_imports_follows_local_helpers_and_ignores_optional_ones(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("import torch\nimport not_a_package_xyz.sub\n")
    (tmp_path / "test_a.py").write_text(
        "import os\nfrom helper import thing\nfrom hypothesis_missing_xyz import given\n"
        "try:\n    import optional_missing_xyz\nexcept ImportError:\n    pass\n"
    )
    (tmp_path / "test_b.py").write_text("import torch\nfrom soflow_toolkit import SoFlowLoss\n")
    assert gpu_check.missing_imports(tmp_path / "test_a.py") == [
        "not_a_package_xyz",
        "hypothesis_missing_xyz",
    ]
    assert gpu_check.missing_imports(tmp_path / "test_b.py") == []


def test_the_cuda_test_files_are_found_and_this_file_is_not() -> None:
    names = {p.name for p in gpu_check.cuda_test_files()}
    assert {"test_cuda.py", "test_objective.py", "test_fsdp.py", "test_mixed_precision.py"} <= names
    assert "test_gpu_check.py" not in names


def test_summaries_give_the_paired_ratio_and_its_range() -> None:
    fm = [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]
    soflow = [1.1, 1.2, 2.2, 1.1, 1.3, 1.1]  # per-round ratios 1.1, 1.2, 1.1, 1.1, 1.3, 1.1
    rows = gpu_check.summarize_rows({"FM": fm, "SoFlow": soflow}, batch=10)
    assert rows["FM"]["ratio_to_fm"] == 1.0
    assert rows["SoFlow"]["ratio_to_fm"] == pytest.approx(1.1)
    assert rows["SoFlow"]["ratio_range"] == pytest.approx([1.1, 1.2])  # blocks: (1.1,1.2) (1.1,1.1) (1.3,1.1)
    assert rows["FM"]["images_per_s"] == pytest.approx(10.0)
    lo, hi = rows["SoFlow"]["images_per_s_iqr"]
    assert lo <= rows["SoFlow"]["images_per_s"] <= hi
    assert "ratio_to_fm" not in gpu_check.summarize_rows({"1 NFE": [0.5]}, batch=5, reference=None)["1 NFE"]


def test_part_status_distinguishes_partial_from_failed() -> None:
    assert gpu_check.part_status({"a": {"status": "measured"}, "b": {"status": "skipped"}}) == "ok"
    assert gpu_check.part_status({"a": {"status": "measured"}, "b": {"status": "failed"}}) == "partial"
    assert gpu_check.part_status({"a": {"status": "failed"}, "b": {"status": "pending"}}) == "failed"


def test_tasks_run_in_priority_order_with_the_long_compiles_last() -> None:
    tasks = gpu_check.plan_tasks(list(gpu_check.PARTS), ["B/4", "XL/2"])
    assert [t["name"] for t in tasks] == [
        "tests", "steps:B/4", "steps:XL/2", "sampling", "compile:B/4", "compile:XL/2",
        "compile-meanflow:B/4", "compile-meanflow:XL/2",
    ]  # fmt: skip
    assert [t["name"] for t in gpu_check.plan_tasks(["sampling", "tests"], ["XL/2"])] == ["tests", "sampling"]


def test_slug_names_the_results_file_after_the_device() -> None:
    assert gpu_check.slug("NVIDIA H200") == "nvidia-h200"
    assert gpu_check.slug("NVIDIA A100-SXM4-80GB") == "nvidia-a100-sxm4-80gb"


def _result(parts: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    env = {
        "python": "3.11", "cpu": "x", "cpu_count": 16, "torch": "2.11.0", "cuda": "12.8", "cudnn": 90100,
        "triton": "3.5", "git": {"commit": "abc", "dirty": False},
        "gpu": {"name": "NVIDIA H200", "memory_gib": 139.8, "capability": "9.0", "driver": "570.1"},
        "precision": {"matmul_allow_tf32": False, "cudnn_allow_tf32": True, "float32_matmul_precision": "highest"},
    }  # fmt: skip
    meta = {
        "command": "python benchmarks/gpu_check.py", "dry_run": dry_run, "started": "now", "wall_s": 61.0,
        "status": "interrupted (signal 15)", "load_average": {"start": 0.5, "end": 0.6},
    }  # fmt: skip
    return {
        "meta": meta,
        "environment": env,
        "plan": [{"task": "steps:XL/2", "estimate_s": 50}],
        "parts": parts,
    }


def test_the_report_renders_partial_and_failed_parts() -> None:
    """What a GPU run may leave: a part stopped before its rows existed, a failed row, a skipped part."""
    parts = {
        "tests": {"status": "timeout", "error": "stopped at its time limit of 240 s", "counts": {"passed": 3},
                  "files": ["test_cuda.py"], "not_importable": {"test_fid.py": "needs hypothesis, not installed here"},
                  "tests": [{"nodeid": "tests/test_cuda.py::t", "outcome": "passed", "duration_s": 1.0}]},
        "steps:XL/2": {
            "status": "partial", "model": "DiT-XL/2", "parameters": 674_000_000, "batch": 64, "input": [4, 32, 32],
            "compile": None, "rounds": 3, "sdpa_ops": {},
            "rows": {
                "FM": {"method": "FM", "status": "measured", "median_ms": 60.0, "images_per_s": 1066.0,
                       "images_per_s_iqr": [1000.0, 1100.0], "ratio_to_fm": 1.0, "ratio_range": [1.0, 1.0],
                       "peak_mib": 20480.0, "step_mib": 17000.0, "memory_ratio_to_fm": 1.0, "warmup_s": 3.0},
                "MeanFlow (JVP with grad)": {"method": "MeanFlow (JVP with grad)", "status": "failed",
                                             "error": "OutOfMemoryError: CUDA out of memory.\nmore"},
                "SoFlow": {"method": "SoFlow", "status": "warming up"},
            },
        },
        "compile:B/4": {"status": "timeout", "error": "stopped", "limit_s": 10},
        "sampling": {"status": "skipped", "reason": "time budget: 3 s left of 480 s"},
    }  # fmt: skip
    text = gpu_check.markdown(_result(parts))
    assert "NVIDIA H200" in text
    assert (
        "| FM | measured | 60.0 | 1066 (1000–1100) | 1.00 (1.00–1.00) | 20.00 | 16.60 | 1.00 | 3.0 |" in text
    )
    assert "failed: OutOfMemoryError: CUDA out of memory." in text
    assert "`test_fid.py` not run: needs hypothesis" in text
    assert "Status timeout: stopped" in text
    assert "Status skipped: time budget" in text
    assert "interrupted (signal 15)" in text
    assert "674.0 M parameters" in text
    for name in parts:
        assert gpu_check.summary_line(name, parts[name])


def test_the_index_lists_gpu_results_and_not_dry_runs(tmp_path: Path) -> None:
    gpu_check.write_index(tmp_path)
    assert "No GPU result exists yet" in (tmp_path / "index.md").read_text()
    (tmp_path / "cpu-dry-run.json").write_text(json.dumps(_result({}, dry_run=True)))
    (tmp_path / "cpu-dry-run.md").write_text("dry\n")
    gpu_check.write_index(tmp_path)
    assert "No GPU result exists yet" in (tmp_path / "index.md").read_text()
    (tmp_path / "nvidia-h200.json").write_text(json.dumps(_result({})))
    (tmp_path / "nvidia-h200.md").write_text("figures\n")
    gpu_check.write_index(tmp_path)
    index = (tmp_path / "index.md").read_text()
    assert '--8<-- "benchmarks/results/gpu/nvidia-h200.md"' in index
    assert "### NVIDIA H200" in index
    assert "cpu-dry-run" not in index


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--parts", "steps,quality"], "--parts must be a comma-separated subset of"),
        (["--models", "L/2"], "--models must be a comma-separated subset of"),
        (["--batch", "XL/2=big"], "--batch expects MODEL=N"),
        (["--batch", "S/8=4"], "--batch expects MODEL=N"),
        (["--rounds", "0"], "--rounds must be >= 1"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        gpu_check.parse_args(args)
    assert message in capsys.readouterr().err
