"""What an external embedding model expects as input, and the conversion from lqlib's convention.

lqlib feeds every model the aligned 112×112 face as float RGB NCHW in [-1, 1]
(:func:`lqlib.images.normalize`). A model trained elsewhere may want another size (112×96), BGR
channels, another normalisation (``(px - 127.5) / 128``, ``px / 255``, ImageNet mean/std) or NHWC.
A :class:`TeacherSpec` records these facts; :meth:`TeacherSpec.preprocess` performs the conversion::

    x (lqlib, [-1, 1], RGB, NCHW, any H×W)
      ─► crop/resize to ``input_size``       ("none" | "center" | "resize")
      ─► pixels in [0, 255]                  (inverse of lqlib.images.normalize)
      ─► channel order                       ("RGB" | "BGR")
      ─► (px · pixel_scale / 255 − mean) / std   (mean/std in the model's pixel scale, per channel
                                                 in the model's channel order)
      ─► layout                              ("NCHW" | "NHWC")

For the lqlib convention itself (the default spec) the conversion is skipped entirely, so an lqlib
backbone wrapped as a teacher sees bit-identical inputs.

Specs are saved and loaded as JSON (atomically, through :mod:`lqlib.io`). Besides preprocessing they
carry provenance (``name``, ``source``) and, for state-dict teachers, how to rebuild the network
(``arch``, ``arch_kw``, ``weights`` relative to the JSON's folder) so :func:`lqlib.teachers.build_teacher`
can reload a teacher from its spec file alone.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import images
from ..io import write_json

CROPS = ("none", "center", "resize")
CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
# lqlib's own convention, in 0..255 pixels: (px - 127.5) / 127.5.
LQLIB_MEAN = images.MEAN * 255.0
LQLIB_STD = images.STD * 255.0


def _triple(v) -> tuple[float, float, float]:
    t = (float(v),) * 3 if isinstance(v, (int, float)) else tuple(float(a) for a in v)
    if len(t) != 3:
        raise ValueError(f"mean/std need 1 or 3 values, got {v!r}")
    return t


@dataclass
class TeacherSpec:
    """Input contract of an external embedding model (see the module docstring).

    ``mean``/``std`` are in the model's pixel scale (``pixel_scale`` = 255 for 0..255 pixels, 1 for
    0..1) and listed in the model's channel order. ``embedding_size`` may be None when unknown.
    """

    name: str = "teacher"
    input_size: tuple[int, int] = (112, 112)
    crop: str = "none"
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (LQLIB_MEAN,) * 3
    std: tuple[float, float, float] = (LQLIB_STD,) * 3
    pixel_scale: float = 255.0
    layout: str = "NCHW"
    embedding_size: int | None = None
    source: str = ""
    arch: str | None = None
    arch_kw: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.input_size = tuple(int(s) for s in self.input_size)
        if len(self.input_size) != 2:
            raise ValueError(f"input_size must be (H, W), got {self.input_size!r}")
        self.mean, self.std = _triple(self.mean), _triple(self.std)
        if any(s == 0 for s in self.std):
            raise ValueError("std must be non-zero")
        for value, allowed, what in ((self.crop, CROPS, "crop"), (self.channel_order, CHANNEL_ORDERS, "channel_order"),
                                     (self.layout, LAYOUTS, "layout")):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        self.pixel_scale = float(self.pixel_scale)

    # ------------------------------------------------------------------ preprocessing
    @property
    def is_lqlib_convention(self) -> bool:
        """True when the model takes lqlib's input unchanged (no conversion needed at 112×112)."""
        return (self.channel_order == "RGB" and self.layout == "NCHW" and self.pixel_scale == 255.0
                and self.mean == (LQLIB_MEAN,) * 3 and self.std == (LQLIB_STD,) * 3)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Crop or resize an NCHW batch to ``input_size`` according to ``crop``."""
        h, w = self.input_size
        if tuple(x.shape[-2:]) == (h, w):
            return x
        if self.crop == "resize":
            return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if self.crop == "center":
            H, W = x.shape[-2:]
            if h > H or w > W:
                raise ValueError(f"{self.name}: cannot center-crop {H}×{W} to {h}×{w}")
            top, left = (H - h) // 2, (W - w) // 2
            return x[..., top:top + h, left:left + w]
        raise ValueError(f"{self.name} expects {h}×{w} input and crop='none', got {tuple(x.shape[-2:])}; "
                         "set crop='center' or 'resize'")

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """lqlib-normalised RGB NCHW → the model's own input (see the module docstring)."""
        x = self.resize(x)
        if self.is_lqlib_convention:
            return x
        px = x.float() * LQLIB_STD + LQLIB_MEAN  # 0..255, RGB
        if self.channel_order == "BGR":
            px = px.flip(1)
        mean = torch.tensor(self.mean, dtype=px.dtype, device=px.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=px.dtype, device=px.device).view(1, 3, 1, 1)
        y = (px * (self.pixel_scale / 255.0) - mean) / std
        return y.permute(0, 2, 3, 1).contiguous() if self.layout == "NHWC" else y

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_size"], d["mean"], d["std"] = list(self.input_size), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TeacherSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TeacherSpec fields: {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TeacherSpec":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
