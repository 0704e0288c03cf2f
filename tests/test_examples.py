"""Tests of the ImageNet and CIFAR-10 examples (`examples/`).

Unit tests of their pieces run in the fast suite. The end-to-end tests (marked `slow`) run the real
scripts in smoke mode on CPU: latent extraction of a fake ImageNet folder with a tiny random VAE and 2
processes, DiT training with `torch.distributed.run --nproc-per-node=2` (gloo) interrupted and resumed,
an overfit run, `.npz` sampling, and the CIFAR-10 UNet trained and resumed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import official_runs
import pytest
import torch

from soflow_toolkit import SoFlowConfig, SoFlowLoss, SolutionFlowWrapper, fid
from soflow_toolkit import sample as soflow_sample
from soflow_toolkit.augment import AugmentPipe
from soflow_toolkit.fid import class_labels
from soflow_toolkit.models import DiT, DiTConfig, UNetConfig
from soflow_toolkit.pretrained import (
    build_official,
    from_official_state_dict,
    load_official,
    official_key_map,
    to_official_state_dict,
)

pytest.importorskip("PIL")
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on 2 shared cores, 2 OpenMP threads make these small models ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(example: str, module: str) -> ModuleType:
    """Import `examples/<example>/<module>.py` under a unique name (the scripts import siblings by name)."""
    for folder in (EXAMPLES, EXAMPLES / example):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    name = f"_examples_{example}_{module}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / example / f"{module}.py")
        assert spec is not None
        assert spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def common(module: str) -> ModuleType:
    """Import `examples/common/<module>.py` (as the scripts do)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(f"common.{module}")


# ----------------------------------------------------------------------------------------------------
# ImageNet pieces


def random_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("size", "steps"),
    [
        # (width, height): halve with BOX while the short side >= 512, BICUBIC to short side 256, centre crop
        ((512, 768), [("box", (256, 384)), ("bicubic", (256, 384))]),
        ((200, 300), [("bicubic", (256, 384))]),
        ((1100, 600), [("box", (550, 300)), ("bicubic", (469, 256))]),
        ((2100, 1030), [("box", (1050, 515)), ("box", (525, 257)), ("bicubic", (523, 256))]),
    ],
)
def test_adm_center_crop_follows_its_description(size, steps):
    data = load("imagenet", "data")
    image = random_image(*size, seed=0)
    expected = image
    for kind, target in steps:
        resample = Image.Resampling.BOX if kind == "box" else Image.Resampling.BICUBIC
        expected = expected.resize(target, resample=resample)
    array = np.asarray(expected)
    top, left = (array.shape[0] - 256) // 2, (array.shape[1] - 256) // 2
    out = data.center_crop_arr(image, 256)
    assert out.shape == (256, 256, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array[top : top + 256, left : left + 256])


def test_scan_image_folder_sorts_classes_and_skips_other_files(tmp_path):
    data = load("imagenet", "data")
    for name in ("n02", "n01"):
        (tmp_path / name).mkdir()
        random_image(8, 8, 0).save(tmp_path / name / "b.JPEG")
        random_image(8, 8, 1).save(tmp_path / name / "a.png")
    (tmp_path / "n01" / "notes.txt").write_text("not an image")
    classes, items = data.scan_image_folder(tmp_path)
    assert classes == ["n01", "n02"]
    assert [(p.parent.name, p.name, y) for p, y in items] == [
        ("n01", "a.png", 0),
        ("n01", "b.JPEG", 0),
        ("n02", "a.png", 1),
        ("n02", "b.JPEG", 1),
    ]
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.scan_image_folder(tmp_path / "n01")


