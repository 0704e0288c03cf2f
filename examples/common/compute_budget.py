"""Compute budget of the paper's runs: FLOPs counted on the meta device, times at an assumed throughput.

    python compute_budget.py --out compute_budget.json

For each published configuration (ImageNet 256 DiT B/4, B/2, M/2, L/2, XL/2 and the CIFAR-10 UNet)
`torch.utils.flop_counter.FlopCounterMode` counts, on the meta device (shapes only: nothing is
computed, no weights are needed), the FLOPs of

- one network evaluation per image;
- one training step of the official recipe per image: `SoFlowLoss` with `SoFlowConfig.imagenet()`
  (flow matching on 75 % of the batch, training-time guidance with mix 0.25: at most three network
  passes) or `SoFlowConfig.cifar10()` (consistency loss only, dropout: the target pass covers the
  batch), forward and backward, at the per-GPU batch of an 8-GPU run;
- the SD-VAE decoder per 256 x 256 image (sampling) and its encoder (latent extraction), built from
  the `stabilityai/sd-vae-ft-mse` architecture with diffusers (random weights on the meta device).

The counter counts matrix products, convolutions and attention (2 FLOPs per multiply-add); it leaves
out element-wise work (normalisation, activations, the optimizer), so real runs take longer than
FLOPs / throughput. Times are FLOPs divided by `--tflops` (default 100 TFLOP/s sustained per GPU, an
assumption stated in the output, not a measurement). The whole script runs on a CPU in about a minute.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.sd_vae import SD_VAE_CONFIG
from soflow_toolkit import SoFlowConfig, SoFlowLoss, SolutionFlowWrapper
from soflow_toolkit.models import DiT, UNet

IMAGENET_TRAIN = 1_281_167  # images in the ImageNet-1k training set
CIFAR_TRAIN = 50_000
GPUS = 8
FID_SAMPLES = 50_000
# (model, steps) of the published rows: B/4 as in the official imagenet.yaml (80 epochs), the other
# sizes 240 epochs (1.2M steps at batch 256), as the official readme states.
DIT_RUNS = {"B/4": 400_000, "B/2": 1_200_000, "M/2": 1_200_000, "L/2": 1_200_000, "XL/2": 1_200_000}
CIFAR_STEPS = 800_000


def count(fn: Callable[[], Any]) -> int:
    """FLOPs of the torch operations `fn` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def network_flops(model: SolutionFlowWrapper, x: torch.Tensor, cond: Any) -> float:
    """FLOPs of one network evaluation, per image."""
    t = torch.full((x.shape[0],), 0.7)
    with torch.no_grad():
        return count(lambda: model(x, t, 0.5 * t, cond)) / x.shape[0]


def step_flops(
    model: SolutionFlowWrapper, config: SoFlowConfig, x: torch.Tensor, cond: Any, null: Any
) -> float:
    """FLOPs of one training step (objective forward passes and backward), per image."""
    objective = SoFlowLoss(config)

    def step() -> None:
        objective(model, x, cond, null).loss.backward()

    return count(step) / x.shape[0]


def vae_flops() -> dict[str, float]:
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        vae = AutoencoderKL(**SD_VAE_CONFIG).eval()
        images, latents = torch.randn(2, 3, 256, 256), torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        encode = count(lambda: vae.encode(images)) / 2
        decode = count(lambda: vae.decode(latents)) / 2
    return {"encode_per_image": encode, "decode_per_image": decode}


