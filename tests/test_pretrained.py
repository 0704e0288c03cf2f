"""Tests of `soflow_toolkit.pretrained`: official checkpoints in, official state dicts out.

- Parity with the real official networks: `tests/data/official_networks.pt` holds tiny official DiTs
  and a tiny official UNet (random weights, official parameter names) with inputs and the outputs of the
  official `Soflow.solution_operator` / `predict_velocity` (see `tests/data/README.md`).
- The conversion map against the official names and shapes of every published size
  (`tests/data/official_keys.json`), and round trips both ways.
- `load_official` on the three kinds of source: official-format run folders written here (tiny networks
  registered as official model types for the test), checkpoint files, and a mocked hub; one test per
  bad input.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from official_runs import TINY_UNET, official_payload, randomize, register_tiny_networks, write_run
from torch import Tensor, nn

from soflow_toolkit import SolutionFlowWrapper
from soflow_toolkit.models import DiT, DiTConfig, UNet, UNetConfig
from soflow_toolkit.pretrained import (
    OfficialCheckpoint,
    build_official,
    from_official_state_dict,
    load_official,
    locate_official,
    official_config,
    official_key_map,
    to_official_state_dict,
)

DATA = Path(__file__).parent / "data"
OFFICIAL_KEYS = json.loads((DATA / "official_keys.json").read_text())["models"]
VECTORS = torch.load(DATA / "official_networks.pt", weights_only=True)["cases"]
PATHS = {"Linear": "linear", "Trig": "trig"}
PARAMETRIZATIONS = {"Euler": "euler", "Trig": "trig"}
RTOL = 1e-5  # relative max error allowed in float32


def rel_err(actual: Tensor, expected: Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def official_case_config(model_type: str) -> dict[str, Any]:
    return {
        "model_type": model_type,
        "dataset_type": "CIFAR10" if model_type == "UNet" else "Imagenet",
        "data_size": 32,
        "noising_type": "Linear",
        "coefficient_type": "Euler",
        "cfg_drop_rate": 0.0 if model_type == "UNet" else 0.1,
    }


# ----------------------------------------------------------------------------------------------------
# Parity with the real official networks


def backbone_from_official_kwargs(case: dict[str, Any]) -> nn.Module:
    """The toolkit's network for a case of the official networks' constructor arguments (the builder
    that `examples/common/parity_report.py` uses for the committed parity report)."""
    examples = str(Path(__file__).resolve().parents[1] / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    from common.parity_report import backbone

    return backbone(case)


@pytest.mark.parametrize("case", VECTORS, ids=[case["name"] for case in VECTORS])
def test_outputs_equal_the_official_networks(case):
    backbone = backbone_from_official_kwargs(case)
    if case["kind"] == "dit":  # the fixed positions we compute are the official ones
        torch.testing.assert_close(
            backbone.pos_embed, case["state_dict"]["network.pos_embed"], rtol=0, atol=1e-7
        )
    backbone.load_state_dict(from_official_state_dict(case["state_dict"], backbone))
    model = SolutionFlowWrapper(
        backbone, path=PATHS[case["noising"]], parametrization=PARAMETRIZATIONS[case["coefficient"]]
    ).eval()
    x, t, s, labels = case["x"], case["t"], case["s"], case["labels"]
    with torch.no_grad():
        assert rel_err(model(x, t, s, labels), case["solution"]) < RTOL
        assert rel_err(model.velocity(x, t, labels), case["velocity"]) < RTOL
        assert torch.equal(model(x, t, s, labels)[0], x[0])  # s = t for sample 0
        if case["kind"] == "dit":
            assert rel_err(model(x, t, s), case["solution_null"]) < RTOL
        else:
            out = model(x, t, s, {"augment_labels": case["augment_labels"]}, output="backbone")
            assert rel_err(out, case["network_augment"]) < RTOL
    # and back: our export is the official state dict, key for key and value for value
    exported = to_official_state_dict(model)
    assert exported.keys() == case["state_dict"].keys()
    for key, value in case["state_dict"].items():
        assert torch.equal(exported[key], value), key


def test_vectors_cover_both_networks_and_parametrizations():
    kinds = {(case["kind"], case["noising"], case["coefficient"]) for case in VECTORS}
    assert kinds == {("dit", "Linear", "Euler"), ("dit", "Trig", "Trig"), ("unet", "Linear", "Euler")}


# ----------------------------------------------------------------------------------------------------
# The conversion map


@pytest.mark.parametrize("model_type", sorted(OFFICIAL_KEYS))
def test_export_has_exactly_the_official_names_and_shapes(model_type):
    config = official_case_config(model_type)
    with torch.device("meta"):
        model = build_official(config)
    state = to_official_state_dict(model)
    expected = OFFICIAL_KEYS[model_type]["state"]
    assert sorted(state) == sorted(expected)
    for key, shape in expected.items():
        assert list(state[key].shape) == shape, key
    assert official_config(model) == config  # and the config back


@pytest.mark.parametrize("model_type", ["DiT-B-4", "UNet"])
def test_key_map_is_one_to_one_and_covers_the_state_dict(model_type):
    with torch.device("meta"):
        backbone = build_official(official_case_config(model_type)).backbone
    key_map = official_key_map(backbone)
    assert list(key_map) == list(backbone.state_dict())
    assert len(set(key_map.values())) == len(key_map)
    assert all(value.startswith("network.") for value in key_map.values())


@pytest.mark.parametrize("kind", ["dit", "unet"])
def test_round_trips_both_ways(kind):
    case = next(case for case in VECTORS if case["kind"] == kind)
    backbone = randomize(backbone_from_official_kwargs(case), seed=3)
    ours = backbone.state_dict()
    back = from_official_state_dict(to_official_state_dict(backbone), backbone)
    assert back.keys() == ours.keys()
    assert all(torch.equal(back[k], ours[k]) for k in ours)
    official = case["state_dict"]
    backbone.load_state_dict(from_official_state_dict(official, backbone))
    again = to_official_state_dict(backbone)
    assert again.keys() == official.keys()
    assert all(torch.equal(again[k], official[k]) for k in official)


def test_key_map_names():
    dit = official_key_map(DiT.from_size("T/4", input_size=8, num_classes=3))
    assert dit["patch_embed.weight"] == "network.x_embedder.proj.weight"
    assert dit["t_embed.fc2.bias"] == "network.t_embedder.mlp.2.bias"
    assert dit["label_embed.weight"] == "network.y_embedder.embedding_table.weight"
    assert dit["final.modulation.weight"] == "network.final_layer.adaLN_modulation.1.weight"
    assert dit["pos_embed"] == "network.pos_embed"
    unet = UNet(
        UNetConfig(image_size=8, model_channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,))
    )
    names = official_key_map(unet)
    assert names["encoder.1.conv1.weight"] == "network.enc.4x4_down.conv0.weight"
    assert names["decoder.0.attn_proj.bias"] == "network.dec.4x4_in0.proj.bias"
    assert names["embed_fc1.weight"] == "network.map_layer0.weight"
    assert names["conv_out.bias"] == "network.dec.8x8_aux_conv.bias"


class WithGuidanceEmbedder(DiT):
    """A DiT with one more (zero-initialised) embedder: the official network has no counterpart."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__(config)
        self.scale_embed = nn.Linear(1, config.hidden_size)


