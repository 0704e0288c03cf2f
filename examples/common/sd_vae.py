"""The SD-VAE's architecture (`stabilityai/sd-vae-ft-mse`) as a diffusers `AutoencoderKL` config.

Plain data with no imports, so that every script can read it: the ImageNet example's tiny VAE
(`examples/imagenet/vae.py`), the compute budget (`compute_budget.py`) and the GPU check
(`benchmarks/gpu_check.py`, which needs nothing but torch on the GPU machine).
"""

SD_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
}
"""diffusers' `AutoencoderKL` arguments of the SD-VAE: 4 latent channels, 8x downsampling."""

SD_VAE_SCALE = 0.18215
"""The SD-VAE's latent scaling factor: the models see `latents * SD_VAE_SCALE`."""
