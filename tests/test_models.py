"""Tests of `soflow_toolkit.models`: the embeddings, the DiT and the UNet.

Closed forms for the embeddings, the positions, the attention and the resampling; properties of the
networks (shapes, the boundary condition through the wrapper, adaLN-Zero at initialisation, the null
label row, dependence on t - s, batch independence); the official sizes and parameter counts
(`tests/data/official_keys.json`, read from the official code); `gradcheck` in float64; one test per
bad input. Parity of outputs with the real official networks is in `tests/test_pretrained.py`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from soflow_toolkit import SolutionFlowWrapper
from soflow_toolkit.models import (
    DIT_SIZES,
    DiT,
    DiTConfig,
    UNet,
    UNetBlock,
    UNetConfig,
    grid_positions_2d,
    sinusoidal_embedding,
)
from soflow_toolkit.models.dit_blocks import Attention, DiTBlock
from soflow_toolkit.models.unet_blocks import Resample

OFFICIAL = json.loads((Path(__file__).parent / "data" / "official_keys.json").read_text())["models"]
TINY_UNET = UNetConfig(
    image_size=16, model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, attn_resolutions=(8,)
)


def randomize(module: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Add noise to every parameter: at initialisation adaLN-Zero makes the DiT output exactly 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return module


def tiny_dit(**overrides) -> DiT:
    return DiT.from_size("T/4", **{"input_size": 8, "num_classes": 10, **overrides})


# ----------------------------------------------------------------------------------------------------
# Embeddings


@given(
    dim=st.integers(2, 40).map(lambda n: 2 * n),
    values=st.lists(st.floats(-2.0, 2.0, allow_nan=False), min_size=1, max_size=5),
    endpoint=st.booleans(),
    period=st.sampled_from([10.0, 100.0, 10_000.0]),
)
def test_sinusoidal_embedding_matches_its_formula(dim, values, endpoint, period):
    v = torch.tensor(values, dtype=torch.float64)
    out = sinusoidal_embedding(v, dim, max_period=period, endpoint=endpoint)
    half = dim // 2
    denom = half - 1 if endpoint else half
    expected = torch.empty(len(values), dim, dtype=torch.float64)
    for k in range(half):
        omega = period ** (-k / denom)
        expected[:, k] = torch.cos(v * omega)
        expected[:, half + k] = torch.sin(v * omega)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    swapped = sinusoidal_embedding(v, dim, max_period=period, endpoint=endpoint, order="sin_cos")
    torch.testing.assert_close(swapped, torch.cat([expected[:, half:], expected[:, :half]], dim=1))


def test_sinusoidal_embedding_frequencies_span_one_to_one_over_period():
    ones = torch.ones(1, dtype=torch.float64)
    # The angle of feature k is omega_k for value 1: acos of the cosine half recovers the frequencies.
    with_end = torch.acos(sinusoidal_embedding(ones, 8, endpoint=True)[0, :4])
    torch.testing.assert_close(with_end[[0, -1]], torch.tensor([1.0, 1e-4], dtype=torch.float64))
    without = torch.acos(sinusoidal_embedding(ones, 8)[0, :4])
    torch.testing.assert_close(without[-1], torch.tensor(10_000.0 ** (-3 / 4), dtype=torch.float64))


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.int64, torch.float32),
    ],
)
def test_sinusoidal_embedding_dtype(dtype, expected):
    assert sinusoidal_embedding(torch.tensor([0, 1], dtype=dtype), 4).dtype == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"values": [0.5], "dim": 4}, TypeError, "values must be a"),
        ({"values": torch.zeros(2, 1), "dim": 4}, ValueError, r"got shape \(2, 1\)"),
        ({"values": torch.zeros(2), "dim": 5}, ValueError, "even int >= 2"),
        ({"values": torch.zeros(2), "dim": 0}, ValueError, "even int >= 2"),
        ({"values": torch.zeros(2), "dim": 2, "endpoint": True}, ValueError, "even int >= 4"),
        ({"values": torch.zeros(2), "dim": 4, "max_period": 0.0}, ValueError, "max_period must be positive"),
        ({"values": torch.zeros(2), "dim": 4, "order": "sin"}, ValueError, "order must be"),
    ],
)
def test_sinusoidal_embedding_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        sinusoidal_embedding(**kwargs)


@pytest.mark.parametrize(("dim", "grid"), [(4, 1), (8, 3), (16, 5)])
def test_grid_positions_first_half_encodes_the_column(dim, grid):
    pos = grid_positions_2d(dim, grid)
    assert pos.shape == (grid * grid, dim)
    assert pos.dtype == torch.float32
    q = dim // 4
    omega = 10_000.0 ** (-torch.arange(q, dtype=torch.float64) / q)
    for i in range(grid):
        for j in range(grid):
            token = pos[i * grid + j].double()
            column = torch.cat([torch.sin(j * omega), torch.cos(j * omega)])
            row = torch.cat([torch.sin(i * omega), torch.cos(i * omega)])
            torch.testing.assert_close(token, torch.cat([column, row]), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("dim", "grid", "match"), [(6, 2, "multiple of 4"), (0, 2, "multiple of 4"), (8, 0, "grid_size")]
)
def test_grid_positions_reject_bad_sizes(dim, grid, match):
    with pytest.raises(ValueError, match=match):
        grid_positions_2d(dim, grid)


# ----------------------------------------------------------------------------------------------------
# DiT


SPEC_SIZES = {  # SPEC.md §9: (patch, hidden, depth, heads)
    "B/4": (4, 768, 12, 12),
    "B/2": (2, 768, 12, 12),
    "M/2": (2, 1024, 16, 16),
    "L/2": (2, 1024, 24, 16),
    "XL/2": (2, 1152, 28, 16),
}


@pytest.mark.parametrize("size", sorted(SPEC_SIZES))
def test_dit_sizes_and_parameter_counts_are_the_official_ones(size):
    with torch.device("meta"):
        model = DiT.from_size(size)
    cfg = model.config
    assert (cfg.patch_size, cfg.hidden_size, cfg.depth, cfg.num_heads) == SPEC_SIZES[size] == DIT_SIZES[size]
    assert len(model.blocks) == cfg.depth
    assert model.label_embed.num_embeddings == 1001  # 1000 classes + the null class
    # The official count includes its frozen positional parameter, a buffer here.
    official = OFFICIAL["DiT-" + size.replace("/", "-")]["params"]
    count = sum(p.numel() for p in model.parameters()) + model.pos_embed.numel()
    assert count == official


def test_dit_null_class_row_is_optional():
    assert tiny_dit().label_embed.num_embeddings == 11
    without = tiny_dit(null_class=False)
    assert without.label_embed.num_embeddings == 10
    with pytest.raises(ValueError, match="no null class"):
        without(torch.zeros(1, 4, 8, 8), torch.ones(1), torch.zeros(1))


def test_dit_starts_at_zero_and_every_block_is_the_identity():
    model = tiny_dit()
    g = torch.Generator().manual_seed(0)
    x, t, s = torch.randn(3, 4, 8, 8, generator=g), torch.rand(3, generator=g), torch.rand(3, generator=g)
    assert torch.equal(model(x, t, s, torch.tensor([0, 4, 10])), torch.zeros_like(x))
    c = model.condition(t, s, None)
    tokens = torch.randn(3, 4, 64, generator=g)
    for block in model.blocks:
        assert torch.equal(block(tokens, c), tokens)
    # Only the zero-initialised layers keep it at zero: perturbing the output layer alone breaks it.
    with torch.no_grad():
        model.final.linear.bias.fill_(1.0)
    assert torch.equal(model(x, t, s), torch.ones_like(x))


def test_dit_labels_none_is_the_null_class():
    model = randomize(tiny_dit())
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.rand(2, generator=g)
    null = torch.full((2,), 10)
    assert torch.equal(model(x, t, t / 2), model(x, t, t / 2, null))
    assert not torch.allclose(model(x, t, t / 2), model(x, t, t / 2, torch.tensor([1, 2])))


def test_dit_uses_t_and_t_minus_s_and_samples_do_not_interact():
    model = randomize(tiny_dit())
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(3, 4, 8, 8, generator=g), torch.rand(3, generator=g) * 0.5 + 0.5
    y = torch.tensor([1, 2, 3])
    out = model(x, t, t / 2, y)
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, t, t / 3, y))  # s enters
    assert not torch.allclose(out, model(x, t * 0.9, t * 0.9 - t / 2, y))  # t enters beyond t - s
    # t - s is embedded as it is: the gap embedder sees exactly t - s.
    gap = model.gap_embed(t - t / 2)
    expected = model.t_embed(t) + gap + model.label_embed(y)
    torch.testing.assert_close(model.condition(t, t / 2, y), expected)
    torch.testing.assert_close(model(x[1:2], t[1:2], t[1:2] / 2, y[1:2]), out[1:2])


def test_dit_time_features_are_raw_times():
    """The timestep embedder sees t itself, not 1000 t: its first layer's input is phi(t)."""
    model = tiny_dit()
    t = torch.tensor([0.25, 0.5])
    features = sinusoidal_embedding(t, 256)
    fc1 = model.t_embed.fc1
    expected = model.t_embed.fc2(torch.nn.functional.silu(fc1(features)))
    torch.testing.assert_close(model.t_embed(t), expected)


