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

from soflow_toolkit.toy import checkerboard, energy_distance

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
KEYS = ("SoFlow, 1 NFE", "SoFlow, 2 NFE", "flow matching, 100 Euler steps", "noise floor (data vs data)")


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    command = [sys.executable, str(DEMO), "--out", str(tmp_path / "demo"), "--threads", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def test_demo_writes_a_plot_and_sane_metrics(tmp_path: Path) -> None:
    result = run_demo(
        tmp_path, "--steps", "5", "--batch-size", "64", "--eval-points", "500", "--dataset", "ring"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "demo"
    png = (out / "samples.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 5_000  # four scatter panels, not an empty canvas
    report = json.loads((out / "metrics.json").read_text())
    assert report["dataset"] == "ring"
    assert report["steps"] == 5
    assert report["batch_size"] == 64
    assert report["eval_points"] == 500
    assert set(KEYS) <= set(report["metrics"])
    for values in report["metrics"].values():
        assert all(math.isfinite(v) for v in values.values())
    metrics = report["metrics"]
    # after 5 steps the model is far from the data, the floor (data vs data) is not
    floor = metrics["noise floor (data vs data)"]["energy_distance"]
    assert abs(floor) < metrics["SoFlow, 1 NFE"]["energy_distance"] / 5
    assert report["train_seconds"]["soflow"] > 0
    assert report["train_seconds"]["flow_matching"] > 0
    # the printed table reports the same numbers
    assert f"{metrics['SoFlow, 1 NFE']['energy_distance']:.5f}" in result.stdout
    assert "noise floor" in result.stdout


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
    """After a short real training run, one-step samples are far closer to the data than the noise is."""
    result = run_demo(tmp_path, "--steps", "3000", "--eval-points", "4000", "--seed", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())["metrics"]
    g = torch.Generator().manual_seed(0)
    untrained = float(energy_distance(torch.randn(4000, 2, generator=g), checkerboard(4000, generator=g)))
    # Measured at these settings: untrained 0.041, SoFlow 1 NFE 0.0082, 2 NFE 0.0014, flow matching 0.00085.
    assert metrics["SoFlow, 1 NFE"]["energy_distance"] < untrained / 3
    assert metrics["SoFlow, 2 NFE"]["energy_distance"] < untrained / 10
    assert metrics["flow matching, 100 Euler steps"]["energy_distance"] < untrained / 10
