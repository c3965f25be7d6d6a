"""The one degradation function: low-quality copies of aligned faces.

``degrade`` takes a batch (uint8 or float, CPU or GPU, NCHW RGB), downsamples it by ``scale``
(antialiased for bicubic/bilinear), blurs it with a Gaussian and upsamples it back to the input size,
so a low-quality face can be fed to the same network as its high-resolution original. The blur sits
where the degradation says: at the low resolution (between down- and up-sampling, ``blur_at="low"``) or
on the upsampled image (``blur_at="high"``).

Degradations (``DEGRADATIONS``, chosen by name with ``degradation=``):

* ``paper`` — bicubic down, 5×5 Gaussian blur with σ=1 at the low resolution, bicubic up (the
  KD-for-LQ-FR paper and the lfw-half calibration runs).
* ``askd`` — A-SKD ("Teaching where to look", Shin et al. 2022) as in its code
  (``dataset/casia_webface.py``, ``utility/noise.py``): nearest-neighbour down, nearest-neighbour up
  to the input size, then a fixed anisotropic 5×5 Gaussian with σx = 0.1, σy = 2.0 (reflect padding)
  at the input size.
* ``clean`` — bicubic down/up with no blur.

``interpolation`` (bicubic | bilinear | nearest) is the resampling; ``blur_sigma`` a float σ, a
``(low, high)`` range drawn per image, or None; ``blur_sigma_y`` an optional second σ for the
vertical axis (anisotropic blur, σx = ``blur_sigma``).

Scale 1 is the identity (no resampling and no blur), so ``×1`` rows of a table are the originals.
A scale that leaves fewer pixels than the blur needs is a :class:`DegradationError` (a ``ValueError``) naming
the largest valid scale.

Command line — low-quality copies of your own face images, as the students see them (PNG, lossless)::

    python -m lqlib.degrade face.jpg other.png --out degraded/ [--scale 2 4 8] [--degradation paper]

writes ``degraded/<image>_x<scale>.png`` for every image and scale (at the image's own size) and prints each path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .errors import LqlibError, command

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
BLUR_POSITIONS = ("low", "high")


class DegradationError(LqlibError, ValueError):
    """A degradation's options or scale do not fit (the message names the option and what would)."""


@dataclass(frozen=True)
class DegradeConfig:
    interpolation: str = "bicubic"
    blur_sigma: float | tuple[float, float] | None = 1.0
    blur_kernel: int = 5
    blur_at: str = "low"
    blur_sigma_y: float | None = None


DEGRADATIONS: dict[str, DegradeConfig] = {
    "paper": DegradeConfig("bicubic", 1.0, 5, "low"),
    "askd": DegradeConfig("nearest", 0.1, 5, "high", blur_sigma_y=2.0),
    "clean": DegradeConfig("bicubic", None, 5, "low"),
}


def get_degradation(name: str) -> DegradeConfig:
    """The named degradation (``paper``, ``askd``, ``clean``); a ``ValueError`` listing them otherwise."""
    try:
        return DEGRADATIONS[name]
    except KeyError:
        raise DegradationError(f"unknown degradation {name!r}; choose from {sorted(DEGRADATIONS)}") from None


def _check_scale(s) -> float:
    try:
        f = float(s)
    except (TypeError, ValueError):
        raise DegradationError(f"degradation scale must be a number >= 1, got {s!r}") from None
    if not math.isfinite(f) or f < 1.0:
        raise DegradationError(f"degradation scale must be a finite number >= 1, got {s!r}")
    return f


def _low_size(h: int, w: int, s: float, cfg: DegradeConfig) -> tuple[int, int]:
    """The low-resolution size for scale ``s``; raises when it is too small for the pipeline."""
    small = (round(h / s), round(w / s))
    need = cfg.blur_kernel // 2 + 1 if (cfg.blur_sigma is not None and cfg.blur_at == "low") else 1
    if min(small) < need:
        raise DegradationError(f"scale {s:g} leaves {small[0]}×{small[1]} pixels of a {h}×{w} image, fewer than the "
                         f"{need}×{need} this degradation needs; the largest valid scale is "
                         f"{largest_scale(min(h, w), need):g}")
    return small


def largest_scale(side: int, need: int) -> float:
    """The largest scale (to 0.01) that leaves ``round(side / scale) >= need`` pixels: the bound is
    ``side / (need - 0.5)`` (where the rounding drops below ``need``), exclusive when it rounds down."""
    s = math.floor(side / (need - 0.5) * 100) / 100
    while round(side / s) < need:  # at the bound itself (e.g. 112 / 2.5 = 44.8 → 2 px) the rounding loses
        s = round(s - 0.01, 2)
    return s


def _resize(x: torch.Tensor, size: tuple[int, int], interpolation: str, down: bool) -> torch.Tensor:
    if interpolation == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    # antialias only matters (and is only supported) when shrinking
    return F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=down)


