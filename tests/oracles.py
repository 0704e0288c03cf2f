r"""Closed-form backbones for the tests, and a small random backbone for property tests.

**The Gaussian oracle.** For data $\sim \mathcal N(\mu, \sigma^2 I)$ and the linear path
$x_t = (1 - t)\,\text{data} + t\,\text{noise}$ (docs: method, the noising path), the marginal of $x_t$ is
$\mathcal N(m_t, s_t^2 I)$ with

$$m_t = (1 - t)\,\mu, \qquad s_t = \sqrt{(1 - t)^2 \sigma^2 + t^2}.$$

Writing $x = m_t + s_t z$, the probability-flow ODE keeps the standardized coordinate $z$ fixed, so
its solution map from $t$ to $s$ is affine:

$$f^*(x, t, s) = m_s + \frac{s_s}{s_t}\,(x - m_t),$$

and the marginal velocity is $v^*(x, t) = \mathbb E[\text{noise} - \text{data} \mid x_t = x]
= \partial_s f^*(x, t, s)|_{s=t} = -\mu + \frac{t - (1 - t)\sigma^2}{s_t^2}\,(x - m_t)$.

With the euler parametrization $f = x + (s - t)\,F$, the backbone that reproduces $f^*$ is
$F^* = (f^*(x, t, s) - x)/(s - t)$ for $s \ne t$ and $v^*(x, t)$ at $s = t$. The division is removed
in closed form: since $s_s^2 - s_t^2 = (s - t)\,[(s + t) - (2 - s - t)\sigma^2]$,

$$F^*(x, t, s) = -\mu + \frac{g(t, s)}{s_t}\,(x - m_t), \qquad
  g(t, s) = \frac{s_s - s_t}{s - t} = \frac{(s + t) - (2 - s - t)\sigma^2}{s_s + s_t},$$

which is smooth across $s = t$ (no branch, no cancellation) and equals $v^*$ there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _per_sample(values: Tensor, x: Tensor) -> Tensor:
    """`(B,)` -> `(B, 1, ..., 1)` broadcasting against `x` (the tests' own copy of the helper)."""
    return values.reshape(values.shape[0], *([1] * (x.ndim - 1)))


def marginal_mean(mu: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """$m_t = (1 - t)\\mu$, broadcast to `x`'s shape."""
    return (1 - _per_sample(t, x)) * mu


def marginal_std(sigma: float, t: Tensor) -> Tensor:
    """$s_t = \\sqrt{(1 - t)^2 \\sigma^2 + t^2}$ for `(B,)` times."""
    return torch.sqrt((1 - t) ** 2 * sigma**2 + t**2)


def exact_solution(x: Tensor, t: Tensor, s: Tensor, mu: Tensor, sigma: float) -> Tensor:
    """The exact probability-flow solution map $f^*(x, t, s) = m_s + (s_s/s_t)(x - m_t)$."""
    ratio = marginal_std(sigma, s) / marginal_std(sigma, t)
    return marginal_mean(mu, s, x) + _per_sample(ratio, x) * (x - marginal_mean(mu, t, x))


def exact_velocity(x: Tensor, t: Tensor, mu: Tensor, sigma: float) -> Tensor:
    """The marginal velocity $v^*(x, t) = -\\mu + \\frac{t - (1-t)\\sigma^2}{s_t^2}(x - m_t)$."""
    gain = (t - (1 - t) * sigma**2) / marginal_std(sigma, t) ** 2
    return -mu + _per_sample(gain, x) * (x - marginal_mean(mu, t, x))


def posterior_data_noise(x_t: Tensor, t: Tensor, mu: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    r"""$(\mathbb E[\text{data} \mid x_t], \mathbb E[\text{noise} \mid x_t])$, by Gaussian conditioning.

    $\mathrm{Cov}(\text{data}, x_t) = (1 - t)\sigma^2$, $\mathrm{Cov}(\text{noise}, x_t) = t$,
    $\mathrm{Var}(x_t) = s_t^2$. These two satisfy $(1 - t)\,d + t\,n = x_t$ and $n - d = v^*(x_t, t)$:
    used as `data` and `noise` of a loss, they make the conditional velocity the marginal one.
    """
    centred = x_t - marginal_mean(mu, t, x_t)
    var = _per_sample(marginal_std(sigma, t) ** 2, x_t)
    data = mu + _per_sample((1 - t) * sigma**2, x_t) / var * centred
    noise = _per_sample(t, x_t) / var * centred
    return data, noise


class GaussianOracle(nn.Module):
    r"""The backbone $F^*$ whose euler solution function is the exact solution map $f^*$.

    `SolutionFlowWrapper(GaussianOracle(mu, sigma))` (linear path, euler parametrization) returns
    $f^*(x, t, s)$ and its `velocity` is $v^*(x, t)$.

    Two parameters, zero by default, perturb it away from the optimum:
    $F = F^* + \delta + \gamma\,(x - m_t)/s_t$, with `perturbation` $\delta$ of one sample's shape
    (an offset in any direction) and `gain` $\gamma$ a scalar (a state-dependent error).

    Args:
        mu: the data mean, one sample's shape `D`.
        sigma: the data standard deviation, >= 0 (0 = every data point is `mu`; then times must be > 0).
        perturbation: optional offset $\delta$ of shape `D`.
        gain: optional scalar $\gamma$.
    """

    def __init__(
        self, mu: Tensor, sigma: float, perturbation: Tensor | None = None, gain: float = 0.0
    ) -> None:
        super().__init__()
        self.register_buffer("mu", mu.clone())
        self.sigma = float(sigma)
        offset = torch.zeros_like(mu) if perturbation is None else perturbation.to(mu).clone()
        self.perturbation = nn.Parameter(offset)
        self.gain = nn.Parameter(torch.tensor(float(gain), dtype=mu.dtype))

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        std_t, std_s = marginal_std(self.sigma, t), marginal_std(self.sigma, s)
        # g(t, s) = (std_s - std_t) / (s - t) without the division by s - t.
        g = ((s + t) - (2 - s - t) * self.sigma**2) / (std_s + std_t)
        z = (x - marginal_mean(self.mu, t, x)) / _per_sample(std_t, x)
        return -self.mu + _per_sample(g, x) * z + self.perturbation + self.gain * z


class RandomBackbone(nn.Module):
    """A small random MLP $F(x, t, s)$ for any sample shape, for property tests.

    Each sample is flattened, concatenated with `(t, s)` (and optionally a class embedding) and mapped
    through one tanh layer back to the sample's shape. Samples do not interact, so derivatives of one
    sample's output with respect to its own times are well defined. Inputs are cast to the weights'
    dtype and the output to the input's dtype, so bf16 inputs work with float32 weights.

    Args:
        sample_shape: the trailing shape `D` of the data.
        hidden: width of the hidden layer.
        seed: seed of the weights (a private generator; the global one is not touched).
        dtype: dtype of the weights.
        num_classes: if given, the backbone takes labels `y` of shape `(B,)` with values in
            `0..num_classes` (the last index is the null class).
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        *,
        hidden: int = 8,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        numel = 1
        for size in sample_shape:
            numel *= size
        g = torch.Generator().manual_seed(seed)

        def init(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g, dtype=dtype) / max(shape[0], 1) ** 0.5)

        self.w_in = init(numel + 2, hidden)
        self.b_in = init(1, hidden)
        self.w_out = init(hidden, numel)
        self.b_out = init(1, numel)
        self.embed = init(num_classes + 1, hidden) if num_classes is not None else None

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None = None) -> Tensor:
        dtype = self.w_in.dtype
        features = torch.cat(
            [x.reshape(x.shape[0], -1).to(dtype), t[:, None].to(dtype), s[:, None].to(dtype)], 1
        )
        pre = features @ self.w_in + self.b_in
        if y is not None:
            if self.embed is None:
                raise TypeError("this RandomBackbone takes no labels")
            pre = pre + self.embed[y]
        return (torch.tanh(pre) @ self.w_out + self.b_out).reshape(x.shape).to(x.dtype)
