"""Face-content replacement (Cheng & Deng 2022, label-free KD): swap aligned facial regions between
faces of a batch.

Faces aligned to the ArcFace 112×112 template have their eyes, nose and mouth at fixed places, so
a rectangle around a facial part cut from one face and pasted into another at the same place gives
a plausible new face (a new "identity" for the label-free student, whose teacher target is
computed on the replaced image itself).

Regions are rectangles derived from the standard ArcFace 5-point template (x, y on 112×112):
left eye (38.29, 51.70), right eye (73.53, 51.50), nose tip (56.03, 71.74), mouth corners
(41.55, 92.37) and (70.73, 92.20). With d = inter-ocular distance (35.24 px), eye line
y_e = 51.60 and mouth line y_m = 92.285:

* ``eyes``  — x ∈ [x_le − 0.5d, x_re + 0.5d], y ∈ [y_e − 0.35d, y_e + 0.25d]  (eyes and brows,
  ≈ [20.7, 91.2] × [39.3, 60.4]);
* ``nose``  — x ∈ [x_n − 0.3d, x_n + 0.3d],   y ∈ [y_e + 0.25d, y_n + 0.2d]   (bridge to tip,
  ≈ [45.5, 66.6] × [60.4, 78.8]);
* ``mouth`` — x ∈ [x_ml − 0.25d, x_mr + 0.25d], y ∈ [y_m − 0.3d, y_m + 0.3d]  (lips,
  ≈ [32.7, 79.5] × [81.7, 102.9]).

The eyes and nose boxes share an edge; none overlap. For other image sizes the template
coordinates are scaled by (W/112, H/112) and rounded to the nearest pixel edge (end exclusive), so
at 112×112 the pixel boxes (y0, y1, x0, x1) are eyes (39, 60, 21, 91), nose (60, 79, 45, 67),
mouth (82, 103, 33, 80). The fractions of d are our choice (the paper describes the regions, not
their exact extents).

**Training-loop integration** (config flag ``face_content_replacement: float``, the probability
p per image, 0 = off): apply it to the uint8 HR batch *before* the teacher/student split, i.e.
before degradation::

    if cfg.face_content_replacement > 0:
        hr, _ = face_content_replacement(hr, generator=gen, p=cfg.face_content_replacement)
    lr = degrade(hr, ...)                      # the student's input
    t_out = teacher(normalize(hr)); s_out = student(normalize(lr))

so the teacher's target is the embedding of the replaced face. It is meant for label-free
training (method ``labelfree``): a replaced face no longer matches its identity label. The boxes
are centred on the template's vertical axis (x ≈ 56), so horizontal flips before or after do not
matter. With a CUDA generator the draws stay on the GPU (no host synchronisation); the returned
choices are tensors (``choices.tolist()`` syncs, for inspection only).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Sequence

import torch

TEMPLATE_SIZE = 112
ARCFACE_LANDMARKS = {
    "left_eye": (38.2946, 51.6963),
    "right_eye": (73.5318, 51.5014),
    "nose": (56.0252, 71.7366),
    "mouth_left": (41.5493, 92.3655),
    "mouth_right": (70.7299, 92.2041),
}
REGIONS = ("eyes", "nose", "mouth")


def template_regions() -> dict[str, tuple[float, float, float, float]]:
    """Region rectangles on the 112×112 template as (y0, y1, x0, x1) floats (see the module docstring)."""
    L = ARCFACE_LANDMARKS
    d = L["right_eye"][0] - L["left_eye"][0]
    ye = (L["left_eye"][1] + L["right_eye"][1]) / 2
    ym = (L["mouth_left"][1] + L["mouth_right"][1]) / 2
    xn, yn = L["nose"]
    return {
        "eyes": (ye - 0.35 * d, ye + 0.25 * d, L["left_eye"][0] - 0.5 * d, L["right_eye"][0] + 0.5 * d),
        "nose": (ye + 0.25 * d, yn + 0.2 * d, xn - 0.3 * d, xn + 0.3 * d),
        "mouth": (ym - 0.3 * d, ym + 0.3 * d, L["mouth_left"][0] - 0.25 * d, L["mouth_right"][0] + 0.25 * d),
    }


def region_boxes(height: int = TEMPLATE_SIZE, width: int = TEMPLATE_SIZE) -> dict[str, tuple[int, int, int, int]]:
    """Pixel boxes (y0, y1, x0, x1), end exclusive, for an image of ``height``×``width``."""
    sy, sx = height / TEMPLATE_SIZE, width / TEMPLATE_SIZE
    out = {}
    for name, (y0, y1, x0, x1) in template_regions().items():
        out[name] = (max(0, round(y0 * sy)), min(height, round(y1 * sy)),
                     max(0, round(x0 * sx)), min(width, round(x1 * sx)))
    return out


def _ramp(n: int, a: int, b: int, feather: float) -> torch.Tensor:
    """1-D mask: 1 inside [a, b), 0 outside, linear ramp over ``feather`` px inside the edges."""
    pos = torch.arange(n, dtype=torch.float32) + 0.5
    inside = (pos > a) & (pos < b)
    if feather <= 0:
        return inside.float()
    dist = torch.minimum(pos - a, b - pos)
    return torch.where(inside, (dist / feather).clamp(0.0, 1.0), torch.zeros(()))


@lru_cache(maxsize=32)
def _region_masks_cpu(height: int, width: int, regions: tuple, feather: float) -> torch.Tensor:
    boxes = region_boxes(height, width)
    ms = []
    for r in regions:
        if r not in boxes:
            raise ValueError(f"unknown face region {r!r}; choose from {REGIONS}")
        y0, y1, x0, x1 = boxes[r]
        ms.append(_ramp(height, y0, y1, feather)[:, None] * _ramp(width, x0, x1, feather)[None, :])
    return torch.stack(ms)[:, None]


def region_masks(height: int, width: int, regions: Sequence[str] = REGIONS, feather: float = 0.0) -> torch.Tensor:
    """(R, 1, H, W) float masks of the regions (1 inside, feathered edges when ``feather`` > 0)."""
    return _region_masks_cpu(int(height), int(width), tuple(regions), float(feather)).clone()


class Replacement(NamedTuple):
    """The random choices of one :func:`face_content_replacement` call (tensors on the generator's device).

    ``partner[i]`` is the batch index the region of image i came from, ``region[i]`` indexes
    ``names``, ``applied[i]`` says whether image i was modified at all.
    """

    partner: torch.Tensor
    region: torch.Tensor
    applied: torch.Tensor
    names: tuple

    def tolist(self) -> list:
        """Per image ``(partner_index, region_name)``, or ``None`` when it was left unchanged."""
        return [(int(p), self.names[int(r)]) if bool(a) else None
                for p, r, a in zip(self.partner.tolist(), self.region.tolist(), self.applied.tolist())]


def face_content_replacement(images: torch.Tensor, generator: torch.Generator | None = None,
                             regions: Sequence[str] = REGIONS, p: float = 1.0,
                             feather: float = 0.0) -> tuple[torch.Tensor, Replacement]:
    """Paste a random facial region of a random other face of the batch into each face.

    Args:
        images: (B, C, H, W) aligned faces (uint8 as loaded, or float), ArcFace template layout.
        generator: makes the choices deterministic; random draws happen on its device (CPU when
            None, using the global RNG). No host synchronisation happens on the GPU.
        regions: the regions to pick from (uniformly), a subset of ("eyes", "nose", "mouth").
        p: probability that a face is modified.
        feather: width in pixels of a linear blend inside the rectangle's edges (0 = hard copy).

    Returns:
        ``(out, choices)``: the new batch (same dtype, shape and device; the input is not modified)
        and a :class:`Replacement` with the (partner, region) choices (``choices.tolist()`` gives
        ``(partner_index, region_name)`` or ``None`` per image). Partners are always other images
        of the batch (a batch of one is returned unchanged) and regions come from the partners'
        *original* images.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    regions = tuple(regions)
    if not regions:
        raise ValueError("regions is empty")
    masks = region_masks(images.shape[-2], images.shape[-1], regions, feather)  # validates names
    B = images.shape[0]
    dev = generator.device if generator is not None else torch.device("cpu")
    applied = torch.rand(B, generator=generator, device=dev) < p
    offset = torch.randint(1, max(B, 2), (B,), generator=generator, device=dev)
    region = torch.randint(0, len(regions), (B,), generator=generator, device=dev)
    if B < 2:
        applied = torch.zeros_like(applied)
    partner = (torch.arange(B, device=dev) + offset) % max(B, 1)
    choices = Replacement(partner, region, applied, regions)
    idev = images.device
    m = masks.to(idev)[region.to(idev)] * applied.to(idev, torch.float32)[:, None, None, None]
    src = images[partner.to(idev)]
    if feather <= 0:
        out = torch.where(m > 0, src, images)
    else:
        blended = images.float() * (1.0 - m) + src.float() * m
        if images.dtype == torch.uint8:
            blended = blended.round().clamp(0, 255)
        out = blended.to(images.dtype)
    return out, choices
