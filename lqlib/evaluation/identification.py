"""1:N identification: closed-set CMC and mAP, open-set DIR@FPIR, scored in gallery blocks.

Definitions (every rate in **percent**)
---------------------------------------
Scores are cosine similarities (higher = more alike). A probe is **mated** when some gallery item carries
its identity, **non-mated** otherwise; a gallery item whose identity no probe has is a *distractor*; the
label :data:`NO_IDENTITY` (-1) never matches anything (TinyFace's distractors, a non-mated probe).

* **Rank** of a mated probe: the position of its first correct gallery match in its gallery list sorted by
  score, i.e. ``1 + #{non-mated gallery items scoring >= its best mated score}``. **Ties are pessimistic**: a
  wrong gallery item with exactly the score of the correct one is ranked before it (``np.argsort``-based
  code breaks such ties by gallery order, which flatters whichever identity comes first). With several
  gallery images per identity the best of them counts (the Market-1501 / TinyFace convention).
* **CMC(r)** (rank-r identification rate): the fraction of mated probes whose rank is ≤ r; non-mated probes do
  not enter it.
* **AP** of a mated probe with ``M`` mated gallery images scoring ``s_1 >= ... >= s_M``:
  ``AP = (1/M) Σ_j j / r_j``, ``r_j = j + #{non-mated items scoring >= s_j}`` (the rank of the j-th correct item,
  ties pessimistic as above). **mAP** is the mean over mated probes (one gallery image per identity: AP = 1/rank).
* **DIR@FPIR** (open set; QMUL-SurvFace's TPIR@FPIR): the threshold ``t`` at FPIR ``f`` comes from the non-mated
  probes' top-1 scores: ``a = ⌊f · N_nonmated⌋`` false alarms are allowed, and ``t`` is the smallest float above
  the (a+1)-th largest non-mated top score, so exactly the ``a`` largest (fewer with ties) are ``>= t``. A mated probe
  is *detected and identified* when its rank is 1 **and** its best mated score is ``>= t``. DIR is NaN without
  non-mated probes; the FPIR actually achieved is reported beside it.

Memory
------
Similarities are computed ``probe_block × gallery_block`` (default 2,048 × 8,192 float32, 64 MiB) and only
per-probe statistics survive a block: the mated scores, the counts of non-mated items above them, the running
top-k. Two passes over the blocks (the first collects the mated scores, the second counts what beats them)
score every pair with the same float32 kernel call, so ties are judged on identical numbers. A 4k × 160k search
never holds the 4k × 160k matrix (``bench/identification_memory.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .verification import _np

NO_IDENTITY = -1
RANKS = (1, 5, 10, 20)
FPIRS = (0.01, 0.1)
PROBE_BLOCK = 2048
GALLERY_BLOCK = 8192


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` over their L2 norm (float32; all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / _norms(x)[:, None]


def _norms(x: np.ndarray) -> np.ndarray:
    """Row norms without a full-size temporary (einsum), floored at 1e-12."""
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)


def image_features(emb, emb_flip=None) -> np.ndarray:
    """One L2-normalised feature per image: its embedding, or the mean of the normalised embeddings of the
    image and its horizontal flip (a two-member template)."""
    e = l2_normalize(_np(emb, "embeddings"))
    if emb_flip is not None:
        e = l2_normalize(e + l2_normalize(_np(emb_flip, "flipped embeddings")))
    return e


def templates(features, labels) -> tuple[np.ndarray, np.ndarray]:
    """Per-identity templates: the mean of the identity's L2-normalised features (flip already folded in by
    :func:`image_features`), normalised. Returns ``(templates, labels)`` in first-appearance order;
    :data:`NO_IDENTITY` items (distractors) stay one template each."""
    f = l2_normalize(features)
    lab = np.asarray(labels)
    keep_single = lab == NO_IDENTITY
    named = np.flatnonzero(~keep_single)
    uniq, first, inv = np.unique(lab[named], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    sums = np.zeros((len(uniq), f.shape[1]), np.float64)
    np.add.at(sums, inv, f[named])
    t_named, l_named = l2_normalize(sums[order]), uniq[order]
    single = np.flatnonzero(keep_single)
    return (np.concatenate([t_named, f[single]]).astype(np.float32),
            np.concatenate([l_named, lab[single]]))


@dataclass(repr=False)
class IdentificationResult:
    """Per-probe outcome of :func:`identify` (see the module docstring for the definitions).

    ``rank``: rank of the first correct match per mated probe (``mated`` selects them from the probes);
    ``ap``: average precision per mated probe; ``top_index`` / ``top_score``: each probe's ``top_k`` best
    gallery items (descending); ``nonmated_top``: the top-1 score of each non-mated probe."""

    probe_labels: np.ndarray
    mated: np.ndarray
    rank: np.ndarray
    ap: np.ndarray
    best_mated: np.ndarray
    nonmated_top: np.ndarray
    top_index: np.ndarray
    top_score: np.ndarray
    n_gallery: int
    extra: dict = field(default_factory=dict)

    @property
    def n_mated(self) -> int:
        return int(self.mated.sum())

    @property
    def n_nonmated(self) -> int:
        return len(self.nonmated_top)

    def cmc(self, max_rank: int = 20) -> np.ndarray:
        """CMC(1..max_rank) in percent (NaN without mated probes)."""
        r = np.arange(1, max_rank + 1)
        if not len(self.rank):
            return np.full(max_rank, np.nan)
        return 100.0 * (self.rank[None, :] <= r[:, None]).mean(1)

    def rank_rate(self, r: int) -> float:
        return float(self.cmc(r)[-1])

    @property
    def mAP(self) -> float:
        return float(100.0 * self.ap.mean()) if len(self.ap) else float("nan")

    def threshold_at(self, fpir: float) -> float:
        """The open-set threshold at ``fpir`` from the non-mated probes' top scores (NaN without them)."""
        s = np.sort(self.nonmated_top)[::-1]
        if not len(s):
            return float("nan")
        a = int(np.floor(fpir * len(s) + 1e-9))
        return float("-inf") if a >= len(s) else float(np.nextafter(s[a], np.inf))

    def dir_at(self, fpir: float) -> tuple[float, float]:
        """``(DIR %, achieved FPIR %)`` at ``fpir`` (a fraction)."""
        t = self.threshold_at(fpir)
        if np.isnan(t) or not len(self.rank):
            return float("nan"), float("nan")
        hit = (self.rank == 1) & (self.best_mated >= t)
        return float(100.0 * hit.mean()), float(100.0 * (self.nonmated_top >= t).mean())

    def summary(self, ranks: Sequence[int] = RANKS, fpirs: Sequence[float] = FPIRS) -> dict[str, float]:
        out = {f"rank{r}": self.rank_rate(r) for r in ranks}
        out["mAP"] = self.mAP
        for f in fpirs:
            d, achieved = self.dir_at(f)
            out[f"dir_fpir{f:g}"] = d
            out[f"fpir{f:g}_achieved"] = achieved
        out.update(n_probes=len(self.mated), n_mated=self.n_mated, n_nonmated=self.n_nonmated,
                   n_gallery=self.n_gallery)
        return out

    def __repr__(self) -> str:
        s = self.summary()
        return (f"IdentificationResult(rank-1 {s['rank1']:.2f} %, rank-5 {s['rank5']:.2f} %, mAP {s['mAP']:.2f} %, "
                f"DIR@FPIR1% {s['dir_fpir0.01']:.2f} %, {self.n_mated} mated + {self.n_nonmated} non-mated probes, "
                f"{self.n_gallery} gallery items)")


