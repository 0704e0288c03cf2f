r"""Time samplers and the curriculum schedule $r(k, K)$ (docs: method, time sampling).

- Flow matching times: $t \sim \text{LN}(\mu_0, \sigma_0)$, the logit-normal $\mathrm{sigmoid}(\mu + \sigma z)$.
- Consistency triples: $s' \sim \text{LN}(\mu_1, \sigma_1)$, $t' \sim \text{LN}(\mu_2, \sigma_2)$;
  $t = \max(t', 10^{-4})$, $s = \min(s', t - 10^{-4})$, $l = \min(t + (s - t)\,r,\ t - 10^{-4})$.
- $r(k, K)$ shrinks the gap $t - l$ over training: Const, Linear, Cosine, Exponent (default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "MIN_TIME_GAP",
    "RatioSchedule",
    "ScheduleKind",
    "clamp_consistency_times",
    "consistency_times",
    "logit_normal_times",
    "ratio_schedule",
    "uniform_times",
]

MIN_TIME_GAP = 1e-4
"""The clamping margin of the consistency triple (official value)."""

ScheduleKind = Literal["const", "linear", "cosine", "exponent"]


def _check_batch_size(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int; got {batch!r}")


def uniform_times(
    batch: int,
    *,
    low: float = 0.0,
    high: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Times drawn uniformly from `[low, high)`.

    Returns:
        `(batch,)` tensor.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> uniform_times(3, generator=g).shape
        torch.Size([3])
    """
    _check_batch_size(batch)
    if not 0 <= low <= high <= 1:
        raise ValueError(f"need 0 <= low <= high <= 1; got low={low}, high={high}")
    u = torch.rand(batch, device=device, dtype=dtype, generator=generator)
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
        device: device.
        dtype: floating dtype.
        generator: random generator.

    Returns:
        `(batch,)` tensor in (0, 1).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> t = logit_normal_times(10_000, mean=-0.2, std=1.0, generator=g)
        >>> bool(((t > 0) & (t < 1)).all())
        True
    """
    _check_batch_size(batch)
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(f"logit-normal needs a finite mean and std > 0; got mean={mean}, std={std}")
    z = torch.randn(batch, device=device, dtype=dtype, generator=generator)
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

    Example:
        >>> import torch
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
    both go through :func:`clamp_consistency_times`. Defaults are the ImageNet recipe.

    Args:
        batch: number of samples.
        r: the current ratio $r(k, K) \in [0, 1]$ (see :class:`RatioSchedule`).
        mean_s: $\mu_1$.
        std_s: $\sigma_1$.
        mean_t: $\mu_2$.
        std_t: $\sigma_2$.
        min_gap: clamping margin.
        device: device.
        dtype: floating dtype.
        generator: random generator.

    Returns:
        `(t, l, s)`, each `(batch,)`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> t, l, s = consistency_times(1000, 0.1, generator=g)
        >>> bool(((s <= l) & (l < t)).all())
        True
    """
    if not 0 <= r <= 1:
        raise ValueError(f"the ratio r must lie in [0, 1]; got {r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"consistency times need float32 or float64 (the 1e-4 margins vanish in {dtype}); got {dtype}"
        )
    kwargs = {"device": device, "dtype": dtype, "generator": generator}
    s_raw = logit_normal_times(batch, mean=mean_s, std=std_s, **kwargs)  # type: ignore[arg-type]
    t_raw = logit_normal_times(batch, mean=mean_t, std=std_t, **kwargs)  # type: ignore[arg-type]
    return clamp_consistency_times(t_raw, s_raw, float(r), min_gap=min_gap)


def ratio_schedule(kind: ScheduleKind, step: int, total_steps: int, r_init: float, r_end: float) -> float:
    r"""The ratio $r(k, K)$ at training step $k$ of $K$.

    - const: $r_{\text{end}}$
    - linear: $r_{\text{init}} + (r_{\text{end}} - r_{\text{init}})\,k/K$
    - cosine: $r_{\text{end}} + (r_{\text{init}} - r_{\text{end}})\,\tfrac12(1 + \cos(\pi k/K))$
    - exponent: $r_{\text{init}}\,(r_{\text{end}}/r_{\text{init}})^{k/K}$

    Steps past $K$ hold $r(K, K) = r_{\text{end}}$.

    Example:
        >>> ratio_schedule("exponent", 0, 100, 0.1, 0.001), ratio_schedule("exponent", 100, 100, 0.1, 0.001)
        (0.1, 0.001)
    """
    return RatioSchedule(kind, r_init, r_end, total_steps)(step)


@dataclass(frozen=True)
class RatioSchedule:
    r"""The curriculum $r(k, K)$ as a callable: `schedule(step) -> float`.

    Attributes:
        kind: `"const"`, `"linear"`, `"cosine"` or `"exponent"` (case-insensitive).
        r_init: $r$ at step 0, in (0, 1].
        r_end: $r$ at step $K$, in (0, 1].
        total_steps: $K \ge 1$.

    Example:
        >>> schedule = RatioSchedule("exponent", r_init=0.1, r_end=0.002, total_steps=400_000)
        >>> round(schedule(200_000), 6)
        0.014142
    """

    kind: str = "exponent"
    r_init: float = 0.1
    r_end: float = 0.002
    total_steps: int = 400_000

    def __post_init__(self) -> None:
        kinds = ("const", "linear", "cosine", "exponent")
        if self.kind.lower() not in kinds:
            raise ValueError(f"unknown schedule kind {self.kind!r}; expected one of {list(kinds)}")
        for name in ("r_init", "r_end"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value <= 1):
                raise ValueError(f"RatioSchedule.{name} must lie in (0, 1]; got {value!r}")
        if (
            isinstance(self.total_steps, bool)
            or not isinstance(self.total_steps, int)
            or self.total_steps < 1
        ):
            raise ValueError(f"RatioSchedule.total_steps must be an int >= 1; got {self.total_steps!r}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"the training step must be >= 0; got {step}")
        progress = min(step, self.total_steps) / self.total_steps
        kind = self.kind.lower()
        if kind == "const":
            return float(self.r_end)
        if kind == "linear":
            return self.r_init + (self.r_end - self.r_init) * progress
        if kind == "cosine":
            return self.r_end + (self.r_init - self.r_end) * 0.5 * (1 + math.cos(math.pi * progress))
        return float(self.r_init * (self.r_end / self.r_init) ** progress)
