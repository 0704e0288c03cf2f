r"""The solution-flow wrapper around a user's backbone (SoFlow, arXiv 2512.15657, §3).

`SolutionFlowWrapper(backbone)` turns any network $F_\theta(x, t, s, \text{cond})$ whose output has
its input's shape into the solution function
$f_\theta(x_t, t, s) = a(t, s)\,x_t + b(t, s)\,F_\theta(x_t, t, s)$, with the velocity read-out
$v_\theta(x, t) = \partial_s f_\theta(x, t, s)|_{s=t}$.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from ._checks import (
    as_times,
    check_batch,
    check_cond_batch,
    check_in_unit_interval,
)
from .parametrization import Parametrization, get_parametrization
from .paths import NoisePath, get_path

__all__ = ["SolutionFlowWrapper", "call_backbone", "unwrap_model"]


def call_backbone(backbone: nn.Module, x: Tensor, t: Tensor, s: Tensor, cond: Any = None) -> Tensor:
    """Call a backbone with the toolkit's convention and check its output shape.

    `backbone(x, t, s)` when `cond` is None, `backbone(x, t, s, **cond)` for a dict, and
    `backbone(x, t, s, cond)` for anything else.

    Raises:
        TypeError: if the backbone returns something other than a tensor.
        ValueError: if the output's shape differs from the input's.
    """
    if cond is None:
        out = backbone(x, t, s)
    elif isinstance(cond, dict):
        out = backbone(x, t, s, **cond)
    else:
        out = backbone(x, t, s, cond)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the backbone must return a tensor of the input's shape; got {type(out).__name__} "
            "(wrap backbones that return tuples or dataclasses in a small module that picks the tensor)"
        )
    if out.shape != x.shape:
        raise ValueError(
            f"the backbone's output must have its input's shape {tuple(x.shape)}; got {tuple(out.shape)}"
        )
    return out


class SolutionFlowWrapper(nn.Module):
    r"""Wrap a backbone $F_\theta$ into the solution function $f_\theta(x_t, t, s)$.

    $$f_\theta(x_t, t, s) = a(t, s)\,x_t + b(t, s)\,F_\theta(x_t, t, s),$$

    with $a(t,t) = 1$, $b(t,t) = 0$, so $f_\theta(x, t, t) = x$ holds exactly for every network.
    Time runs from data ($t=0$) to noise ($t=1$); $f_\theta(\text{noise}, 1, 0)$ is a one-step sample.

    The backbone is the module's only child. It is called as `backbone(x, t, s)`,
    `backbone(x, t, s, cond)` or `backbone(x, t, s, **cond)` (dict condition), with `t`, `s` of shape
    `(B,)` in float32 (float64 for float64 data), and must return a tensor of `x`'s shape.

    Args:
        backbone: the network $F_\theta$.
        path: the noising path, `"linear"` (default), `"trig"` or a :class:`~soflow_toolkit.NoisePath`.
        parametrization: `"euler"` (default), `"trig"` or a :class:`~soflow_toolkit.Parametrization`.
        check_inputs: validate that times lie in [0, 1] on every call (one host synchronisation per
            call on GPU; shapes are always checked).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lin = nn.Linear(4, 2)
        ...     def forward(self, x, t, s):
        ...         return self.lin(torch.cat([x, t[:, None], s[:, None]], dim=1))
        >>> model = SolutionFlowWrapper(Net())
        >>> x = torch.randn(8, 2)
        >>> model(x, 1.0, 0.0).shape
        torch.Size([8, 2])
        >>> torch.equal(model(x, 0.3, 0.3), x)
        True
    """

    path: NoisePath
    parametrization: Parametrization

    def __init__(
        self,
        backbone: nn.Module,
        *,
        path: str | NoisePath = "linear",
        parametrization: str | Parametrization = "euler",
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        self.backbone = backbone
        self.path = get_path(path)
        self.parametrization = get_parametrization(parametrization)
        self.check_inputs = check_inputs

    def _times(self, x_t: Tensor, t: Tensor | float, name: str) -> Tensor:
        times = as_times(t, x_t, name)
        if self.check_inputs:
            check_in_unit_interval(times, name)
        return times

    def forward(
        self,
        x_t: Tensor,
        t: Tensor | float,
        s: Tensor | float,
        cond: Any = None,
        *,
        output: Literal["solution", "backbone"] = "solution",
    ) -> Tensor:
        r"""Evaluate $f_\theta(x_t, t, s)$ (or the raw backbone output $F_\theta$).

        Args:
            x_t: states at time `t`, shape `(B, *D)`.
            t: start times in [0, 1], `(B,)` or a float.
            s: target times in [0, 1], `(B,)` or a float.
            cond: the condition, passed to the backbone (see the class docstring).
            output: `"solution"` returns $f_\theta$ in `x_t`'s dtype; `"backbone"` returns
                $F_\theta(x_t, t, s)$ itself (the losses use it so that every forward with a
                gradient goes through `forward`, as DDP and FSDP require).

        Returns:
            A tensor of shape `(B, *D)`.

        Raises:
            ValueError: for times of the wrong shape or outside [0, 1], condition batch sizes that
                disagree, or a backbone output whose shape differs from `x_t`'s.
        """
        batch = check_batch(x_t, "x_t")
        t = self._times(x_t, t, "t")
        s = self._times(x_t, s, "s")
        check_cond_batch(cond, batch)
        out = call_backbone(self.backbone, x_t, t, s, cond)
        if output == "backbone":
            return out
        if output != "solution":
            raise ValueError(f"output must be 'solution' or 'backbone'; got {output!r}")
        return self.parametrization.solution(x_t, out, t, s).to(x_t.dtype)

    def velocity(self, x_t: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        r"""The model's velocity $v_\theta(x_t, t) = \partial_s f_\theta(x_t, t, s)|_{s=t}$.

        Computed in closed form as $\partial_s a(t,t)\,x_t + \partial_s b(t,t)\,F_\theta(x_t, t, t)$
        (for the euler parametrization, just $F_\theta(x_t, t, t)$): no autograd, no JVP.

        Args:
            x_t: states, shape `(B, *D)`.
            t: times in [0, 1], `(B,)` or a float.
            cond: the condition.

        Returns:
            $v_\theta$, shape `(B, *D)`, in `x_t`'s dtype.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> class Const(nn.Module):
            ...     def forward(self, x, t, s):
            ...         return torch.ones_like(x)
            >>> SolutionFlowWrapper(Const()).velocity(torch.zeros(2, 3), 0.5)
            tensor([[1., 1., 1.],
                    [1., 1., 1.]])
        """
        times = self._times(x_t, t, "t")
        out = self(x_t, times, times, cond, output="backbone")
        return self.parametrization.velocity(x_t, out, times).to(x_t.dtype)

    def extra_repr(self) -> str:
        return f"path={self.path.name!r}, parametrization={self.parametrization.name!r}"


def unwrap_model(model: nn.Module) -> SolutionFlowWrapper:
    """Find the :class:`SolutionFlowWrapper` inside DDP, FSDP or `torch.compile` wrappers.

    Args:
        model: a `SolutionFlowWrapper`, possibly wrapped by `DistributedDataParallel`,
            `FullyShardedDataParallel` (FSDP1; FSDP2's `fully_shard` keeps the class) or
            `torch.compile` (any nesting).

    Returns:
        The wrapper, for reading its `path` and `parametrization`. Call the outer `model` for any
        forward that needs a gradient.

    Raises:
        TypeError: if no `SolutionFlowWrapper` is found.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Zero(nn.Module):
        ...     def forward(self, x, t, s):
        ...         return torch.zeros_like(x)
        >>> wrapper = SolutionFlowWrapper(Zero())
        >>> unwrap_model(wrapper) is wrapper
        True
    """
    current: Any = model
    for _ in range(16):
        if isinstance(current, SolutionFlowWrapper):
            return current
        inner = getattr(current, "_orig_mod", None) or getattr(current, "module", None)
        if not isinstance(inner, nn.Module):
            break
        current = inner
    raise TypeError(
        f"expected a SolutionFlowWrapper (optionally inside DDP, FSDP or torch.compile); got "
        f"{type(model).__name__}. Wrap your backbone: SolutionFlowWrapper(backbone)"
    )
