r"""Built-in 2-D datasets, sample-quality metrics and a small MLP backbone, all in torch.

What the demo, the quality benchmarks and the first worked example need, with no other dependency:

- :mod:`~soflow_toolkit.toy.datasets`: :func:`checkerboard`, :func:`eight_gaussians`,
  :func:`two_moons`, :func:`spiral`, :func:`ring` (by name: :func:`get_toy_dataset`, `TOY_DATASETS`).
- :mod:`~soflow_toolkit.toy.support`: their known supports (:func:`assign_modes`, `NUM_MODES`).
- :mod:`~soflow_toolkit.toy.metrics`: distances between point clouds (:func:`energy_distance`,
  :func:`sliced_energy_distance`, :func:`sliced_wasserstein`) and sharpness-aware scores
  (:func:`precision_recall`, :func:`support_scores`).
- :mod:`~soflow_toolkit.toy.mlp`: :class:`MLPBackbone` and its :func:`timestep_embedding`.

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
