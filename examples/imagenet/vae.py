"""The SD-VAE through diffusers' `AutoencoderKL` (an optional dependency of the examples).

`load_vae("stabilityai/sd-vae-ft-mse")` (the default, from the Hugging Face Hub), a local folder
saved with `save_pretrained`, or `"tiny-random"`: a tiny randomly initialised `AutoencoderKL` with the
SD-VAE's interface (4 latent channels, 8x downsampling) built from a config with a fixed seed, so
smoke runs need no download and every script builds the same weights. Like the SD-VAE's, its
posterior std is small next to the spread of its means (log-variance output fixed at -8).
"""

from __future__ import annotations

from typing import Any

import torch
from common.sd_vae import SD_VAE_CONFIG
from torch import Tensor

TINY_VAE = "tiny-random"
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"


def tiny_vae_config() -> dict[str, Any]:
    """An `AutoencoderKL` config with SD-VAE's shapes (4 channels, 8x downsampling) and ~60k weights."""
    return {
        **SD_VAE_CONFIG,
        "block_out_channels": [8, 8, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
    }


def load_vae(spec: str, device: torch.device) -> Any:
    """An `AutoencoderKL` in eval mode without gradients: a Hub name, a local folder or `"tiny-random"`."""
    try:
        from diffusers import AutoencoderKL
    except ImportError as error:
        raise RuntimeError(
            "the ImageNet example needs diffusers for the SD-VAE: pip install 'soflow-toolkit[examples]'"
        ) from error
    if spec == TINY_VAE:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            vae = AutoencoderKL(**tiny_vae_config())
            with torch.no_grad():  # posterior log-variance -8 (std 0.018), as a trained VAE's is small
                channels = vae.config.latent_channels
                vae.quant_conv.weight[channels:] = 0.0
                vae.quant_conv.bias[channels:] = -8.0
    else:
        vae = AutoencoderKL.from_pretrained(spec)
    return vae.to(device).eval().requires_grad_(False)


def latent_shape(vae: Any, image_size: int) -> tuple[int, int, int]:
    """`(C, h, w)` of the latents of `image_size`-px images."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if image_size % factor:
        raise ValueError(
            f"image size {image_size} is not divisible by the VAE's downsampling factor {factor}"
        )
    return (vae.config.latent_channels, image_size // factor, image_size // factor)


@torch.no_grad()
def encode_moments(vae: Any, pixels: Tensor) -> Tensor:
    """Images `(B, 3, H, W)` in [-1, 1] -> posterior moments `(B, 2, C, h, w)`: mean and std."""
    posterior = vae.encode(pixels).latent_dist
    return torch.stack([posterior.mean, posterior.std], dim=1)


@torch.no_grad()
def decode_latents(vae: Any, latents: Tensor, scale: float) -> Tensor:
    """Scaled latents `(B, C, h, w)` -> images `(B, 3, H, W)`, nominally in [-1, 1] (not clamped)."""
    images: Tensor = vae.decode(latents / scale).sample
    return images
