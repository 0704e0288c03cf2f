r"""The combined SoFlow training objective: batch split, time priors, curriculum and guidance.

`SoFlowLoss(config)` is what a training loop calls: it draws noise, times and condition drops, splits
the batch (the first $\lfloor\rho B\rfloor$ samples get the flow matching loss, the rest the solution
consistency loss), builds guided targets, and returns

$$\mathcal L = \tfrac{n_{fm}}{B}\,\mathcal L_{fm} + \tfrac{n_{sc}}{B}\,\mathcal L_{sc}.$$

It evaluates the network at most three times per step, where the official step does up to five:

1. one forward **with gradient** over the whole batch (flow matching rows at $s = t$, consistency rows
   at their $s$);
2. only with guidance: one no-grad forward for every unconditional velocity and, when the mix ratio is
   below 1, the conditional velocities of the consistency rows;
3. one no-grad forward for the consistency targets $f_\theta(x_l, l, s)$.

The online and target evaluations of each consistency sample see the same random state (dropout
masks), as in the official code; see `match_random_state`.
"""

from __future__ import annotations

import contextlib
import math
import operator
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import check_batch, compute_dtype, expand_like
from ._rng import RandomState
from .conditions import concat_conditions, select_condition
from .guidance import GuidanceConfig, guided_velocity, sample_drop_mask
from .losses import LossOutput, consistency_terms, flow_matching_terms, prepare_conditions
from .time_sampling import MIN_TIME_GAP, RatioSchedule, clamp_consistency_times
from .wrapper import SolutionFlowWrapper, unwrap_model

__all__ = ["SoFlowConfig", "SoFlowDraw", "SoFlowLoss", "SoFlowOutput"]


