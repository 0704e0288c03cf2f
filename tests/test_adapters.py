r"""Tests of SingleTimeAdapter: exact equality with the wrapped backbone at initialisation, the time
direction and scale conventions, zero-initialisation modes, training, copies and clear errors.

The direction oracle: for data concentrated at one point $c$, both conventions have closed-form
velocities. This toolkit ($t = 0$ data, $t = 1$ noise): $x_t = (1 - t)c + t\,\text{noise}$, so
$\text{noise} = (x - (1 - t)c)/t$ and $v(x, t) = \text{noise} - c = (x - c)/t$.
Meta's flow_matching / torchcfm ($\tau = 0$ noise, $\tau = 1$ data): $x_\tau = \tau c + (1 - \tau)\,\text{noise}$,
so $u(x, \tau) = c - \text{noise} = (c - x)/(1 - \tau)$. The tests check the adapter's read-out against
$(x - c)/t$ computed here, not against the adapter's own formula.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from soflow_toolkit import SoFlowConfig, SoFlowLoss, SolutionFlowWrapper, euler_sample
from soflow_toolkit.adapters import SingleTimeAdapter


class TimeNet(nn.Module):
    """A plain single-time user module: `net(x, time, labels=None)` with its own time embedder."""

    def __init__(
        self, dim: int = 3, width: int = 16, num_classes: int | None = None, final_act: bool = False
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width)]
        if final_act:
            layers.append(nn.Sigmoid())
        self.time_embed = nn.Sequential(*layers)
        self.label_embed = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.body = nn.Sequential(nn.Linear(dim + width, 32), nn.SiLU(), nn.Linear(32, dim))

    def forward(self, x: Tensor, time: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.time_embed(time[:, None])
        if labels is not None and self.label_embed is not None:
            emb = emb + self.label_embed(labels)
        return self.body(torch.cat([x, emb], dim=1))


class DiracVelocity(nn.Module):
    """A 'pretrained' velocity for data at the point `c`, in either time direction, time in [0, scale].

    The time embedding feeds a zero head, so the output is the closed form while the embedder still
    takes part in the forward (the adapter hooks it).
    """

    def __init__(self, c: Tensor, *, meta_direction: bool, scale: float) -> None:
        super().__init__()
        self.register_buffer("c", c)
        self.meta_direction = meta_direction
        self.scale = scale
        self.time_embed = nn.Sequential(nn.Linear(1, 8), nn.SiLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, c.shape[0])
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        extra = self.head(self.time_embed(time[:, None]))
        tau = (time / self.scale)[:, None]
        if self.meta_direction:  # u(x, tau) = (c - x) / (1 - tau), tau = 0 noise, tau = 1 data
            return (self.c - x) / (1 - tau) + extra
        return (x - self.c) / tau + extra  # v(x, t) = (x - c) / t, t = 0 data, t = 1 noise


def tiny_unet(**overrides):
    diffusers = pytest.importorskip("diffusers")
    config = {
        "sample_size": 8,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    }
    config.update(overrides)
    return diffusers.UNet2DModel(**config)


def test_plain_module_starts_equal_to_backbone(generator):
    torch.manual_seed(0)
    net = TimeNet()
    model = SolutionFlowWrapper(SingleTimeAdapter(net, time_embedding="time_embed"))
    x = torch.randn(6, 3, generator=generator)
    t = torch.rand(6, generator=generator)
    s = t * torch.rand(6, generator=generator)
    with torch.no_grad():
        own = net(x, t)
        assert torch.equal(model.velocity(x, t), own)
        # f(x, t, s) = x + (s - t) v: one Euler step of the pretrained flow.
        assert torch.equal(model(x, t, s), x + (s - t)[:, None] * own)
    assert model.backbone.zero_init == "linear"


def test_diffusers_unet_starts_equal_to_backbone(generator):
    torch.manual_seed(0)
    unet = tiny_unet()
    backbone = SingleTimeAdapter(
        unet, time_embedding=("time_proj", "time_embedding"), time_scale=1000.0, output="sample"
    )
    model = SolutionFlowWrapper(backbone)
    x = torch.randn(2, 3, 8, 8, generator=generator)
    t = torch.tensor([0.3, 0.9])
    s = torch.tensor([0.1, 0.0])
    with torch.no_grad():
        own = unet(x, t * 1000).sample
        assert torch.equal(model.velocity(x, t), own)
        assert torch.equal(model(x, t, s), x + (s - t)[:, None, None, None] * own)
        # The gap branch really is wired in: a nonzero gap embedding changes the output at s != t.
        nn.init.normal_(backbone.gap_embedding.stages[-1].linear_2.weight)
        assert not torch.allclose(model(x, t, s, output="backbone"), own)
        # ... but not the direct call of the backbone, which stays the single-time model.
        assert torch.equal(unet(x, t * 1000).sample, own)
    assert backbone.zero_init == "linear"
    assert "gap_embedding.stages.1.linear_2.weight" in backbone.state_dict()
    assert "backbone.time_embedding.linear_2.weight" in backbone.state_dict()


def test_diffusers_class_conditional_unet_trains_with_guidance(generator):
    torch.manual_seed(0)
    unet = tiny_unet(num_class_embeds=5)
    model = SolutionFlowWrapper(
        SingleTimeAdapter(
            unet, time_embedding=("time_proj", "time_embedding"), time_scale=1000.0, output="sample"
        )
    )
    objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=10))
    data = torch.randn(4, 3, 8, 8, generator=generator)
    labels = torch.tensor([0, 1, 2, 3])
    out = objective(
        model, data, cond={"class_labels": labels}, null_cond={"class_labels": 4}, generator=generator
    )
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grad = model.backbone.gap_embedding.stages[-1].linear_2.weight.grad
    assert grad is not None
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("meta_direction", [False, True])
def test_time_direction_and_scale_give_this_toolkits_velocity(meta_direction):
    c = torch.tensor([1.5, -0.5])
    scale = 1.0 if meta_direction else 1000.0
    net = DiracVelocity(c, meta_direction=meta_direction, scale=scale)
    model = SolutionFlowWrapper(
        SingleTimeAdapter(net, time_embedding="time_embed", time_scale=scale, reverse_time=meta_direction)
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g)
    t = 0.05 + 0.9 * torch.rand(5, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model.velocity(x, t), (x - c) / t[:, None], rtol=1e-5, atol=1e-6)
        # With the exact velocity of a point mass, Euler integration from noise lands on the point.
        samples = euler_sample(model, torch.randn(5, 2, generator=g), steps=8)
    torch.testing.assert_close(samples, c.expand(5, 2), rtol=1e-5, atol=1e-5)


def test_reverse_time_is_needed_for_the_opposite_direction():
    c = torch.tensor([1.5, -0.5])
    net = DiracVelocity(c, meta_direction=True, scale=1.0)
    model = SolutionFlowWrapper(SingleTimeAdapter(net, time_embedding="time_embed"))
    x, t = torch.randn(5, 2), torch.full((5,), 0.3)
    with torch.no_grad():
        assert not torch.allclose(model.velocity(x, t), (x - c) / t[:, None], atol=1e-2)


def test_gate_mode_is_exact_and_auto_falls_back_to_it(generator):
    torch.manual_seed(0)
    net = TimeNet(final_act=True)  # the embedder ends in a sigmoid: zeroing its last Linear gives 0.5
    adapter = SingleTimeAdapter(net, time_embedding="time_embed")
    assert adapter.zero_init == "gate"
    assert adapter.gap_embedding.gate is not None
    model = SolutionFlowWrapper(adapter)
    x, t = torch.randn(4, 3, generator=generator), torch.rand(4, generator=generator)
    with torch.no_grad():
        assert torch.equal(model.velocity(x, t), net(x, t))
    with pytest.raises(ValueError, match="zero_init='linear'"):
        SingleTimeAdapter(TimeNet(final_act=True), time_embedding="time_embed", zero_init="linear")
    forced = SingleTimeAdapter(TimeNet(), time_embedding="time_embed", zero_init="gate")
    assert forced.zero_init == "gate"


def test_custom_gap_embedding_is_zero_initialised(generator):
    net = TimeNet(width=16)
    gap = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 16))
    adapter = SingleTimeAdapter(net, time_embedding="time_embed", gap_embedding=gap)
    assert adapter.gap_embedding.stages[0] is gap
    assert torch.count_nonzero(gap[2].weight) == 0
    x, t = torch.randn(3, 3, generator=generator), torch.rand(3, generator=generator)
    with torch.no_grad():
        assert torch.equal(SolutionFlowWrapper(adapter).velocity(x, t), net(x, t))


def test_training_moves_the_gap_branch_and_makes_the_output_depend_on_s(generator):
    torch.manual_seed(0)
    net = TimeNet(num_classes=3)
    model = SolutionFlowWrapper(SingleTimeAdapter(net, time_embedding="time_embed"))
    objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, t = torch.randn(4, 3, generator=generator), torch.full((4,), 0.8)
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        before = model(x, t, torch.zeros(4), labels, output="backbone")
        assert torch.equal(before, model(x, t, t, labels, output="backbone"))
    for _ in range(3):
        data = torch.randn(16, 3, generator=generator)
        cond = torch.randint(0, 3, (16,), generator=generator)
        out = objective(model, data, cond=cond, null_cond=3, generator=generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    with torch.no_grad():
        far = model(x, t, torch.zeros(4), labels, output="backbone")
        near = model(x, t, t, labels, output="backbone")
    assert not torch.allclose(far, near)


def test_deepcopy_gets_its_own_gap_branch(generator):
    torch.manual_seed(0)
    net = TimeNet()
    model = SolutionFlowWrapper(SingleTimeAdapter(net, time_embedding="time_embed"))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        nn.init.normal_(twin.backbone.gap_embedding.stages[-1][-1].weight)
        x, t, s = torch.randn(4, 3, generator=generator), torch.full((4,), 0.9), torch.zeros(4)
        own = net(x, t)
        assert torch.equal(model(x, t, s, output="backbone"), own)
        assert not torch.allclose(twin(x, t, s, output="backbone"), own)
        assert torch.equal(twin.backbone.backbone(x, t), own)


def test_condition_as_keywords_and_positional(generator):
    net = TimeNet(num_classes=3)
    adapter = SingleTimeAdapter(net, time_embedding="time_embed")
    x, t = torch.randn(2, 3, generator=generator), torch.rand(2, generator=generator)
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        expected = net(x, t, labels)
        assert torch.equal(SolutionFlowWrapper(adapter).velocity(x, t, {"labels": labels}), expected)
        assert torch.equal(SolutionFlowWrapper(adapter).velocity(x, t, labels), expected)
    with pytest.raises(TypeError, match="not both"):
        adapter(x, t, t, labels, labels=labels)


def test_custom_call_and_index_output(generator):
    class TupleNet(TimeNet):
        def forward(self, x, time, labels=None):
            return (super().forward(x, time, labels), "aux")

    net = TupleNet(num_classes=3)
    adapter = SingleTimeAdapter(
        net,
        time_embedding="time_embed",
        output=0,
        call=lambda backbone, x, time, cond: backbone(x, time, labels=cond),
    )
    x, t, labels = (
        torch.randn(2, 3, generator=generator),
        torch.rand(2, generator=generator),
        torch.tensor([0, 2]),
    )
    with torch.no_grad():
        assert torch.equal(adapter(x, t, t, labels), net(x, t, labels)[0])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"has no submodule 'time_emb'.*time_embed"):
        SingleTimeAdapter(TimeNet(), time_embedding="time_emb")
    with pytest.raises(ValueError, match="time_scale"):
        SingleTimeAdapter(TimeNet(), time_embedding="time_embed", time_scale=0.0)
    with pytest.raises(TypeError, match="time_scale"):
        SingleTimeAdapter(TimeNet(), time_embedding="time_embed", time_scale="1000")
    with pytest.raises(ValueError, match="zero_init"):
        SingleTimeAdapter(TimeNet(), time_embedding="time_embed", zero_init="zeros")
    with pytest.raises(TypeError, match=r"nn\.Module"):
        SingleTimeAdapter(lambda x, t: x, time_embedding="time_embed")


def test_output_that_is_not_a_tensor_names_the_fix(generator):
    unet = tiny_unet()
    adapter = SingleTimeAdapter(unet, time_embedding=("time_proj", "time_embedding"), time_scale=1000.0)
    x, t = torch.randn(1, 3, 8, 8, generator=generator), torch.rand(1, generator=generator)
    with pytest.raises(TypeError, match="output='sample'"):
        adapter(x, t, t)


def test_embedding_module_not_called_or_called_twice_raises(generator):
    class Skips(TimeNet):
        def forward(self, x, time, labels=None):
            return self.body(torch.cat([x, torch.zeros(x.shape[0], 16)], dim=1))

    class Twice(TimeNet):
        def forward(self, x, time, labels=None):
            emb = self.time_embed(time[:, None]) + self.time_embed(time[:, None])
            return self.body(torch.cat([x, emb], dim=1))

    x, t = torch.randn(2, 3, generator=generator), torch.rand(2, generator=generator)
    with pytest.raises(RuntimeError, match="0 times"):
        SingleTimeAdapter(Skips(), time_embedding="time_embed")(x, t, t)
    with pytest.raises(RuntimeError, match="2 times"):
        SingleTimeAdapter(Twice(), time_embedding="time_embed")(x, t, t)


def test_embedding_input_that_is_not_one_time_per_sample_raises(generator):
    class Features(nn.Module):
        def __init__(self):
            super().__init__()
            self.time_embed = nn.Linear(4, 8)
            self.body = nn.Linear(3 + 8, 3)

        def forward(self, x, time):
            feats = torch.stack([time, time**2, time.sin(), time.cos()], dim=1)
            return self.body(torch.cat([x, self.time_embed(feats)], dim=1))

    adapter = SingleTimeAdapter(Features(), time_embedding="time_embed", zero_init="gate")
    x, t = torch.randn(2, 3, generator=generator), torch.rand(2, generator=generator)
    with pytest.raises(ValueError, match="one value per sample"):
        adapter(x, t, t)


def test_log_time_fourier_embedding_is_rejected():
    unet = tiny_unet(time_embedding_type="fourier", block_out_channels=(16, 32))
    with pytest.raises(ValueError, match="not finite"):
        SingleTimeAdapter(unet, time_embedding=("time_proj", "time_embedding"), output="sample")
