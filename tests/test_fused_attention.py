"""SoFlow trains a backbone that uses fused `scaled_dot_product_attention` kernels.

Nothing in the toolkit uses forward-mode autodiff: a training step is ordinary forwards and one
backward. The tests force the fused CPU flash-attention kernel (`sdpa_kernel([FLASH_ATTENTION])` raises
instead of falling back to the math kernel) and run guided training steps. For contrast, they check the
reason JVP-based objectives (MeanFlow, sCM) need the math kernel: PyTorch has no forward-mode rule for
the fused kernel.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from soflow_toolkit import GuidanceConfig, SoFlowConfig, SoFlowLoss, SolutionFlowWrapper

NUM_CLASSES = 3


class TokenAttentionNet(nn.Module):
    """`F(x, t, s, labels)` on token data `(B, L, E)`: one attention block conditioned on t, s, labels."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.cond = nn.Linear(2, dim)
        self.label_embed = nn.Embedding(NUM_CLASSES + 1, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, labels: Tensor) -> Tensor:
        h = x + (self.cond(torch.stack([t, s], dim=1).to(x.dtype)) + self.label_embed(labels))[:, None]
        batch, length, dim = h.shape
        q, k, v = self.qkv(h).reshape(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, dim/heads)
        h = h + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return self.mlp(h)


def guided_steps(model: nn.Module, device: str = "cpu", steps: int = 2) -> list[float]:
    guidance = GuidanceConfig(scale=2.0, drop_rate=0.2, mix_ratio=0.5, decay_time=0.8)
    objective = SoFlowLoss(SoFlowConfig(guidance=guidance).with_total_steps(10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        data = torch.randn(8, 6, 16, generator=generator).to(device)
        labels = torch.randint(0, NUM_CLASSES, (8,), generator=generator).to(device)
        out = objective(model, data, labels, NUM_CLASSES, generator=generator)
        optimizer.zero_grad()
        out.loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        losses.append(float(out.loss.detach()))
    return losses


def test_soflow_trains_with_the_fused_cpu_flash_kernel():
    torch.manual_seed(0)
    model = SolutionFlowWrapper(TokenAttentionNet())
    before = [p.detach().clone() for p in model.parameters()]
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        losses = guided_steps(model)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_forward_mode_ad_has_no_rule_for_the_fused_kernel():
    """The contrast that motivates SoFlow: a JVP through the fused kernel fails, the math kernel works."""
    torch.manual_seed(0)
    net = TokenAttentionNet()
    x, t = torch.randn(2, 6, 16), torch.full((2,), 0.5)
    labels = torch.tensor([0, 1])

    def f(x_in: Tensor) -> Tensor:
        return net(x_in, t, t, labels)

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), pytest.raises(NotImplementedError, match="forward AD"):
        torch.func.jvp(f, (x,), (torch.ones_like(x),))
    with sdpa_kernel([SDPBackend.MATH]):
        _, tangent = torch.func.jvp(f, (x,), (torch.ones_like(x),))
    assert torch.isfinite(tangent).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
def test_soflow_trains_with_fused_cuda_kernels(backend):
    torch.manual_seed(0)
    model = SolutionFlowWrapper(TokenAttentionNet()).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel([backend]):
        losses = guided_steps(model, device="cuda")
    assert all(torch.isfinite(torch.tensor(losses)))
