r"""How the official SoFlow inference turns samples into an FID sample batch.

The official `inference.py` (zlab-princeton/SoFlow) draws the class labels of the 50,000 samples
uniformly at random, one `torch.randint` per batch, and converts the decoded images $x \in [-1, 1]$
to pixels as `(x * 127.5 + 128).clamp(0, 255).to(torch.uint8)` (a float-to-uint8 cast truncates),
channels last. [`to_uint8`][soflow_toolkit.fid.to_uint8] and [`class_labels`][soflow_toolkit.fid.class_labels] reproduce both; `balanced=True` gives each
class the same number of samples instead, a common alternative that lowers the variance of FID.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["class_labels", "to_uint8"]


def to_uint8(images: Tensor) -> Tensor:
    r"""Images in $[-1, 1]$ to uint8 pixels, channels last, as the official FID sampling does.

    $\text{pixel} = \lfloor \operatorname{clamp}(127.5\,x + 128,\ 0,\ 255) \rfloor$, computed in
    float32. For $x$ in $[-1, 1]$ this rounds $127.5\,(x + 1)$ to the nearest integer, halves
    upwards.

    Args:
        images: floating tensor `(B, C, H, W)`, nominally in $[-1, 1]$ (values outside are clamped).

    Returns:
        uint8 tensor `(B, H, W, C)` on the same device, the layout of `arr_0` in ADM `.npz` files.

    Raises:
        TypeError: if `images` is not a floating tensor.
        ValueError: if it is not 4-D or contains NaN or infinite values.

    Examples:
        >>> import torch
        >>> to_uint8(torch.tensor([-1.0, -0.5, 0.0, 1.0]).reshape(1, 1, 1, 4)).flatten().tolist()
        [0, 64, 128, 255]
    """
    if not isinstance(images, Tensor) or not images.is_floating_point():
        kind = f"dtype {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"images must be a floating-point tensor (B, C, H, W) in [-1, 1]; got {kind}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W); got {tuple(images.shape)}")
    pixels = images.detach().to(torch.float32)
    if not bool(torch.isfinite(pixels).all()):
        raise ValueError("images contain NaN or infinite values; they cannot be converted to pixels")
    return (pixels * 127.5 + 128.0).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def class_labels(
    num: int,
    num_classes: int,
    *,
    generator: torch.Generator | None = None,
    balanced: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Class labels for FID sampling: uniform at random (official), or balanced per class.

    - `balanced=False`: $y_i \sim \mathcal U\{0, \dots, K - 1\}$ independently, as the official
      inference draws them (`torch.randint`).
    - `balanced=True`: each class appears $\lfloor N / K \rfloor$ or $\lceil N / K \rceil$ times
      (label $i \bmod K$ for $i < N$), in a random order.

    Args:
        num: the number of labels $N$ (e.g. 50,000).
        num_classes: the number of classes $K$ (1,000 for ImageNet).
        generator: random generator (default: torch's global one); on `device`.
        balanced: balanced per class instead of independent uniform draws.
        device: where the labels are made (default: the generator's device, else CPU).

    Returns:
        int64 tensor `(N,)` with values in $\{0, \dots, K - 1\}$.

    Raises:
        ValueError: if `num` < 0 or `num_classes` < 1.

    Examples:
        >>> import torch
        >>> labels = class_labels(10, 5, balanced=True, generator=torch.Generator().manual_seed(0))
        >>> torch.bincount(labels).tolist()
        [2, 2, 2, 2, 2]
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise ValueError(f"num must be an int >= 0; got {num!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1; got {num_classes!r}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    if not balanced:
        return torch.randint(0, num_classes, (num,), generator=generator, device=device)
    labels = torch.arange(num, device=device) % num_classes
    return labels[torch.randperm(num, generator=generator, device=device)]
