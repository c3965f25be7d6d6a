"""Loss terms for distilling a low-quality student from a high-resolution teacher.

Registry: ``KD_TERMS`` (name → class), ``build_kd_term``; the composer ``LossComposer`` returns
``(total, {term: value})``. Each method lives in its own module and registers itself on import.
"""
from __future__ import annotations

from ..models.interface import ModelOutputs, stage_pairing
from ..models.maps import cosine_distance, match_spatial
from . import angular, at, dkd, feature, labelfree, relational  # noqa: F401  (each registers its term)
from .attention import AttentionKD, attention_kd
from .base import KD_TERMS, KDTerm, Progress, build_kd_term, register_kd
from .composer import LossComposer
from .logit import LogitKD, kl_teacher_student, logit_kd

__all__ = ["KD_TERMS", "KDTerm", "ModelOutputs", "Progress", "build_kd_term", "register_kd", "LossComposer",
           "LogitKD", "AttentionKD", "logit_kd", "attention_kd", "kl_teacher_student", "cosine_distance",
           "match_spatial", "stage_pairing"]
