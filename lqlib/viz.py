"""Looking at faces and attention maps: image grids, attention overlays, teacher–student similarity.

Images stay uint8 RGB NCHW (see :mod:`lqlib.images`) until a model is run; the model runs in eval
mode under ``torch.inference_mode`` with :func:`lqlib.images.normalize` at the boundary, on the
model's own device, and its training flag is restored afterwards (:func:`infer`).

* :func:`face_grid`, :func:`degradation_grid` — faces, and faces next to their ×2/×4/×8 copies;
  :func:`mosaic_figure` lays equal-size tiles out in one image (fast to redraw);
* :func:`spatial_maps_by_stage` — per stage, the spatial attention map of the stage's last block,
  bilinearly upsampled to the image size; :func:`overlay` paints a map on a face;
* :func:`attention_figure` — the paper's attention-map figure: rows = faces, columns = per stage
  the teacher's map on the HR face next to the student's map on the LR face;
* :func:`block_similarity` — per block, the mean cosine similarity of teacher (HR input) and
  student (LR input) attention maps, i.e. 1 − the attention-KD distance (the same
  :mod:`lqlib.models.maps` helpers as the KD term: same pooling to the smaller map, same block pairing).
"""
from __future__ import annotations

from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from .degrade import degrade
from .evaluation import prepared_model
from .evaluation.tables import scale_label
from .images import as_batch, normalize
from .models.interface import (block_stage, common_stages, last_block_per_stage, model_stages,
                               stage_pairing)
from .models.maps import cosine_distance, paired_maps

# ------------------------------------------------------------------------------ running a model


