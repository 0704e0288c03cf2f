"""soflow-toolkit: train one-step generative models with Solution Flow Models, no JVP needed.

SoFlow: Luo, Yuan & Liu, "SoFlow: Solution Flow Models for One-Step Generative Modeling",
arXiv 2512.15657 (ICLR 2026). Time runs from data (t = 0) to noise (t = 1).
"""

from __future__ import annotations

from . import time_sampling
from .adapters import SingleTimeAdapter
from .conditions import concat_conditions, drop_condition, select_condition
from .ema import EMA
from .guidance import GuidanceConfig, guidance_decay, guided_velocity, sample_drop_mask
from .losses import (
    LossOutput,
    adaptive_weight,
    consistency_terms,
    flow_matching_loss,
    flow_matching_terms,
    solution_consistency_loss,
)
from .objective import SoFlowConfig, SoFlowDraw, SoFlowLoss, SoFlowOutput
from .parametrization import (
    EulerParametrization,
    Parametrization,
    TrigParametrization,
    get_parametrization,
)
from .paths import LinearPath, NoisePath, TrigPath, get_path
from .sampling import euler_sample, sample, time_grid
from .time_sampling import (
    RatioSchedule,
    clamp_consistency_times,
    consistency_times,
    logit_normal_times,
    ratio_schedule,
    uniform_times,
)
from .wrapper import SolutionFlowWrapper, call_backbone, unwrap_model

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "EulerParametrization",
    "GuidanceConfig",
    "LinearPath",
    "LossOutput",
    "NoisePath",
    "Parametrization",
    "RatioSchedule",
    "SingleTimeAdapter",
    "SoFlowConfig",
    "SoFlowDraw",
    "SoFlowLoss",
    "SoFlowOutput",
    "SolutionFlowWrapper",
    "TrigParametrization",
    "TrigPath",
    "__version__",
    "adaptive_weight",
    "call_backbone",
    "clamp_consistency_times",
    "concat_conditions",
    "consistency_terms",
    "consistency_times",
    "drop_condition",
    "euler_sample",
    "flow_matching_loss",
    "flow_matching_terms",
    "get_parametrization",
    "get_path",
    "guidance_decay",
    "guided_velocity",
    "logit_normal_times",
    "ratio_schedule",
    "sample",
    "sample_drop_mask",
    "select_condition",
    "solution_consistency_loss",
    "time_grid",
    "time_sampling",
    "uniform_times",
    "unwrap_model",
]
