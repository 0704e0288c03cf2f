"""Shared test configuration: hypothesis profiles and small fixtures.

Profiles (choose with the environment variable `HYPOTHESIS_PROFILE`):

- `ci` (default): no deadline (the first call of a torch op can be slow), a moderate number of
  examples so that the whole core suite stays well under a minute on two CPU cores.
- `dev`: even fewer examples, for a quick edit-test loop.
- `thorough`: many examples, for an occasional deep run.
"""

from __future__ import annotations

import os

import pytest
import torch

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