def test_dit_boundary_condition_through_the_wrapper():
    model = SolutionFlowWrapper(randomize(tiny_dit()))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.3, 0.9])
    assert torch.equal(model(x, t, t, torch.tensor([1, 10])), x)


def test_dit_attention_is_softmax_attention():
    attn = randomize(Attention(16, num_heads=4))
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4))
    q, k, v = attn.qkv(x).split(16, dim=-1)
    heads = [slice(4 * i, 4 * (i + 1)) for i in range(4)]
    outs = [torch.softmax(q[..., h] @ k[..., h].transpose(1, 2) / 2.0, dim=-1) @ v[..., h] for h in heads]
    torch.testing.assert_close(attn(x), attn.proj(torch.cat(outs, dim=-1)))


def test_dit_block_matches_adaln_zero_formula():
    block = randomize(DiTBlock(8, 2, 4.0))
    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(2, 3, 8, generator=g), torch.randn(2, 8, generator=g)
    b1, g1, a1, b2, g2, a2 = block.modulation(torch.nn.functional.silu(c)).chunk(6, dim=1)
    ln = torch.nn.functional.layer_norm
    h = x + a1[:, None] * block.attn(ln(x, (8,), eps=1e-6) * (1 + g1[:, None]) + b1[:, None])
    mlp = block.mlp
    m = mlp.fc2(
        torch.nn.functional.gelu(
            mlp.fc1(ln(h, (8,), eps=1e-6) * (1 + g2[:, None]) + b2[:, None]), approximate="tanh"
        )
    )
    torch.testing.assert_close(block(x, c), h + a2[:, None] * m)


