"""The fine-tuning and guidance-range benchmarks' model surgery, checked against its defining identities.

- `fold_gap_input` turns a flow-matching `MLPBackbone` (which only ever saw the gap t - s = 0) into one
  whose output does not depend on s and equals the original at s = t, so the SoFlow model starts as one
  Euler step of the pretrained flow and f(x, t, t) = x;
- `ScaleMLP` starts as the `MLPBackbone` for every guidance scale (zero-initialised scale embedder),
  depends on the scale once trained, and refuses a call without the scale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import finetune, guidance_range  # noqa: E402  (the root is no package path)
from soflow_toolkit import SolutionFlowWrapper  # noqa: E402
from soflow_toolkit.toy import MLPBackbone  # noqa: E402


def inputs(batch: int = 9, dim: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    t = torch.rand(batch, generator=g, dtype=torch.float64)
    s = t * torch.rand(batch, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (batch,), generator=g)
    return x, t, s, labels


@pytest.mark.parametrize("time_scale", [1.0, 1000.0])
def test_folding_the_gap_input_keeps_the_velocity_and_removes_s(time_scale: float) -> None:
    torch.manual_seed(0)
    backbone = MLPBackbone(3, hidden=16, depth=2, num_classes=4, time_scale=time_scale).double()
    x, t, s, labels = inputs()
    before = backbone(x, t, t, labels)
    assert float((backbone(x, t, s, labels) - before).detach().abs().max()) > 1e-3  # s matters before folding
    finetune.fold_gap_input(backbone)
    torch.testing.assert_close(backbone(x, t, t, labels), before, rtol=0, atol=1e-12)
    torch.testing.assert_close(backbone(x, t, s, labels), before, rtol=0, atol=1e-12)
    model = SolutionFlowWrapper(backbone)
    torch.testing.assert_close(model(x, t, t, labels), x, rtol=0, atol=0)
    euler = x + (s - t)[:, None] * model.velocity(x, t, labels)
    torch.testing.assert_close(model(x, t, s, labels), euler, rtol=0, atol=1e-12)


def test_the_scale_mlp_starts_as_the_mlp_for_every_scale() -> None:
    torch.manual_seed(0)
    plain = MLPBackbone(3, hidden=16, depth=2, num_classes=4).double()
    torch.manual_seed(0)
    scaled = guidance_range.ScaleMLP(3, hidden=16, depth=2, num_classes=4).double()
    x, t, s, labels = inputs()
    for omega in (1.0, 2.5, 4.0):
        w = torch.full((x.shape[0],), omega, dtype=torch.float64)
        torch.testing.assert_close(scaled(x, t, s, labels, guidance_scale=w), plain(x, t, s, labels))
    with torch.no_grad():
        scaled.scale_embed[2].weight.normal_()
    one, four = (torch.full((x.shape[0],), w, dtype=torch.float64) for w in (1.0, 4.0))
    difference = scaled(x, t, s, labels, guidance_scale=one) - scaled(x, t, s, labels, guidance_scale=four)
    assert float(difference.detach().abs().max()) > 1e-3
    with pytest.raises(TypeError, match="guidance_scale"):
        scaled(x, t, s, labels)  # type: ignore[call-arg]
