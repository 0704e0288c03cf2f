"""soflow_toolkit.toy: the 2-D datasets and their supports, the metrics and MLPBackbone."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from soflow_toolkit import SoFlowConfig, SoFlowLoss, SolutionFlowWrapper, sample
from soflow_toolkit.toy import (
    NUM_MODES,
    TOY_DATASETS,
    MLPBackbone,
    assign_modes,
    checkerboard,
    eight_gaussians,
    energy_distance,
    get_toy_dataset,
    precision_recall,
    ring,
    sliced_energy_distance,
    sliced_wasserstein,
    spiral,
    support_scores,
    timestep_embedding,
    two_moons,
)

NAMES = sorted(TOY_DATASETS)


# ------------------------------------------------------------------------------------------ datasets


@pytest.mark.parametrize("name", NAMES)
def test_dataset_shape_dtype_and_reproducibility(name: str) -> None:
    f = get_toy_dataset(name)
    a = f(257, generator=torch.Generator().manual_seed(3))
    b = f(257, generator=torch.Generator().manual_seed(3))
    c = f(257, generator=torch.Generator().manual_seed(4))
    assert a.shape == (257, 2)
    assert a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert bool(torch.isfinite(a).all())
    assert f(0, generator=torch.Generator()).shape == (0, 2)


@pytest.mark.parametrize("name", NAMES)
def test_dataset_dtype_and_device_follow_the_request(name: str) -> None:
    x = get_toy_dataset(name)(
        10, generator=torch.Generator().manual_seed(0), dtype=torch.float64, device="cpu"
    )
    assert x.dtype == torch.float64
    assert x.device.type == "cpu"


@pytest.mark.parametrize("name", NAMES)
def test_dataset_is_centred_at_the_noise_scale(name: str) -> None:
    """Every toy has mean ~0 and lies within the bulk of a standard Gaussian."""
    x = get_toy_dataset(name)(20_000, generator=torch.Generator().manual_seed(0))
    assert x.mean(dim=0).abs().max() < 0.1
    assert float(x.std(dim=0).min()) > 0.5
    assert float(x.std(dim=0).max()) < 1.6
    assert float(x.abs().max()) < 3.0


@pytest.mark.parametrize("name", NAMES)
def test_dataset_rejects_bad_arguments(name: str) -> None:
    f = get_toy_dataset(name)
    with pytest.raises(ValueError, match="n must be"):
        f(-1)
    with pytest.raises(ValueError, match="n must be"):
        f(2.5)
    with pytest.raises(TypeError, match="dtype"):
        f(3, dtype=torch.int64)


def test_unknown_dataset_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="checkerboard"):
        get_toy_dataset("swiss_roll")


def test_checkerboard_fills_only_black_squares_uniformly() -> None:
    x = checkerboard(40_000, generator=torch.Generator().manual_seed(0))
    cells = torch.floor(x)
    assert bool((x.abs() <= 2).all())
    assert bool(((cells.sum(dim=1) % 2) == 0).all())
    # 8 black squares, each with about 1/8 of the mass
    index = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = torch.bincount(index.long(), minlength=16).float()
    black = counts[counts > 0]
    assert black.numel() == 8
    assert float((black / 40_000 - 1 / 8).abs().max()) < 0.01


@pytest.mark.parametrize(("f", "modes"), [(eight_gaussians, 8), (ring, 6)])
def test_gaussian_rings_have_equal_modes_at_the_radius(f, modes: int) -> None:
    radius, std = 2.0, 0.1
    x = f(30_000, generator=torch.Generator().manual_seed(1), radius=radius, std=std)
    angle = torch.atan2(x[:, 1], x[:, 0])
    mode = torch.remainder(torch.round(angle * modes / (2 * math.pi)), modes).long()
    centres = radius * torch.stack(
        [torch.cos(2 * math.pi * mode / modes), torch.sin(2 * math.pi * mode / modes)], dim=1
    )
    residual = x - centres
    assert float((residual.std(dim=0) - std).abs().max()) < 0.005
    assert float(residual.mean(dim=0).abs().max()) < 0.005
    share = torch.bincount(mode, minlength=modes).float() / x.shape[0]
    assert float((share - 1 / modes).abs().max()) < 0.01


def test_two_moons_without_noise_lie_on_the_two_arcs() -> None:
    x = two_moons(5000, generator=torch.Generator().manual_seed(0), noise=1e-9)
    p = x / 1.5 + torch.tensor([0.5, 0.25])
    upper = (p.norm(dim=1) - 1).abs() < 1e-5
    lower = ((p - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs() < 1e-5
    assert bool((upper | lower).all())
    assert abs(float(upper.float().mean()) - 0.5) < 0.03


def test_spiral_arms_without_noise_follow_the_archimedean_law() -> None:
    turns = 1.5
    x = spiral(5000, generator=torch.Generator().manual_seed(0), turns=turns, noise=1e-9)
    radius = x.norm(dim=1)
    theta = 2 * math.pi * turns * radius / 2.25
    direction = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    # each point is +-radius * (cos theta, sin theta) with theta fixed by its radius
    cosine = (x * direction).sum(dim=1) / radius
    assert bool((cosine.abs() > 1 - 1e-4).all())
    assert abs(float((cosine > 0).float().mean()) - 0.5) < 0.03


@pytest.mark.parametrize("name", ["eight_gaussians", "ring"])
def test_gaussian_ring_rejects_bad_parameters(name: str) -> None:
    with pytest.raises(ValueError, match="std must be a positive number"):
        get_toy_dataset(name)(3, std=0.0)


# ------------------------------------------------------------------------------------------ supports


@pytest.mark.parametrize("name", NAMES)
def test_data_lie_on_their_support_and_cover_every_mode(name: str) -> None:
    """Fresh data: (almost) every point on the support, every mode with about its equal share."""
    x = get_toy_dataset(name)(20_000, generator=torch.Generator().manual_seed(5))
    modes = assign_modes(name, x)
    on_support, coverage = support_scores(modes, NUM_MODES[name])
    # exact for the checkerboard; 1 - exp(-9/2) = 98.9 % for 2-D Gaussians within 3 std; curves in between
    assert float(on_support) >= (1.0 if name == "checkerboard" else 0.985)
    assert float(coverage) == 1.0
    share = torch.bincount(modes[modes >= 0], minlength=NUM_MODES[name]).float() / x.shape[0]
    assert float((share - 1 / NUM_MODES[name]).abs().max()) < 0.02


@pytest.mark.parametrize("name", NAMES)
def test_points_far_from_the_data_are_off_the_support(name: str) -> None:
    far = torch.tensor([[5.0, 5.0], [-4.0, 0.3], [0.0, -6.0]])
    assert bool((assign_modes(name, far) == -1).all())


def test_gaussian_modes_are_the_nearest_centre_within_the_tolerance() -> None:
    angles = 2 * math.pi * torch.arange(8) / 8
    centres = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    assert torch.equal(assign_modes("eight_gaussians", centres), torch.arange(8))
    # std 0.2: a point 0.59 from a centre is inside 3 std, at 0.61 outside; with tolerance 1 at 0.19 inside
    offsets = torch.tensor([[0.59, 0.0], [0.61, 0.0], [0.19, 0.0]])
    points = centres[0] + offsets
    assert assign_modes("eight_gaussians", points).tolist() == [0, -1, 0]
    assert assign_modes("eight_gaussians", points, tolerance=1.0).tolist() == [-1, -1, 0]


def test_checkerboard_modes_number_the_black_squares() -> None:
    centres = torch.tensor([[c - 1.5, r - 1.5] for c in range(4) for r in range(4) if (c + r) % 2 == 0])
    assert assign_modes("checkerboard", centres).tolist() == list(range(8))
    white = torch.tensor([[c - 1.5, r - 1.5] for c in range(4) for r in range(4) if (c + r) % 2 == 1])
    assert bool((assign_modes("checkerboard", white) == -1).all())


def test_curve_modes_separate_the_moons_and_the_arms() -> None:
    upper = two_moons(2000, generator=torch.Generator().manual_seed(0), noise=1e-9)
    p = upper / 1.5 + torch.tensor([0.5, 0.25])
    on_upper = (p.norm(dim=1) - 1).abs() < 1e-5
    assert torch.equal(assign_modes("two_moons", upper), torch.where(on_upper, 0, 1))
    arms = spiral(2000, generator=torch.Generator().manual_seed(0), noise=1e-9)
    arm_of_point = assign_modes("spiral", arms)
    assert bool((arm_of_point >= 0).all())
    # the two arms are point reflections of each other: reflecting a point swaps its arm
    assert torch.equal(assign_modes("spiral", -arms), 1 - arm_of_point)


def test_assign_modes_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown toy dataset"):
        assign_modes("swiss_roll", torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        assign_modes("ring", torch.zeros(2, 3))
    with pytest.raises(TypeError, match="floating"):
        assign_modes("ring", torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        assign_modes("ring", [[0.0, 0.0]])
    with pytest.raises(ValueError, match="tolerance must be a positive number"):
        assign_modes("ring", torch.zeros(2, 2), tolerance=0.0)


def test_support_scores_closed_form() -> None:
    # 10 points: 7 on the support, modes 0 (4 points), 1 (2), 2 (1) of 4; min_share 0.25 -> count >= 0.625
    modes = torch.tensor([0, 0, 0, 0, 1, 1, 2, -1, -1, -1])
    on_support, coverage = support_scores(modes, 4)
    assert float(on_support) == 0.7
    assert float(coverage) == 0.75
    # a stricter share: mode k needs at least 10 * 0.5 / 4 = 1.25 points -> modes 0 and 1
    assert float(support_scores(modes, 4, min_share=0.5)[1]) == 0.5
    assert support_scores(torch.tensor([-1, -1]), 3) == (0.0, 0.0)


def test_support_scores_reject_bad_input() -> None:
    with pytest.raises(TypeError, match="integer tensor"):
        support_scores(torch.zeros(3), 2)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        support_scores(torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"lie in \[-1, 2\)"):
        support_scores(torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="num_modes"):
        support_scores(torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="min_share"):
        support_scores(torch.tensor([0]), 1, min_share=0.0)


# ------------------------------------------------------------------------------------------ metrics


def test_precision_recall_closed_form_in_one_dimension() -> None:
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # k = 1: every real radius is 1; fake 0.5 is inside, 10 is not. The two fake points are 9.5 apart,
    # so each fake ball has radius 9.5 and covers every real point.
    precision, recall = precision_recall(real, torch.tensor([[0.5], [10.0]]), k=1)
    assert (float(precision), float(recall)) == (0.5, 1.0)
    # k = 2: real radii 2, 1, 1, 2 (the second neighbour); fake {2.9, 3.1} radii 0.2 cover only real 3
    precision, recall = precision_recall(real, torch.tensor([[2.9], [3.1], [5.2]]), k=2)
    # fake 2.9 and 3.1 lie within 1 of real 2 or 2 of real 3; 5.2 is 2.2 from 3 -> outside
    assert float(precision) == pytest.approx(2 / 3)
    # fake radii (2nd neighbour): 2.9 -> 2.3, 3.1 -> 2.1, 5.2 -> 2.3; real 1, 2, 3 within, 0 is 2.9 away
    assert float(recall) == 0.75


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(4, 30), m=st.integers(4, 30), k=st.integers(1, 3))
def test_precision_recall_swap_and_identity(seed: int, n: int, m: int, k: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 2, generator=g), torch.randn(m, 2, generator=g) + 1.0
    p_xy, r_xy = precision_recall(x, y, k=k)
    p_yx, r_yx = precision_recall(y, x, k=k)
    assert float(p_xy) == float(r_yx)
    assert float(r_xy) == float(p_yx)
    assert 0.0 <= float(p_xy) <= 1.0
    assert precision_recall(x, x.clone(), k=k) == (1.0, 1.0)


def test_precision_recall_sees_blur_that_energy_distance_barely_sees() -> None:
    """Mass spread between the modes lowers precision far more than it raises the energy distance."""
    g = torch.Generator().manual_seed(0)
    real, sharp = ring(4000, generator=g), ring(4000, generator=g)
    blurred = ring(4000, generator=g, std=0.3)
    p_sharp, r_sharp = precision_recall(real, sharp)
    p_blur, _ = precision_recall(real, blurred)
    assert float(p_sharp) > 0.95
    assert float(r_sharp) > 0.95
    assert float(p_blur) < 0.75


def test_precision_recall_rejects_bad_input() -> None:
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="at least 4 points"):
        precision_recall(x[:3], x, k=3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match="same dimension"):
        precision_recall(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="chunk"):
        precision_recall(x, x, chunk=0)


def _brute_energy(x: torch.Tensor, y: torch.Tensor) -> float:
    """Direct re-derivation: 2 mean|x - y| - mean_{i != j}|x_i - x_j| - mean_{i != j}|y_i - y_j|."""
    x, y = x.double(), y.double()
    n, m = x.shape[0], y.shape[0]
    xy = sum(float((x[i] - y[j]).norm()) for i in range(n) for j in range(m)) / (n * m)
    xx = sum(float((x[i] - x[j]).norm()) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(float((y[i] - y[j]).norm()) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return 2 * xy - xx - yy


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 9), m=st.integers(2, 9), d=st.integers(1, 3))
def test_energy_distance_exact_matches_brute_force(seed: int, n: int, m: int, d: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g) + 0.3
    assert math.isclose(
        float(energy_distance(x, y, chunk=3)), _brute_energy(x, y), rel_tol=1e-9, abs_tol=1e-9
    )


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 40), m=st.integers(2, 40))
def test_energy_distance_projection_is_exact_in_one_dimension(seed: int, n: int, m: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 1, generator=g), 2 * torch.randn(m, 1, generator=g)
    exact = float(energy_distance(x, y))
    assert math.isclose(
        float(sliced_energy_distance(x, y, num_projections=1)), exact, rel_tol=1e-9, abs_tol=1e-12
    )


def test_energy_distance_projection_converges_to_the_exact_value_in_2d() -> None:
    g = torch.Generator().manual_seed(0)
    x = ring(1500, generator=g)
    y = two_moons(1500, generator=g)
    exact = float(energy_distance(x, y))
    assert abs(float(sliced_energy_distance(x, y, num_projections=64)) - exact) < 1e-5 * exact
    # random directions in 3-D: unbiased Monte Carlo, close with many directions
    x3, y3 = torch.randn(800, 3, generator=g), torch.randn(800, 3, generator=g) * 1.5
    exact3 = float(energy_distance(x3, y3))
    approx3 = float(sliced_energy_distance(x3, y3, num_projections=4000, generator=g))
    assert abs(approx3 - exact3) < 0.03 * exact3


def test_energy_distance_closed_form_for_two_points() -> None:
    """Two unit-spaced points against the same pair shifted by c: 2*E|X-Y| - 1 - 1."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    shift = 3.0
    y = x + torch.tensor([0.0, shift])
    expected = 2 * (shift + math.hypot(1.0, shift)) / 2 - 1 - 1
    assert math.isclose(float(energy_distance(x, y)), expected, rel_tol=1e-12)


