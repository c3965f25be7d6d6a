"""Angular distillation (ShrinkTeaNet, Duong et al. 2019, "ShrinkTeaNet: Million-scale lightweight
face recognition via shrinking teacher-student networks").

Only the *direction* of the teacher's representations is distilled, not their magnitude:

    L_ang = Σ_stages (1 − cos(P(f_T,i), g_i(P(f_S,i)))) + (1 − cos(e_T, h(e_S))),   batch-mean,

* stage features (teacher on the HR face, student on the LR face), cosine over the flattened
  (C, H, W) map of each sample, after the same pooling P (larger map → smaller size) and 1×1
  conv + BN connectors g_i as the hierarchical feature term (``feature.py``; identity when the
  channel counts match);
* e — the final embeddings; h is a learnable linear connector (no bias) when the embedding sizes
  differ (e.g. a 512-d teacher and a 128-d student), identity otherwise.

``stages=False`` keeps only the embedding term — the pure angular loss, usable with an external
teacher that exposes no features; ``stages=True`` (default) uses every stage the backbones
return; a list of indices picks stages. Different teacher/student architectures (ir_cbam_18 →
mobilefacenet or ir_cbam_tiny) are supported through the connectors, which are built in
``from_models`` and trained with the student (include ``composer.parameters()`` in the optimiser).
ShrinkTeaNet weights its terms equally; so does this module (weight 1 per term).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import EMBEDDING_SIZES, STAGE_CHANNELS, KDTerm, ModelOutputs, Progress, register_kd
from .feature import paired_stage_features, stage_connectors


def cosine_distance_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch mean of 1 − cos over the flattened samples (float32)."""
    return (1.0 - F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=1e-8)).mean()


def embedding_connector(student_size: int | None, teacher_size: int | None) -> nn.Module:
    if student_size is None or teacher_size is None or int(student_size) == int(teacher_size):
        return nn.Identity()
    return nn.Linear(int(student_size), int(teacher_size), bias=False)


def check_embedding_sizes(s: torch.Tensor, t: torch.Tensor):
    if s.shape[1] != t.shape[1]:
        raise ValueError(f"student embedding is {s.shape[1]}-d and teacher's {t.shape[1]}-d; build the term with "
                         "build_kd_term(..., student=, teacher=) (or pass the sizes) so a connector is created")


def embedding_angle_loss(connector: nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Batch mean of 1 − cos(e_T, connector(e_S)); the teacher side is detached."""
    es = connector(student.float())
    et = teacher.detach()
    check_embedding_sizes(es, et)
    return cosine_distance_rows(et, es)


@register_kd("angular")
class AngularKD(KDTerm):
    """ShrinkTeaNet's angular distillation over stage features (optional) and embeddings."""

    needs = frozenset({"features", "embedding"})
    matches_embedding = True

    def __init__(self, stages: bool | Sequence[int] = True, student_channels: Sequence[int] | None = None,
                 teacher_channels: Sequence[int] | None = None, student_embedding: int | None = None,
                 teacher_embedding: int | None = None):
        super().__init__()
        if isinstance(stages, bool):
            self.use_stages, self.stages = stages, None
        else:
            self.use_stages, self.stages = True, [int(i) for i in stages]
        if not self.use_stages:
            self.needs = frozenset({"embedding"})  # instance override: no features needed
        self.connectors = stage_connectors(student_channels, teacher_channels) if self.use_stages else nn.ModuleList()
        self.embed_connector = embedding_connector(student_embedding, teacher_embedding)

    reads = {**STAGE_CHANNELS, **EMBEDDING_SIZES}

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels, progress: Progress):
        loss = embedding_angle_loss(self.embed_connector, student.embedding, teacher.embedding)
        if self.use_stages:
            for t, s in paired_stage_features(teacher.features, student.features, self.connectors, self.stages):
                loss = loss + cosine_distance_rows(t, s)
        return loss
