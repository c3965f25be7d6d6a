"""Logit distillation (Hinton et al. 2015) on margin-head logits, as in the KD-for-LQ-FR paper.

    L_logit = λ·CE(z_S, y) + (1 − λ)·T²·KL(softmax(z_T/T) ‖ softmax(z_S/T))

batch-mean; the T² factor keeps the soft term's gradient scale independent of T.

The paper's total loss (Eq. 12) is L = L_ArcFace + L_logit + L_att: the ArcFace CE keeps weight 1
and L_logit is *added* with its own λ·CE (Eqs. 6–8), so a student trained with ``logit`` sees a hard
CE of total weight 1 + λ. That is the default (``replace_ce=False``). Hinton's original form, where
λ·CE + (1−λ)·T²·KL *replaces* the CE (CE weight λ), is the named variant ``logit_hinton``
(``replace_ce=True``). :attr:`LogitKD.ce_weight` reports the CE weight inside the term so the
composer can print each method's effective CE weight.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import KDTerm, ModelOutputs, Progress, register_kd


def kl_teacher_student(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) per batch (mean over samples), no T² factor."""
    log_p_s = F.log_softmax(student_logits.float() / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / T, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             T: float = 4.0, lam: float = 0.5) -> torch.Tensor:
    """λ·CE(student, labels) + (1−λ)·T²·KL(teacher ‖ student) at temperature T, batch-mean."""
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    ce = F.cross_entropy(student_logits.float(), labels)
    return lam * ce + (1.0 - lam) * T * T * kl_teacher_student(student_logits, teacher_logits, T)


@register_kd("logit")
class LogitKD(KDTerm):
    """The paper's logit KD term λ·CE + (1−λ)·T²·KL, added to the base ArcFace CE (Eq. 12).

    ``source="margin"`` distils the ArcFace logits (margin on the target class, the paper's
    choice); ``"plain"`` distils s·cosθ. ``replace_ce=True``: the term replaces the base CE
    (Hinton's form, method ``logit_hinton``).
    """

    needs = frozenset({"logits"})

    def __init__(self, T: float = 4.0, lam: float = 0.5, source: str = "margin", replace_ce: bool = False):
        super().__init__()
        if source not in ("margin", "plain"):
            raise ValueError("source must be 'margin' or 'plain'")
        self.T, self.lam, self.source = float(T), float(lam), source
        self.includes_ce = bool(replace_ce)

    @property
    def ce_weight(self) -> float:
        return self.lam

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels, progress: Progress):
        zs = student.logits if self.source == "margin" else student.plain_logits
        zt = teacher.logits if self.source == "margin" else teacher.plain_logits
        if self.source == "plain":  # the hard term always uses the margin logits
            ce = F.cross_entropy(student.logits.float(), labels)
            return self.lam * ce + (1 - self.lam) * self.T**2 * kl_teacher_student(zs, zt.detach(), self.T)
        return logit_kd(zs, zt.detach(), labels, self.T, self.lam)
