"""Scoring protocols: raw per-image embeddings (originals and flips) → per-pair scores."""
from __future__ import annotations

import numpy as np

from .verification import PairScores, VerifyResult, _emb, _l2n, _np, resolve_folds, verify_scores


class Protocol:
    """Turns raw per-image embeddings (originals and flips) into per-pair scores."""

    name = "base"
    uses_flip = True

    def score(self, emb1, emb2, folds: np.ndarray, emb1_flip=None, emb2_flip=None) -> PairScores:
        raise NotImplementedError

    def verify(self, emb1, emb2, issame, folds=None, *, emb1_flip=None, emb2_flip=None, nfolds: int = 10,
               thresholds=None) -> VerifyResult:
        a = _emb(emb1, "emb1")
        f = resolve_folds(len(a), folds, nfolds)
        if len(_np(issame, "issame").reshape(-1)) != len(a):
            raise ValueError("issame and the embeddings have different lengths")
        ps = self.score(a, emb2, f, emb1_flip, emb2_flip)
        return verify_scores(ps, issame, f, thresholds=thresholds)

    @staticmethod
    def _inputs(emb1, emb2, emb1_flip, emb2_flip):
        a, b = _emb(emb1, "emb1"), _emb(emb2, "emb2")
        if a.shape != b.shape:
            raise ValueError(f"emb1 {a.shape} and emb2 {b.shape} differ")
        if (emb1_flip is None) != (emb2_flip is None):
            raise ValueError("give both flipped embeddings or neither")
        if emb1_flip is None:
            return a, b, None, None
        af, bf = _emb(emb1_flip, "emb1_flip"), _emb(emb2_flip, "emb2_flip")
        if af.shape != a.shape or bf.shape != b.shape:
            raise ValueError("flipped embeddings must have the shape of the originals")
        return a, b, af, bf

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InsightFaceProtocol(Protocol):
    """InsightFace: ``l2n(emb(img) + emb(flip))``, squared L2 distance (same ⇔ dist < thr)."""

    name = "insightface"

    def score(self, emb1, emb2, folds, emb1_flip=None, emb2_flip=None) -> PairScores:
        a, b, af, bf = self._inputs(emb1, emb2, emb1_flip, emb2_flip)
        if af is not None:
            a, b = a + af, b + bf
        a, b = _l2n(a), _l2n(b)
        return PairScores(((a - b) ** 2).sum(1), False, "sqeuclidean")


class AskdProtocol(Protocol):
    """A-SKD / SphereFace / CosFace-pytorch: features ``[emb(img), emb(flip)]``; for evaluation fold k
    subtract the mean feature of every image (both sides) of the other folds, L2-normalise, cosine.

    Scores are one row per evaluation fold (K, N): the threshold for fold k is searched on the other
    folds' pairs scored with fold k's mean, and applied to fold k's pairs scored with the same mean.
    """

    name = "askd"

    def score(self, emb1, emb2, folds, emb1_flip=None, emb2_flip=None) -> PairScores:
        a, b, af, bf = self._inputs(emb1, emb2, emb1_flip, emb2_flip)
        if af is not None:
            a, b = np.concatenate([a, af], 1), np.concatenate([b, bf], 1)
        folds = np.asarray(folds)
        ids = np.unique(folds)
        rows = []
        for fid in ids:
            train = folds != fid
            mu = np.concatenate([a[train], b[train]]).mean(0, keepdims=True)
            rows.append((_l2n(a - mu) * _l2n(b - mu)).sum(1))
        return PairScores(np.stack(rows), True, "cosine-foldmean", ids)


PROTOCOLS: dict[str, Protocol] = {"insightface": InsightFaceProtocol(), "askd": AskdProtocol()}


def get_protocol(protocol: str | Protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOLS)}") from None
