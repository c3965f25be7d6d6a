"""What every distillation term sees, and the registry of terms.

A KD term is an ``nn.Module`` (it may own learnable connectors) registered by name. Its
``forward(student, teacher, labels, progress)`` receives two :class:`ModelOutputs` — the student
on its (low-quality) input and the frozen teacher on the high-resolution input — and returns a
scalar. Class attributes declare what it needs so the training loop only computes that:

* ``needs`` — a subset of {"logits", "attention", "features", "embedding"};
* ``includes_ce`` — the term *replaces* the base hard-label CE (Hinton's logit KD form), so the
  composer leaves the base CE out (no term does this by default: the paper's Eq. 12 keeps the
  ArcFace CE at weight 1 for every method);
* ``ce_weight`` — the weight of the hard-label CE contained *inside* the term (logit KD's λ), for
  reporting the effective CE weight of a method;
* ``needs_labels`` — False for label-free terms;
* ``matches_embedding`` — the term pulls the student's embedding towards the teacher's (1 − cos(e_T, h(e_S))),
  so a student trained with it lives in its teacher's embedding space (``h`` is the identity when the sizes
  agree).

Terms are built by ``build_kd_term(name, student=..., teacher=..., **params)``; a term that needs
shapes (connectors) names them in ``reads`` and ``from_models`` reads them from the two models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import nn

from ..models.interface import ModelOutputs, embedding_size, stage_channels
from ..registry import registrar


@dataclass
class Progress:
    """Where training is, for terms with schedules (e.g. DKD's warm-up)."""

    epoch: int = 0           # 0-based epoch
    step: int = 0            # global step
    epoch_fraction: float = 0.0  # epoch + fraction of the current epoch, as a float

    @property
    def epochs_done(self) -> float:
        return self.epoch_fraction


class KDTerm(nn.Module):
    name: ClassVar[str] = ""
    needs: ClassVar[frozenset] = frozenset()
    includes_ce: bool = False
    needs_labels: ClassVar[bool] = True
    matches_embedding: ClassVar[bool] = False
    ce_weight: float = 0.0

    #: constructor arguments a term reads from the two models where not given (connector sizes):
    #: ``{argument: ("student" | "teacher", reader)}``, e.g. ``{"student_embedding": ("student", embedding_size)}``
    reads: ClassVar[dict] = {}

    @classmethod
    def from_models(cls, student: nn.Module | None = None, teacher: nn.Module | None = None, **params) -> "KDTerm":
        models = {"student": student, "teacher": teacher}
        for arg, (which, read) in cls.reads.items():
            params.setdefault(arg, read(models[which]))
        return cls(**params)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels: Optional[torch.Tensor],
                progress: Progress) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


#: the connector sizes terms read (:attr:`KDTerm.reads`)
STAGE_CHANNELS = {"student_channels": ("student", stage_channels), "teacher_channels": ("teacher", stage_channels)}
EMBEDDING_SIZES = {"student_embedding": ("student", embedding_size), "teacher_embedding": ("teacher", embedding_size)}

KD_TERMS: dict[str, type[KDTerm]] = {}


def register_kd(name: str):
    """Class decorator: register a KD term under ``name`` (and set its ``name``)."""
    return registrar(KD_TERMS, "KD term", name, on_register=lambda n, cls: setattr(cls, "name", n))


def build_kd_term(name: str, student: nn.Module | None = None, teacher: nn.Module | None = None, **params) -> KDTerm:
    try:
        cls = KD_TERMS[name]
    except KeyError:
        raise ValueError(f"unknown KD term {name!r}; choose from {sorted(KD_TERMS)}") from None
    return cls.from_models(student, teacher, **params)