def test_export_rejects_parameters_the_official_network_lacks():
    model = WithGuidanceEmbedder(DiTConfig.from_size("T/4", input_size=8))
    with pytest.raises(ValueError, match=r"no counterpart for these parameters: \['scale_embed.weight'"):
        to_official_state_dict(model)


def test_export_rejects_other_backbones():
    with pytest.raises(TypeError, match="got a Linear backbone"):
        to_official_state_dict(SolutionFlowWrapper(nn.Linear(2, 2)))


def test_official_config_rejects_what_the_official_code_cannot_build():
    dit = SolutionFlowWrapper(DiT.from_size("T/4", input_size=8))
    with pytest.raises(ValueError, match="no DiT of this shape"):
        official_config(dit)
    with torch.device("meta"):
        b4 = DiT.from_size("B/4", num_classes=7)
        unet = UNet(UNetConfig(model_channels=64))
    with pytest.raises(ValueError, match="4 channels and 1000 classes"):
        official_config(SolutionFlowWrapper(b4))
    with pytest.raises(ValueError, match="the official code has one UNet"):
        official_config(SolutionFlowWrapper(unet))
    with torch.device("meta"):
        model = SolutionFlowWrapper(DiT.from_size("B/4"))
    from soflow_toolkit import LinearPath

    class Shifted(LinearPath):
        name = "shifted"

    model.path = Shifted()
    with pytest.raises(ValueError, match="supports the paths"):
        official_config(model)
    with pytest.raises(ValueError, match="has a DiT or a UNet"):
        official_config(SolutionFlowWrapper(nn.Linear(2, 2)))


