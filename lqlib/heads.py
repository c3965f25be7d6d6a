"""Margin heads: normalised-weight classifiers that turn embeddings into margin logits.

Every head's ``forward(embeddings, labels=None, return_plain=False)`` returns the logits used for
cross-entropy and for logit KD (margin applied to the target class when labels are given); with
``return_plain=True`` it returns ``(margin_logits, plain_logits)`` where ``plain = s·cosθ``.

* ``arcface`` (Deng et al. 2019): target logit s·cos(θ + m). When θ + m > π the additive angle
  would make the function non-monotonic; the standard fallback (InsightFace) uses
  s·(cosθ − m·sin m) for cosθ ≤ cos(π − m).
* ``cosface`` (Wang et al. 2018): target logit s·(cosθ − m).
* ``curricularface`` (Huang et al. 2020): target logit s·cos(θ + m) (same fallback); a non-target
  logit whose cosine exceeds the target's margin cosine (a hard negative) becomes s·cos·(t + cos),
  with t an exponential moving average of the mean target cosine:
  t ← 0.01·mean(cos θ_y) + 0.99·t (t starts at 0).

Heads compute in fp32 even inside a bf16 autocast region (:func:`lqlib.precision.full_precision`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .precision import full_precision


class MarginHead(nn.Module):
    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5):
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.s, self.m = float(s), float(m)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float())).clamp(-1.0, 1.0)

    def target_logit(self, cos_t: torch.Tensor) -> torch.Tensor:  # cos of the target class → margin cos
        raise NotImplementedError

    def modulate(self, cos: torch.Tensor, cos_t: torch.Tensor, cos_t_m: torch.Tensor) -> torch.Tensor:
        return cos  # non-target logits (CurricularFace changes them)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None, return_plain: bool = False):
        # cosines and margins in fp32 whatever autocast says (see lqlib.precision)
        with full_precision(embeddings.device.type):
            return self._logits(embeddings.float(), labels, return_plain)

    def _logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None, return_plain: bool):
        cos = self.cosine(embeddings)
        plain = cos * self.s
        if labels is None:
            return (plain, plain) if return_plain else plain
        idx = labels.view(-1, 1).long()
        cos_t = cos.gather(1, idx)
        cos_t_m = self.target_logit(cos_t)
        out = self.modulate(cos, cos_t, cos_t_m).scatter(1, idx, cos_t_m) * self.s
        return (out, plain) if return_plain else out


class ArcFace(MarginHead):
    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5):
        super().__init__(embedding_size, num_classes, s, m)
        self.cos_m, self.sin_m = math.cos(self.m), math.sin(self.m)
        self.th = math.cos(math.pi - self.m)   # θ + m > π  ⇔  cosθ < cos(π − m)
        self.mm = math.sin(math.pi - self.m) * self.m

    def target_logit(self, cos_t):
        sin_t = (1.0 - cos_t * cos_t).clamp_min(0.0).sqrt()
        phi = cos_t * self.cos_m - sin_t * self.sin_m
        return torch.where(cos_t > self.th, phi, cos_t - self.mm)


class CosFace(MarginHead):
    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35):
        super().__init__(embedding_size, num_classes, s, m)

    def target_logit(self, cos_t):
        return cos_t - self.m


class CurricularFace(ArcFace):
    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5,
                 momentum: float = 0.01):
        super().__init__(embedding_size, num_classes, s, m)
        self.momentum = momentum
        self.register_buffer("t", torch.zeros(1))

    def modulate(self, cos, cos_t, cos_t_m):
        if self.training:
            with torch.no_grad():
                self.t.mul_(1 - self.momentum).add_(self.momentum * cos_t.mean())
        hard = cos > cos_t_m
        return torch.where(hard, cos * (self.t + cos), cos)


HEADS: dict[str, type[MarginHead]] = {"arcface": ArcFace, "cosface": CosFace, "curricularface": CurricularFace}


def build_head(name: str, embedding_size: int, num_classes: int, **kw) -> MarginHead:
    try:
        cls = HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; choose from {sorted(HEADS)}") from None
    return cls(embedding_size, num_classes, **kw)
