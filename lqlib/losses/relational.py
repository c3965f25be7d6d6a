"""Relational (similarity-preserving) distillation over the batch — works across architectures.

The teacher's knowledge is passed as the *geometry of the batch*: how similar every pair of faces
is, not where each embedding lies. Both models produce a B×B matrix, so the teacher and the student
may have different widths, embedding sizes or architectures (an external 128-d ResNet such as
``faceapi-resnet`` and a 512-d IResNet student), and no connector has to be learnt.

* ``kind="cosine"`` (default; the face-recognition form): G = N(e) N(e)ᵀ with N the row L2
  normalisation, i.e. the pairwise cosine similarities the verification protocol thresholds;
  loss = mean over the B(B−1) off-diagonal entries of (G_S − G_T)² (the diagonal is always 1).
* ``kind="sp"`` (Tung & Mori, ICCV 2019, "Similarity-preserving knowledge distillation"):
  G̃ = Q Qᵀ on the flattened activations Q, each *row* of G̃ L2-normalised, loss = ‖G_T − G_S‖²_F / B².

Teacher: HR faces, frozen; student: LR faces. Only embeddings are needed (``needs = {"embedding"}``);
labels are not used by the term (the composer still trains the student's margin head on them —
the "logit-free" set-up of an external teacher that has no classifier for our identities).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..precision import full_precision
from .base import KDTerm, ModelOutputs, Progress, register_kd

KINDS = ("cosine", "sp")


def similarity_matrix(x: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """B×B similarity of the rows of ``x`` (any trailing shape), float32 even under autocast."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    with full_precision(x.device.type):
        q = x.flatten(1).float()
        if kind == "cosine":
            q = F.normalize(q, dim=1, eps=1e-8)
            return q @ q.t()
        return F.normalize(q @ q.t(), dim=1, eps=1e-8)


def relational_kd(student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Distance between the batch similarity matrices of ``student`` and ``teacher`` (see the module doc)."""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student and teacher batches differ: {student.shape[0]} vs {teacher.shape[0]}")
    b = student.shape[0]
    if b < 2:
        raise ValueError("relational KD needs at least 2 samples per batch")
    gs, gt = similarity_matrix(student, kind), similarity_matrix(teacher.detach(), kind)
    diff2 = (gs - gt).pow(2)
    if kind == "cosine":
        off = ~torch.eye(b, dtype=torch.bool, device=diff2.device)
        return diff2[off].mean()
    return diff2.sum() / (b * b)


@register_kd("relational")
class RelationalKD(KDTerm):
    """Similarity-preserving KD on the embeddings (``kind`` = "cosine" | "sp")."""

    needs = frozenset({"embedding"})

    def __init__(self, kind: str = "cosine"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels: Optional[torch.Tensor],
                progress: Progress) -> torch.Tensor:
        return relational_kd(student.embedding, teacher.embedding, self.kind)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