# ----------------------------------------------------------------------------------------------------
# load_official: run folders, checkpoint files, the hub


@pytest.fixture
def tiny_official(monkeypatch):
    """Register a tiny DiT as the official type `DiT-T-4` and shrink the official UNet, for fast files."""
    register_tiny_networks(monkeypatch)


DIT_CONFIG = {
    "model_type": "DiT-T-4",
    "dataset_type": "CIFAR10",
    "data_size": 8,
    "noising_type": "Trig",
    "coefficient_type": "Trig",
    "cfg_drop_rate": 0.1,
    "working_dir": "somewhere/else",
    "total_steps": 400000,
}
UNET_CONFIG = {
    "model_type": "UNet",
    "dataset_type": "CIFAR10",
    "data_size": 16,
    "noising_type": "Linear",
    "coefficient_type": "Euler",
    "cfg_drop_rate": 0.0,
}


def inputs(config: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    g = torch.Generator().manual_seed(5)
    size = config["data_size"]
    x = torch.randn(3, 3, size, size, generator=g)
    t = torch.rand(3, generator=g) * 0.5 + 0.5
    labels = torch.tensor([0, 9, 10]) if config["model_type"] != "UNet" else None
    return x, t, t / 3, labels


def assert_same_function(a: SolutionFlowWrapper, b: SolutionFlowWrapper, config: dict[str, Any]) -> None:
    x, t, s, labels = inputs(config)
    with torch.no_grad():
        assert torch.equal(a(x, t, s, labels), b(x, t, s, labels))
        assert torch.equal(a.velocity(x, t, labels), b.velocity(x, t, labels))


@pytest.mark.parametrize("config", [DIT_CONFIG, UNET_CONFIG], ids=["dit", "unet"])
def test_load_run_folder_newest_ema_in_eval_mode(tiny_official, tmp_path, config):
    runs = write_run(tmp_path / "run", config)
    model = load_official(tmp_path / "run")
    assert not model.training
    assert model.path.name == PATHS[config["noising_type"]]
    assert model.parametrization.name == PARAMETRIZATIONS[config["coefficient_type"]]
    assert all(p.requires_grad for p in model.parameters())  # ready to fine-tune after .train()
    assert_same_function(model, runs[100][1].eval(), config)
    # weights="model" reads the raw weights, step= an older checkpoint
    raw = load_official(tmp_path / "run", weights="model", step=0)
    expected = build_official(config)
    expected.backbone.load_state_dict(from_official_state_dict(runs[0][0]["model"], expected.backbone))
    assert_same_function(raw, expected.eval(), config)


def test_load_checkpoint_file_reads_the_run_config(tiny_official, tmp_path):
    runs = write_run(tmp_path / "run", DIT_CONFIG, steps=(7,))
    model = load_official(tmp_path / "run" / "ckpts" / "7.pt", map_location=torch.device("cpu"))
    assert_same_function(model, runs[7][1].eval(), DIT_CONFIG)
    found = locate_official(tmp_path / "run" / "ckpts" / "7.pt")
    assert found == OfficialCheckpoint(path=tmp_path / "run" / "ckpts" / "7.pt", config=DIT_CONFIG, step=7)


def test_config_argument_replaces_config_yaml(tiny_official, tmp_path):
    runs = write_run(tmp_path / "run", DIT_CONFIG, steps=(3,))
    moved = tmp_path / "elsewhere.pt"
    (tmp_path / "run" / "ckpts" / "3.pt").rename(moved)
    with pytest.raises(FileNotFoundError, match="pass config="):
        load_official(moved)
    model = load_official(moved, config=tmp_path / "run" / "config.yaml")
    assert_same_function(model, runs[3][1].eval(), DIT_CONFIG)
    # a dict needs no YAML reader; it can describe another parametrization than the file's config
    as_euler = load_official(moved, config={**DIT_CONFIG, "coefficient_type": "Euler"})
    assert as_euler.parametrization.name == "euler"
    assert locate_official(moved, config=DIT_CONFIG).step is None  # not a <step>.pt name


def test_exported_model_loads_back(tiny_official, tmp_path):
    """A model trained here, written as an official run folder, loads as the same function."""
    model = randomize(build_official(UNET_CONFIG), seed=11)
    run = tmp_path / "export"
    (run / "ckpts").mkdir(parents=True)
    config = official_config(model, working_dir=run)
    assert config["working_dir"] == str(run)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    state = to_official_state_dict(model)
    torch.save(
        {"model": state, "ema_model": state, "finished_steps": 5, "finished_epochs": 0},
        run / "ckpts" / "5.pt",
    )
    assert_same_function(load_official(run), model.eval(), UNET_CONFIG)


class FakeHub:
    """Stands in for `huggingface_hub`: serves a local folder as the repository and records downloads."""

    def __init__(self, root: Path, fail: str | None = None) -> None:
        self.root, self.fail = root, fail
        self.downloads: list[str] = []
        self.listed = 0

    def module(self) -> types.ModuleType:
        module = types.ModuleType("huggingface_hub")
        module.list_repo_files = self.list_repo_files  # type: ignore[attr-defined]
        module.hf_hub_download = self.hf_hub_download  # type: ignore[attr-defined]
        return module

    def list_repo_files(self, repo_id: str) -> list[str]:
        assert repo_id == "zlab-princeton/SoFlow"
        self.listed += 1
        if self.fail == "list":
            raise ConnectionError("no network")
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def hf_hub_download(self, repo_id: str, filename: str) -> str:
        assert repo_id == "zlab-princeton/SoFlow"
        if self.fail == "download":
            raise OSError("offline and not cached")
        self.downloads.append(filename)
        return str(self.root / filename)


@pytest.fixture
def hub(tiny_official, tmp_path, monkeypatch):
    root = tmp_path / "repo"
    runs = {
        "dit": write_run(root / "XL-2-cond", DIT_CONFIG, steps=(5, 40)),
        "unet": write_run(root / "UNet-uncond", UNET_CONFIG, steps=(2,)),
    }
    fake = FakeHub(root)
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake.module())
    return fake, runs


