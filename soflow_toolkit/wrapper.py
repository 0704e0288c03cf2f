r"""The solution-flow wrapper around a user's backbone (SoFlow, arXiv 2512.15657, §3).

`SolutionFlowWrapper(backbone)` turns any network $F_\theta(x, t, s, \text{cond})$ whose output has
its input's shape into the solution function
$f_\theta(x_t, t, s) = a(t, s)\,x_t + b(t, s)\,F_\theta(x_t, t, s)$, with the velocity read-out
$v_\theta(x, t) = \partial_s f_\theta(x, t, s)|_{s=t}$.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from ._checks import ValueChecks, as_times, check_batch, check_choice
from .conditions import call_with_condition, check_condition_batch
from .parametrization import Parametrization, get_parametrization
from .paths import NoisePath, get_path

__all__ = ["SolutionFlowWrapper", "call_backbone", "unwrap_model"]
# Shared with the losses, the objective and the samplers: `evaluate_backbone`, `evaluate_velocity`.


def as_scales(guidance_scale: Tensor | float, x: Tensor) -> Tensor:
    """A guidance scale argument (a float, a 0-d or a `(B,)` floating tensor) as `(B,)` in the compute dtype."""
    if isinstance(guidance_scale, Tensor) and not guidance_scale.is_floating_point():
        raise TypeError(
            f"guidance_scale must be a float or a floating-point (B,) tensor; got dtype {guidance_scale.dtype}"
        )
    return as_times(guidance_scale, x, "guidance_scale")


def call_backbone(
    backbone: nn.Module,
    x: Tensor,
    t: Tensor,
    s: Tensor,
    cond: Any = None,
    *,
    guidance_scale: Tensor | None = None,
) -> Tensor:
    r"""Call a backbone with the toolkit's convention and check its output shape.

    `backbone(x, t, s)` when `cond` is None, `backbone(x, t, s, **cond)` for a dict, and
    `backbone(x, t, s, cond)` for anything else; with `guidance_scale`, also the keyword
    `guidance_scale=` (a model trained with a range of guidance scales takes its scale this way).

    Args:
        backbone: the network $F_\theta$.
        x: states `(B, *D)`.
        t: start times `(B,)`.
        s: target times `(B,)`.
        cond: the condition, or None.
        guidance_scale: per-sample guidance scales $\omega$ `(B,)`, or None (not passed).

    Returns:
        $F_\theta(x, t, s, \text{cond})$, shape `(B, *D)`.

    Raises:
        TypeError: if the backbone returns something other than a tensor, or cannot take the
            condition it is given.
        ValueError: if the output's shape differs from the input's.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> class Shift(nn.Module):
        ...     def forward(self, x, t, s, y):
        ...         return x + y[:, None]
        >>> x, t, s = torch.zeros(2, 1), torch.ones(2), torch.zeros(2)
        >>> call_backbone(Shift(), x, t, s, torch.tensor([1.0, 2.0]))
        tensor([[1.],
                [2.]])
        >>> class Guided(nn.Module):  # a backbone that takes the guidance scale as a keyword
        ...     def forward(self, x, t, s, *, guidance_scale):
        ...         return x + guidance_scale[:, None]
        >>> call_backbone(Guided(), x, t, s, None, guidance_scale=torch.tensor([1.0, 3.0]))
        tensor([[1.],
                [3.]])
    """
    out = call_with_condition(backbone, x, t, s, cond=cond, guidance_scale=guidance_scale)
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
    `(B,)` in float32 (float64 for float64 data), and must return a tensor of `x`'s shape. A model
    trained with a range of guidance scales also gets the keyword `guidance_scale`, a `(B,)` tensor
    (see [`GuidanceConfig`][soflow_toolkit.GuidanceConfig]).

    Args:
        backbone: the network $F_\theta$.
        path: the noising path, `"linear"` (default), `"trig"` or a
            [`NoisePath`][soflow_toolkit.NoisePath].
        parametrization: `"euler"` (default), `"trig"` or a
            [`Parametrization`][soflow_toolkit.Parametrization].
        check_inputs: check the values on every call: times in [0, 1], $s \le t$, finite states and
            backbone outputs (one host synchronisation per call on GPU; shapes are always checked).
            The losses, the objective and the samplers follow this setting for their own checks
            (at most one synchronisation per training step); False turns every value check off.
        allow_s_above_t: accept $s > t$ (a map from $t$ towards the noise, which training never
            fits); by default such a call raises ``ValueError``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> class Net(nn.Linear):  # F(x, t, s) for 2-D points
        ...     def forward(self, x, t, s):
        ...         return super().forward(torch.cat([x, t[:, None], s[:, None]], dim=1))
        >>> model = SolutionFlowWrapper(Net(4, 2))
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
        allow_s_above_t: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        self.backbone = backbone
        self.path = get_path(path)
        self.parametrization = get_parametrization(parametrization)
        self.check_inputs = bool(check_inputs)
        self.allow_s_above_t = bool(allow_s_above_t)

    def _check_times(self, checks: ValueChecks, t: Tensor, s: Tensor) -> None:
        """Record the checks of `(t, s)` on `checks`: both in [0, 1], and `s <= t` unless allowed."""
        checks.unit_interval("t", t)
        checks.unit_interval("s", s)
        if not self.allow_s_above_t:
            hint = (
                " (f(x_t, t, s) maps towards the data, s <= t; pass allow_s_above_t=True to the "
                "SolutionFlowWrapper to evaluate s > t)"
            )
            checks.ordered(("t", "s"), (t, s), (False,), what="times", hint=hint)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor | float,
        s: Tensor | float,
        cond: Any = None,
        *,
        output: Literal["solution", "backbone"] = "solution",
        check_inputs: bool | None = None,
        guidance_scale: Tensor | float | None = None,
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
            check_inputs: this call's value checks; None (default) follows the wrapper's
                `check_inputs`. The losses, the objective and the samplers pass False and check the
                values of a whole step at once. A keyword argument, so it passes through DDP, FSDP
                and `torch.compile`.
            guidance_scale: the guidance scale $\omega$ of a model trained with a range of scales,
                `(B,)` or a float (broadcast); passed to the backbone as the keyword `guidance_scale`,
                a `(B,)` tensor. None (default) passes nothing.

        Returns:
            A tensor of shape `(B, *D)`.

        Raises:
            ValueError: for times of the wrong shape, outside [0, 1] or with $s > t$, a non-finite
                `x_t`, condition batch sizes that disagree, or a backbone output whose shape differs
                from `x_t`'s.
            FloatingPointError: for a backbone output with NaN or inf.
        """
        batch = check_batch(x_t, "x_t")
        t = as_times(t, x_t, "t")
        s = as_times(s, x_t, "s")
        check_condition_batch(cond, batch)
        check_choice(output, "output", ("solution", "backbone"))
        checks = ValueChecks(self.check_inputs if check_inputs is None else check_inputs)
        self._check_times(checks, t, s)
        checks.finite("x_t", x_t)
        scale = None if guidance_scale is None else as_scales(guidance_scale, x_t)
        if scale is not None:
            checks.finite("guidance_scale", scale)
        out = call_backbone(self.backbone, x_t, t, s, cond, guidance_scale=scale)
        checks.finite("the backbone's output", out, output=True)
        checks.verify()
        if output == "backbone":
            return out
        return self.parametrization.solution(x_t, out, t, s).to(x_t.dtype)

    def velocity(
        self,
        x_t: Tensor,
        t: Tensor | float,
        cond: Any = None,
        *,
        check_inputs: bool | None = None,
        guidance_scale: Tensor | float | None = None,
    ) -> Tensor:
        r"""The model's velocity $v_\theta(x_t, t) = \partial_s f_\theta(x_t, t, s)|_{s=t}$.

        Computed in closed form as $\partial_s a(t,t)\,x_t + \partial_s b(t,t)\,F_\theta(x_t, t, t)$
        (for the euler parametrization, just $F_\theta(x_t, t, t)$): no autograd, no JVP.

        Args:
            x_t: states, shape `(B, *D)`.
            t: times in [0, 1], `(B,)` or a float.
            cond: the condition.
            check_inputs: as for `forward`.
            guidance_scale: as for `forward`.

        Returns:
            $v_\theta$, shape `(B, *D)`, in `x_t`'s dtype.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> class Const(nn.Module):
            ...     def forward(self, x, t, s):
            ...         return torch.ones_like(x)
            >>> SolutionFlowWrapper(Const()).velocity(torch.zeros(2, 3), 0.5)
            tensor([[1., 1., 1.],
                    [1., 1., 1.]])
        """
        times = as_times(t, x_t, "t")
        out = self(
            x_t,
            times,
            times,
            cond,
            output="backbone",
            check_inputs=check_inputs,
            guidance_scale=guidance_scale,
        )
        return self.parametrization.velocity(x_t, out, times).to(x_t.dtype)

    def extra_repr(self) -> str:
        return f"path={self.path.name!r}, parametrization={self.parametrization.name!r}"


