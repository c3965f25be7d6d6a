"""Loss terms for distilling a low-quality student from a high-resolution teacher.

Registry: ``KD_TERMS`` (name → class), ``build_kd_term``; the composer ``LossComposer`` returns
``(total, {term: value})``. Each method lives in its own module and registers itself on import.
"""
from __future__ import annotations

import importlib

from .base import KD_TERMS, KDTerm, ModelOutputs, Progress, build_kd_term, register_kd
from .composer import LossComposer
from .logit import LogitKD, kl_teacher_student, logit_kd
from .attention import AttentionKD, attention_kd, cosine_distance, match_spatial, stage_pairing

# seed methods register themselves in their own modules (one method per file)
for _mod in ("at", "dkd", "feature", "angular", "labelfree", "relational"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as e:  # pragma: no cover - a method module not written yet
        if e.name != f"{__name__}.{_mod}":
            raise

__all__ = ["KD_TERMS", "KDTerm", "ModelOutputs", "Progress", "build_kd_term", "register_kd", "LossComposer",
           "LogitKD", "AttentionKD", "logit_kd", "attention_kd", "kl_teacher_student", "cosine_distance",
           "match_spatial", "stage_pairing"]