def test_sample_latents_draws_scaled_posterior_samples():
    data = load("imagenet", "data")
    moments = torch.randn(3, 2, 4, 8, 8)
    moments[:, 1] = moments[:, 1].abs()
    latents = data.sample_latents(moments, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(latents, 0.18215 * (moments[:, 0] + moments[:, 1] * eps))
    flipped = data.sample_latents(moments, generator=torch.Generator().manual_seed(5), hflip=True)
    for i in range(3):  # each latent is either unchanged or mirrored
        assert torch.equal(flipped[i], latents[i]) or torch.equal(flipped[i], latents[i].flip(-1))


@pytest.mark.parametrize("size", ["B-4", "B-2", "M-2", "L-2", "XL-2"])
def test_imagenet_configs_build_the_official_dit(size):
    """Each size config trains `soflow_toolkit.models.DiT` of that official size (the network itself is
    tested in tests/test_models.py and against the official one in tests/test_pretrained.py)."""
    train = load("imagenet", "train")
    config = {
        **train.DEFAULTS,
        **json.loads((EXAMPLES / "imagenet" / "configs" / f"{size}.json").read_text()),
        "latent_shape": [4, 32, 32],
        "num_classes": 1000,
    }
    with torch.device("meta"):
        model = train.build_model(config)
    assert isinstance(model.backbone, DiT)
    assert model.backbone.config == DiTConfig.from_size(size.replace("-", "/"))
    assert (model.path.name, model.parametrization.name) == ("linear", "euler")


def test_imagenet_smoke_config_is_tiny():
    train = load("imagenet", "train")
    config = {**train.DEFAULTS, **json.loads((EXAMPLES / "imagenet" / "configs" / "smoke.json").read_text())}
    model = train.build_model({**config, "latent_shape": [4, 32, 32], "num_classes": 3})
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert model.backbone.label_embed.num_embeddings == 4  # 3 classes + the null class


def test_cifar10_configs_build_the_official_unet_and_augmentation():
    network = load("cifar10", "network")
    train = load("cifar10", "train")
    config = {**train.DEFAULTS, **json.loads((EXAMPLES / "cifar10" / "configs" / "cifar10.json").read_text())}
    with torch.device("meta"):
        model = network.build_model(config)
    # The official network, with its 6-dimensional augmentation input, and the official augmentation.
    assert model.backbone.config == UNetConfig()
    assert (model.path.name, model.parametrization.name) == ("linear", "euler")
    assert network.build_augment(config) == AugmentPipe()
    assert AugmentPipe() == AugmentPipe(p=0.12, xflip=1e8, scale=1, aniso=1, translate=1)
    assert network.build_unet(train.DEFAULTS).config == model.backbone.config
    smoke = {**train.DEFAULTS, **json.loads((EXAMPLES / "cifar10" / "configs" / "smoke.json").read_text())}
    assert sum(p.numel() for p in network.build_unet(smoke).parameters()) < 500_000
    assert network.build_unet(smoke).config.augment_dim == 6
    assert network.build_augment({"augment": None}) is None
    with pytest.raises(ValueError, match=r"unknown UNetConfig fields \['channels'\]"):
        network.unet_config({"unet": {"channels": 16}})
    with pytest.raises(ValueError, match=r"unknown AugmentPipe fields \['yflip'\]"):
        network.build_augment({"augment": {"yflip": 1}})
    with pytest.raises(ValueError, match="'augment' must be a dict of AugmentPipe fields or null"):
        network.build_augment({"augment": 0.12})


# The official recipes, read from the official repository (zlab-princeton/SoFlow at 3b60d60, MIT):
# imagenet.yaml (the DiT-B/4 run; the other sizes ran 1.2M steps, 240 epochs, per its readme) and
# cifar.yaml, with train.py's optimizer choice (AdamW for ImageNet, RAdam otherwise) and EMA cadence.
# Names of paths, parametrizations and schedules are lower-cased, as this package spells them.
OFFICIAL_RECIPES = {
    "imagenet": {
        "noising_type": "linear",
        "coefficient_type": "euler",
        "velocity_loss_ratio": 0.75,
        "p": 1.0,
        "eps": 0.01,
        "time_mean": (-0.2, -1.0, 0.2),
        "time_std": (1.0, 0.8, 0.8),
        "cfg_scale": 3.0,
        "mix_ratio": 0.25,
        "cfg_drop_rate": 0.1,
        "cfg_decay_time": 0.8,
        "l_schedule": "exponent",
        "l_init_ratio": 0.1,
        "l_end_ratio": 0.002,
        "ema_decay_rate": 0.9999,
        "learning_rate": 1e-4,
        "betas": (0.9, 0.99),
        "weight_decay": 0.0,
        "batch_size": 256,
        "seed": 42,
    },
    "cifar10": {
        "noising_type": "linear",
        "coefficient_type": "euler",
        "velocity_loss_ratio": 0.0,
        "p": 0.75,
        "eps": 0.001,
        "time_mean": (-0.9, -4.0, -0.9),
        "time_std": (1.6, 1.6, 1.6),
        "cfg_scale": 1.0,
        "mix_ratio": 1.0,
        "cfg_drop_rate": 0.0,
        "cfg_decay_time": 1.0,
        "l_schedule": "exponent",
        "l_init_ratio": 1.0,
        "l_end_ratio": 0.0003125,
        "ema_decay_rate": 0.9999,
        "learning_rate": 1e-4,
        "betas": (0.9, 0.999),
        "weight_decay": 0.0,
        "batch_size": 1024,
        "seed": 42,
        "total_steps": 800_000,
    },
}
OFFICIAL_STEPS = {"B-4": 400_000, "B-2": 1_200_000, "M-2": 1_200_000, "L-2": 1_200_000, "XL-2": 1_200_000}


@pytest.mark.parametrize(
    ("example", "name"),
    [*(("imagenet", size) for size in OFFICIAL_STEPS), ("cifar10", "cifar10")],
)
def test_configs_hold_every_setting_of_the_official_recipe(example, name):
    official = OFFICIAL_RECIPES[example]
    train = load(example, "train")
    config_module = common("config")
    config = {**train.DEFAULTS, **json.loads((EXAMPLES / example / "configs" / f"{name}.json").read_text())}
    assert config == {**train.DEFAULTS, **config}  # the file only sets known keys
    soflow = config_module.soflow_config(example, config["steps"], config["soflow"])
    guidance, times, curriculum = soflow.guidance, soflow.times, soflow.curriculum
    ours = {
        "noising_type": config["path"],
        "coefficient_type": config["parametrization"],
        "velocity_loss_ratio": soflow.fm_fraction,
        "p": soflow.p,
        "eps": soflow.eps,
        "time_mean": (times.mean_fm, times.mean_s, times.mean_t),
        "time_std": (times.std_fm, times.std_s, times.std_t),
        "cfg_scale": guidance.scale,
        "mix_ratio": guidance.mix_ratio,
        "cfg_drop_rate": guidance.drop_rate,
        "cfg_decay_time": guidance.decay_time,
        "l_schedule": curriculum.kind,
        "l_init_ratio": curriculum.r_init,
        "l_end_ratio": curriculum.r_end,
        "ema_decay_rate": config["ema_decay"],
        "learning_rate": config["lr"],
        "betas": tuple(config["betas"]),
        "weight_decay": config["weight_decay"],
        "batch_size": config["global_batch"],
        "seed": config["seed"],
        "total_steps": curriculum.total_steps,
    }
    assert curriculum.total_steps == config["steps"]
    expected = {"total_steps": OFFICIAL_STEPS.get(name), **official}
    assert ours == expected
    assert times.min_gap == 1e-4  # train.py: t >= 1e-4, s <= t - 1e-4, l <= t - 1e-4
    assert config["tf32"] is True  # float32 with TF32 matmuls
    assert config["bf16"] is False
    assert config["hflip"] is False  # ImageNet: no flips; CIFAR-10: flips come from the augmentation
    # ckpt_saving_steps, logging_steps and eval_demo_steps (the sample grids)
    assert (config["ckpt_every"], config["log_every"], config["sample_every"]) == (25_000, 100, 1_000)
    if example == "cifar10":
        assert config["ema_every"] == 16  # the average moves by 0.9999 ** 16 every 16 steps
        assert config["augment"] == {}
        assert config["unet"] == {}


# ----------------------------------------------------------------------------------------------------
# Shared plumbing


def test_resumable_sampler_partitions_and_resumes():
    ResumableSampler = common("sampler").ResumableSampler
    ranks = [ResumableSampler(23, 3, rank=r, world_size=2, seed=7) for r in range(2)]
    assert ranks[0].batches_per_epoch == 3  # 23 // 2 = 11 per rank, 3 batches of 3
    epoch0 = [i for s in ranks for k in range(3) for i in s.batch(k)]
    assert len(epoch0) == len(set(epoch0)) == 18  # disjoint over ranks and batches
    assert ranks[0].batch(3) != ranks[0].batch(0)  # a new epoch is a new permutation
    fresh = ResumableSampler(23, 3, rank=1, world_size=2, seed=7)
    fresh.load_state_dict({**ranks[1].state_dict(), "position": 4})
    stream = iter(fresh)
    assert [next(stream) for _ in range(3)] == [ranks[1].batch(k) for k in (4, 5, 6)]
    with pytest.warns(UserWarning, match="world_size"):
        fresh.load_state_dict({**ranks[1].state_dict(), "world_size": 4})
    with pytest.raises(ValueError, match="too few"):
        ResumableSampler(5, 3, rank=0, world_size=2, seed=0)


def test_npz_writer_streams_and_reads_back(tmp_path):
    common_images, fid = common("images"), common("fid")
    array = np.random.default_rng(0).integers(0, 256, (7, 4, 5, 3), dtype=np.uint8)
    path = tmp_path / "s.npz"
    with common_images.NpzWriter(path, 7, (4, 5, 3)) as writer:
        writer.write(array[:3])
        writer.write(array[3:])
        writer.add("labels", np.arange(7))
    loaded = np.load(path)
    np.testing.assert_array_equal(loaded["arr_0"], array)
    np.testing.assert_array_equal(loaded["labels"], np.arange(7))
    np.testing.assert_array_equal(np.concatenate(list(fid.npz_chunks(path, chunk=2))), array)
    with (
        pytest.raises(ValueError, match="announced"),
        common_images.NpzWriter(tmp_path / "t.npz", 3, (4, 5, 3)) as w,
    ):
        w.write(array[:2])
    assert not (tmp_path / "t.npz").exists()  # no half-written file is left


def test_balanced_labels():
    images = common("images")
    labels = images.balanced_labels(2000, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(labels, minlength=1000), torch.full((1000,), 2))
    assert not torch.equal(labels, torch.arange(2000) % 1000)  # shuffled
    counts = torch.bincount(images.balanced_labels(7, 3, generator=torch.Generator().manual_seed(0)))
    assert sorted(counts.tolist()) == [2, 2, 3]


def test_metric_log_drops_rows_past_the_resumed_step(tmp_path):
    metrics = common("metrics")
    log = metrics.MetricLog(tmp_path)
    for step in (10, 20, 30):
        log.log({"step": step, "loss": 1.0, "fm_mse": math.nan})
    log.close()
    metrics.MetricLog(tmp_path, resume_step=20).close()
    rows = metrics.read_metrics(tmp_path / "metrics.csv")
    assert [row["step"] for row in rows] == [10, 20]
    assert math.isnan(rows[0]["fm_mse"])


def test_config_precedence_and_errors(tmp_path):
    config = common("config")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 0.5, "steps": 7}))
    args = type("Args", (), {})()
    args.lr, args.steps, args.other = None, 9, 1
    merged = config.merge_config({"lr": 0.1, "steps": 1, "seed": 0}, path, args)
    assert merged == {"lr": 0.5, "steps": 9, "seed": 0}
    path.write_text(json.dumps({"typo": 1}))
    with pytest.raises(ValueError, match="unknown keys"):
        config.merge_config({"lr": 0.1}, path, args)
    checkpoint = common("checkpoint")
    checkpoint.check_resume({"model": "B/4", "lr": 1.0}, {"model": "B/4", "lr": 2.0}, ("model",))
    with pytest.raises(ValueError, match="'B/4' -> 'B/2'"):
        checkpoint.check_resume({"model": "B/4"}, {"model": "B/2"}, ("model",))
    soflow = config.soflow_config("imagenet", 123, {"guidance": {"scale": 1.0}})
    assert soflow.curriculum.total_steps == 123
    assert soflow.guidance.scale == 1.0
    assert soflow.guidance.drop_rate == 0.1  # a nested dict changes only the fields it names
    assert soflow.fm_fraction == 0.75
    const = config.soflow_config("cifar10", 50, {"curriculum": {"kind": "const"}, "p": 1.0})
    assert (const.curriculum.kind, const.curriculum.r_end, const.curriculum(0)) == (
        "const",
        0.0003125,
        0.0003125,
    )
    assert (const.p, const.eps) == (1.0, 1e-3)
    with pytest.raises(ValueError, match=r"unknown SoFlowConfig fields \['schedule'\]"):
        config.soflow_config("cifar10", 50, {"schedule": "const"})
    with pytest.raises(ValueError, match=r"unknown RatioSchedule fields \['type'\] in 'soflow.curriculum'"):
        config.soflow_config("cifar10", 50, {"curriculum": {"type": "const"}})
    with pytest.raises(ValueError, match=r"'soflow\.times' must be a dict of TimePriors fields"):
        config.soflow_config("cifar10", 50, {"times": 0.5})


