"""The one degradation function: low-quality copies of aligned faces.

``degrade`` takes a batch (uint8 or float, CPU or GPU, NCHW RGB), downsamples it by ``scale``
with antialiasing, optionally blurs it with a Gaussian, and upsamples it back to the input size,
so a low-quality face can be fed to the same network as its high-resolution original.

Presets:

* ``paper`` — bicubic down, 5×5 Gaussian blur with σ=1, bicubic up (the KD-for-LQ-FR paper and
  the lfw-half calibration runs).
* ``askd`` — A-SKD ("Teaching where to look", Shin et al. 2022) compatibility: nearest-neighbour
  down and up, 5×5 Gaussian blur with σ drawn uniformly from [0.1, 2.0] per image (torchvision
  ``GaussianBlur(5, sigma=(0.1, 2.0))`` semantics, same σ on both axes).
* ``clean`` — bicubic down/up with no blur.

Scale 1 is the identity (no resampling and no blur), so ``×1`` rows of a table are the originals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

MODES = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class DegradeConfig:
    mode: str = "bicubic"
    blur_sigma: float | tuple[float, float] | None = 1.0
    blur_kernel: int = 5


PRESETS: dict[str, DegradeConfig] = {
    "paper": DegradeConfig("bicubic", 1.0, 5),
    "askd": DegradeConfig("nearest", (0.1, 2.0), 5),
    "clean": DegradeConfig("bicubic", None, 5),
}


def get_preset(name: str) -> DegradeConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown degradation preset {name!r}; choose from {sorted(PRESETS)}") from None


def _check_scale(s) -> float:
    try:
        f = float(s)
    except (TypeError, ValueError):
        raise ValueError(f"degradation scale must be a number >= 1, got {s!r}") from None
    if not math.isfinite(f) or f < 1.0:
        raise ValueError(f"degradation scale must be a finite number >= 1, got {s!r}")
    return f


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str, down: bool) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    # antialias only matters (and is only supported) when shrinking
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=down)


def _gaussian_kernels(sigmas: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) sigmas → (B, k, k) normalised Gaussian kernels (for per-image σ)."""
    half = (k - 1) / 2
    t = torch.linspace(-half, half, k, device=sigmas.device, dtype=torch.float32)
    g = torch.exp(-0.5 * (t[None, :] / sigmas[:, None]) ** 2)
    g = g / g.sum(1, keepdim=True)
    return g[:, :, None] * g[:, None, :]


def _blur(x: torch.Tensor, sigma, k: int, generator: torch.Generator | None) -> torch.Tensor:
    if sigma is None:
        return x
    if k < 1 or k % 2 == 0:
        raise ValueError(f"blur_kernel must be a positive odd integer, got {k}")
    if isinstance(sigma, (int, float)):
        if sigma <= 0:
            return x
        return TF.gaussian_blur(x, kernel_size=[k, k], sigma=[float(sigma), float(sigma)])
    lo, hi = (float(v) for v in sigma)
    if not (0 < lo <= hi):
        raise ValueError(f"blur_sigma range must satisfy 0 < low <= high, got {sigma}")
    # per-image σ: torchvision's gaussian_blur takes one σ per call, so build one kernel per
    # image and apply them as a grouped (depthwise) convolution
    b, c, h, w = x.shape
    u = torch.rand(b, generator=generator, device=generator.device if generator is not None else "cpu")
    sig = (lo + (hi - lo) * u).to(x.device)
    kern = _gaussian_kernels(sig, k).to(x.dtype)  # (B,k,k)
    weight = kern[:, None].repeat_interleave(c, 0)  # (B*C,1,k,k)
    pad = k // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(y, weight, groups=b * c).reshape(b, c, h, w)


