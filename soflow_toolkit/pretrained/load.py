"""Locating official checkpoints (run folders, files, the hub) and loading them as a wrapper."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..wrapper import SolutionFlowWrapper
from .keys import from_official_state_dict
from .networks import _as_config, build_official

CHECKPOINT_KEYS = ("model", "ema_model", "optimizer", "finished_steps", "finished_epochs")
_WEIGHT_KEYS = {"ema": "ema_model", "model": "model"}


@dataclass(frozen=True)
class OfficialCheckpoint:
    """A located official checkpoint: the local file, its run's config and its step.

    Attributes:
        path: the local `.pt` file (in the hub cache for hub references).
        config: the run's official config (the keys of `config.yaml`).
        step: the training step in the file name (`ckpts/<step>.pt`), or None for another name.

    Examples:
        >>> from pathlib import Path
        >>> found = OfficialCheckpoint(Path("run/ckpts/400000.pt"), {"network": "DiT-B-4"}, 400000)
        >>> found.step
        400000
    """

    path: Path
    config: dict[str, Any]
    step: int | None


def _steps(names: list[str]) -> dict[int, str]:
    """`{step: name}` of the names `<int>.pt`."""
    out: dict[int, str] = {}
    for name in names:
        stem, dot, ext = name.rpartition(".")
        if dot and ext == "pt" and stem.isdigit():
            out[int(stem)] = name
    return out


def _pick_step(available: dict[int, str], step: int | None, where: str) -> int:
    if not available:
        raise FileNotFoundError(f"no checkpoints <step>.pt in {where}")
    if step is None:
        return max(available)
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int or None; got {type(step).__name__}")
    if step not in available:
        raise FileNotFoundError(f"no checkpoint for step {step} in {where}; available: {sorted(available)}")
    return step


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            "hub references (hf:...) need huggingface_hub: pip install 'soflow-toolkit[hub]'; or download "
            "the run folder (config.yaml and ckpts/<step>.pt) and pass its path"
        ) from None
    return huggingface_hub


def _locate_hub(reference: str, step: int | None, config: Any) -> OfficialCheckpoint:
    parts = [part for part in reference[len("hf:") :].split("/") if part]
    if len(parts) < 2:
        raise ValueError(f"a hub reference is 'hf:<owner>/<repository>[/<run folder>]'; got {reference!r}")
    repo_id, folder = "/".join(parts[:2]), "/".join(parts[2:])
    hub = _hub()
    prefix = f"{folder}/" if folder else ""
    where = f"{reference} (ckpts/)"
    if step is None:
        try:
            files = hub.list_repo_files(repo_id)
        except Exception as err:  # the hub raises many kinds (HTTP, connection, offline mode)
            raise RuntimeError(
                f"could not list the files of the hub repository {repo_id} ({type(err).__name__}: {err}); "
                "offline? Pass step= to use a checkpoint in the local hub cache, or pass a local run folder"
            ) from err
        ckpts = [name[len(prefix + "ckpts/") :] for name in files if name.startswith(prefix + "ckpts/")]
        chosen = _pick_step(_steps([name for name in ckpts if "/" not in name]), None, where)
    else:
        chosen = _pick_step({step: f"{step}.pt"}, step, where)

    def download(filename: str) -> Path:
        try:
            return Path(hub.hf_hub_download(repo_id=repo_id, filename=prefix + filename))
        except Exception as err:
            raise RuntimeError(
                f"could not download {prefix + filename} from the hub repository {repo_id} "
                f"({type(err).__name__}: {err}); offline and not in the local hub cache?"
            ) from err

    data = _as_config(config if config is not None else download("config.yaml"))
    return OfficialCheckpoint(path=download(f"ckpts/{chosen}.pt"), config=data, step=chosen)


def locate_official(
    source: str | os.PathLike[str],
    *,
    step: int | None = None,
    config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> OfficialCheckpoint:
    """Find an official checkpoint and read its config (downloading both for hub references).

    Args:
        source: a run folder (`config.yaml` + `ckpts/<step>.pt`), a checkpoint file (its config is
            `../../config.yaml` from the file), or a hub reference `"hf:<owner>/<repo>/<run folder>"`
            (e.g. `"hf:zlab-princeton/SoFlow/XL-2-cond"`; only `config.yaml` and the one checkpoint
            are downloaded).
        step: the checkpoint's step; default: the newest. Not for a checkpoint file.
        config: the config instead of the run's `config.yaml`: a mapping or a path.

    Returns:
        An [`OfficialCheckpoint`][soflow_toolkit.pretrained.OfficialCheckpoint].

    Raises:
        FileNotFoundError: for a source, config or step that does not exist.
        ValueError: for `step=` with a checkpoint file, a malformed hub reference or config.
        ImportError: for hub references without `huggingface_hub`, or `config.yaml` without PyYAML.
        RuntimeError: when the hub cannot be reached (offline) and the files are not cached.

    Examples:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())  # an official run folder: config.yaml and ckpts/<step>.pt
        >>> (run / "ckpts").mkdir()
        >>> _ = (run / "config.yaml").write_text(
        ...     "model_type: DiT-B-4\\ndataset_type: Imagenet\\ndata_size: 32\\nnoising_type: Linear\\n"
        ...     "coefficient_type: Euler\\ncfg_drop_rate: 0.1\\n"
        ... )
        >>> for name in ("1000.pt", "2000.pt"):
        ...     _ = (run / "ckpts" / name).write_bytes(b"")
        >>> found = locate_official(run)  # the newest step unless step= is given
        >>> found.step, found.path.name, found.config["model_type"]
        (2000, '2000.pt', 'DiT-B-4')
    """
    if isinstance(source, str) and source.startswith("hf:"):
        return _locate_hub(source, step, config)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or a hub reference 'hf:...'; got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        ckpts = path / "ckpts"
        names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
        chosen: int | None = _pick_step(_steps(names), step, str(ckpts))
        file, config_path = ckpts / f"{chosen}.pt", path / "config.yaml"
    elif path.is_file():
        if step is not None:
            raise ValueError(f"step= selects a checkpoint of a run folder; {path} is a checkpoint file")
        file, config_path = path, path.parent.parent / "config.yaml"
        chosen_step = _steps([path.name])
        chosen = next(iter(chosen_step)) if chosen_step else None
    else:
        raise FileNotFoundError(f"{path} is neither a run folder nor a checkpoint file")
    if config is None and not config_path.is_file():
        raise FileNotFoundError(f"no config at {config_path}: pass config= (a path or a dict)")
    data = _as_config(config if config is not None else config_path)
    return OfficialCheckpoint(path=file, config=data, step=chosen)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    # mmap: only the tensors that are used are read (an XL/2 file also holds the optimizer's moments).
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path} is not an official SoFlow checkpoint: it does not load with torch.load("
            f"weights_only=True) ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(payload, dict):
        raise ValueError(
            f"{path} is not an official SoFlow checkpoint: expected a dict with {list(CHECKPOINT_KEYS)}, "
            f"got a {type(payload).__name__}"
        )
    return payload


def load_official(
    source: str | os.PathLike[str],
    *,
    weights: Literal["ema", "model"] = "ema",
    step: int | None = None,
    config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    map_location: str | torch.device = "cpu",
) -> SolutionFlowWrapper:
    r"""Load an official SoFlow checkpoint as a [`SolutionFlowWrapper`][soflow_toolkit.SolutionFlowWrapper].

    The wrapper has the run's path (`noising_type`) and parametrization (`coefficient_type`) and is in
    eval mode (call `.train()` to fine-tune; parameters require gradients). For the same weights and
    inputs, `model(x, t, s, cond=labels)` equals the official `Soflow.solution_operator(x, t, s,
    labels)` and `model.velocity(x, t, cond=labels)` its `predict_velocity(x, t, labels)`;
    `cond=None` is the null class of the DiT and the only input of the unconditional UNet.

    Args:
        source: a run folder, a checkpoint file or a hub reference, as for [`locate_official`][soflow_toolkit.pretrained.locate_official].
        weights: `"ema"` (the `ema_model` entry, what the official inference samples) or `"model"`.
        step: the step of the checkpoint in a run folder or hub reference; default: the newest.
        config: the config instead of the run's `config.yaml` (a mapping or a path).
        map_location: the device of the returned model.

    Returns:
        The model, with the checkpoint's weights, on `map_location`.

    Raises:
        ValueError: for an unknown `weights`, a file that is not an official checkpoint (no dict, or no
            `ema_model` / `model` entry; the message names what is missing), or weights that do not
            fit the config's network; see also [`locate_official`][soflow_toolkit.pretrained.locate_official].

    Examples:
        One-step samples of the published DiT-XL/2 (downloads about 2.7 GB of weights once; the
        test suite runs the same calls on small official-format run folders):

        ```python
        import torch
        from soflow_toolkit import sample
        from soflow_toolkit.pretrained import load_official

        model = load_official("hf:zlab-princeton/SoFlow/XL-2-cond", map_location="cuda")
        labels = torch.randint(0, 1000, (8,), device="cuda")
        latents = sample(model, torch.randn(8, 4, 32, 32, device="cuda"), steps=1, cond=labels)
        ```
    """
    if weights not in _WEIGHT_KEYS:
        raise ValueError(f"weights must be 'ema' or 'model'; got {weights!r}")
    checkpoint = locate_official(source, step=step, config=config)
    model = build_official(checkpoint.config)
    payload = _read_checkpoint(checkpoint.path)
    key = _WEIGHT_KEYS[weights]
    if key not in payload:
        missing = [k for k in CHECKPOINT_KEYS if k not in payload]
        raise ValueError(
            f"{checkpoint.path} is not an official SoFlow checkpoint: it lacks {missing} "
            f"(weights={weights!r} reads {key!r}); it holds {sorted(map(str, payload))[:8]}"
        )
    state = from_official_state_dict(payload[key], model.backbone)
    model.backbone.load_state_dict(state)
    return model.to(torch.device(map_location)).eval()
