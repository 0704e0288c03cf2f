r"""Exponential moving average of model weights, as used by the official recipes.

$\bar\theta \leftarrow \gamma\,\bar\theta + (1 - \gamma)\,\theta$ every `every` calls of
[`EMA.update`][soflow_toolkit.EMA.update], optionally kept in a wider dtype (the CIFAR-10 recipe keeps float64 averages and
updates every 16 steps; ImageNet updates every step in the parameters' dtype). With `warmup=True` the
decay starts small and grows to $\gamma$, so that short runs do not average in the initial weights.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


def _named_state(model: nn.Module) -> dict[str, Tensor]:
    """Floating parameters and buffers of the module (unwrapping DDP/compile by name prefixes)."""
    from .wrapper import unwrap_model

    with contextlib.suppress(TypeError):
        model = unwrap_model(model)
    state: dict[str, Tensor] = dict(model.named_parameters())
    state.update({name: b for name, b in model.named_buffers() if b.is_floating_point()})
    return state


class EMA:
    r"""Exponential moving average of a model's floating parameters and buffers.

    $\bar\theta \leftarrow \gamma_k\,\bar\theta + (1 - \gamma_k)\,\theta$ on every `every`-th call of
    [`update`][soflow_toolkit.EMA.update], $k = 0, 1, \dots$ counting the applied updates (the first average is the initial
    weights), with

    $$\gamma_k = \gamma \quad\text{or, with warm-up,}\quad \gamma_k = \min\Big(\gamma, \frac{1 + k}{10 + k}\Big).$$

    Without warm-up the initial weights keep the share $\gamma^n$ of the average after $n$ updates
    (37 % after $1/(1 - \gamma)$ of them: 1000 steps for $\gamma = 0.999$), which matters in short runs.
    With warm-up $\gamma_0 = 0.1$: the first update moves the average 90 % of the way to the weights,
    and the decay reaches $\gamma$ after about $9\gamma/(1 - \gamma)$ updates (9,000 for 0.999), so early
    in training the average covers a window that grows with the run (about a tenth of its length),
    and later the usual horizon $1/(1 - \gamma)$.

    Args:
        model: the model to average (a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper], possibly inside
            DDP or `torch.compile`, or any module).
        decay: $\gamma \in [0, 1)$.
        every: apply the update on every `every`-th call (1 = every step).
        dtype: dtype of the averages (e.g. `torch.float64`); default: each tensor's own dtype.
        warmup: use the warm-up decay $\min(\gamma, (1 + k)/(10 + k))$.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Linear(2, 2)
        >>> ema = EMA(net, decay=0.5)
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(1.0)
        >>> ema.update(net)
        >>> averaged = nn.Linear(2, 2)
        >>> ema.copy_to(averaged)
        >>> torch.allclose(averaged.weight, net.weight - 0.5)
        True

        With warm-up the first update uses the decay 0.1 instead of 0.999:

        >>> warm = EMA(net, decay=0.999, warmup=True)
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(1.0)
        >>> warm.current_decay, round(float((warm.shadow["weight"] - net.weight.detach()).max()), 3)
        (0.1, -1.0)
        >>> warm.update(net)
        >>> round(warm.current_decay, 4), round(float((warm.shadow["weight"] - net.weight.detach()).max()), 3)
        (0.1818, -0.1)
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.9999,
        *,
        every: int = 1,
        dtype: torch.dtype | None = None,
        warmup: bool = False,
    ) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be a number in [0, 1); got {decay!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"EMA every must be an int >= 1; got {every!r}")
        if not isinstance(warmup, bool):
            raise TypeError(f"EMA warmup must be a bool; got {type(warmup).__name__}")
        self.decay = float(decay)
        self.every = every
        self.warmup = warmup
        self.num_calls = 0
        self.shadow: dict[str, Tensor] = {
            name: value.detach().clone().to(dtype or value.dtype)
            for name, value in _named_state(model).items()
        }

    @property
    def current_decay(self) -> float:
        r"""The decay $\gamma_k$ that the next applied update uses."""
        if not self.warmup:
            return self.decay
        k = self.num_calls // self.every  # updates applied so far
        return min(self.decay, (1 + k) / (10 + k))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Count one training step; on every `every`-th count, move the averages towards `model`."""
        if (self.num_calls + 1) % self.every:
            self.num_calls += 1
            return
        decay = self.current_decay
        self.num_calls += 1
        state = _named_state(model)
        if state.keys() != self.shadow.keys():
            missing = sorted(set(self.shadow) ^ set(state))[:5]
            raise ValueError(f"the model's parameters differ from those the EMA was built with: {missing}")
        names = list(self.shadow)
        averages = [self.shadow[n] for n in names]
        current = [state[n].detach().to(self.shadow[n].dtype) for n in names]
        torch._foreach_lerp_(averages, current, 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averages into `model` (same architecture), casting to its dtypes."""
        state = _named_state(model)
        for name, value in self.shadow.items():
            if name not in state:
                raise ValueError(f"the model has no parameter or buffer named {name!r}")
            state[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """Averages and counters, loadable with `torch.load(weights_only=True)`."""
        return {
            "decay": self.decay,
            "every": self.every,
            "warmup": self.warmup,
            "num_calls": self.num_calls,
            "shadow": dict(self.shadow),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what [`state_dict`][soflow_toolkit.EMA.state_dict] saved (a state saved before `warmup` existed loads as no warm-up)."""
        shadow = state["shadow"]
        if shadow.keys() != self.shadow.keys():
            raise ValueError("the saved EMA holds different parameter names than this EMA")
        for name, value in shadow.items():
            self.shadow[name].copy_(value)
        self.decay = float(state["decay"])
        self.every = int(state["every"])
        self.warmup = bool(state.get("warmup", False))
        self.num_calls = int(state["num_calls"])
