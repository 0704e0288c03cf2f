"""soflow-toolkit: train one-step generative models with Solution Flow Models, no JVP needed.

SoFlow: Luo, Yuan & Liu, "SoFlow: Solution Flow Models for One-Step Generative Modeling",
arXiv 2512.15657 (ICLR 2026). Time runs from data (t = 0) to noise (t = 1).

The package root exports what a training script calls, by role: the model, training, sampling,
guidance and the building blocks. Everything else lives in its module (`soflow_toolkit.losses`,
`soflow_toolkit.time_sampling`, ...); subpackages such as `soflow_toolkit.toy` are imported by name.
"""

from __future__ import annotations

from ._deprecation import moved_names

# isort: off
# The model: a backbone wrapped into the solution function f(x_t, t, s).
from .adapters import SingleTimeAdapter
from .wrapper import SolutionFlowWrapper, unwrap_model

# Training: the objective, its settings and its step records, the functional losses, the EMA.
from .config import SoFlowConfig
from .ema import EMA
from .losses import LossOutput, flow_matching_loss, solution_consistency_loss
from .objective import SoFlowLoss
from .step import SoFlowDraw, SoFlowOutput
from .time_sampling import RatioSchedule, TimePriors

# Sampling: 1-NFE and few-step samplers, and plain Euler integration of the velocity.
from .sampling import euler_sample, sample, time_grid

# Guidance: training-time classifier-free guidance and condition dropping.
from .conditions import drop_condition, sample_drop_mask
from .guidance import GuidanceConfig, guidance_decay, guided_velocity

# Building blocks: noising paths, parametrizations, time samplers, conditions, the adaptive weight.
from .conditions import concat_conditions, select_condition
from .losses import adaptive_weight
from .parametrization import EulerParametrization, Parametrization, TrigParametrization, get_parametrization
from .paths import LinearPath, NoisePath, TrigPath, get_path
from .time_sampling import consistency_times, logit_normal_times, uniform_times

# isort: on

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - grouped by role, as above
    "__version__",
    # the model
    "SingleTimeAdapter",
    "SolutionFlowWrapper",
    "unwrap_model",
    # training
    "EMA",
    "LossOutput",
    "RatioSchedule",
    "SoFlowConfig",
    "SoFlowDraw",
    "SoFlowLoss",
    "SoFlowOutput",
    "TimePriors",
    "flow_matching_loss",
    "solution_consistency_loss",
    # sampling
    "euler_sample",
    "sample",
    "time_grid",
    # guidance
    "GuidanceConfig",
    "drop_condition",
    "guidance_decay",
    "guided_velocity",
    "sample_drop_mask",
    # building blocks
    "EulerParametrization",
    "LinearPath",
    "NoisePath",
    "Parametrization",
    "TrigParametrization",
    "TrigPath",
    "adaptive_weight",
    "concat_conditions",
    "consistency_times",
    "get_parametrization",
    "get_path",
    "logit_normal_times",
    "select_condition",
    "uniform_times",
]

# Internals exported at the root before 0.1.0; they live in their modules now.
__getattr__ = moved_names(
    "soflow_toolkit",
    {
        "call_backbone": "soflow_toolkit.wrapper",
        "flow_matching_terms": "soflow_toolkit.losses",
        "consistency_terms": "soflow_toolkit.losses",
        "clamp_consistency_times": "soflow_toolkit.time_sampling",
        "ratio_schedule": "soflow_toolkit.time_sampling",
    },
)
