"""The `make demo` script, run for real on a tiny budget (examples/demo.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soflow_toolkit.toy import assign_modes, support_scores

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
KEYS = ("SoFlow, 1 NFE", "SoFlow, 2 NFE", "flow matching, 100 Euler steps", "noise floor (data vs data)")


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    command = [sys.executable, str(DEMO), "--out", str(tmp_path / "demo"), "--threads", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_demo_writes_a_plot_and_sane_metrics(tmp_path: Path, jobs: str) -> None:
    result = run_demo(
        tmp_path,
        *("--steps", "5", "--batch-size", "64", "--hidden", "16", "--eval-points", "500"),
        *("--dataset", "ring", "--jobs", jobs),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "demo"
    png = (out / "samples.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 5_000  # four scatter panels, not an empty canvas
    report = json.loads((out / "metrics.json").read_text())
    assert (report["dataset"], report["steps"], report["batch_size"], report["hidden"]) == ("ring", 5, 64, 16)
    assert report["eval_points"] == 500
    assert set(KEYS) <= set(report["metrics"])
    for values in report["metrics"].values():
        assert set(values) == {"on_support", "modes_covered", "energy_distance"}
        assert all(math.isfinite(v) for v in values.values())
        assert 0 <= values["on_support"] <= 1
    metrics = report["metrics"]
    assert report["soflow_1nfe_on_support"] == metrics["SoFlow, 1 NFE"]["on_support"]
    # after 5 steps the model is far from the data, the floor (fresh data) is not
    floor = metrics["noise floor (data vs data)"]
    assert abs(floor["energy_distance"]) < metrics["SoFlow, 1 NFE"]["energy_distance"] / 5
    assert floor["on_support"] > 0.98
    assert floor["on_support"] > metrics["SoFlow, 1 NFE"]["on_support"]
    assert all(report["train_seconds"][k] > 0 for k in ("soflow", "flow_matching", "wall"))
    assert "negative" in report["energy_distance_note"]
    # the printed table reports the same numbers, the on-support share and what a negative distance means
    assert f"{metrics['SoFlow, 1 NFE']['energy_distance']:.6f}" in result.stdout
    assert (
        f"{100 * metrics['SoFlow, 1 NFE']['on_support']:.1f}% of the samples on the support" in result.stdout
    )
    assert "noise floor" in result.stdout
    assert "negative" in result.stdout


def load_demo():
    spec = importlib.util.spec_from_file_location("soflow_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--dataset", "swiss_roll"], "invalid choice"),
        (["--batch-size", "1"], "--batch-size"),
        (["--jobs", "3"], "invalid choice"),
    ],
)
def test_demo_rejects_bad_options(args: list[str], message: str, capsys) -> None:
    demo = load_demo()
    with pytest.raises(SystemExit) as error:
        demo.parse_args(args)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_defaults_are_the_documented_ones() -> None:
    args = load_demo().parse_args([])
    assert args.dataset == "checkerboard"
    assert args.out == Path("outputs/demo")
    assert args.steps >= 1000


@pytest.mark.slow
def test_demo_learns_the_checkerboard_in_one_step(tmp_path: Path) -> None:
    """After a short real run, far more one-step samples lie on the black squares than untrained ones."""
    result = run_demo(
        tmp_path,
        "--steps",
        "2000",
        "--hidden",
        "128",
        "--batch-size",
        "256",
        "--eval-points",
        "4000",
        "--seed",
        "1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())["metrics"]
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    untrained = float(support_scores(assign_modes("checkerboard", noise), 8)[0])  # about 0.45
    assert untrained < 0.5
    assert metrics["SoFlow, 1 NFE"]["on_support"] > 0.7
    assert metrics["SoFlow, 2 NFE"]["on_support"] > 0.7
    assert metrics["flow matching, 100 Euler steps"]["on_support"] > 0.7
    assert metrics["SoFlow, 1 NFE"]["modes_covered"] == 1.0