def test_energy_distance_separates_and_is_symmetric() -> None:
    g = torch.Generator().manual_seed(0)
    x, x2 = checkerboard(3000, generator=g), checkerboard(3000, generator=g)
    y = spiral(3000, generator=g)
    same, different = float(energy_distance(x, x2)), float(energy_distance(x, y))
    assert different > 0.01
    assert abs(same) < different / 10
    assert math.isclose(different, float(energy_distance(y, x)), rel_tol=1e-9)


def test_sliced_wasserstein_of_a_shift_is_its_projected_length() -> None:
    """Shifting a cloud by c gives W2 = |theta.c| per direction, so SW2^2 = mean_theta (theta.c)^2 = |c|^2/2."""
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.6, -0.8])
    sw = float(sliced_wasserstein(x, x + shift, num_projections=1000))
    assert math.isclose(sw, math.sqrt(0.5), rel_tol=1e-6)


def test_sliced_wasserstein_handles_unequal_sizes_exactly() -> None:
    """{0, 1} (each 1/2) against {0, 1, 1, 1} (1/4, 3/4): 1/4 of the mass moves distance 1 -> W2 = 1/2."""
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [1.0], [1.0], [1.0]])
    assert math.isclose(float(sliced_wasserstein(x, y, num_projections=1)), 0.5, rel_tol=1e-12)
    assert float(sliced_wasserstein(x, x, num_projections=3)) == 0.0