def test_hub_reference_downloads_only_the_config_and_one_checkpoint(hub):
    fake, runs = hub
    model = load_official("hf:zlab-princeton/SoFlow/XL-2-cond")
    assert fake.downloads == ["XL-2-cond/config.yaml", "XL-2-cond/ckpts/40.pt"]
    assert_same_function(model, runs["dit"][40][1].eval(), DIT_CONFIG)
    fake.downloads.clear()
    unet = load_official("hf:zlab-princeton/SoFlow/UNet-uncond", weights="model")
    assert fake.downloads == ["UNet-uncond/config.yaml", "UNet-uncond/ckpts/2.pt"]
    assert unet.path.name == "linear"


def test_hub_reference_with_step_and_config_needs_no_listing(hub):
    fake, _ = hub
    found = locate_official("hf:zlab-princeton/SoFlow/XL-2-cond", step=5, config=DIT_CONFIG)
    assert fake.listed == 0
    assert fake.downloads == ["XL-2-cond/ckpts/5.pt"]
    assert found.step == 5


def test_hub_errors_say_what_to_do(hub, monkeypatch):
    fake, _ = hub
    fake.fail = "list"
    with pytest.raises(
        RuntimeError, match=r"could not list .*ConnectionError: no network.*offline\? Pass step="
    ):
        load_official("hf:zlab-princeton/SoFlow/XL-2-cond")
    fake.fail = "download"
    with pytest.raises(
        RuntimeError, match=r"could not download XL-2-cond/ckpts/5.pt .*not in the local hub cache"
    ):
        load_official("hf:zlab-princeton/SoFlow/XL-2-cond", step=5, config=DIT_CONFIG)
    fake.fail = None
    with pytest.raises(
        FileNotFoundError, match=r"no checkpoints <step>.pt in hf:zlab-princeton/SoFlow/Missing"
    ):
        load_official("hf:zlab-princeton/SoFlow/Missing")
    with pytest.raises(ValueError, match="a hub reference is 'hf:<owner>/<repository>"):
        load_official("hf:zlab-princeton")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(ImportError, match=r"need huggingface_hub: pip install 'soflow-toolkit\[hub\]'"):
        load_official("hf:zlab-princeton/SoFlow/XL-2-cond")


