"""Compose the student's loss: hard-label CE on the margin logits plus weighted KD terms.

``LossComposer(terms, weights)`` returns ``(total, parts)`` where ``parts`` maps every term name
(and ``"ce"`` when the base CE is used) to its unweighted value, for logging. The base CE (weight
1, the paper's Eq. 12) is left out only when a term explicitly replaces it (``logit_hinton``) or when
training is label-free. :attr:`LossComposer.effective_ce_weight` is the total weight of the hard-label
CE (base CE plus the CE inside terms such as logit KD's λ·CE).
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import KDTerm, ModelOutputs, Progress


class LossComposer(nn.Module):
    def __init__(self, terms: Mapping[str, KDTerm] | None = None, weights: Mapping[str, float] | None = None,
                 ce_weight: float = 1.0):
        super().__init__()
        terms = dict(terms or {})
        weights = dict(weights or {})
        unknown = set(weights) - set(terms)
        if unknown:
            raise ValueError(f"weights given for terms that are not used: {sorted(unknown)}")
        for name, w in weights.items():
            if not (isinstance(w, (int, float)) and w >= 0 and w == w):
                raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {w!r}")
        self.terms = nn.ModuleDict(terms)
        self.weights = {name: float(weights.get(name, 1.0)) for name in terms}
        self.ce_weight = float(ce_weight)

    @property
    def needs(self) -> frozenset:
        out = set()
        for t in self.terms.values():
            out |= t.needs
        return frozenset(out)

    @property
    def needs_teacher(self) -> bool:
        return len(self.terms) > 0

    @property
    def needs_labels(self) -> bool:
        """Labels are fed to the step when the base CE or any term uses them."""
        return not self.terms or any(t.needs_labels for t in self.terms.values())

    @property
    def uses_ce(self) -> bool:
        """Base CE: whenever labels are used and no term already contains the CE."""
        return self.ce_weight > 0 and self.needs_labels and not any(t.includes_ce for t in self.terms.values())

    @property
    def effective_ce_weight(self) -> float:
        """Total weight of the hard-label CE in the loss: base CE + Σ_term weight·(CE inside the term)."""
        inside = sum(self.weights[n] * float(getattr(t, "ce_weight", 0.0)) for n, t in self.terms.items())
        return (self.ce_weight if self.uses_ce else 0.0) + inside

    @property
    def part_names(self) -> list[str]:
        return (["ce"] if self.uses_ce else []) + list(self.terms)

    def forward(self, student: ModelOutputs, teacher: Optional[ModelOutputs], labels: Optional[torch.Tensor],
                progress: Progress) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        total = student.embedding.new_zeros((), dtype=torch.float32)
        if self.uses_ce:
            parts["ce"] = F.cross_entropy(student.logits.float(), labels)
            total = total + self.ce_weight * parts["ce"]
        for name, term in self.terms.items():
            parts[name] = term(student, teacher, labels, progress).float()
            total = total + self.weights[name] * parts[name]
        return total, parts
