"""Input validation: one vocabulary of checks, and the one broadcasting helper used everywhere.

- Python values (config fields, counts, hyper-parameters): `check_int`, `check_number`,
  `check_choice`, `check_generator`. A value of the wrong type raises ``TypeError``, a value out of
  range ``ValueError``; every message reads "NAME must be EXPECTED; got VALUE".
- Tensors: `check_batch`, `check_same_shape`, `as_times` (shapes and dtypes, never a host
  synchronisation).
- Values inside tensors (NaN and inf, time ranges, time order): `ValueChecks` collects per-sample
  flags on the device and synchronises with the host once, in `ValueChecks.verify`; only when a
  check fails does it work out which tensor and which samples. Skipped while `torch.compile` traces.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ValueChecks",
    "as_times",
    "check_batch",
    "check_choice",
    "check_generator",
    "check_int",
    "check_number",
    "check_same_shape",
    "compute_dtype",
    "expand_like",
]


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample values of shape `(B,)` to `(B, 1, ..., 1)` so they broadcast against `x`.

    Args:
        t: per-sample values, shape `(B,)`.
        x: a batch of shape `(B, *D)` of any rank >= 1.

    Returns:
        `t` viewed with `x.ndim - 1` trailing singleton dimensions.
    """
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The floating dtype used for times, coefficients and loss arithmetic: at least float32.

    Half-precision data (bf16/fp16) is promoted to float32 so that differences of nearby times and the
    difference quotient of the consistency loss keep their precision; float64 stays float64.
    """
    dtype = torch.float32
    for tensor in tensors:
        if tensor.is_floating_point():
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _is_compiling() -> bool:
    return bool(torch.compiler.is_compiling())


# --- Python values ------------------------------------------------------------------------------------


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return `value` as an int (anything `operator.index` accepts, not a bool), at least `minimum`."""
    expected = "an int" if minimum is None else f"an int >= {minimum}"
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {expected}; got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {expected}; got {type(value).__name__}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be {expected}; got {number}")
    return number


def _describe_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"be {'>' if low_open else '>='} {low:g}"
    return f"be {'<' if high_open else '<='} {high:g}"


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
) -> float:
    """Check that `value` is a finite real number (not a bool) within the given bounds; return it.

    Args:
        value: the value to check.
        name: its name in the message.
        low: the lower bound, or None.
        high: the upper bound, or None.
        low_open: whether `low` itself is excluded.
        high_open: whether `high` itself is excluded.
        note: text added after the expected range, e.g. `" (1 = no guidance)"`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        raise ValueError(
            f"{name} must {_describe_range(low, high, low_open, high_open)}{note}; got {value!r}"
        )
    return value  # type: ignore[return-value]  # a numbers.Real, as given (ints stay ints)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Check that `value` is one of the strings `choices`; return it."""
    quoted = [repr(c) for c in choices]
    expected = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {expected}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return value


def check_generator(generator: Any, name: str = "generator") -> None:
    """Raise ``TypeError`` unless `generator` is a `torch.Generator` or None."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None; got {type(generator).__name__} "
            "(e.g. torch.Generator().manual_seed(0))"
        )


# --- tensors: shapes and dtypes -----------------------------------------------------------------------


def check_batch(x: Tensor, name: str = "x") -> int:
    """Check that `x` is a floating tensor with a batch dimension and return the batch size."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, *D); got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have a batch dimension, shape (B, *D); got a 0-d tensor")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    return int(x.shape[0])


