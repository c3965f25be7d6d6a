"""Activation-based attention transfer, AT (Zagoruyko & Komodakis, ICLR 2017).

For a stage feature map f (B, C, H, W) the spatial attention map is the channel mean of the squared
activations, flattened and L2-normalised per sample:

    a(f) = normalize( mean_c f² ).flatten()          (B, H·W), ‖a(f)_k‖₂ = 1

and the loss over the backbone's stage features (teacher on the HR face, student on the LR face) is

    L_AT = β · Σ_stages mean_{batch, positions} ( a(f_T) − a(f_S) )²

i.e. for every stage the *mean* of the squared difference over the batch and over the H·W
positions, as in the official code (``at_loss(x, y) = (at(x) - at(y)).pow(2).mean()``, summed over
the groups and multiplied by ``opt.beta``), with the official default β = 1000 (README:
``--beta 1e+3``; mdistiller uses the same β as ``FEAT_WEIGHT``). The paper's equation writes β/2
and a non-squared p-norm; the code (and this module) use β·mean of squares, so the method's
weight is 1 and β lives inside the term. Note that the per-stage value scales like 1/(H·W): the
official choice, which keeps the deep (small) stages from being drowned by the large ones' sums.

Different spatial sizes (another architecture, or a student with another input size): the f² map
of the larger one is adaptively average-pooled to the smaller size *before* the normalisation
(pooling the energy map, not the features, so cancelling activations of opposite sign do not
vanish). Channel counts may differ (the channel mean removes them), so AT works across
architectures without connectors. The teacher's maps are detached.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .base import KDTerm, ModelOutputs, Progress, register_kd


def attention_energy(f: torch.Tensor) -> torch.Tensor:
    """mean_c f² as a (B, 1, H, W) map (before pooling and normalisation)."""
    return f.float().pow(2).mean(dim=1, keepdim=True)


def at_map(f: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """a(f): the (B, H·W) L2-normalised spatial attention of a (B, C, H, W) map, optionally pooled to ``size``."""
    q = attention_energy(f)
    if size is not None and tuple(q.shape[-2:]) != tuple(size):
        q = F.adaptive_avg_pool2d(q, size)
    return F.normalize(q.flatten(1), dim=1, eps=1e-12)


def at_stage_loss(f_t: torch.Tensor, f_s: torch.Tensor) -> torch.Tensor:
    """mean over batch and positions of (a(f_T) − a(f_S))², maps pooled to the smaller size."""
    size = (min(f_t.shape[-2], f_s.shape[-2]), min(f_t.shape[-1], f_s.shape[-1]))
    return (at_map(f_t.detach(), size) - at_map(f_s, size)).pow(2).mean()


def at_loss(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor], beta: float = 1000.0,
            stages: Sequence[int] | None = None) -> torch.Tensor:
    """β · Σ over the chosen stages of :func:`at_stage_loss`."""
    if len(teacher_feats) != len(student_feats):
        raise ValueError(f"teacher has {len(teacher_feats)} stage features and student {len(student_feats)}")
    idx = range(len(student_feats)) if stages is None else stages
    terms = [at_stage_loss(teacher_feats[i], student_feats[i]) for i in idx]
    if not terms:
        raise ValueError("no stage features to distil (call the backbones with return_features=True)")
    return beta * torch.stack(terms).sum()


@register_kd("at")
class AttentionTransfer(KDTerm):
    """AT on the stage features; ``beta`` (default 1000, the official value) is inside the term.

    ``stages`` selects stage indices (default: all the backbone returns, i.e. the 4 stages).
    """

    needs = frozenset({"features"})

    def __init__(self, beta: float = 1000.0, stages: Sequence[int] | None = None):
        super().__init__()
        if not (beta >= 0):
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)
        self.stages = None if stages is None else [int(i) for i in stages]

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels, progress: Progress):
        return at_loss(teacher.features, student.features, self.beta, self.stages)