# ----------------------------------------------------------------------------------------------------
# Bad sources and files


def test_missing_sources_steps_and_configs(tiny_official, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a run folder nor a checkpoint file"):
        load_official(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no checkpoints <step>\.pt in"):
        load_official(tmp_path / "empty")
    write_run(tmp_path / "run", DIT_CONFIG, steps=(0, 100))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 50 .*available: \[0, 100\]"):
        load_official(tmp_path / "run", step=50)
    with pytest.raises(TypeError, match="step must be an int"):
        load_official(tmp_path / "run", step="100")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step= selects a checkpoint of a run folder"):
        load_official(tmp_path / "run" / "ckpts" / "0.pt", step=0)
    with pytest.raises(ValueError, match="weights must be 'ema' or 'model'"):
        load_official(tmp_path / "run", weights="best")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="source must be a path"):
        load_official(3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match=r"config file .* does not exist"):
        load_official(tmp_path / "run", config=tmp_path / "missing.yaml")
    with pytest.raises(TypeError, match="config must be a mapping or a path"):
        load_official(tmp_path / "run", config=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model_type": None}, r"lacks \['model_type'\]"),
        ({"cfg_drop_rate": None}, r"lacks \['cfg_drop_rate'\]"),
        ({"model_type": "DiT-S-2"}, "unknown model_type 'DiT-S-2'.*accepts"),
        ({"dataset_type": "MNIST"}, r"unknown dataset_type 'MNIST'.*\['Imagenet', 'CIFAR10'\]"),
        ({"noising_type": "Triangular"}, r"unknown noising_type 'Triangular'.*\['Linear', 'Trig'\]"),
        ({"coefficient_type": "Cubic"}, "unknown coefficient_type 'Cubic'"),
        ({"data_size": "32"}, "data_size must be a positive int"),
        ({"cfg_drop_rate": "0.1"}, "cfg_drop_rate must be a number"),
    ],
)
def test_bad_configs(tiny_official, change, match):
    config = {k: v for k, v in {**DIT_CONFIG, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        build_official(config)


def test_config_yaml_that_is_not_a_mapping(tiny_official, tmp_path):
    write_run(tmp_path / "run", DIT_CONFIG, steps=(1,))
    (tmp_path / "run" / "config.yaml").write_text("- a\n- list\n")
    with pytest.raises(ValueError, match="not an official SoFlow config: expected a mapping, got list"):
        load_official(tmp_path / "run")


def test_config_yaml_without_pyyaml(tiny_official, tmp_path, monkeypatch):
    write_run(tmp_path / "run", DIT_CONFIG, steps=(1,))
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match=r"needs PyYAML: pip install 'soflow-toolkit\[pretrained\]'"):
        load_official(tmp_path / "run")
    load_official(tmp_path / "run", config=DIT_CONFIG)  # a dict needs no YAML reader


def write_checkpoint(tmp_path: Path, payload: Any) -> Path:
    (tmp_path / "run" / "ckpts").mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(DIT_CONFIG))
    path = tmp_path / "run" / "ckpts" / "1.pt"
    torch.save(payload, path)
    return path


