r"""Built-in 2-D datasets, sample-quality metrics and a small MLP backbone, all in torch.

What the demo, the quality benchmarks and the first worked example need, with no other dependency:

- `soflow_toolkit.toy.datasets`: [`checkerboard`][soflow_toolkit.toy.checkerboard], [`eight_gaussians`][soflow_toolkit.toy.eight_gaussians],
  [`two_moons`][soflow_toolkit.toy.two_moons], [`spiral`][soflow_toolkit.toy.spiral], [`ring`][soflow_toolkit.toy.ring] (by name: [`get_toy_dataset`][soflow_toolkit.toy.get_toy_dataset], `TOY_DATASETS`).
- `soflow_toolkit.toy.support`: their known supports ([`assign_modes`][soflow_toolkit.toy.assign_modes], `NUM_MODES`).
- `soflow_toolkit.toy.metrics`: distances between point clouds ([`energy_distance`][soflow_toolkit.toy.energy_distance],
  [`sliced_energy_distance`][soflow_toolkit.toy.sliced_energy_distance], [`sliced_wasserstein`][soflow_toolkit.toy.sliced_wasserstein]) and sharpness-aware scores
  ([`precision_recall`][soflow_toolkit.toy.precision_recall], [`support_scores`][soflow_toolkit.toy.support_scores]).
- `soflow_toolkit.toy.mlp`: [`MLPBackbone`][soflow_toolkit.toy.MLPBackbone] and its [`timestep_embedding`][soflow_toolkit.toy.timestep_embedding].

Everything is importable from `soflow_toolkit.toy` directly.
"""

from __future__ import annotations

from .datasets import (
    TOY_DATASETS,
    checkerboard,
    eight_gaussians,
    get_toy_dataset,
    ring,
    spiral,
    two_moons,
)
from .metrics import (
    energy_distance,
    precision_recall,
    sliced_energy_distance,
    sliced_wasserstein,
    support_scores,
)
from .mlp import MLPBackbone, timestep_embedding
from .support import NUM_MODES, assign_modes

__all__ = [
    "NUM_MODES",
    "TOY_DATASETS",
    "MLPBackbone",
    "assign_modes",
    "checkerboard",
    "eight_gaussians",
    "energy_distance",
    "get_toy_dataset",
    "precision_recall",
    "ring",
    "sliced_energy_distance",
    "sliced_wasserstein",
    "spiral",
    "support_scores",
    "timestep_embedding",
    "two_moons",
]
