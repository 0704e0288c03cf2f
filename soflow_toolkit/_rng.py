"""Saving and restoring the global random state around paired forward passes.

The consistency loss evaluates the same network twice per sample (online and target). With dropout or
any other random layer, both passes must see the same random numbers, as in the official code: the
state is captured before the online pass and restored before the target pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RandomState"]


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
