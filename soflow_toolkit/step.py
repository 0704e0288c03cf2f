r"""One step of the objective: its random inputs, what its passes share, and its result.

- [`SoFlowDraw`][soflow_toolkit.SoFlowDraw]: the noise, times and drop mask of a step.
- [`SoFlowOutput`][soflow_toolkit.SoFlowOutput]: the loss, its flow matching and consistency parts,
  and what to log.
- `Step` (internal): the tensors the three passes of
  [`SoFlowLoss`][soflow_toolkit.SoFlowLoss] share, built by `prepare_step`; `flow_matching_part`,
  `consistency_start` and `consistency_part` turn pass outputs into the two losses.

Rows `[:num_fm]` of a step get the flow matching loss, rows `[num_fm:]` the consistency loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import ValueChecks, compute_dtype, expand_like
from ._deprecation import warn_deprecated
from .conditions import prepare_conditions
from .guidance import GuidanceConfig, guided_velocity
from .losses import LossOutput, consistency_terms, flow_matching_terms
from .parametrization import Parametrization
from .wrapper import SolutionFlowWrapper

__all__ = ["SoFlowDraw", "SoFlowOutput"]


@dataclass(frozen=True)
class SoFlowDraw:
    r"""The random inputs of one objective step; pass one explicitly to make a step deterministic.

    Attributes:
        noise: `(B, *D)` Gaussian noise.
        t_fm: `(n_fm,)` flow matching times.
        t: `(n_sc,)` consistency start times.
        l: `(n_sc,)` consistency intermediate times.
        s: `(n_sc,)` consistency end times, with `s <= l < t`.
        drop_mask: `(B,)` bool, True = condition dropped, or None.
        guidance_scale: `(B,)` guidance scales $\omega_i$ drawn from the config's range of scales
            (the network is given them and the guided targets use them), or None for a fixed scale.

    Examples:
        >>> import torch
        >>> from soflow_toolkit import SoFlowConfig, SoFlowLoss
        >>> draw = SoFlowLoss(SoFlowConfig()).draw(torch.zeros(8, 2), generator=torch.Generator().manual_seed(0))
        >>> draw.noise.shape, draw.t_fm.shape, draw.t.shape
        (torch.Size([8, 2]), torch.Size([6]), torch.Size([2]))
        >>> bool(((draw.s <= draw.l) & (draw.l < draw.t)).all())
        True
    """

    noise: Tensor
    t_fm: Tensor
    t: Tensor
    l: Tensor
    s: Tensor
    drop_mask: Tensor | None = None
    guidance_scale: Tensor | None = None


@dataclass(frozen=True)
class SoFlowOutput:
    """The result of one objective step.

    Attributes:
        loss: the scalar to back-propagate, `(n_fm/B) L_fm + (n_sc/B) L_sc`. Its value mixes a loss and
            a surrogate; log the `mse` values instead.
        fm: the flow matching part, or None when no sample got it.
        sc: the solution consistency part, or None when no sample got it.
        r: the curriculum ratio used for this step.
        step: the training step k used for this step.
        num_fm: number of flow matching samples n_fm.
        num_sc: number of consistency samples n_sc.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SoFlowConfig, SoFlowLoss, SolutionFlowWrapper
        >>> class Net(nn.Linear):  # F(x, t, s) for 2-D points
        ...     def forward(self, x, t, s):
        ...         return super().forward(torch.cat([x, t[:, None], s[:, None]], dim=1))
        >>> out = SoFlowLoss(SoFlowConfig())(SolutionFlowWrapper(Net(4, 2)), torch.randn(8, 2))
        >>> sorted(out.metrics()), out.num_fm, out.num_sc
        (['fm_mse', 'fm_weight', 'r', 'sc_mse', 'sc_weight', 'step'], 6, 2)
    """

    loss: Tensor
    fm: LossOutput | None
    sc: LossOutput | None
    r: float
    step: int
    num_fm: int
    num_sc: int

    def metrics(self) -> dict[str, float]:
        """Floats for logging (one host synchronisation): `fm_mse`, `fm_weight`, `sc_mse`, `sc_weight`, `r`, `step`."""
        names: list[str] = []
        values: list[Tensor] = []
        for prefix, part in (("fm", self.fm), ("sc", self.sc)):
            if part is not None:
                names += [f"{prefix}_mse", f"{prefix}_weight"]
                values += [part.mse.detach().float(), part.weight.detach().float()]
        out: dict[str, float] = dict(zip(names, torch.stack(values).tolist(), strict=True)) if values else {}
        out.update(r=self.r, step=float(self.step))
        return out

    @property
    def flow_matching(self) -> LossOutput | None:
        """Deprecated name of `fm`."""
        warn_deprecated("SoFlowOutput.flow_matching", "SoFlowOutput.fm")
        return self.fm

    @property
    def consistency(self) -> LossOutput | None:
        """Deprecated name of `sc`."""
        warn_deprecated("SoFlowOutput.consistency", "SoFlowOutput.sc")
        return self.sc

    @property
    def num_consistency(self) -> int:
        """Deprecated name of `num_sc`."""
        warn_deprecated("SoFlowOutput.num_consistency", "SoFlowOutput.num_sc")
        return self.num_sc


def check_draw(
    draw: SoFlowDraw,
    data: Tensor,
    num_fm: int,
    checks: ValueChecks,
    scale_range: tuple[float, float] | None = None,
) -> None:
    """Check an explicit draw's shapes now; its noise, time ranges and order (and scales) on `checks`.

    `scale_range` is the config's range of guidance scales: the draw must have scales within it, and
    none when the config has a fixed scale.
    """
    num_sc = data.shape[0] - num_fm
    if draw.noise.shape != data.shape:
        raise ValueError(
            f"draw.noise must have the data's shape {tuple(data.shape)}; got {tuple(draw.noise.shape)}"
        )
    for name, n in (("t_fm", num_fm), ("t", num_sc), ("l", num_sc), ("s", num_sc)):
        value = getattr(draw, name)
        if value.shape != (n,):
            raise ValueError(
                f"draw.{name} must have shape ({n},) for this batch split; got {tuple(value.shape)}"
            )
    mask = draw.drop_mask
    if mask is not None and (mask.dtype != torch.bool or mask.shape != data.shape[:1]):
        raise ValueError(
            f"draw.drop_mask must be a bool tensor of shape ({data.shape[0]},); got dtype {mask.dtype} "
            f"and shape {tuple(mask.shape)}"
        )
    checks.finite("draw.noise", draw.noise)
    for name in ("t_fm", "t", "l", "s"):
        checks.unit_interval(f"draw.{name}", getattr(draw, name))
    times = (draw.t, draw.l, draw.s)
    checks.ordered(("t", "l", "s"), times, (True, False), what="the consistency times of draw")
    scales = draw.guidance_scale
    if scale_range is None:
        if scales is not None:
            raise ValueError(
                "draw.guidance_scale is set but the config has a fixed guidance scale: pass a draw "
                "without it, or use GuidanceConfig(scale=(low, high))"
            )
        return
    if not isinstance(scales, Tensor) or not scales.is_floating_point() or scales.shape != data.shape[:1]:
        got = "None" if scales is None else f"{type(scales).__name__} {getattr(scales, 'shape', '')}"
        raise ValueError(
            f"the config draws a guidance scale per sample (range {scale_range}): draw.guidance_scale "
            f"must be a floating tensor of shape ({data.shape[0]},); got {got}"
        )
    low, high = (torch.full_like(scales, bound) for bound in scale_range)
    checks.ordered(("high", "guidance_scale", "low"), (high, scales, low), (False, False), what="draw")


@dataclass(frozen=True)
class Step:
    """What the three passes of one step share."""

    model: nn.Module
    param: Parametrization
    checks: ValueChecks
    x_t: Tensor  # (B, *D), compute dtype
    x_in: Tensor  # x_t in the data's dtype: the network's input
    v: Tensor  # (B, *D): the path's velocity
    t: Tensor  # (B,): flow matching times, then consistency start times
    s: Tensor  # (B,): flow matching times again (s = t), then consistency end times
    l: Tensor  # (n_sc,): consistency intermediate times
    cond: Any  # the condition after dropping
    uncond: Any  # the all-null condition (guidance only)
    drop_mask: Tensor | None
    guidance: GuidanceConfig | None  # set when the step is guided
    num_fm: int
    scale: Tensor | None = None  # (B,): the guidance scale of every row, given to the network (a range)

    def scales(self, rows: slice) -> Tensor | None:
        """The guidance scales of `rows`, or None when the network is not given any."""
        return None if self.scale is None else self.scale[rows]

    @property
    def sc(self) -> slice:
        """The consistency rows."""
        return slice(self.num_fm, None)

    @property
    def num_sc(self) -> int:
        """The number of consistency rows."""
        return self.t.shape[0] - self.num_fm

    @property
    def uses_null_condition(self) -> bool:
        """Whether the null condition reaches the network (dropped conditions or guidance)."""
        return self.guidance is not None or self.drop_mask is not None


@dataclass(frozen=True)
class GuidanceVelocities:
    """Pass 1's result: the model's velocities that enter the guided targets (no gradient)."""

    uncond: Tensor  # (B, *D): v(x_t, t | null)
    cond_sc: Tensor | None  # (n_sc, *D): v(x_t, t | c) of the consistency rows, when mix < 1


def prepare_step(
    model: nn.Module,
    wrapper: SolutionFlowWrapper,
    data: Tensor,
    draw: SoFlowDraw,
    cond: Any,
    null_cond: Any,
    guidance: GuidanceConfig,
    checks: ValueChecks,
) -> Step:
    """Noisy states, path velocities, the times of every row and the (dropped) conditions of a step."""
    guided = guidance if cond is not None and guidance.enabled else None
    mask = draw.drop_mask if cond is not None else None
    cond, uncond = prepare_conditions(
        cond, null_cond, data.shape[0], drop_mask=mask, guided=guided is not None
    )
    dtype = compute_dtype(data)
    t_fm, t_sc, l_sc, s_sc = (
        x.to(device=data.device, dtype=dtype) for x in (draw.t_fm, draw.t, draw.l, draw.s)
    )
    t, s = torch.cat([t_fm, t_sc]), torch.cat([t_fm, s_sc])
    scale = draw.guidance_scale
    scale = None if scale is None else scale.to(device=data.device, dtype=dtype)
    x_t = wrapper.path.interpolate(data, draw.noise, t)
    v = wrapper.path.velocity(data, draw.noise, t)
    return Step(
        model=model,
        param=wrapper.parametrization,
        checks=checks,
        x_t=x_t,
        x_in=x_t.to(data.dtype),
        v=v,
        t=t,
        s=s,
        l=l_sc,
        cond=cond,
        uncond=uncond,
        drop_mask=mask,
        guidance=guided,
        num_fm=t_fm.shape[0],
        scale=scale,
    )


def _target_velocity(
    step: Step, rows: slice, guide: GuidanceVelocities | None, v_cond: Tensor | None
) -> Tensor:
    """The path velocity of `rows`, guided when the step is."""
    if step.guidance is None or guide is None:
        return step.v[rows]
    mask = None if step.drop_mask is None else step.drop_mask[rows]
    v, t, uncond = step.v[rows], step.t[rows], guide.uncond[rows]
    return guided_velocity(
        v, uncond, t, step.guidance, v_cond=v_cond, drop_mask=mask, scale=step.scales(rows)
    )


def flow_matching_part(
    step: Step, online: Tensor, guide: GuidanceVelocities | None, *, p: float, eps: float
) -> LossOutput | None:
    """The flow matching loss of the first rows from the gradient pass's outputs (None without rows)."""
    if step.num_fm == 0:
        return None
    rows = slice(0, step.num_fm)
    t = step.t[rows]
    v_pred = step.param.velocity(step.x_t[rows], online[rows], t)
    target = _target_velocity(step, rows, guide, v_pred.detach())
    return flow_matching_terms(v_pred, target, step.param.db_ds(t), p=p, eps=eps)


def consistency_start(step: Step, guide: GuidanceVelocities | None) -> Tensor:
    """$x_l = x_t + (l - t)\\,v_{\\text{tgt}}$ of the consistency rows: one Euler step along the target."""
    target_v = _target_velocity(step, step.sc, guide, None if guide is None else guide.cond_sc)
    return step.x_t[step.sc] + expand_like(step.l - step.t[step.sc], target_v) * target_v


def consistency_part(
    step: Step, online: Tensor, x_l: Tensor, targets: Tensor, *, p: float, eps: float
) -> LossOutput:
    """The consistency loss of the last rows from the gradient pass's and the target pass's outputs."""
    sc = step.sc
    t, l, s = step.t[sc], step.l, step.s[sc]
    f_target = step.param.solution(x_l, targets, l, s)
    f_online = step.param.solution(step.x_t[sc], online[sc], t, s)
    return consistency_terms(online[sc], f_online, f_target, t, l, step.param.b(t, s), p=p, eps=eps)
