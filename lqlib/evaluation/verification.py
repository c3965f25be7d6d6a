"""k-fold verification: exact threshold search, ROC, TAR@FAR (conventions in :mod:`lqlib.evaluation`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

FARS = (1e-3, 1e-2)


def _np(x, name: str, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
        x = x.numpy()
    a = np.asarray(x)
    return a.astype(dtype, copy=False) if dtype is not None else a


def _emb(x, name: str) -> np.ndarray:
    a = _np(x, name, np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (pairs, dim), got shape {a.shape}")
    bad = ~np.isfinite(a).all(1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name} has non-finite values (NaN/inf) in {len(rows)} row(s), first: "
                         f"{rows[:5].tolist()} — the model diverged or the input was not normalised")
    return a


def resolve_folds(n: int, folds=None, nfolds: int = 10) -> np.ndarray:
    """Per-pair fold ids: the given ones (checked), else ``nfolds`` contiguous near-equal splits."""
    if folds is None:
        if nfolds < 2 or nfolds > n:
            raise ValueError(f"need 2 <= nfolds <= number of pairs ({n}), got nfolds={nfolds}")
        f = np.empty(n, dtype=np.int64)
        for k, part in enumerate(np.array_split(np.arange(n), nfolds)):
            f[part] = k
        return f
    f = _np(folds, "folds").reshape(-1)
    if len(f) != n:
        raise ValueError(f"folds has {len(f)} entries for {n} pairs")
    if len(np.unique(f)) < 2:
        raise ValueError("k-fold verification needs at least 2 folds")
    return f.astype(np.int64)


def check_fold_classes(issame, folds) -> np.ndarray:
    """Every fold must hold same- AND different-person pairs: a threshold fitted on the other folds
    is otherwise tested on one class only (and fitted on an unbalanced set), which biases accuracy
    down — by several points at low accuracy. Returns the fold ids; raises ``ValueError`` naming the
    first one-class fold."""
    y = np.asarray(issame, dtype=bool).reshape(-1)
    f = np.asarray(folds).reshape(-1)
    ids = np.unique(f)
    for fid in ids:
        n_same = int(y[f == fid].sum())
        n_fold = int((f == fid).sum())
        if n_same == 0 or n_same == n_fold:
            raise ValueError(f"fold {fid} holds only {'same' if n_same else 'different'}-person pairs "
                             f"({n_fold} pairs): every verification fold needs both classes — give the set's "
                             "real folds (a .bin's .folds.json sidecar, or LFW layout: 600 pairs per fold)")
    return ids


def _l2n(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _best_threshold(s: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None) -> tuple[float, float]:
    """Best threshold for "same ⇔ s > t" on (s, y); returns (t, accuracy fraction). Tie: largest t."""
    n, npos = len(s), int(y.sum())
    if grid is not None:
        pos, neg = np.sort(s[y]), np.sort(s[~y])
        correct = (npos - np.searchsorted(pos, grid, "right")) + np.searchsorted(neg, grid, "right")
        best = correct.max()
        j = np.flatnonzero(correct == best)
        j = j[np.argmax(grid[j])]
        return float(grid[j]), best / n
    v, inv = np.unique(s, return_inverse=True)
    m = len(v)
    cpos = np.concatenate([[0], np.cumsum(np.bincount(inv, weights=y, minlength=m))])
    cneg = np.concatenate([[0], np.cumsum(np.bincount(inv, weights=~y, minlength=m))])
    correct = (npos - cpos) + cneg  # index j: threshold between v[j-1] and v[j] (j = 0..m)
    best = correct.max()
    j = int(np.flatnonzero(correct == best)[-1])  # fewest "same" predictions
    pad = 0.5 * (v[-1] - v[0]) / (m - 1) if m > 1 else 0.5
    t = v[0] - pad if j == 0 else v[-1] + pad if j == m else 0.5 * (v[j - 1] + v[j])
    return float(t), best / n


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float, interp: str = "step") -> float:
    """TPR at false-accept rate ``far`` from a ROC (fpr ascending, as ``roc_curve`` returns).

    ``step`` (default): the largest TPR among ROC points with FPR ≤ far — achievable by one real
    threshold. ``linear``: interpolated on the upper envelope (achievable only by randomising between
    two thresholds).
    """
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    if interp == "step":
        ok = fpr <= far + 1e-12
        return float(tpr[ok].max()) if ok.any() else 0.0
    if interp == "linear":
        fu, last = np.unique(fpr[::-1], return_index=True)  # last occurrence = highest tpr per fpr
        return float(np.interp(far, fu, tpr[::-1][last]))
    raise ValueError(f"interp must be 'step' or 'linear', got {interp!r}")


@dataclass(repr=False)
class VerifyResult:
    """k-fold verification outcome. Accuracies/TAR in %, AUC in [0, 1]; arrays are per fold or per pair."""

    metric: str
    higher_is_same: bool
    acc_mean: float
    acc_std: float
    fold_ids: np.ndarray
    fold_acc: np.ndarray
    fold_thresholds: np.ndarray
    fold_train_acc: np.ndarray
    tar: dict[float, float]
    auc: float
    fpr: np.ndarray
    tpr: np.ndarray
    roc_thresholds: np.ndarray
    scores: np.ndarray  # out-of-fold score per pair (the metric's own orientation)
    correct: np.ndarray  # per pair, judged with its held-out fold's threshold
    n_impostors: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        return len(self.correct)

    @property
    def tar_far1e3(self) -> float:
        return self.tar.get(1e-3, float("nan"))

    @property
    def tar_far1e2(self) -> float:
        return self.tar.get(1e-2, float("nan"))

    @property
    def threshold_mean(self) -> float:
        return float(np.mean(self.fold_thresholds))

    def summary(self) -> dict[str, float]:
        return {"acc_mean": self.acc_mean, "acc_std": self.acc_std, "tar_far1e-3": self.tar_far1e3,
                "tar_far1e-2": self.tar_far1e2, "auc": self.auc, "threshold_mean": self.threshold_mean,
                "n_pairs": self.n_pairs}

    def __repr__(self) -> str:
        return (f"VerifyResult({self.metric}: acc {self.acc_mean:.2f} ± {self.acc_std:.2f} % over "
                f"{len(self.fold_ids)} folds, TAR@1e-3 {self.tar_far1e3:.2f} %, TAR@1e-2 {self.tar_far1e2:.2f} %, "
                f"AUC {self.auc:.4f}, thr {self.threshold_mean:.4f}, {self.n_pairs} pairs)")


@dataclass(frozen=True)
class PairScores:
    """Per-pair scores from a protocol: shape (N,) or (K, N) — one row per evaluation fold."""

    scores: np.ndarray
    higher_is_same: bool
    metric: str
    fold_ids: np.ndarray | None = None  # row order of a (K, N) array


def verify_scores(scores, issame, folds=None, *, nfolds: int = 10, higher_is_same: bool = True,
                  thresholds=None, metric: str = "score", fars: Sequence[float] = FARS) -> VerifyResult:
    """k-fold verification on precomputed scores (see the module docstring for the rules).

    ``scores``: (N,) per pair, a (K, N) array with one row of scores per evaluation fold (row k for
    ``np.unique(folds)[k]``), or a :class:`PairScores` (which fixes orientation and metric name).
    """
    from sklearn.metrics import auc as sk_auc, roc_curve

    fold_ids_rows = None
    if isinstance(scores, PairScores):
        higher_is_same, metric, fold_ids_rows = scores.higher_is_same, scores.metric, scores.fold_ids
        scores = scores.scores
    s = _np(scores, "scores", np.float64)
    y = _np(issame, "issame").reshape(-1).astype(bool)
    n = len(y)
    if s.shape[-1] != n or s.ndim not in (1, 2):
        raise ValueError(f"scores shape {s.shape} does not match {n} pairs")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN/inf (non-finite embeddings?)")
    f = resolve_folds(n, folds, nfolds)
    ids = check_fold_classes(y, f)
    if s.ndim == 2:
        if fold_ids_rows is not None and not np.array_equal(np.asarray(fold_ids_rows), ids):
            raise ValueError("PairScores.fold_ids do not match the folds")
        if s.shape[0] != len(ids):
            raise ValueError(f"{s.shape[0]} score rows for {len(ids)} folds")
    sign = 1.0 if higher_is_same else -1.0
    grid = None if thresholds is None else sign * np.asarray(thresholds, dtype=np.float64).reshape(-1)
    acc, thr, tr_acc = [], [], []
    oof = np.empty(n)
    correct = np.zeros(n, dtype=bool)
    for k, fid in enumerate(ids):
        sk = sign * (s[k] if s.ndim == 2 else s)
        test = f == fid
        t, a_tr = _best_threshold(sk[~test], y[~test], grid)
        c = (sk[test] > t) == y[test]
        correct[test], oof[test] = c, sk[test]
        acc.append(100.0 * c.mean())
        thr.append(sign * t)
        tr_acc.append(100.0 * a_tr)
    acc = np.asarray(acc)
    if y.all() or not y.any():  # ROC undefined with one class
        fpr = tpr = rthr = np.array([np.nan])
        area, tars = float("nan"), {far: float("nan") for far in fars}
    else:
        fpr, tpr, rthr = roc_curve(y, oof, drop_intermediate=False)
        area = float(sk_auc(fpr, tpr))
        tars = {far: 100.0 * tar_at_far(fpr, tpr, far) for far in fars}
        rthr = sign * rthr
    return VerifyResult(metric=metric, higher_is_same=higher_is_same, acc_mean=float(acc.mean()),
                        acc_std=float(acc.std()), fold_ids=ids, fold_acc=acc, fold_thresholds=np.asarray(thr),
                        fold_train_acc=np.asarray(tr_acc), tar=tars, auc=area, fpr=fpr, tpr=tpr,
                        roc_thresholds=rthr, scores=sign * oof, correct=correct, n_impostors=int((~y).sum()))


METRICS = ("insightface", "cosine")


def verify(emb1, emb2, issame, folds=None, *, nfolds: int = 10, metric: str = "insightface",
           thresholds=None, return_correct: bool = False):
    """k-fold face verification of embedding pairs, as InsightFace's ``verification.py`` (exact search).

    ``metric``: ``insightface`` — squared L2 distance of L2-normalised embeddings (same ⇔ dist < thr,
    range [0, 4]); ``cosine`` — cosine similarity (same ⇔ sim > thr). ``return_correct=True`` returns
    ``(result, correct)`` with the per-pair correctness (also in ``result.correct``).
    """
    a, b = _emb(emb1, "emb1"), _emb(emb2, "emb2")
    if a.shape != b.shape:
        raise ValueError(f"emb1 {a.shape} and emb2 {b.shape} differ")
    if len(_np(issame, "issame").reshape(-1)) != len(a):
        raise ValueError(f"issame has {len(_np(issame, 'issame').reshape(-1))} entries for {len(a)} pairs")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    a, b = _l2n(a), _l2n(b)
    if metric == "insightface":
        ps = PairScores(((a - b) ** 2).sum(1), False, "sqeuclidean")
    else:
        ps = PairScores((a * b).sum(1), True, "cosine")
    res = verify_scores(ps, issame, folds, nfolds=nfolds, thresholds=thresholds)
    return (res, res.correct) if return_correct else res
