"""A frozen embedding model from elsewhere, seen through the lqlib backbone interface.

:class:`ExternalTeacher` takes lqlib input (normalised 112×112 RGB in [-1, 1]), converts it with its
:class:`~lqlib.teachers.spec.TeacherSpec` (crop, BGR, renormalisation, layout) and returns what an
lqlib backbone returns: the embedding, plus attention maps and stage features when the wrapped model
exposes them (any lqlib backbone does); otherwise those are empty lists. It is frozen for good:
parameters do not require grad, ``train()`` keeps it in eval mode (BN statistics and dropout never
change), and the forward pass runs without autograd.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..models.interface import pack_outputs
from .spec import TeacherSpec


def _accepts_lqlib_flags(model: nn.Module) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return "return_attention" in params and "return_features" in params


class ExternalTeacher(nn.Module):
    """Frozen ``model`` + ``spec`` with the lqlib backbone interface.

    ``forward(x, return_attention=False, return_features=False)`` → embedding, or a tuple
    ``(emb, maps)`` / ``(emb, feats)`` / ``(emb, maps, feats)``; ``maps``/``feats`` are ``[]`` when
    the wrapped model does not expose them. ``block_stage``, ``stage_channels`` and ``num_blocks``
    are forwarded from the wrapped model when it has them (attention-KD pairing uses them).
    """

    def __init__(self, model: nn.Module, spec: TeacherSpec | None = None):
        super().__init__()
        self.model = model
        self.spec = spec or TeacherSpec()
        self._lqlib_interface = _accepts_lqlib_flags(model)
        self.embedding_size = self.spec.embedding_size or getattr(model, "embedding_size", None)
        self.input_size = (112, 112)  # what the teacher takes: lqlib's aligned face
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "ExternalTeacher":
        """Always eval: a teacher's BN statistics and dropout must never change."""
        return super().train(False)

    _FORWARDED = ("block_stage", "stage_channels", "num_blocks", "attention_type")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_modules", {}).get("model")
            if name in self._FORWARDED and model is not None:
                return getattr(model, name)
            raise

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """lqlib input → the wrapped model's input (see :meth:`TeacherSpec.preprocess`)."""
        return self.spec.preprocess(x)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, return_attention: bool = False, return_features: bool = False):
        y = self.preprocess(x)
        maps: list = []
        feats: list = []
        if self._lqlib_interface and (return_attention or return_features):
            out = self.model(y, return_attention=return_attention, return_features=return_features)
            emb, rest = out[0], list(out[1:])
            if return_attention:
                maps = rest.pop(0)
            if return_features:
                feats = rest.pop(0)
        else:
            emb = self.model(y)
        return pack_outputs(emb, maps, feats, return_attention, return_features)

    def extra_repr(self) -> str:
        s = self.spec
        return (f"name={s.name!r}, input={s.input_size[0]}×{s.input_size[1]} {s.channel_order} {s.layout}, "
                f"crop={s.crop!r}, embedding={self.embedding_size}")


def _extract_state_dict(obj: Mapping) -> Mapping[str, torch.Tensor]:
    """A bare state dict, or the model weights inside an lqlib checkpoint (``model``) or a common wrapper."""
    for key in ("model", "state_dict", "backbone"):
        if key in obj and isinstance(obj[key], Mapping):
            return obj[key]
    return obj


def from_state_dict(path_or_dict: str | os.PathLike | Mapping, arch: str, spec: TeacherSpec | None = None,
                    strict: bool = True, **arch_kw) -> ExternalTeacher:
    """Teacher = lqlib backbone ``arch`` (built with ``arch_kw``) + weights from a state dict or file.

    Files are read with ``torch.load(weights_only=True)``; an lqlib training checkpoint (weights under
    ``"model"``) works too. ``spec`` defaults to the lqlib input convention.
    """
    from ..models import build_backbone

    if isinstance(path_or_dict, Mapping):
        state = path_or_dict
    else:
        path = Path(path_or_dict)
        if not path.is_file():
            raise FileNotFoundError(f"teacher weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_backbone(arch, **arch_kw)
    model.load_state_dict(_extract_state_dict(state), strict=strict)
    spec = spec or TeacherSpec(name=arch, embedding_size=getattr(model, "embedding_size", None))
    if spec.arch is None:  # record how the network was built
        spec = dataclasses.replace(spec, arch=arch, arch_kw=dict(arch_kw))
    return ExternalTeacher(model, spec)
