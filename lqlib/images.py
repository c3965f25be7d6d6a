"""Image tensor conventions: uint8 RGB NCHW until the model boundary.

The model boundary is :func:`normalize` (``(x/255 - 0.5)/0.5``, the ArcFace convention), the one
place where pixel values become network inputs.
"""
from __future__ import annotations

import torch

MEAN = 0.5
STD = 0.5


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 255]) RGB NCHW → float in [-1, 1]."""
    x = images.float() if images.dtype == torch.uint8 else images.to(torch.float32)
    return (x / 255.0 - MEAN) / STD


def as_batch(images) -> torch.Tensor:
    """uint8 NCHW tensor from a tensor / array, CHW or NCHW (a single face becomes a batch of 1)."""
    x = torch.as_tensor(images)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB images as (3,H,W) or (N,3,H,W), got shape {tuple(x.shape)}")
    return x


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, returning uint8."""
    return ((x * STD + MEAN) * 255.0).round().clamp(0, 255).to(torch.uint8)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Round and clamp a float image in [0, 255] to uint8."""
    return x.round().clamp(0, 255).to(torch.uint8)


def hflip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-1)