def as_times(t: Tensor | float, x: Tensor, name: str = "t") -> Tensor:
    """Turn a time argument into a `(B,)` tensor on `x`'s device in the compute dtype.

    Args:
        t: a Python number, a 0-d tensor, or a `(B,)` tensor.
        x: the batch `(B, *D)` the times belong to.
        name: the argument's name, used in error messages.

    Returns:
        A `(B,)` tensor of dtype `compute_dtype(x)` (float32 or float64).

    Raises:
        TypeError: if `t` is neither a number nor a floating tensor.
        ValueError: if `t` is a tensor whose shape is not `(B,)` or `()`.
    """
    batch = x.shape[0]
    dtype = compute_dtype(x)
    if isinstance(t, bool) or not isinstance(t, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float or a (B,) tensor; got {type(t).__name__}")
    if not isinstance(t, Tensor):
        return torch.full((batch,), float(t), dtype=dtype, device=x.device)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of times in [0, 1]; got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(
            f"{name} must have shape ({batch},) to match the batch of shape {tuple(x.shape)}; "
            f"got shape {tuple(t.shape)}"
        )
    return t.to(device=x.device, dtype=dtype)


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` if two batches differ in shape (batch size included)."""
    if a.shape != b.shape:
        if a.shape[:1] != b.shape[:1]:
            raise ValueError(
                f"batch sizes disagree: {name_a} has {a.shape[0]} samples, {name_b} has {b.shape[0]}"
            )
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )


# --- tensors: values, with one host synchronisation ---------------------------------------------------


def _samples(bad: Tensor) -> str:
    index = bad.nonzero().flatten().tolist()
    shown = ", ".join(str(i) for i in index[:8]) + (", ..." if len(index) > 8 else "")
    return f"{len(index)} of {bad.numel()} samples ([{shown}])"


class ValueChecks:
    """Checks of the values inside tensors, verified together with one host synchronisation.

    Each check records a per-sample flag tensor on the tensors' device (no synchronisation).
    `verify()` reduces all flags at once (the only synchronisation); only if one is False does it
    look up the first failing check and raise its error, naming the tensor and the samples.

    Args:
        enabled: False makes every method a no-op (no device work, no synchronisation). Also off while
            `torch.compile` traces.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and not _is_compiling()
        self._checks: list[tuple[Tensor, Callable[[Tensor], BaseException]]] = []

    def _add(self, ok: Tensor, error: Callable[[Tensor], BaseException]) -> None:
        self._checks.append((ok, error))

    def finite(self, name: str, x: Tensor, *, output: bool = False) -> None:
        """Every value of `x` (batch first) is finite. `output=True` raises ``FloatingPointError``."""
        if not self.enabled or x.ndim == 0:
            return
        finite = torch.isfinite(x.detach())
        ok = finite if finite.ndim == 1 else finite.flatten(1).all(dim=1)  # (B,): one flag per sample
        kind: type[Exception] = FloatingPointError if output else ValueError
        self._add(ok, lambda ok: kind(f"{name} has non-finite values (NaN or inf) in {_samples(~ok)}"))

    def unit_interval(self, name: str, t: Tensor) -> None:
        """Every time in `t` lies in [0, 1] (NaN fails)."""
        if not self.enabled:
            return
        t = t.detach()

        def error(ok: Tensor) -> ValueError:
            finite = t[torch.isfinite(t)]
            span = f"[{float(finite.min()):.6g}, {float(finite.max()):.6g}]" if finite.numel() else "[]"
            nan = " and NaN" if bool(torch.isnan(t).any()) else ""
            return ValueError(
                f"{name} must lie in [0, 1] (t = 0 is data, t = 1 is noise); got values in {span}{nan}"
            )

        self._add((t >= 0) & (t <= 1), error)

    def ordered(
        self,
        names: Sequence[str],
        times: Sequence[Tensor],
        strict: Sequence[bool],
        *,
        what: str,
        hint: str = "",
    ) -> None:
        """Per sample `times[0] > times[1] > ...`, with `>=` where `strict[i]` is False (pair i, i + 1).

        For example names `("t", "l", "s")` and strict `(True, False)` check `s <= l < t`.
        """
        if not self.enabled:
            return
        times = [x.detach() for x in times]
        ok = torch.ones_like(times[0], dtype=torch.bool)
        for upper, lower, is_strict in zip(times[:-1], times[1:], strict, strict=True):
            ok = ok & ((lower < upper) if is_strict else (lower <= upper))
        chain = [names[-1]]
        for name, is_strict in zip(reversed(names[:-1]), reversed(strict), strict=True):
            chain += ["<" if is_strict else "<=", name]

        def error(ok: Tensor) -> ValueError:
            index = int((~ok).nonzero()[0, 0])
            values = ", ".join(f"{name}={float(x[index]):.6g}" for name, x in zip(names, times, strict=True))
            return ValueError(
                f"{what} must satisfy {' '.join(chain)} for every sample; sample {index} has {values}{hint}"
            )

        self._add(ok, error)

    def verify(self) -> None:
        """Synchronise once; raise the first failing check's error (naming tensor and samples)."""
        if not self.enabled or not self._checks:
            return
        device = self._checks[0][0].device
        flags = torch.cat([ok.reshape(-1).to(device) for ok, _ in self._checks])
        checks, self._checks = self._checks, []
        if bool(flags.all()):
            return
        for ok, error in checks:
            if not bool(ok.all()):
                raise error(ok)
