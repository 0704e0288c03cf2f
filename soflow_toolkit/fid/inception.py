"""The Inception-v3 of the TensorFlow FID evaluators, in PyTorch, through torch-fidelity.

The ADM evaluator (and TTUR's original FID code) runs the TensorFlow graph
`classify_image_graph_def.pb` of the 2015-12-05 Inception release: images of any size go in, the
graph resizes them bilinearly to 299 x 299 (TensorFlow 1's resize, which differs from
`torch.nn.functional.interpolate`), maps [0, 255] to [-1, 1] and returns the 2048 `pool_3`
features. torch-fidelity (Obukhov et al.) ports that graph with its weights
(`FeatureExtractorInceptionV3`) and the TensorFlow-compatible resize; its documentation reports the
agreement with the TensorFlow reference (see the evaluation guide). torch-fidelity is an optional
dependency (the `fid` extra; it needs torchvision) and is imported only when
[`InceptionFeatures`][soflow_toolkit.fid.InceptionFeatures] is built.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

__all__ = ["INCEPTION_WEIGHTS_URL", "InceptionFeatures"]

INCEPTION_WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
"""Where torch-fidelity downloads the converted Inception weights from."""

_MISSING = (
    "the PyTorch Inception-v3 of the FID evaluators comes from torch-fidelity, which is not installed "
    "(it needs torchvision): pip install 'soflow-toolkit[fid]'. Without it, compute FID from stored "
    "statistics only, pass your own feature extractor, or use the TensorFlow ADM evaluator "
    "(github.com/openai/guided-diffusion, evaluations/) on the .npz files"
)


@contextlib.contextmanager
def _full_precision_float32() -> Iterator[None]:
    """Turn TF32 off for convolutions and matmuls inside the block: TF32 rounds their inputs to 10-bit
    mantissas on recent GPUs, and the reference features are computed in full float32."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


class InceptionFeatures(nn.Module):
    r"""The 2048 `pool_3` features of the TensorFlow FID Inception-v3, from torch-fidelity's port.

    Input: uint8 images `(B, 3, H, W)` in [0, 255] of any size; they are resized to 299 x 299 with
    TensorFlow 1's bilinear resize inside the network, as in the TensorFlow graph. Output: float32
    features `(B, 2048)`. TF32 is switched off during the forward pass (and restored after).

    Weights: `weights=None` lets torch-fidelity download them from [`INCEPTION_WEIGHTS_URL`][soflow_toolkit.fid.INCEPTION_WEIGHTS_URL]
    into the torch hub cache (`torch.hub.get_dir()/checkpoints`) the first time. Offline, download
    that file on another machine and pass its path (the command line's `--inception-weights`). The
    file is first read with `torch.load(weights_only=True)`, so a file that is not a plain state
    dict is refused before torch-fidelity loads it.

    Args:
        weights: path of the weights file, or None for torch-fidelity's cached download.
        device: where the network runs (default: CPU).

    Raises:
        ImportError: if torch-fidelity (or torchvision) is not installed; the message says how to
            install it and what works without it.
        FileNotFoundError: if `weights` does not exist.
        RuntimeError: if the weights cannot be downloaded (no network) or loaded.

    Examples:
        ```python
        extractor = InceptionFeatures("weights-inception-2015-12-05-6726825d.pth", device="cuda")
        features = extractor(images_uint8)  # (B, 3, H, W) uint8 -> (B, 2048)
        ```
    """

    def __init__(
        self, weights: Path | str | None = None, *, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        if weights is not None:
            weights = Path(weights)
            if not weights.is_file():
                raise FileNotFoundError(
                    f"Inception weights not found at {weights}; download {INCEPTION_WEIGHTS_URL} and pass its path"
                )
            try:
                torch.load(weights, map_location="cpu", weights_only=True)
            except Exception as error:
                raise RuntimeError(f"{weights} is not a readable PyTorch state dict: {error}") from error
        try:
            module = importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
        except ImportError as error:
            raise ImportError(f"{_MISSING} ({error})") from error
        try:
            self.network: Any = module.FeatureExtractorInceptionV3(
                "inception-v3-compat",
                ["2048"],
                feature_extractor_weights_path=None if weights is None else str(weights),
            )
        except OSError as error:  # urllib's errors are OSErrors
            raise RuntimeError(
                f"could not download the Inception weights ({error}). On a machine with network access, "
                f"download {INCEPTION_WEIGHTS_URL} and pass its path as weights= (--inception-weights), "
                f"or place it in {Path(torch.hub.get_dir()) / 'checkpoints'}"
            ) from error
        self.network.eval().requires_grad_(False)
        self.to(torch.device("cpu") if device is None else torch.device(device))

    def forward(self, images: Tensor) -> Tensor:
        """Features `(B, 2048)` of uint8 images `(B, 3, H, W)`."""
        if not isinstance(images, Tensor) or images.dtype != torch.uint8:
            kind = f"dtype {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
            raise TypeError(f"InceptionFeatures takes uint8 images (B, 3, H, W) in [0, 255]; got {kind}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"InceptionFeatures takes images of shape (B, 3, H, W); got {tuple(images.shape)}"
            )
        with _full_precision_float32(), torch.no_grad():
            (features,) = self.network(images)
        return cast(Tensor, features).reshape(images.shape[0], -1).float()