@dataclass(frozen=True)
class SoFlowConfig:
    """Every setting of the SoFlow objective. The defaults are the ImageNet recipe without guidance.

    Use the presets :meth:`imagenet` and :meth:`cifar10` for the official recipes, and
    `dataclasses.replace` (or a preset's keyword overrides) to change single fields.

    Example:
        >>> config = SoFlowConfig.imagenet(total_steps=1000)
        >>> config.fm_fraction, config.guidance.scale, config.total_steps
        (0.75, 3.0, 1000)
    """

    fm_fraction: float = 0.75
    """rho: share of each batch trained with the flow matching loss (the first floor(rho*B) samples)."""
    p: float = 1.0
    """Power of the adaptive weight 1/(mse + eps)^p; 0 gives plain MSE."""
    eps: float = 0.01
    """Offset of the adaptive weight, > 0."""
    fm_time_mean: float = -0.2
    """mu_0: logit-normal mean of the flow matching times t."""
    fm_time_std: float = 1.0
    """sigma_0: logit-normal std of the flow matching times t."""
    s_time_mean: float = -1.0
    """mu_1: logit-normal mean of the consistency end times s."""
    s_time_std: float = 0.8
    """sigma_1: logit-normal std of the consistency end times s."""
    t_time_mean: float = 0.2
    """mu_2: logit-normal mean of the consistency start times t."""
    t_time_std: float = 0.8
    """sigma_2: logit-normal std of the consistency start times t."""
    schedule: str = "exponent"
    """Curriculum kind of r(k, K): "const", "linear", "cosine" or "exponent"."""
    r_init: float = 0.1
    """r(0, K): the initial ratio (t - l) / (t - s)."""
    r_end: float = 0.002
    """r(K, K): the final ratio."""
    total_steps: int = 400_000
    """K: the number of training steps over which r goes from r_init to r_end."""
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    """Training-time classifier-free guidance (off by default)."""
    min_time_gap: float = MIN_TIME_GAP
    """Clamping margin of the consistency times: t >= g, s <= t - g, l <= t - g."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("schedule", "guidance", "total_steps"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"SoFlowConfig.{f.name} must be a finite number; got {value!r}")
        if not 0 <= self.fm_fraction <= 1:
            raise ValueError(f"SoFlowConfig.fm_fraction must lie in [0, 1]; got {self.fm_fraction}")
        if self.p < 0:
            raise ValueError(f"SoFlowConfig.p must be >= 0; got {self.p}")
        if self.eps <= 0:
            raise ValueError(f"SoFlowConfig.eps must be > 0; got {self.eps}")
        for name in ("fm_time_std", "s_time_std", "t_time_std"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SoFlowConfig.{name} must be > 0; got {getattr(self, name)}")
        if not 0 < self.min_time_gap < 0.5:
            raise ValueError(f"SoFlowConfig.min_time_gap must lie in (0, 0.5); got {self.min_time_gap}")
        if not isinstance(self.schedule, str):
            raise TypeError(
                "SoFlowConfig.schedule must be a string ('const', 'linear', 'cosine' or 'exponent'); "
                f"got {type(self.schedule).__name__}"
            )
        if not isinstance(self.guidance, GuidanceConfig):
            raise TypeError(
                f"SoFlowConfig.guidance must be a GuidanceConfig; got {type(self.guidance).__name__}"
            )
        try:
            self.ratio_schedule  # noqa: B018 - validates schedule, r_init, r_end, total_steps
        except ValueError as error:
            raise ValueError(f"SoFlowConfig: {error}") from None

    @property
    def ratio_schedule(self) -> RatioSchedule:
        """The curriculum $r(k, K)$ of this config."""
        return RatioSchedule(self.schedule, self.r_init, self.r_end, self.total_steps)

    @classmethod
    def imagenet(cls, **overrides: Any) -> SoFlowConfig:
        """The official ImageNet 256 recipe (latent DiT, class-conditional, training-time CFG).

        rho = 0.75, p = 1, eps = 0.01, (mu_0, mu_1, mu_2) = (-0.2, -1.0, 0.2),
        (sigma_0, sigma_1, sigma_2) = (1.0, 0.8, 0.8), exponent schedule 0.1 -> 0.002 over 400k steps,
        guidance scale 3, drop 0.1, mix 0.25, decay time 0.8.
        """
        base = cls(guidance=GuidanceConfig(scale=3.0, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8))
        return replace(base, **overrides)

    @classmethod
    def cifar10(cls, **overrides: Any) -> SoFlowConfig:
        """The official CIFAR-10 recipe (unconditional UNet).

        rho = 0, p = 0.75, eps = 1e-3, mu = (-0.9, -4.0, -0.9), sigma = (1.6, 1.6, 1.6),
        exponent schedule 1.0 -> 0.0003125 over 800k steps, no guidance.
        """
        base = cls(
            fm_fraction=0.0,
            p=0.75,
            eps=1e-3,
            fm_time_mean=-0.9,
            fm_time_std=1.6,
            s_time_mean=-4.0,
            s_time_std=1.6,
            t_time_mean=-0.9,
            t_time_std=1.6,
            schedule="exponent",
            r_init=1.0,
            r_end=0.0003125,
            total_steps=800_000,
        )
        return replace(base, **overrides)

    @classmethod
    def lowdim(cls, **overrides: Any) -> SoFlowConfig:
        r"""Settings for low-dimensional data (2-D toys, small vectors); not an official recipe.

        The CIFAR-10 recipe with a shorter curriculum: $r: 0.2 \to 0.01$ (exponent schedule) instead of
        $1 \to 3.1 \times 10^{-4}$, over `total_steps` (default 5000; set it to the length of your run).
        Everything else is CIFAR-10's: $\rho = 0$, $p = 0.75$, $\varepsilon = 10^{-3}$,
        $\mu = (-0.9, -4.0, -0.9)$, $\sigma = (1.6, 1.6, 1.6)$.

        Why: in a short run on 2-D data the official curriculum spends most of the steps on the coarse
        targets of large $r$ (one Euler step from $t$ far towards $s$), and its end, $r$ near $10^{-3}$
        or below, is where one-step samples fall between the modes. Measured with a 4-layer MLP
        (`benchmarks/results/`, 4000 steps): on a ring of six Gaussians the energy distance of 1-NFE
        samples drops from 44 to 5.3 (× 1e-3); ending the curriculum at $r = 0.002$ instead gives 16,
        a flow matching share of 0.5 or 0.75 gives 13 to 25, plain MSE ($p = 0$) 22, and $p = 1$ with
        $\varepsilon$ of 1 or 10 gives 3.3 to 4.7, within the spread over seeds. Across five 2-D toys
        this preset beat a candidate with $\rho = 0.5$, $p = 1$, $\varepsilon = 1$ on four; on
        class-conditional 8×8 digits (64-D, with guidance) that candidate reached a lower Fréchet
        distance (42 against 61). A learning rate that decays to zero over the run (e.g. cosine) matters
        as much on such data; it belongs to the optimizer, not to this config. So does capacity on
        multi-modal data: a 512-wide MLP (learning rate 0.001) instead of a 128-wide one (0.003) took
        the 1-NFE distance on the ring from 6.0 to 2.7 and on a checkerboard from 5.5 to 2.5, while two
        moons, a spiral and eight Gaussians did not improve.

        Example:
            >>> config = SoFlowConfig.lowdim(total_steps=10_000)
            >>> (config.fm_fraction, config.p, config.eps, config.r_init, config.r_end)
            (0.0, 0.75, 0.001, 0.2, 0.01)
        """
        base = cls.cifar10(r_init=0.2, r_end=0.01, total_steps=5000)
        return replace(base, **overrides)


@dataclass(frozen=True)
class SoFlowDraw:
    """The random inputs of one objective step; pass one explicitly to make a step deterministic.

    Attributes:
        noise: `(B, *D)` Gaussian noise.
        t_fm: `(n_fm,)` flow matching times.
        t: `(n_sc,)` consistency start times.
        l: `(n_sc,)` consistency intermediate times.
        s: `(n_sc,)` consistency end times, with `s <= l < t`.
        drop_mask: `(B,)` bool, True = condition dropped, or None.
    """

    noise: Tensor
    t_fm: Tensor
    t: Tensor
    l: Tensor
    s: Tensor
    drop_mask: Tensor | None = None


@dataclass(frozen=True)
class SoFlowOutput:
    """The result of one objective step.

    Attributes:
        loss: the scalar to back-propagate, `(n_fm/B) L_fm + (n_sc/B) L_sc`. Its value mixes a loss and
            a surrogate; log the `mse` values instead.
        flow_matching: the flow matching part, or None when no sample got it.
        consistency: the consistency part, or None when no sample got it.
        r: the curriculum ratio used for this step.
        step: the training step k used for this step.
        num_fm: number of flow matching samples n_fm.
        num_consistency: number of consistency samples n_sc.
    """

    loss: Tensor
    flow_matching: LossOutput | None
    consistency: LossOutput | None
    r: float
    step: int
    num_fm: int
    num_consistency: int

    def metrics(self) -> dict[str, float]:
        """Floats for logging (one host synchronisation): `fm_mse`, `fm_weight`, `sc_mse`, `sc_weight`, `r`, `step`."""
        names: list[str] = []
        values: list[Tensor] = []
        for prefix, part in (("fm", self.flow_matching), ("sc", self.consistency)):
            if part is not None:
                names += [f"{prefix}_mse", f"{prefix}_weight"]
                values += [part.mse.detach().float(), part.weight.detach().float()]
        out: dict[str, float] = dict(zip(names, torch.stack(values).tolist(), strict=True)) if values else {}
        out.update(r=self.r, step=float(self.step))
        return out


_RANDOM_LAYERS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_dropout_cache: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _has_dropout(model: nn.Module) -> bool:
    if model not in _dropout_cache:
        _dropout_cache[model] = any(isinstance(m, _RANDOM_LAYERS) and m.p > 0 for m in model.modules())
    return _dropout_cache[model]


@contextlib.contextmanager
def _skip_time_checks(model: nn.Module, wrapper: SolutionFlowWrapper, *, skip: bool) -> Iterator[None]:
    """Turn the wrapper's time-range checks off for the duration of the block (restored on exit).

    Nothing is changed for a `torch.compile`d model (the checks are skipped while compiling anyway, and
    flipping the attribute would trigger recompilation).
    """
    if not skip or not wrapper.check_inputs or _is_compiled(model):
        yield
        return
    wrapper.check_inputs = False
    try:
        yield
    finally:
        wrapper.check_inputs = True


def _is_compiled(model: nn.Module) -> bool:
    current: Any = model
    for _ in range(16):
        if isinstance(current, SolutionFlowWrapper) or not isinstance(current, nn.Module):
            return False
        if getattr(current, "_orig_mod", None) is not None:
            return True
        current = getattr(current, "module", None)
    return False


def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError("the training step must be an int >= 0; got a bool")
    try:
        k = operator.index(step)
    except TypeError:
        raise TypeError(f"the training step must be an int >= 0; got {type(step).__name__}") from None
    if k < 0:
        raise ValueError(f"the training step must be >= 0; got {k}")
    return k


def _randn(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, device=device, dtype=like.dtype, generator=generator).to(like.device)


class SoFlowLoss:
    r"""The SoFlow training objective: batch split, curriculum, guidance, fewest network passes.

    Args:
        config: the settings (see :class:`SoFlowConfig` and its presets).
        match_random_state: whether the consistency targets are computed over the whole batch with the
            random state of the online pass, so that dropout masks of online and target evaluations
            agree. `None` (default) turns it on when the model is in training mode and contains a
            `torch.nn` dropout layer with `p > 0`; pass `True` for other random layers (e.g. dropout
            inside `scaled_dot_product_attention`). When `fm_fraction = 0` it costs nothing; otherwise the
            target pass covers the whole batch instead of the consistency rows.

    The wrapper's per-call time-range checks (`check_inputs`, one host synchronisation each on GPU) are
    skipped for the objective's own draws, whose times lie in [0, 1] by construction; the times of an
    explicit `draw` are checked.

    Call it as `objective(model, data, cond=None, null_cond=None, generator=None)`; see
    :meth:`__call__`. The training step k is counted by the objective (or passed as `step=`); it is in
    :meth:`state_dict` so a resumed run continues the same curriculum.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lin = nn.Linear(4, 2)
        ...     def forward(self, x, t, s):
        ...         return self.lin(torch.cat([x, t[:, None], s[:, None]], dim=1))
        >>> model = SolutionFlowWrapper(Net())
        >>> objective = SoFlowLoss(SoFlowConfig(total_steps=100))
        >>> out = objective(model, torch.randn(8, 2), generator=torch.Generator().manual_seed(0))
        >>> out.loss.backward()
        >>> out.num_fm, out.num_consistency, objective.step
        (6, 2, 1)
    """

    def __init__(self, config: SoFlowConfig | None = None, *, match_random_state: bool | None = None) -> None:
        config = SoFlowConfig() if config is None else config
        if not isinstance(config, SoFlowConfig):
            raise TypeError(f"config must be a SoFlowConfig; got {type(config).__name__}")
        self.config = config
        self.schedule = config.ratio_schedule
        self.match_random_state = match_random_state
        self.step = 0

    def split(self, batch: int) -> tuple[int, int]:
        r"""The batch split `(n_fm, n_sc)` with $n_{fm} = \lfloor \rho B \rfloor$."""
        num_fm = math.floor(self.config.fm_fraction * batch)
        return num_fm, batch - num_fm

    def draw(
        self,
        data: Tensor,
        *,
        step: int | None = None,
        conditional: bool = False,
        generator: torch.Generator | None = None,
    ) -> SoFlowDraw:
        r"""Draw noise, times (with the curriculum ratio of `step`) and, if `conditional`, the drop mask.

        Order of draws: noise, flow matching times, consistency $s'$, consistency $t'$, drop mask.

        Args:
            data: the batch `(B, *D)` (only its shape, dtype and device are used).
            step: the training step for $r(k, K)$; default: the objective's counter.
            conditional: whether to draw a condition-drop mask (when the drop rate is > 0).
            generator: random generator (any device; draws are moved to `data`'s device).

        Returns:
            A :class:`SoFlowDraw`.
        """
        batch = check_batch(data, "data")
        num_fm, num_sc = self.split(batch)
        cfg = self.config
        r = self.schedule(self.step if step is None else _check_step(step))
        times = torch.empty(0, dtype=compute_dtype(data), device=data.device)

        def logit_normal(n: int, mean: float, std: float) -> Tensor:
            return torch.sigmoid(mean + std * _randn(torch.Size([n]), times, generator))

        noise = _randn(data.shape, data, generator)
        t_fm = logit_normal(num_fm, cfg.fm_time_mean, cfg.fm_time_std)
        s_raw = logit_normal(num_sc, cfg.s_time_mean, cfg.s_time_std)
        t_raw = logit_normal(num_sc, cfg.t_time_mean, cfg.t_time_std)
        t, l, s = clamp_consistency_times(t_raw, s_raw, r, min_gap=cfg.min_time_gap)
        drop_mask = None
        if conditional and cfg.guidance.drop_rate > 0:
            drop_mask = sample_drop_mask(batch, cfg.guidance.drop_rate, generator=generator).to(data.device)
        return SoFlowDraw(noise=noise, t_fm=t_fm, t=t, l=l, s=s, drop_mask=drop_mask)

    def _check_draw(self, draw: SoFlowDraw, data: Tensor, num_fm: int, num_sc: int) -> None:
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
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (num_fm + num_sc,)):
            raise ValueError(
                f"draw.drop_mask must be a bool tensor of shape ({num_fm + num_sc},); got dtype "
                f"{mask.dtype} and shape {tuple(mask.shape)}"
            )

    def __call__(
        self,
        model: nn.Module,
        data: Tensor,
        cond: Any = None,
        null_cond: Any = None,
        generator: torch.Generator | None = None,
        *,
        step: int | None = None,
        draw: SoFlowDraw | None = None,
    ) -> SoFlowOutput:
        """One training step's loss.

        Args:
            model: a :class:`~soflow_toolkit.SolutionFlowWrapper`, possibly inside DDP, FSDP or
                `torch.compile`; every forward goes through `model` itself.
            data: the batch `(B, *D)`.
            cond: the condition (tensor, dict or list) or None.
            null_cond: the null condition, needed when the config drops conditions or guides.
            generator: random generator for the draws.
            step: the training step k for the curriculum; default: the objective's counter, which is
                then incremented.
            draw: explicit random inputs (see :meth:`draw`); `generator` is then unused.

        Returns:
            A :class:`SoFlowOutput`.

        Raises:
            ValueError: for a guided or dropping config without `cond`/`null_cond`, a negative `step`,
                an empty batch, or a `draw` whose shapes do not fit the batch.
            TypeError: for a `step` that is not an int.
        """
        batch = check_batch(data, "data")
        if batch == 0:
            raise ValueError("data must hold at least one sample")
        num_fm, num_sc = self.split(batch)
        cfg, guidance = self.config, self.config.guidance
        k = self.step if step is None else _check_step(step)
        conditional = cond is not None
        if guidance.enabled or guidance.drop_rate > 0:
            if not conditional:
                raise ValueError(
                    "this config guides or drops conditions (guidance.scale > 1 or drop_rate > 0) but no "
                    "cond was given: pass cond and null_cond, or use guidance=GuidanceConfig() for an "
                    "unconditional model"
                )
            if null_cond is None:
                raise ValueError(
                    "this config guides or drops conditions (guidance.scale > 1 or drop_rate > 0): pass "
                    "null_cond, e.g. num_classes for class labels"
                )
        own_draw = draw is None
        if draw is None:
            draw = self.draw(data, step=k, conditional=conditional, generator=generator)
        else:
            self._check_draw(draw, data, num_fm, num_sc)
        use_guidance = guidance if conditional and guidance.enabled else None
        cond, uncond = prepare_conditions(
            cond, use_guidance, draw.drop_mask if conditional else None, null_cond, batch
        )

        wrapper = unwrap_model(model)
        path, param = wrapper.path, wrapper.parametrization
        dtype = compute_dtype(data)
        t_sc, l_sc, s_sc = (x.to(device=data.device, dtype=dtype) for x in (draw.t, draw.l, draw.s))
        t_fm = draw.t_fm.to(device=data.device, dtype=dtype)
        t_all = torch.cat([t_fm, t_sc])
        s_all = torch.cat([t_fm, s_sc])
        x_t = path.interpolate(data, draw.noise, t_all)
        v = path.velocity(data, draw.noise, t_all)
        x_in = x_t.to(data.dtype)
        sc = slice(num_fm, batch)
        mask = draw.drop_mask if conditional else None

        # The objective's own times lie in [0, 1] by construction: the wrapper's per-call range checks
        # (a host synchronisation each on GPU) are skipped for them; an explicit draw is checked.
        with _skip_time_checks(model, wrapper, skip=own_draw):
            # Pass 1 (guidance only, no gradient): unconditional velocities of all rows and, for the mix,
            # the conditional velocities of the consistency rows, in one forward.
            v_uncond = v_cond_sc = None
            if use_guidance is not None:
                with_cond = use_guidance.needs_conditional_velocity and num_sc > 0
                xs = torch.cat([x_t, x_t[sc]]) if with_cond else x_t
                ts = torch.cat([t_all, t_sc]) if with_cond else t_all
                conds = concat_conditions([uncond, select_condition(cond, sc)]) if with_cond else uncond
                with torch.no_grad():
                    v_all = param.velocity(xs, model(xs.to(data.dtype), ts, ts, conds, output="backbone"), ts)
                v_uncond, v_cond_sc = v_all[:batch], (v_all[batch:] if with_cond else None)

            # Pass 2 (with gradient): every row at once, flow matching rows at s = t.
            state = RandomState.capture(data.device)
            backbone_out = model(x_in, t_all, s_all, cond, output="backbone")

            fm_out = None
            if num_fm > 0:
                v_pred = param.velocity(x_t[:num_fm], backbone_out[:num_fm], t_fm)
                target = v[:num_fm]
                if use_guidance is not None and v_uncond is not None:
                    target = guided_velocity(
                        target,
                        v_uncond[:num_fm],
                        t_fm,
                        use_guidance,
                        v_cond=v_pred.detach(),
                        drop_mask=None if mask is None else mask[:num_fm],
                    )
                fm_out = flow_matching_terms(v_pred, target, param.db_ds(t_fm), p=cfg.p, eps=cfg.eps)

            sc_out = None
            if num_sc > 0:
                target_v = v[sc]
                if use_guidance is not None and v_uncond is not None:
                    target_v = guided_velocity(
                        target_v,
                        v_uncond[sc],
                        t_sc,
                        use_guidance,
                        v_cond=v_cond_sc,
                        drop_mask=None if mask is None else mask[sc],
                    )
                x_l = x_t[sc] + expand_like(l_sc - t_sc, target_v) * target_v
                f_target = self._targets(model, x_in, x_l, t_fm, l_sc, s_sc, cond, state, num_fm, data.dtype)
                f_target = param.solution(x_l, f_target, l_sc, s_sc)
                online = backbone_out[sc]
                f_online = param.solution(x_t[sc], online, t_sc, s_sc)
                sc_out = consistency_terms(
                    online, f_online, f_target, t_sc, l_sc, param.b(t_sc, s_sc), p=cfg.p, eps=cfg.eps
                )

        loss = sum(
            (n / batch) * part.loss for n, part in ((num_fm, fm_out), (num_sc, sc_out)) if part is not None
        )
        assert isinstance(loss, Tensor)
        if step is None:
            self.step += 1
        return SoFlowOutput(
            loss=loss,
            flow_matching=fm_out,
            consistency=sc_out,
            r=self.schedule(k),
            step=k,
            num_fm=num_fm,
            num_consistency=num_sc,
        )

    def _targets(
        self,
        model: nn.Module,
        x_in: Tensor,
        x_l: Tensor,
        t_fm: Tensor,
        l_sc: Tensor,
        s_sc: Tensor,
        cond: Any,
        state: RandomState,
        num_fm: int,
        input_dtype: torch.dtype,
    ) -> Tensor:
        """Pass 3 (no gradient): backbone outputs at the consistency targets $(x_l, l, s)$.

        With matched random state, the pass repeats the online pass's shapes (the flow matching rows
        are evaluated again and discarded) after restoring the online pass's random state.
        """
        match = self.match_random_state
        if match is None:
            match = model.training and _has_dropout(model)
        full = num_fm == 0 or match
        after_online = RandomState.capture(x_l.device)
        if full:
            state.restore()
        out: Tensor
        with torch.no_grad():
            if full and num_fm > 0:
                xs = torch.cat([x_in[:num_fm], x_l.to(input_dtype)])
                out = model(xs, torch.cat([t_fm, l_sc]), torch.cat([t_fm, s_sc]), cond, output="backbone")
                out = out[num_fm:]
            else:
                sc_cond = select_condition(cond, slice(num_fm, None))
                out = model(x_l.to(input_dtype), l_sc, s_sc, sc_cond, output="backbone")
        after_online.restore()
        return out

    def state_dict(self) -> dict[str, int]:
        """The objective's training state: `{"step": k}` (safe for `torch.load(weights_only=True)`)."""
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the training step saved by :meth:`state_dict`."""
        if "step" not in state:
            raise KeyError("the SoFlowLoss state dict has no 'step' entry")
        self.step = _check_step(state["step"])

    def __repr__(self) -> str:
        return f"SoFlowLoss(step={self.step}, config={self.config})"
