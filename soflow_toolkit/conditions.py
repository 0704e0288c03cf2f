"""Conditions of any structure: the calling convention, batch checks, drop masks and null conditions.

A condition is whatever the backbone takes after its inputs: `None`, a tensor whose first dimension
is the batch (class labels `(B,)`, embeddings `(B, E)`, token states `(B, L, E)`), a dict of such
tensors (passed to the backbone as keyword arguments), or a list/tuple with one item per sample.

Public: [`drop_condition`][soflow_toolkit.drop_condition],
[`sample_drop_mask`][soflow_toolkit.sample_drop_mask],
[`select_condition`][soflow_toolkit.select_condition] and
[`concat_conditions`][soflow_toolkit.concat_conditions]. The wrapper, the adapter, the losses and the
objective share the rest: `call_with_condition` (the calling convention, with the per-sample
guidance scale as the keyword `guidance_scale`, and its error messages),
`check_condition_batch`, `check_drop_mask`, `prepare_conditions` (drop, then build the all-null
condition of guidance) and `explain_null_class`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from . import _rng
from ._checks import check_number, expand_like

__all__ = ["concat_conditions", "drop_condition", "sample_drop_mask", "select_condition"]


# --- calling a backbone -------------------------------------------------------------------------------


def _describe(cond: Any) -> str:
    if isinstance(cond, Tensor):
        return f"a tensor of shape {tuple(cond.shape)}"
    if isinstance(cond, dict):
        return f"a dict with keys {sorted(cond)}"
    if isinstance(cond, (list, tuple)):
        return f"a {type(cond).__name__} of {len(cond)} items"
    return f"a {type(cond).__name__}"


def _binds(signature: inspect.Signature, inputs: list[Any], cond: Any, keywords: dict[str, Any]) -> bool:
    args, kwargs = (inputs, {**cond, **keywords}) if isinstance(cond, dict) else (inputs, keywords)
    args = args if cond is None or isinstance(cond, dict) else [*args, cond]
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _mismatch(fn: Callable[..., Any], num_inputs: int, cond: Any, keywords: dict[str, Any]) -> str | None:
    """Why `fn` cannot take `cond` (and `keywords`) after `num_inputs` inputs, or None if it can."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    inputs = [None] * num_inputs
    if _binds(signature, inputs, cond, keywords):
        return None
    name = type(fn).__name__ if isinstance(fn, nn.Module) else getattr(fn, "__name__", repr(fn))
    if keywords and _binds(signature, inputs, cond, {}):
        return (
            f"the backbone {name} takes no guidance_scale keyword (forward{signature}) but is given the "
            "guidance scale of each sample (a range GuidanceConfig(scale=(low, high)) in training, "
            "guidance_scale= in sampling): give its forward a keyword argument guidance_scale, a (B,) tensor"
        )
    if cond is None:
        return None
    if not _binds(signature, inputs, None, {}):
        return (
            f"the backbone {name} cannot take the condition it was given ({_describe(cond)}): its "
            f"forward{signature} does not accept it (a dict condition is passed as keyword arguments, "
            "anything else as one positional argument after the inputs)"
        )
    return (
        f"the backbone {name} takes no condition (forward{signature}) but was given one "
        f"({_describe(cond)}): pass cond=None, or give its forward a condition argument"
    )


def call_with_condition(
    fn: Callable[..., Any], *inputs: Any, cond: Any = None, guidance_scale: Tensor | None = None
) -> Any:
    """`fn(*inputs)` for no condition, `fn(*inputs, **cond)` for a dict, `fn(*inputs, cond)` otherwise.

    A `guidance_scale` (the `(B,)` scales of the samples) is added as the keyword argument
    `guidance_scale=`, the same way for every kind of condition; a keyword passes unchanged through
    DDP, FSDP and `torch.compile`, and a tensor lets a compiled backbone take any scale without being
    compiled again. A ``TypeError`` raised because `fn`'s signature cannot take the condition or the
    keyword (checked only after the call failed) is replaced by one that says so; any other error
    passes through unchanged. A dict condition with a key `guidance_scale` raises ``ValueError``.
    """
    keywords = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
    if keywords and isinstance(cond, dict) and "guidance_scale" in cond:
        raise ValueError("a dict condition must not have the key 'guidance_scale' when a scale is given")
    try:
        if cond is None:
            return fn(*inputs, **keywords)
        if isinstance(cond, dict):
            return fn(*inputs, **cond, **keywords)
        return fn(*inputs, cond, **keywords)
    except TypeError as error:
        problem = None if cond is None and not keywords else _mismatch(fn, len(inputs), cond, keywords)
        if problem is None:
            raise
        raise TypeError(problem) from error


def check_condition_batch(cond: Any, batch: int, name: str = "cond") -> None:
    """Raise ``ValueError`` if a tensor or list condition's batch size differs from the data's.

    Dict conditions are not inspected: they may carry tensors shared by the whole batch.
    """
    if isinstance(cond, Tensor) and (cond.ndim == 0 or cond.shape[0] != batch):
        got = "a 0-d tensor" if cond.ndim == 0 else f"{cond.shape[0]} samples"
        raise ValueError(f"batch sizes disagree: the data has {batch} samples but {name} has {got}")
    if isinstance(cond, (list, tuple)) and len(cond) != batch:
        raise ValueError(f"batch sizes disagree: the data has {batch} samples but {name} has {len(cond)}")