def infer(model: nn.Module, images_uint8, **flags):
    """``model(normalize(images), **flags)`` in eval mode under inference_mode, on the model's device.

    The model is prepared by :func:`lqlib.evaluation.prepared_model` (eval mode, its own device;
    training flag restored afterwards). For plain embeddings of many faces use
    :func:`lqlib.evaluation.embed` (batched, flip-augmented).
    """
    x = as_batch(images_uint8)
    with prepared_model(model) as dev, torch.inference_mode():
        return model(normalize(x.to(dev)), **flags)


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) → (B, H, W) float32, bilinear."""
    maps = maps.float()
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps[:, 0]


def embed_with_maps(model: nn.Module, images_uint8, size: tuple[int, int] | None = None
                    ) -> tuple[torch.Tensor, np.ndarray]:
    """One forward pass → ((B, E) embeddings, (S, B, H, W) spatial maps of each stage's last block).

    Stages in :func:`model_stages` order. Maps are upsampled (bilinear) to ``size`` (default: the
    image size). Raises ValueError for backbones without spatial attention (SE, ECA, none).
    """
    x = as_batch(images_uint8)
    size = tuple(size) if size is not None else tuple(x.shape[-2:])
    emb, maps = infer(model, x, return_attention=True)
    out = []
    for stage, i in zip(model_stages(model), last_block_per_stage(block_stage(model))):
        spatial = maps[i].spatial if i < len(maps) else None
        if spatial is None:
            raise ValueError(f"block {i} (stage {stage}) has no spatial attention map; spatial maps need "
                             f"an attention with a spatial gate (cbam, esca)")
        out.append(_upsample(spatial, size).cpu().numpy())
    return emb.float().cpu(), np.stack(out)


def spatial_maps_by_stage(model: nn.Module, images_uint8, size: tuple[int, int] | None = None) -> np.ndarray:
    """(S, B, H, W) float32: per stage (:func:`model_stages` order) the last block's spatial attention
    map, upsampled (bilinear) to the image size."""
    return embed_with_maps(model, images_uint8, size)[1]


def block_similarity(teacher: nn.Module, student: nn.Module, hr_images, lr_images, kind: str = "spatial",
                     pairing: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Per (student) block, the batch-mean cosine similarity of teacher-on-HR and student-on-LR maps.

    ``kind``: ``"spatial"`` (maps pooled to the smaller size when they differ) or ``"channel"``
    (widths must match). ``pairing`` lists (teacher block, student block); default: block i with
    block i, or :func:`lqlib.losses.attention.stage_pairing` when the block counts differ.
    Returns a float64 array with one value per pair.
    """
    if kind not in ("spatial", "channel"):
        raise ValueError(f"kind must be 'spatial' or 'channel', got {kind!r}")
    _, t_maps = infer(teacher, hr_images, return_attention=True)
    _, s_maps = infer(student, lr_images, return_attention=True)
    if pairing is None:
        pairing = ([(i, i) for i in range(len(s_maps))] if len(t_maps) == len(s_maps)
                   else stage_pairing(block_stage(teacher), block_stage(student)))
    sims = [1.0 - float(cosine_distance(t, s)) for t, s in paired_maps(t_maps, s_maps, pairing, kind)]
    return np.asarray(sims, dtype=np.float64)


# ------------------------------------------------------------------------------------- drawing


def to_hwc(image) -> np.ndarray:
    """One face as an (H, W, 3) uint8 array (from CHW or HWC, tensor or array)."""
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.ndim != 3:
        raise ValueError(f"expected one RGB image (3,H,W) or (H,W,3), got shape {a.shape}")
    if a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
    return a


def overlay(image_uint8, heat, alpha: float = 0.5, cmap: str = "jet", normalize: bool = True) -> np.ndarray:
    """Blend a heat map over a face → (H, W, 3) float RGB in [0, 1].

    ``heat`` (h, w) is resized (bilinear) to the image if needed; ``normalize`` min–max scales it
    to [0, 1] (a constant map becomes 0), otherwise it is clipped to [0, 1].
    """
    img = to_hwc(image_uint8).astype(np.float32) / 255.0
    h = torch.as_tensor(np.asarray(heat, dtype=np.float32))
    if h.dim() != 2:
        raise ValueError(f"heat map must be 2-D (h, w), got shape {tuple(h.shape)}")
    h = _upsample(h[None, None], img.shape[:2])[0].numpy()
    if normalize:
        lo, hi = float(h.min()), float(h.max())
        h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    colour = matplotlib.colormaps[cmap](np.clip(h, 0.0, 1.0))[..., :3]
    return np.clip((1.0 - alpha) * img + alpha * colour, 0.0, 1.0)


def _new_figure(figsize: tuple[float, float], pyplot: bool = True) -> Figure:
    """A constrained-layout figure; ``pyplot=False`` makes one that pyplot does not manage
    (never auto-displayed by the inline backend, never counted as an open figure)."""
    if pyplot:
        return plt.figure(figsize=figsize, layout="constrained")
    return Figure(figsize=figsize, layout="constrained")


def mosaic_figure(rows: Sequence[Sequence], col_titles: Sequence[str] | None = None,
                  row_titles: Sequence[str] | None = None, size: float = 1.3, gap: int = 4,
                  pyplot: bool = True) -> Figure:
    """Tiles of equal size (uint8 or float RGB, CHW or HWC) laid out row by row in ONE image Axes.

    One ``imshow`` instead of an Axes per tile keeps big grids fast to draw (the degradation
    explorer redraws on every slider change); column / row titles are the Axes' tick labels.
    """
    tiles = [[_as_float_hwc(t) for t in row] for row in rows]
    h, w = tiles[0][0].shape[:2]
    if any(t.shape[:2] != (h, w) for row in tiles for t in row):
        raise ValueError("all tiles of a mosaic must have the same size")
    nr, nc = len(tiles), max(len(r) for r in tiles)
    canvas = np.ones((nr * h + (nr - 1) * gap, nc * w + (nc - 1) * gap, 3), np.float32)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            canvas[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = t
    fig = _new_figure((size * nc, size * nr + (0.3 if col_titles else 0.0)), pyplot)
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="antialiased")
    ax.grid(False)
    ax.spines[:].set_visible(False)
    ax.tick_params(length=0, labelsize="small", labeltop=True, labelbottom=False)
    ax.set_xticks([j * (w + gap) + w / 2 for j in range(nc)] if col_titles else [],
                  list(col_titles) if col_titles else [])
    ax.set_yticks([i * (h + gap) + h / 2 for i in range(nr)] if row_titles else [],
                  list(row_titles) if row_titles else [])
    return fig


def _as_float_hwc(tile) -> np.ndarray:
    """A tile as (H, W, 3) float32 in [0, 1]; float HWC arrays (e.g. from :func:`overlay`) pass through."""
    if isinstance(tile, np.ndarray) and tile.dtype.kind == "f" and tile.ndim == 3 and tile.shape[-1] == 3:
        return tile.astype(np.float32, copy=False)
    return to_hwc(tile).astype(np.float32) / 255.0


def face_grid(images_uint8, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.4) -> Figure:
    """Faces in a grid (``ncols`` per row), each with its optional title. Returns the Figure."""
    x = as_batch(images_uint8)
    n = x.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = _new_figure((size * ncols, (size + (0.25 if titles is not None else 0.0)) * nrows))
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(to_hwc(x[i]))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize="small")
    return fig


