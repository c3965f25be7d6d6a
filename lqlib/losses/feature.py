"""Hierarchical feature distillation: the feature half of HKDD (hierarchical KD + DKD).

The student's stage features (computed on the low-quality face) regress the teacher's stage
features (computed on the high-resolution face), stage by stage:

    L_hier = Σ_stages ‖ n(g_i(P(f_S,i))) − n(P(f_T,i)) ‖²₂ ,   batch-mean,

* g_i — a learnable connector: 1×1 conv (no bias) + BatchNorm from the student's to the teacher's
  channel count when they differ, identity when they match (same architecture). Connectors are
  built in ``from_models`` from ``student.stage_channels`` / ``teacher.stage_channels``; they are
  parameters of this term, so the optimiser must include ``composer.parameters()`` (they are
  trained with the student and discarded after training);
* P — adaptive average pooling of the larger map to the smaller spatial size (``match_spatial``);
* n — per-sample L2 normalisation of the flattened (C, H, W) feature. Chosen for scale invariance:
  an HR and an LR network (or two architectures) have feature norms that differ by large factors,
  and regressing raw activations would mostly teach the student to rescale. ‖·‖²₂ is summed over
  the feature (not averaged over its C·H·W elements), so each stage contributes a value in [0, 4]
  independent of its size — an element mean would shrink stage 1 of IR-100 (64·56·56 values) by
  2·10⁵ and weight the stages by their inverse size. With unit vectors the squared distance is
  2·(1 − cos), i.e. this is twice the stage part of the angular loss (``angular.py``); the two
  methods differ in their pairing with DKD and in angular's embedding term.

The seed gives no weighting for HKDD's feature term; the method ``hkdd`` uses weight 1.0 for it
(with DKD at weight 1): with 4 stages the term starts near 4·2·(1 − cos) ≲ 8 for unrelated
features and falls towards 0, the same order as DKD's T²-scaled value at T = 4.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.maps import match_spatial
from .base import STAGE_CHANNELS, KDTerm, ModelOutputs, Progress, register_kd


def make_connector(in_channels: int, out_channels: int) -> nn.Module:
    """1×1 conv + BN from ``in_channels`` to ``out_channels``; identity when they are equal."""
    if int(in_channels) == int(out_channels):
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(int(in_channels), int(out_channels), 1, bias=False),
                         nn.BatchNorm2d(int(out_channels)))


def stage_connectors(student_channels: Sequence[int] | None, teacher_channels: Sequence[int] | None) -> nn.ModuleList:
    """One connector per stage (identity everywhere when the channel lists are unknown or equal)."""
    if student_channels is None or teacher_channels is None:
        return nn.ModuleList()
    if len(student_channels) != len(teacher_channels):
        raise ValueError(f"student has {len(student_channels)} stages and teacher {len(teacher_channels)}")
    return nn.ModuleList(make_connector(s, t) for s, t in zip(student_channels, teacher_channels))


def flat_normalize(x: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 normalisation of the flattened tensor → (B, D)."""
    return F.normalize(x.flatten(1).float(), dim=1, eps=1e-8)


def paired_stage_features(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor],
                          connectors: nn.ModuleList, stages: Sequence[int] | None = None):
    """Yield (teacher (detached), connected student) per chosen stage, at a common spatial size."""
    if len(teacher_feats) != len(student_feats):
        raise ValueError(f"teacher has {len(teacher_feats)} stage features and student {len(student_feats)}")
    idx = list(range(len(student_feats))) if stages is None else list(stages)
    if not idx:
        raise ValueError("no stage features to distil (call the backbones with return_features=True)")
    for i in idx:
        t, s = match_spatial(teacher_feats[i].detach(), student_feats[i])
        if len(connectors):
            s = connectors[i](s)
        if s.shape[1] != t.shape[1]:
            raise ValueError(f"stage {i}: student has {s.shape[1]} channels and teacher {t.shape[1]}; build the term "
                             "with build_kd_term(..., student=, teacher=) so connectors are created")
        yield t, s


def hier_feature_loss(teacher_feats, student_feats, connectors: nn.ModuleList | None = None,
                      stages: Sequence[int] | None = None) -> torch.Tensor:
    """Σ_stages batch-mean ‖n(g(f_S)) − n(f_T)‖² (see the module docstring)."""
    terms = [(flat_normalize(s) - flat_normalize(t)).pow(2).sum(1).mean()
             for t, s in paired_stage_features(teacher_feats, student_feats, connectors or nn.ModuleList(), stages)]
    return torch.stack(terms).sum()


@register_kd("hierfeat")
class HierarchicalFeatureKD(KDTerm):
    """Stage-wise normalised feature regression with learnable 1×1 connectors (HKDD's feature term)."""

    needs = frozenset({"features"})

    def __init__(self, student_channels: Sequence[int] | None = None, teacher_channels: Sequence[int] | None = None,
                 stages: Sequence[int] | None = None):
        super().__init__()
        self.connectors = stage_connectors(student_channels, teacher_channels)
        self.stages = None if stages is None else [int(i) for i in stages]

    reads = STAGE_CHANNELS

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels, progress: Progress):
        return hier_feature_loss(teacher.features, student.features, self.connectors, self.stages)
