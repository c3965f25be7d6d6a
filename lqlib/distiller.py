"""The distiller (mdistiller's ``Distiller``): student, margin head, KD terms and the frozen teacher.

One training step of a low-quality student, as one module so DDP sees one graph::

    hr (uint8, device) ─► flip ─► [face-content replacement] ─┬─► normalize ─► teacher (frozen, eval) ─► t_out
                                                               └─► degrade ─► normalize ─► student ─► head ─► s_out
    (total, {term: value}) = composer(s_out, t_out, labels)

The teacher always sees the high-resolution batch and the student its degraded copy (a test fails
if they are swapped). A teacher role (the HR teacher itself, BasicNet-HR) trains on ``hr`` with no
teacher and no degradation. The teacher is pinned to eval mode and runs under ``no_grad`` (not
``inference_mode``: cosine terms save its outputs for the student's backward). A
:class:`~lqlib.teachers.cache.TeacherEmbeddingCache` stands in for the teacher when the terms need
only its embeddings: ``index`` (the samples' dataset indices) and the flip pick the cached rows, and
only the faces that face-content replacement changed in this step go through the live teacher. A
:class:`~lqlib.teachers.outputs.TeacherOutputCache` stands in for an own (lqlib) teacher when the terms
need only its embedding, logits and attention maps and the HR faces are not changed (the margin
head runs on the cached embedding, so the logits are the live ones). Loading the frozen teacher and
choosing its cache: :mod:`lqlib.teacher_loading`.
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
from .teachers import outputs as teacher_outputs


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, head: nn.Module, composer: LossComposer, *,
                 teacher: Optional[nn.Module] = None, teacher_head: Optional[nn.Module] = None,
                 teacher_cache=None, role: str = "student", scales: float | Sequence[float] = (2, 4, 8),
                 degradation: str = "paper", hflip: bool = True, face_content_replacement: float = 0.0,
                 channels_last: bool = True):
        super().__init__()
        if role not in ("teacher", "student"):
            raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
        self.student, self.head, self.composer = student, head, composer
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.teacher_head = teacher_head.eval().requires_grad_(False) if teacher_head is not None else None
        self.teacher_cache = teacher_cache
        self.role, self.scales, self.degradation = role, scales, degradation
        self.hflip, self.fcr = bool(hflip), float(face_content_replacement)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        needs = composer.needs
        self.want_att, self.want_feat = "attention" in needs, "features" in needs
        if composer.needs_teacher and teacher is None and teacher_cache is None:
            raise ValueError("these KD terms need a teacher (a run directory or an external teacher)")
        serves = getattr(teacher_cache, "serves", frozenset({"embedding"}))
        if teacher_cache is not None and not self.composer.needs <= serves:
            what = "embedding-only terms" if serves == {"embedding"} else f"terms that need only {sorted(serves)}"
            raise ValueError(f"a {type(teacher_cache).__name__} serves {what}; these terms need {sorted(needs)}")
        if teacher_cache is not None and self.fcr > 0 and (teacher is None or self._output_cache):
            raise ValueError("face-content replacement changes HR faces: the live teacher must see those")

    @property
    def _output_cache(self) -> bool:
        return isinstance(self.teacher_cache, teacher_outputs.TeacherOutputCache)

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        for m in (self.teacher, self.teacher_head):
            if m is not None:
                m.eval()  # frozen: BN statistics and dropout stay in eval mode
        return self

    # ------------------------------------------------------------------------------ the HR/LR split
    def inputs(self, hr: torch.Tensor, generator: torch.Generator | None):
        """``(hr, student_input, flipped, replaced)``: the augmented HR batch the teacher sees, the
        (degraded) uint8 batch the student sees, which images were flipped and which had a facial
        region replaced."""
        b = hr.shape[0]
        flipped = torch.zeros(b, dtype=torch.bool, device=hr.device)
        replaced = torch.zeros(b, dtype=torch.bool, device=hr.device)
        if self.hflip:
            flipped = torch.rand(b, generator=generator, device=hr.device) < 0.5
            hr = torch.where(flipped[:, None, None, None], hr.flip(-1), hr)
        if self.fcr > 0:
            hr, choices = face_content_replacement(hr, generator=generator, p=self.fcr)
            replaced = choices.applied.to(hr.device)
        if self.role == "teacher":
            return hr, hr, flipped, replaced
        return hr, degrade(hr, self.scales, degradation=self.degradation, generator=generator), flipped, replaced

    def _prepare(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(images_uint8).contiguous(memory_format=self.memory_format)

    def teacher_outputs(self, hr: torch.Tensor, labels: torch.Tensor, flipped: torch.Tensor,
                        replaced: torch.Tensor, index: torch.Tensor | None) -> Optional[ModelOutputs]:
        if not self.composer.needs_teacher:
            return None
        if self.teacher_cache is not None:
            if index is None:
                raise ValueError("a teacher cache needs the samples' dataset indices")
            if self._output_cache:
                lab = labels if "logits" in self.composer.needs else None
                return self.teacher_cache.outputs(index.to(hr.device), flipped, lab, self.teacher_head)
            emb = self.teacher_cache.lookup(index, flipped).to(hr.device)
            if self.fcr > 0 and bool(replaced.any()):  # changed faces: the live teacher embeds them
                with torch.no_grad():
                    live = self.teacher(self._prepare(hr[replaced])).float()
                if self.teacher_cache.mean is not None:
                    live = live - self.teacher_cache.mean.to(live.device)
                emb = emb.index_put((replaced.nonzero()[:, 0],), live)
            return ModelOutputs(emb)
        needs = self.composer.needs
        with torch.no_grad():
            return forward_outputs(self.teacher, self.teacher_head, self._prepare(hr), labels,
                                   "attention" in needs, "features" in needs, "logits" in needs)

    def forward(self, hr_uint8: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None,
                progress: Progress, index: torch.Tensor | None = None):
        """One step's loss: ``(total, {term: value})`` (call it under the trainer's autocast)."""
        with full_precision(hr_uint8.device.type):  # augmentation and degradation are data, not network
            hr, x_student, flipped, replaced = self.inputs(hr_uint8, generator)
        teacher_out = self.teacher_outputs(hr, labels, flipped, replaced, index)
        lab = labels if self.composer.needs_labels else None
        out = forward_outputs(self.student, self.head, self._prepare(x_student), lab, self.want_att, self.want_feat)
        return self.composer(out, teacher_out, lab, progress)
