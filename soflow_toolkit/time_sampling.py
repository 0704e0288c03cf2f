r"""Time samplers, their priors and the curriculum schedule $r(k, K)$ (docs: method, time sampling).

- Flow matching times: $t \sim \text{LN}(\mu_0, \sigma_0)$, the logit-normal $\mathrm{sigmoid}(\mu + \sigma z)$.
- Consistency triples: $s' \sim \text{LN}(\mu_1, \sigma_1)$, $t' \sim \text{LN}(\mu_2, \sigma_2)$;
  $t = \max(t', 10^{-4})$, $s = \min(s', t - 10^{-4})$, $l = \min(t + (s - t)\,r,\ t - 10^{-4})$.
- [`TimePriors`][soflow_toolkit.TimePriors]: the six parameters $(\mu_i, \sigma_i)$ and the margin.
- [`RatioSchedule`][soflow_toolkit.RatioSchedule]: $r(k, K)$ shrinks the gap $t - l$ over training
  (const, linear, cosine, exponent).

Every sampler takes `generator=`; the draws happen on the generator's device and are moved to
`device`, so a CPU generator can feed CUDA data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from . import _rng
from ._checks import check_choice, check_int, check_number
from ._deprecation import warn_deprecated

__all__ = [
    "MIN_TIME_GAP",
    "RatioSchedule",
    "ScheduleKind",
    "TimePriors",
    "clamp_consistency_times",
    "consistency_times",
    "logit_normal_times",
    "uniform_times",
]

MIN_TIME_GAP = 1e-4
"""The clamping margin of the consistency triple (official value)."""

ScheduleKind = Literal["const", "linear", "cosine", "exponent"]
_KINDS = ("const", "linear", "cosine", "exponent")


def uniform_times(
    batch: int,
    *,
    low: float = 0.0,
    high: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Times drawn uniformly from $[\text{low}, \text{high})$.

    Args:
        batch: number of samples.
        low: lower end, $0 \le \text{low} \le \text{high}$.
        high: upper end, $\le 1$.
        device: device of the result (default: the generator's device, else CPU).
        dtype: floating dtype.
        generator: random generator (the draw happens on its device).

    Returns:
        `(batch,)` tensor.

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> uniform_times(3, generator=g).shape
        torch.Size([3])
    """
    check_int(batch, "batch", minimum=0)
    if not 0 <= low <= high <= 1:
        raise ValueError(f"need 0 <= low <= high <= 1; got low={low}, high={high}")
    u = _rng.Draw(generator, device).rand(batch, dtype=dtype)
    return low + (high - low) * u


