"""ImageNet data for the latent DiT example: the ADM centre crop, the image folder, the latent files.

Latents are written by `extract_latents.py` as parts, one per extraction rank:

    part-00000-of-00008.npy          float (n, 2, C, h, w): [:, 0] the VAE posterior mean, [:, 1] its std
    part-00000-of-00008.labels.npy   int64 (n,) class indices
    part-00000-of-00008.json         count, classes, VAE, image size, ... (written last: "part complete")

They are read through memory maps, so training streams them from disk (or the page cache) without
loading the dataset into memory. At training time a latent is drawn from the posterior, scaled as in
the official code: $z = 0.18215\\,(\\mu + \\sigma\\,\\epsilon)$, $\\epsilon \\sim N(0, I)$ (see
:func:`sample_latents`).
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common.sd_vae import SD_VAE_SCALE
from PIL import Image
from torch import Tensor

LATENT_SCALE = SD_VAE_SCALE
"""Scale of SD-VAE latents (Stable Diffusion's `scaling_factor`), as in the official code."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def center_crop_arr(image: Image.Image, size: int) -> np.ndarray:
    """The ADM centre crop: `size x size` uint8 RGB array `(size, size, 3)`.

    1. While the short side is at least twice `size`, halve the image with BOX filtering (cheap,
       alias-free downsampling by 2).
    2. Resize with BICUBIC so the short side is exactly `size` (sides rounded to the nearest pixel).
    3. Cut the central `size x size` square (offsets rounded down).
    """
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize((image.width // 2, image.height // 2), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize(
        (round(image.width * scale), round(image.height * scale)), resample=Image.Resampling.BICUBIC
    )
    array = np.asarray(image)
    top = (array.shape[0] - size) // 2
    left = (array.shape[1] - size) // 2
    return array[top : top + size, left : left + size]


def scan_image_folder(root: Path | str) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes (sorted sub-folder names, as torchvision's ImageFolder) and `(path, label)` per image.

    Raises:
        ValueError: if `root` has no class folders or no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (expected <root>/<class>/<image>)")
    items = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    ]
    if not items:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root}")
    return classes, items


class CroppedImages(torch.utils.data.Dataset[tuple[Tensor, int]]):
    """Images read with Pillow, ADM-centre-cropped, as `(3, size, size)` floats in [-1, 1], with labels."""

    def __init__(self, items: list[tuple[Path, int]], size: int) -> None:
        self.items = items
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.items[index]
        with Image.open(path) as image:
            array = center_crop_arr(image, self.size)
        pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        return pixels, label


def part_name(part: int, num_parts: int) -> str:
    return f"part-{part:05d}-of-{num_parts:05d}"


class LatentDataset(torch.utils.data.Dataset[tuple[Tensor, int]]):
    """The latents written by `extract_latents.py`: items `(moments (2, C, h, w) float32, label)`.

    Args:
        root: the folder holding the `part-*` files.

    Raises:
        ValueError: if the folder has no complete set of parts.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        metas = sorted(self.root.glob("part-*-of-*.json"))
        if not metas:
            raise ValueError(f"no latent parts (part-*.json) in {self.root}; run extract_latents.py first")
        self.parts: list[dict[str, Any]] = [json.loads(p.read_text()) for p in metas]
        num_parts = {p["num_parts"] for p in self.parts}
        if len(num_parts) != 1 or len(self.parts) != num_parts.pop():
            raise ValueError(
                f"{self.root} holds an incomplete or mixed set of latent parts ({len(self.parts)} files): "
                "was the extraction interrupted?"
            )
        self.info = self.parts[0]
        self.offsets = np.cumsum([0] + [p["count"] for p in self.parts]).tolist()
        self._arrays: list[tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.info["classes"])

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c, h, w = self.info["latent_shape"]
        return (c, h, w)

    def _open(self) -> list[tuple[np.ndarray, np.ndarray]]:
        # Opened lazily, so each DataLoader worker maps the files itself.
        if self._arrays is None:
            self._arrays = []
            for meta in self.parts:
                stem = self.root / part_name(meta["part"], meta["num_parts"])
                moments = np.load(f"{stem}.npy", mmap_mode="r")
                labels = np.load(f"{stem}.labels.npy", mmap_mode="r")
                self._arrays.append((moments, labels))
        return self._arrays

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} latents")
        part = bisect.bisect_right(self.offsets, index) - 1
        moments, labels = self._open()[part]
        row = index - self.offsets[part]
        return torch.from_numpy(np.array(moments[row], dtype=np.float32)), int(labels[row])


def sample_latents(
    moments: Tensor, *, generator: torch.Generator, hflip: bool = False, scale: float = LATENT_SCALE
) -> Tensor:
    r"""Draw $z = \text{scale}\,(\mu + \sigma\,\epsilon)$ from stored moments `(B, 2, C, h, w)`.

    With `hflip`, each latent is mirrored left-right with probability 1/2 (an approximation of flipping
    the image before encoding; off by default, see the README). All randomness comes from `generator`,
    which lives on the moments' device.
    """
    mean, std = moments[:, 0], moments[:, 1]
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    latents = (mean + std * eps) * scale
    if hflip:
        flip = torch.rand(latents.shape[0], generator=generator, device=latents.device) < 0.5
        latents = torch.where(flip[:, None, None, None], latents.flip(-1), latents)
    return latents
