"""SiT-layout flow-matching checkpoints as SoFlow's DiT (`soflow_toolkit.sit`), on tiny random checkpoints.

The checkpoints are made here, in SiT's key layout (`x_embedder.proj`, `t_embedder.mlp.{0,2}`,
`y_embedder.embedding_table`, `blocks.i.*`, `final_layer.*`, `pos_embed`; learned sigma or not, with or
without the null row), with every weight random. `sit_forward` below evaluates such a state dict in
SiT's own convention (time 1 = data, output data - noise, the first half of the channels with learned
sigma), written from the architecture. The identities checked:

- the velocity read-out of the loaded model is the pretrained velocity in this toolkit's direction,
  v(x, t) = -SiT(x, 1 - t, y), in float64 (1e-12) and float32;
- the t - s embedder starts at zero: F(x, t, s) does not depend on s, so f(x, t, s) is one Euler step of
  the pretrained flow, and f(x, t, t) = x;
- the rotation of the time features is phi(1 - t) = R phi(t); `reverse_time=False` copies the weights;
- the files of SiT's train.py (with `args`, an argparse.Namespace) and bare state dicts load; every
  misfit gives a clear error.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from soflow_toolkit import SoFlowConfig, SoFlowLoss, sample
from soflow_toolkit.models import DiT, grid_positions_2d, sinusoidal_embedding
from soflow_toolkit.sit import (
    SIT_NUM_HEADS,
    from_sit_state_dict,
    load_sit,
    read_sit_checkpoint,
    sit_config,
    sit_key_map,
)
from soflow_toolkit.sit.keys import _reversed_time_weight as reversed_time_weight

CHANNELS, PATCH, HIDDEN, DEPTH, HEADS, CLASSES, SIZE, FREQ = 4, 2, 32, 2, 4, 10, 8, 256


def sit_state_dict(
    *, learn_sigma: bool = True, null_row: bool = True, seed: int = 0, dtype: torch.dtype = torch.float64
) -> dict[str, Tensor]:
    """A random state dict in SiT's layout (every weight non-zero, positions the fixed sin-cos ones)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        return 0.2 * torch.randn(*shape, generator=g, dtype=dtype)

    out_channels = 2 * CHANNELS if learn_sigma else CHANNELS
    state = {
        "pos_embed": grid_positions_2d(HIDDEN, SIZE // PATCH)[None].to(dtype),
        "x_embedder.proj.weight": rand(HIDDEN, CHANNELS, PATCH, PATCH),
        "x_embedder.proj.bias": rand(HIDDEN),
        "t_embedder.mlp.0.weight": rand(HIDDEN, FREQ),
        "t_embedder.mlp.0.bias": rand(HIDDEN),
        "t_embedder.mlp.2.weight": rand(HIDDEN, HIDDEN),
        "t_embedder.mlp.2.bias": rand(HIDDEN),
        "y_embedder.embedding_table.weight": rand(CLASSES + int(null_row), HIDDEN),
        "final_layer.linear.weight": rand(PATCH * PATCH * out_channels, HIDDEN),
        "final_layer.linear.bias": rand(PATCH * PATCH * out_channels),
        "final_layer.adaLN_modulation.1.weight": rand(2 * HIDDEN, HIDDEN),
        "final_layer.adaLN_modulation.1.bias": rand(2 * HIDDEN),
    }
    for i in range(DEPTH):
        state.update(
            {
                f"blocks.{i}.attn.qkv.weight": rand(3 * HIDDEN, HIDDEN),
                f"blocks.{i}.attn.qkv.bias": rand(3 * HIDDEN),
                f"blocks.{i}.attn.proj.weight": rand(HIDDEN, HIDDEN),
                f"blocks.{i}.attn.proj.bias": rand(HIDDEN),
                f"blocks.{i}.mlp.fc1.weight": rand(4 * HIDDEN, HIDDEN),
                f"blocks.{i}.mlp.fc1.bias": rand(4 * HIDDEN),
                f"blocks.{i}.mlp.fc2.weight": rand(HIDDEN, 4 * HIDDEN),
                f"blocks.{i}.mlp.fc2.bias": rand(HIDDEN),
                f"blocks.{i}.adaLN_modulation.1.weight": rand(6 * HIDDEN, HIDDEN),
                f"blocks.{i}.adaLN_modulation.1.bias": rand(6 * HIDDEN),
            }
        )
    return state


def sit_forward(state: dict[str, Tensor], x: Tensor, tau: Tensor, y: Tensor, *, learn_sigma: bool) -> Tensor:
    """SiT's network on a state dict: time tau (1 = data), output u = d x_tau / d tau (data - noise)."""

    def linear(h: Tensor, name: str) -> Tensor:
        return F.linear(h, state[f"{name}.weight"], state[f"{name}.bias"])

    def modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        return h * (1 + scale[:, None]) + shift[:, None]

    def norm(h: Tensor) -> Tensor:
        return F.layer_norm(h, (HIDDEN,), eps=1e-6)

    b = x.shape[0]
    tokens = F.conv2d(x, state["x_embedder.proj.weight"], state["x_embedder.proj.bias"], stride=PATCH)
    tokens = tokens.flatten(2).transpose(1, 2) + state["pos_embed"]
    half = FREQ // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, dtype=x.dtype) / half)
    args = tau[:, None] * freqs[None]
    t_emb = linear(
        F.silu(linear(torch.cat([args.cos(), args.sin()], 1), "t_embedder.mlp.0")), "t_embedder.mlp.2"
    )
    c = t_emb + state["y_embedder.embedding_table.weight"][y]
    for i in range(DEPTH):
        p = f"blocks.{i}"
        shift1, scale1, gate1, shift2, scale2, gate2 = linear(F.silu(c), f"{p}.adaLN_modulation.1").chunk(
            6, 1
        )
        h = modulate(norm(tokens), shift1, scale1)
        q, k, v = linear(h, f"{p}.attn.qkv").reshape(b, -1, 3, HEADS, HIDDEN // HEADS).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HIDDEN // HEADS), dim=-1) @ v
        tokens = tokens + gate1[:, None] * linear(
            attn.transpose(1, 2).reshape(b, -1, HIDDEN), f"{p}.attn.proj"
        )
        h = modulate(norm(tokens), shift2, scale2)
        mlp = linear(F.gelu(linear(h, f"{p}.mlp.fc1"), approximate="tanh"), f"{p}.mlp.fc2")
        tokens = tokens + gate2[:, None] * mlp
    shift, scale = linear(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, 1)
    out = linear(modulate(norm(tokens), shift, scale), "final_layer.linear")
    c_out, g = 2 * CHANNELS if learn_sigma else CHANNELS, SIZE // PATCH
    images = torch.einsum("nhwpqc->nchpwq", out.reshape(b, g, g, PATCH, PATCH, c_out)).reshape(
        b, c_out, SIZE, SIZE
    )
    return images[:, :CHANNELS]


def inputs(dtype: torch.dtype = torch.float64, batch: int = 5) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, CHANNELS, SIZE, SIZE, generator=g, dtype=dtype)
    t = torch.rand(batch, generator=g, dtype=dtype)
    s = t * torch.rand(batch, generator=g, dtype=dtype)
    return x, t, s, torch.randint(0, CLASSES + 1, (batch,), generator=g)


def loaded(state: dict[str, Tensor], **kwargs) -> DiT:
    dit = DiT(sit_config(state, num_heads=HEADS, **kwargs)).to(next(iter(state.values())).dtype)
    dit.load_state_dict(from_sit_state_dict(state, dit), strict=True)
    return dit


# --- the identities -----------------------------------------------------------------------------------


def test_time_features_of_one_minus_t_are_a_rotation() -> None:
    t = torch.rand(7, dtype=torch.float64)
    weight = torch.randn(3, FREQ, dtype=torch.float64)
    torch.testing.assert_close(
        sinusoidal_embedding(t, FREQ) @ reversed_time_weight(weight).T,
        sinusoidal_embedding(1 - t, FREQ) @ weight.T,
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("learn_sigma", [True, False])
def test_velocity_equals_the_pretrained_velocity(learn_sigma: bool) -> None:
    from soflow_toolkit import SolutionFlowWrapper

    state = sit_state_dict(learn_sigma=learn_sigma)
    model = SolutionFlowWrapper(loaded(state))
    x, t, _, y = inputs()
    expected = -sit_forward(state, x, 1 - t, y, learn_sigma=learn_sigma)
    assert float(expected.abs().max()) > 0.1  # a network that computes something
    torch.testing.assert_close(model.velocity(x, t, y), expected, rtol=0, atol=1e-12)


def test_velocity_in_float32() -> None:
    from soflow_toolkit import SolutionFlowWrapper

    state = sit_state_dict(dtype=torch.float32)
    model = SolutionFlowWrapper(loaded(state))
    x, t, _, y = inputs(torch.float32)
    expected = -sit_forward(state, x, 1 - t, y, learn_sigma=True)
    torch.testing.assert_close(model.velocity(x, t, y), expected, rtol=1e-4, atol=2e-5)


def test_the_gap_embedder_starts_at_zero_and_the_solution_is_one_euler_step() -> None:
    from soflow_toolkit import SolutionFlowWrapper

    state = sit_state_dict()
    dit = loaded(state)
    model = SolutionFlowWrapper(dit)
    x, t, s, y = inputs()
    assert torch.equal(dit.gap_embed(t - s), torch.zeros(t.shape[0], HIDDEN, dtype=torch.float64))
    torch.testing.assert_close(dit.gap_embed.fc1.weight, state["t_embedder.mlp.0.weight"], rtol=0, atol=0)
    v = -sit_forward(state, x, 1 - t, y, learn_sigma=True)
    torch.testing.assert_close(dit(x, t, s, y), v, rtol=0, atol=1e-12)  # F does not depend on s
    euler = x + (s - t)[:, None, None, None] * v
    torch.testing.assert_close(model(x, t, s, y), euler, rtol=0, atol=1e-12)
    assert torch.equal(model(x, t, t, y), x)  # the boundary condition, exactly


def test_reverse_time_false_copies_the_weights() -> None:
    state = sit_state_dict()
    dit = DiT(sit_config(state, num_heads=HEADS)).double()
    converted = from_sit_state_dict(state, dit, reverse_time=False)
    for ours, theirs in sit_key_map(dit).items():
        if ours.startswith("final.linear."):
            continue  # cut to the first half of the channels
        assert torch.equal(converted[ours], state[theirs]), ours
    dit.load_state_dict(converted)
    x, t, s, y = inputs()
    torch.testing.assert_close(
        dit(x, t, s, y), sit_forward(state, x, t, y, learn_sigma=True), rtol=0, atol=1e-12
    )


def test_a_null_row_free_table_and_the_config_read_from_shapes() -> None:
    with_null = sit_config(sit_state_dict(), num_heads=HEADS)
    assert (with_null.num_classes, with_null.null_class) == (CLASSES, True)
    assert (with_null.input_size, with_null.patch_size, with_null.depth, with_null.hidden_size) == (
        SIZE,
        PATCH,
        DEPTH,
        HIDDEN,
    )
    without = sit_config(sit_state_dict(null_row=False), num_heads=HEADS, num_classes=CLASSES)
    assert (without.num_classes, without.null_class) == (CLASSES, False)
    assert SIT_NUM_HEADS[1152] == 16


def test_fine_tuning_starts_from_the_pretrained_model() -> None:
    """A SoFlow step on the loaded model runs, and its loss sees the pretrained velocity."""
    from soflow_toolkit import SolutionFlowWrapper

    model = SolutionFlowWrapper(loaded(sit_state_dict()).float()).train()
    x, _, _, y = inputs(torch.float32, batch=8)
    out = SoFlowLoss(SoFlowConfig.imagenet(total_steps=10))(
        model, x, y.clamp_max(CLASSES - 1), null_cond=CLASSES
    )
    out.loss.backward()
    assert model.backbone.gap_embed.fc2.weight.grad is not None
    assert float(model.backbone.gap_embed.fc2.weight.grad.abs().max()) > 0  # the gap embedder learns


# --- files ------------------------------------------------------------------------------------------


def test_load_sit_reads_train_py_checkpoints_and_bare_state_dicts(tmp_path: Path) -> None:
    ema, raw = sit_state_dict(dtype=torch.float32, seed=1), sit_state_dict(dtype=torch.float32, seed=2)
    args = argparse.Namespace(model="SiT-T/2", path_type="Linear", prediction="velocity")
    train_py = tmp_path / "0005000.pt"
    torch.save({"model": raw, "ema": ema, "opt": {"state": {}, "param_groups": []}, "args": args}, train_py)
    bare = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in ema.items()}, bare)  # a DDP prefix is removed
    x, t, _, y = inputs(torch.float32)
    for source, weights, state in ((train_py, "ema", ema), (train_py, "model", raw), (bare, "ema", ema)):
        model = load_sit(source, weights=weights, num_heads=HEADS)
        assert not model.training
        assert model.path.name == "linear"
        assert model.parametrization.name == "euler"
        expected = -sit_forward(state, x, 1 - t, y, learn_sigma=True)
        torch.testing.assert_close(model.velocity(x, t, y), expected, rtol=1e-4, atol=2e-5)
    assert load_sit(bare, num_heads=HEADS, path="trig").path.name == "trig"
    guided = load_sit(bare, num_heads=HEADS, guidance_embed=True)
    assert guided.backbone.config.guidance_embed
    one_step = sample(guided, x, cond=y, guidance_scale=3.0)
    torch.testing.assert_close(
        one_step,
        x - (-sit_forward(ema, x, 1 - torch.ones(5), y, learn_sigma=True)) * 1.0,
        rtol=1e-4,
        atol=1e-4,
    )


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no SiT checkpoint at"):
        read_sit_checkpoint(tmp_path / "missing.pt")
    not_torch = tmp_path / "text.pt"
    not_torch.write_text("hello")
    with pytest.raises(ValueError, match=r"does not load with torch.load\(weights_only=True\)"):
        read_sit_checkpoint(not_torch)
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "weights": {"a": torch.zeros(1)}}, other)
    with pytest.raises(
        ValueError, match=r"is not a SiT checkpoint: expected a state dict or a dict with 'ema'"
    ):
        read_sit_checkpoint(other)
    with pytest.raises(ValueError, match="weights must be 'ema' or 'model'; got 'raw'"):
        read_sit_checkpoint(other, weights="raw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"path must be 'linear' \(SiT's Linear\) or 'trig'"):
        load_sit(other, path="vp")  # type: ignore[arg-type]


def test_state_dicts_that_do_not_fit() -> None:
    state = sit_state_dict()
    with pytest.raises(ValueError, match="for width 32 pass num_heads="):
        sit_config(state)
    with pytest.raises(ValueError, match=r"not a SiT state dict: it has no 'x_embedder\.proj\.weight'"):
        sit_config({"pos_embed": state["pos_embed"]})
    with pytest.raises(ValueError, match="the label table has 11 rows: num_classes=5 needs 5 or 6"):
        sit_config(state, num_heads=HEADS, num_classes=5)
    dit = DiT(sit_config(state, num_heads=HEADS)).double()
    missing = {k: v for k, v in state.items() if k != "blocks.1.mlp.fc2.bias"}
    with pytest.raises(
        ValueError, match=r"1 keys missing, 0 unexpected; missing \['blocks.1.mlp.fc2.bias'\]"
    ):
        from_sit_state_dict(missing, dit)
    extra = {**state, "s_embedder.mlp.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected \['s_embedder.mlp.0.weight'\]"):
        from_sit_state_dict(extra, dit)
    wide = {**state, "blocks.0.mlp.fc1.weight": torch.zeros(3 * HIDDEN, HIDDEN, dtype=torch.float64)}
    with pytest.raises(
        ValueError, match=r"blocks.0.mlp.fc1.weight has shape \(96, 32\) in the checkpoint but \(128, 32\)"
    ):
        from_sit_state_dict(wide, dit)
    shuffled = {**state, "pos_embed": state["pos_embed"].flip(1)}
    with pytest.raises(ValueError, match=r"pos_embed is not the DiT's fixed 2-D sin-cos positions"):
        from_sit_state_dict(shuffled, dit)
    with pytest.raises(
        TypeError, match=r"SiT checkpoints load into soflow_toolkit\.models\.DiT; got a Linear"
    ):
        from_sit_state_dict(state, torch.nn.Linear(2, 2))
