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
head runs on the cached embedding, so the logits are the live ones).
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import torch
from torch import nn

from . import paths
from .augment import face_content_replacement
from .checkpoint import checkpoint_path, is_finished, load_trained, teacher_identity
from .data.memory import DecodedDataset
from .degrade import degrade
from .images import normalize
from .losses import LossComposer, ModelOutputs, Progress
from .models.interface import forward_outputs
from .precision import full_precision
from .store import tensor_digest
from .teachers import is_external_teacher
from .teachers import outputs as teacher_outputs
from .teachers.cache import TeacherEmbeddingCache


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


# ------------------------------------------------------------------------------ the frozen teacher
def load_teacher(spec: Any, device: torch.device) -> tuple[nn.Module, Optional[nn.Module]]:
    """The frozen teacher (backbone, head or None) named by ``spec``: a run directory (which must hold
    a finished training run), an external teacher (registered name, ``.onnx``, spec ``.json``), a
    ``(backbone, head)`` tuple or a bare backbone."""
    if isinstance(spec, (str, os.PathLike)) and is_external_teacher(spec):
        from .teachers import build_teacher

        backbone, head = build_teacher(spec), None
    elif isinstance(spec, (str, os.PathLike)):
        run = paths.resolve(spec)
        if not is_finished(run):
            state = "has no checkpoint" if not checkpoint_path(run).is_file() else "has not finished training"
            raise ValueError(f"teacher run {run} {state}: train the teacher first (01_teacher_training), "
                             "then its students")
        backbone, head, _ = load_trained(run)
    elif isinstance(spec, tuple):
        backbone, head = spec
    else:  # a bare backbone (external teacher): no head, no logits
        backbone, head = spec, None
    backbone = backbone.to(device).eval().requires_grad_(False)
    return backbone, (head.to(device).eval().requires_grad_(False) if head is not None else None)


def teacher_fingerprint(spec: Any, teacher: nn.Module) -> Optional[dict]:
    """What identifies a frozen teacher's outputs — its weights' content, never only their path
    (:func:`lqlib.checkpoint.teacher_identity`: a run's checkpoint SHA-256, a file teacher's SHA-256 —
    ``.onnx``, spec ``.json`` + its weights — or a registered name) with an external teacher's spec
    (a registered teacher's records its sources' SHA-256); None for a teacher object passed in directly."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    ts = getattr(teacher, "spec", None) if is_external_teacher(spec) else None
    return {"identity": teacher_identity(spec), "spec": ts.to_dict() if ts is not None else None}


def teacher_cache_for(want, spec: Any, teacher: nn.Module, composer: LossComposer, dataset, data_key: Optional[dict],
                      device: torch.device, amp: str, log=None, center: bool = False, *,
                      teacher_head: Optional[nn.Module] = None, face_content_replacement: float = 0.0,
                      amp_dtype: Optional[torch.dtype] = None):
    """The teacher cache a student reads instead of running its frozen teacher, or None (live teacher).

    * embedding-only KD terms: cached teacher embeddings (``want="auto"``, or always with ``want=True``
      or ``center``: an error where impossible), built once per (teacher, data) with
      :func:`lqlib.evaluation.embed` — :mod:`lqlib.teachers.cache`; ``center`` subtracts the
      training-set mean of the teacher's embeddings from every target;
    * terms that need only the embedding, logits and attention maps of an own (lqlib) teacher, with
      no face-content replacement: its cached outputs (:mod:`lqlib.teachers.outputs`), stored per
      (teacher, data, precision) — with ``want="auto"`` only for a teacher run (a stable identity,
      so every student of that teacher reuses the file), with ``want=True`` also in memory.
    """
    needs = composer.needs
    in_memory = isinstance(dataset, DecodedDataset)
    usable = composer.needs_teacher and needs <= {"embedding"} and in_memory
    outputs_usable = (composer.needs_teacher and not usable and needs <= teacher_outputs.SERVES and in_memory
                      and not center and float(face_content_replacement) == 0.0 and not is_external_teacher(spec)
                      and ("logits" not in needs or teacher_head is not None))
    want = True if center else want
    if want is True and not (usable or outputs_usable):
        raise ValueError(f"teacher_cache=True: these KD terms need {sorted(needs)} from the teacher (a cache serves "
                         "embedding-only terms, or an own teacher's embedding, logits and attention maps without "
                         "face-content replacement), or the training set is not held in memory")
    if want not in ("auto", True) or not (usable or outputs_usable):
        return None
    key = teacher_fingerprint(spec, teacher)
    if key is not None:  # data without a description (synthetic sets) is keyed by its pixels
        data = data_key if data_key is not None else {"images_sha256": tensor_digest(dataset.images)}
        key = {"teacher": key, "amp": amp, "data": data}
    if outputs_usable:
        if key is None and want == "auto":
            return None
        return teacher_outputs.load_or_build(teacher, dataset.images, key, device, amp_dtype,
                                             log=log or (lambda *_: None))
    from .evaluation import embed

    fn = lambda x: embed(teacher, x, batch_size=64, device=device, flip=True)  # noqa: E731
    width = getattr(teacher, "embedding_size", None)
    cache = TeacherEmbeddingCache.load_or_build(fn, dataset.images, key, log=log or (lambda *_: None),
                                                embedding_size=width if isinstance(width, int) else None)
    return cache.centered() if center else cache
