r"""The official SoFlow checkpoints: load them as a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper], and back.

The official code (`github.com/zlab-princeton/SoFlow`, Luo, Yuan & Liu, arXiv 2512.15657) saves a run
folder `config.yaml` + `ckpts/<step>.pt`, each checkpoint a `torch.save` dict with `model`,
`ema_model`, `optimizer`, `finished_steps`, `finished_epochs`; `model` and `ema_model` are state dicts
of its whole `Soflow` module, so the network's keys start with `network.`. Its checkpoints are public
on the Hugging Face hub (repository `zlab-princeton/SoFlow`, run folders `XL-2-cond`, `UNet-uncond`).

- [`load_official`][soflow_toolkit.pretrained.load_official]: a run folder, a checkpoint file or `"hf:zlab-princeton/SoFlow/XL-2-cond"` ->
  a wrapper with the official path and parametrization whose `model(x, t, s, cond=labels)` is the
  official `Soflow.solution_operator(x, t, s, labels)` and `model.velocity(x, t, cond=labels)` its
  `predict_velocity`.
- [`to_official_state_dict`][soflow_toolkit.pretrained.to_official_state_dict] and [`official_config`][soflow_toolkit.pretrained.official_config]: the other way, so that the official
  inference script runs a model trained here.
- [`official_key_map`][soflow_toolkit.pretrained.official_key_map]: the conversion map between this package's parameter names
  ([`soflow_toolkit.models`][soflow_toolkit.models]) and the official ones.

Reading `config.yaml` needs PyYAML (`pip install "soflow-toolkit[pretrained]"`), hub references also
`huggingface_hub` (`pip install "soflow-toolkit[hub]"`).
"""

from .keys import from_official_state_dict, official_key_map, to_official_state_dict
from .load import OfficialCheckpoint, load_official, locate_official
from .networks import build_official, official_config

__all__ = [
    "OfficialCheckpoint",
    "build_official",
    "from_official_state_dict",
    "load_official",
    "locate_official",
    "official_config",
    "official_key_map",
    "to_official_state_dict",
]
