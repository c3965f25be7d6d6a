"""The distiller (mdistiller's ``Distiller``): student, margin head, KD terms and the frozen teacher.

One training step of a low-quality student, as one module so DDP sees one graph::

    hr (uint8, device) ─► flip ─► [face-content replacement] ─┬─► normalize ─► teacher (frozen, eval) ─► t_out
                                                               └─► degrade ─► normalize ─► student ─► head ─► s_out
    (total, {term: value}) = composer(s_out, t_out, labels)

The teacher always sees the high-resolution batch and the student its degraded copy (a test fails
if they are swapped). A teacher role (the HR teacher itself, BasicNet-HR) trains on ``hr`` with no
teacher and no degradation. The teacher is pinned to eval mode and runs under ``no_grad`` (not
``inference_mode``: cosine terms save its outputs for the student's backward). A
:class:`~lqlib.teachers.cache.TeacherEmbeddingCache` can stand in for the teacher when the terms
need only its embeddings of unmodified HR images (then ``index`` — the samples' dataset indices —
selects the cached rows).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .augment import face_content_replacement
from .degrade import degrade
from .images import normalize
from .losses import LossComposer, ModelOutputs, Progress
from .models.interface import forward_outputs
from .precision import full_precision


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, head: nn.Module, composer: LossComposer, *,
                 teacher: Optional[nn.Module] = None, teacher_head: Optional[nn.Module] = None,
                 teacher_cache=None, role: str = "student", scales: float | Sequence[float] = (2, 4, 8),
                 degrade_preset: str = "paper", hflip: bool = True, face_content_replacement: float = 0.0,
                 channels_last: bool = True):
        super().__init__()
        if role not in ("teacher", "student"):
            raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
        self.student, self.head, self.composer = student, head, composer
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.teacher_head = teacher_head.eval().requires_grad_(False) if teacher_head is not None else None
        self.teacher_cache = teacher_cache
        self.role, self.scales, self.degrade_preset = role, scales, degrade_preset
        self.hflip, self.fcr = bool(hflip), float(face_content_replacement)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        needs = composer.needs
        self.want_att, self.want_feat = "attention" in needs, "features" in needs
        if composer.needs_teacher and teacher is None and teacher_cache is None:
            raise ValueError("these KD terms need a teacher (a run directory or an external teacher)")
        if teacher_cache is not None and not self.cache_covers_step:
            raise ValueError(f"a teacher-embedding cache serves embedding-only terms on unmodified HR images; "
                             f"these terms need {sorted(needs)} (face-content replacement p={self.fcr})")

    @property
    def cache_covers_step(self) -> bool:
        return self.composer.needs <= {"embedding"} and self.fcr == 0

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        for m in (self.teacher, self.teacher_head):
            if m is not None:
                m.eval()  # frozen: BN statistics and dropout stay in eval mode
        return self

    # ------------------------------------------------------------------------------ the HR/LR split
    def inputs(self, hr: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(hr, student_input, flipped)``: the augmented HR batch the teacher sees, the (degraded)
        uint8 batch the student sees, and which images were flipped."""
        flipped = torch.zeros(hr.shape[0], dtype=torch.bool, device=hr.device)
        if self.hflip:
            flipped = torch.rand(hr.shape[0], generator=generator, device=hr.device) < 0.5
            hr = torch.where(flipped[:, None, None, None], hr.flip(-1), hr)
        if self.fcr > 0:
            hr = face_content_replacement(hr, generator=generator, p=self.fcr)[0]
        if self.role == "teacher":
            return hr, hr, flipped
        return hr, degrade(hr, self.scales, preset=self.degrade_preset, generator=generator), flipped

    def _prepare(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(images_uint8).contiguous(memory_format=self.memory_format)

    def teacher_outputs(self, hr: torch.Tensor, labels: torch.Tensor, flipped: torch.Tensor,
                        index: torch.Tensor | None) -> Optional[ModelOutputs]:
        if not self.composer.needs_teacher:
            return None
        if self.teacher_cache is not None:
            if index is None:
                raise ValueError("a teacher-embedding cache needs the samples' dataset indices")
            return ModelOutputs(self.teacher_cache.lookup(index, flipped).to(hr.device))
        needs = self.composer.needs
        with torch.no_grad():
            return forward_outputs(self.teacher, self.teacher_head, self._prepare(hr), labels,
                                   "attention" in needs, "features" in needs, "logits" in needs)

    def forward(self, hr_uint8: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None,
                progress: Progress, index: torch.Tensor | None = None):
        """One step's loss: ``(total, {term: value})`` (call it under the trainer's autocast)."""
        with full_precision(hr_uint8.device.type):  # augmentation and degradation are data, not network
            hr, x_student, flipped = self.inputs(hr_uint8, generator)
        teacher_out = self.teacher_outputs(hr, labels, flipped, index)
        lab = labels if self.composer.needs_labels else None
        out = forward_outputs(self.student, self.head, self._prepare(x_student), lab, self.want_att, self.want_feat)
        return self.composer(out, teacher_out, lab, progress)
