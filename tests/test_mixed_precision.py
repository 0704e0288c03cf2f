r"""SoFlowLoss under mixed precision.

The backbone may run in bfloat16 (autocast, or bf16 weights and data); the toolkit keeps times, the
path, the solution $f = a\,x + b\,F$, the difference quotient $q = (f_t - f_l)/(t - l)$ and the
adaptive weights in float32. The tests record the dtypes that reach the loss terms, and compare the
bf16 loss with the float32 loss on the same draw.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import soflow_toolkit.step as step_module
from soflow_toolkit import SoFlowConfig, SoFlowLoss, SolutionFlowWrapper


class Net(nn.Module):
    """A small two-time MLP that casts the times to its input's dtype (as bf16 backbones must)."""

    def __init__(self, dim: int = 8, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim)
        )

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        times = torch.stack([t, s], dim=1).to(x.dtype)
        return self.net(torch.cat([x, times], dim=1))


@pytest.fixture
def recorded_dtypes(monkeypatch):
    """Wrap the loss terms used by the objective and record the dtypes of their inputs and outputs."""
    seen: dict[str, torch.dtype] = {}
    consistency, flow_matching = step_module.consistency_terms, step_module.flow_matching_terms

    def record_consistency(backbone_output, f_online, f_target, t, l, b, **kwargs):
        out = consistency(backbone_output, f_online, f_target, t, l, b, **kwargs)
        seen.update(
            sc_backbone_output=backbone_output.dtype,
            sc_f_online=f_online.dtype,
            sc_f_target=f_target.dtype,
            sc_times=t.dtype,
            sc_per_sample_mse=out.per_sample_mse.dtype,
            sc_per_sample_weight=out.per_sample_weight.dtype,
        )
        return out

    def record_flow_matching(v_pred, v_target, db_ds, **kwargs):
        out = flow_matching(v_pred, v_target, db_ds, **kwargs)
        seen.update(
            fm_v_pred=v_pred.dtype,
            fm_v_target=v_target.dtype,
            fm_per_sample_mse=out.per_sample_mse.dtype,
            fm_per_sample_weight=out.per_sample_weight.dtype,
        )
        return out

    monkeypatch.setattr(step_module, "consistency_terms", record_consistency)
    monkeypatch.setattr(step_module, "flow_matching_terms", record_flow_matching)
    return seen


def one_step(model: nn.Module, data: Tensor, config: SoFlowConfig, seed: int = 0):
    objective = SoFlowLoss(config)
    draw = objective.draw(data, step=0, generator=torch.Generator().manual_seed(seed))
    return objective(model, data, draw=draw, step=0)


@pytest.mark.parametrize(
    "config", [SoFlowConfig().with_total_steps(100), SoFlowConfig.cifar10(total_steps=100)]
)
def test_bf16_autocast_loss_is_finite_close_to_float32_and_quotient_is_float32(config, recorded_dtypes):
    torch.manual_seed(0)
    model = SolutionFlowWrapper(Net())
    data = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))

    reference = one_step(model, data, config)
    reference_metrics = reference.metrics()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = one_step(model, data, config)
    out.loss.backward()

    assert torch.isfinite(out.loss)
    assert out.loss.dtype == torch.float32
    got, expected = float(out.loss.detach()), float(reference.loss.detach())
    assert abs(got - expected) <= 1e-2 * abs(expected)
    for key in ("fm_mse", "sc_mse"):
        if key in reference_metrics:
            assert abs(out.metrics()[key] - reference_metrics[key]) <= 1e-2 * reference_metrics[key], key
    assert all(torch.isfinite(p.grad).all() and p.grad.dtype == torch.float32 for p in model.parameters())

    # The backbone ran in bf16 under autocast; everything after it is float32.
    assert recorded_dtypes.pop("sc_backbone_output") == torch.bfloat16
    if config.fm_fraction > 0:
        assert recorded_dtypes["fm_v_pred"] == torch.float32
    assert set(recorded_dtypes.values()) == {torch.float32}
    assert out.sc is not None
    assert out.sc.per_sample_mse.dtype == torch.float32


def test_bf16_weights_and_data_keep_times_and_quotient_in_float32(recorded_dtypes):
    torch.manual_seed(0)
    model = SolutionFlowWrapper(Net()).to(torch.bfloat16)
    data = torch.randn(32, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    out = one_step(model, data, SoFlowConfig().with_total_steps(100))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert recorded_dtypes["sc_backbone_output"] == torch.bfloat16
    for key in ("sc_f_online", "sc_f_target", "sc_times", "sc_per_sample_mse", "sc_per_sample_weight"):
        assert recorded_dtypes[key] == torch.float32, key
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_loss_is_finite_and_close_to_float32(dtype):
    torch.manual_seed(0)
    model = SolutionFlowWrapper(Net()).cuda()
    data = torch.randn(64, 8, generator=torch.Generator().manual_seed(1)).cuda()
    config = SoFlowConfig().with_total_steps(100)
    reference = one_step(model, data, config)
    with torch.autocast("cuda", dtype=dtype):
        out = one_step(model, data, config)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    got, expected = float(out.loss.detach()), float(reference.loss.detach())
    assert abs(got - expected) <= 1e-2 * abs(expected)
