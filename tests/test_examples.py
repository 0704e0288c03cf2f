"""Tests of the ImageNet and CIFAR-10 examples (`examples/`).

Unit tests of their pieces run in the fast suite. The end-to-end tests (marked `slow`) run the real
scripts in smoke mode on CPU: latent extraction of a fake ImageNet folder with a tiny random VAE and 2
processes, DiT training with `torch.distributed.run --nproc-per-node=2` (gloo) interrupted and resumed,
an overfit run, `.npz` sampling, and the CIFAR-10 UNet trained and resumed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

from soflow_toolkit.models import DiT, DiTConfig, UNetConfig

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
    }
    dataset = SimpleNamespace(latent_shape=(4, 32, 32), num_classes=1000)
    with torch.device("meta"):
        model = train.build_model(config, dataset)
    assert isinstance(model.backbone, DiT)
    assert model.backbone.config == DiTConfig.from_size(size.replace("-", "/"))
    assert (model.path.name, model.parametrization.name) == ("linear", "euler")


def test_imagenet_smoke_config_is_tiny():
    train = load("imagenet", "train")
    config = {**train.DEFAULTS, **json.loads((EXAMPLES / "imagenet" / "configs" / "smoke.json").read_text())}
    model = train.build_model(config, SimpleNamespace(latent_shape=(4, 32, 32), num_classes=3))
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert model.backbone.label_embed.num_embeddings == 4  # 3 classes + the null class


def test_cifar10_configs_build_the_official_unet():
    network = load("cifar10", "network")
    train = load("cifar10", "train")
    config = {**train.DEFAULTS, **json.loads((EXAMPLES / "cifar10" / "configs" / "cifar10.json").read_text())}
    with torch.device("meta"):
        unet = network.build_unet(config)
    # The official network; its augmentation-label input is off until an augmentation pipeline feeds it.
    assert unet.config == UNetConfig(augment_dim=0)
    assert network.build_unet(train.DEFAULTS).config == unet.config
    smoke = {**train.DEFAULTS, **json.loads((EXAMPLES / "cifar10" / "configs" / "smoke.json").read_text())}
    assert sum(p.numel() for p in network.build_unet(smoke).parameters()) < 500_000
    with pytest.raises(ValueError, match=r"unknown UNetConfig fields \['channels'\]"):
        network.unet_config({"unet": {"channels": 16}})


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
    assert soflow.fm_fraction == 0.75


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
    if result.returncode:
        pytest.fail(
            f"{script.name} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
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
def test_imagenet_sample_writes_a_class_balanced_npz(overfit_run, tmp_path):
    sample = load("imagenet", "sample")
    out = tmp_path / "nfe2.npz"
    sample.main(
        [
            str(a)
            for a in [
                "--smoke",
                "--ckpt",
                overfit_run,
                "--out",
                out,
                "--nfe",
                2,
                "--num-samples",
                6,
                "--batch-size",
                4,
                "--no-progress",
            ]
        ]
    )
    stored = np.load(out)
    assert stored["arr_0"].shape == (6, 256, 256, 3)
    assert stored["arr_0"].dtype == np.uint8
    assert np.bincount(stored["labels"], minlength=3).tolist() == [2, 2, 2]
    assert stored["arr_0"].std() > 0
    # One step instead of two: the same labels, other images.
    one = tmp_path / "nfe1.npz"
    sample.main(
        [
            str(a)
            for a in [
                "--smoke",
                "--ckpt",
                overfit_run,
                "--out",
                one,
                "--nfe",
                1,
                "--num-samples",
                6,
                "--batch-size",
                4,
                "--no-progress",
            ]
        ]
    )
    np.testing.assert_array_equal(np.load(one)["labels"], stored["labels"])
    assert not np.array_equal(np.load(one)["arr_0"], stored["arr_0"])


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
        "--no-progress",
    )
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "ckpt-0000004.pt", weights_only=True)
    assert ckpt["world_size"] == 2
    assert ckpt["ema"]["num_calls"] == 4
    assert all(v.dtype == torch.float64 for v in ckpt["ema"]["shadow"].values())
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
