"""Shared test configuration: hypothesis profiles and the fixtures every test module may use.

Fixtures: `generator` (a seeded CPU generator), `rel_err` (the relative error of the parity checks),
`make_model` (a `SolutionFlowWrapper` around the random backbone of `tests/oracles.py`),
`reference_model` (the wrapper around the tiny backbone of the official parity vectors) and
`host_syncs` (counts conversions of tensors to Python values: each is a host synchronisation on GPU).

Profiles (choose with the environment variable `HYPOTHESIS_PROFILE`):

- `ci` (default): no deadline (the first call of a torch op can be slow), a moderate number of
  examples so that the whole core suite stays well under a minute on two CPU cores.
- `dev`: even fewer examples, for a quick edit-test loop.
- `thorough`: many examples, for an occasional deep run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from oracles import RandomBackbone
from reference import ReferenceNet, load_vectors
from torch import Tensor

from soflow_toolkit import SolutionFlowWrapper

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a machine without the test extra (e.g. a bare GPU box): the files without it still run
    settings = None

if settings is not None:
    settings.register_profile(
        "ci",
        deadline=None,
        max_examples=30,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    )
    settings.register_profile("dev", deadline=None, max_examples=10)
    settings.register_profile(
        "thorough", deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The test models are tiny: one intra-op thread is faster than several (no fork/join overhead) and keeps
# the suite from oversubscribing the machine's cores when subprocesses run alongside it.
torch.set_num_threads(int(os.environ.get("SOFLOW_TEST_THREADS", "1")))


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator with a fixed seed: every random draw in a test goes through it."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True)
def _restore_global_rng():
    """Tests that seed the global generator (dropout tests) must not leak that state to others."""
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


def _rel_err(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max |expected| (the measure of the parity tests)."""
    scale = expected.detach().abs().max().clamp_min(1e-300)
    return float((actual.detach() - expected.detach()).abs().max() / scale)


@pytest.fixture(scope="session")
def rel_err() -> Callable[[Tensor, Tensor], float]:
    """`rel_err(actual, expected)`: max |actual - expected| / max |expected|."""
    return _rel_err


def _make_model(
    sample_shape: tuple[int, ...] = (3,),
    *,
    seed: int = 0,
    path: str = "linear",
    parametrization: str = "euler",
    dtype: torch.dtype = torch.float64,
    **backbone: Any,
) -> SolutionFlowWrapper:
    net = RandomBackbone(tuple(sample_shape), seed=seed, dtype=dtype, **backbone)
    return SolutionFlowWrapper(net, path=path, parametrization=parametrization)


@pytest.fixture(scope="session")
def make_model() -> Callable[..., SolutionFlowWrapper]:
    """`make_model(sample_shape, *, seed, path, parametrization, dtype, **backbone)`: a wrapped
    `RandomBackbone` (`backbone` takes `hidden=` and `num_classes=`)."""
    return _make_model


_VECTORS = load_vectors()


def _reference_model(path: str = "linear", parametrization: str = "euler") -> SolutionFlowWrapper:
    net = ReferenceNet(_VECTORS["net"], _VECTORS["num_classes"])
    return SolutionFlowWrapper(net, path=path, parametrization=parametrization)


@pytest.fixture(scope="session")
def reference_model() -> Callable[..., SolutionFlowWrapper]:
    """`reference_model(path, parametrization)`: the wrapped tiny backbone of the official vectors
    (float64, labels `0..num_classes`, the last one the null class); `.backbone` is the net."""
    return _reference_model


_CONVERSIONS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist")


@pytest.fixture
def host_syncs(monkeypatch: pytest.MonkeyPatch) -> Callable[[], contextlib.AbstractContextManager[list[str]]]:
    """`with host_syncs() as calls:` records every tensor -> Python conversion made inside the block.

    On a GPU each such conversion (`bool(t)`, `t.item()`, `t.tolist()`, ...) waits for the device;
    counting them on CPU tells how many synchronisations a step costs.
    """

    @contextlib.contextmanager
    def counting() -> Iterator[list[str]]:
        calls: list[str] = []
        with monkeypatch.context() as patch:
            for name in _CONVERSIONS:
                original = getattr(torch.Tensor, name)

                def counted(self: Tensor, *args: Any, _name: str = name, _original: Any = original) -> Any:
                    calls.append(_name)
                    return _original(self, *args)

                patch.setattr(torch.Tensor, name, counted)
            yield calls

    return counting
