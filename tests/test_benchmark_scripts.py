"""The benchmark scripts' bookkeeping: ratios, targets and their verdicts on hand-made tables.

The measurements themselves belong to the benchmarks (`make bench-quick` runs them in CI); these
tests pin down how figures become verdicts, including the degenerate cases a tiny or noisy run
produces (a step that holds no measurable memory, a baseline at the noise floor).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import quality, step_cost  # noqa: E402  (the repository root is not a package path)


def _row(method: str, times: list[float], step_mib: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"method": method, "samples_ms": times}
    if step_mib is not None:
        row["step_mib"] = step_mib
    return row


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    # per-round ratios 2, 2, 3 -> median 2: a round slow for both rows is one vote, not an outlier
    assert step_cost.paired_ratio([2.0, 4.0, 600.0], [1.0, 2.0, 200.0]) == 2.0
    with pytest.raises(ValueError, match="shorter"):
        step_cost.paired_ratio([1.0, 2.0], [1.0])


def _memory_check(table: list[dict[str, Any]]) -> dict[str, Any]:
    checks = [c for c in step_cost.check_targets(table) if "memory" in c["target"]]
    assert len(checks) == 1
    return checks[0]


def test_memory_target_is_a_ratio_of_step_memory() -> None:
    table = [_row("FM", [1.0, 1.0, 1.0], 40.0), _row("SoFlow", [1.1, 1.0, 1.2], 42.0)]
    check = _memory_check(table)
    assert check["value"] == pytest.approx(42.0 / 40.0)
    assert check["met"] is True
    assert step_cost._format_check(check) == ("1.05", "yes")
    table[1]["step_mib"] = 50.0
    check = _memory_check(table)
    assert check["met"] is False
    assert step_cost._format_check(check) == ("1.25", "no")


@pytest.mark.parametrize("fm_mib", [0.0, 0.05, -0.01])
def test_memory_below_resolution_is_reported_not_divided(fm_mib: float) -> None:
    """A step that holds (almost) nothing measurable gives no ratio rather than a crash or noise."""
    table = [_row("FM", [1.0, 1.0, 1.0], fm_mib), _row("SoFlow", [1.1, 1.1, 1.1], 0.08)]
    check = _memory_check(table)
    assert check["value"] is None
    assert check["met"] is None
    value, verdict = step_cost._format_check(check)
    assert verdict == "not measurable"
    assert "MiB" in value
    # the time targets of the same table are still computed
    time_checks = [c for c in step_cost.check_targets(table) if c["target"] == "SoFlow / FM"]
    assert time_checks[0]["value"] == pytest.approx(1.1)


def test_summarize_omits_the_memory_ratio_below_resolution() -> None:
    samples = {"FM": [1.0, 1.0, 1.0], "SoFlow": [1.2, 1.2, 1.2]}
    memory = {"FM": {"step_mib": 0.0, "peak_mib": 200.0}, "SoFlow": {"step_mib": 0.1, "peak_mib": 201.0}}
    rows = {r["method"]: r for r in step_cost.summarize(samples, samples, memory)}
    assert "memory_ratio_to_fm" not in rows["SoFlow"]
    assert rows["SoFlow"]["ratio_to_fm"] == pytest.approx(1.2)
    memory["FM"]["step_mib"] = 10.0
    rows = {r["method"]: r for r in step_cost.summarize(samples, samples, memory)}
    assert rows["SoFlow"]["memory_ratio_to_fm"] == pytest.approx(0.01)


def test_quality_verdicts_against_flow_matching() -> None:
    assert quality.versus_fm(1.9e-3, 1.0e-3, 1e-5) == "1.90: met"
    assert quality.versus_fm(2.1e-3, 1.0e-3, 1e-5) == "2.10: missed"
    # FM within the floor's spread: a ratio would be noise, SoFlow is judged against the spread
    assert quality.versus_fm(1e-3, 1e-5, 1e-4).endswith("10 × floor std: missed")
    assert quality.versus_fm(3e-4, 1e-5, 1e-4).endswith("3 × floor std: met")


def test_quality_verdicts_against_meanflow() -> None:
    assert quality.versus_meanflow(1e-3, 2e-3, 1e-5) == "0.50: met"
    assert quality.versus_meanflow(3e-3, 2e-3, 1e-5) == "1.50: missed"
    # MeanFlow at the floor (the estimate can even be negative): met only if SoFlow is there too
    assert quality.versus_meanflow(1e-5, -1e-5, 1e-4).endswith(": met")
    assert quality.versus_meanflow(1e-3, -1e-5, 1e-4).endswith(": missed")
