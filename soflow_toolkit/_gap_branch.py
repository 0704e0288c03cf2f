"""The gap branch of `SingleTimeAdapter`: a zero-initialised copy of a time embedding, fed with t - s.

The adapter registers two hooks on the backbone's time-embedding modules: a forward pre-hook on the
first one embeds the pending gaps with the branch (`EmbedGapHook`), a forward hook on the last one
adds the result to its output (`AddGapHook`). `GapState` carries the gaps of the running forward
between the adapter and the hooks; outside the adapter's forward nothing is pending and the backbone
runs unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AddGapHook", "EmbedGapHook", "GapBranch", "GapState", "probe", "zero_last_linear"]


class GapState:
    """The scaled gaps of the running forward and their embedding, set only inside the adapter's forward."""

    def __init__(self) -> None:
        self.gap: Tensor | None = None
        self.embedding: Tensor | None = None
        self.calls = 0


class EmbedGapHook:
    """Forward pre-hook on the first time-embedding module: embeds the gaps in the format of its input.

    The gaps `(B,)` are reshaped like the module's time input (e.g. `time[:, None]` gives `(B, 1)`) and
    cast to its dtype before the copied branch embeds them. A callable object (not a closure), so that
    `copy.deepcopy` of the adapter gives the copy its own state; outside the adapter's forward (nothing
    pending) the backbone runs unchanged.
    """

    def __init__(self, state: GapState, branch: nn.Module, name: str) -> None:
        self.state = state
        self.branch = [branch]  # a list, so that the branch is not registered twice in the module tree
        self.name = name

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        gap = self.state.gap
        if gap is None:
            return
        time_input = args[0] if args else None
        if not isinstance(time_input, Tensor) or time_input.numel() != gap.numel():
            got = tuple(time_input.shape) if isinstance(time_input, Tensor) else type(time_input).__name__
            raise ValueError(
                f"the time-embedding module {self.name!r} must take the time as its first positional input "
                f"with one value per sample ({gap.numel()} values); got {got}. Name the module that "
                "receives the time, or pass gap_embedding="
            )
        gap = gap.reshape(time_input.shape)
        gap = gap.to(time_input.dtype) if time_input.is_floating_point() else gap.round().to(time_input.dtype)
        self.state.embedding = self.branch[0](gap)


class AddGapHook:
    """Forward hook on the last time-embedding module: adds the gap embedding to its output."""

    def __init__(self, state: GapState, name: str) -> None:
        self.state = state
        self.name = name

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self.state.gap is None:
            return None
        embedding, self.state.embedding = self.state.embedding, None
        self.state.calls += 1
        if embedding is None:
            raise RuntimeError(
                f"the time-embedding module {self.name!r} ran without the first named module before it; "
                "list the modules of time_embedding in the order the backbone calls them"
            )
        if not isinstance(output, Tensor):
            raise TypeError(
                f"the time-embedding module {self.name!r} must return a tensor; got {type(output).__name__}"
            )
        if output.shape != embedding.shape:
            raise ValueError(
                f"the gap embedding has shape {tuple(embedding.shape)} but the time-embedding module "
                f"{self.name!r} returned shape {tuple(output.shape)}; name the module whose output is the "
                "per-sample time embedding, or pass a matching gap_embedding"
            )
        return output + embedding.to(output.dtype)


class GapBranch(nn.Module):
    """Modules applied in order to the `(B,)` gaps, optionally times a zero-initialised scalar gate."""

    gate: nn.Parameter | None

    def __init__(self, stages: Sequence[nn.Module], use_gate: bool) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.gate = nn.Parameter(torch.zeros(())) if use_gate else None

    def forward(self, gap: Tensor) -> Tensor:
        out = gap
        for stage in self.stages:
            # Like diffusers' UNets: the sinusoidal projection returns float32 while the MLP may be fp16.
            weight = next(stage.parameters(), None)
            if weight is not None and weight.is_floating_point() and out.is_floating_point():
                out = out.to(weight.dtype)
            out = stage(out)
        if self.gate is not None:
            out = out * self.gate.to(out.dtype)
        return out


def zero_last_linear(module: nn.Module) -> bool:
    """Zero the weight and bias of the module's last leaf if it is an `nn.Linear`; report success."""
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    if not leaves or not isinstance(leaves[-1], nn.Linear):
        return False
    last = leaves[-1]
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
    return True


def probe(branch: GapBranch, time_scale: float) -> Tensor | None:
    """The branch's output on gaps `[0, scale/2, scale]` shaped `(3,)` or `(3, 1)`, whichever it accepts.

    None when neither format runs (the branch takes another input format) or the parameters are on the
    meta device: nothing could be checked.
    """
    params = list(branch.parameters())
    if any(p.is_meta for p in params):
        return None
    device = params[0].device if params else torch.device("cpu")
    gaps = torch.tensor([0.0, 0.5, 1.0], device=device) * time_scale
    out: Any = None
    for shaped in (gaps, gaps[:, None]):
        try:
            with torch.no_grad():
                out = branch(shaped)
            break
        except (RuntimeError, ValueError, TypeError, IndexError):
            continue
    else:
        return None
    if not isinstance(out, Tensor):
        raise TypeError(f"the gap embedding must return a tensor; got {type(out).__name__}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            "the gap embedding is not finite for gaps in [0, time_scale] (e.g. a log-time Fourier embedding "
            "at gap 0); pass gap_embedding=<a module that is finite at 0>"
        )
    return out