def degrade(
    images: torch.Tensor,
    scale: float | Sequence[float],
    *,
    mode: str | None = None,
    blur_sigma: float | tuple[float, float] | None | str = "preset",
    blur_kernel: int | None = None,
    preset: str = "paper",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return low-quality copies of ``images`` at the input size.

    Args:
        images: NCHW (or CHW) RGB batch, uint8 or float; returned with the same shape, dtype and
            device (float outputs are clamped to the input's value range).
        scale: a float ≥ 1 (1 = identity) applied to every image, or a sequence of floats from
            which each image draws its own scale (mixed-resolution training).
        mode: interpolation for down- and up-sampling: ``bicubic``, ``bilinear`` or ``nearest``.
        blur_sigma: Gaussian σ (a float, a (low, high) range sampled per image, or None for no
            blur); applied at the low resolution, between down- and up-sampling.
        blur_kernel: odd Gaussian kernel size.
        preset: defaults for the three options above (``paper``, ``askd``, ``clean``).
        generator: makes the per-image random choices (scale, σ) reproducible.
    """
    cfg = get_preset(preset)
    cfg = replace(
        cfg,
        mode=cfg.mode if mode is None else mode,
        blur_sigma=cfg.blur_sigma if isinstance(blur_sigma, str) and blur_sigma == "preset" else blur_sigma,
        blur_kernel=cfg.blur_kernel if blur_kernel is None else int(blur_kernel),
    )
    if cfg.mode not in MODES:
        raise ValueError(f"unknown interpolation mode {cfg.mode!r}; choose from {MODES}")
    if not isinstance(images, torch.Tensor):
        raise TypeError("images must be a torch.Tensor (NCHW or CHW)")
    squeeze = images.dim() == 3
    x = images[None] if squeeze else images
    if x.dim() != 4:
        raise ValueError(f"images must be NCHW or CHW, got shape {tuple(images.shape)}")
    b = x.shape[0]

    if isinstance(scale, (list, tuple)) or (isinstance(scale, torch.Tensor) and scale.dim() > 0):
        choices = [_check_scale(s) for s in (scale.tolist() if isinstance(scale, torch.Tensor) else scale)]
        if not choices:
            raise ValueError("scale list is empty")
        idx = torch.randint(len(choices), (b,), generator=generator,
                            device=generator.device if generator is not None else "cpu")
        per_image = [choices[i] for i in idx.tolist()]
    else:
        per_image = [_check_scale(scale)] * b

    if all(s == 1.0 for s in per_image):
        return images.clone()

    in_dtype = x.dtype
    xf = x.float() if in_dtype == torch.uint8 else x
    lo_val, hi_val = (0.0, 255.0) if in_dtype == torch.uint8 else (float(xf.min()), float(xf.max()))
    out = xf.clone()
    h, w = x.shape[-2:]
    for s in sorted(set(per_image)):
        if s == 1.0:
            continue
        sel = torch.tensor([i for i, v in enumerate(per_image) if v == s], device=x.device)
        part = xf.index_select(0, sel)
        small = (max(1, round(h / s)), max(1, round(w / s)))
        part = _resize(part, small, cfg.mode, down=True)
        part = _blur(part, cfg.blur_sigma, cfg.blur_kernel, generator)
        part = _resize(part, (h, w), cfg.mode, down=False)
        out.index_copy_(0, sel, part)
    out = out.clamp(lo_val, hi_val)
    if in_dtype == torch.uint8:
        out = out.round().to(torch.uint8)
    else:
        out = out.to(in_dtype)
    return out[0] if squeeze else out


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Fraction of spectral energy above ``cutoff`` × Nyquist (per image), a sharpness measure."""
    x = images.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    spec = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1)).abs() ** 2
    h, w = x.shape[-2:]
    fy = torch.linspace(-1, 1, h, device=x.device)[:, None]
    fx = torch.linspace(-1, 1, w, device=x.device)[None, :]
    mask = (fy**2 + fx**2).sqrt() > cutoff
    total = spec.sum(dim=(-2, -1)).clamp_min(1e-12)
    return (spec * mask).sum(dim=(-2, -1)).div(total).mean(dim=-1) if x.dim() == 4 else (spec * mask).sum(dim=(-2, -1)) / total