def _null_class(null_cond: Any) -> int | None:
    if isinstance(null_cond, int) and not isinstance(null_cond, bool):
        return null_cond
    if isinstance(null_cond, dict):
        found = [_null_class(value) for value in null_cond.values()]
        return next((value for value in found if value is not None), None)
    return None


@contextlib.contextmanager
def explain_null_class(null_cond: Any) -> Iterator[None]:
    """Add the null-class row to an ``IndexError`` raised while the backbone saw the null class.

    Use it around forwards that received dropped or all-null conditions; `null_cond` None (or not a
    class index) leaves errors unchanged.
    """
    try:
        yield
    except IndexError as error:
        null = _null_class(null_cond)
        if null is None:
            raise
        raise IndexError(
            f"the backbone raised IndexError ({error}) on labels that include the null class {null}: a "
            f"class-embedding table needs num_classes + 1 rows, the last one (row {null}) being the null "
            "class of dropped conditions and of the unconditional velocity, e.g. "
            "nn.Embedding(num_classes + 1, dim)"
        ) from error


# --- drop masks and null conditions -------------------------------------------------------------------


def sample_drop_mask(
    batch: int,
    drop_rate: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Draw the condition-drop mask of classifier-free guidance: $m_i \sim \text{Bernoulli}(p)$.

    Args:
        batch: number of samples B.
        drop_rate: the probability $p \in [0, 1]$ that a sample's condition is dropped.
        device: device of the mask (default: the generator's device, else CPU).
        generator: random generator (the draw happens on its device).

    Returns:
        bool tensor `(B,)`, True = drop.

    Examples:
        >>> import torch
        >>> sample_drop_mask(4, 0.0)
        tensor([False, False, False, False])
    """
    check_number(drop_rate, "drop_rate", low=0, high=1)
    return _rng.Draw(generator, device).rand(batch) < drop_rate


def check_drop_mask(drop_mask: Any, batch: int | None) -> Tensor:
    """Check that `drop_mask` is a bool tensor of shape `(batch,)` (any length when `batch` is None)."""
    if not isinstance(drop_mask, Tensor):
        raise TypeError(f"drop_mask must be a bool tensor of shape (B,); got {type(drop_mask).__name__}")
    if drop_mask.dtype != torch.bool:
        raise TypeError(f"drop_mask must be a bool tensor (True = drop); got dtype {drop_mask.dtype}")
    if drop_mask.ndim != 1 or (batch is not None and drop_mask.shape[0] != batch):
        expected = "(B,)" if batch is None else f"({batch},)"
        raise ValueError(f"drop_mask must have shape {expected}; got {tuple(drop_mask.shape)}")
    return drop_mask


def _drop_tensor(cond: Tensor, drop_mask: Tensor, null_cond: Any, name: str) -> Tensor:
    if cond.ndim == 0 or cond.shape[0] != drop_mask.shape[0]:
        raise ValueError(
            f"batch sizes disagree: drop_mask has {drop_mask.shape[0]} samples, {name} has shape "
            f"{tuple(cond.shape)}"
        )
    if isinstance(null_cond, Tensor):
        null = null_cond.to(device=cond.device, dtype=cond.dtype)
        if null.shape not in (cond.shape, cond.shape[1:], (1, *cond.shape[1:])):
            raise ValueError(
                f"null_cond for {name} must have shape {tuple(cond.shape[1:])} (one sample) or "
                f"{tuple(cond.shape)}; got {tuple(null.shape)}"
            )
    elif isinstance(null_cond, (int, float)) and not isinstance(null_cond, bool):
        null = torch.tensor(null_cond, device=cond.device, dtype=cond.dtype)
    else:
        raise TypeError(
            f"null_cond for tensor {name} must be a number or a tensor; got {type(null_cond).__name__}"
        )
    return torch.where(expand_like(drop_mask.to(cond.device), cond), null, cond)


def drop_condition(cond: Any, drop_mask: Tensor, null_cond: Any) -> Any:
    r"""Replace the condition of the samples where `drop_mask` is True by the null condition.

    This is the label dropping of classifier-free guidance:
    $c_i \leftarrow c_\varnothing$ if $\text{mask}_i$ else $c_i$.

    Args:
        cond: a tensor `(B, *C)`, a dict of such tensors (nested dicts allowed), or a list/tuple
            of `B` per-sample items.
        drop_mask: bool tensor `(B,)`, True = replace by the null condition.
        null_cond: the null condition. For a tensor condition: a number (e.g. the extra class index
            `num_classes`) or a tensor of one sample's shape `C` (e.g. a null embedding, possibly a
            learnable parameter) or of shape `(B, *C)`. For a dict: a dict with the keys to replace
            (others are kept). For a list: the null item.

    Returns:
        A condition of the same structure with dropped samples replaced.

    Raises:
        TypeError: for a mask that is not bool, or a condition/null pair of unsupported types.
        ValueError: for batch sizes that disagree or a null tensor of the wrong shape.

    Examples:
        >>> import torch
        >>> labels = torch.tensor([3, 1, 2])
        >>> drop_condition(labels, torch.tensor([False, True, False]), null_cond=10)
        tensor([ 3, 10,  2])
    """
    return _drop(cond, drop_mask, null_cond, "cond")


def _drop(cond: Any, drop_mask: Tensor, null_cond: Any, name: str) -> Any:
    drop_mask = check_drop_mask(drop_mask, None)
    if cond is None:
        raise ValueError("cannot drop a condition that is None: pass cond together with drop_mask")
    if null_cond is None:
        raise ValueError(f"a drop_mask needs a null_cond to replace {name} with (e.g. num_classes)")
    if isinstance(cond, Tensor):
        return _drop_tensor(cond, drop_mask, null_cond, name)
    if isinstance(cond, dict):
        if not isinstance(null_cond, dict):
            raise TypeError(f"null_cond for dict {name} must be a dict; got {type(null_cond).__name__}")
        unknown = set(null_cond) - set(cond)
        if unknown:
            raise ValueError(f"null_cond has keys {sorted(unknown)} that {name} lacks")
        return {
            key: _drop(value, drop_mask, null_cond[key], f"{name}[{key!r}]") if key in null_cond else value
            for key, value in cond.items()
        }
    if isinstance(cond, (list, tuple)):
        if len(cond) != drop_mask.shape[0]:
            raise ValueError(
                f"batch sizes disagree: drop_mask has {drop_mask.shape[0]} samples, {name} has {len(cond)}"
            )
        keep = drop_mask.tolist()
        return type(cond)(null_cond if drop else item for item, drop in zip(cond, keep, strict=True))
    raise TypeError(
        f"{name} of type {type(cond).__name__} cannot be dropped per sample; use a tensor, a dict or a list"
    )


def prepare_conditions(
    cond: Any, null_cond: Any, batch: int, *, drop_mask: Tensor | None, guided: bool
) -> tuple[Any, Any]:
    """Check the conditions of a step; return the condition after dropping and the all-null one.

    The second value is None unless `guided` (it conditions the unconditional velocity of guidance).

    Raises:
        ValueError: for a batch size that disagrees, a drop mask or guidance without `cond` or
            `null_cond`.
    """
    check_condition_batch(cond, batch)
    if drop_mask is not None:
        if null_cond is None:
            raise ValueError("a drop_mask needs a null_cond (e.g. num_classes for labels)")
        if cond is None:
            raise ValueError("a drop_mask needs a condition to drop: pass cond")
        drop_mask = check_drop_mask(drop_mask, batch)
        where = cond.device if isinstance(cond, Tensor) else drop_mask.device
        cond = drop_condition(cond, drop_mask.to(where), null_cond)
    uncond = None
    if guided:
        if cond is None:
            raise ValueError("guidance with scale > 1 needs a condition: pass cond")
        if null_cond is None:
            raise ValueError("guidance with scale > 1 needs a null_cond for the unconditional velocity")
        uncond = drop_condition(cond, torch.ones(batch, dtype=torch.bool), null_cond)
    return cond, uncond


# --- selecting and concatenating ----------------------------------------------------------------------


def select_condition(cond: Any, index: Tensor | slice) -> Any:
    """Select samples of a condition along its batch dimension.

    Args:
        cond: `None`, a tensor `(B, *C)`, a dict of such (nested allowed), or a list/tuple of items.
        index: a slice or a 1-D index tensor.

    Returns:
        The selected condition, same structure.

    Examples:
        >>> import torch
        >>> select_condition({"y": torch.arange(4)}, slice(1, 3))
        {'y': tensor([1, 2])}
    """
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return cond[index]
    if isinstance(cond, dict):
        return {key: select_condition(value, index) for key, value in cond.items()}
    if isinstance(cond, (list, tuple)):
        if isinstance(index, slice):
            return cond[index]
        return type(cond)(cond[i] for i in index.tolist())
    raise TypeError(
        f"cannot select samples of a condition of type {type(cond).__name__}; use a tensor, a dict or a list"
    )


def concat_conditions(conds: Sequence[Any]) -> Any:
    """Concatenate conditions of the same structure along the batch dimension.

    Args:
        conds: conditions of one structure (all None, all tensors, all dicts with the same keys, or all
            lists/tuples).

    Returns:
        One condition whose batch is the concatenation of theirs.

    Examples:
        >>> import torch
        >>> concat_conditions([torch.tensor([1]), torch.tensor([2, 3])])
        tensor([1, 2, 3])
    """
    first = conds[0]
    if first is None:
        return None
    if isinstance(first, Tensor):
        return torch.cat(list(conds), dim=0)
    if isinstance(first, dict):
        return {key: concat_conditions([c[key] for c in conds]) for key in first}
    if isinstance(first, (list, tuple)):
        out: list[Any] = []
        for c in conds:
            out.extend(c)
        return type(first)(out)
    raise TypeError(f"cannot concatenate conditions of type {type(first).__name__}")
