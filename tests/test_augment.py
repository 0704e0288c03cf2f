"""The CIFAR-10 augmentation: identities, label layout, closed-form resampling and parity with EDM's.

`tests/data/edm_augment_official.pt` holds outputs of the official SoFlow `augment.py` (EDM's
pipeline; zlab-princeton/SoFlow at commit 3b60d60, run unmodified on CPU, not part of this
repository) with the official settings `AugmentPipe(p=0.12, xflip=1e8, yflip=0, scale=1,
rotate_frac=0, aniso=1, translate_frac=1)` and variants, on inputs
`torch.randn(shape, generator=torch.Generator().manual_seed(1000 + seed), dtype=dtype).clamp(-1, 1)`
after `torch.manual_seed(seed)`, with `torch.set_default_dtype(dtype)` (so float64 cases ran in
float64 throughout). Each case stores `name`, `dtype`, `shape`, `seed`, `config` (overrides of the
official settings), `input_sum` (to detect a change of torch's random streams), `images` and
`labels` (EDM's labels, float32, only the enabled transforms' columns).

Measured agreement: labels bit-identical; transformed float32 images within 2e-5 (rounding in the
resampling coordinates); transformed float64 images within 1e-13 once our filter taps are rounded to
float32 as EDM stores them (within 3e-7 with exact taps). Images that draw no geometric transform
are returned unchanged here, where EDM's resampling round trip moves them by rounding (up to ~1e-5
in float32, ~1e-7 in float64).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import seeds

from soflow_toolkit import augment as augment_module
from soflow_toolkit.augment import AUGMENT_DIM, AugmentParams, AugmentPipe, warp_affine

VECTORS = Path(__file__).parent / "data" / "edm_augment_official.pt"
OFFICIAL_NAMES = {"translate_frac": "translate"}

image_shapes = st.tuples(
    st.integers(1, 4), st.integers(1, 4), st.integers(2, 12), st.integers(2, 12)
)  # (B, C, H, W)


def rand_images(shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def matrices(*rows: list[float], batch: int = 1, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype).expand(batch, 3, 3).contiguous()


def only(**multipliers: float) -> AugmentPipe:
    """A pipe with every transform off except those given."""
    return AugmentPipe(**{"xflip": 0.0, "scale": 0.0, "aniso": 0.0, "translate": 0.0, **multipliers})


# ----------------------------------------------------------------------------------------------------
# The filter


def test_filter_is_an_orthonormal_wavelet_lowpass():
    h = np.asarray(augment_module._SYM6)
    assert math.isclose(h.sum(), math.sqrt(2), rel_tol=1e-14)
    assert math.isclose(h[0::2].sum(), 1 / math.sqrt(2), rel_tol=1e-10)  # the published taps carry ~12 digits
    for shift in range(len(h) // 2):
        assert abs(np.dot(h[: len(h) - 2 * shift], h[2 * shift :]) - (shift == 0)) < 1e-10


# ----------------------------------------------------------------------------------------------------
# Identity, layout and exact transforms


@given(shape=image_shapes, seed=seeds, dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_probability_zero_is_the_identity_with_zero_labels(shape, seed, dtype):
    images = rand_images(shape, seed).to(dtype)
    out = AugmentPipe(p=0.0)(images, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out.images, images)
    assert out.labels.shape == (shape[0], AUGMENT_DIM)
    assert torch.equal(out.labels, torch.zeros_like(out.labels))


@given(shape=image_shapes, seed=seeds, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_xflip_mirrors_exactly_the_images_it_labels(shape, seed, dtype):
    images = rand_images(shape, seed, dtype)
    out = only(xflip=1e8)(images, generator=torch.Generator().manual_seed(seed))
    for image, result, label in zip(images, out.images, out.labels, strict=True):
        assert label[0].item() in (0.0, 1.0)
        assert torch.equal(result, image.flip(-1) if label[0] == 1 else image)
    assert torch.equal(out.labels[:, 1:], torch.zeros_like(out.labels[:, 1:]))


def test_label_layout_matches_the_drawn_parameters():
    pipe = AugmentPipe(p=1.0)
    params = pipe.sample_params(2000, generator=torch.Generator().manual_seed(0))
    labels = params.labels()
    assert labels.shape == (2000, 6)
    assert labels.dtype == torch.float32
    assert set(labels[:, 0].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(labels[:, 1], params.scale)
    assert torch.allclose(labels[:, 2:4].norm(dim=1), params.aniso.abs(), atol=1e-6)
    assert torch.equal(labels[:, 4:6], params.translate)
    angle = params.aniso_angle
    assert bool(((angle >= -math.pi) & (angle <= math.pi)).all())
    rotated = angle != 0
    # r = 0 (axis along x): the second anisotropic label is 0 and the first is w_a.
    assert torch.equal(labels[~rotated, 3], torch.zeros_like(labels[~rotated, 3]))
    assert torch.equal(labels[~rotated, 2], params.aniso[~rotated])


def test_disabled_transforms_keep_their_label_columns_at_zero():
    out = only(scale=1.0)(rand_images((64, 3, 8, 8), 0), generator=torch.Generator().manual_seed(1))
    assert bool((out.labels[:, 1] != 0).any())
    assert torch.equal(out.labels[:, [0, 2, 3, 4, 5]], torch.zeros(64, 5))


def test_images_without_a_geometric_transform_are_returned_unchanged():
    images = rand_images((200, 3, 16, 16), 0)
    out = AugmentPipe()(images, generator=torch.Generator().manual_seed(0))
    untouched = (out.labels[:, 1:] == 0).all(dim=1)
    flipped = out.labels[:, 0] == 1
    assert 0 < int(untouched.sum()) < 200
    expected = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    assert torch.equal(out.images[untouched], expected[untouched])
    assert not torch.equal(out.images[~untouched], expected[~untouched])


@given(seed=seeds, dx=st.integers(-5, 5), dy=st.integers(-5, 5), size=st.integers(12, 16))
def test_integer_shifts_read_the_reflect_padded_image(seed, dx, dy, size):
    """G = translate(dx, dy): output(x, y) = input(x + dx, y + dy), reflected beyond the border."""
    images = rand_images((2, 3, size, size + 2), seed, torch.float64)
    out = warp_affine(images, matrices([1, 0, dx], [0, 1, dy], [0, 0, 1], batch=2))
    padded = torch.nn.functional.pad(images, (6, 6, 6, 6), mode="reflect")
    expected = padded[..., 6 + dy : 6 + dy + size, 6 + dx : 6 + dx + size + 2]
    assert torch.allclose(out, expected, atol=1e-12)


def smooth_images(batch: int, size: int = 32) -> torch.Tensor:
    """Band-limited test images (periods of 12 to 20 pixels), float64 `(batch, 1, size, size)`."""
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    wave = torch.cos(2 * math.pi * xx / 16 + 0.3) * torch.sin(2 * math.pi * yy / 12)
    return (wave + 0.5 * torch.cos(2 * math.pi * (xx + 2 * yy) / 20)).double().expand(batch, 1, size, size)


@pytest.mark.parametrize(
    ("matrix", "expected", "opposite"),
    [
        # G reads the input at (x', y') = G (x, y): G = [[0, -1], [1, 0]] reads (-y, x).
        (
            [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
            lambda x: x.rot90(1, dims=(2, 3)),
            lambda x: x.rot90(-1, dims=(2, 3)),
        ),
        ([[-1, 0, 0], [0, 1, 0], [0, 0, 1]], lambda x: x.flip(3), lambda x: x.flip(2)),
        ([[0, 1, 0], [1, 0, 0], [0, 0, 1]], lambda x: x.transpose(2, 3), lambda x: x.flip(2).flip(3)),
    ],
)
def test_the_coordinate_convention_of_grid_preserving_maps(matrix, expected, opposite):
    """Rotations, flips and transposes land where the convention says. They are not exact: the sym6
    filter is not symmetric, so mirrored filtering differs slightly from the original's (~1 % here)."""
    images = smooth_images(2)
    out = warp_affine(images, matrices(*matrix, batch=2))
    assert float((out - expected(images)).abs().max()) < 0.1
    assert float((out - opposite(images)).abs().max()) > 0.5


