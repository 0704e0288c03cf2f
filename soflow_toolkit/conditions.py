"""Conditions of any structure: per-sample replacement, selection and concatenation.

A condition is whatever the backbone takes after `(x, t, s)`: `None`, a tensor whose first dimension
is the batch (class labels `(B,)`, embeddings `(B, E)`, token states `(B, L, E)`), a dict of such
tensors (passed to the backbone as keyword arguments), or a list/tuple with one item per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._checks import expand_like

__all__ = ["concat_conditions", "drop_condition", "select_condition"]


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

    Example:
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


def select_condition(cond: Any, index: Tensor | slice) -> Any:
    """Select samples of a condition along its batch dimension.

    Args:
        cond: `None`, a tensor `(B, *C)`, a dict of such (nested allowed), or a list/tuple of items.
        index: a slice or a 1-D index tensor.

    Returns:
        The selected condition, same structure.

    Example:
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

    Example:
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
