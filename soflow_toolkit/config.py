r"""The settings of the SoFlow objective, nested by concept, and the official recipes as presets.

[`SoFlowConfig`][soflow_toolkit.SoFlowConfig] holds the batch split $\rho$ and the adaptive weight
$(p, \varepsilon)$ itself, and one small frozen dataclass per concept, each validating its own fields:

- `times`: [`TimePriors`][soflow_toolkit.TimePriors], the logit-normal priors of $t$, $s$ and the
  consistency $t$, and the clamping margin;
- `curriculum`: [`RatioSchedule`][soflow_toolkit.RatioSchedule], the ratio $r(k, K)$;
- `guidance`: [`GuidanceConfig`][soflow_toolkit.GuidanceConfig], training-time classifier-free
  guidance.

The presets [`imagenet`][soflow_toolkit.SoFlowConfig.imagenet],
[`cifar10`][soflow_toolkit.SoFlowConfig.cifar10] and [`lowdim`][soflow_toolkit.SoFlowConfig.lowdim]
take the length of the run as `total_steps` and any field as a keyword override.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from ._checks import check_number
from ._deprecation import warn_deprecated
from .guidance import GuidanceConfig
from .time_sampling import RatioSchedule, TimePriors

__all__ = ["SoFlowConfig"]

# The flat fields of SoFlowConfig before 0.1.0: old name -> (nested field, its attribute).
_FLAT_FIELDS: dict[str, tuple[str, str]] = {
    "fm_time_mean": ("times", "mean_fm"),
    "fm_time_std": ("times", "std_fm"),
    "s_time_mean": ("times", "mean_s"),
    "s_time_std": ("times", "std_s"),
    "t_time_mean": ("times", "mean_t"),
    "t_time_std": ("times", "std_t"),
    "min_time_gap": ("times", "min_gap"),
    "schedule": ("curriculum", "kind"),
    "r_init": ("curriculum", "r_init"),
    "r_end": ("curriculum", "r_end"),
    "total_steps": ("curriculum", "total_steps"),
}
_NESTED_TYPES: dict[str, type] = {
    "times": TimePriors,
    "curriculum": RatioSchedule,
    "guidance": GuidanceConfig,
}


@dataclass(frozen=True, init=False)
class SoFlowConfig:
    """Every setting of the SoFlow objective. The defaults are the ImageNet recipe without guidance.

    Use the presets for the official recipes and `dataclasses.replace` (or a preset's keyword
    overrides) to change fields; a nested setting is replaced as a whole, e.g.
    `replace(config, curriculum=replace(config.curriculum, r_end=0.01))`.

    The flat keyword arguments and attributes of earlier versions (`r_init`, `s_time_mean`, ...) still
    work, with a ``DeprecationWarning``: `SoFlowConfig(r_init=0.5)` sets `curriculum.r_init`.

    Raises:
        TypeError: for a field of the wrong type (a nested field must be its dataclass).
        ValueError: for a value out of range (each nested dataclass checks its own fields).

    Examples:
        >>> config = SoFlowConfig.imagenet(total_steps=1000)
        >>> config.fm_fraction, config.guidance.scale, config.curriculum.total_steps
        (0.75, 3.0, 1000)
        >>> config.times.mean_s, config.curriculum(0)
        (-1.0, 0.1)
    """

    fm_fraction: float = 0.75
    """$\\rho \\in [0, 1]$: share of each batch trained with the flow matching loss (the first $\\lfloor\\rho B\\rfloor$ samples)."""
    p: float = 1.0
    """$p \\ge 0$: power of the adaptive weight $1/(\\text{mse} + \\varepsilon)^p$; 0 gives plain MSE."""
    eps: float = 0.01
    """$\\varepsilon > 0$: offset of the adaptive weight."""
    times: TimePriors = field(default_factory=TimePriors)
    """The logit-normal priors of the training times and the clamping margin."""
    curriculum: RatioSchedule = field(default_factory=RatioSchedule)
    """The ratio $r(k, K) = (t - l)/(t - s)$ over training."""
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    """Training-time classifier-free guidance (off by default)."""

    def __init__(
        self,
        fm_fraction: float = 0.75,
        p: float = 1.0,
        eps: float = 0.01,
        times: TimePriors | None = None,
        curriculum: RatioSchedule | None = None,
        guidance: GuidanceConfig | None = None,
        **flat: Any,
    ) -> None:
        values: dict[str, Any] = {
            "fm_fraction": fm_fraction,
            "p": p,
            "eps": eps,
            "times": TimePriors() if times is None else times,
            "curriculum": RatioSchedule() if curriculum is None else curriculum,
            "guidance": GuidanceConfig() if guidance is None else guidance,
        }
        for name, nested_type in _NESTED_TYPES.items():
            if not isinstance(values[name], nested_type):
                got = type(values[name]).__name__
                raise TypeError(f"SoFlowConfig.{name} must be a {nested_type.__name__}; got {got}")
        values.update(_apply_flat_fields(values, flat))
        for name, value in values.items():
            object.__setattr__(self, name, value)
        check_number(self.fm_fraction, "SoFlowConfig.fm_fraction", low=0, high=1)
        check_number(self.p, "SoFlowConfig.p", low=0)
        check_number(self.eps, "SoFlowConfig.eps", low=0, low_open=True)

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: the flat fields of earlier versions.
        if name in _FLAT_FIELDS:
            nested, attribute = _FLAT_FIELDS[name]
            warn_deprecated(f"SoFlowConfig.{name}", f"SoFlowConfig.{nested}.{attribute}")
            return getattr(getattr(self, nested), attribute)
        if name == "ratio_schedule":
            warn_deprecated("SoFlowConfig.ratio_schedule", "SoFlowConfig.curriculum")
            return self.curriculum
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def with_total_steps(self, total_steps: int) -> SoFlowConfig:
        """This config with the curriculum run over `total_steps` training steps ($K$)."""
        return replace(self, curriculum=replace(self.curriculum, total_steps=total_steps))

    @classmethod
    def imagenet(cls, *, total_steps: int = 400_000, **overrides: Any) -> SoFlowConfig:
        r"""The official ImageNet 256 recipe (latent DiT, class-conditional, training-time CFG).

        $\rho = 0.75$, $p = 1$, $\varepsilon = 0.01$, $(\mu_0, \mu_1, \mu_2) = (-0.2, -1.0, 0.2)$,
        $(\sigma_0, \sigma_1, \sigma_2) = (1.0, 0.8, 0.8)$, exponent schedule $0.1 \to 0.002$ over
        `total_steps` (official: 400k), guidance scale 3, drop 0.1, mix 0.25, decay time 0.8.
        """
        base = cls(guidance=GuidanceConfig(scale=3.0, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8))
        return _preset(base, total_steps, overrides)

    @classmethod
    def cifar10(cls, *, total_steps: int = 800_000, **overrides: Any) -> SoFlowConfig:
        r"""The official CIFAR-10 recipe (unconditional UNet).

        $\rho = 0$, $p = 0.75$, $\varepsilon = 10^{-3}$, $\mu = (-0.9, -4.0, -0.9)$,
        $\sigma = (1.6, 1.6, 1.6)$, exponent schedule $1 \to 3.125 \times 10^{-4}$ over `total_steps`
        (official: 800k), no guidance.
        """
        times = TimePriors(mean_fm=-0.9, std_fm=1.6, mean_s=-4.0, std_s=1.6, mean_t=-0.9, std_t=1.6)
        curriculum = RatioSchedule("exponent", r_init=1.0, r_end=0.0003125)
        base = cls(fm_fraction=0.0, p=0.75, eps=1e-3, times=times, curriculum=curriculum)
        return _preset(base, total_steps, overrides)

    @classmethod
    def lowdim(cls, *, total_steps: int = 5000, **overrides: Any) -> SoFlowConfig:
        r"""Settings for low-dimensional data (2-D toys, small vectors); not an official recipe.

        The CIFAR-10 recipe with a shorter curriculum: $r: 0.2 \to 0.01$ (exponent schedule) instead of
        $1 \to 3.1 \times 10^{-4}$, over `total_steps` (default 5000; set it to the length of your run).
        Everything else is CIFAR-10's: $\rho = 0$, $p = 0.75$, $\varepsilon = 10^{-3}$,
        $\mu = (-0.9, -4.0, -0.9)$, $\sigma = (1.6, 1.6, 1.6)$.

        Why: in a short run on 2-D data the official curriculum spends most of the steps on the coarse
        targets of large $r$ (one Euler step from $t$ far towards $s$), and its end, $r$ near $10^{-3}$
        or below, is where one-step samples fall between the modes. A learning rate that decays to zero
        over the run (e.g. cosine) matters as much on such data; it belongs to the optimizer, not to
        this config. The measurements behind these choices (toys, digits, the settings that matter)
        are on the benchmarks page of the documentation.

        Examples:
            >>> config = SoFlowConfig.lowdim(total_steps=10_000)
            >>> config.fm_fraction, config.p, config.eps, config.curriculum.r_init, config.curriculum.r_end
            (0.0, 0.75, 0.001, 0.2, 0.01)
        """
        base = cls.cifar10(total_steps=total_steps)
        base = replace(base, curriculum=replace(base.curriculum, r_init=0.2, r_end=0.01))
        return replace(base, **overrides)


def _preset(base: SoFlowConfig, total_steps: int, overrides: dict[str, Any]) -> SoFlowConfig:
    return replace(base.with_total_steps(total_steps), **overrides)


def _apply_flat_fields(values: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """The nested fields after applying deprecated flat keyword arguments (each warns)."""
    unknown = sorted(set(flat) - set(_FLAT_FIELDS))
    if unknown:
        known = [f.name for f in dataclasses.fields(SoFlowConfig)]
        raise TypeError(f"SoFlowConfig got unexpected keyword arguments {unknown}; its fields are {known}")
    changes: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        nested, attribute = _FLAT_FIELDS[name]
        warn_deprecated(
            f"SoFlowConfig({name}=...)", f"SoFlowConfig({nested}=...) with {attribute}", stacklevel=4
        )
        changes.setdefault(nested, {})[attribute] = value
    return {nested: replace(values[nested], **attrs) for nested, attrs in changes.items()}
