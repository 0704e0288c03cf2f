r"""Classifier-free guidance during training (SoFlow, arXiv 2512.15657, docs: method, guidance).

The guided velocity field is learned, so sampling stays at 1 NFE with no guidance at sampling time.
For a sample that keeps its condition, the training target is

$$v_g = v + \kappa(t)\,(\omega - 1)\,(v - v_\varnothing), \qquad
  v_g \leftarrow m\,v_g + (1 - m)\,\mathrm{sg}\big(v_\theta(x_t, t \mid c)\big),$$

and a sample whose condition was dropped keeps the plain target $v$.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_number, expand_like
from ._deprecation import moved_names

__all__ = ["GUIDANCE_DECAY_RATE", "GuidanceConfig", "guidance_decay", "guided_velocity"]

# Condition dropping lives in `conditions`; these two names were re-exported here before 0.1.0.
__getattr__ = moved_names(
    "soflow_toolkit.guidance",
    {"drop_condition": "soflow_toolkit.conditions", "sample_drop_mask": "soflow_toolkit.conditions"},
)

GUIDANCE_DECAY_RATE = 0.025
"""The constant $k$ of the decay $\\kappa(t)$ (official value)."""


@dataclass(frozen=True)
class GuidanceConfig:
    r"""Settings of training-time classifier-free guidance.

    Attributes:
        scale: guidance scale $\omega \ge 1$; 1 turns the guided target off.
        drop_rate: probability in [0, 1] that a sample's condition is replaced by the null condition.
        mix_ratio: $m \in [0, 1]$, weight of the guided target against the model's own (stop-gradient)
            conditional prediction; 1 uses the guided target alone.
        decay_time: $\tau \in [0, 1]$; guidance is applied fully for $t \le \tau$ and fades out towards
            $t = 1$ (see [`guidance_decay`][soflow_toolkit.guidance_decay]); $\tau \ge 1$ disables the fade.

    Raises:
        ValueError: for a scale below 1 or a drop rate, mix ratio or decay time outside [0, 1].

    Examples:
        >>> GuidanceConfig(scale=3.0, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8).enabled
        True
    """

    scale: float = 1.0
    drop_rate: float = 0.0
    mix_ratio: float = 1.0
    decay_time: float = 1.0

    def __post_init__(self) -> None:
        check_number(self.scale, "GuidanceConfig.scale", low=1, note=" (1 = no guidance)")
        for name in ("drop_rate", "mix_ratio", "decay_time"):
            check_number(getattr(self, name), f"GuidanceConfig.{name}", low=0, high=1)

    @property
    def enabled(self) -> bool:
        """Whether the guided target is used ($\\omega > 1$)."""
        return self.scale > 1

    @property
    def needs_conditional_velocity(self) -> bool:
        """Whether the mix needs the model's conditional velocity ($\\omega > 1$ and $m < 1$)."""
        return self.enabled and self.mix_ratio < 1


def guidance_decay(t: Tensor, decay_time: float, rate: float = GUIDANCE_DECAY_RATE) -> Tensor:
    r"""The decay $\kappa(t)$ that fades guidance out near the noise end.

    $\kappa(t) = 1$ if $\tau \ge 1$ or $t \le \tau$; otherwise
    $\kappa(t) = 1 - \exp(-k\,u/(1-u))$ with $u = \mathrm{clamp}((1-t)/(1-\tau), 0, 1 - 10^{-6})$,
    $k = 0.025$. So $\kappa \in [0, 1]$, $\kappa(1) = 0$, and it is non-increasing after $\tau$.

    Args:
        t: times, shape `(B,)`.
        decay_time: $\tau$.
        rate: $k$.

    Returns:
        $\kappa(t)$, shape `(B,)`, in `t`'s dtype.

    Examples:
        >>> import torch
        >>> guidance_decay(torch.tensor([0.5, 0.9, 1.0]), decay_time=0.8)
        tensor([1.0000, 0.0247, 0.0000])
    """
    if decay_time >= 1:
        return torch.ones_like(t)
    u = ((1 - t) / (1 - decay_time)).clamp(0.0, 1 - 1e-6)
    decayed = 1 - torch.exp(-rate * u / (1 - u))
    return torch.where(t <= decay_time, torch.ones_like(t), decayed)


def guided_velocity(
    v: Tensor,
    v_uncond: Tensor,
    t: Tensor,
    guidance: GuidanceConfig,
    *,
    v_cond: Tensor | None = None,
    drop_mask: Tensor | None = None,
) -> Tensor:
    r"""The guided training target of classifier-free guidance.

    $v_g = v + \kappa(t)(\omega - 1)(v - v_\varnothing)$, then
    $v_g \leftarrow m\,v_g + (1 - m)\,v_c$ when $m < 1$; samples with `drop_mask` True keep $v$.

    Args:
        v: conditional target velocity of the path, shape `(B, *D)`.
        v_uncond: the model's unconditional velocity $v_\theta(x_t, t \mid \varnothing)$ (no gradient).
        t: times, shape `(B,)`.
        guidance: the settings; `guidance.scale` must be > 1.
        v_cond: the model's conditional velocity (no gradient), needed when `mix_ratio < 1`.
        drop_mask: bool `(B,)`, True where the condition was dropped.

    Returns:
        The target, shape `(B, *D)`, detached.

    Raises:
        ValueError: if `mix_ratio < 1` and `v_cond` is missing.

    Examples:
        >>> import torch
        >>> v, v_u = torch.ones(2, 3), torch.zeros(2, 3)
        >>> g = GuidanceConfig(scale=3.0)
        >>> guided_velocity(v, v_u, torch.tensor([0.2, 0.4]), g)[:, 0]
        tensor([3., 3.])
    """
    kappa = guidance_decay(t, guidance.decay_time)
    target = v + expand_like(kappa * (guidance.scale - 1), v) * (v - v_uncond)
    if guidance.mix_ratio < 1:
        if v_cond is None:
            raise ValueError("guidance with mix_ratio < 1 needs v_cond, the model's conditional velocity")
        target = guidance.mix_ratio * target + (1 - guidance.mix_ratio) * v_cond
    if drop_mask is not None:
        target = torch.where(expand_like(drop_mask, v), v, target)
    return target.detach()
