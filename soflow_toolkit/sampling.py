r"""Few-step sampling with a solution flow model (docs: method, sampling).

- `sample(..., steps=1)`: one network evaluation, $\hat x = f_\theta(\text{noise}, 1, 0)$.
- `method="renoise"` (official, default): on the grid $t_i = 1 - i/N$, jump to the data with
  $\hat x = f_\theta(x, t_i, 0)$, re-noise to $t_{i+1}$ with fresh noise, repeat; N evaluations.
- `method="chain"`: deterministic $x \leftarrow f_\theta(x, t_i, t_{i+1})$, ending at $s = 0$.
- [`euler_sample`][soflow_toolkit.euler_sample]: plain Euler integration of the velocity read-out, the same model used as a
  flow-matching model.
No guidance is applied at sampling time: a model trained with training-time guidance has learned the
guided field, so 1 NFE stays 1 NFE. A model trained with a range of guidance scales takes the scale to
sample with as an input: `guidance_scale=`. With the wrapper's `check_inputs` on, every network output of a
run is checked for NaN and inf with one host synchronisation, at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from . import _rng
from ._checks import (
    ValueChecks,
    as_times,
    check_batch,
    check_choice,
    check_generator,
    check_int,
    check_same_shape,
)
from .wrapper import as_scales, evaluate_velocity, unwrap_model

__all__ = ["euler_sample", "sample", "time_grid"]


def time_grid(steps: int) -> list[float]:
    """The sampling grid $t_i = 1 - i/N$, $i = 0, \\dots, N-1$ (without the final 0).

    Args:
        steps: the number of steps N >= 1.

    Returns:
        N floats from 1 down to 1/N.

    Examples:
        >>> time_grid(4)
        [1.0, 0.75, 0.5, 0.25]
    """
    steps = check_int(steps, "steps", minimum=1)
    return [1.0 - i / steps for i in range(steps)]


@torch.no_grad()
def sample(
    model: nn.Module,
    noise: Tensor,
    *,
    steps: int = 1,
    cond: Any = None,
    method: Literal["renoise", "chain"] = "renoise",
    generator: torch.Generator | None = None,
    fresh_noise: Sequence[Tensor] | None = None,
    guidance_scale: Tensor | float | None = None,
) -> Tensor:
    r"""Generate samples from noise in `steps` network evaluations.

    With $t_i = 1 - i/N$: `"renoise"` computes $\hat x = f_\theta(x, t_i, 0)$ and, before the last step,
    $x = \alpha(t_{i+1})\,\hat x + \beta(t_{i+1})\,\epsilon_i$ with fresh noise $\epsilon_i$;
    `"chain"` computes $x \leftarrow f_\theta(x, t_i, t_{i+1})$ with $t_N = 0$.

    Args:
        model: a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] (possibly wrapped).
        noise: initial noise $x_1$, `(B, *D)`.
        steps: number of function evaluations N >= 1.
        cond: condition for every evaluation (e.g. class labels).
        method: `"renoise"` (official) or `"chain"` (deterministic).
        generator: random generator for the fresh noise of `"renoise"` (drawn on its device).
        fresh_noise: optional explicit fresh noises, `steps - 1` tensors of `noise`'s shape (makes
            `"renoise"` deterministic; `generator` is then unused).
        guidance_scale: for a model trained with a range of guidance scales
            ([`GuidanceConfig`][soflow_toolkit.GuidanceConfig]`(scale=(low, high))`): the scale
            $\omega$ to sample with, a float or `(B,)` (one per sample), given to every evaluation as
            the keyword `guidance_scale`; it costs no extra evaluation. None (default) passes nothing.

    Returns:
        Samples $\hat x_0$, `(B, *D)`, in `noise`'s dtype.

    Raises:
        ValueError: for `steps < 1`, an unknown method, fresh noises of the wrong number or shape, or
            (checks on) non-finite noise.
        TypeError: for `steps` that is not an int or a `generator` that is not a `torch.Generator`.
        FloatingPointError: (checks on) for a network output with NaN or inf.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> class Net(nn.Module):
        ...     def forward(self, x, t, s):
        ...         return x  # f(x, t, s) = x + (s - t) x
        >>> model = SolutionFlowWrapper(Net())
        >>> sample(model, torch.ones(2, 3))
        tensor([[0., 0., 0.],
                [0., 0., 0.]])
    """
    check_batch(noise, "noise")
    grid = time_grid(steps)
    check_choice(method, "method", ("renoise", "chain"))
    check_generator(generator)
    wrapper = unwrap_model(model)
    checks = ValueChecks(wrapper.check_inputs)
    checks.finite("noise", noise)
    extra = _scale_keyword(guidance_scale, noise, checks)
    if fresh_noise is not None:
        if len(fresh_noise) != steps - 1:
            raise ValueError(f"fresh_noise must hold steps - 1 = {steps - 1} tensors; got {len(fresh_noise)}")
        for i, eps in enumerate(fresh_noise):
            check_same_shape(noise, eps, "noise", "fresh_noise")
            checks.finite(f"fresh_noise[{i}]", eps)
    x = noise
    for i, t_i in enumerate(grid):
        last = i == steps - 1
        s_i = 0.0 if method == "renoise" or last else grid[i + 1]
        x = model(x, t_i, s_i, cond, check_inputs=False, **extra)
        checks.finite(f"the model's output at sampling step {i + 1} of {steps} (t = {t_i:g})", x, output=True)
        if method == "chain" or last:
            continue
        if fresh_noise is not None:
            eps = fresh_noise[i].to(device=noise.device, dtype=noise.dtype)
        else:
            eps = _rng.Draw(generator, noise.device).randn(*noise.shape, dtype=noise.dtype)
        x = wrapper.path.interpolate(x, eps, as_times(grid[i + 1], noise)).to(noise.dtype)
    checks.verify()
    return x


@torch.no_grad()
def euler_sample(
    model: nn.Module,
    noise: Tensor,
    *,
    steps: int = 100,
    cond: Any = None,
    guidance_scale: Tensor | float | None = None,
) -> Tensor:
    r"""Integrate the velocity read-out from $t = 1$ to $0$ with Euler's method.

    $x \leftarrow x + (t_{i+1} - t_i)\,v_\theta(x, t_i)$ on $t_i = 1 - i/N$, $t_N = 0$; this samples the
    model as a flow-matching model (N evaluations).

    Args:
        model: a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper] (possibly wrapped).
        noise: initial noise, `(B, *D)`.
        steps: number of Euler steps N >= 1.
        cond: condition.
        guidance_scale: the guidance scale of a model trained with a range of scales, as for
            [`sample`][soflow_toolkit.sample].

    Returns:
        Samples, `(B, *D)`.

    Raises:
        FloatingPointError: (checks on) for a backbone output with NaN or inf.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from soflow_toolkit import SolutionFlowWrapper
        >>> class Net(nn.Module):
        ...     def forward(self, x, t, s):
        ...         return torch.ones_like(x)  # constant velocity 1
        >>> euler_sample(SolutionFlowWrapper(Net()), torch.ones(1, 2), steps=4)
        tensor([[0., 0.]])
    """
    check_batch(noise, "noise")
    grid = [*time_grid(steps), 0.0]
    wrapper = unwrap_model(model)
    checks = ValueChecks(wrapper.check_inputs)
    checks.finite("noise", noise)
    scale = _scale_keyword(guidance_scale, noise, checks).get("guidance_scale")
    x = noise
    for i, (t_i, t_next) in enumerate(itertools.pairwise(grid)):
        t = as_times(t_i, x)
        what = f"the backbone's output at Euler step {i + 1} of {steps} (t = {t_i:g})"
        velocity = evaluate_velocity(
            model, wrapper.parametrization, x, x, t, cond, checks=checks, what=what, guidance_scale=scale
        )
        x = (x + (t_next - t_i) * velocity).to(noise.dtype)
    checks.verify()
    return x


def _scale_keyword(
    guidance_scale: Tensor | float | None, noise: Tensor, checks: ValueChecks
) -> dict[str, Tensor]:
    """`{"guidance_scale": (B,) tensor}` for the network calls of a run, or `{}` without a scale.

    Converted once, to a tensor, so that a compiled model sees the same input type at every scale.
    """
    if guidance_scale is None:
        return {}
    scale = as_scales(guidance_scale, noise)
    checks.finite("guidance_scale", scale)
    return {"guidance_scale": scale}
