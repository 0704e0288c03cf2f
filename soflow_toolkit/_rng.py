"""Random numbers: draws on a generator's device, and the random state of paired forward passes.

- `Draw`: every random draw of the package goes through it. A draw happens on the generator's device
  (a CPU generator can feed CUDA data) and the result is moved to `device`, so the numbers depend on
  the generator only, not on where the data lives.
- `RandomState`: the consistency loss evaluates the same network twice per sample (online and
  target). With dropout or any other random layer, both passes must see the same random numbers, as
  in the official code: the global state is captured before the online pass and restored before the
  target pass. `has_random_layers` tells whether a model needs it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import check_generator

__all__ = ["Draw", "RandomState", "has_random_layers"]


class Draw:
    """Random draws from one generator, made on the generator's device and returned on `device`.

    Args:
        generator: the generator, or None for torch's default one (then the draws happen on `device`).
        device: where the results go; None leaves them where they were drawn (the generator's device,
            else CPU).

    Raises:
        TypeError: if `generator` is neither a `torch.Generator` nor None.
    """

    def __init__(
        self, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> None:
        check_generator(generator)
        self.generator = generator
        self.device = device
        self.draw_device = generator.device if generator is not None else device

    def _out(self, x: Tensor) -> Tensor:
        return x if self.device is None else x.to(self.device)

    def randn(self, *shape: int, dtype: torch.dtype | None = None) -> Tensor:
        """Standard normal draws of `shape`."""
        return self._out(torch.randn(shape, generator=self.generator, device=self.draw_device, dtype=dtype))

    def rand(self, *shape: int, dtype: torch.dtype | None = None) -> Tensor:
        """Uniform draws in [0, 1) of `shape`."""
        return self._out(torch.rand(shape, generator=self.generator, device=self.draw_device, dtype=dtype))

    def randint(self, high: int, *shape: int) -> Tensor:
        """Integers in `[0, high)` of `shape`."""
        return self._out(torch.randint(high, shape, generator=self.generator, device=self.draw_device))


@dataclass(frozen=True)
class RandomState:
    """A snapshot of the CPU generator and, for a CUDA device, that device's generator."""

    cpu: Tensor
    cuda: Tensor | None
    device: torch.device

    @classmethod
    def capture(cls, device: torch.device) -> RandomState:
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(cpu=torch.get_rng_state(), cuda=cuda, device=device)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


_RANDOM_LAYERS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_random_layers_cache: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def has_random_layers(model: nn.Module) -> bool:
    """Whether `model` contains a `torch.nn` dropout layer with `p > 0` (cached per model)."""
    if model not in _random_layers_cache:
        _random_layers_cache[model] = any(isinstance(m, _RANDOM_LAYERS) and m.p > 0 for m in model.modules())
    return _random_layers_cache[model]