def _codes(probe_labels, gallery_labels) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes; NO_IDENTITY (and a probe label absent from the gallery) never matches."""
    p, g = np.asarray(probe_labels).reshape(-1), np.asarray(gallery_labels).reshape(-1)
    uniq = np.unique(g[g != NO_IDENTITY]) if len(g) else g
    gc = np.full(len(g), -1, np.int64)
    ok = g != NO_IDENTITY
    gc[ok] = np.searchsorted(uniq, g[ok])
    pc = np.full(len(p), -2, np.int64)  # -2: never equal to a gallery code (distractors are -1)
    if len(uniq):
        pos = np.clip(np.searchsorted(uniq, p), 0, len(uniq) - 1)
        hit = (uniq[pos] == p) & (p != NO_IDENTITY)
        pc[hit] = pos[hit]
    return pc, gc


def _merge_topk(idx, val, new_idx, new_val, k):
    """Running top-k per row (values descending; ties: the earlier gallery index first)."""
    i = np.concatenate([idx, new_idx], 1)
    v = np.concatenate([val, new_val], 1)
    order = np.lexsort((i, -v), axis=1)[:, :k]
    return np.take_along_axis(i, order, 1), np.take_along_axis(v, order, 1)


def identify_blocks(score_block: Callable[[int, int, int, int], np.ndarray], probe_labels, gallery_labels, *,
                    top_k: int = 5, probe_block: int = PROBE_BLOCK, gallery_block: int = GALLERY_BLOCK
                    ) -> IdentificationResult:
    """Identification from a block scorer: ``score_block(p0, p1, g0, g1)`` returns the (p1-p0, g1-g0) scores of
    probes ``p0:p1`` against gallery items ``g0:g1`` (the same call must give the same numbers twice)."""
    pc, gc = _codes(probe_labels, gallery_labels)
    n_p, n_g = len(pc), len(gc)
    if n_g == 0 or n_p == 0:
        raise ValueError(f"identification needs probes and a gallery (got {n_p} probes, {n_g} gallery items)")
    n_mated_items = np.bincount(gc[gc >= 0], minlength=int(gc.max()) + 1 if (gc >= 0).any() else 0)
    m_per_probe = np.where(pc >= 0, n_mated_items[np.clip(pc, 0, None)] if len(n_mated_items) else 0, 0)
    mated = m_per_probe > 0
    m_max = int(m_per_probe.max())
    k = max(1, min(int(top_k), n_g))
    top_i = np.empty((n_p, k), np.int64)
    top_v = np.empty((n_p, k), np.float32)
    rank = np.zeros(n_p, np.int64)
    ap = np.zeros(n_p)
    best = np.full(n_p, -np.inf, np.float32)
    nm_top = np.full(n_p, -np.inf, np.float32)
    for p0 in range(0, n_p, probe_block):
        p1 = min(p0 + probe_block, n_p)
        pcb = pc[p0:p1]
        ms = np.full((p1 - p0, max(m_max, 1)), -np.inf, np.float32)  # mated scores, filled left to right
        fill = np.zeros(p1 - p0, np.int64)
        ti = np.empty((p1 - p0, 0), np.int64)
        tv = np.empty((p1 - p0, 0), np.float32)
        # pass 1: mated scores, top-k, top-1 over the gallery
        for g0 in range(0, n_g, gallery_block):
            g1 = min(g0 + gallery_block, n_g)
            s = np.asarray(score_block(p0, p1, g0, g1), dtype=np.float32)
            if s.shape != (p1 - p0, g1 - g0):
                raise ValueError(f"score_block returned shape {s.shape}, expected {(p1 - p0, g1 - g0)}")
            if not np.isfinite(s).all():
                raise ValueError("identification scores contain NaN/inf (non-finite embeddings?)")
            rows, cols = np.nonzero(pcb[:, None] == gc[None, g0:g1])
            if len(rows):  # Σ M_p entries in all: small; rows ascending (np.nonzero is row-major)
                pos = fill[rows] + np.arange(len(rows)) - np.searchsorted(rows, rows, "left")
                ms[rows, pos] = s[rows, cols]
                fill += np.bincount(rows, minlength=len(fill))
            nm_top[p0:p1] = np.maximum(nm_top[p0:p1], s.max(1))
            kk = min(k, g1 - g0)
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < g1 - g0 else np.broadcast_to(
                np.arange(g1 - g0), s.shape)
            ti, tv = _merge_topk(ti, tv, part + g0, np.take_along_axis(s, part, 1), k)
        top_i[p0:p1], top_v[p0:p1] = ti, tv
        ms = -np.sort(-ms, axis=1)  # descending; padding (-inf) last
        best[p0:p1] = ms[:, 0]
        # pass 2: count non-mated items scoring >= each mated score (pessimistic ties)
        above = np.zeros_like(ms, dtype=np.int64)
        thr = np.where(np.isfinite(ms), ms, np.inf)  # padding counts nothing
        for g0 in range(0, n_g, gallery_block):
            g1 = min(g0 + gallery_block, n_g)
            s = np.asarray(score_block(p0, p1, g0, g1), dtype=np.float32)
            s = np.where(pcb[:, None] == gc[None, g0:g1], -np.inf, s)  # mated items are not "wrong"
            if m_max <= 8:
                for j in range(thr.shape[1]):
                    above[:, j] += (s >= thr[:, j:j + 1]).sum(1)
            else:
                srt = np.sort(s, axis=1)
                for r in range(len(s)):
                    above[r] += len(srt[r]) - np.searchsorted(srt[r], thr[r], "left")
        j = np.arange(1, ms.shape[1] + 1)
        r_j = j[None, :] + above
        valid = np.isfinite(ms)
        rank[p0:p1] = r_j[:, 0]
        ap[p0:p1] = np.where(valid, j / r_j, 0.0).sum(1) / np.maximum(valid.sum(1), 1)
    return IdentificationResult(probe_labels=np.asarray(probe_labels), mated=mated, rank=rank[mated], ap=ap[mated],
                                best_mated=best[mated], nonmated_top=nm_top[~mated], top_index=top_i,
                                top_score=top_v, n_gallery=n_g)


def identify_scores(scores, probe_labels, gallery_labels, **kw) -> IdentificationResult:
    """Identification from a precomputed (probes × gallery) similarity matrix (tests, small sets)."""
    s = _np(scores, "scores")
    if s.ndim != 2 or s.shape != (len(np.asarray(probe_labels).reshape(-1)), len(np.asarray(gallery_labels).reshape(-1))):
        raise ValueError(f"scores shape {s.shape} does not match {len(probe_labels)} probes × "
                         f"{len(gallery_labels)} gallery items")
    return identify_blocks(lambda p0, p1, g0, g1: s[p0:p1, g0:g1], probe_labels, gallery_labels, **kw)


def identify(probe_features, probe_labels, gallery_features, gallery_labels, **kw) -> IdentificationResult:
    """Identification of probe features against gallery features by cosine similarity, in blocks.

    Features are L2-normalised here (float32; :func:`image_features` folds flips in, :func:`templates` builds
    identity templates). ``probe_labels`` / ``gallery_labels``: one identity per row, :data:`NO_IDENTITY` for
    none. Keyword arguments: ``top_k``, ``probe_block``, ``gallery_block`` (:func:`identify_blocks`)."""
    p = l2_normalize(_np(probe_features, "probe features"))
    g = np.asarray(_np(gallery_features, "gallery features"), dtype=np.float32)  # no copy when float32 already:
    if p.ndim != 2 or g.ndim != 2 or p.shape[1] != g.shape[1]:                 # normalised block by block
        raise ValueError(f"probe features {p.shape} and gallery features {g.shape} must be (n, d) with one d")
    for name, x, lab in (("probe", p, probe_labels), ("gallery", g, gallery_labels)):
        if len(x) != len(np.asarray(lab).reshape(-1)):
            raise ValueError(f"{len(x)} {name} features for {len(np.asarray(lab).reshape(-1))} {name} labels")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} features contain NaN/inf — the model diverged or the input was not normalised")
    inv_norm = (1.0 / _norms(g)).astype(np.float32)
    return identify_blocks(lambda p0, p1, g0, g1: (p[p0:p1] @ g[g0:g1].T) * inv_norm[None, g0:g1],
                           probe_labels, gallery_labels, **kw)