def degradation_grid(images_uint8, scales: Sequence[float] = (1, 2, 4, 8), size: float = 1.4,
                     **degrade_kw) -> Figure:
    """Rows = faces, columns = the face degraded at each scale (×1 = the HR original).

    ``degrade_kw`` go to :func:`lqlib.degrade.degrade` (``degradation``, ``interpolation``, ``blur_sigma``, ...).
    """
    x = as_batch(images_uint8)
    copies = [degrade(x, s, **degrade_kw) for s in scales]
    rows = [[c[i] for c in copies] for i in range(x.shape[0])]
    return mosaic_figure(rows, ["HR (×1)" if s == 1 else scale_label(s) for s in scales], size=size)


def draw_attention(hr_images, lr_images, teacher_maps: np.ndarray, student_maps: np.ndarray,
                   stages: Sequence[int] | None = None, alpha: float = 0.5, cmap: str = "jet", size: float = 1.3,
                   pyplot: bool = True) -> Figure:
    """Draw precomputed, stage-aligned (S, B, H, W) maps: per face, HR | LR | then per stage
    teacher-on-HR (T), student-on-LR (S). ``stages``: the S stage labels (0-based; shown 1-based)."""
    hr, lr = as_batch(hr_images), as_batch(lr_images)
    if teacher_maps.shape[:2] != student_maps.shape[:2]:
        raise ValueError(f"teacher maps {teacher_maps.shape[:2]} and student maps {student_maps.shape[:2]} "
                         "differ in (stages, faces)")
    n_stages, n = teacher_maps.shape[:2]
    stages = list(range(n_stages)) if stages is None else list(stages)
    rows = [[hr[i], lr[i]] + [o for s in range(n_stages)
                              for o in (overlay(hr[i], teacher_maps[s, i], alpha, cmap),
                                        overlay(lr[i], student_maps[s, i], alpha, cmap))]
            for i in range(n)]
    heads = ["HR", "LR"] + [f"{who} stage {st + 1}" for st in stages for who in ("T", "S")]
    return mosaic_figure(rows, heads, size=size, pyplot=pyplot)


def attention_figure(teacher: nn.Module, student: nn.Module, hr_images, lr_images, alpha: float = 0.5,
                     cmap: str = "jet", size: float = 1.3) -> Figure:
    """The attention-map figure: rows = faces; columns = HR, LR, then per stage the teacher's spatial
    map on the HR face (T) beside the student's map on the LR face (S), for the stages both have
    (e.g. stages 2–4 for an IResNet teacher and a MobileFaceNet student). Returns the Figure."""
    stages, t_rows, s_rows = common_stages(teacher, student)
    t_maps = spatial_maps_by_stage(teacher, hr_images)[t_rows]
    s_maps = spatial_maps_by_stage(student, lr_images)[s_rows]
    return draw_attention(hr_images, lr_images, t_maps, s_maps, stages, alpha, cmap, size)


__all__ = ["infer", "embed_with_maps", "spatial_maps_by_stage", "block_similarity", "to_hwc", "overlay", "mosaic_figure", "face_grid",
           "degradation_grid", "draw_attention", "attention_figure"]