def test_sliced_wasserstein_random_directions_follow_the_generator() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 3, generator=g), torch.randn(100, 3, generator=g)
    a = sliced_wasserstein(x, y, num_projections=8, generator=torch.Generator().manual_seed(5))
    b = sliced_wasserstein(x, y, num_projections=8, generator=torch.Generator().manual_seed(5))
    c = sliced_wasserstein(x, y, num_projections=8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("metric", [sliced_energy_distance, sliced_wasserstein])
def test_metrics_reject_bad_input(metric) -> None:
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        metric(torch.randn(5), x)
    with pytest.raises(ValueError, match="same dimension"):
        metric(x, torch.randn(5, 3))
    with pytest.raises(TypeError, match="floating"):
        metric(x, torch.ones(5, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        metric(x, torch.full((5, 2), float("nan")))
    with pytest.raises(ValueError, match="num_projections"):
        metric(x, x, num_projections=0)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        metric(x.tolist(), x)


def test_energy_distance_needs_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2 points"):
        energy_distance(torch.zeros(1, 2), torch.zeros(3, 2))


# ------------------------------------------------------------------------------------------ backbone


def test_backbone_shapes_with_and_without_labels() -> None:
    torch.manual_seed(0)
    net = MLPBackbone(2, hidden=16, depth=2)
    x, t = torch.randn(7, 2), torch.rand(7)
    assert net(x, t, t * 0.5).shape == (7, 2)
    conditional = MLPBackbone(64, hidden=16, depth=1, num_classes=10)
    images = torch.randn(4, 1, 8, 8)
    labels = torch.tensor([0, 9, 10, 3])
    assert conditional(images, torch.rand(4), torch.rand(4), labels).shape == images.shape


def test_backbone_uses_time_gap_and_labels() -> None:
    """The output depends on t, on s (through t - s) and on the label."""
    torch.manual_seed(0)
    net = MLPBackbone(2, hidden=16, depth=2, num_classes=3)
    x, t = torch.randn(5, 2), torch.full((5,), 0.7)
    labels = torch.zeros(5, dtype=torch.long)
    base = net(x, t, t * 0.0, labels)
    assert not torch.allclose(base, net(x, t, t * 0.5, labels))
    assert not torch.allclose(base, net(x, t * 0.5, t * 0.0, labels))
    assert not torch.allclose(base, net(x, t, t * 0.0, labels + 3))


def test_backbone_errors_are_clear() -> None:
    net = MLPBackbone(2, hidden=8, depth=1)
    with pytest.raises(ValueError, match="dim=2"):
        net(torch.randn(3, 3), torch.rand(3), torch.rand(3))
    with pytest.raises(ValueError, match="unconditional"):
        net(torch.randn(3, 2), torch.rand(3), torch.rand(3), torch.zeros(3, dtype=torch.long))
    conditional = MLPBackbone(2, hidden=8, depth=1, num_classes=4)
    with pytest.raises(ValueError, match="pass labels"):
        conditional(torch.randn(3, 2), torch.rand(3), torch.rand(3))
    with pytest.raises(ValueError, match="integer tensor"):
        conditional(torch.randn(3, 2), torch.rand(3), torch.rand(3), torch.zeros(3))
    with pytest.raises(ValueError, match="hidden"):
        MLPBackbone(2, hidden=0)
    with pytest.raises(ValueError, match="num_classes"):
        MLPBackbone(2, num_classes=0)


def test_backbone_trains_under_the_objective_with_guidance() -> None:
    """One guided SoFlow step gives finite gradients for every parameter group."""
    torch.manual_seed(0)
    model = SolutionFlowWrapper(MLPBackbone(2, hidden=16, depth=1, num_classes=2))
    objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=10))
    g = torch.Generator().manual_seed(0)
    data, labels = ring(32, generator=g), torch.randint(2, (32,), generator=g)
    out = objective(model, data, labels, null_cond=2, generator=g)
    out.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(grad is not None and bool(torch.isfinite(grad).all()) for grad in grads)
    assert model.backbone.label_embed.weight.grad.abs().sum() > 0
    assert sample(model, torch.randn(4, 2), cond=labels[:4]).shape == (4, 2)


def test_time_scale_multiplies_the_times_of_the_embedding() -> None:
    t = torch.rand(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(timestep_embedding(t, 8, scale=7.0), timestep_embedding(7.0 * t, 8, scale=1.0))
    torch.manual_seed(0)
    fine = MLPBackbone(2, hidden=8, depth=1, time_scale=1000.0)
    torch.manual_seed(0)
    smooth = MLPBackbone(2, hidden=8, depth=1, time_scale=1.0)
    x, s = torch.randn(6, 2), t * 0.5
    assert smooth.time_scale == 1.0
    # same weights, different time features: the outputs differ, except at t = s = 0 where both are cos 0, sin 0
    assert not torch.allclose(fine(x, t, s), smooth(x, t, s))
    zero = torch.zeros(6)
    assert torch.allclose(fine(x, zero, zero), smooth(x, zero, zero))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), True, "1"])
def test_time_scale_rejects_bad_values(bad) -> None:
    with pytest.raises(ValueError, match="time_scale must be a finite number > 0"):
        MLPBackbone(2, time_scale=bad)


def test_backbone_float64() -> None:
    net = MLPBackbone(2, hidden=8, depth=1).double()
    x = torch.randn(3, 2, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64)
    assert net(x, t, t).dtype == torch.float64
