r"""The combined SoFlow training objective: batch split, time priors, curriculum and guidance.

`SoFlowLoss(config)` is what a training loop calls: it draws noise, times and condition drops, splits
the batch (the first $\lfloor\rho B\rfloor$ samples get the flow matching loss, the rest the solution
consistency loss), builds guided targets, and returns

$$\mathcal L = \tfrac{n_{fm}}{B}\,\mathcal L_{fm} + \tfrac{n_{sc}}{B}\,\mathcal L_{sc}.$$

A step is three passes over the network, where the official step does up to five evaluations:

1. guidance velocities (guidance only, no gradient): every unconditional velocity and, when the mix
   ratio is below 1, the conditional velocities of the consistency rows, in one forward;
2. the gradient pass: one forward with gradient over the whole batch (flow matching rows at
   $s = t$, consistency rows at their $s$);
3. the consistency targets (no gradient): $f_\theta(x_l, l, s)$.

The online and target evaluations of each consistency sample see the same random state (dropout
masks), as in the official code; see `match_random_state`. With the wrapper's `check_inputs` on, the
values of a step (data, explicit draws, every backbone output) are verified with one host
synchronisation, at the end of the step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from . import _rng
from ._checks import ValueChecks, check_batch, check_generator, check_int, compute_dtype
from ._deprecation import warn_deprecated
from ._rng import RandomState
from .conditions import concat_conditions, explain_null_class, sample_drop_mask, select_condition
from .config import SoFlowConfig
from .step import (
    GuidanceVelocities,
    SoFlowDraw,
    SoFlowOutput,
    Step,
    check_draw,
    consistency_part,
    consistency_start,
    flow_matching_part,
    prepare_step,
)
from .time_sampling import RatioSchedule, consistency_times, logit_normal_times
from .wrapper import evaluate_backbone, evaluate_velocity, unwrap_model

__all__ = ["SoFlowDraw", "SoFlowLoss", "SoFlowOutput"]  # the step records live in `step`


class SoFlowLoss:
    r"""The SoFlow training objective: batch split, curriculum, guidance, fewest network passes.

    Args:
        config: the settings (see [`SoFlowConfig`][soflow_toolkit.SoFlowConfig] and its presets).
        match_random_state: whether the consistency targets are computed over the whole batch with the
            random state of the online pass, so that dropout masks of online and target evaluations
            agree. `None` (default) turns it on when the model is in training mode and contains a
            `torch.nn` dropout layer with `p > 0`; pass `True` for other random layers (e.g. dropout
            inside `scaled_dot_product_attention`). When `fm_fraction = 0` it costs nothing; otherwise the
            target pass covers the whole batch instead of the consistency rows.

    Call it as `objective(model, data, cond=None, null_cond=None, generator=None)`; see `__call__`.
    The training step k is counted by the objective (or passed as `step=`); it is in `state_dict` so a
    resumed run continues the same curriculum. The network is called with `check_inputs=False`: with
    the wrapper's `check_inputs` on, the objective checks the values of the whole step at once (one
    host synchronisation); its own draws are valid by construction, the times of an explicit `draw`
    are checked.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> class Net(nn.Linear):  # F(x, t, s) for 2-D points
        ...     def forward(self, x, t, s):
        ...         return super().forward(torch.cat([x, t[:, None], s[:, None]], dim=1))
        >>> model = SolutionFlowWrapper(Net(4, 2))
        >>> objective = SoFlowLoss(SoFlowConfig().with_total_steps(100))
        >>> out = objective(model, torch.randn(8, 2), generator=torch.Generator().manual_seed(0))
        >>> out.loss.backward()
        >>> out.num_fm, out.num_sc, objective.step
        (6, 2, 1)
    """

    def __init__(self, config: SoFlowConfig | None = None, *, match_random_state: bool | None = None) -> None:
        config = SoFlowConfig() if config is None else config
        if not isinstance(config, SoFlowConfig):
            raise TypeError(f"config must be a SoFlowConfig; got {type(config).__name__}")
        self.config = config
        self.match_random_state = match_random_state
        self.step = 0

    @property
    def schedule(self) -> RatioSchedule:
        """Deprecated: the curriculum is `config.curriculum`."""
        warn_deprecated("SoFlowLoss.schedule", "SoFlowLoss.config.curriculum")
        return self.config.curriculum

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

        Order of draws: noise, flow matching times, consistency $s'$, consistency $t'$, drop mask,
        and for a range of guidance scales the scale of every sample, uniform in the range
        (see [`logit_normal_times`][soflow_toolkit.logit_normal_times],
        [`consistency_times`][soflow_toolkit.consistency_times],
        [`sample_drop_mask`][soflow_toolkit.sample_drop_mask] and
        [`GuidanceConfig.draw_scales`][soflow_toolkit.GuidanceConfig.draw_scales]).

        Args:
            data: the batch `(B, *D)` (only its shape, dtype and device are used).
            step: the training step for $r(k, K)$; default: the objective's counter.
            conditional: whether to draw a condition-drop mask (when the drop rate is > 0).
            generator: random generator (any device; draws are moved to `data`'s device).

        Returns:
            A [`SoFlowDraw`][soflow_toolkit.SoFlowDraw].
        """
        batch = check_batch(data, "data")
        check_generator(generator)
        num_fm, num_sc = self.split(batch)
        r = self.config.curriculum(self.step if step is None else _check_step(step))
        priors, device, dtype = self.config.times, data.device, compute_dtype(data)
        where: dict[str, Any] = {"device": device, "dtype": dtype, "generator": generator}
        noise = _rng.Draw(generator, device).randn(*data.shape, dtype=data.dtype)
        t_fm = logit_normal_times(num_fm, mean=priors.mean_fm, std=priors.std_fm, **where)
        t, l, s = consistency_times(
            num_sc,
            r,
            mean_s=priors.mean_s,
            std_s=priors.std_s,
            mean_t=priors.mean_t,
            std_t=priors.std_t,
            min_gap=priors.min_gap,
            **where,
        )
        guidance = self.config.guidance
        drop_mask = scales = None
        if conditional and guidance.drop_rate > 0:
            drop_mask = sample_drop_mask(batch, guidance.drop_rate, device=device, generator=generator)
        if guidance.scale_range is not None:
            scales = guidance.draw_scales(batch, device=device, dtype=dtype, generator=generator)
        return SoFlowDraw(noise=noise, t_fm=t_fm, t=t, l=l, s=s, drop_mask=drop_mask, guidance_scale=scales)

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
            model: a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper], possibly inside DDP,
                FSDP or `torch.compile`; every forward goes through `model` itself.
            data: the batch `(B, *D)`.
            cond: the condition (tensor, dict or list) or None.
            null_cond: the null condition, needed when the config drops conditions or guides.
            generator: random generator for the draws.
            step: the training step k for the curriculum; default: the objective's counter, which is
                then incremented.
            draw: explicit random inputs (see `draw`); `generator` is then unused.

        Returns:
            A [`SoFlowOutput`][soflow_toolkit.SoFlowOutput].

        Raises:
            ValueError: for a guided or dropping config without `cond`/`null_cond`, a negative `step`,
                an empty batch, a `draw` whose shapes do not fit the batch, or (checks on) non-finite
                data or an explicit draw with times outside [0, 1] or not `s <= l < t`.
            TypeError: for a `step` that is not an int or a `generator` that is not a `torch.Generator`.
            FloatingPointError: (checks on) for a backbone output with NaN or inf.
        """
        batch = check_batch(data, "data")
        if batch == 0:
            raise ValueError("data must hold at least one sample")
        check_generator(generator)
        k = self.step if step is None else _check_step(step)
        self._check_conditions(cond, null_cond)
        wrapper = unwrap_model(model)
        checks = ValueChecks(wrapper.check_inputs)
        checks.finite("data", data)
        if draw is None:
            draw = self.draw(data, step=k, conditional=cond is not None, generator=generator)
        else:
            check_draw(draw, data, self.split(batch)[0], checks, self.config.guidance.scale_range)
        state = prepare_step(model, wrapper, data, draw, cond, null_cond, self.config.guidance, checks)
        p, eps = self.config.p, self.config.eps
        sc = None
        with explain_null_class(null_cond if state.uses_null_condition else None):
            guide = self._guidance_velocities(state)
            online, random_state = self._gradient_pass(state)
            fm = flow_matching_part(state, online, guide, p=p, eps=eps)
            if state.num_sc > 0:
                x_l = consistency_start(state, guide)
                targets = self._consistency_targets(state, x_l, random_state)
                sc = consistency_part(state, online, x_l, targets, p=p, eps=eps)
        checks.verify()
        loss = sum(
            (part_size / batch) * part.loss
            for part_size, part in ((state.num_fm, fm), (state.num_sc, sc))
            if part is not None
        )
        assert isinstance(loss, Tensor)
        if step is None:
            self.step += 1
        r = self.config.curriculum(k)
        return SoFlowOutput(loss, fm, sc, r=r, step=k, num_fm=state.num_fm, num_sc=state.num_sc)

    def _check_conditions(self, cond: Any, null_cond: Any) -> None:
        guidance = self.config.guidance
        if not (guidance.enabled or guidance.drop_rate > 0):
            return
        if cond is None:
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

    @staticmethod
    def _forward(
        step: Step, x: Tensor, t: Tensor, s: Tensor, cond: Any, what: str, scale: Tensor | None
    ) -> Tensor:
        x = x.to(step.x_in.dtype)
        return evaluate_backbone(
            step.model, x, t, s, cond, checks=step.checks, what=what, guidance_scale=scale
        )

    def _guidance_velocities(self, step: Step) -> GuidanceVelocities | None:
        """Pass 1 (guidance only, no gradient): unconditional velocities of all rows and, for the mix,
        the conditional velocities of the consistency rows, in one forward."""
        if step.guidance is None:
            return None
        batch, sc = step.t.shape[0], step.sc
        with_cond = step.guidance.needs_conditional_velocity and step.num_sc > 0
        xs = torch.cat([step.x_t, step.x_t[sc]]) if with_cond else step.x_t
        ts = torch.cat([step.t, step.t[sc]]) if with_cond else step.t
        conds = (
            concat_conditions([step.uncond, select_condition(step.cond, sc)]) if with_cond else step.uncond
        )
        scale = step.scale
        if scale is not None and with_cond:
            scale = torch.cat([scale, scale[sc]])
        what = "the backbone's output of the guidance pass"
        with torch.no_grad():
            velocities = evaluate_velocity(
                step.model,
                step.param,
                xs,
                xs.to(step.x_in.dtype),
                ts,
                conds,
                checks=step.checks,
                what=what,
                guidance_scale=scale,
            )
        return GuidanceVelocities(velocities[:batch], velocities[batch:] if with_cond else None)

    def _gradient_pass(self, step: Step) -> tuple[Tensor, RandomState]:
        """Pass 2 (with gradient): every row at once, flow matching rows at $s = t$.

        Returns the backbone outputs and the random state the pass started from.
        """
        state = RandomState.capture(step.x_t.device)
        out = self._forward(step, step.x_in, step.t, step.s, step.cond, "the backbone's output", step.scale)
        return out, state

    def _consistency_targets(self, step: Step, x_l: Tensor, state: RandomState) -> Tensor:
        """Pass 3 (no gradient): backbone outputs at the consistency targets $(x_l, l, s)$.

        With matched random state, the pass repeats the online pass's shapes (the flow matching rows
        are evaluated again and discarded) after restoring the online pass's random state.
        """
        match = self.match_random_state
        if match is None:
            match = step.model.training and _rng.has_random_layers(step.model)
        full = step.num_fm == 0 or match
        after_online = RandomState.capture(x_l.device)
        if full:
            state.restore()
        what, sc = "the backbone's output at the consistency targets", step.sc
        with torch.no_grad():
            if full and step.num_fm > 0:
                fm = slice(0, step.num_fm)
                xs = torch.cat([step.x_in[fm], x_l.to(step.x_in.dtype)])
                ts, ss = torch.cat([step.t[fm], step.l]), torch.cat([step.t[fm], step.s[sc]])
                out = self._forward(step, xs, ts, ss, step.cond, what, step.scale)[step.num_fm :]
            else:
                cond = select_condition(step.cond, sc)
                out = self._forward(step, x_l, step.l, step.s[sc], cond, what, step.scales(sc))
        after_online.restore()
        return out

    def state_dict(self) -> dict[str, int]:
        """The objective's training state: `{"step": k}` (safe for `torch.load(weights_only=True)`)."""
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the training step saved by `state_dict`."""
        if "step" not in state:
            raise KeyError("the SoFlowLoss state dict has no 'step' entry")
        self.step = _check_step(state["step"])

    def __repr__(self) -> str:
        return f"SoFlowLoss(step={self.step}, config={self.config})"


def _check_step(step: Any) -> int:
    return check_int(step, "the training step", minimum=0)
