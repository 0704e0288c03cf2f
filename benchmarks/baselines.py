r"""Baselines the benchmarks compare SoFlow with: plain flow matching and MeanFlow (JVP).

MeanFlow (Geng et al., arXiv 2505.13447) learns the average velocity $u_\theta(z, r, t)$ with the
target $u_{\text{tgt}} = v - (t - r)\,\tfrac{d}{dt}u_\theta$, where
$\tfrac{d}{dt}u_\theta = \partial_z u_\theta\,v + \partial_t u_\theta$ is a Jacobian-vector product with
tangents $(v, 0, 1)$ for $(z, r, t)$ (docs: method, why no JVP). Time runs from data ($t = 0$) to noise ($t = 1$)
as everywhere in this project, so the one-step sample is $\text{noise} - u_\theta(\text{noise}, 0, 1)$.

The network is a toolkit backbone `F(x, t, s[, cond])` read as $u_\theta(z, r, t) = F(z, t, r)$, so the
same module trains under every method.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import torch
from torch import Tensor, nn

from soflow_toolkit import drop_condition, logit_normal_times
from soflow_toolkit.wrapper import call_backbone


def _expand(t: Tensor, x: Tensor) -> Tensor:
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def meanflow_times(
    batch: int,
    *,
    flow_ratio: float = 0.75,
    mean: float = -0.4,
    std: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """MeanFlow's time pairs: two logit-normal draws sorted into `r <= t`; a share `flow_ratio` has `r = t`.

    Returns:
        `(t, r)`, each `(batch,)`.
    """
    a = logit_normal_times(batch, mean=mean, std=std, device=device, dtype=dtype, generator=generator)
    b = logit_normal_times(batch, mean=mean, std=std, device=device, dtype=dtype, generator=generator)
    t, r = torch.maximum(a, b), torch.minimum(a, b)
    same = torch.rand(batch, device=device, generator=generator) < flow_ratio
    return t, torch.where(same, t, r)


def meanflow_loss(
    backbone: nn.Module,
    data: Tensor,
    *,
    cond: Any = None,
    null_cond: Any = None,
    guidance_scale: float = 1.0,
    drop_mask: Tensor | None = None,
    flow_ratio: float = 0.75,
    p: float = 1.0,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""One MeanFlow training loss with `torch.func.jvp`.

    $z = (1 - t)\,\text{data} + t\,\text{noise}$, $v = \text{noise} - \text{data}$ (or the guided
    $\tilde v = \omega v + (1 - \omega)\,u_\theta(z, t, t \mid \varnothing)$ when `guidance_scale` > 1),
    $(u, \dot u) = \mathrm{jvp}(u_\theta, (z, r, t), (\tilde v, 0, 1))$,
    $u_{\text{tgt}} = \tilde v - (t - r)\,\dot u$, loss $= \text{mean}_i\,w_i\,\lVert u_i - \mathrm{sg}(u_{\text{tgt},i})\rVert^2$
    with $w_i = 1/(\mathrm{sg}(\text{mse}_i) + \epsilon)^p$.

    Returns:
        `(loss, mse)`: the scalar to back-propagate and the detached mean squared error.
    """
    batch = data.shape[0]
    noise = torch.randn(data.shape, device=data.device, dtype=data.dtype, generator=generator)
    t, r = meanflow_times(
        batch, flow_ratio=flow_ratio, device=data.device, dtype=data.dtype, generator=generator
    )
    z = (1 - _expand(t, data)) * data + _expand(t, data) * noise
    v = noise - data
    if drop_mask is not None:
        cond = drop_condition(cond, drop_mask, null_cond)
    if guidance_scale > 1:
        uncond = drop_condition(cond, torch.ones(batch, dtype=torch.bool, device=data.device), null_cond)
        with torch.no_grad():
            v_uncond = call_backbone(backbone, z, t, t, uncond)
        guided = guidance_scale * v + (1 - guidance_scale) * v_uncond
        v = guided if drop_mask is None else torch.where(_expand(drop_mask, v), v, guided)

    def u_fn(z_: Tensor, r_: Tensor, t_: Tensor) -> Tensor:
        return call_backbone(backbone, z_, t_, r_, cond)

    u, du_dt = torch.func.jvp(u_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    target = (v - _expand(t - r, v) * du_dt).detach()
    per_sample = (u - target).pow(2).reshape(batch, -1).mean(dim=1)
    weight = 1.0 / (per_sample.detach() + eps).pow(p)
    return (weight * per_sample).mean(), per_sample.detach().mean()


@torch.no_grad()
def meanflow_sample(backbone: nn.Module, noise: Tensor, *, steps: int = 1, cond: Any = None) -> Tensor:
    r"""MeanFlow sampling: $z_{t_{i+1}} = z_{t_i} - (t_i - t_{i+1})\,u_\theta(z_{t_i}, t_{i+1}, t_i)$ on $t_i = 1 - i/N$."""
    z = noise
    grid = [1.0 - i / steps for i in range(steps + 1)]
    for t_i, t_next in itertools.pairwise(grid):
        t = torch.full((noise.shape[0],), t_i, device=noise.device, dtype=noise.dtype)
        r = torch.full_like(t, t_next)
        z = z - (t_i - t_next) * call_backbone(backbone, z, t, r, cond)
    return z


def math_attention() -> contextlib.AbstractContextManager[Any]:
    """A context forcing the math SDPA kernel (forward-mode AD has no rule for the fused kernels)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)
