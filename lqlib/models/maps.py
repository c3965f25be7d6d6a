"""Comparing two maps of the same kind (attention maps, stage features) between two models.

Shared by the attention/feature KD terms (:mod:`lqlib.losses`) and the figures that show how close a
student's maps are to its teacher's (:mod:`lqlib.viz`), so drawing never depends on training losses:
both read the one definition here, next to the backbone contract (:mod:`lqlib.models.interface`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch mean of 1 − cos(a_k, b_k) over flattened samples k."""
    return (1.0 - F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=1e-8)).mean()


def pearson_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation r_k of the flattened maps of every sample k, shape ``[B]``: each map is
    centred on its own mean, then the cosine is taken. Unlike the cosine of two positive (sigmoid)
    maps, which is close to 1 whatever they show, r is 1 only when the maps rise and fall together,
    −1 when one is the other's mirror image, and 0 when a map is constant (nothing to correlate)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return F.cosine_similarity(a, b, dim=1, eps=1e-8)


def pearson_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch mean of 1 − r(a_k, b_k) (:func:`pearson_per_sample`), in [0, 2]."""
    return (1.0 - pearson_per_sample(a, b)).mean()


# what a map-comparing term measures: name → batch-mean distance
MAP_DISTANCES = {"cosine": cosine_distance, "pearson": pearson_distance}


def match_spatial(t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool the larger of two (B, C, H, W) maps to the smaller's size."""
    if t.shape[-2:] == s.shape[-2:]:
        return t, s
    size = (min(t.shape[-2], s.shape[-2]), min(t.shape[-1], s.shape[-1]))
    return F.adaptive_avg_pool2d(t, size), F.adaptive_avg_pool2d(s, size)


__all__ = ["cosine_distance", "pearson_distance", "pearson_per_sample", "match_spatial", "MAP_DISTANCES"]


def paired_maps(teacher_maps, student_maps, pairing, kind: str):
    """Yield ``(teacher map, student map)`` for each ``(teacher block, student block)`` of ``pairing``: the
    ``kind`` ("spatial" / "channel") map of each block as float32 on the CPU, spatial maps pooled to the
    smaller size (:func:`match_spatial`); a missing map or channel maps of different widths are errors."""
    for ti, si in pairing:
        t, s = getattr(teacher_maps[ti], kind), getattr(student_maps[si], kind)
        if t is None or s is None:
            raise ValueError(f"no {kind} attention map at teacher block {ti} / student block {si}")
        t, s = t.float().cpu(), s.float().cpu()
        if kind == "spatial":
            t, s = match_spatial(t, s)
        elif t.shape[1] != s.shape[1]:
            raise ValueError(f"channel maps differ in width ({t.shape[1]} vs {s.shape[1]}) at blocks {ti}/{si}")
        yield t, s