def test_cifar_batches_are_read_from_local_pickles(tmp_path):
    cifar = load("cifar10", "cifar")
    rows = write_fake_cifar(tmp_path / "cifar-10-batches-py", per_batch=4)
    images, labels = cifar.load_cifar10(tmp_path)
    assert images.shape == (8, 3, 32, 32)
    assert images.dtype == torch.uint8
    np.testing.assert_array_equal(images[5].numpy(), rows[5].reshape(3, 32, 32))
    assert labels.tolist() == [i % 10 for i in range(8)]
    with pytest.raises(ValueError, match="no CIFAR-10"):
        cifar.load_cifar10(tmp_path / "cifar-10-batches-py" / "missing")


def write_fake_cifar(folder: Path, per_batch: int, batches: int = 2) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.random.default_rng(0).integers(0, 256, (per_batch * batches, 3072), dtype=np.uint8)
    for b in range(batches):
        part = slice(b * per_batch, (b + 1) * per_batch)
        labels = [i % 10 for i in range(b * per_batch, (b + 1) * per_batch)]
        with (folder / f"data_batch_{b + 1}").open("wb") as f:
            pickle.dump({b"data": rows[part], b"labels": labels}, f)
    return rows


def test_samples_of_several_ranks_are_merged_in_order(tmp_path):
    images, distributed = common("images"), common("distributed")
    shape = (2, 2, 3)

    def make_batch(j: int, lo: int, hi: int) -> np.ndarray:
        return np.broadcast_to(np.arange(lo, hi, dtype=np.uint8)[:, None, None, None], (hi - lo, *shape))

    path = tmp_path / "s.npz"
    # Without a process group the barriers are no-ops: run rank 1, then rank 0 (which merges).
    for rank in (1, 0):
        info = distributed.DistInfo(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
        images.write_samples_npz(
            path, 7, 2, shape, make_batch, info, extra={"y": np.arange(7)}, progress=False
        )
    stored = np.load(path)
    np.testing.assert_array_equal(stored["arr_0"][:, 0, 0, 0], np.arange(7))
    np.testing.assert_array_equal(stored["y"], np.arange(7))
    assert (tmp_path / "s.png").exists()
    assert not (tmp_path / "s.npz.parts").exists()


# ----------------------------------------------------------------------------------------------------
# End to end (slow): the real scripts in smoke mode


def run_script(script: Path, *args: str | Path, nproc: int = 2) -> None:
    """Run an example script with `torch.distributed.run` (CPU, gloo, `nproc` processes)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    result = subprocess.run(
        [*command, str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode:  # the whole output of every rank: enough to diagnose without a rerun
        pytest.fail(
            f"{script.name} failed ({result.returncode}): {' '.join(map(str, result.args))}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def imagenet_latents(tmp_path_factory):
    """A fake ImageNet folder (3 classes x 8 JPEGs of assorted sizes) encoded by 2 processes."""
    root = tmp_path_factory.mktemp("imagenet")
    sizes = [(300, 280), (520, 600), (256, 256), (700, 400), (200, 260)]
    for c in range(3):
        folder = root / "images" / f"n0{c}"
        folder.mkdir(parents=True)
        for i in range(8):
            random_image(*sizes[(c * 8 + i) % 5], seed=10 * c + i).save(folder / f"img{i}.JPEG", quality=90)
    script = EXAMPLES / "imagenet" / "extract_latents.py"
    run_script(script, "--smoke", "--images", root / "images", "--out", root / "latents", "--no-progress")
    return root


@pytest.mark.slow
def test_extract_latents_with_two_processes(imagenet_latents):
    data, vae_mod = load("imagenet", "data"), load("imagenet", "vae")
    dataset = data.LatentDataset(imagenet_latents / "latents")
    assert len(dataset) == 24
    assert dataset.latent_shape == (4, 32, 32)
    assert [p["count"] for p in dataset.parts] == [12, 12]  # one part per process
    assert [dataset[i][1] for i in range(24)] == [i // 8 for i in range(24)]
    # Items 11 and 12 sit on either side of the split between the processes: encode them again here.
    _, items = data.scan_image_folder(imagenet_latents / "images")
    vae = vae_mod.load_vae(vae_mod.TINY_VAE, torch.device("cpu"))
    pixels = torch.stack([data.CroppedImages(items, 256)[i][0] for i in (11, 12)])
    expected = vae_mod.encode_moments(vae, pixels)
    for row, index in enumerate((11, 12)):
        moments, _ = dataset[index]
        assert moments.shape == (2, 4, 32, 32)
        torch.testing.assert_close(moments, expected[row], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_imagenet_training_resumes_exactly(imagenet_latents, tmp_path):
    """2 ranks (gloo): 6 steps in one go == a job stopped at step 3 and a fresh job resuming it to 6."""
    script = EXAMPLES / "imagenet" / "train.py"
    common_args = ["--smoke", "--data", imagenet_latents / "latents", "--steps", 6, "--log-every", 1]
    common_args += ["--ckpt-every", 3, "--sample-every", 0, "--keep", 0, "--no-progress"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_script(script, *common_args, "--out", straight)
    run_script(script, *common_args, "--out", resumed, "--stop-at", 3)
    assert [p.name for p in sorted((resumed / "checkpoints").iterdir())] == ["ckpt-0000003.pt"]
    run_script(script, *common_args, "--out", resumed)

    a = torch.load(straight / "checkpoints" / "ckpt-0000006.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "ckpt-0000006.pt", weights_only=True)
    middle = torch.load(straight / "checkpoints" / "ckpt-0000003.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert a["objective"] == b["objective"] == {"step": 6}
    assert a["data"]["position"] == b["data"]["position"] == 6
    assert a["world_size"] == 2
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert any(not torch.equal(v, middle["model"][k]) for k, v in a["model"].items())  # it did train
    for name, value in a["ema"]["shadow"].items():
        assert torch.equal(value, b["ema"]["shadow"][name]), name
    for key, state in a["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][key][field]), (key, field)
    for rank in range(2):
        for name, value in a["rng"][rank].items():
            assert torch.equal(value, b["rng"][rank][name]), (rank, name)
    metrics = common("metrics")
    rows = metrics.read_metrics(resumed / "metrics.csv")
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    straight_rows = metrics.read_metrics(straight / "metrics.csv")
    assert [row["fm_mse"] for row in straight_rows] == [row["fm_mse"] for row in rows]
    assert set(rows[0]) >= {
        "step",
        "loss",
        "fm_mse",
        "sc_mse",
        "fm_weight",
        "sc_weight",
        "r",
        "lr",
        "img_per_s",
    }


OVERFIT_STEPS = 80
OVERFIT_FACTOR = 2.0  # measured: 7.6x (0.49 -> 0.065) over 80 steps at lr 3e-3 (tiny DiT, raw-time embedding)


@pytest.fixture(scope="module")
def overfit_run(imagenet_latents):
    """A tiny DiT trained in this process for 80 steps on the 24 latents; one sample grid at the end."""
    out = imagenet_latents / "overfit"
    train = load("imagenet", "train")
    args = ["--smoke", "--data", imagenet_latents / "latents", "--out", out, "--steps", OVERFIT_STEPS]
    args += [
        "--lr",
        "3e-3",
        "--log-every",
        10,
        "--ckpt-every",
        OVERFIT_STEPS,
        "--sample-every",
        OVERFIT_STEPS,
    ]
    train.main([str(a) for a in [*args, "--no-progress"]])
    return out


@pytest.mark.slow
def test_imagenet_overfit_lowers_the_flow_matching_error(overfit_run):
    rows = common("metrics").read_metrics(overfit_run / "metrics.csv")
    assert [row["step"] for row in rows] == list(range(10, OVERFIT_STEPS + 1, 10))
    first, last = rows[0]["fm_mse"], (rows[-1]["fm_mse"] + rows[-2]["fm_mse"]) / 2
    assert first / last >= OVERFIT_FACTOR, [row["fm_mse"] for row in rows]
    for nfe in (1, 2):
        grid = Image.open(overfit_run / "samples" / f"step-{OVERFIT_STEPS:07d}-nfe{nfe}.png")
        assert grid.size[0] > 256


@pytest.mark.slow
def test_imagenet_sample_writes_uniform_or_class_balanced_labels(overfit_run, tmp_path):
    sample = load("imagenet", "sample")

    def run(out: Path, nfe: int, *extra: str) -> dict[str, np.ndarray]:
        args = ["--smoke", "--ckpt", overfit_run, "--out", out, "--nfe", nfe, "--num-samples", 6]
        sample.main([str(a) for a in [*args, "--batch-size", 4, "--no-progress", *extra]])
        return npz_of(out)

    stored = run(tmp_path / "nfe2.npz", 2, "--labels", "balanced")
    assert stored["arr_0"].shape == (6, 256, 256, 3)
    assert stored["arr_0"].dtype == np.uint8
    assert np.bincount(stored["labels"], minlength=3).tolist() == [2, 2, 2]
    assert stored["arr_0"].std() > 0
    # One step instead of two: the same labels, other images.
    one = run(tmp_path / "nfe1.npz", 1, "--labels", "balanced")
    np.testing.assert_array_equal(one["labels"], stored["labels"])
    assert not np.array_equal(one["arr_0"], stored["arr_0"])
    # By default the labels are uniform at random, as the official inference draws them.
    uniform = run(tmp_path / "uniform.npz", 1)
    expected = class_labels(6, 3, generator=torch.Generator().manual_seed(42))
    np.testing.assert_array_equal(uniform["labels"], expected.numpy())


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar(root / "cifar-10-batches-py", per_batch=8)
    return root


@pytest.mark.slow
def test_cifar10_trains_with_two_processes_and_samples(cifar_root, tmp_path):
    script = EXAMPLES / "cifar10" / "train.py"
    run_script(
        script,
        "--smoke",
        "--data",
        cifar_root,
        "--out",
        tmp_path / "run",
        "--steps",
        4,
        "--sample-every",
        4,
        "--ckpt-every",
        2,
        "--no-progress",
    )
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-0000004.pt", weights_only=True)
    assert ckpt["world_size"] == 2
    assert ckpt["ema"]["num_calls"] == 4
    assert ckpt["ema"]["decay"] == 0.9999**2  # every 2 steps (smoke), by the per-step decay squared
    assert all(v.dtype == torch.float64 for v in ckpt["ema"]["shadow"].values())
    # The UNet has the augmentation input and the labels reached it on both ranks: DDP stops at the
    # second step when a parameter got no gradient.
    assert json.loads(ckpt["config"])["augment"] == {}
    key = "backbone.augment_embed.weight"
    assert ckpt["model"][key].shape == (2 * 16 * 2, 6)  # 2 time embeddings of 2 x 16 features, 6 labels
    assert (tmp_path / "run" / "samples" / "step-0000004-nfe1.png").exists()
    sample = load("cifar10", "sample")
    sample.main(
        [
            str(a)
            for a in ["--smoke", "--ckpt", tmp_path / "run", "--out", tmp_path / "s.npz", "--no-progress"]
        ]
    )
    stored = np.load(tmp_path / "s.npz")["arr_0"]
    assert stored.shape == (16, 32, 32, 3)
    assert stored.dtype == np.uint8


@pytest.mark.slow
def test_cifar10_interrupted_run_with_dropout_resumes_exactly(cifar_root, tmp_path):
    """--stop-at 2, then a resumed job to 4 == 4 steps in one go (dropout masks, float64 EMA)."""
    train = load("cifar10", "train")

    def run(out: Path, *extra: str | int) -> None:
        args = [
            "--smoke",
            "--data",
            cifar_root,
            "--out",
            out,
            "--steps",
            4,
            "--sample-every",
            0,
            "--no-progress",
        ]
        train.main([str(a) for a in [*args, *extra]])

    run(tmp_path / "straight")
    run(tmp_path / "resumed", "--stop-at", 2)
    assert [p.name for p in sorted((tmp_path / "resumed" / "checkpoints").iterdir())] == ["ckpt-0000002.pt"]
    run(tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "ckpt-0000004.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "ckpt-0000004.pt", weights_only=True)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for name, value in a["ema"]["shadow"].items():
        assert torch.equal(value, b["ema"]["shadow"][name]), name
    assert a["ema"]["num_calls"] == b["ema"]["num_calls"] == 4


# ----------------------------------------------------------------------------------------------------
# Official checkpoints: `sample.py --official`, `train.py --init-official` (tiny official-format runs)

TINY_DIT_RUN = {
    "model_type": "DiT-T-4",
    "dataset_type": "Tiny",  # registered below: 4 channels, 3 classes
    "data_size": 32,
    "noising_type": "Trig",
    "coefficient_type": "Trig",
    "cfg_drop_rate": 0.1,
    "total_steps": 400000,
}
TINY_UNET_RUN = {
    "model_type": "UNet",
    "dataset_type": "CIFAR10",
    "data_size": 32,
    "noising_type": "Linear",
    "coefficient_type": "Euler",
    "cfg_drop_rate": 0.0,
    "total_steps": 800000,
}
TINY_UNET_32 = replace(official_runs.TINY_UNET, image_size=32, attn_resolutions=(16,))


@pytest.fixture
def tiny_official(monkeypatch):
    """The tiny DiT `DiT-T-4`, a tiny UNet as the official one, and a 3-class latent dataset `Tiny`."""
    official_runs.register_tiny_networks(monkeypatch, unet=TINY_UNET_32, datasets={"Tiny": (4, 3)})


def official_model_and_optimizer(config, order_seed):
    payload, _ = official_runs.official_payload(config, seed=3, order_seed=order_seed)
    model = build_official(config).train()
    optimizer_class = torch.optim.RAdam if config["dataset_type"] == "CIFAR10" else torch.optim.AdamW
    optimizer = optimizer_class(model.parameters(), lr=1e-3)
    return payload, model, optimizer


@pytest.mark.parametrize("config", [TINY_DIT_RUN, TINY_UNET_RUN], ids=["dit", "unet"])
def test_official_optimizer_state_follows_the_checkpoint_order(tiny_official, config):
    """The official moments land on the same parameters under our names and module order."""
    official = common("official")
    payload, model, optimizer = official_model_and_optimizer(config, order_seed=7)
    assert list(payload["model"]) != list(to_official_state_dict(model))  # another order than ours
    optimizer.load_state_dict(official.optimizer_state_from_official(payload, model, optimizer))
    assert optimizer.param_groups[0]["lr"] == 1e-3  # this run's hyper-parameters are kept
    key_map = official_key_map(model)
    official_params = [k for k in payload["model"] if k in set(key_map.values())]
    saved = payload["optimizer"]["state"]
    checked = 0
    for name, param in model.named_parameters():
        official_name = key_map[name.removeprefix("backbone.")]
        expected = saved[official_params.index(official_name)]
        state = optimizer.state[param]
        assert torch.equal(state["exp_avg"], expected["exp_avg"]), name
        assert torch.equal(state["exp_avg_sq"], expected["exp_avg_sq"]), name
        assert float(state["step"]) == 2.0
        checked += 1
    assert checked == len(list(model.parameters()))


def test_official_optimizer_state_errors(tiny_official):
    official = common("official")
    payload, model, optimizer = official_model_and_optimizer(TINY_DIT_RUN, order_seed=None)
    with pytest.raises(ValueError, match="has no 'optimizer' entry: it cannot be continued"):
        official.optimizer_state_from_official({"model": payload["model"]}, model, optimizer)
    fewer = {**payload["optimizer"], "param_groups": [{"params": [0, 1]}]}
    with pytest.raises(ValueError, match="covers 2 parameters, the official network has"):
        official.optimizer_state_from_official({**payload, "optimizer": fewer}, model, optimizer)
    # Moments saved in another order than the checkpoint's keys are caught by their shapes.
    shuffled, _ = official_runs.official_payload(TINY_DIT_RUN, seed=3, order_seed=7)
    with pytest.raises(ValueError, match="the checkpoint's key order is not the official one"):
        official.optimizer_state_from_official({**payload, "model": shuffled["model"]}, model, optimizer)


def test_unet_overrides_and_dit_size():
    official = common("official")
    assert official.unet_overrides(UNetConfig()) == {}
    assert official.unet_overrides(TINY_UNET_32) == {
        "model_channels": 8,
        "channel_mult": [1, 2],
        "num_blocks": 1,
    }
    with torch.device("meta"):
        assert official.dit_size(DiT.from_size("XL/2")) == "XL/2"
        odd = DiT(DiTConfig(patch_size=2, hidden_size=96, depth=1, num_heads=2))
    with pytest.raises(ValueError, match="not in DIT_SIZES"):
        official.dit_size(odd)


def test_cifar10_flag_errors(tmp_path):
    train = load("cifar10", "train")
    args = ["--smoke", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    with pytest.raises(ValueError, match=r"the augmentation already mirrors images \(x-flip\)"):
        train.main([*args, "--hflip"])
    for flags in (["--continue-official"], ["--official-step", "5"]):
        with pytest.raises(
            ValueError, match="--continue-official and --official-step go with --init-official"
        ):
            train.main([*args, *flags])
    sample = load("cifar10", "sample")
    with pytest.raises(SystemExit):  # --ckpt and --official exclude each other
        sample.parse_args(["--ckpt", "a", "--official", "b", "--out", "c.npz"])
    with pytest.raises(SystemExit):
        sample.parse_args(["--ckpt", "a", "--official-step", "3", "--out", "c.npz"])


def test_augment_batch_feeds_the_labels_to_the_unet():
    train = load("cifar10", "train")
    data = torch.rand(5, 3, 8, 8) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    augmented, cond = train.augment_batch(AugmentPipe(p=1.0), data, 6, generator)
    expected = AugmentPipe(p=1.0)(data, generator=torch.Generator().manual_seed(0))
    assert torch.equal(augmented, expected.images)
    assert torch.equal(cond["augment_labels"], expected.labels)
    assert cond["augment_labels"].abs().sum() > 0
    plain, zeros = train.augment_batch(None, data, 6, generator)  # no augmentation: zero labels
    assert torch.equal(plain, data)
    assert torch.equal(zeros["augment_labels"], torch.zeros(5, 6))
    assert train.augment_batch(None, data, 0, generator) == (data, None)
    # The labels reach the UNet's augmentation input in a training step.
    network = load("cifar10", "network")
    config = {"unet": {"image_size": 8, "model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1}}
    model = official_runs.randomize(network.build_model(config), seed=0)
    objective = SoFlowLoss(SoFlowConfig.cifar10(total_steps=10))
    objective(model, augmented, cond, generator=generator).loss.backward()
    assert model.backbone.augment_embed.weight.grad.abs().min() > 0
    with pytest.raises(
        ValueError, match=r'needs a UNet with augmentation labels \("unet": \{"augment_dim": 6\}\)'
    ):
        train.augment_batch(AugmentPipe(), data, 0, generator)


def npz_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files}


@pytest.mark.slow
def test_imagenet_sample_official_checkpoint(tiny_official, tmp_path):
    """`--official RUN` samples the newest EMA weights with uniform labels, as the official inference."""
    sample, vae_mod, data = load("imagenet", "sample"), load("imagenet", "vae"), load("imagenet", "data")
    official_runs.write_run(tmp_path / "run", TINY_DIT_RUN, steps=(3, 8))
    args = ["--official", tmp_path / "run", "--smoke", "--nfe", 2, "--num-samples", 6, "--batch-size", 4]
    sample.main([str(a) for a in [*args, "--out", tmp_path / "uniform.npz", "--no-progress"]])
    stored = npz_of(tmp_path / "uniform.npz")
    assert stored["arr_0"].shape == (6, 256, 256, 3)
    assert stored["arr_0"].dtype == np.uint8
    labels = class_labels(6, 3, generator=torch.Generator().manual_seed(42))
    np.testing.assert_array_equal(stored["labels"], labels.numpy())
    # The first batch, computed here: newest checkpoint, EMA weights, the official Trig path.
    model = load_official(tmp_path / "run")
    assert model.path.name == "trig"
    generator = torch.Generator().manual_seed(42 * 2**32)
    noise = torch.randn(4, 4, 32, 32, generator=generator)
    latents = soflow_sample(model, noise, steps=2, cond=labels[:4], generator=generator)
    vae = vae_mod.load_vae(vae_mod.TINY_VAE, torch.device("cpu"))
    images = vae_mod.decode_latents(vae, latents, data.LATENT_SCALE)
    np.testing.assert_array_equal(stored["arr_0"][:4], fid.to_uint8(images).numpy())
    # Balanced per class on request; another step and the raw weights on request.
    args += ["--labels", "balanced", "--official-step", 3, "--weights", "model"]
    sample.main([str(a) for a in [*args, "--out", tmp_path / "balanced.npz", "--no-progress"]])
    balanced = npz_of(tmp_path / "balanced.npz")
    assert np.bincount(balanced["labels"], minlength=3).tolist() == [2, 2, 2]
    assert not np.array_equal(balanced["arr_0"], stored["arr_0"])


@pytest.mark.slow
def test_cifar10_sample_official_checkpoint(tiny_official, tmp_path):
    sample = load("cifar10", "sample")
    official_runs.write_run(tmp_path / "run", TINY_UNET_RUN, steps=(5,))
    out = tmp_path / "s.npz"
    args = [
        "--official",
        tmp_path / "run" / "ckpts" / "5.pt",
        "--smoke",
        "--num-samples",
        5,
        "--batch-size",
        3,
    ]
    sample.main([str(a) for a in [*args, "--out", out, "--no-progress"]])
    stored = npz_of(out)
    assert set(stored) == {"arr_0"}  # unconditional: no labels
    assert stored["arr_0"].shape == (5, 32, 32, 3)
    assert stored["arr_0"].dtype == np.uint8
    model = load_official(tmp_path / "run" / "ckpts" / "5.pt")
    assert model.backbone.config == TINY_UNET_32
    generator = torch.Generator().manual_seed(42 * 2**32 + 1)  # the second batch: images 3 and 4
    noise = torch.randn(2, 3, 32, 32, generator=generator)
    images = soflow_sample(model, noise, steps=1, generator=generator)
    np.testing.assert_array_equal(stored["arr_0"][3:], fid.to_uint8(images).numpy())
    with pytest.raises(
        ValueError, match="examples/imagenet trains and samples a DiT; the official checkpoint holds a UNet"
    ):
        load("imagenet", "sample").main([str(a) for a in [*args, "--out", tmp_path / "x.npz"]])


def train_args(data: Path, out: Path, *extra: str | int | Path) -> list[str]:
    args = ["--smoke", "--data", data, "--out", out, "--sample-every", 0, "--log-every", 1, "--no-progress"]
    return [str(a) for a in [*args, *extra]]


def ckpt(out: Path, step: int) -> dict:
    return torch.load(out / "checkpoints" / f"ckpt-{step:07d}.pt", weights_only=True)


def our_names(payload_state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """An official state dict under the wrapper's names (`backbone.…`)."""
    converted = from_official_state_dict(payload_state, model.backbone)
    return {f"backbone.{k}": v for k, v in converted.items()}


IMAGENET_RUN = {**TINY_DIT_RUN, "dataset_type": "Imagenet"}  # 1000 classes; the fake data has 3


@pytest.mark.slow
def test_imagenet_init_official_fine_tunes_the_ema_weights(tiny_official, imagenet_latents, tmp_path):
    train = load("imagenet", "train")
    runs = official_runs.write_run(tmp_path / "official", IMAGENET_RUN, steps=(4,))
    official_ema = runs[4][1]
    latents = imagenet_latents / "latents"
    # Learning rate 0: the run keeps the weights it starts from, which must be the official EMA's.
    frozen = tmp_path / "frozen"
    train.main(train_args(latents, frozen, "--steps", 2, "--lr", 0, "--init-official", tmp_path / "official"))
    state = ckpt(frozen, 2)
    config = json.loads(state["config"])
    assert (config["model"], config["num_classes"], config["null_class"]) == ("T/4", 1000, True)
    assert (config["path"], config["parametrization"]) == ("trig", "trig")
    assert state["objective"] == {"step": 2}  # fine-tuning starts the curriculum afresh
    expected = official_ema.state_dict()
    for name, value in state["model"].items():
        assert torch.equal(value, expected[name]), name
        assert torch.equal(state["ema"]["shadow"][name], expected[name]), name
    assert all(float(s["step"]) == 2.0 for s in state["optimizer"]["state"].values())  # a fresh optimizer
    # With the smoke learning rate it trains away from them.
    tuned = tmp_path / "tuned"
    train.main(train_args(latents, tuned, "--steps", 2, "--init-official", tmp_path / "official"))
    assert any(not torch.equal(v, expected[k]) for k, v in ckpt(tuned, 2)["model"].items())
    # A restarted job resumes its own checkpoint; the official run is not read again.
    (tmp_path / "official").rename(tmp_path / "moved")
    train.main(train_args(latents, tuned, "--steps", 3, "--init-official", tmp_path / "official"))
    assert ckpt(tuned, 3)["objective"] == {"step": 3}
    rows = common("metrics").read_metrics(tuned / "metrics.csv")
    assert [row["step"] for row in rows] == [1, 2, 3]


@pytest.mark.slow
def test_imagenet_continue_official_run(tiny_official, imagenet_latents, tmp_path):
    """--continue-official: raw weights, EMA, optimizer moments and step of the official checkpoint."""
    train = load("imagenet", "train")
    runs = official_runs.write_run(tmp_path / "official", IMAGENET_RUN, steps=(5,), order_seed=3)
    payload, official_ema = runs[5]
    assert payload["finished_steps"] == 6
    latents, out = imagenet_latents / "latents", tmp_path / "continued"
    source = ["--init-official", tmp_path / "official", "--continue-official"]
    with pytest.raises(ValueError, match="finished 6 steps; --steps 6 leaves nothing to train"):
        train.main(train_args(latents, out, "--steps", 6, *source))
    train.main(train_args(latents, out, "--steps", 8, "--lr", 0, *source))
    state = ckpt(out, 8)
    assert state["objective"] == {"step": 8}
    assert state["data"]["position"] == 8
    assert state["ema"]["num_calls"] == 8
    rows = common("metrics").read_metrics(out / "metrics.csv")
    assert [row["step"] for row in rows] == [7, 8]
    model = load_official(tmp_path / "official")
    raw = our_names(payload["model"], model)
    ema = official_ema.state_dict()
    for name, value in state["model"].items():
        assert torch.equal(value, raw[name]), name  # lr 0: the official raw weights
        averaged = ema[name].lerp(raw[name], 1 - 0.9999).lerp(raw[name], 1 - 0.9999)
        torch.testing.assert_close(state["ema"]["shadow"][name], averaged, rtol=0, atol=1e-7)
    # Two more AdamW steps on the official moments (which had taken 2).
    assert all(float(s["step"]) == 4.0 for s in state["optimizer"]["state"].values())


@pytest.mark.slow
def test_cifar10_init_official_with_augmentation(tiny_official, cifar_root, tmp_path):
    """The official UNet (augmentation input included) continued with RAdam, float64 EMA every 2 steps."""
    train = load("cifar10", "train")
    runs = official_runs.write_run(tmp_path / "official", TINY_UNET_RUN, steps=(2,), order_seed=5)
    payload, official_ema = runs[2]  # finished_steps 3
    out = tmp_path / "run"
    source = ["--init-official", tmp_path / "official", "--continue-official", "--lr", 0]
    train.main(train_args(cifar_root, out, "--steps", 5, *source))
    state = ckpt(out, 5)
    config = json.loads(state["config"])
    assert config["unet"] == {"model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1}
    assert config["augment"] == {}
    assert state["ema"]["num_calls"] == 5
    model = load_official(tmp_path / "official")
    raw, ema = our_names(payload["model"], model), official_ema.state_dict()
    decay = 0.9999**2  # smoke: the average moves every 2 steps, by the per-step decay squared
    for name, value in state["model"].items():
        assert torch.equal(value, raw[name]), name
        if value.is_floating_point():  # one update, at the 4th call
            averaged = ema[name].double().lerp(raw[name].double(), 1 - decay)
            torch.testing.assert_close(state["ema"]["shadow"][name], averaged, rtol=1e-12, atol=1e-12)
    assert all(float(s["step"]) == 4.0 for s in state["optimizer"]["state"].values())
    # Fine-tuning with the smoke learning rate moves every weight, the augmentation input's included.
    tuned = tmp_path / "tuned"
    train.main(train_args(cifar_root, tuned, "--steps", 2, "--init-official", tmp_path / "official"))
    tuned_state = ckpt(tuned, 2)["model"]
    key = "backbone.augment_embed.weight"
    assert not torch.equal(tuned_state[key], ema[key])


# ----------------------------------------------------------------------------------------------------
# The committed figures of docs/reproduce.md are what the scripts compute


def test_compute_budget_json_is_what_the_script_counts():
    budget = common("compute_budget")
    stored = json.loads((EXAMPLES / "common" / "compute_budget.json").read_text())
    throughput = stored["assumed_tflops_per_gpu"] * 1e12
    with torch.device("meta"):
        model = SolutionFlowWrapper(DiT.from_size("B/4"))
        x, labels = torch.randn(32, 4, 32, 32), torch.randint(0, 1000, (32,))
    model.check_inputs = False
    row = stored["runs"]["DiT-B/4"]
    forward = budget.network_flops(model, x[:2], labels[:2])
    assert forward / 1e9 == row["forward_gflops_per_image"]
    train = budget.step_flops(model, SoFlowConfig.imagenet(total_steps=400_000), x, labels, 1000)
    assert train / 1e9 == row["train_step_gflops_per_image"]
    # 1.25 guidance + 3 with gradient (no input gradient of the first layer) + 0.25 target passes
    assert row["train_step_over_forward"] == pytest.approx(4.5, rel=1e-3)
    assert row["params"] == sum(p.numel() for p in model.parameters())
    for name, run in stored["runs"].items():
        total = run["train_step_gflops_per_image"] * 1e9 * run["batch"] * run["steps"]
        assert run["train_exaflops"] == pytest.approx(total / 1e18, rel=1e-12), name
        assert run["train_gpu_hours"] == pytest.approx(total / throughput / 3600, rel=1e-12), name
        decode = stored["vae_flops"]["decode_per_image"] if name.startswith("DiT") else 0.0
        for nfe, minutes in run["fid50k_sampling_gpu_minutes"].items():
            flops = 50_000 * (int(nfe) * run["forward_gflops_per_image"] * 1e9 + decode)
            assert minutes == pytest.approx(flops / throughput / 60, rel=1e-12), (name, nfe)
    assert stored["runs"]["UNet"]["train_step_over_forward"] == pytest.approx(4.0, rel=1e-3)


def test_parity_report_json_is_what_the_script_measures():
    report = common("parity_report")
    stored = json.loads((EXAMPLES / "common" / "parity_report.json").read_text())
    for measured, saved in zip(report.network_parity(), stored["networks"], strict=True):
        assert measured["case"] == saved["case"]
        for key in ("solution_relative_error", "velocity_relative_error"):
            assert measured[key] == pytest.approx(saved[key], rel=0.5, abs=1e-7), (saved["case"], key)
            assert measured[key] < 1e-5
    for measured, saved in zip(report.augment_parity(), stored["augmentation"], strict=True):
        assert measured["labels_bit_identical"] is saved["labels_bit_identical"] is True
        assert measured["max_abs_image_difference"] == pytest.approx(
            saved["max_abs_image_difference"], rel=0.5, abs=1e-7
        )


# --- `train.py --init-fm`: a flow-matching checkpoint in SiT's layout (a tiny random one) ------------


def tiny_sit_checkpoint(path: Path, *, learn_sigma: bool = True) -> dict[str, torch.Tensor]:
    """A SiT `train.py` checkpoint of the T/4 shape (32x32x4 latents, 1000 classes + null), random weights.

    Written in SiT's key layout (`x_embedder.proj`, `t_embedder.mlp.{0,2}`, `y_embedder.embedding_table`,
    `blocks.i.adaLN_modulation.1`, `final_layer.*`), with learned sigma (twice the output channels).
    """
    from soflow_toolkit.sit import sit_key_map

    torch.manual_seed(5)
    dit = DiT(DiTConfig.from_size("T/4", input_size=32, in_channels=4, num_classes=1000))
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if name != "pos_embed":
                p.normal_(0, 0.05)
    ours = dit.state_dict()
    state = {theirs: ours[mine].clone() for mine, theirs in sit_key_map(dit).items()}
    if learn_sigma:
        channels, patch = 4, 4
        for leaf in ("weight", "bias"):
            value = state[f"final_layer.linear.{leaf}"]
            first = value.reshape(patch * patch, channels, -1)
            both = torch.cat([first, torch.randn_like(first)], dim=1)  # (patch row, col, 2 * channels)
            state[f"final_layer.linear.{leaf}"] = both.reshape(-1, *value.shape[1:])
    args = argparse.Namespace(model="SiT-T/4", path_type="Linear", prediction="velocity")
    torch.save({"model": state, "ema": state, "opt": {}, "args": args}, path)
    return state


@pytest.mark.slow
def test_imagenet_init_fm_fine_tunes_a_sit_checkpoint(imagenet_latents, tmp_path):
    """--init-fm: the run starts at the converted SiT weights (time and sign folded in, zero t - s
    embedder), so its velocity is the pretrained one; it trains from there and resumes its own run."""
    from soflow_toolkit.sit import from_sit_state_dict

    train = load("imagenet", "train")
    source = tmp_path / "0004000.pt"
    state = tiny_sit_checkpoint(source)
    latents = imagenet_latents / "latents"
    frozen = tmp_path / "frozen"
    train.main(train_args(latents, frozen, "--steps", 2, "--lr", 0, "--init-fm", source))
    saved = ckpt(frozen, 2)
    config = json.loads(saved["config"])
    assert (config["model"], config["num_classes"], config["null_class"]) == ("T/4", 1000, True)
    assert saved["objective"] == {"step": 2}
    model = train.build_model(config)
    expected = from_sit_state_dict(state, model.backbone)
    for name, value in expected.items():
        assert torch.equal(saved["model"][f"backbone.{name}"], value), name
    model.load_state_dict(saved["model"])
    # The velocity is SiT's, read in this toolkit's direction: v(x, t) = -SiT(x, 1 - t) (no gap input).
    g = torch.Generator().manual_seed(0)
    x, t, labels = (
        torch.randn(3, 4, 32, 32, generator=g),
        torch.rand(3, generator=g),
        torch.tensor([0, 2, 999]),
    )
    unrotated = DiT(model.backbone.config)
    plain = from_sit_state_dict(state, unrotated, reverse_time=False)
    unrotated.load_state_dict(plain)
    with torch.no_grad():
        torch.testing.assert_close(
            model.velocity(x, t, labels), -unrotated(x, 1 - t, 1 - t, labels), rtol=1e-4, atol=1e-5
        )
    tuned = tmp_path / "tuned"
    train.main(train_args(latents, tuned, "--steps", 2, "--init-fm", source))
    assert any(not torch.equal(v, saved["model"][k]) for k, v in ckpt(tuned, 2)["model"].items())
    source.rename(tmp_path / "moved.pt")  # a restarted job resumes its own checkpoint
    train.main(train_args(latents, tuned, "--steps", 3, "--init-fm", source))
    assert ckpt(tuned, 3)["objective"] == {"step": 3}


@pytest.mark.slow
def test_imagenet_init_fm_errors(imagenet_latents, tmp_path):
    train = load("imagenet", "train")
    latents = imagenet_latents / "latents"
    source = tmp_path / "sit.pt"
    tiny_sit_checkpoint(source)
    with pytest.raises(ValueError, match="--init-fm and --init-official are two starts"):
        train.main(train_args(latents, tmp_path / "a", "--init-fm", source, "--init-official", tmp_path))
    with pytest.raises(FileNotFoundError, match="no SiT checkpoint at"):
        train.main(train_args(latents, tmp_path / "b", "--init-fm", tmp_path / "missing.pt"))
    wide = tmp_path / "wide.pt"
    state = torch.load(source, weights_only=False)["ema"]
    state["x_embedder.proj.weight"] = torch.zeros(64, 4, 2, 2)
    torch.save(state, wide)
    with pytest.raises(ValueError, match=r"patch 2, width 64, depth 2: not one of DIT_SIZES"):
        train.main(train_args(latents, tmp_path / "c", "--init-fm", wide))
