"""What an external embedding model expects as input, and the conversion from lqlib's convention.

lqlib feeds every model the aligned 112×112 face as float RGB NCHW in [-1, 1]
(:func:`lqlib.images.normalize`). A model trained elsewhere may want another size (112×96), BGR
channels, another normalisation (``(px - 127.5) / 128``, ``px / 255``, ImageNet mean/std) or NHWC.
A :class:`TeacherSpec` records these facts; :meth:`TeacherSpec.preprocess` performs the conversion::

    x (lqlib, [-1, 1], RGB, NCHW, any H×W)
      ─► crop/resize to ``input_size``       ("none" | "center" | "resize"), or
         warp to ``input_size``              (``warp``: a 2×3 affine map, bilinear, ``warp_border``)
      ─► pixels in [0, 255]                  (inverse of lqlib.images.normalize)
      ─► channel order                       ("RGB" | "BGR")
      ─► (px · pixel_scale / 255 − mean) / std   (mean/std in the model's pixel scale, per channel
                                                 in the model's channel order)
      ─► layout                              ("NCHW" | "NHWC")

For the lqlib convention itself (the default spec) the conversion is skipped entirely, so an lqlib
backbone wrapped as a teacher sees bit-identical inputs.

**Warp.** A model trained on another face alignment (e.g. dlib's 150-px chips) needs its own crop
geometry, which no centre crop or resize gives. ``warp = ((a, b, tx), (c, d, ty))`` is the affine map
from pixel coordinates of the input (lqlib's aligned crop) to pixel coordinates of the model's
``input_size`` image — ``chip = A·p + t`` with ``p = (x, y)`` = (column, row) and pixel centres at
integer coordinates (the convention of landmark templates and ``cv2.warpAffine``). Each output pixel
``c`` is sampled bilinearly at ``A⁻¹(c − t)`` with :func:`torch.nn.functional.grid_sample` (batched,
on the input's device, differentiable in the input). Outside the input, ``warp_border`` decides:
``"reflect"`` mirrors about the image edge (edge pixel repeated, ``cv2.BORDER_REFLECT``),
``"replicate"`` repeats the edge pixel, ``"zeros"`` is 0 in lqlib's normalised scale (mid-grey). The
map is defined in the input's own pixel grid, whatever its size; :func:`similarity_warp` builds the
matrix of a scale/rotation/shift. A warp replaces ``crop`` (which must then stay ``"none"``).

Specs are saved and loaded as JSON (atomically, through :mod:`lqlib.io`). Besides preprocessing they
carry provenance (``name``, ``source``) and, for state-dict teachers, how to rebuild the network
(``arch``, ``arch_kw``, ``weights`` relative to the JSON's folder) so :func:`lqlib.teachers.build_teacher`
can reload a teacher from its spec file alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import images
from ..io import write_json

CROPS = ("none", "center", "resize")
# warp_border → grid_sample padding_mode (with align_corners=False, "reflection" mirrors about the
# image edge, i.e. cv2.BORDER_REFLECT, for bilinear sampling)
WARP_BORDERS = {"reflect": "reflection", "replicate": "border", "zeros": "zeros"}
CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
# lqlib's own convention, in 0..255 pixels: (px - 127.5) / 127.5.
LQLIB_MEAN = images.MEAN * 255.0
LQLIB_STD = images.STD * 255.0


def similarity_warp(scale: float, shift: tuple[float, float] = (0.0, 0.0), degrees: float = 0.0
                    ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The ``warp`` matrix of ``chip = scale·R(degrees)·p + shift`` (pixel coordinates, x right, y down)."""
    c, s = math.cos(math.radians(degrees)) * scale, math.sin(math.radians(degrees)) * scale
    return ((c, -s, float(shift[0])), (s, c, float(shift[1])))


def warp_grid(matrix, in_size: tuple[int, int], out_size: tuple[int, int], device=None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``grid_sample`` grid [1, H_out, W_out, 2] (align_corners=False) of the affine map ``matrix``.

    Output pixel ``c`` (column, row) samples the input at ``p = A⁻¹(c − t)``, converted to normalised
    coordinates ``(2p + 1) / size − 1``. Computed in float64, returned in ``dtype``.
    """
    m = torch.tensor(matrix, dtype=torch.float64)
    (h_in, w_in), (h_out, w_out) = in_size, out_size
    rows, cols = torch.meshgrid(torch.arange(h_out, dtype=torch.float64), torch.arange(w_out, dtype=torch.float64),
                                indexing="ij")
    chip = torch.stack([cols, rows], dim=-1) - m[:, 2]
    p = chip @ torch.linalg.inv(m[:, :2]).T
    grid = (2 * p + 1) / torch.tensor([w_in, h_in], dtype=torch.float64) - 1
    return grid[None].to(device=device, dtype=dtype)


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
    ``warp`` (2×3, input pixel → model pixel) and ``warp_border`` resample the input to ``input_size``
    instead of ``crop``.
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
    warp: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    warp_border: str = "reflect"
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
        if self.warp is not None:
            self.warp = tuple(tuple(float(a) for a in row) for row in self.warp)
            if len(self.warp) != 2 or any(len(row) != 3 for row in self.warp):
                raise ValueError(f"warp must be a 2×3 matrix, got {self.warp!r}")
            if abs(self.warp[0][0] * self.warp[1][1] - self.warp[0][1] * self.warp[1][0]) < 1e-12:
                raise ValueError(f"warp is not invertible: {self.warp!r}")
            if self.crop != "none":
                raise ValueError(f"a warp replaces crop; crop must be 'none', got {self.crop!r}")
        if self.warp_border not in WARP_BORDERS:
            raise ValueError(f"warp_border must be one of {tuple(WARP_BORDERS)}, got {self.warp_border!r}")

    # ------------------------------------------------------------------ preprocessing
    @property
    def is_lqlib_convention(self) -> bool:
        """True when the model takes lqlib's input unchanged (no conversion needed at 112×112)."""
        return (self.channel_order == "RGB" and self.layout == "NCHW" and self.pixel_scale == 255.0
                and self.mean == (LQLIB_MEAN,) * 3 and self.std == (LQLIB_STD,) * 3)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Warp, crop or resize an NCHW batch to ``input_size`` according to ``warp`` / ``crop``."""
        if self.warp is not None:
            return self.warp_image(x)
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

    def warp_image(self, x: torch.Tensor) -> torch.Tensor:
        """Sample the ``input_size`` image of ``warp`` from an NCHW batch (see the module docstring)."""
        if not x.is_floating_point():
            x = x.float()
        grid = warp_grid(self.warp, tuple(x.shape[-2:]), self.input_size, x.device, x.dtype)
        return F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), mode="bilinear",
                             padding_mode=WARP_BORDERS[self.warp_border], align_corners=False)

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
        d["warp"] = None if self.warp is None else [list(row) for row in self.warp]
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
