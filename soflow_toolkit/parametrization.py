r"""Parametrizations $f_\theta(x_t, t, s) = a(t, s)\,x_t + b(t, s)\,F_\theta(x_t, t, s)$ (SoFlow §3).

Because $a(t, t) = 1$ and $b(t, t) = 0$, the boundary condition $f_\theta(x, t, t) = x$ holds for
every network, and the model's velocity is read off without autograd:
$v_\theta(x, t) = \partial_s a(t, t)\,x + \partial_s b(t, t)\,F_\theta(x, t, t)$.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import expand_like

__all__ = ["EulerParametrization", "Parametrization", "TrigParametrization", "get_parametrization"]


class Parametrization:
    r"""Base class of solution-function parametrizations $f = a(t,s)\,x + b(t,s)\,F$.

    Subclasses implement `a`, `b` (for `(B,)` times `t`, `s`) and their $s$-derivatives at $s = t$,
    `da_ds` and `db_ds` (for `(B,)` times `t`). They must satisfy $a(t, t) = 1$ and $b(t, t) = 0$.

    Examples:
        >>> import torch
        >>> class Quadratic(Parametrization):
        ...     name = "quadratic"
        ...     def a(self, t, s): return torch.ones_like(t)
        ...     def b(self, t, s): return (s - t) + (s - t) ** 2
        ...     def da_ds(self, t): return torch.zeros_like(t)
        ...     def db_ds(self, t): return torch.ones_like(t)
        >>> Quadratic().b(torch.tensor([0.5]), torch.tensor([0.5]))
        tensor([0.])
    """

    name: str = "custom"

    def a(self, t: Tensor, s: Tensor) -> Tensor:
        """Coefficient of $x_t$, shape `(B,)`."""
        raise NotImplementedError

    def b(self, t: Tensor, s: Tensor) -> Tensor:
        """Coefficient of the backbone output, shape `(B,)`."""
        raise NotImplementedError

    def da_ds(self, t: Tensor) -> Tensor:
        r"""$\partial_s a(t, s)$ at $s = t$, shape `(B,)`."""
        raise NotImplementedError

    def db_ds(self, t: Tensor) -> Tensor:
        r"""$\partial_s b(t, s)$ at $s = t$, shape `(B,)`."""
        raise NotImplementedError

    def solution(self, x_t: Tensor, backbone_output: Tensor, t: Tensor, s: Tensor) -> Tensor:
        r"""$f = a(t, s)\,x_t + b(t, s)\,F$ from the backbone output $F$.

        Args:
            x_t: states, shape `(B, *D)`.
            backbone_output: $F_\theta(x_t, t, s)$, shape `(B, *D)`.
            t: start times, shape `(B,)`.
            s: end times, shape `(B,)`.

        Returns:
            $f$, shape `(B, *D)`, in the promoted dtype of the inputs.
        """
        return expand_like(self.a(t, s), x_t) * x_t + expand_like(self.b(t, s), x_t) * backbone_output

    def velocity(self, x_t: Tensor, backbone_output: Tensor, t: Tensor) -> Tensor:
        r"""$v = \partial_s a(t,t)\,x_t + \partial_s b(t,t)\,F_\theta(x_t, t, t)$.

        Args:
            x_t: states, shape `(B, *D)`.
            backbone_output: $F_\theta(x_t, t, t)$, shape `(B, *D)`.
            t: times, shape `(B,)`.

        Returns:
            $v$, shape `(B, *D)`.
        """
        return expand_like(self.da_ds(t), x_t) * x_t + expand_like(self.db_ds(t), x_t) * backbone_output

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EulerParametrization(Parametrization):
    r"""Euler: $a = 1$, $b = s - t$, so $f = x_t + (s - t)\,F$ and $v_\theta = F_\theta(x, t, t)$.

    Examples:
        >>> import torch
        >>> p = EulerParametrization()
        >>> p.solution(torch.ones(1, 2), torch.ones(1, 2), torch.tensor([1.0]), torch.tensor([0.0]))
        tensor([[0., 0.]])
    """

    name = "euler"

    def a(self, t: Tensor, s: Tensor) -> Tensor:
        return torch.ones_like(t)

    def b(self, t: Tensor, s: Tensor) -> Tensor:
        return s - t

    def da_ds(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def db_ds(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


class TrigParametrization(Parametrization):
    r"""Trigonometric: $a = \cos(\pi(s - t)/2)$, $b = \sin(\pi(s - t)/2)$; $v_\theta = \tfrac{\pi}{2}F_\theta(x,t,t)$.

    Examples:
        >>> import torch
        >>> TrigParametrization().db_ds(torch.tensor([0.3]))
        tensor([1.5708])
    """

    name = "trig"

    def a(self, t: Tensor, s: Tensor) -> Tensor:
        return torch.cos((s - t) * (math.pi / 2))

    def b(self, t: Tensor, s: Tensor) -> Tensor:
        return torch.sin((s - t) * (math.pi / 2))

    def da_ds(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def db_ds(self, t: Tensor) -> Tensor:
        return torch.full_like(t, math.pi / 2)


_PARAMETRIZATIONS: dict[str, type[Parametrization]] = {
    "euler": EulerParametrization,
    "trig": TrigParametrization,
}


def get_parametrization(parametrization: str | Parametrization) -> Parametrization:
    """Resolve a name (`"euler"`, `"trig"`) or pass a [`Parametrization`][soflow_toolkit.Parametrization] object through.

    A custom object is checked numerically for the boundary condition $a(t,t) = 1$, $b(t,t) = 0$.

    Raises:
        ValueError: for an unknown name, or a custom object that violates the boundary condition.
        TypeError: for anything that is neither a string nor a [`Parametrization`][soflow_toolkit.Parametrization].

    Examples:
        >>> get_parametrization("euler")
        EulerParametrization()
    """
    if isinstance(parametrization, str):
        try:
            return _PARAMETRIZATIONS[parametrization.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown parametrization {parametrization!r}; expected one of "
                f"{sorted(_PARAMETRIZATIONS)} or a Parametrization object"
            ) from None
    if not isinstance(parametrization, Parametrization):
        raise TypeError(
            f"parametrization must be a string or a Parametrization; got {type(parametrization).__name__}"
        )
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)
    a, b = parametrization.a(grid, grid), parametrization.b(grid, grid)
    if not (torch.allclose(a, torch.ones_like(a)) and torch.allclose(b, torch.zeros_like(b))):
        raise ValueError(
            f"{type(parametrization).__name__} violates the boundary condition a(t, t) = 1, b(t, t) = 0 "
            f"(max |a - 1| = {float((a - 1).abs().max()):.3g}, max |b| = {float(b.abs().max()):.3g})"
        )
    return parametrization