class NotAllowed:
    """An object `torch.load(weights_only=True)` refuses to unpickle."""


def test_files_that_are_not_official_checkpoints(tiny_official, tmp_path):
    payload, _ = official_payload(DIT_CONFIG, seed=1)
    path = write_checkpoint(tmp_path, torch.zeros(3))
    with pytest.raises(ValueError, match="not an official SoFlow checkpoint: expected a dict with"):
        load_official(path)
    write_checkpoint(tmp_path, {"model": payload["model"], "finished_steps": 1})
    with pytest.raises(ValueError, match=r"it lacks \['ema_model', 'optimizer', 'finished_epochs'\]"):
        load_official(path)
    load_official(path, weights="model")  # the entry that is there loads
    write_checkpoint(tmp_path, {**payload, "ema_model": NotAllowed()})
    with pytest.raises(ValueError, match=r"does not load with torch.load\(weights_only=True\)"):
        load_official(path)
    path.write_text("plain text")
    with pytest.raises(ValueError, match=r"does not load with torch.load\(weights_only=True\)"):
        load_official(path)


def test_state_dicts_that_do_not_fit(tiny_official, tmp_path):
    payload, _ = official_payload(DIT_CONFIG, seed=1)
    state = payload["ema_model"]
    path = write_checkpoint(
        tmp_path, {**payload, "ema_model": {k[len("network.") :]: v for k, v in state.items()}}
    )
    with pytest.raises(ValueError, match=r"keys must start with 'network\.'"):
        load_official(path)
    path = write_checkpoint(tmp_path, {**payload, "ema_model": {**state, "network.extra": torch.zeros(1)}})
    with pytest.raises(
        ValueError, match=r"0 keys missing, 1 unexpected.*network.extra.*does the config describe"
    ):
        load_official(path)
    without = {k: v for k, v in state.items() if k != "network.pos_embed"}
    path = write_checkpoint(tmp_path, {**payload, "ema_model": without})
    with pytest.raises(ValueError, match=r"1 keys missing.*network.pos_embed"):
        load_official(path)
    wrong = {**state, "network.y_embedder.embedding_table.weight": torch.zeros(10, 64)}
    path = write_checkpoint(tmp_path, {**payload, "ema_model": wrong})
    with pytest.raises(
        ValueError, match=r"embedding_table.weight has shape \(10, 64\) in the checkpoint but \(11, 64\)"
    ):
        load_official(path)
    path = write_checkpoint(tmp_path, {**payload, "ema_model": {**state, "network.pos_embed": [0.0]}})
    with pytest.raises(TypeError, match=r"'network\.pos_embed' of the official state dict is a list"):
        load_official(path)
    with pytest.raises(TypeError, match="expected an official state dict"):
        from_official_state_dict([1, 2], DiT.from_size("T/4", input_size=8))  # type: ignore[arg-type]


def test_unet_resampling_filters_are_checked(tiny_official):
    model = build_official(UNET_CONFIG)
    state = to_official_state_dict(model)
    key = next(k for k in state if k.endswith("resample_filter"))
    with pytest.raises(ValueError, match=f"{key} differs from the network's resampling filter"):
        from_official_state_dict({**state, key: torch.ones(1, 1, 4, 4)}, model)
    config = replace(TINY_UNET, resample_filter=(1, 1))
    with pytest.raises(ValueError, match="differs from the network's resampling filter"):
        from_official_state_dict(state, UNet(config))
