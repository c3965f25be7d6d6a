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
* ``adaface`` (Kim, Jain & Liu, CVPR 2022): the margin adapts to image quality, with the feature norm
  ‖z‖ of the *un-normalised* embedding as the quality proxy (see :class:`AdaFace`).

Heads receive the backbone's raw embedding (lqlib's backbones end in a BatchNorm1d and do not
normalise; :meth:`MarginHead.cosine` normalises), so a head that needs the feature norm reads it there.

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

    def margin(self, cos_t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """The target's margin cosine; per-sample heads (AdaFace) also read the embeddings."""
        return self.target_logit(cos_t)

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
        cos_t_m = self.margin(cos_t, embeddings)
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

    def margin(self, cos_t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """The target's margin cosine; per-sample heads (AdaFace) also read the embeddings."""
        return self.target_logit(cos_t)

    def modulate(self, cos, cos_t, cos_t_m):
        if self.training:
            with torch.no_grad():
                self.t.mul_(1 - self.momentum).add_(self.momentum * cos_t.mean())
        hard = cos > cos_t_m
        return torch.where(hard, cos * (self.t + cos), cos)


class AdaFace(MarginHead):
    """AdaFace (Kim, Jain & Liu, CVPR 2022, Eqs. 7–9): target logit s·(cos(θ + g_angle) − g_add) with

    * ẑ = clip((‖z‖ − μ) / (σ / h), −1, 1), ‖z‖ the feature norm of the un-normalised embedding,
      gradient-stopped (clamped to [0.001, 100] as the official code does);
    * μ, σ running averages of the batch mean and std of those norms: μ ← α·mean + (1 − α)·μ,
      σ ← α·std + (1 − α)·σ with α = ``momentum`` = 0.01 (the paper's 0.99 on the old value), updated
      in training mode *before* ẑ is computed (the current batch counts, as in the paper and the code);
      they start at μ = 20, σ = 100 (the official ``batch_mean`` / ``batch_std`` buffers) and are
      buffers, so checkpoints hold them;
    * g_angle = −m·ẑ, g_add = m·ẑ + m. ẑ = −1 gives ArcFace's s·cos(θ + m), ẑ = 0 CosFace's
      s·(cosθ − m), ẑ = +1 s·(cos(θ − m) − 2m): high-norm (high-quality) samples get a margin that
      emphasises hard samples, low-norm ones one that emphasises easy samples.

    Where the official code (mk-minchul/AdaFace ``head.py``) fills in what the paper leaves open, this
    follows it: σ is the unbiased (n − 1) batch std (``torch.std``); ẑ = (‖z‖ − μ)/(σ + ε)·h with
    ε = 1e-3; the target cosine is clamped to [−1 + ε, 1 − ε] before the arccos and θ + g_angle to
    [ε, π − ε] (no ArcFace-style fall-back for θ + m > π). Differences from the official code: the
    statistics update only in training mode (the official head updates on every call — it never runs
    in eval), a batch of one sample leaves σ unchanged (its std is undefined), the non-target cosines
    are not clamped (the official code clamps all of them to ±(1 − ε); only the target needs it for
    the arccos), and the head gets the raw embedding and takes its norm itself (the official backbone
    returns the normalised embedding and the norm separately)."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.4, h: float = 0.333,
                 momentum: float = 0.01, eps: float = 1e-3):
        super().__init__(embedding_size, num_classes, s, m)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        if h <= 0:
            raise ValueError(f"h must be > 0, got {h}")
        self.h, self.momentum, self.eps = float(h), float(momentum), float(eps)
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))

    def norm_scaler(self, embeddings: torch.Tensor) -> torch.Tensor:
        """ẑ per sample (B, 1); updates the running μ, σ first when training."""
        norms = embeddings.detach().float().norm(dim=1, keepdim=True).clamp(0.001, 100.0)
        if self.training:
            with torch.no_grad():
                a = self.momentum
                self.batch_mean.mul_(1 - a).add_(a * norms.mean())
                if norms.shape[0] > 1:
                    self.batch_std.mul_(1 - a).add_(a * norms.std())
        return ((norms - self.batch_mean) / (self.batch_std + self.eps) * self.h).clamp(-1.0, 1.0)

    def margin(self, cos_t, embeddings):
        z = self.norm_scaler(embeddings)
        theta = cos_t.clamp(-1.0 + self.eps, 1.0 - self.eps).acos()
        g_angle, g_add = -self.m * z, self.m * z + self.m
        return (theta + g_angle).clamp(self.eps, math.pi - self.eps).cos() - g_add


HEADS: dict[str, type[MarginHead]] = {"arcface": ArcFace, "cosface": CosFace, "curricularface": CurricularFace,
                                      "adaface": AdaFace}
HEAD_NAMES = {"arcface": "ArcFace", "cosface": "CosFace", "curricularface": "CurricularFace", "adaface": "AdaFace"}


def build_head(name: str, embedding_size: int, num_classes: int, **kw) -> MarginHead:
    try:
        cls = HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; choose from {sorted(HEADS)}") from None
    return cls(embedding_size, num_classes, **kw)