def test_dit_unpatchify_places_each_token_in_its_patch():
    model = DiT(
        DiTConfig(
            input_size=4, in_channels=2, patch_size=2, hidden_size=8, depth=1, num_heads=2, num_classes=3
        )
    )
    tokens = torch.arange(4 * 8, dtype=torch.float32).reshape(1, 4, 8)  # 4 tokens of (p, q, c) = (2, 2, 2)
    image = model.unpatchify(tokens)
    for i in range(2):
        for j in range(2):
            for p in range(2):
                for q in range(2):
                    for c in range(2):
                        assert image[0, c, 2 * i + p, 2 * j + q] == tokens[0, 2 * i + j, (p * 2 + q) * 2 + c]


def test_dit_pos_embed_is_saved_and_reset():
    model = tiny_dit(input_size=16)
    assert "pos_embed" in model.state_dict()
    torch.testing.assert_close(model.pos_embed[0], grid_positions_2d(64, 4))
    with torch.no_grad():
        model.pos_embed.zero_()
    model.reset_parameters()
    torch.testing.assert_close(model.pos_embed[0], grid_positions_2d(64, 4))


def test_dit_initialisation_follows_dit():
    model = DiT.from_size("T/4", input_size=8)
    assert float(model.label_embed.weight.detach().std()) == pytest.approx(0.02, rel=0.1)
    assert float(model.t_embed.fc1.weight.detach().std()) == pytest.approx(0.02, rel=0.1)
    for layer in (model.blocks[0].modulation, model.final.modulation, model.final.linear):
        assert not layer.weight.any()
        assert not layer.bias.any()
    bound = math.sqrt(6 / (64 + 3 * 64))  # Xavier-uniform qkv
    assert float(model.blocks[0].attn.qkv.weight.detach().abs().max()) <= bound


def test_dit_gradcheck_float64():
    model = randomize(tiny_dit(input_size=4, num_classes=2)).double()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t, s = torch.tensor([0.7], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: model(x, t, s, torch.tensor([1])), (x,))


def test_dit_float64_and_output_dtype():
    model = randomize(tiny_dit()).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    t = torch.rand(2, dtype=torch.float64)
    assert model(x, t, t / 2).dtype == torch.float64


