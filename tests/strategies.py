"""Hypothesis strategies shared by the property tests.

Shapes are `(B, *D)` with rank 1..5, batch 1..4 and small trailing dimensions, so that a property is
checked on points, sequences, images and videos alike. Consistency times are per-sample triples with
`s <= l < t` (including `l == s`, the `r = 1` case of the curriculum).
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

PATH_NAMES = ("linear", "trig")
PARAMETRIZATION_NAMES = ("euler", "trig")
FLOAT_DTYPES = (torch.float32, torch.float64)

batch_sizes = st.integers(min_value=1, max_value=4)
paths = st.sampled_from(PATH_NAMES)
parametrizations = st.sampled_from(PARAMETRIZATION_NAMES)
float_dtypes = st.sampled_from(FLOAT_DTYPES)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
unit_floats = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# Interior times: the autograd checks of a time derivative need t to have room on both sides.
interior_floats = st.floats(min_value=0.01, max_value=0.99, allow_nan=False)


@st.composite
def shapes(draw: st.DrawFn, min_rank: int = 1, max_rank: int = 5) -> tuple[int, ...]:
    """A shape `(B, *D)` of rank `min_rank..max_rank`, batch 1..4, trailing dimensions 1..3."""
    rank = draw(st.integers(min_value=min_rank, max_value=max_rank))
    batch = draw(batch_sizes)
    trailing = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=rank - 1, max_size=rank - 1))
    return (batch, *trailing)


@st.composite
def times(draw: st.DrawFn, batch: int, elements: st.SearchStrategy[float] = unit_floats) -> list[float]:
    """`batch` per-sample times (a list of floats; make a tensor in the test's dtype)."""
    return draw(st.lists(elements, min_size=batch, max_size=batch))


@st.composite
def consistency_triple(draw: st.DrawFn) -> tuple[float, float, float]:
    """One ordered triple `(t, l, s)` with `0 <= s <= l < t <= 1`.

    `l == s` is drawn explicitly (it is what `r = 1` gives). The gap `t - l` is at least 1e-6 so that
    the ordering survives a conversion to float32.
    """
    s = draw(st.floats(min_value=0.0, max_value=0.95, allow_nan=False))
    t = min(1.0, s + draw(st.floats(min_value=1e-3, max_value=1.0, allow_nan=False)))
    fraction = draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.999, allow_nan=False)))
    l = s + (t - s) * fraction
    assert s <= l < t  # a guard on the strategy itself, not on the library
    return t, l, s


@st.composite
def consistency_times_batch(draw: st.DrawFn, batch: int) -> tuple[list[float], list[float], list[float]]:
    """`batch` triples, returned as three lists `(t, l, s)`."""
    triples = draw(st.lists(consistency_triple(), min_size=batch, max_size=batch))
    t, l, s = zip(*triples, strict=True)
    return list(t), list(l), list(s)


@st.composite
def raw_time_pairs(draw: st.DrawFn, batch: int) -> tuple[list[float], list[float]]:
    """Unordered raw draws `(t', s')` in [0, 1], as the logit-normal samplers produce them."""
    edge = st.sampled_from([0.0, 1e-6, 1e-4, 0.5, 1 - 1e-6, 1.0])
    element = st.one_of(edge, unit_floats)
    t_raw = draw(st.lists(element, min_size=batch, max_size=batch))
    s_raw = draw(st.lists(element, min_size=batch, max_size=batch))
    return t_raw, s_raw


ratios = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 1e-3]), unit_floats)
schedule_kinds = st.sampled_from(("const", "linear", "cosine", "exponent"))
# r_init, r_end lie in (0, 1]; include the CIFAR-10 (1.0 -> 3.125e-4) and ImageNet (0.1 -> 0.002) recipes.
ratio_values = st.one_of(
    st.sampled_from([1.0, 0.1, 0.002, 3.125e-4]),
    st.floats(min_value=1e-6, max_value=1.0, allow_nan=False, exclude_min=False),
)
