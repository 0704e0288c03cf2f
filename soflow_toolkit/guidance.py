r"""Classifier-free guidance during training (SoFlow, arXiv 2512.15657, docs: method, guidance).

The guided velocity field is learned, so a guided sample costs one network evaluation. For a sample
that keeps its condition, the training target is

$$v_g = v + \kappa(t)\,(\omega - 1)\,(v - v_\varnothing), \qquad
  v_g \leftarrow m\,v_g + (1 - m)\,\mathrm{sg}\big(v_\theta(x_t, t \mid c)\big),$$

and a sample whose condition was dropped keeps the plain target $v$.

**Guidance chosen at sampling time** (an extension, not in the paper): with a range of scales,
`GuidanceConfig(scale=(low, high))`, the objective draws $\omega_i \sim \mathcal U[\text{low},
\text{high}]$ per sample, builds each sample's target with its own $\omega_i$ and gives $\omega_i$ to
the network, which learns the guided field of every scale in the range,
$v_\theta(x_t, t \mid c, \omega) \approx v_g^{\omega}$. Sampling then takes the scale as an input,
`sample(model, noise, cond=labels, guidance_scale=2.0)`, still at one evaluation. The network receives
the scale as the keyword argument `guidance_scale`, a `(B,)` tensor (see
[`call_backbone`][soflow_toolkit.wrapper.call_backbone]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import _rng
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


def _check_scale(scale: Any) -> float | tuple[float, float]:
    """A fixed scale as given, or a range `(low, high)` as a tuple of floats with `1 <= low <= high`."""
    if not isinstance(scale, (tuple, list)):
        return check_number(scale, "GuidanceConfig.scale", low=1, note=" (1 = no guidance)")
    if len(scale) != 2:
        raise ValueError(
            f"GuidanceConfig.scale must be a number or a range (low, high) of two numbers; got {len(scale)} "
            f"values {tuple(scale)!r}"
        )
    low = float(check_number(scale[0], "GuidanceConfig.scale[0] (low)", low=1, note=" (1 = no guidance)"))
    high = float(check_number(scale[1], "GuidanceConfig.scale[1] (high)", low=1))
    if high < low:
        raise ValueError(
            f"GuidanceConfig.scale must be a range (low, high) with low <= high; got {tuple(scale)!r}"
        )
    return (low, high)


@dataclass(frozen=True)
class GuidanceConfig:
    r"""Settings of training-time classifier-free guidance.

    Attributes:
        scale: the guidance scale $\omega \ge 1$ (1 turns the guided target off), or a range
            `(low, high)` with $1 \le \text{low} \le \text{high}$: then every sample of a step gets its
            own scale $\omega_i \sim \mathcal U[\text{low}, \text{high}]$
            ([`draw_scales`][soflow_toolkit.GuidanceConfig.draw_scales]), its guided target uses
            $\omega_i$, and the network is given $\omega_i$ (keyword `guidance_scale`), so the scale
            becomes an input chosen at sampling time. A range, even a degenerate one `(w, w)`, always
            gives the network its scale; a number never does. A list (e.g. from JSON) is stored as a
            tuple.
        drop_rate: probability in [0, 1] that a sample's condition is replaced by the null condition.
        mix_ratio: $m \in [0, 1]$, weight of the guided target against the model's own (stop-gradient)
            conditional prediction; 1 uses the guided target alone.
        decay_time: $\tau \in [0, 1]$; guidance is applied fully for $t \le \tau$ and fades out towards
            $t = 1$ (see [`guidance_decay`][soflow_toolkit.guidance_decay]); $\tau \ge 1$ disables the fade.

    Raises:
        ValueError: for a scale below 1, a range that is not two numbers with low <= high, or a drop
            rate, mix ratio or decay time outside [0, 1].
        TypeError: for a scale that is neither a number nor a pair of numbers.

    Examples:
        >>> GuidanceConfig(scale=3.0, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8).enabled
        True
        >>> ranged = GuidanceConfig(scale=(1, 4), drop_rate=0.1)
        >>> ranged.scale, ranged.scale_range, ranged.enabled
        ((1.0, 4.0), (1.0, 4.0), True)
        >>> GuidanceConfig(scale=3.0).scale_range is None
        True
    """

    scale: float | tuple[float, float] = 1.0
    drop_rate: float = 0.0
    mix_ratio: float = 1.0
    decay_time: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _check_scale(self.scale))
        for name in ("drop_rate", "mix_ratio", "decay_time"):
            check_number(getattr(self, name), f"GuidanceConfig.{name}", low=0, high=1)

    @property
    def scale_range(self) -> tuple[float, float] | None:
        """`(low, high)` when the scale is drawn per sample (and given to the network); None for a fixed scale."""
        return self.scale if isinstance(self.scale, tuple) else None

    @property
    def max_scale(self) -> float:
        """The largest scale used: the fixed scale, or the range's `high`."""
        return self.scale[1] if isinstance(self.scale, tuple) else float(self.scale)

    @property
    def enabled(self) -> bool:
        """Whether the guided target is used ($\\omega > 1$ for the fixed scale or the range's `high`)."""
        return self.max_scale > 1

    @property
    def needs_conditional_velocity(self) -> bool:
        """Whether the mix needs the model's conditional velocity ($\\omega > 1$ and $m < 1$)."""
        return self.enabled and self.mix_ratio < 1

    def draw_scales(
        self,
        batch: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Per-sample scales of a range: $\omega_i = \text{low} + (\text{high} - \text{low})\,u_i$, $u_i \sim \mathcal U[0, 1)$.

        One uniform draw per sample from `generator` (on its device), so a degenerate range `(w, w)`
        gives exactly `w`.

        Args:
            batch: number of samples B.
            device: device of the result (default: the generator's device, else CPU).
            dtype: floating dtype of the result (default: torch's default dtype).
            generator: random generator.

        Returns:
            `(B,)` scales in `[low, high]`.

        Raises:
            ValueError: if the config has a fixed scale (nothing to draw).

        Examples:
            >>> import torch
            >>> g = GuidanceConfig(scale=(1.0, 4.0))
            >>> w = g.draw_scales(1000, generator=torch.Generator().manual_seed(0))
            >>> bool((w >= 1).all() and (w <= 4).all()), round(float(w.mean()), 1)
            (True, 2.5)
        """
        scale_range = self.scale_range
        if scale_range is None:
            raise ValueError(
                f"GuidanceConfig.draw_scales needs a range of scales (low, high); this config has the fixed "
                f"scale {self.scale!r}"
            )
        low, high = scale_range
        return low + (high - low) * _rng.Draw(generator, device).rand(batch, dtype=dtype)


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
    scale: Tensor | None = None,
) -> Tensor:
    r"""The guided training target of classifier-free guidance.

    $v_g = v + \kappa(t)(\omega - 1)(v - v_\varnothing)$, then
    $v_g \leftarrow m\,v_g + (1 - m)\,v_c$ when $m < 1$; samples with `drop_mask` True keep $v$.
    $\omega$ is `guidance.scale`, or per sample $\omega_i$ = `scale[i]` (required for a range of scales).

    Args:
        v: conditional target velocity of the path, shape `(B, *D)`.
        v_uncond: the model's unconditional velocity $v_\theta(x_t, t \mid \varnothing)$ (no gradient).
        t: times, shape `(B,)`.
        guidance: the settings; `guidance.scale` must be > 1.
        v_cond: the model's conditional velocity (no gradient), needed when `mix_ratio < 1`.
        drop_mask: bool `(B,)`, True where the condition was dropped.
        scale: per-sample scales $\omega_i$, `(B,)` (e.g. from
            [`draw_scales`][soflow_toolkit.GuidanceConfig.draw_scales]); needed when `guidance.scale` is a
            range, and then used instead of it.

    Returns:
        The target, shape `(B, *D)`, detached.

    Raises:
        ValueError: if `mix_ratio < 1` and `v_cond` is missing, or `guidance.scale` is a range and
            `scale` is missing or not of shape `(B,)`.

    Examples:
        >>> import torch
        >>> v, v_u = torch.ones(2, 3), torch.zeros(2, 3)
        >>> g = GuidanceConfig(scale=3.0)
        >>> guided_velocity(v, v_u, torch.tensor([0.2, 0.4]), g)[:, 0]
        tensor([3., 3.])
        >>> ranged = GuidanceConfig(scale=(1.0, 4.0))  # one scale per sample
        >>> guided_velocity(v, v_u, torch.tensor([0.2, 0.4]), ranged, scale=torch.tensor([1.5, 4.0]))[:, 0]
        tensor([1.5000, 4.0000])
    """
    kappa = guidance_decay(t, guidance.decay_time)
    if scale is None:
        if guidance.scale_range is not None:
            raise ValueError(
                f"guidance with a range of scales {guidance.scale_range} needs the per-sample scales: pass "
                "scale=, a (B,) tensor (e.g. guidance.draw_scales(B))"
            )
        strength = kappa * (guidance.max_scale - 1)
    else:
        if not isinstance(scale, Tensor) or scale.shape != t.shape:
            got = tuple(scale.shape) if isinstance(scale, Tensor) else type(scale).__name__
            raise ValueError(f"scale must be a tensor of shape {tuple(t.shape)}, one per sample; got {got}")
        strength = kappa * (scale.to(kappa) - 1)
    target = v + expand_like(strength, v) * (v - v_uncond)
    if guidance.mix_ratio < 1:
        if v_cond is None:
            raise ValueError("guidance with mix_ratio < 1 needs v_cond, the model's conditional velocity")
        target = guidance.mix_ratio * target + (1 - guidance.mix_ratio) * v_cond
    if drop_mask is not None:
        target = torch.where(expand_like(drop_mask, v), v, target)
    return target.detach()
