"""Attention-map distillation between teacher (HR input) and student (LR input).

For each block i and each map kind (channel, spatial): ρ = 1 − cos(teacher map, student map),
cosine over the flattened map of each sample, averaged over the batch (``measure="cosine"``, the
paper's). ``measure="pearson"`` (the term ``attention_c``) centres each map on its own mean first:
ρ = 1 − Pearson r, in [0, 2]. Two positive sigmoid maps have a cosine near 1 whatever they show, so
the paper's ρ is small even for maps that disagree; the centred ρ is small only when the teacher's and
the student's maps rise and fall together. Reductions:

* ``paper`` — Σ_i (ρ_c + ρ_s)/2 (the KD-for-LQ-FR paper);
* ``askd``  — Σ_i (ρ_c + ρ_s) (A-SKD, Shin et al. ECCV 2022);
* ``mean``  — the average of all ρ over blocks and both kinds.

Blocks whose attention has only one kind (SE, ECA) use the maps that exist (``paper`` averages the
available kinds). Spatial maps of different sizes are adaptively average-pooled to the smaller.
When teacher and student have different numbers of blocks, pass ``pairing`` (teacher index,
student index); :func:`stage_pairing` builds one from the models' ``block_stage``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..models.interface import block_stage, stage_pairing
from ..models.maps import MAP_DISTANCES, match_spatial
from .base import KDTerm, ModelOutputs, Progress, register_kd

REDUCTIONS = ("paper", "askd", "mean")


def attention_kd(teacher_maps: Sequence, student_maps: Sequence, reduction: str = "paper",
                 pairing: Sequence[tuple[int, int]] | None = None, measure: str = "cosine") -> torch.Tensor:
    """Attention KD loss over per-block ``(channel, spatial)`` maps (see the module docstring)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if measure not in MAP_DISTANCES:
        raise ValueError(f"measure must be one of {tuple(MAP_DISTANCES)}, got {measure!r}")
    distance = MAP_DISTANCES[measure]
    if pairing is None:
        if len(teacher_maps) != len(student_maps):
            raise ValueError(f"teacher has {len(teacher_maps)} attention blocks and student {len(student_maps)}: "
                             "pass pairing= (see stage_pairing)")
        pairing = [(i, i) for i in range(len(student_maps))]
    if not pairing:
        raise ValueError("no attention maps to distil (backbone built with attention='none'?)")
    per_block, all_rho = [], []
    for ti, si in pairing:
        (tc, ts), (sc, ss) = teacher_maps[ti], student_maps[si]
        rhos = []
        if tc is not None and sc is not None:
            if tc.shape[1] != sc.shape[1]:
                raise ValueError(f"channel maps differ in width ({tc.shape[1]} vs {sc.shape[1]}) at blocks {ti}/{si}; "
                                 "channel attention can only be distilled between equal widths")
            rhos.append(distance(tc.detach(), sc))
        if ts is not None and ss is not None:
            t, s = match_spatial(ts.detach(), ss)
            rhos.append(distance(t, s))
        if not rhos:
            continue
        all_rho += rhos
        block = torch.stack(rhos)
        per_block.append(block.mean() if reduction == "paper" else block.sum())
    if not per_block:
        raise ValueError("teacher and student share no attention map kind")
    if reduction == "mean":
        return torch.stack(all_rho).mean()
    return torch.stack(per_block).sum()


@register_kd("attention")
class AttentionKD(KDTerm):
    """The paper's attention KD (``reduction="paper"``); A-SKD uses ``reduction="askd"``."""

    needs = frozenset({"attention"})

    measure = "cosine"

    def __init__(self, reduction: str = "paper", pairing: Sequence[tuple[int, int]] | None = None):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.pairing = None if pairing is None else [tuple(p) for p in pairing]

    @classmethod
    def from_models(cls, student=None, teacher=None, **params):
        if "pairing" not in params and student is not None and teacher is not None:
            tb, sb = block_stage(teacher), block_stage(student)
            if tb is not None and sb is not None and len(tb) != len(sb):
                params["pairing"] = stage_pairing(tb, sb)
        return cls(**params)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels, progress: Progress):
        return attention_kd(teacher.attention, student.attention, self.reduction, self.pairing, self.measure)


@register_kd("attention_c")
class CentredAttentionKD(AttentionKD):
    """Attention KD with centred maps: ρ = 1 − Pearson r of the teacher's and the student's channel
    and spatial maps (``measure="pearson"``), reduced like the paper's term."""

    measure = "pearson"
