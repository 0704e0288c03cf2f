"""Loading the official parity vectors and the tiny backbone they were produced with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

VECTORS = Path(__file__).parent / "data" / "soflow_official_vectors.pt"

PATHS = {"Linear": "linear", "Trig": "trig"}
PARAMETRIZATIONS = {"Euler": "euler", "Trig": "trig"}


def load_vectors() -> dict[str, Any]:
    return torch.load(VECTORS, weights_only=True)


class ReferenceNet(nn.Module):
    """The tiny backbone of the reference vectors (see tests/data/README.md).

    h = tanh(vec(x) W1 + t ut + (t - s) ud + E[y] + b1); out = (h W2 + b2).reshape(x.shape);
    y = None selects the null class, index `num_classes`.
    """

    def __init__(self, state: dict[str, Tensor], num_classes: int) -> None:
        super().__init__()
        for name, value in state.items():
            self.register_parameter(name, nn.Parameter(value.clone()))
        self.num_classes = num_classes

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        h = torch.tanh(
            x.reshape(x.shape[0], -1) @ self.W1
            + t[:, None] * self.ut
            + (t - s)[:, None] * self.ud
            + self.E[y]
            + self.b1
        )
        return (h @ self.W2 + self.b2).reshape(x.shape)