@pytest.mark.parametrize(
    ("x", "t", "labels", "error", "match"),
    [
        (torch.zeros(2, 3, 8, 8), torch.ones(2), None, ValueError, r"shape \(B, 4, 8, 8\)"),
        (torch.zeros(2, 4, 16, 16), torch.ones(2), None, ValueError, r"shape \(B, 4, 8, 8\)"),
        (torch.zeros(2, 4, 8, 8), torch.ones(3), None, ValueError, r"t must have shape \(2,\)"),
        (torch.zeros(2, 4, 8, 8), torch.ones(2), torch.ones(2), TypeError, "integer tensor"),
        (torch.zeros(2, 4, 8, 8), torch.ones(2), [1, 2], TypeError, "integer tensor"),
        (
            torch.zeros(2, 4, 8, 8),
            torch.ones(2),
            torch.ones(2, 1).long(),
            ValueError,
            "labels must have shape",
        ),
    ],
)
def test_dit_rejects_bad_input(x, t, labels, error, match):
    with pytest.raises(error, match=match):
        tiny_dit()(x, t, t, labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_size": 10}, "not divisible by patch_size"),
        ({"hidden_size": 66}, "multiple of 4 and of num_heads"),
        ({"num_heads": 3}, "multiple of 4 and of num_heads"),
        ({"depth": 0}, "depth must be a positive int"),
        ({"num_classes": 0}, "num_classes must be a positive int"),
        ({"mlp_ratio": 0}, "mlp_ratio"),
        ({"frequency_dim": 255}, "frequency_dim must be even"),
        ({"null_class": 1}, "null_class must be a bool"),
    ],
)
def test_dit_config_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiTConfig.from_size("T/4", **{"input_size": 8, **kwargs})


def test_dit_config_rejects_unknown_sizes_and_fields():
    with pytest.raises(ValueError, match="unknown DiT size 'S/2'"):
        DiTConfig.from_size("S/2")
    with pytest.raises(ValueError, match=r"unknown DiTConfig fields \['hidden'\]"):
        DiTConfig.from_size("B/4", hidden=3)
    with pytest.raises(TypeError, match="config must be a DiTConfig"):
        DiT("B/4")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# UNet


def test_unet_default_is_the_official_network():
    with torch.device("meta"):
        model = UNet()
    cfg = model.config
    assert (cfg.model_channels, cfg.channel_mult, cfg.num_blocks, cfg.attn_resolutions) == (
        128,
        (2, 2, 2),
        4,
        (16,),
    )
    assert (cfg.dropout, cfg.resample_filter, cfg.channel_mult_noise, cfg.augment_dim) == (
        0.3,
        (1, 3, 3, 1),
        2,
        6,
    )
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL["UNet"]["params"]
    # The official block names, read from the official state dict.
    official_blocks = {
        key.split(".")[2] for key in OFFICIAL["UNet"]["state"] if key.startswith("network.enc.")
    }
    assert set(model.encoder_labels) | {"32x32_conv"} == official_blocks
    official_dec = {key.split(".")[2] for key in OFFICIAL["UNet"]["state"] if key.startswith("network.dec.")}
    assert set(model.decoder_labels) | {"32x32_aux_norm", "32x32_aux_conv"} == official_dec
    attention = [
        label for label, block in zip(model.decoder_labels, model.decoder, strict=True) if block.num_heads
    ]
    assert attention == ["8x8_in0", "16x16_block4"]
    assert sum(1 for block in model.encoder if block.num_heads) == 4  # the 16x16 level


def test_unet_uses_t_minus_s_concatenated_and_augment_labels():
    model = randomize(UNet(TINY_UNET)).eval()
    g = torch.Generator().manual_seed(7)
    x, t = torch.randn(2, 3, 16, 16, generator=g), torch.rand(2, generator=g) * 0.5 + 0.5
    out = model(x, t, t / 2)
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, t, t / 3))
    aug = torch.randn(2, 6, generator=g)
    assert not torch.allclose(out, model(x, t, t / 2, aug))
    assert torch.equal(out, model(x, t, t / 2, torch.zeros(2, 6)))  # no bias: zero labels = no labels
    # The mapping network's input is [phi(t) | phi(t - s)] with the sine half first, each 16 wide.
    phi = [sinusoidal_embedding(v, 16, endpoint=True, order="sin_cos") for v in (t, t - t / 2)]
    expected = torch.nn.functional.silu(
        model.embed_fc2(torch.nn.functional.silu(model.embed_fc1(torch.cat(phi, dim=1))))
    )
    torch.testing.assert_close(model.embed_times(t, t / 2), expected)
    torch.testing.assert_close(model(x[:1], t[:1], t[:1] / 2), out[:1])


def test_unet_boundary_condition_and_dropout():
    model = SolutionFlowWrapper(randomize(UNet(TINY_UNET)))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    t = torch.tensor([0.2, 0.8])
    assert torch.equal(model(x, t, t), x)
    model.train()
    torch.manual_seed(0)
    first = model(x, t, t / 2, output="backbone")
    torch.manual_seed(1)
    assert not torch.allclose(first, model(x, t, t / 2, output="backbone"))  # dropout is on
    torch.manual_seed(0)
    assert torch.equal(first, model(x, t, t / 2, output="backbone"))  # and follows the global RNG
    model.eval()
    assert torch.equal(model(x, t, t / 2), model(x, t, t / 2))


