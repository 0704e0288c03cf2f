"""The DiT's guidance-scale embedder (`DiTConfig(guidance_embed=True)`): zero at the start, loads old checkpoints.

c = E_t(t) + E_s(t - s) + E_y(y) + E_omega(omega), with E_omega's last layer zero-initialised, so a
DiT with the embedder starts as the same network for every scale; a state dict without the embedder
loads into it (strict) and resets it to zero output, so it computes exactly what the checkpoint did;
the official export refuses it with a clear message and still works without it. With a degenerate
range (w, w), the objective of such a DiT equals the fixed-scale objective of the DiT without it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from soflow_toolkit import GuidanceConfig, SoFlowConfig, SoFlowLoss, SolutionFlowWrapper, sample
from soflow_toolkit.models import DiT, DiTConfig
from soflow_toolkit.pretrained import (
    from_official_state_dict,
    official_config,
    official_key_map,
    to_official_state_dict,
)

NUM_CLASSES = 10


def random_dit(guidance_embed: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32) -> DiT:
    """A tiny DiT whose weights are all random (the DiT initialisation outputs zeros)."""
    torch.manual_seed(seed)
    net = DiT.from_size("T/4", input_size=8, num_classes=NUM_CLASSES, guidance_embed=guidance_embed).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=dtype))
    return net


def inputs(batch: int = 4, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, 8, 8, generator=g, dtype=dtype)
    t = torch.rand(batch, generator=g, dtype=dtype)
    return (
        x,
        t,
        t * torch.rand(batch, generator=g, dtype=dtype),
        torch.randint(0, NUM_CLASSES + 1, (batch,), generator=g),
    )


def test_the_embedder_starts_at_zero_output() -> None:
    net = DiT.from_size("T/4", input_size=8, num_classes=NUM_CLASSES, guidance_embed=True)
    assert net.guidance_embed is not None
    out = net.guidance_embed(torch.linspace(1, 8, 5))
    assert torch.equal(out, torch.zeros_like(out))
    assert float(net.guidance_embed.fc1.weight.detach().abs().max()) > 0  # the first layer is not dead
    assert "guidance embed" in net.extra_repr()
    assert DiT.from_size("T/4", input_size=8).guidance_embed is None


@given(scales=st.lists(st.floats(0.5, 10.0), min_size=4, max_size=4))
def test_a_checkpoint_without_the_embedder_loads_and_computes_the_same_for_every_scale(scales) -> None:
    plain = random_dit()
    guided = random_dit(guidance_embed=True, seed=3)  # its own (non-zero) embedder, overwritten below
    assert guided.load_state_dict(plain.state_dict(), strict=True).missing_keys == []
    assert guided.guidance_embed is not None
    assert not bool(guided.guidance_embed.fc2.weight.any())  # reset to zero output
    x, t, s, labels = inputs()
    expected = plain(x, t, s, labels)
    got = guided(x, t, s, labels, guidance_scale=torch.tensor(scales))
    assert torch.equal(got, expected)


def test_a_checkpoint_with_the_embedder_restores_it() -> None:
    trained = random_dit(guidance_embed=True, seed=1)
    fresh = DiT.from_size("T/4", input_size=8, num_classes=NUM_CLASSES, guidance_embed=True)
    fresh.load_state_dict(trained.state_dict())
    for (name, a), (_, b) in zip(fresh.state_dict().items(), trained.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    x, t, s, labels = inputs()
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert not torch.equal(
        trained(x, t, s, labels, guidance_scale=w), trained(x, t, s, labels, guidance_scale=w + 1)
    )


def test_a_partial_embedder_is_still_a_missing_key() -> None:
    state = random_dit(guidance_embed=True).state_dict()
    del state["guidance_embed.fc2.bias"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"guidance_embed.fc2.bias\""):
        DiT.from_size("T/4", input_size=8, num_classes=NUM_CLASSES, guidance_embed=True).load_state_dict(
            state
        )


def test_the_wrapper_loads_a_wrapper_checkpoint_without_the_embedder() -> None:
    plain = SolutionFlowWrapper(random_dit())
    guided = SolutionFlowWrapper(random_dit(guidance_embed=True, seed=2))
    guided.load_state_dict(plain.state_dict())  # keys "backbone.*": the hook sees its prefix
    x, _, _, labels = inputs()
    torch.testing.assert_close(
        sample(guided, x, cond=labels, guidance_scale=3.0), sample(plain, x, cond=labels), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    ("guidance_embed", "scale", "match"),
    [
        (True, None, r"has a guidance-scale embedder: pass guidance_scale= of shape \(4,\); got None"),
        (True, torch.ones(3), r"pass guidance_scale= of shape \(4,\); got \(3,\)"),
        (
            False,
            torch.ones(4),
            r"this DiT takes no guidance_scale: build it with DiTConfig\(guidance_embed=True\)",
        ),
    ],
)
def test_the_scale_must_match_the_network(guidance_embed, scale, match) -> None:
    net = random_dit(guidance_embed=guidance_embed)
    x, t, s, labels = inputs()
    with pytest.raises(ValueError, match=match):
        net(x, t, s, labels, guidance_scale=scale)


def test_config_field_is_a_bool() -> None:
    with pytest.raises(ValueError, match=r"DiTConfig\.guidance_embed must be a bool; got 1"):
        DiTConfig.from_size("T/4", input_size=8, guidance_embed=1)


def test_official_export_refuses_the_embedder_and_works_without_it() -> None:
    size = dict(input_size=32, num_classes=1000)
    with torch.device("meta"):
        guided = SolutionFlowWrapper(DiT.from_size("B/4", **size, guidance_embed=True))
        plain = SolutionFlowWrapper(DiT.from_size("B/4", **size))
    for fn in (official_key_map, to_official_state_dict, official_config):
        with pytest.raises(ValueError, match=r"guidance-scale embedder .* which the official network lacks"):
            fn(guided)
    assert official_config(plain)["model_type"] == "DiT-B-4"
    assert len(official_key_map(plain)) == len(plain.backbone.state_dict())


def test_official_weights_load_into_a_dit_with_the_embedder() -> None:
    plain = random_dit()
    state = to_official_state_dict(plain)
    guided = random_dit(guidance_embed=True, seed=4)
    converted = from_official_state_dict(state, guided)
    assert not any(key.startswith("guidance_embed.") for key in converted)
    guided.load_state_dict(converted, strict=True)
    x, t, s, labels = inputs()
    assert torch.equal(guided(x, t, s, labels, guidance_scale=torch.full((4,), 2.0)), plain(x, t, s, labels))


def test_degenerate_range_with_the_embedder_equals_the_fixed_scale_without_it() -> None:
    """Float64, 1e-12: the zero embedder and the degenerate range change no number of a guided step."""
    plain = random_dit(dtype=torch.float64)
    guided = DiT.from_size("T/4", input_size=8, num_classes=NUM_CLASSES, guidance_embed=True).double()
    guided.load_state_dict(plain.state_dict())
    fixed = SoFlowConfig.imagenet(total_steps=10)  # scale 3, drop 0.1, mix 0.25, decay 0.8
    degenerate = dataclasses.replace(fixed, guidance=dataclasses.replace(fixed.guidance, scale=(3.0, 3.0)))
    assert isinstance(degenerate.guidance, GuidanceConfig)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(8, 4, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, NUM_CLASSES, (8,), generator=g)
    draw = SoFlowLoss(degenerate).draw(data, conditional=True, generator=g)
    outs = []
    for net, config, d in (
        (plain, fixed, dataclasses.replace(draw, guidance_scale=None)),
        (guided, degenerate, draw),
    ):
        out = SoFlowLoss(config)(SolutionFlowWrapper(net), data, labels, NUM_CLASSES, draw=d, step=0)
        out.loss.backward()
        outs.append((out.loss.detach(), {n: p.grad for n, p in net.named_parameters() if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = outs
    assert abs(float(loss_a - loss_b)) <= 1e-12 * abs(float(loss_a))
    for name, grad in grads_a.items():
        error = float((grads_b[name] - grad).abs().max())
        assert error <= 1e-12 * max(float(grad.abs().max()), 1e-300), name
    # The embedder's output layer gets a gradient: training moves it away from zero.
    assert float(grads_b["guidance_embed.fc2.weight"].abs().max()) > 0
