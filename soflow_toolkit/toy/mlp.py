r"""A small MLP backbone $F_\theta(x, t, s[, \text{labels}])$ for points and small flattened data.

[`MLPBackbone`][soflow_toolkit.toy.MLPBackbone] is fed with the two time inputs of the official backbones ($t$ and $t - s$), each
through the sinusoidal [`timestep_embedding`][soflow_toolkit.toy.timestep_embedding], and an optional class embedding with a null class,
for [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper]. The scale of the time embedding is a setting
(`time_scale`): methods that differentiate through the time input (MeanFlow's JVP) see its
frequencies directly, so a fair comparison tunes it for every method.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MLPBackbone", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, *, max_period: float = 10_000.0, scale: float = 1000.0) -> Tensor:
    r"""Sinusoidal features of times: $[\cos(\omega_k \tau), \sin(\omega_k \tau)]_k$ with $\tau = \text{scale}\cdot t$.

    $\omega_k = \text{max\_period}^{-k/(\text{dim}/2)}$, $k = 0, \dots, \text{dim}/2 - 1$ (the DiT/ADM
    embedding); `dim` must be even.

    Args:
        t: `(B,)` times.
        dim: even feature size.
        max_period: the slowest period.
        scale: multiplies the times first (1000 maps [0, 1] to the usual diffusion step range).

    Returns:
        `(B, dim)` features in `t`'s dtype.

    Examples:
        >>> import torch
        >>> timestep_embedding(torch.zeros(3), 8)[0]
        tensor([1., 1., 1., 1., 0., 0., 0., 0.])
    """
    if dim % 2:
        raise ValueError(f"dim must be even; got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    args = scale * t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class MLPBackbone(nn.Module):
    r"""A small MLP backbone $F_\theta(x, t, s[, \text{labels}])$ for points and small flattened data.

    $$h_1 = \mathrm{SiLU}\big(W_1\,[\mathrm{flatten}(x),\ \phi(t),\ \phi(t - s)] + b_1\,[+\,E_y(\text{label})]\big),$$

    $$h_{k+1} = \mathrm{SiLU}(W_{k+1} h_k + b_{k+1}),\quad F = W_{out} h_{\text{depth}} + b_{out},$$

    reshaped to $x$'s shape, where $\phi$ is [`timestep_embedding`][soflow_toolkit.toy.timestep_embedding] (the second time input is the
    gap $t - s$, as in the official backbones, so $s = t$ is always the same input). With
    `num_classes = K` the label embedding $E_y$ has $K + 1$ rows: index $K$ is the null class used for
    condition dropping and classifier-free guidance. The network is deliberately plain and cheap: a
    training step at batch 256 costs a few milliseconds on one CPU core.

    Args:
        dim: number of elements per sample (2 for the toys, 64 for 8×8 images); the input may have any
            trailing shape with that many elements.
        hidden: width of the hidden layers.
        depth: number of hidden layers, >= 1.
        num_classes: number of classes K for class-conditional data, or None.
        frequencies: size of each sinusoidal time feature vector (even).
        time_scale: the `scale` of [`timestep_embedding`][soflow_toolkit.toy.timestep_embedding], > 0: times in [0, 1] are multiplied by
            it before the sinusoids (1000, the default, is the diffusion convention; 1 gives smooth
            features whose derivatives in $t$ are of order 1).

    Shapes:
        `x`: `(B, *D)` with `prod(D) = dim`; `t`, `s`: `(B,)`; `labels`: `(B,)` integers in [0, K]
        (K = null). Output: `(B, *D)`.

    Examples:
        >>> import torch
        >>> from soflow_toolkit import SolutionFlowWrapper, sample
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = SolutionFlowWrapper(MLPBackbone(dim=2, hidden=32, depth=2))
        >>> sample(model, torch.randn(5, 2)).shape
        torch.Size([5, 2])
        >>> conditional = SolutionFlowWrapper(MLPBackbone(dim=64, hidden=32, num_classes=10))
        >>> labels = torch.tensor([3, 10])  # 10 = the null class
        >>> conditional(torch.randn(2, 1, 8, 8), 1.0, 0.0, labels).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        dim: int = 2,
        *,
        hidden: int = 128,
        depth: int = 4,
        num_classes: int | None = None,
        frequencies: int = 32,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth), ("frequencies", frequencies)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLPBackbone: {name} must be a positive int; got {value!r}")
        if frequencies % 2:
            raise ValueError(f"MLPBackbone: frequencies must be even; got {frequencies}")
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"MLPBackbone: num_classes must be a positive int or None; got {num_classes!r}")
        if (
            isinstance(time_scale, bool)
            or not isinstance(time_scale, (int, float))
            or not math.isfinite(time_scale)
            or time_scale <= 0
        ):
            raise ValueError(f"MLPBackbone: time_scale must be a finite number > 0; got {time_scale!r}")
        self.dim = dim
        self.num_classes = num_classes
        self.frequencies = frequencies
        self.time_scale = float(time_scale)
        self.inp = nn.Linear(dim + 2 * frequencies, hidden)
        self.label_embed = nn.Embedding(num_classes + 1, hidden) if num_classes is not None else None
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor | None = None) -> Tensor:
        """Evaluate $F_\\theta(x, t, s[, \\text{labels}])$; see the class docstring for shapes."""
        batch = x.shape[0]
        flat = x.reshape(batch, -1)
        if flat.shape[1] != self.dim:
            raise ValueError(
                f"MLPBackbone(dim={self.dim}) got samples with {flat.shape[1]} elements (x of shape {tuple(x.shape)})"
            )
        dtype = self.inp.weight.dtype
        features = [
            flat.to(dtype),
            timestep_embedding(t, self.frequencies, scale=self.time_scale).to(dtype),
            timestep_embedding(t - s, self.frequencies, scale=self.time_scale).to(dtype),
        ]
        h = self.inp(torch.cat(features, dim=1))
        if self.label_embed is not None:
            if labels is None:
                raise ValueError(
                    f"this MLPBackbone is class-conditional (num_classes={self.num_classes}): pass labels "
                    f"(use {self.num_classes} for the null class)"
                )
            if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (batch,):
                raise ValueError(
                    f"labels must be an integer tensor of shape ({batch},); got dtype {labels.dtype}, "
                    f"shape {tuple(labels.shape)}"
                )
            h = h + self.label_embed(labels)
        elif labels is not None:
            raise ValueError("this MLPBackbone is unconditional (num_classes=None) but got labels")
        h = F.silu(h)
        for layer in self.hidden:
            h = F.silu(layer(h))
        out: Tensor = self.out(h)
        return out.reshape(x.shape).to(x.dtype)
