"""The frozen teacher of a student: loading it, and the cache that stands in for it.

* :func:`load_teacher` — a teacher run directory (which must hold a finished run), an external teacher
  (registered name, ``.onnx``, spec ``.json``: :mod:`lqlib.teachers`), a ``(backbone, head)`` tuple or a
  bare backbone → the frozen ``(backbone, head or None)`` on the device;
* :func:`teacher_fingerprint` — what identifies its outputs (its weights' content, never only a path);
* :func:`teacher_cache_for` — the cached embeddings or outputs the :class:`~lqlib.distiller.Distiller`
  reads instead of running the teacher, or None (live teacher).
"""
from __future__ import annotations

import os
from typing import Any, Optional

import torch
from torch import nn

from . import paths
from .checkpoint import checkpoint_path, is_finished, load_trained, teacher_identity
from .data.memory import DecodedDataset
from .evaluation import embed
from .losses import LossComposer
from .store import tensor_digest
from .teachers import build_teacher, is_external_teacher
from .teachers import outputs as teacher_outputs
from .teachers.cache import TeacherEmbeddingCache


def load_teacher(spec: Any, device: torch.device) -> tuple[nn.Module, Optional[nn.Module]]:
    """The frozen teacher (backbone, head or None) named by ``spec``: a run directory (which must hold
    a finished training run), an external teacher (registered name, ``.onnx``, spec ``.json``), a
    ``(backbone, head)`` tuple or a bare backbone."""
    if isinstance(spec, (str, os.PathLike)) and is_external_teacher(spec):
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
    fn = lambda x: embed(teacher, x, batch_size=64, device=device, flip=True)  # noqa: E731
    width = getattr(teacher, "embedding_size", None)
    cache = TeacherEmbeddingCache.load_or_build(fn, dataset.images, key, log=log or (lambda *_: None),
                                                embedding_size=width if isinstance(width, int) else None)
    return cache.centered() if center else cache