def test_unet_initialisation_follows_edm():
    model = UNet(TINY_UNET)
    for block in model.blocks():
        fan = block.conv2.in_channels * 9 + block.conv2.out_channels * 9
        assert float(block.conv2.weight.detach().abs().max()) <= 1e-5 * math.sqrt(6 / fan)
        assert not block.conv1.bias.any()
    assert float(model.conv_out.weight.detach().abs().max()) <= 1e-5
    assert torch.equal(model.blocks()[0].norm1.weight, torch.ones(8))


def test_unet_attention_interleaves_q_k_v_per_channel():
    block = randomize(UNetBlock(8, 8, 4, attention=True, num_heads=2)).eval()
    x = torch.randn(2, 8, 3, 3, generator=torch.Generator().manual_seed(9))
    qkv = block.qkv(block.attn_norm(x)).reshape(2, 8, 3, 9)  # channel 3 c + j: (q, k, v) of channel c
    outs = []
    for head in range(2):
        q, k, v = (qkv[:, 4 * head : 4 * head + 4, j] for j in range(3))  # (B, 4, HW)
        w = torch.softmax(q.transpose(1, 2) @ k / 2.0, dim=-1)  # (B, HW, HW)
        outs.append((w @ v.transpose(1, 2)).transpose(1, 2))
    expected = torch.cat(outs, dim=1).reshape(2, 8, 3, 3)
    torch.testing.assert_close(block._attention(x), expected)


@pytest.mark.parametrize("mode", ["down", "up"])
def test_resample_closed_form(mode):
    resample = Resample((1, 3, 3, 1), mode)
    kernel = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(resample.kernel[0, 0], torch.outer(kernel, kernel) / 64)
    constant = torch.full((1, 2, 8, 8), 3.0)
    out = resample(constant)
    assert out.shape == ((1, 2, 4, 4) if mode == "down" else (1, 2, 16, 16))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.full_like(out[..., 1:-1, 1:-1], 3.0))
    assert "kernel" not in resample.state_dict()  # a constant of the config
    with pytest.raises(ValueError, match="mode must be"):
        Resample((1, 1), "left")  # type: ignore[arg-type]


def test_unet_gradcheck_float64():
    config = UNetConfig(
        image_size=4, model_channels=4, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(2,), dropout=0.0
    )
    model = randomize(UNet(config)).double()
    x = torch.randn(
        1, 3, 4, 4, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(10)
    )
    t, s = torch.tensor([0.6], dtype=torch.float64), torch.tensor([0.1], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: model(x, t, s), (x,))


@pytest.mark.parametrize(
    ("x", "t", "aug", "match"),
    [
        (torch.zeros(2, 3, 8, 8), torch.ones(2), None, r"shape \(B, 3, 16, 16\)"),
        (torch.zeros(2, 3, 16, 16), torch.ones(1), None, r"t must have shape \(2,\)"),
        (
            torch.zeros(2, 3, 16, 16),
            torch.ones(2),
            torch.zeros(2, 5),
            r"augment_labels must have shape \(2, 6\)",
        ),
    ],
)
def test_unet_rejects_bad_input(x, t, aug, match):
    with pytest.raises(ValueError, match=match):
        UNet(TINY_UNET)(x, t, t, aug)


def test_unet_without_augment_input_rejects_augment_labels():
    model = UNet(UNetConfig(**{**TINY_UNET.__dict__, "augment_dim": 0}))
    assert model.augment_embed is None
    with pytest.raises(ValueError, match="no augmentation-label input"):
        model(torch.zeros(1, 3, 16, 16), torch.ones(1), torch.ones(1), torch.zeros(1, 6))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 18}, "divisible by 2 \\*\\* 2"),
        ({"channel_mult": ()}, "non-empty tuple"),
        ({"channel_mult": [1, 2]}, "tuple of ints"),
        ({"channel_mult": (1, 0)}, "positive ints"),
        ({"model_channels": 2}, "at least 4 channels"),
        ({"dropout": 1.0}, r"dropout must lie in \[0, 1\)"),
        ({"augment_dim": -1}, "augment_dim must be an int >= 0"),
        ({"num_heads": 3}, "multiples of num_heads"),
        ({"attn_resolutions": (0,)}, "positive ints"),
    ],
)
def test_unet_config_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**{**TINY_UNET.__dict__, **kwargs})
    with pytest.raises(TypeError, match="config must be a UNetConfig"):
        UNet({"image_size": 32})  # type: ignore[arg-type]
