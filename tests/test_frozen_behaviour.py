"""The public behaviour is frozen: losses, gradients, draws and samples of fixed seeds, to 1e-12.

`tests/data/frozen_behaviour.pt` was written by `tests/frozen_behaviour.py` before the package's
internal redesign (see `tests/data/README.md`); this test recomputes every value with the current code.
A refactoring that changes any number, a draw order or a dropout mask fails here.
"""

from __future__ import annotations

import pytest
import torch
from frozen_behaviour import DATA, compute
from torch import Tensor

RTOL = 1e-12
EXPECTED: dict[str, Tensor] = torch.load(DATA, weights_only=True)


@pytest.fixture(scope="module")
def actual() -> dict[str, Tensor]:
    return compute()


def test_the_same_values_are_computed(actual: dict[str, Tensor]) -> None:
    assert sorted(actual) == sorted(EXPECTED)


@pytest.mark.parametrize("group", sorted({key.rsplit("/", 2)[0] for key in EXPECTED}))
def test_values_are_unchanged(group: str, actual: dict[str, Tensor]) -> None:
    keys = [key for key in EXPECTED if key.rsplit("/", 2)[0] == group]
    for key in keys:
        got, expected = actual[key], EXPECTED[key]
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        if not expected.is_floating_point():
            assert torch.equal(got, expected), key
            continue
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        error = float((got - expected).abs().max()) if expected.numel() else 0.0
        assert error <= RTOL * max(scale, 1e-300), f"{key}: error {error:.3g} against scale {scale:.3g}"


def test_the_comparison_is_sharp(actual: dict[str, Tensor]) -> None:
    """A perturbation of one part in 1e-10 of one gradient is detected (the tolerance is not vacuous)."""
    key = next(k for k in EXPECTED if "/grad/" in k)
    perturbed = EXPECTED[key] * (1 + 1e-10)
    assert float((perturbed - actual[key]).abs().max()) > RTOL * float(EXPECTED[key].abs().max())
