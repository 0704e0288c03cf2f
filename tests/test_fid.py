"""FID: statistics, the Fréchet distance, ADM `.npz` files, the Inception wrapper and the command line.

Closed forms: the Fréchet distance of diagonal, commuting and scalar-multiple covariances, and 1-D
Gaussians; `scipy.linalg.sqrtm` (what the ADM evaluator calls) on random covariances. Statistics are
checked against `np.mean`/`np.cov` of all features at once. The Inception network itself needs
torch-fidelity and downloaded weights, so it is replaced by a small random convolutional extractor;
the torch-fidelity glue is checked with a stand-in module. No test downloads anything.
"""

from __future__ import annotations

import math
import subprocess
import sys
import types
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import seeds
from torch import Tensor, nn

from soflow_toolkit.fid import (
    FeatureStatistics,
    InceptionFeatures,
    NpzWriter,
    StatisticsAccumulator,
    class_labels,
    feature_statistics,
    fid_from_npz,
    frechet_distance,
    npz_array_info,
    npz_statistics,
    read_npz_batches,
    read_statistics,
    save_statistics,
    sqrtm_psd,
    to_uint8,
    trace_sqrt_product,
)
from soflow_toolkit.fid import cli as fid_cli
from soflow_toolkit.fid import evaluate as fid_evaluate

ROOT = Path(__file__).resolve().parents[1]


def random_spd(dim: int, seed: int, *, rank: int | None = None, scale: float = 1.0) -> Tensor:
    """A random symmetric PSD matrix (full rank unless `rank` < `dim`), float64."""
    g = torch.Generator().manual_seed(seed)
    factor = torch.randn(dim, rank or dim, generator=g, dtype=torch.float64)
    matrix = factor @ factor.T * scale / dim
    return matrix + (1e-3 * torch.eye(dim, dtype=torch.float64) if rank is None else 0)


