r"""CUDA-only checks at the paper's scale (every test skips without a CUDA device).

- bf16 autocast of a DiT-B/4 training step on 32×32×4 latents (`SoFlowConfig.imagenet()` with its
  guidance, fused attention kernels only): the loss is float32 and finite, the flow matching and
  consistency metrics agree with float32 (TF32 off) on the same draw, and the gradient points the same
  way ($\cos \ge 0.99$, norms within 10 %).
- `torch.compile` with the inductor backend (Triton kernels): a compiled DiT, whole or block by block
  (regional compilation, as `benchmarks/gpu_check.py` times it), trains like the eager one on the same
  draws, and nothing is compiled again after the first step (`fail_on_recompile`, dynamo's graph count).
- Sampling with bf16 weights at 1 and 2 evaluations: finite bf16 samples close to float32 ones.

The other CUDA tests live next to what they test (`-k cuda` collects them all: the dropout masks of
the online and target passes in `test_objective.py`, CUDA autocast in `test_mixed_precision.py`, the
fused CUDA kernels in `test_fused_attention.py`, DDP and FSDP on NCCL in `test_distributed.py` and
`test_fsdp.py`, which run on one device when only one is there). `benchmarks/gpu_check.py` runs them.
Without a GPU, `SOFLOW_TEST_CUDA_DEVICE=cpu` runs these tests on CPU (slowly) to rehearse them.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn
from torch._dynamo.utils import counters
from torch.nn.attention import SDPBackend, sdpa_kernel

from soflow_toolkit import SoFlowConfig, SoFlowLoss, SolutionFlowWrapper, sample
from soflow_toolkit.models import DiT, DiTConfig

DEVICE = os.environ.get("SOFLOW_TEST_CUDA_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(),
    reason="needs CUDA (SOFLOW_TEST_CUDA_DEVICE=cpu rehearses)",
)
NUM_CLASSES = 10


@pytest.fixture
def device() -> Iterator[torch.device]:
    """The device, with TF32 off so that float32 is the reference it should be (restored after)."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield torch.device(DEVICE)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def fused_attention(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """The fused SDPA kernels only (the math kernel refused): flash or memory-efficient."""
    if device.type == "cuda":
        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


def random_dit(config: DiTConfig, device: torch.device, seed: int = 0) -> DiT:
    """A DiT whose zero-initialised layers (adaLN-Zero, output) get small random weights.

    At initialisation a DiT outputs exactly 0, which every precision computes exactly: the checks
    below would pass for any dtype.
    """
    torch.manual_seed(seed)
    net = DiT(config).to(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            if not param.any():
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    return net


def flat_grad(model: nn.Module) -> Tensor:
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    return torch.cat(grads).float()


def test_dit_b4_bf16_autocast_step_is_finite_and_close_to_float32(device: torch.device) -> None:
    net = random_dit(DiTConfig.from_size("B/4"), device)  # 32x32x4 latents, 1000 classes + null
    model = SolutionFlowWrapper(net)
    objective = SoFlowLoss(SoFlowConfig.imagenet())
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(16, 4, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 1000, (16,), generator=generator).to(device)
    draw = objective.draw(data, step=0, conditional=True, generator=generator)

    reference = objective(model, data, labels, 1000, draw=draw, step=0)
    reference.loss.backward()
    reference_grad = flat_grad(model)
    model.zero_grad(set_to_none=True)

    block_dtypes: list[torch.dtype] = []
    hook = net.blocks[0].mlp.fc1.register_forward_hook(
        lambda module, args, out: block_dtypes.append(out.dtype)
    )
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16), fused_attention(device):
            out = objective(model, data, labels, 1000, draw=draw, step=0)
        out.loss.backward()
    finally:
        hook.remove()
    grad = flat_grad(model)

    assert set(block_dtypes) == {torch.bfloat16}  # the transformer's matmuls ran in bf16
    assert out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss)
    assert torch.isfinite(grad).all()
    got, expected = out.metrics(), reference.metrics()
    for key in ("fm_mse", "sc_mse"):
        assert abs(got[key] - expected[key]) <= 3e-2 * expected[key], (key, got[key], expected[key])
    cosine = float(torch.nn.functional.cosine_similarity(grad, reference_grad, dim=0))
    assert cosine >= 0.99
    assert 0.9 <= float(grad.norm() / reference_grad.norm()) <= 1.1


@pytest.mark.parametrize("scope", ["model", "blocks"])
def test_compiled_dit_trains_like_eager_without_recompiling(device: torch.device, scope: str) -> None:
    torch._dynamo.reset()
    counters.clear()
    config = DiTConfig.from_size("T/4", input_size=8, num_classes=NUM_CLASSES)
    eager_net = random_dit(config, device)
    compiled_net = copy.deepcopy(eager_net)
    backend = "inductor"
    if scope == "model":
        backbone: nn.Module = torch.compile(compiled_net, backend=backend)
    else:  # regional compilation: every block through one compiled graph
        for block in compiled_net.blocks:
            block.compile(backend=backend)
        backbone = compiled_net
    eager, compiled = SolutionFlowWrapper(eager_net), SolutionFlowWrapper(backbone)
    # with guidance: gradient pass, no-grad targets and unconditional passes, three batch shapes
    objective = SoFlowLoss(SoFlowConfig.imagenet(total_steps=100))
    optimizers = {id(m): torch.optim.SGD(m.parameters(), lr=0.05) for m in (eager, compiled)}
    generator = torch.Generator().manual_seed(0)
    graphs = None
    try:
        for step in range(4):
            data = torch.randn(16, 4, 8, 8, generator=generator).to(device)
            labels = torch.randint(0, NUM_CLASSES, (16,), generator=generator).to(device)
            draw = objective.draw(data, step=step, conditional=True, generator=generator)
            losses = []
            for model in (eager, compiled):
                stance = (
                    torch.compiler.set_stance("fail_on_recompile")
                    if step > 0 and model is compiled
                    else contextlib.nullcontext()
                )
                with stance, fused_attention(device):
                    out = objective(model, data, labels, NUM_CLASSES, draw=draw, step=step)
                optimizers[id(model)].zero_grad()
                out.loss.backward()
                optimizers[id(model)].step()
                losses.append(float(out.loss.detach()))
            assert abs(losses[0] - losses[1]) <= 1e-4 * max(1.0, abs(losses[0])), (step, losses)
            if step == 0:
                graphs = counters["stats"]["unique_graphs"]
                assert graphs >= 1
        assert counters["stats"]["unique_graphs"] == graphs
        for (name, p_eager), (_, p_compiled) in zip(
            eager_net.named_parameters(), compiled_net.named_parameters(), strict=True
        ):
            torch.testing.assert_close(p_compiled, p_eager, rtol=1e-4, atol=1e-5, msg=name)
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("steps", [1, 2])
def test_bf16_weight_sampling_is_finite_and_close_to_float32(device: torch.device, steps: int) -> None:
    config = DiTConfig.from_size("T/4", input_size=8, num_classes=NUM_CLASSES)
    net = random_dit(config, device).eval()
    model = SolutionFlowWrapper(net)
    model_bf16 = SolutionFlowWrapper(copy.deepcopy(net).to(torch.bfloat16))
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(64, 4, 8, 8, generator=generator).to(device)
    labels = torch.randint(0, NUM_CLASSES, (64,), generator=generator).to(device)
    fresh = [torch.randn(noise.shape, generator=generator).to(device) for _ in range(steps - 1)]

    expected = sample(model, noise, steps=steps, cond=labels, fresh_noise=fresh)
    with fused_attention(device):
        got = sample(model_bf16, noise.bfloat16(), steps=steps, cond=labels, fresh_noise=fresh)

    assert got.dtype == torch.bfloat16
    assert torch.isfinite(got).all()
    error = float((got.float() - expected).norm() / expected.norm())
    assert error <= 2e-2
