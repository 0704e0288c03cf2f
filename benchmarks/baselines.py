r"""The methods the benchmarks compare SoFlow with: MeanFlow, shortcut models, few-step flow-matching solvers.

Every method trains the same backbone $F_\theta(x, t, s[, \text{cond}])$, read as the average velocity
from time $t$ to time $s$, so that $x_s \approx x_t - (t - s)\,F_\theta(x_t, t, s)$ and $F_\theta(x, t, t)$
is the instantaneous velocity. Time runs from data ($t = 0$) to noise ($t = 1$), as everywhere in this
project; the velocity is $v = \text{noise} - \text{data}$.

- **MeanFlow** (Geng, Deng, Bai, Kolter & He, "Mean Flows for One-step Generative Modeling",
  arXiv 2505.13447): $u_\theta(z, r, t) = F_\theta(z, t, r)$ regresses
  $u_{\text{tgt}} = v - (t - r)\,\tfrac{d}{dt}u_\theta$, where
  $\tfrac{d}{dt}u_\theta = \partial_z u_\theta\,v + \partial_t u_\theta$ is a Jacobian-vector product with
  tangents $(v, 0, 1)$ for $(z, r, t)$. MeanFlow uses the same time direction as this project. The time
  distributions are the paper's ImageNet one and the two of its PyTorch re-implementation by the
  authors (py-meanflow, `v0` = the paper's CIFAR-10 setting, `v1` = its improved one).
- **Shortcut models** (Frans, Hafner, Levine & Abbeel, "One Step Diffusion via Shortcut Models",
  arXiv 2410.12557): $s_\theta(x_t, t, d) = F_\theta(x_t, t, t - d)$, conditioned on the step size $d$,
  trained with flow matching at $d = 0$ and the self-consistency target
  $s_{\text{tgt}}(x_t, t, 2d) = \tfrac12\big(s_\theta(x_t, t, d) + s_\theta(x'_{t - d}, t - d, d)\big)$,
  $x'_{t-d} = x_t - d\,s_\theta(x_t, t, d)$. The paper's time runs the other way ($t' = 1 - t$: noise at
  $t' = 0$); its step $t' \to t' + d$ is this project's $t \to t - d$.
- **Flow matching with few-step solvers**: the midpoint rule (second order, 2 evaluations a step)
  beside Euler's, for the gap between one SoFlow evaluation and few-step flow matching.

These are written from the papers; the authors' code (py-meanflow, kvfrans/shortcut-models) was read
for facts (constants, batch layout) only.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

# Logit-normal (mean, std) of (t, r) for each MeanFlow time distribution.
MEANFLOW_TIMES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "imagenet": ((-0.4, 1.0), (-0.4, 1.0)),  # the paper's ImageNet setting
    "v0": ((-2.0, 2.0), (-2.0, 2.0)),  # py-meanflow cifar10_v0.sh (the paper's CIFAR-10 setting)
    "v1": ((-0.6, 1.6), (-4.0, 1.6)),  # py-meanflow cifar10_v1.sh (its improved setting)
}


def _expand(t: Tensor, x: Tensor) -> Tensor:
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def _call(backbone: nn.Module, x: Tensor, t: Tensor, s: Tensor, cond: Tensor | None) -> Tensor:
    out: Tensor = backbone(x, t, s) if cond is None else backbone(x, t, s, cond)
    return out


def _logit_normal(n: int, mean: float, std: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    z = torch.randn(n, generator=generator, device=like.device, dtype=like.dtype)
    return torch.sigmoid(mean + std * z)


def drop_labels(labels: Tensor, rate: float, null: int, generator: torch.Generator | None) -> Tensor:
    """Replace each label by the null class `null` with probability `rate`."""
    if rate <= 0:
        return labels
    mask = torch.rand(labels.shape[0], generator=generator, device=labels.device) < rate
    return torch.where(mask, torch.full_like(labels, null), labels)


# ---------------------------------------------------------------------------------------------------
# MeanFlow


@dataclass(frozen=True)
class MeanFlowConfig:
    """The settings of the MeanFlow loss (the paper's ImageNet recipe by default)."""

    noncollapsed: float = 0.25
    """Share of the pairs with r != t (the paper's ImageNet setting 25 %, py-meanflow's CIFAR-10 75 %)."""
    times: Literal["imagenet", "v0", "v1"] = "imagenet"
    """The (t, r) distribution: a key of `MEANFLOW_TIMES`."""
    p: float = 1.0
    """Power of the adaptive weight 1/(||error||^2 + eps)^p."""
    eps: float = 1e-3
    """Offset of the adaptive weight."""
    guidance_scale: float = 1.0
    """omega of the guided velocity omega v + (1 - omega) u(z, t, t | null); 1 = no guidance."""
    drop_rate: float = 0.0
    """Probability of replacing a label by the null class (class-conditional data)."""


def meanflow_times(
    batch: int, config: MeanFlowConfig, like: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """`(t, r)` with `r <= t`: two logit-normal draws; a share `1 - noncollapsed` of the pairs has `r = t`.

    `imagenet` and `v0` sort the draws into `r <= t` and then collapse pairs; `v1` collapses first and
    then takes `r = min(t, r)` (py-meanflow's two samplers).
    """
    (t_mean, t_std), (r_mean, r_std) = MEANFLOW_TIMES[config.times]
    t = _logit_normal(batch, t_mean, t_std, like, generator)
    r = _logit_normal(batch, r_mean, r_std, like, generator)
    collapse = torch.rand(batch, generator=generator, device=like.device) >= config.noncollapsed
    if config.times == "v1":
        return t, torch.minimum(t, torch.where(collapse, t, r))
    t, r = torch.maximum(t, r), torch.minimum(t, r)
    return t, torch.where(collapse, t, r)


def _meanflow_inputs(
    backbone: nn.Module,
    data: Tensor,
    config: MeanFlowConfig,
    cond: Tensor | None,
    null: int | None,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """`(z, t, r, v, cond)`: the noisy point, the times, the (guided) velocity and the dropped labels."""
    batch = data.shape[0]
    noise = torch.randn(data.shape, generator=generator, device=data.device, dtype=data.dtype)
    t, r = meanflow_times(batch, config, data, generator)
    z = (1 - _expand(t, data)) * data + _expand(t, data) * noise
    v = noise - data
    if cond is not None and null is not None:
        cond = drop_labels(cond, config.drop_rate, null, generator)
        if config.guidance_scale != 1:
            with torch.no_grad():
                v_null = _call(backbone, z, t, t, torch.full_like(cond, null))
            guided = config.guidance_scale * v + (1 - config.guidance_scale) * v_null
            v = torch.where(_expand(cond == null, v), v, guided)  # dropped rows keep the plain velocity
    return z, t, r, v, cond


def _meanflow_weighted(u: Tensor, target: Tensor, config: MeanFlowConfig) -> Tensor:
    error = (u - target).pow(2).reshape(u.shape[0], -1).sum(dim=1)  # squared l2 norm, as the authors
    return (error / (error.detach() + config.eps).pow(config.p)).mean()


def meanflow_loss(
    backbone: nn.Module,
    data: Tensor,
    config: MeanFlowConfig,
    *,
    cond: Tensor | None = None,
    null: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The MeanFlow loss with the JVP computed without gradient and one forward with gradient.

    $(\cdot, \dot u) = \mathrm{jvp}(u_\theta, (z, r, t), (v, 0, 1))$ under `no_grad`, then
    $u = u_\theta(z, r, t)$ with gradient, $u_{\text{tgt}} = v - (t - r)\,\dot u$ and the loss
    $\text{mean}_i\,\lVert u_i - u_{\text{tgt},i}\rVert^2 / \mathrm{sg}(\lVert u_i - u_{\text{tgt},i}\rVert^2 + \epsilon)^p$.
    The target is a constant of the gradient, so this has the gradient of :func:`meanflow_loss_jvp_grad`
    (tested) and builds no graph of the tangent computation (the py-meanflow README's advice without
    `torch.compile`). The backbone must not be random (dropout) or the two evaluations differ.

    Returns:
        The scalar loss.
    """
    z, t, r, v, cond = _meanflow_inputs(backbone, data, config, cond, null, generator)

    def u_fn(z_: Tensor, r_: Tensor, t_: Tensor) -> Tensor:
        return _call(backbone, z_, t_, r_, cond)

    with torch.no_grad():
        _, du_dt = torch.func.jvp(u_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    target = v - _expand(t - r, v) * du_dt
    return _meanflow_weighted(u_fn(z, r, t), target, config)


def meanflow_loss_jvp_grad(
    backbone: nn.Module,
    data: Tensor,
    config: MeanFlowConfig,
    *,
    cond: Tensor | None = None,
    null: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The MeanFlow loss as the paper writes it: the JVP's primal output carries the gradient.

    Same value and gradient as :func:`meanflow_loss` (one forward-mode pass with gradient instead of a
    no-grad one plus an ordinary forward); the step-cost benchmark times both.
    """
    z, t, r, v, cond = _meanflow_inputs(backbone, data, config, cond, null, generator)

    def u_fn(z_: Tensor, r_: Tensor, t_: Tensor) -> Tensor:
        return _call(backbone, z_, t_, r_, cond)

    u, du_dt = torch.func.jvp(u_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    target = (v - _expand(t - r, v) * du_dt).detach()
    return _meanflow_weighted(u, target, config)


@torch.no_grad()
def meanflow_sample(
    backbone: nn.Module, noise: Tensor, *, steps: int = 1, cond: Tensor | None = None
) -> Tensor:
    r"""$z_{t_{i+1}} = z_{t_i} - (t_i - t_{i+1})\,u_\theta(z_{t_i}, t_{i+1}, t_i)$ on $t_i = 1 - i/N$."""
    return _average_velocity_steps(backbone, noise, steps, cond, gap_zero_below=None)


def _average_velocity_steps(
    backbone: nn.Module, noise: Tensor, steps: int, cond: Tensor | None, gap_zero_below: float | None
) -> Tensor:
    x = noise
    for i in range(steps):
        t_i, t_next = 1.0 - i / steps, 1.0 - (i + 1) / steps
        t = torch.full((noise.shape[0],), t_i, device=noise.device, dtype=noise.dtype)
        step = t_i - t_next
        # the shortcut's smallest step is queried at d = 0, its flow-matching level
        s = t if gap_zero_below is not None and step <= gap_zero_below else torch.full_like(t, t_next)
        x = x - step * _call(backbone, x, t, s, cond)
    return x


# ---------------------------------------------------------------------------------------------------
# Shortcut models


@dataclass(frozen=True)
class ShortcutConfig:
    """The settings of the shortcut-model loss (the authors' defaults)."""

    bootstrap_fraction: float = 0.125
    """Share of each batch with self-consistency targets (the authors' code: 1/8)."""
    levels: int = 7
    """log2 M: the smallest step is 1/M = 2^-levels (the flow-matching level); M = 128 in the paper."""
    ema_targets: bool = True
    """Build the self-consistency targets with the EMA weights (the authors' default) or the online ones."""
    guidance_scale: float = 1.0
    """CFG scale folded into the targets of the smallest shortcut (the authors' `bootstrap_cfg`)."""
    drop_rate: float = 0.0
    """Probability of replacing a flow-matching row's label by the null class."""


def shortcut_loss(
    backbone: nn.Module,
    data: Tensor,
    config: ShortcutConfig,
    *,
    target: nn.Module | None = None,
    cond: Tensor | None = None,
    null: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The shortcut-model loss: flow matching at $d = 0$ plus self-consistency of two half steps.

    The first $n_b = \lceil fB\rceil$ rows ($f$ = `bootstrap_fraction`) get self-consistency targets: row
    $i$ takes the step $d = 2^{-k}$, $k = i \bmod L$ ($L$ = `levels`, so $d \in \{1, \dots, 2^{1-L}\}$),
    and a start time on that step's grid, $t \in \{d, 2d, \dots, 1\}$; with $h = d/2$ (queried at
    $d = 0$ when $h = 2^{-L}$, the flow-matching level, as in the authors' code),
    $v_1 = s(x_t, t, h)$, $v_2 = s(x_t - h v_1, t - h, h)$ and the target $\tfrac12(v_1 + v_2)$ of
    $s_\theta(x_t, t, d)$, computed without gradient by `target` (the EMA model, or the backbone). The
    other rows regress $v = \text{noise} - \text{data}$ at $d = 0$ with $t \in \{1/M, \dots, 1\}$. Loss:
    the mean squared error over all rows. With guidance, the smallest shortcut's half steps use
    $s_\varnothing + \omega\,(s_c - s_\varnothing)$, so the guidance is learned by every larger step.
    The authors' clipping of the targets to $[-4, 4]$ (for image latents) is left out.

    Returns:
        The scalar loss.
    """
    net = target if target is not None else backbone
    batch, levels = data.shape[0], config.levels
    count = min(batch, math.ceil(config.bootstrap_fraction * batch))
    noise = torch.randn(data.shape, generator=generator, device=data.device, dtype=data.dtype)
    level = torch.arange(count, device=data.device) % levels
    d = torch.pow(2.0, -level.to(data.dtype))  # (count,) full steps
    position = torch.floor(torch.rand(count, generator=generator, device=data.device) * torch.pow(2.0, level))
    t_boot = 1 - position.to(data.dtype) * d
    grid = 2**levels
    t_fm = (
        1
        - torch.randint(grid, (batch - count,), generator=generator, device=data.device).to(data.dtype) / grid
    )
    t = torch.cat([t_boot, t_fm])
    x_t = (1 - _expand(t, data)) * data + _expand(t, data) * noise

    half = d / 2
    gap = torch.where(level + 1 == levels, torch.zeros_like(half), half)
    boot_x, boot_cond = x_t[:count], None if cond is None else cond[:count]
    with torch.no_grad():
        guided_rows = (level + 1 == levels) if config.guidance_scale != 1 and cond is not None else None

        def velocity(x: Tensor, time: Tensor) -> Tensor:
            out = _call(net, x, time, time - gap, boot_cond)
            if guided_rows is None or null is None or boot_cond is None:
                return out
            uncond = _call(net, x, time, time - gap, torch.full_like(boot_cond, null))
            guided = uncond + config.guidance_scale * (out - uncond)
            return torch.where(_expand(guided_rows, out), guided, out)

        v1 = velocity(boot_x, t_boot)
        v2 = velocity(boot_x - _expand(half, boot_x) * v1, t_boot - half)
        boot_target = (v1 + v2) / 2
    fm_cond = None
    if cond is not None:
        fm_cond = (
            cond[count:] if null is None else drop_labels(cond[count:], config.drop_rate, null, generator)
        )
        cond = torch.cat([cond[:count], fm_cond])
    targets = torch.cat([boot_target, (noise - data)[count:]])
    s = torch.cat([t_boot - d, t_fm])  # d = 0 (s = t) on the flow-matching rows
    prediction = _call(backbone, x_t, t, s, cond)
    return (prediction - targets).pow(2).mean()


@torch.no_grad()
def shortcut_sample(
    backbone: nn.Module, noise: Tensor, *, steps: int = 1, levels: int = 7, cond: Tensor | None = None
) -> Tensor:
    r"""$x \leftarrow x - d\,s_\theta(x, t, d)$ with $d = 1/N$ from $t = 1$ ($d = 0$ when $N = 2^{L}$)."""
    return _average_velocity_steps(backbone, noise, steps, cond, gap_zero_below=2.0**-levels)


# ---------------------------------------------------------------------------------------------------
# Flow matching samplers


@torch.no_grad()
def euler_fm_sample(backbone: nn.Module, noise: Tensor, *, steps: int, cond: Tensor | None = None) -> Tensor:
    r"""Euler integration of $\dot x = F_\theta(x, t, t)$ from $t = 1$ to 0: `steps` evaluations."""
    x = noise
    for i in range(steps):
        t = torch.full((noise.shape[0],), 1.0 - i / steps, device=noise.device, dtype=noise.dtype)
        x = x - _call(backbone, x, t, t, cond) / steps
    return x


@torch.no_grad()
def midpoint_fm_sample(
    backbone: nn.Module, noise: Tensor, *, steps: int, cond: Tensor | None = None
) -> Tensor:
    r"""The explicit midpoint rule for $\dot x = F_\theta(x, t, t)$ from 1 to 0: `2 * steps` evaluations.

    $x_{t - h} = x_t - h\,F_\theta\big(x_t - \tfrac h2 F_\theta(x_t, t, t),\ t - \tfrac h2\big)$, $h = 1/N$.
    """
    x, h = noise, 1.0 / steps
    for i in range(steps):
        t = torch.full((noise.shape[0],), 1.0 - i * h, device=noise.device, dtype=noise.dtype)
        mid_t = t - h / 2
        mid = x - (h / 2) * _call(backbone, x, t, t, cond)
        x = x - h * _call(backbone, mid, mid_t, mid_t, cond)
    return x


def math_attention() -> contextlib.AbstractContextManager[Any]:
    """A context forcing the math SDPA kernel (forward-mode AD has no rule for the fused kernels)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)