def budget(tflops: float) -> dict[str, Any]:
    throughput = tflops * 1e12
    vae = vae_flops()
    rows: dict[str, Any] = {}
    per_gpu = 256 // GPUS
    for size, steps in DIT_RUNS.items():
        with torch.device("meta"):
            model = SolutionFlowWrapper(DiT.from_size(size))
            x, labels = torch.randn(per_gpu, 4, 32, 32), torch.randint(0, 1000, (per_gpu,))
        model.check_inputs = False  # the range checks read values, which meta tensors do not have
        forward = network_flops(model, x[:2], labels[:2])
        train = step_flops(model, SoFlowConfig.imagenet(total_steps=steps), x, labels, 1000)
        rows[f"DiT-{size}"] = _row(
            params=sum(p.numel() for p in model.parameters()),
            forward=forward,
            train=train,
            batch=256,
            steps=steps,
            dataset=IMAGENET_TRAIN,
            decode=vae["decode_per_image"],
            throughput=throughput,
        )
    per_gpu = 1024 // GPUS
    with torch.device("meta"):
        model = SolutionFlowWrapper(UNet())
        x, aug = torch.randn(per_gpu, 3, 32, 32), torch.randn(per_gpu, 6)
    model.check_inputs = False
    forward = network_flops(model, x[:2], {"augment_labels": aug[:2]})
    model.train()
    config = SoFlowConfig.cifar10(total_steps=CIFAR_STEPS)
    objective_cond = {"augment_labels": aug}
    train = _cifar_step(model, config, x, objective_cond)
    rows["UNet"] = _row(
        params=sum(p.numel() for p in model.parameters()),
        forward=forward,
        train=train,
        batch=1024,
        steps=CIFAR_STEPS,
        dataset=CIFAR_TRAIN,
        decode=0.0,
        throughput=throughput,
    )
    return {
        "assumed_tflops_per_gpu": tflops,
        "gpus": GPUS,
        "fid_samples": FID_SAMPLES,
        "vae_flops": vae,
        "latent_extraction_gpu_hours": IMAGENET_TRAIN * vae["encode_per_image"] / throughput / 3600,
        "runs": rows,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _cifar_step(model: SolutionFlowWrapper, config: SoFlowConfig, x: torch.Tensor, cond: Any) -> float:
    # The objective matches dropout masks between its passes by saving and restoring the random state,
    # which the meta device has not; the pass structure (one forward and backward, one no-grad forward
    # over the whole batch) does not depend on it.
    objective = SoFlowLoss(config, match_random_state=False)

    def step() -> None:
        objective(model, x, cond).loss.backward()

    return count(step) / x.shape[0]


def _row(
    *,
    params: int,
    forward: float,
    train: float,
    batch: int,
    steps: int,
    dataset: int,
    decode: float,
    throughput: float,
) -> dict[str, Any]:
    train_total = train * batch * steps
    sample = {nfe: FID_SAMPLES * (nfe * forward + decode) for nfe in (1, 2)}
    return {
        "params": params,
        "forward_gflops_per_image": forward / 1e9,
        "train_step_gflops_per_image": train / 1e9,
        "train_step_over_forward": train / forward,
        "batch": batch,
        "steps": steps,
        "epochs": steps * batch / dataset,
        "train_exaflops": train_total / 1e18,
        "train_gpu_hours": train_total / throughput / 3600,
        "train_hours_on_8_gpus": train_total / throughput / 3600 / GPUS,
        "fid50k_sampling_gpu_minutes": {str(n): flops / throughput / 60 for n, flops in sample.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tflops", type=float, default=100.0, help="assumed sustained TFLOP/s per GPU")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.tflops <= 0:
        raise ValueError(f"--tflops must be > 0; got {args.tflops}")
    result = budget(args.tflops)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(
        f"{'run':8} {'params':>8} {'fwd GF':>8} {'step/fwd':>8} {'train EF':>9} {'GPU-h':>8} {'8-GPU h':>8}"
    )
    for name, row in result["runs"].items():
        print(
            f"{name:8} {row['params'] / 1e6:7.1f}M {row['forward_gflops_per_image']:8.2f} "
            f"{row['train_step_over_forward']:8.2f} {row['train_exaflops']:9.1f} "
            f"{row['train_gpu_hours']:8.0f} {row['train_hours_on_8_gpus']:8.1f}"
        )


if __name__ == "__main__":
    main()