def random_orthogonal(dim: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return q


def stats(mean: Tensor, cov: Tensor) -> FeatureStatistics:
    return FeatureStatistics(mean.to(torch.float64), cov.to(torch.float64))


class RandomFeatures(nn.Module):
    """A small random convolutional feature extractor: uint8 (B, 3, H, W) -> (B, 16)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 16)
        self.calls = 0

    def forward(self, images: Tensor) -> Tensor:
        assert images.dtype == torch.uint8
        assert images.shape[1] == 3
        self.calls += 1
        h = torch.relu(self.conv(images.float() / 127.5 - 1)).mean(dim=(2, 3))
        return torch.tanh(self.head(h))


def random_images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------
# Matrix square root and the trace term


def test_sqrtm_psd_of_a_diagonal_matrix_is_the_elementwise_root():
    values = torch.tensor([0.0, 0.25, 4.0, 9.0], dtype=torch.float64)
    assert torch.allclose(sqrtm_psd(torch.diag(values)), torch.diag(values.sqrt()), atol=1e-15)


@given(seed=seeds, dim=st.integers(1, 12), low_rank=st.booleans())
def test_sqrtm_psd_squares_back_and_is_symmetric_psd(seed, dim, low_rank):
    matrix = random_spd(dim, seed, rank=max(1, dim // 2) if low_rank else None)
    root = sqrtm_psd(matrix)
    assert root.dtype == torch.float64
    assert torch.allclose(root, root.T, atol=1e-14)
    assert float(torch.linalg.eigvalsh(root).min()) > -1e-7
    assert torch.allclose(root @ root, matrix, atol=1e-10 * float(matrix.abs().max()))


def test_sqrtm_psd_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    matrix = random_spd(20, 3)
    expected = linalg.sqrtm(matrix.numpy())
    np.testing.assert_allclose(sqrtm_psd(matrix).numpy(), np.real(expected), rtol=1e-9, atol=1e-12)


def test_trace_sqrt_product_of_diagonal_covariances():
    a = torch.tensor([1.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    b = torch.tensor([3.0, 0.5, 8.0, 2.0], dtype=torch.float64)
    expected = (a * b).sqrt().sum()
    assert math.isclose(
        float(trace_sqrt_product(torch.diag(a), torch.diag(b))), float(expected), rel_tol=1e-13
    )


@given(seed=seeds, dim=st.integers(1, 10), rank=st.integers(1, 10))
def test_trace_sqrt_product_of_commuting_covariances(seed, dim, rank):
    """Sigma_i = Q diag(a_i) Q^T share eigenvectors: tr sqrt(Sigma_1 Sigma_2) = sum sqrt(a_1 a_2),
    including singular ones (a_1 with zeros, as with fewer samples than features)."""
    g = torch.Generator().manual_seed(seed)
    q = random_orthogonal(dim, seed)
    a1 = torch.rand(dim, generator=g, dtype=torch.float64) * 3
    a1[min(rank, dim) :] = 0
    a2 = torch.rand(dim, generator=g, dtype=torch.float64) * 3 + 0.1
    s1, s2 = q @ torch.diag(a1) @ q.T, q @ torch.diag(a2) @ q.T
    expected = float((a1 * a2).sqrt().sum())
    assert abs(float(trace_sqrt_product(s1, s2)) - expected) < 1e-9 * max(1.0, expected)
    assert abs(float(trace_sqrt_product(s2, s1)) - expected) < 1e-9 * max(1.0, expected)


@given(seed=seeds, c=st.floats(0.01, 100.0))
def test_trace_sqrt_product_of_a_scaled_covariance(seed, c):
    sigma = random_spd(6, seed)
    assert math.isclose(
        float(trace_sqrt_product(sigma, c * sigma)), math.sqrt(c) * float(torch.trace(sigma)), rel_tol=1e-10
    )


def test_trace_sqrt_product_matches_scipy_sqrtm_of_the_product():
    """What the ADM evaluator computes: tr sqrtm(Sigma_1 Sigma_2) of the non-symmetric product."""
    linalg = pytest.importorskip("scipy.linalg")
    for seed in range(3):
        s1, s2 = random_spd(32, seed), random_spd(32, seed + 100, scale=3.0)
        expected = np.trace(np.real(linalg.sqrtm(s1.numpy() @ s2.numpy())))
        assert math.isclose(float(trace_sqrt_product(s1, s2)), expected, rel_tol=1e-10)


@pytest.mark.parametrize(
    ("matrix", "error", "message"),
    [
        (torch.ones(2, 3), ValueError, "square"),
        (torch.ones(4), ValueError, "square"),
        (torch.tensor([[1.0, 2.0], [0.0, 1.0]]), ValueError, "symmetric"),
        (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), ValueError, "NaN"),
        (torch.eye(2, dtype=torch.int64), TypeError, "floating"),
        (np.eye(2), TypeError, "torch.Tensor"),
    ],
)
def test_sqrtm_psd_rejects_bad_matrices(matrix, error, message):
    with pytest.raises(error, match=message):
        sqrtm_psd(matrix)


def test_trace_sqrt_product_rejects_different_shapes():
    with pytest.raises(ValueError, match="same shape"):
        trace_sqrt_product(torch.eye(2), torch.eye(3))


# ----------------------------------------------------------------------------------------------------
# The Fréchet distance


@given(m1=st.floats(-5, 5), m2=st.floats(-5, 5), s1=st.floats(0.01, 5), s2=st.floats(0.01, 5))
def test_frechet_distance_of_1d_gaussians(m1, m2, s1, s2):
    f64 = torch.float64
    a = stats(torch.tensor([m1], dtype=f64), torch.tensor([[s1**2]], dtype=f64))
    b = stats(torch.tensor([m2], dtype=f64), torch.tensor([[s2**2]], dtype=f64))
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
    assert math.isclose(frechet_distance(a, b), expected, rel_tol=1e-9, abs_tol=1e-12)


@given(seed=seeds, dim=st.integers(1, 10))
def test_frechet_distance_of_commuting_gaussians(seed, dim):
    """d^2 = |mu_1 - mu_2|^2 + sum_i (sqrt a_i - sqrt b_i)^2 in the shared eigenbasis."""
    g = torch.Generator().manual_seed(seed)
    q = random_orthogonal(dim, seed)
    a, b = (torch.rand(dim, generator=g, dtype=torch.float64) * 4 for _ in range(2))
    mu1, mu2 = (torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(2))
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    value = frechet_distance(stats(mu1, q @ torch.diag(a) @ q.T), stats(mu2, q @ torch.diag(b) @ q.T))
    assert abs(value - expected) < 1e-9 * max(1.0, expected)


@given(seed=seeds, dim=st.integers(1, 16))
def test_frechet_distance_is_a_symmetric_nonnegative_distance(seed, dim):
    g = torch.Generator().manual_seed(seed)
    a = stats(torch.randn(dim, generator=g), random_spd(dim, seed))
    b = stats(torch.randn(dim, generator=g), random_spd(dim, seed + 1))
    ab, ba = frechet_distance(a, b), frechet_distance(b, a)
    assert ab >= 0
    assert math.isclose(ab, ba, rel_tol=1e-9, abs_tol=1e-12)
    assert frechet_distance(a, a) < 1e-9 * float(torch.trace(a.cov))


def test_frechet_distance_matches_the_adm_formula_with_scipy():
    """The ADM evaluator: diff.diff + tr S1 + tr S2 - 2 tr sqrtm(S1 S2) (real part), with scipy."""
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    features1 = torch.randn(400, 24, generator=g, dtype=torch.float64)
    features2 = torch.randn(400, 24, generator=g, dtype=torch.float64) @ random_spd(24, 5) + 0.3
    mu1, mu2 = features1.mean(0).numpy(), features2.mean(0).numpy()
    s1, s2 = np.cov(features1.numpy(), rowvar=False), np.cov(features2.numpy(), rowvar=False)
    diff = mu1 - mu2
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2)))
    a = StatisticsAccumulator()
    a.update(features1)
    b = StatisticsAccumulator()
    b.update(features2)
    assert math.isclose(frechet_distance(a.compute(), b.compute()), expected, rel_tol=1e-10)


def test_frechet_distance_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="different feature dimensions: 2 and 3"):
        frechet_distance(stats(torch.zeros(2), torch.eye(2)), stats(torch.zeros(3), torch.eye(3)))
    with pytest.raises(TypeError, match="FeatureStatistics"):
        frechet_distance((torch.zeros(2), torch.eye(2)), stats(torch.zeros(2), torch.eye(2)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"mean": torch.zeros(2, 1), "cov": torch.eye(2)}, ValueError, r"shape \(D,\)"),
        ({"mean": torch.zeros(2), "cov": torch.eye(3)}, ValueError, r"shape \(2, 2\)"),
        ({"mean": torch.zeros(2, dtype=torch.int64), "cov": torch.eye(2)}, TypeError, "floating"),
        ({"mean": np.zeros(2), "cov": torch.eye(2)}, TypeError, "ndarray"),
        ({"mean": torch.zeros(2), "cov": torch.eye(2), "count": 1}, ValueError, "count"),
    ],
)
def test_feature_statistics_rejects_bad_fields(kwargs, error, message):
    with pytest.raises(error, match=message):
        FeatureStatistics(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Accumulated statistics


@given(seed=seeds, sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6), dim=st.integers(1, 6))
def test_accumulated_statistics_equal_numpy_on_all_features_at_once(seed, sizes, dim):
    g = torch.Generator().manual_seed(seed)
    total = max(sum(sizes), 2)
    sizes = [*sizes[:-1], total - sum(sizes[:-1])]
    features = torch.randn(total, dim, generator=g) * 3 + torch.randn(dim, generator=g) * 10
    acc = StatisticsAccumulator()
    for chunk in features.split(sizes):
        acc.update(chunk)
    result = acc.compute()
    array = features.double().numpy()
    assert result.count == total
    np.testing.assert_allclose(result.mean.numpy(), array.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        result.cov.numpy(), np.atleast_2d(np.cov(array, rowvar=False)), rtol=1e-10, atol=1e-10
    )


def test_accumulated_covariance_does_not_cancel_for_a_large_mean():
    """Features with mean 1e6 and unit spread: sum x x^T - N mu mu^T would lose all digits; the
    chunked merge keeps the covariance of the centred features."""
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    acc = StatisticsAccumulator()
    for chunk in (spread + 1e6).split(7):
        acc.update(chunk)
    np.testing.assert_allclose(acc.compute().cov.numpy(), np.cov(spread.numpy(), rowvar=False), rtol=1e-6)


def test_merged_accumulators_equal_one_accumulator():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(50, 4, generator=g)
    whole, left, right, empty = (StatisticsAccumulator() for _ in range(4))
    whole.update(features)
    left.update(features[:13])
    right.update(features[13:])
    left.merge(right)
    left.merge(empty)
    assert left.count == 50
    assert torch.allclose(left.compute().cov, whole.compute().cov, atol=1e-12)
    assert torch.allclose(left.compute().mean, whole.compute().mean, atol=1e-12)


def test_accumulator_rejects_bad_input():
    acc = StatisticsAccumulator()
    with pytest.raises(ValueError, match="at least 2 features"):
        acc.compute()
    with pytest.raises(ValueError, match=r"shape \(B, D\)"):
        acc.update(torch.zeros(3))
    with pytest.raises(TypeError, match="floating"):
        acc.update(torch.zeros(3, 2, dtype=torch.int64))
    acc.update(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="2 columns"):
        acc.update(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        acc.update(torch.full((3, 2), float("nan")))
    other = StatisticsAccumulator()
    other.update(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="dimension 5 into dimension 2"):
        acc.merge(other)
    with pytest.raises(TypeError, match="StatisticsAccumulator"):
        acc.merge(torch.zeros(2))  # type: ignore[arg-type]


def test_feature_statistics_of_image_batches_equal_the_direct_computation():
    extractor = RandomFeatures()
    images = torch.from_numpy(random_images(37))
    result = feature_statistics(images.split(10), extractor)
    with torch.no_grad():
        features = extractor(images.permute(0, 3, 1, 2)).double()
    assert extractor.calls == 5
    assert torch.allclose(result.mean, features.mean(0), atol=1e-12)
    assert torch.allclose(result.cov, torch.cov(features.T), atol=1e-12)


def test_feature_statistics_rejects_bad_batches():
    extractor = RandomFeatures()
    with pytest.raises(TypeError, match="uint8"):
        feature_statistics([torch.zeros(2, 4, 4, 3)], extractor)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        feature_statistics([torch.zeros(2, 3, 4, 4, dtype=torch.uint8)], extractor)
    with pytest.raises(ValueError, match=r"shape \(2, D\)"):
        feature_statistics([torch.zeros(2, 4, 4, 3, dtype=torch.uint8)], lambda x: torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics([], extractor)


# ----------------------------------------------------------------------------------------------------
# ADM .npz files


def test_npz_writer_streams_arrays_and_tensors_and_reads_back(tmp_path):
    array = random_images(7, size=5)
    path = tmp_path / "s.npz"
    with NpzWriter(path, 7, (5, 5, 3)) as writer:
        writer.write(array[:3])
        writer.write(torch.from_numpy(array[3:]))
        writer.add("labels", torch.arange(7))
    with np.load(path) as loaded:
        np.testing.assert_array_equal(loaded["arr_0"], array)
        np.testing.assert_array_equal(loaded["labels"], np.arange(7))
    assert npz_array_info(path) == ((7, 5, 5, 3), "uint8")
    batches = list(read_npz_batches(path, batch_size=3))
    assert [b.shape[0] for b in batches] == [3, 3, 1]
    assert all(b.dtype == torch.uint8 for b in batches)
    np.testing.assert_array_equal(torch.cat(batches).numpy(), array)
    np.testing.assert_array_equal(torch.cat(list(read_npz_batches(path, key="labels"))).numpy(), np.arange(7))


def test_npz_writer_rejects_wrong_chunks_and_removes_incomplete_files(tmp_path):
    with pytest.raises(ValueError, match="announced"), NpzWriter(tmp_path / "t.npz", 3, (2, 2, 3)) as writer:
        writer.write(np.zeros((2, 2, 2, 3), np.uint8))
    assert not (tmp_path / "t.npz").exists()
    with NpzWriter(tmp_path / "u.npz", 2, (2, 2, 3)) as writer:
        with pytest.raises(ValueError, match=r"shape \(n, 2, 2, 3\) and dtype uint8"):
            writer.write(np.zeros((1, 2, 2, 3), np.float32))
        with pytest.raises(ValueError, match="more than the announced 2 rows"):
            writer.write(np.zeros((3, 2, 2, 3), np.uint8))
        writer.write(np.zeros((2, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="num must be an int"):
        NpzWriter(tmp_path / "v.npz", -1, (2,))


def test_compressed_npz_files_stream_too(tmp_path):
    array = random_images(5)
    np.savez_compressed(tmp_path / "c.npz", array)
    np.testing.assert_array_equal(
        torch.cat(list(read_npz_batches(tmp_path / "c.npz", batch_size=2))).numpy(), array
    )


def test_read_npz_batches_rejects_bad_files(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 3), np.uint8))
    with pytest.raises(KeyError, match=r"no array 'arr_0'; it holds \['images'\]"):
        next(read_npz_batches(tmp_path / "a.npz"))
    with pytest.raises(ValueError, match="batch_size"):
        next(read_npz_batches(tmp_path / "a.npz", key="images", batch_size=0))
    np.savez(tmp_path / "f.npz", np.asfortranarray(np.zeros((3, 2), np.uint8)))
    with pytest.raises(ValueError, match="Fortran"):
        next(read_npz_batches(tmp_path / "f.npz"))
    np.savez(tmp_path / "o.npz", np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        next(read_npz_batches(tmp_path / "o.npz"))
    # A header announcing 4 rows with the data of 2.
    with zipfile.ZipFile(tmp_path / "t.npz", "w") as archive, archive.open("arr_0.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (4, 3)})
        f.write(bytes(6))
    with pytest.raises(ValueError, match="truncated: rows from 2 on"):
        list(read_npz_batches(tmp_path / "t.npz", batch_size=2))


def test_statistics_round_trip_and_adm_reference_layout(tmp_path):
    original = FeatureStatistics(torch.randn(4, dtype=torch.float64), random_spd(4, 0), count=123)
    save_statistics(tmp_path / "stats.npz", original)
    loaded = read_statistics(tmp_path / "stats.npz")
    assert loaded.count == 123
    assert torch.equal(loaded.mean, original.mean)
    assert torch.equal(loaded.cov, original.cov)
    # The keys of an ADM reference batch: images and the pool_3 and spatial statistics.
    np.savez(
        tmp_path / "ref.npz",
        arr_0=random_images(3),
        mu=np.ones(4, np.float64),
        sigma=np.eye(4, dtype=np.float64),
        mu_s=np.zeros(5),
        sigma_s=np.eye(5),
    )
    reference = read_statistics(tmp_path / "ref.npz")
    assert reference.count is None
    assert torch.equal(reference.mean, torch.ones(4, dtype=torch.float64))
    np.savez(tmp_path / "images.npz", random_images(3))
    with pytest.raises(
        KeyError, match=r"no feature statistics \(no \['mu', 'sigma'\]\); it holds \['arr_0'\]"
    ):
        read_statistics(tmp_path / "images.npz")
    with pytest.raises(TypeError, match="FeatureStatistics"):
        save_statistics(tmp_path / "x.npz", (torch.zeros(2), torch.eye(2)))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# FID between files


def test_npz_statistics_uses_stored_statistics_or_the_images(tmp_path):
    extractor = RandomFeatures()
    images = random_images(12)
    np.savez(tmp_path / "ref.npz", arr_0=images, mu=np.zeros(16), sigma=np.eye(16))
    stored = npz_statistics(tmp_path / "ref.npz", extractor)
    assert extractor.calls == 0
    assert torch.equal(stored.cov, torch.eye(16, dtype=torch.float64))
    computed = npz_statistics(tmp_path / "ref.npz", extractor, use_stored=False, batch_size=5)
    direct = feature_statistics([torch.from_numpy(images)], extractor)
    assert torch.allclose(computed.cov, direct.cov, atol=1e-12)
    assert computed.count == 12
    np.savez(tmp_path / "images.npz", images)
    with pytest.raises(ValueError, match="need a feature extractor"):
        npz_statistics(tmp_path / "images.npz")
    np.savez(tmp_path / "floats.npz", images.astype(np.float32))
    with pytest.raises(ValueError, match=r"uint8 images \(N, H, W, 3\); got float32"):
        npz_statistics(tmp_path / "floats.npz", extractor)


def test_fid_from_npz_equals_the_frechet_distance_of_the_feature_statistics(tmp_path):
    extractor = RandomFeatures()
    fake, real = random_images(40, seed=1), random_images(30, seed=2) // 2
    np.savez(tmp_path / "fake.npz", fake)
    np.savez(tmp_path / "real.npz", real)
    expected = frechet_distance(
        feature_statistics([torch.from_numpy(fake)], extractor),
        feature_statistics([torch.from_numpy(real)], extractor),
    )
    value = fid_from_npz(tmp_path / "fake.npz", tmp_path / "real.npz", extractor=extractor, batch_size=7)
    assert expected > 0.01
    # float32 features of a batch of 7 and of all images at once differ by rounding (~1e-7)
    assert math.isclose(value, expected, rel_tol=1e-5)
    assert fid_from_npz(tmp_path / "fake.npz", tmp_path / "fake.npz", extractor=extractor) < 1e-9


def test_fid_from_stored_statistics_builds_no_inception(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("InceptionFeatures must not be built when both files store statistics")

    monkeypatch.setattr(fid_evaluate, "InceptionFeatures", refuse)
    save_statistics(tmp_path / "a.npz", stats(torch.zeros(3), torch.eye(3)))
    save_statistics(tmp_path / "b.npz", stats(torch.ones(3), 4 * torch.eye(3)))
    assert math.isclose(fid_from_npz(tmp_path / "a.npz", tmp_path / "b.npz"), 3 + 3 * (1 - 2) ** 2)


# ----------------------------------------------------------------------------------------------------
# The Inception wrapper (torch-fidelity is optional and not installed in the test environment)


class _FakeInceptionV3(nn.Module):
    """Stands in for torch_fidelity's FeatureExtractorInceptionV3 (records its arguments)."""

    last: _FakeInceptionV3 | None = None

    def __init__(self, name, features_list, feature_extractor_weights_path=None):
        super().__init__()
        self.name, self.features_list, self.weights = name, features_list, feature_extractor_weights_path
        self.proj = nn.Linear(3, 2048)
        self.tf32_seen: tuple[bool, bool] | None = None
        type(self).last = self

    def forward(self, x):
        assert x.dtype == torch.uint8
        self.tf32_seen = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        return (self.proj(x.float().mean(dim=(2, 3))),)


def _install_fake_fidelity(monkeypatch, cls=_FakeInceptionV3):
    package = types.ModuleType("torch_fidelity")
    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = cls  # type: ignore[attr-defined]
    package.feature_extractor_inceptionv3 = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_fidelity", package)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)


def test_inception_without_torch_fidelity_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    with pytest.raises(ImportError, match=r"pip install 'soflow-toolkit\[fid\]'.*ADM evaluator"):
        InceptionFeatures()


def test_inception_weights_must_exist_and_be_a_state_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights-inception-2015-12-05"):
        InceptionFeatures(tmp_path / "missing.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="not a readable PyTorch state dict"):
        InceptionFeatures(tmp_path / "bad.pth")


def test_inception_wrapper_passes_the_weights_and_returns_pool_features(tmp_path, monkeypatch):
    _install_fake_fidelity(monkeypatch)
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pth")
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        extractor = InceptionFeatures(tmp_path / "w.pth")
        fake = _FakeInceptionV3.last
        assert fake is not None
        assert (fake.features_list, fake.weights) == (["2048"], str(tmp_path / "w.pth"))
        features = extractor(torch.zeros(2, 3, 5, 7, dtype=torch.uint8))
        assert features.shape == (2, 2048)
        assert features.dtype == torch.float32
        assert fake.tf32_seen == (False, False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    with pytest.raises(TypeError, match="uint8"):
        extractor(torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        extractor(torch.zeros(2, 5, 5, 3, dtype=torch.uint8))


def test_inception_download_failure_explains_offline_use(monkeypatch):
    class Offline(_FakeInceptionV3):
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError("no network")

    _install_fake_fidelity(monkeypatch, Offline)
    with pytest.raises(RuntimeError, match=r"could not download the Inception weights.*weights="):
        InceptionFeatures()


# ----------------------------------------------------------------------------------------------------
# The command line


def test_command_line_prints_the_fid_of_stored_statistics(tmp_path):
    save_statistics(tmp_path / "a.npz", stats(torch.zeros(2), torch.eye(2)))
    save_statistics(tmp_path / "b.npz", stats(torch.tensor([3.0, 4.0]), 4 * torch.eye(2)))
    result = subprocess.run(
        [sys.executable, "-m", "soflow_toolkit.fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "FID: 27.0000"  # |mu|^2 + sum (sqrt 1 - sqrt 4)^2 = 25 + 2
    assert "stored statistics" in result.stderr


def test_command_line_on_images_uses_the_inception_and_saves_statistics(tmp_path, monkeypatch, capsys):
    built: list[tuple[object, object]] = []

    def random_inception(weights=None, *, device=None):
        built.append((weights, device))
        return RandomFeatures()

    monkeypatch.setattr(fid_evaluate, "InceptionFeatures", random_inception)
    np.savez(tmp_path / "fake.npz", random_images(20, seed=3))
    np.savez(tmp_path / "real.npz", random_images(25, seed=4) // 3)
    value = fid_cli.main(
        [
            str(tmp_path / "fake.npz"),
            str(tmp_path / "real.npz"),
            "--device",
            "cpu",
            "--batch-size",
            "6",
            "--inception-weights",
            "w.pth",
            "--save-stats",
            str(tmp_path / "fake-stats.npz"),
            "--no-progress",
        ]
    )
    assert built == [(Path("w.pth"), "cpu")]
    direct = fid_from_npz(
        tmp_path / "fake.npz", tmp_path / "real.npz", extractor=RandomFeatures(), batch_size=6
    )
    assert math.isclose(value, direct, rel_tol=1e-12)
    assert capsys.readouterr().out == f"FID: {value:.4f}\n"
    # The saved statistics stand for the samples in a later run.
    again = fid_cli.main([str(tmp_path / "fake-stats.npz"), str(tmp_path / "real.npz"), "--batch-size", "6"])
    assert math.isclose(again, value, rel_tol=1e-12)


def test_command_line_rejects_missing_files(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        fid_cli.main([str(tmp_path / "nope.npz"), str(tmp_path / "nope.npz")])
    with pytest.raises(SystemExit, match="batch-size"):
        fid_cli.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--batch-size", "0"])


# ----------------------------------------------------------------------------------------------------
# Sampling conventions


@given(seed=seeds, scale=st.floats(0.1, 2.0))
def test_to_uint8_is_the_official_truncating_conversion(seed, scale):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 4, 5, generator=g) * scale
    ours = to_uint8(images)
    expected = np.floor(np.clip(images.numpy().astype(np.float32) * 127.5 + 128.0, 0, 255)).astype(np.uint8)
    assert ours.shape == (2, 4, 5, 3)
    assert ours.dtype == torch.uint8
    np.testing.assert_array_equal(ours.numpy(), expected.transpose(0, 2, 3, 1))


def test_to_uint8_rounds_half_up_and_keeps_the_endpoints():
    # x = (k - 127.5) / 127.5 lies exactly on pixel k; x = 1 maps to 255, x = -1 to 0.
    k = torch.arange(256, dtype=torch.float64)
    x = ((k - 127.5) / 127.5).reshape(1, 1, 1, -1)
    assert torch.equal(to_uint8(x).flatten().long(), k.long())
    assert to_uint8(torch.full((1, 1, 1, 1), 3.0)).item() == 255
    assert to_uint8(torch.full((1, 1, 1, 1), -3.0)).item() == 0


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.zeros(1, 3, 2, 2, dtype=torch.uint8), TypeError, "floating"),
        (torch.zeros(3, 2, 2), ValueError, r"\(B, C, H, W\)"),
        (torch.full((1, 3, 2, 2), float("nan")), ValueError, "NaN"),
    ],
)
def test_to_uint8_rejects_bad_images(images, error, message):
    with pytest.raises(error, match=message):
        to_uint8(images)


def test_class_labels_uniform_draws_as_the_official_inference():
    labels = class_labels(1000, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(labels, torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(3)))
    assert labels.dtype == torch.int64
    assert int(labels.min()) >= 0
    assert int(labels.max()) <= 9


@given(num=st.integers(0, 300), num_classes=st.integers(1, 40), seed=seeds)
def test_balanced_class_labels_give_each_class_its_share(num, num_classes, seed):
    labels = class_labels(num, num_classes, balanced=True, generator=torch.Generator().manual_seed(seed))
    counts = torch.bincount(labels, minlength=num_classes)
    assert labels.shape == (num,)
    assert int(counts.max()) - int(counts.min()) <= 1
    assert int(counts.sum()) == num


def test_balanced_class_labels_are_shuffled():
    labels = class_labels(2000, 1000, balanced=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(labels, torch.arange(2000) % 1000)


@pytest.mark.parametrize(
    ("num", "num_classes", "message"), [(-1, 3, "num must"), (3, 0, "num_classes"), (2.5, 3, "num must")]
)
def test_class_labels_rejects_bad_counts(num, num_classes, message):
    with pytest.raises(ValueError, match=message):
        class_labels(num, num_classes)