def logit_normal_times(
    batch: int,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Logit-normal times $\mathrm{sigmoid}(\mu + \sigma z)$, $z \sim \mathcal N(0, 1)$.

    Args:
        batch: number of samples.
        mean: $\mu$ (negative values favour the data end, $t \to 0$).
        std: $\sigma > 0$.
        device: device of the result (default: the generator's device, else CPU).
        dtype: floating dtype.
        generator: random generator (the draw happens on its device).

    Returns:
        `(batch,)` tensor in (0, 1).

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> t = logit_normal_times(10_000, mean=-0.2, std=1.0, generator=g)
        >>> bool(((t > 0) & (t < 1)).all())
        True
    """
    check_int(batch, "batch", minimum=0)
    check_number(mean, "the logit-normal mean")
    check_number(std, "the logit-normal std", low=0, low_open=True)
    z = _rng.Draw(generator, device).randn(batch, dtype=dtype)
    return torch.sigmoid(mean + std * z)


def clamp_consistency_times(
    t_raw: Tensor, s_raw: Tensor, r: float | Tensor, *, min_gap: float = MIN_TIME_GAP
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Turn raw draws $(t', s')$ and a ratio $r$ into an ordered triple $(t, l, s)$.

    $t = \max(t', g)$, $s = \min(s', t - g)$, $l = \min(t + (s - t)\,r,\ t - g)$ with $g = 10^{-4}$
    (and $l \ge s$ enforced against rounding when $r = 1$).
    Nothing is sorted: when $s' > t'$, $s$ lands just below $t$. The result satisfies $s \le l < t$.

    Args:
        t_raw: `(B,)` raw start times.
        s_raw: `(B,)` raw end times.
        r: ratio in [0, 1], a float or `(B,)`.
        min_gap: $g$.

    Returns:
        `(t, l, s)`, each `(B,)`.

    Examples:
        >>> import torch
        >>> from soflow_toolkit.time_sampling import clamp_consistency_times
        >>> t, l, s = clamp_consistency_times(torch.tensor([0.9]), torch.tensor([0.1]), 0.1)
        >>> round(float(l), 4)
        0.82
    """
    t = t_raw.clamp_min(min_gap)
    s = torch.minimum(s_raw, t - min_gap)
    # max(., s) only absorbs the rounding of t + (s - t) * 1 when r = 1, so that s <= l holds exactly.
    l = torch.maximum(torch.minimum(t + (s - t) * r, t - min_gap), s)
    return t, l, s


def consistency_times(
    batch: int,
    r: float,
    *,
    mean_s: float = -1.0,
    std_s: float = 0.8,
    mean_t: float = 0.2,
    std_t: float = 0.8,
    min_gap: float = MIN_TIME_GAP,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Draw consistency triples $(t, l, s)$ with $s \le l < t$.

    $s' \sim \text{LN}(\mu_1, \sigma_1)$ is drawn first, then $t' \sim \text{LN}(\mu_2, \sigma_2)$;
    then $t = \max(t', g)$, $s = \min(s', t - g)$, $l = \min(t + (s - t)\,r,\ t - g)$ (nothing is
    sorted: when $s' > t'$, $s$ lands just below $t$). Defaults are the ImageNet recipe.

    Args:
        batch: number of samples.
        r: the current ratio $r(k, K) \in [0, 1]$ (see [`RatioSchedule`][soflow_toolkit.RatioSchedule]).
        mean_s: $\mu_1$.
        std_s: $\sigma_1$.
        mean_t: $\mu_2$.
        std_t: $\sigma_2$.
        min_gap: the clamping margin $g$.
        device: device of the result (default: the generator's device, else CPU).
        dtype: float32 or float64.
        generator: random generator (the draws happen on its device).

    Returns:
        `(t, l, s)`, each `(batch,)`.

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> t, l, s = consistency_times(1000, 0.1, generator=g)
        >>> bool(((s <= l) & (l < t)).all())
        True
    """
    check_number(r, "the ratio r", low=0, high=1)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"consistency times need float32 or float64 (the 1e-4 margins vanish in {dtype}); got {dtype}"
        )
    s_raw = logit_normal_times(batch, mean=mean_s, std=std_s, device=device, dtype=dtype, generator=generator)
    t_raw = logit_normal_times(batch, mean=mean_t, std=std_t, device=device, dtype=dtype, generator=generator)
    return clamp_consistency_times(t_raw, s_raw, float(r), min_gap=min_gap)


@dataclass(frozen=True)
class TimePriors:
    r"""The logit-normal priors of the training times and the margin of the consistency triples.

    Flow matching times $t \sim \text{LN}(\mu_0, \sigma_0)$; consistency end times
    $s' \sim \text{LN}(\mu_1, \sigma_1)$ and start times $t' \sim \text{LN}(\mu_2, \sigma_2)$, clamped
    with the margin $g$ (see [`consistency_times`][soflow_toolkit.consistency_times]). The defaults
    are the ImageNet recipe.

    Raises:
        TypeError: for a field that is not a number.
        ValueError: for a non-finite mean, a std that is not > 0, or a margin outside (0, 0.5).

    Examples:
        >>> TimePriors(mean_s=-4.0, std_s=1.6).mean_s
        -4.0
    """

    mean_fm: float = -0.2
    r"""$\mu_0$: logit-normal mean of the flow matching times $t$."""
    std_fm: float = 1.0
    r"""$\sigma_0 > 0$: logit-normal std of the flow matching times."""
    mean_s: float = -1.0
    r"""$\mu_1$: logit-normal mean of the consistency end times $s$."""
    std_s: float = 0.8
    r"""$\sigma_1 > 0$: logit-normal std of the consistency end times."""
    mean_t: float = 0.2
    r"""$\mu_2$: logit-normal mean of the consistency start times $t$."""
    std_t: float = 0.8
    r"""$\sigma_2 > 0$: logit-normal std of the consistency start times."""
    min_gap: float = MIN_TIME_GAP
    r"""$g \in (0, 0.5)$: clamping margin, $t \ge g$, $s \le t - g$, $l \le t - g$."""

    def __post_init__(self) -> None:
        for which in ("fm", "s", "t"):
            check_number(getattr(self, f"mean_{which}"), f"TimePriors.mean_{which}")
            check_number(getattr(self, f"std_{which}"), f"TimePriors.std_{which}", low=0, low_open=True)
        check_number(self.min_gap, "TimePriors.min_gap", low=0, high=0.5, low_open=True, high_open=True)


@dataclass(frozen=True)
class RatioSchedule:
    r"""The curriculum $r(k, K)$ as a callable: `schedule(step) -> float`.

    - const: $r_{\text{end}}$
    - linear: $r_{\text{init}} + (r_{\text{end}} - r_{\text{init}})\,k/K$
    - cosine: $r_{\text{end}} + (r_{\text{init}} - r_{\text{end}})\,\tfrac12(1 + \cos(\pi k/K))$
    - exponent: $r_{\text{init}}\,(r_{\text{end}}/r_{\text{init}})^{k/K}$

    Steps past $K$ hold $r(K, K) = r_{\text{end}}$. The defaults are the ImageNet recipe.

    Raises:
        TypeError: for a kind that is not a string or a `total_steps` that is not an int.
        ValueError: for an unknown kind, a ratio outside (0, 1] or `total_steps < 1`.

    Examples:
        >>> schedule = RatioSchedule("exponent", r_init=0.1, r_end=0.002, total_steps=400_000)
        >>> round(schedule(200_000), 6)
        0.014142
    """

    kind: str = "exponent"
    """The shape of $r(k, K)$: `"const"`, `"linear"`, `"cosine"` or `"exponent"` (case-insensitive)."""
    r_init: float = 0.1
    r"""$r(0, K) \in (0, 1]$: the initial ratio $(t - l)/(t - s)$."""
    r_end: float = 0.002
    r"""$r(K, K) \in (0, 1]$: the final ratio."""
    total_steps: int = 400_000
    r"""$K \ge 1$: the number of training steps over which $r$ goes from `r_init` to `r_end`."""

    def __post_init__(self) -> None:
        kind = self.kind.lower() if isinstance(self.kind, str) else self.kind
        check_choice(kind, "RatioSchedule.kind", _KINDS)
        for name in ("r_init", "r_end"):
            check_number(getattr(self, name), f"RatioSchedule.{name}", low=0, high=1, low_open=True)
        check_int(self.total_steps, "RatioSchedule.total_steps", minimum=1)

    def __call__(self, step: int) -> float:
        r"""The ratio $r(k, K)$ at training step $k \ge 0$."""
        step = check_int(step, "the training step", minimum=0)
        progress = min(step, self.total_steps) / self.total_steps
        kind = self.kind.lower()
        if kind == "const":
            return float(self.r_end)
        if kind == "linear":
            return self.r_init + (self.r_end - self.r_init) * progress
        if kind == "cosine":
            return self.r_end + (self.r_init - self.r_end) * 0.5 * (1 + math.cos(math.pi * progress))
        return float(self.r_init * (self.r_end / self.r_init) ** progress)


def ratio_schedule(kind: ScheduleKind, step: int, total_steps: int, r_init: float, r_end: float) -> float:
    """Deprecated alias of `RatioSchedule(kind, r_init, r_end, total_steps)(step)`."""
    warn_deprecated("ratio_schedule(kind, step, total_steps, r_init, r_end)", "RatioSchedule(...)(step)")
    return RatioSchedule(kind, r_init, r_end, total_steps)(step)