def _gaussian_kernels(sigmas: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) sigmas → (B, k, k) normalised Gaussian kernels (for per-image σ)."""
    half = (k - 1) / 2
    t = torch.linspace(-half, half, k, device=sigmas.device, dtype=torch.float32)
    g = torch.exp(-0.5 * (t[None, :] / sigmas[:, None]) ** 2)
    g = g / g.sum(1, keepdim=True)
    return g[:, :, None] * g[:, None, :]


def _blur(x: torch.Tensor, cfg: DegradeConfig, generator: torch.Generator | None) -> torch.Tensor:
    sigma, k = cfg.blur_sigma, cfg.blur_kernel
    if sigma is None:
        return x
    if k < 1 or k % 2 == 0:
        raise DegradationError(f"blur_kernel must be a positive odd integer, got {k}")
    if isinstance(sigma, (int, float)):
        if sigma <= 0:
            return x
        sy = float(sigma) if cfg.blur_sigma_y is None else float(cfg.blur_sigma_y)
        return TF.gaussian_blur(x, kernel_size=[k, k], sigma=[float(sigma), sy])
    lo, hi = (float(v) for v in sigma)
    if not (0 < lo <= hi):
        raise DegradationError(f"blur_sigma range must satisfy 0 < low <= high, got {sigma}")
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


def degradation_steps(part: torch.Tensor, small: tuple[int, int], cfg: DegradeConfig,
                      generator: torch.Generator | None) -> torch.Tensor:
    """down → blur → up (``blur_at="low"``) or down → up → blur (``"high"``) for one scale's images."""
    h, w = part.shape[-2:]
    part = _resize(part, small, cfg.interpolation, down=True)
    if cfg.blur_at == "low":
        part = _blur(part, cfg, generator)
    part = _resize(part, (h, w), cfg.interpolation, down=False)
    if cfg.blur_at == "high":
        part = _blur(part, cfg, generator)
    return part


def degrade(
    images: torch.Tensor,
    scale: float | Sequence[float],
    *,
    interpolation: str | None = None,
    blur_sigma: float | tuple[float, float] | None | str = "default",
    blur_kernel: int | None = None,
    degradation: str = "paper",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return low-quality copies of ``images`` at the input size.

    Args:
        images: NCHW (or CHW) RGB batch, uint8 or float; returned with the same shape, dtype and
            device (float outputs are clamped to the input's value range).
        scale: a float ≥ 1 (1 = identity) applied to every image, or a sequence of floats from
            which each image draws its own scale (mixed-resolution training).
        interpolation: resampling for down- and up-sampling: ``bicubic``, ``bilinear`` or ``nearest``.
        blur_sigma: Gaussian σ (a float, a (low, high) range sampled per image, or None for no
            blur), applied where the degradation's ``blur_at`` says; ``"default"``: the degradation's own.
        blur_kernel: odd Gaussian kernel size.
        degradation: the named degradation supplying the options left at their defaults (``paper``,
            ``askd``, ``clean``).
        generator: makes the per-image random choices (scale, σ) reproducible.
    """
    cfg = get_degradation(degradation)
    cfg = replace(
        cfg,
        interpolation=cfg.interpolation if interpolation is None else interpolation,
        blur_sigma=cfg.blur_sigma if isinstance(blur_sigma, str) and blur_sigma == "default" else blur_sigma,
        blur_kernel=cfg.blur_kernel if blur_kernel is None else int(blur_kernel),
    )
    if cfg.interpolation not in INTERPOLATIONS:
        raise DegradationError(f"unknown interpolation {cfg.interpolation!r}; choose from {INTERPOLATIONS}")
    if not isinstance(images, torch.Tensor):
        raise TypeError("images must be a torch.Tensor (NCHW or CHW)")
    squeeze = images.dim() == 3
    x = images[None] if squeeze else images
    if x.dim() != 4:
        raise DegradationError(f"images must be NCHW or CHW, got shape {tuple(images.shape)}")
    b = x.shape[0]
    h, w = x.shape[-2:]

    if isinstance(scale, (list, tuple)) or (isinstance(scale, torch.Tensor) and scale.dim() > 0):
        choices = [_check_scale(s) for s in (scale.tolist() if isinstance(scale, torch.Tensor) else scale)]
        if not choices:
            raise DegradationError("scale list is empty")
        for s in set(choices) - {1.0}:
            _low_size(h, w, s, cfg)
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
    for s in sorted(set(per_image)):
        if s == 1.0:
            continue
        sel = torch.tensor([i for i, v in enumerate(per_image) if v == s], device=x.device)
        part = degradation_steps(xf.index_select(0, sel), _low_size(h, w, s, cfg), cfg, generator)
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


def _scale_arg(text: str) -> float:
    import argparse

    try:
        return _check_scale(text)
    except DegradationError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@command()
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lqlib.degrade IMAGE ... --out DIR``: see the module docstring. Every image is read and degraded
    before anything is written, so a bad image or scale leaves nothing behind."""
    import argparse
    from pathlib import Path

    from torchvision.io import encode_png

    from .data import read_image_rgb
    from .io import write_bytes

    ap = argparse.ArgumentParser(prog="python -m lqlib.degrade",
                                 description="Write low-quality copies of face images (PNG), as the students see them.")
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="face images (aligned 112×112 crops or any size)")
    ap.add_argument("--out", required=True, help="folder for <image>_x<scale>.png")
    ap.add_argument("--scale", nargs="+", type=_scale_arg, default=[2.0, 4.0, 8.0],
                    help="degradation scales, each >= 1 (default: 2 4 8)")
    ap.add_argument("--degradation", choices=sorted(DEGRADATIONS), default="paper",
                    help="the named degradation (default: paper)")
    args = ap.parse_args(argv)
    stems = [Path(p).stem for p in args.images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise DegradationError(f"two images named {clash[0]!r} would write the same files; pass one of them at a time")
    out = Path(args.out)
    copies = [(out / f"{Path(p).stem}_x{s:g}.png", degrade(face, s, degradation=args.degradation))
              for p, face in ((p, read_image_rgb(p)) for p in args.images) for s in args.scale]
    for target, img in copies:
        write_bytes(target, encode_png(img).numpy().tobytes())
        print(target)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