def unwrap_model(model: nn.Module) -> SolutionFlowWrapper:
    """Find the `SolutionFlowWrapper` inside DDP, FSDP or `torch.compile` wrappers.

    Args:
        model: a `SolutionFlowWrapper`, possibly wrapped by `DistributedDataParallel`,
            `FullyShardedDataParallel` (FSDP1; FSDP2's `fully_shard` keeps the class) or
            `torch.compile` (any nesting).

    Returns:
        The wrapper, for reading its `path` and `parametrization`. Call the outer `model` for any
        forward that needs a gradient.

    Raises:
        TypeError: if no `SolutionFlowWrapper` is found.

    Examples:
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


def evaluate_backbone(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    s: Tensor,
    cond: Any,
    *,
    checks: ValueChecks,
    what: str,
    guidance_scale: Tensor | None = None,
) -> Tensor:
    """`model(x, t, s, cond, output="backbone")` without per-call checks; its output goes on `checks`.

    The losses, the objective and the samplers evaluate the network through this, so that the
    values of a whole step are verified with one host synchronisation (`checks.verify()`). A
    `guidance_scale` `(B,)` is passed on as the keyword of the same name (nothing is passed for None).
    """
    extra = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
    out: Tensor = model(x, t, s, cond, output="backbone", check_inputs=False, **extra)
    checks.finite(what, out, output=True)
    return out


def evaluate_velocity(
    model: nn.Module,
    param: Parametrization,
    x_t: Tensor,
    x_in: Tensor,
    t: Tensor,
    cond: Any,
    *,
    checks: ValueChecks,
    what: str,
    guidance_scale: Tensor | None = None,
) -> Tensor:
    """The velocity read-out $v_\\theta(x_t, t \\mid c)$ of one `evaluate_backbone` at $s = t$.

    `x_in` is `x_t` in the network's input dtype; the read-out is computed with `x_t`.
    """
    out = evaluate_backbone(model, x_in, t, t, cond, checks=checks, what=what, guidance_scale=guidance_scale)
    return param.velocity(x_t, out, t)
