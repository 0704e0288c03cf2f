"""Noising paths $x_t = \\alpha(t)\\,\\text{data} + \\beta(t)\\,\\text{noise}$ (SoFlow, arXiv 2512.15657, §2).

Time runs from data ($t = 0$) to noise ($t = 1$). A path is a plain Python object (not a module):
subclass [`NoisePath`][soflow_toolkit.NoisePath] and implement the four coefficient methods to add your own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import expand_like

__all__ = ["LinearPath", "NoisePath", "TrigPath", "get_path"]


class NoisePath:
    r"""Base class of noising paths $x_t = \alpha(t)\,\text{data} + \beta(t)\,\text{noise}$.

    Subclasses implement $\alpha$, $\beta$ and their time derivatives $\alpha'$, $\beta'$ for
    `(B,)` time tensors. The conditional velocity is $v = \alpha'(t)\,\text{data} + \beta'(t)\,\text{noise}$.
    A valid path has $\alpha(0) = 1, \beta(0) = 0$ (data at $t = 0$) and $\alpha(1) = 0, \beta(1) = 1$
    (noise at $t = 1$).

    Examples:
        >>> import torch
        >>> class QuadraticPath(NoisePath):
        ...     name = "quadratic"
        ...     def alpha(self, t): return 1 - t**2
        ...     def beta(self, t): return t**2
        ...     def d_alpha(self, t): return -2 * t
        ...     def d_beta(self, t): return 2 * t
        >>> QuadraticPath().beta(torch.tensor([0.5]))
        tensor([0.2500])
    """

    name: str = "custom"

    def alpha(self, t: Tensor) -> Tensor:
        """Coefficient of the data, $\\alpha(t)$, for times of shape `(B,)`."""
        raise NotImplementedError

    def beta(self, t: Tensor) -> Tensor:
        """Coefficient of the noise, $\\beta(t)$, for times of shape `(B,)`."""
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        """Time derivative $\\alpha'(t)$, for times of shape `(B,)`."""
        raise NotImplementedError

    def d_beta(self, t: Tensor) -> Tensor:
        """Time derivative $\\beta'(t)$, for times of shape `(B,)`."""
        raise NotImplementedError

    def interpolate(self, data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        r"""The noisy state $x_t = \alpha(t)\,\text{data} + \beta(t)\,\text{noise}$.

        Args:
            data: clean samples, shape `(B, *D)`.
            noise: Gaussian noise, shape `(B, *D)`.
            t: times in [0, 1], shape `(B,)`.

        Returns:
            $x_t$, shape `(B, *D)`, in the promoted dtype of the inputs.
        """
        return expand_like(self.alpha(t), data) * data + expand_like(self.beta(t), noise) * noise

    def velocity(self, data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        r"""The conditional velocity $v = \frac{d x_t}{dt} = \alpha'(t)\,\text{data} + \beta'(t)\,\text{noise}$.

        Args:
            data: clean samples, shape `(B, *D)`.
            noise: Gaussian noise, shape `(B, *D)`.
            t: times in [0, 1], shape `(B,)`.

        Returns:
            $v$, shape `(B, *D)`.
        """
        return expand_like(self.d_alpha(t), data) * data + expand_like(self.d_beta(t), noise) * noise

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearPath(NoisePath):
    r"""The linear (rectified-flow) path: $\alpha(t) = 1 - t$, $\beta(t) = t$, so $v = \text{noise} - \text{data}$.

    Examples:
        >>> import torch
        >>> path = LinearPath()
        >>> data, noise = torch.zeros(2, 3), torch.ones(2, 3)
        >>> path.interpolate(data, noise, torch.tensor([0.25, 1.0]))[:, 0]
        tensor([0.2500, 1.0000])
    """

    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def beta(self, t: Tensor) -> Tensor:
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -1.0)

    def d_beta(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


class TrigPath(NoisePath):
    r"""The trigonometric path: $\alpha(t) = \cos(\pi t/2)$, $\beta(t) = \sin(\pi t/2)$.

    $\alpha'(t) = -\tfrac{\pi}{2}\sin(\pi t/2)$, $\beta'(t) = \tfrac{\pi}{2}\cos(\pi t/2)$.

    Examples:
        >>> import torch
        >>> TrigPath().beta(torch.tensor([1.0]))
        tensor([1.])
    """

    name = "trig"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(t * (math.pi / 2))

    def beta(self, t: Tensor) -> Tensor:
        return torch.sin(t * (math.pi / 2))

    def d_alpha(self, t: Tensor) -> Tensor:
        return -(math.pi / 2) * torch.sin(t * (math.pi / 2))

    def d_beta(self, t: Tensor) -> Tensor:
        return (math.pi / 2) * torch.cos(t * (math.pi / 2))


_PATHS: dict[str, type[NoisePath]] = {"linear": LinearPath, "trig": TrigPath}


def get_path(path: str | NoisePath) -> NoisePath:
    """Resolve a path name (`"linear"`, `"trig"`) or pass a [`NoisePath`][soflow_toolkit.NoisePath] object through.

    Raises:
        ValueError: for an unknown name.
        TypeError: for anything that is neither a string nor a [`NoisePath`][soflow_toolkit.NoisePath].

    Examples:
        >>> get_path("trig")
        TrigPath()
    """
    if isinstance(path, NoisePath):
        return path
    if isinstance(path, str):
        try:
            return _PATHS[path.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown path {path!r}; expected one of {sorted(_PATHS)} or a NoisePath object"
            ) from None
    raise TypeError(f"path must be a string or a NoisePath; got {type(path).__name__}")