def test_identity_resampling_round_trip_is_within_rounding():
    images = rand_images((4, 3, 32, 32), 3, torch.float64)
    identity = torch.eye(3, dtype=torch.float64).expand(4, 3, 3).contiguous()
    assert torch.allclose(warp_affine(images, identity), images, atol=1e-12)
    assert torch.allclose(warp_affine(images.float(), identity.float()), images.float(), atol=2e-6)


@given(seed=seeds)
def test_constant_images_stay_constant_under_the_official_transforms(seed):
    """Non-leaking: reflect padding and a DC gain of 1, so no zero border or brightness change appears.
    Within 4 pixels of the border, strong minifications run out of the margin's slack for the filters
    (as in EDM's pipeline): there the value moves slightly (up to 5e-3 of 0.7 over 1,200 draws)."""
    pipe = AugmentPipe(p=1.0)
    images = torch.full((4, 3, 32, 32), 0.7)
    out = pipe(images, generator=torch.Generator().manual_seed(seed)).images
    assert torch.allclose(out[..., 4:-4, 4:-4], images[..., 4:-4, 4:-4], atol=1e-6)
    assert torch.allclose(out, images, atol=2e-2)


@given(seed=seeds)
def test_small_transforms_are_inverted_by_the_inverse_map_on_smooth_images(seed):
    """warp(warp(x, G), G^{-1}) recovers a band-limited image up to bilinear interpolation's
    attenuation (~3 % of the amplitude for periods of 12-20 pixels), away from the borders."""
    pipe = AugmentPipe(p=1.0, xflip=0.0, scale_std=0.1, aniso_std=0.1, translate_std=0.03)
    images = smooth_images(8)
    params = pipe.sample_params(8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    inverse = pipe.inverse_matrices(params, 32, 32)
    back = warp_affine(warp_affine(images, inverse), torch.linalg.inv(inverse))
    assert float((back - images)[..., 8:-8, 8:-8].abs().max()) < 0.06


def test_anisotropic_labels_do_not_identify_the_transform():
    """(w, r) and (-w, r + pi): same labels, reciprocal scalings along the same axis (as in EDM)."""
    pipe = only(aniso=1.0)
    w, r = torch.tensor([0.8]), torch.tensor([0.4])
    zero, zeros2 = torch.zeros(1), torch.zeros(1, 2)
    first = AugmentParams(zero, zero, w, r, zeros2)
    second = AugmentParams(zero, zero, -w, r + math.pi - 2 * math.pi, zeros2)
    assert torch.allclose(first.labels(), second.labels(), atol=1e-6)
    product = pipe.inverse_matrices(first, 8, 8) @ torch.linalg.inv(pipe.inverse_matrices(second, 8, 8))
    assert not torch.allclose(product, torch.eye(3), atol=1e-2)
    assert torch.allclose(
        pipe.inverse_matrices(first, 8, 8) @ pipe.inverse_matrices(second, 8, 8), torch.eye(3), atol=1e-5
    )


# ----------------------------------------------------------------------------------------------------
# Statistics of the draws


def test_draws_follow_the_configured_probabilities_and_distributions():
    n = 40_000
    params = AugmentPipe().sample_params(n, generator=torch.Generator().manual_seed(0))
    # Fraction applied: 0.12 for each geometric transform, 1/2 flipped; 6 standard errors.
    for values in (params.scale, params.aniso, params.translate[:, 0]):
        assert abs(float((values != 0).float().mean()) - 0.12) < 6 * math.sqrt(0.12 * 0.88 / n)
    assert abs(float(params.xflip.mean()) - 0.5) < 6 * math.sqrt(0.25 / n)
    assert torch.equal(params.translate[:, 0] != 0, params.translate[:, 1] != 0)
    assert abs(float((params.aniso_angle != 0).float().mean()) - 0.5) < 6 * math.sqrt(0.25 / n)
    always = AugmentPipe(p=1.0).sample_params(n, generator=torch.Generator().manual_seed(1))
    for values in (always.scale, always.aniso, always.translate[:, 0], always.translate[:, 1]):
        assert abs(float(values.mean())) < 6 / math.sqrt(n)
        assert abs(float(values.std()) - 1) < 6 / math.sqrt(2 * n)
    rotated = always.aniso_angle[always.aniso_angle != 0]
    assert abs(float(rotated.mean())) < 6 * math.pi / math.sqrt(3 * rotated.numel())


def test_same_generator_seed_same_augmentation():
    images = rand_images((16, 3, 16, 16), 0)
    pipe = AugmentPipe(p=0.5)
    first = pipe(images, generator=torch.Generator().manual_seed(5))
    second = pipe(images, generator=torch.Generator().manual_seed(5))
    other = pipe(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)
    assert not torch.equal(first.labels, other.labels)
    params = pipe.sample_params(16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pipe.apply(images, params), first.images)


@pytest.mark.parametrize(
    ("dtype", "label_dtype"),
    [(torch.float32, torch.float32), (torch.float64, torch.float64), (torch.bfloat16, torch.float32)],
)
def test_dtypes_follow_the_images(dtype, label_dtype):
    images = rand_images((4, 3, 8, 8), 0).to(dtype)
    out = AugmentPipe(p=1.0)(images, generator=torch.Generator().manual_seed(0))
    assert out.images.dtype == dtype
    assert out.labels.dtype == label_dtype
    assert bool(torch.isfinite(out.images.float()).all())


def test_empty_batches():
    out = AugmentPipe(p=1.0)(torch.zeros(0, 3, 8, 8))
    assert out.images.shape == (0, 3, 8, 8)
    assert out.labels.shape == (0, 6)


# ----------------------------------------------------------------------------------------------------
# Parity with the official (EDM) pipeline


def _vector_cases() -> list[dict]:
    return torch.load(VECTORS, weights_only=True)["cases"]


@pytest.mark.parametrize("case", _vector_cases(), ids=lambda case: case["name"])
@pytest.mark.parametrize("taps", ["exact", "float32"])
def test_matches_the_official_pipeline(case, taps, monkeypatch):
    dtype = getattr(torch, case["dtype"])
    if taps == "float32":  # EDM keeps its filter taps in float32, also when it runs in float64
        rounded = tuple(float(v) for v in np.asarray(augment_module._SYM6, dtype=np.float32))
        monkeypatch.setattr(augment_module, "_SYM6", rounded)
    seed = case["seed"]
    images = torch.randn(*case["shape"], generator=torch.Generator().manual_seed(1000 + seed), dtype=dtype)
    images = images.clamp(-1, 1)
    assert math.isclose(float(images.double().sum()), case["input_sum"], rel_tol=1e-12)
    config = {OFFICIAL_NAMES.get(k, k): v for k, v in case["config"].items()}
    pipe = AugmentPipe(**config)
    out = pipe(images, generator=torch.Generator().manual_seed(seed))
    enabled = [pipe.xflip, pipe.scale, pipe.aniso, pipe.aniso, pipe.translate, pipe.translate]
    columns = [i for i, multiplier in enumerate(enabled) if multiplier > 0]
    assert torch.equal(out.labels[:, columns].float(), case["labels"])
    geometric = (out.labels[:, 1:] != 0).any(dim=1)
    assert int(geometric.sum()) >= 2  # the case exercises the resampling
    error = float((out.images[geometric] - case["images"][geometric]).abs().max())
    if dtype == torch.float32:
        assert error < 2e-5
    else:
        assert error < (1e-12 if taps == "float32" else 3e-7)
    # Untransformed images: EDM's resampling round trip changes them by rounding only.
    tolerance = 2e-5 if dtype == torch.float32 else 1e-6
    assert torch.allclose(out.images[~geometric], case["images"][~geometric], atol=tolerance)


# ----------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": -0.1}, "p must be a finite number >= 0"),
        ({"p": 1.5}, "probability"),
        ({"aniso_rotate_prob": 2.0}, "probability"),
        ({"scale_std": float("nan")}, "scale_std"),
        ({"xflip": True}, "xflip"),
    ],
)
def test_pipe_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AugmentPipe(**kwargs)


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.zeros(3, 8, 8), ValueError, r"\(B, C, H, W\)"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), TypeError, "floating"),
        (torch.zeros(2, 3, 1, 8), ValueError, "at least 2 x 2"),
        (np.zeros((2, 3, 8, 8)), TypeError, "ndarray"),
    ],
)
def test_pipe_rejects_bad_images(images, error, message):
    with pytest.raises(error, match=message):
        AugmentPipe()(images)


def test_bad_generators_params_and_matrices_are_rejected():
    images = torch.zeros(2, 3, 8, 8)
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        AugmentPipe()(images, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch must be an int"):
        AugmentPipe().sample_params(-1)
    params = AugmentPipe().sample_params(3)
    with pytest.raises(ValueError, match="params are for 3 images; got a batch of 2"):
        AugmentPipe().apply(images, params)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 3\)"):
        warp_affine(images, torch.eye(3))
