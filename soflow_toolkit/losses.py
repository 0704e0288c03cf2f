r"""SoFlow's two losses as pure functions (SoFlow, arXiv 2512.15657; docs: method, the two losses; guidance).

[`flow_matching_loss`][soflow_toolkit.flow_matching_loss] and
[`solution_consistency_loss`][soflow_toolkit.solution_consistency_loss] take explicit noise and times,
so they are deterministic; [`SoFlowLoss`][soflow_toolkit.SoFlowLoss] draws them and evaluates the
network fewer times, with the same arithmetic: the `*_terms` functions, which compute the losses from
network outputs already at hand. With the wrapper's `check_inputs` on, the values of a call (data,
noise, times, backbone outputs) are verified with one host synchronisation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import ValueChecks, as_times, check_batch, check_number, check_same_shape, expand_like
from ._rng import RandomState
from .conditions import explain_null_class, prepare_conditions
from .guidance import GuidanceConfig, guided_velocity
from .wrapper import as_scales, evaluate_backbone, evaluate_velocity, unwrap_model

__all__ = [
    "LossOutput",
    "adaptive_weight",
    "consistency_terms",
    "flow_matching_loss",
    "flow_matching_terms",
    "solution_consistency_loss",
]


@dataclass(frozen=True)
class LossOutput:
    """The result of a loss: the scalar to back-propagate and what to log.

    Attributes:
        loss: scalar to call `.backward()` on. For the consistency loss this is a surrogate whose
            value means nothing (it can be negative); log `mse` instead.
        mse: scalar metric, mean over batch and elements of the squared residual.
        weight: scalar, mean adaptive weight over the batch.
        per_sample_mse: `(B,)`, mean squared residual of each sample.
        per_sample_weight: `(B,)`, adaptive weight of each sample.

    Examples:
        >>> import torch
        >>> out = flow_matching_terms(torch.ones(4, 2), torch.zeros(4, 2), torch.ones(4), p=1.0, eps=0.01)
        >>> out.per_sample_mse.shape, round(float(out.weight), 4)
        (torch.Size([4]), 0.9901)
    """

    loss: Tensor
    mse: Tensor
    weight: Tensor
    per_sample_mse: Tensor
    per_sample_weight: Tensor


def adaptive_weight(per_sample_mse: Tensor, p: float, eps: float) -> Tensor:
    r"""The adaptive loss weight $w_i = 1 / (\mathrm{sg}(\text{mse}_i) + \epsilon)^p$ (stop-gradient).

    Args:
        per_sample_mse: `(B,)` mean squared residuals.
        p: power, $p \ge 0$; $p = 0$ gives $w = 1$ (plain MSE).
        eps: $\epsilon > 0$.

    Returns:
        `(B,)` weights, detached.

    Examples:
        >>> import torch
        >>> adaptive_weight(torch.tensor([0.99, 3.99]), p=1.0, eps=0.01)
        tensor([1.0000, 0.2500])
    """
    return 1.0 / (per_sample_mse.detach() + eps).pow(p)


def _per_sample_mean(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


def _output(loss: Tensor, per_sample_mse: Tensor, weight: Tensor) -> LossOutput:
    mse = per_sample_mse.detach()
    return LossOutput(
        loss=loss, mse=mse.mean(), weight=weight.mean(), per_sample_mse=mse, per_sample_weight=weight
    )


def flow_matching_terms(
    v_pred: Tensor, v_target: Tensor, db_ds: Tensor, *, p: float, eps: float
) -> LossOutput:
    r"""The flow matching loss from a predicted and a target velocity.

    $\Delta = v_\theta - v_{\text{tgt}}$, $\text{mse}_i = \text{mean}_D\,\Delta_i^2$,
    $w_i = 1 / (|\partial_s b(t_i,t_i)|\,(\mathrm{sg}(\text{mse}_i) + \epsilon)^p)$,
    loss $= \text{mean}_i\, w_i\,\text{mse}_i$.

    Args:
        v_pred: predicted velocity with gradient, `(B, *D)`.
        v_target: target velocity (detached), `(B, *D)`.
        db_ds: $\partial_s b(t, t)$, `(B,)`.
        p: adaptive-weight power.
        eps: adaptive-weight offset.

    Returns:
        A [`LossOutput`][soflow_toolkit.LossOutput].

    Examples:
        >>> import torch
        >>> out = flow_matching_terms(torch.ones(1, 2), torch.tensor([[0.0, 2.0]]), torch.ones(1), p=0.0, eps=0.01)
        >>> float(out.mse), float(out.loss)
        (1.0, 1.0)
    """
    per_sample_mse = _per_sample_mean((v_pred - v_target).pow(2))
    weight = adaptive_weight(per_sample_mse, p, eps) / db_ds.abs()
    return _output((weight * per_sample_mse).mean(), per_sample_mse, weight)


def consistency_terms(
    backbone_output: Tensor,
    f_online: Tensor,
    f_target: Tensor,
    t: Tensor,
    l: Tensor,
    b: Tensor,
    *,
    p: float,
    eps: float,
) -> LossOutput:
    r"""The solution consistency loss from the online and target solutions.

    $q_i = (f_{t,i} - f_{l,i}) / (t_i - l_i)$, $\text{mse}_i = \text{mean}_D\, q_i^2$,
    $w_i = 1/(\mathrm{sg}(\text{mse}_i) + \epsilon)^p$, and the optimized surrogate
    loss $= \text{mean}_i\, \mathrm{sign}(b(t_i, s_i))\,\text{mean}_D\big(F_{\theta,i}\,\mathrm{sg}(q_i w_i)\big)$,
    whose gradient equals that of $\text{mean}_i\,\tfrac{t_i - l_i}{|b(t_i,s_i)|}\,\tfrac12\,w_i\,\text{mse}_i$
    without back-propagating through the division by $t - l$.

    Args:
        backbone_output: $F_\theta(x_t, t, s)$ with gradient, `(B, *D)`.
        f_online: $f_\theta(x_t, t, s)$ built from `backbone_output`, `(B, *D)`.
        f_target: $f_\theta(x_l, l, s)$, no gradient, `(B, *D)`.
        t: `(B,)` start times.
        l: `(B,)` intermediate times, $s \le l < t$.
        b: $b(t, s)$, `(B,)`.
        p: adaptive-weight power.
        eps: adaptive-weight offset.

    Returns:
        A [`LossOutput`][soflow_toolkit.LossOutput] whose `loss` is the surrogate.

    Examples:
        >>> import torch
        >>> f_online, f_target = torch.ones(1, 2), torch.full((1, 2), 0.5)  # q = (1 - 0.5) / (1 - 0.5)
        >>> t, l, b = torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([-1.0])
        >>> out = consistency_terms(torch.ones(1, 2), f_online, f_target, t, l, b, p=0.0, eps=0.01)
        >>> float(out.mse), float(out.loss)
        (1.0, -1.0)
    """
    quotient = (f_online - f_target) / expand_like(t - l, f_online)
    per_sample_mse = _per_sample_mean(quotient.pow(2))
    weight = adaptive_weight(per_sample_mse, p, eps)
    scaled = (quotient * expand_like(weight, quotient)).detach()
    surrogate = torch.sign(b) * _per_sample_mean(backbone_output * scaled)
    return _output(surrogate.mean(), per_sample_mse, weight)


def _setup(
    model: nn.Module,
    data: Tensor,
    noise: Tensor,
    guidance: GuidanceConfig | None,
    p: float,
    eps: float,
    guidance_scale: Tensor | float | None = None,
) -> tuple[Any, ValueChecks, bool, Tensor | None]:
    """Check the common inputs; return (the wrapper, the value checks with data and noise, guided, the
    per-sample guidance scales or None)."""
    check_number(p, "p", low=0)
    check_number(eps, "eps", low=0, low_open=True)
    check_batch(data, "data")
    check_batch(noise, "noise")
    check_same_shape(data, noise, "data", "noise")
    if guidance is not None and not isinstance(guidance, GuidanceConfig):
        raise TypeError(f"guidance must be a GuidanceConfig or None; got {type(guidance).__name__}")
    wrapper = unwrap_model(model)
    checks = ValueChecks(wrapper.check_inputs)
    checks.finite("data", data)
    checks.finite("noise", noise)
    if guidance is not None and guidance.scale_range is not None and guidance_scale is None:
        raise ValueError(
            f"guidance with a range of scales {guidance.scale_range} needs the scale of each sample: pass "
            "guidance_scale=, e.g. guidance.draw_scales(B)"
        )
    scale = None if guidance_scale is None else as_scales(guidance_scale, data)
    return wrapper, checks, guidance is not None and guidance.enabled, scale


def flow_matching_loss(
    model: nn.Module,
    data: Tensor,
    noise: Tensor,
    t: Tensor | float,
    *,
    cond: Any = None,
    p: float = 1.0,
    eps: float = 0.01,
    guidance: GuidanceConfig | None = None,
    drop_mask: Tensor | None = None,
    null_cond: Any = None,
    guidance_scale: Tensor | float | None = None,
) -> LossOutput:
    r"""The flow matching loss of SoFlow's velocity read-out.

    With $x_t = \alpha(t)\,\text{data} + \beta(t)\,\text{noise}$ and $v = \alpha'(t)\,\text{data} + \beta'(t)\,\text{noise}$:
    $\Delta = v_\theta(x_t, t \mid c) - v_{\text{tgt}}$, $\text{mse}_i = \text{mean}_D\,\Delta_i^2$,
    $w_i = 1/(|\partial_s b(t,t)|\,(\mathrm{sg}(\text{mse}_i)+\epsilon)^p)$, loss $= \text{mean}_i\,w_i\,\text{mse}_i$.
    $v_{\text{tgt}} = v$, or the guided target of [`guided_velocity`][soflow_toolkit.guided_velocity].

    Args:
        model: a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] (possibly inside DDP/FSDP/compile).
        data: clean samples `(B, *D)`.
        noise: Gaussian noise `(B, *D)`.
        t: times in [0, 1], `(B,)` or a float.
        cond: condition (tensor, dict or list), or None.
        p: adaptive-weight power ($p = 0$: plain MSE divided by $|\partial_s b|$).
        eps: adaptive-weight offset, > 0.
        guidance: training-time classifier-free guidance; its `drop_rate` is not used here (pass
            `drop_mask`).
        drop_mask: bool `(B,)`, True = the sample's condition is replaced by `null_cond`.
        null_cond: the null condition (e.g. `num_classes` for labels).
        guidance_scale: per-sample guidance scales $\omega_i$ `(B,)` (or a float), given to every
            network evaluation as the keyword `guidance_scale` and used by the guided target; required
            when `guidance.scale` is a range.

    Returns:
        A [`LossOutput`][soflow_toolkit.LossOutput].

    Raises:
        ValueError: for shapes or batch sizes that disagree, times outside [0, 1], bad `p`/`eps`,
            a `drop_mask` without `null_cond`, or guidance without `cond`/`null_cond`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> class Net(nn.Linear):  # F(x, t, s) for 2-D points
        ...     def forward(self, x, t, s):
        ...         return super().forward(torch.cat([x, t[:, None], s[:, None]], dim=1))
        >>> model = SolutionFlowWrapper(Net(4, 2))
        >>> data, noise = torch.randn(16, 2), torch.randn(16, 2)
        >>> out = flow_matching_loss(model, data, noise, torch.rand(16))
        >>> out.loss.backward()
    """
    wrapper, checks, guided, scale = _setup(model, data, noise, guidance, p, eps, guidance_scale)
    path, param = wrapper.path, wrapper.parametrization
    t = as_times(t, data, "t")
    checks.unit_interval("t", t)
    cond, uncond = prepare_conditions(cond, null_cond, data.shape[0], drop_mask=drop_mask, guided=guided)

    x_t = path.interpolate(data, noise, t)
    v = path.velocity(data, noise, t)
    x_in = x_t.to(data.dtype)
    velocity = functools.partial(
        evaluate_velocity, model, param, x_t, x_in, t, checks=checks, guidance_scale=scale
    )
    with explain_null_class(null_cond if guided or drop_mask is not None else None):
        v_pred = velocity(cond, what="the backbone's output")
        target = v
        if uncond is not None and guidance is not None:
            with torch.no_grad():
                v_uncond = velocity(uncond, what="the backbone's unconditional output")
            target = guided_velocity(
                v, v_uncond, t, guidance, v_cond=v_pred.detach(), drop_mask=drop_mask, scale=scale
            )
    checks.verify()
    return flow_matching_terms(v_pred, target, param.db_ds(t), p=p, eps=eps)


def solution_consistency_loss(
    model: nn.Module,
    data: Tensor,
    noise: Tensor,
    t: Tensor | float,
    l: Tensor | float,
    s: Tensor | float,
    *,
    cond: Any = None,
    p: float = 1.0,
    eps: float = 0.01,
    guidance: GuidanceConfig | None = None,
    drop_mask: Tensor | None = None,
    null_cond: Any = None,
    guidance_scale: Tensor | float | None = None,
) -> LossOutput:
    r"""SoFlow's solution consistency loss: no JVP, two ordinary forwards and one backward.

    For $s \le l < t$: $x_l = x_t + (l - t)\,v_{\text{tgt}}$ (one Euler step along the target velocity),
    online $f_t = f_\theta(x_t, t, s)$ with gradient, target $f_l = \mathrm{sg}(f_\theta(x_l, l, s))$ from
    the same network with the same random state, $q = (f_t - f_l)/(t - l)$,
    $w_i = 1/(\mathrm{sg}(\text{mse}_i) + \epsilon)^p$, and the optimized surrogate
    $\text{mean}_i\,\mathrm{sign}(b(t_i,s_i))\,\text{mean}_D(F_{\theta,i}\,\mathrm{sg}(q_i w_i))$
    (see [`consistency_terms`][soflow_toolkit.losses.consistency_terms]). Log `mse`, not `loss`.

    Args:
        model: a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] (possibly inside DDP/FSDP/compile).
        data: clean samples `(B, *D)`.
        noise: Gaussian noise `(B, *D)`.
        t: start times `(B,)` or a float.
        l: intermediate times, $s \le l < t$.
        s: target times.
        cond: condition (tensor, dict or list), or None.
        p: adaptive-weight power.
        eps: adaptive-weight offset, > 0.
        guidance: training-time classifier-free guidance (`drop_rate` unused here; pass `drop_mask`).
        drop_mask: bool `(B,)`, True = the sample's condition is replaced by `null_cond`.
        null_cond: the null condition.
        guidance_scale: per-sample guidance scales, as for
            [`flow_matching_loss`][soflow_toolkit.flow_matching_loss].

    Returns:
        A [`LossOutput`][soflow_toolkit.LossOutput] whose `loss` is the surrogate.

    Raises:
        ValueError: for shapes that disagree, times outside [0, 1], times violating $s \le l < t$,
            bad `p`/`eps`, a `drop_mask` without `null_cond`, or guidance without `cond`/`null_cond`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> class Net(nn.Linear):  # F(x, t, s) for 2-D points
        ...     def forward(self, x, t, s):
        ...         return super().forward(torch.cat([x, t[:, None], s[:, None]], dim=1))
        >>> model = SolutionFlowWrapper(Net(4, 2))
        >>> data, noise = torch.randn(16, 2), torch.randn(16, 2)
        >>> out = solution_consistency_loss(model, data, noise, 0.9, 0.85, 0.1)
        >>> out.loss.backward()
    """
    wrapper, checks, guided, scale = _setup(model, data, noise, guidance, p, eps, guidance_scale)
    path, param = wrapper.path, wrapper.parametrization
    t, l, s = (as_times(value, data, name) for value, name in ((t, "t"), (l, "l"), (s, "s")))
    for name, value in (("t", t), ("l", l), ("s", s)):
        checks.unit_interval(name, value)
    checks.ordered(("t", "l", "s"), (t, l, s), (True, False), what="consistency times")
    cond, uncond = prepare_conditions(cond, null_cond, data.shape[0], drop_mask=drop_mask, guided=guided)

    x_t = path.interpolate(data, noise, t)
    v = path.velocity(data, noise, t)
    x_in = x_t.to(data.dtype)
    velocity = functools.partial(
        evaluate_velocity, model, param, x_t, x_in, t, checks=checks, guidance_scale=scale
    )
    with explain_null_class(null_cond if guided or drop_mask is not None else None):
        target_v = v
        if uncond is not None and guidance is not None:
            with torch.no_grad():
                v_uncond = velocity(uncond, what="the backbone's unconditional output")
                v_cond = None
                if guidance.needs_conditional_velocity:
                    v_cond = velocity(cond, what="the backbone's conditional output")
            target_v = guided_velocity(
                v, v_uncond, t, guidance, v_cond=v_cond, drop_mask=drop_mask, scale=scale
            )
        x_l = x_t + expand_like(l - t, x_t) * target_v

        state = RandomState.capture(data.device)
        backbone = functools.partial(evaluate_backbone, model, checks=checks, guidance_scale=scale)
        online = backbone(x_in, t, s, cond, what="the backbone's output")
        after_online = RandomState.capture(data.device)
        state.restore()
        with torch.no_grad():
            what = "the backbone's output at the target (x_l, l, s)"
            target = backbone(x_l.to(data.dtype), l, s, cond, what=what)
        after_online.restore()
    checks.verify()
    f_target = param.solution(x_l, target, l, s)
    f_online = param.solution(x_t, online, t, s)
    return consistency_terms(online, f_online, f_target, t, l, param.b(t, s), p=p, eps=eps)
