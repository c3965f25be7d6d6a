"""Decoupled knowledge distillation, DKD (Zhao et al., CVPR 2022).

With p = softmax(z/T) over the classes and t the target class of a sample:

* binary probabilities b = (p_t, 1 − p_t)  (target vs. all non-targets);
* non-target distribution p̂_j = p_j / (1 − p_t) for j ≠ t  (= softmax over the non-target logits);
* TCKD = KL(b_T ‖ b_S),  NCKD = KL(p̂_T ‖ p̂_S);

    L_DKD = w(progress) · T² · (α·TCKD + β·NCKD),   batch-mean,

with the classical KD decomposing as KL(p_T ‖ p_S) = TCKD + (1 − p_t^T)·NCKD (the paper's Eq. 3;
tested as a golden identity). Defaults α = 1, β = 8, T = 4 (the paper's CIFAR-100 setting, which
the seed names). The official code builds p̂ by subtracting 1000 from the target logit before the
softmax; here the non-target log-softmax is computed exactly (``logsumexp`` over the masked
logits) and b from ``log_softmax`` (log p_t) and ``logsumexp`` over non-targets (log(1 − p_t)),
which is the same value without underflow for the large s=64 margin logits.

Warm-up: the official code multiplies the loss by ``min(epoch / warmup, 1)`` (epoch 1-based,
``warmup=20`` on CIFAR-100 (240 epochs), 1 on ImageNet (100 epochs)). Here the factor is
``w = min(progress.epochs_done / warmup_epochs, 1)`` with the *fractional* epoch (0 at the very
first step, so the term is off then and ramps up linearly); ``warmup_epochs=0`` disables it.
Default ``warmup_epochs=5``: β = 8 makes NCKD large while the student's margin head is still
far from the teacher's (a freshly initialised or freshly degraded student), and face-recognition
schedules are short (≈20–25 epochs on MS1MV2-sized sets), so ≈ 20–25 % of training lets the CE
settle first, the same role DKD's 20/240 CIFAR warm-up plays; lower it for short runs (a 2-epoch
notebook run would otherwise never reach full weight).

``source="margin"`` distils the margin-head logits (target logit with the ArcFace margin, as the
logit KD of this project does); ``"plain"`` distils s·cosθ. The hard-label CE is not included
(``includes_ce=False``): the composer adds it.
"""
from __future__ import annotations

import torch

from .base import KDTerm, ModelOutputs, Progress, register_kd


def _log_binary_and_nontarget(z: torch.Tensor, labels: torch.Tensor, T: float):
    """(log b (B, 2), log p̂ (B, K) with 0 at the target, target mask (B, K)) at temperature T."""
    z = z.float() / T
    mask = torch.zeros_like(z, dtype=torch.bool).scatter_(1, labels.view(-1, 1).long(), True)
    lse_all = torch.logsumexp(z, dim=1, keepdim=True)
    lse_nt = torch.logsumexp(z.masked_fill(mask, float("-inf")), dim=1, keepdim=True)
    log_pt = z.gather(1, labels.view(-1, 1).long()) - lse_all
    log_b = torch.cat([log_pt, lse_nt - lse_all], dim=1)
    log_hat = torch.where(mask, torch.zeros_like(z), z - lse_nt)
    return log_b, log_hat, mask


def dkd_parts(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, T: float = 4.0,
              reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD) at temperature T without the T² factor; ``reduction`` "mean" (batch) or "none"."""
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    if labels is None:
        raise ValueError("DKD needs the class labels (the target class splits the distribution)")
    if student_logits.shape[1] < 2:
        raise ValueError("DKD needs at least 2 classes")
    lb_s, lh_s, mask = _log_binary_and_nontarget(student_logits, labels, T)
    lb_t, lh_t, _ = _log_binary_and_nontarget(teacher_logits, labels, T)
    tckd = (lb_t.exp() * (lb_t - lb_s)).sum(1)
    q_t = lh_t.exp().masked_fill(mask, 0.0)
    nckd = (q_t * (lh_t - lh_s)).sum(1)
    if reduction == "none":
        return tckd, nckd
    if reduction != "mean":
        raise ValueError("reduction must be 'mean' or 'none'")
    return tckd.mean(), nckd.mean()


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             alpha: float = 1.0, beta: float = 8.0, T: float = 4.0) -> torch.Tensor:
    """T²·(α·TCKD + β·NCKD), batch-mean, no warm-up."""
    tckd, nckd = dkd_parts(student_logits, teacher_logits, labels, T)
    return T * T * (alpha * tckd + beta * nckd)


def warmup_factor(progress: Progress | None, warmup_epochs: float) -> float:
    """min(epochs_done / warmup_epochs, 1); 1 when warm-up is disabled (``warmup_epochs <= 0``)."""
    if warmup_epochs <= 0:
        return 1.0
    done = 0.0 if progress is None else float(progress.epochs_done)
    return min(max(done, 0.0) / warmup_epochs, 1.0)


@register_kd("dkd")
class DKD(KDTerm):
    """DKD on the margin (or plain) logits with a linear warm-up; see the module docstring."""

    needs = frozenset({"logits"})

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, T: float = 4.0, warmup_epochs: float = 5.0,
                 source: str = "margin"):
        super().__init__()
        if source not in ("margin", "plain"):
            raise ValueError("source must be 'margin' or 'plain'")
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        if alpha < 0 or beta < 0 or warmup_epochs < 0:
            raise ValueError("alpha, beta and warmup_epochs must be >= 0")
        self.alpha, self.beta, self.T = float(alpha), float(beta), float(T)
        self.warmup_epochs, self.source = float(warmup_epochs), source

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels, progress: Progress):
        zs = student.logits if self.source == "margin" else student.plain_logits
        zt = teacher.logits if self.source == "margin" else teacher.plain_logits
        if zs is None or zt is None:
            raise ValueError(f"DKD(source={self.source!r}) needs the {self.source} logits of both models")
        w = warmup_factor(progress, self.warmup_epochs)
        return w * dkd_loss(zs, zt.detach(), labels, self.alpha, self.beta, self.T)
