"""Input validation and the one broadcasting helper used everywhere.

Every public entry point validates its inputs here so that bad input raises a ``ValueError`` or
``TypeError`` naming what was expected and what came, instead of broadcasting silently.
Checks that need a device synchronisation (value ranges) are skipped while ``torch.compile`` traces.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = [
    "as_times",
    "check_batch",
    "check_consistency_times",
    "check_in_unit_interval",
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
        A `(B,)` tensor of dtype :func:`compute_dtype` (float32 or float64).

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


def check_in_unit_interval(t: Tensor, name: str = "t") -> None:
    """Raise ``ValueError`` if any time lies outside [0, 1] or is not finite.

    Skipped while ``torch.compile`` traces (the check needs the values on the host).
    """
    if _is_compiling():
        return
    bad = (t < 0) | (t > 1) | torch.isnan(t)
    if bool(bad.any()):
        raise ValueError(
            f"{name} must lie in [0, 1] (t = 0 is data, t = 1 is noise); got values in "
            f"[{float(t.min()):.6g}, {float(t.max()):.6g}]"
            + (" and NaN" if bool(torch.isnan(t).any()) else "")
        )


def check_consistency_times(t: Tensor, l: Tensor, s: Tensor) -> None:
    """Raise ``ValueError`` unless ``s <= l < t`` holds for every sample (``l == s`` is legal)."""
    if _is_compiling():
        return
    if not bool((s <= l).all()) or not bool((l < t).all()):
        bad = ~((s <= l) & (l < t))
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            "consistency times must satisfy s <= l < t for every sample; sample "
            f"{index} has t={float(t[index]):.6g}, l={float(l[index]):.6g}, s={float(s[index]):.6g}"
        )


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


def check_cond_batch(cond: Any, batch: int, name: str = "cond") -> None:
    """Raise ``ValueError`` if a tensor or list condition's batch size differs from the data's.

    Dict conditions are not inspected: they may carry tensors shared by the whole batch.
    """
    if isinstance(cond, Tensor) and (cond.ndim == 0 or cond.shape[0] != batch):
        got = "a 0-d tensor" if cond.ndim == 0 else f"{cond.shape[0]} samples"
        raise ValueError(f"batch sizes disagree: the data has {batch} samples but {name} has {got}")
    if isinstance(cond, (list, tuple)) and len(cond) != batch:
        raise ValueError(f"batch sizes disagree: the data has {batch} samples but {name} has {len(cond)}")
