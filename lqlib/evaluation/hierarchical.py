"""A hierarchical bootstrap of a gain: training seeds, then identities — beside the t-test over seeds.

The pair-level bootstrap (:func:`~lqlib.evaluation.significance.paired_bootstrap`) treats the pairs of one
run as independent, but LFW's 3,000 test pairs reuse 3,811 images of 2,086 people, and it says nothing
about retraining. Here one bootstrap replicate

1. draws the training seeds with replacement (n of the n seeds both models share — paired: seed k of
   the model goes with seed k of the baseline);
2. draws the identities with replacement (K of the K people in the pair set) and weights every pair by
   its identities' multiplicities (Owen's pigeonhole bootstrap for a pair of crossed factors): a pair of
   two people counts once per drawn copy of each (w₁·w₂), a same-person pair once per drawn copy of its
   person (w — both its images belong to the same copy; w² would also count pairs across two copies, which
   are different people, and give same-person pairs about twice the weight of the others on average, so
   that Δ* would no longer be centred on Δ);
3. computes Δ* = mean over the drawn seeds of (weighted accuracy of the model − of the baseline), in
   points. The same identity draw serves every seed and both models (they are scored on the same faces).

Reported: Δ (the plain mean over seeds of the per-seed differences), the percentile interval of Δ* and
a two-sided p-value from the null-shifted bootstrap distribution, (1 + #{|Δ* − Δ| ≥ |Δ|}) / (1 + B), as
in the pair-level test. Thresholds stay as each run fixed them (per-pair correctness as judged). With
5 seeds the seed draw is coarse — this is a check beside the t-test, not a replacement.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np


def pair_identities(source: str | os.PathLike, data_dir=None, max_pairs: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Identity names of the two images of every pair of a split's evaluation pairs (``lfw-half``,
    ``lfw-half-val``, ...), in the order :func:`lqlib.data.load_pairs` gives them (the same fold-balanced
    subset for ``max_pairs``). Identities are the LFW image folder names."""
    from ..data.splits import balanced_pair_subset, get_split

    pairs = get_split(str(source), data_dir).pairs
    if max_pairs and max_pairs < len(pairs):
        pairs = [pairs[i] for i in balanced_pair_subset([p.issame for p in pairs], [p.fold for p in pairs], max_pairs)]
    return (np.array([p.path1.parent.name for p in pairs]), np.array([p.path2.parent.name for p in pairs]))


def hierarchical_bootstrap(correct_a: Mapping[int, np.ndarray], correct_b: Mapping[int, np.ndarray], id1, id2,
                           n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Bootstrap over seeds, then identities, of the accuracy difference A − B (points); see the module
    docstring. ``correct_a``/``correct_b``: ``{seed: per-pair correctness}`` (bool, one entry per pair);
    ``id1``/``id2``: the identity (any hashable label) of each pair's two images."""
    seeds = sorted(set(correct_a) & set(correct_b))
    if not seeds:
        raise ValueError(f"no seed in common: model seeds {sorted(correct_a)}, baseline seeds {sorted(correct_b)}")
    id1, id2 = np.asarray(id1), np.asarray(id2)
    n = len(id1)
    if id2.shape != (n,) or n == 0:
        raise ValueError(f"id1/id2 must be two equal-length 1-D label arrays, got {id1.shape} and {id2.shape}")
    d = []
    for s in seeds:
        a = np.asarray(correct_a[s], dtype=bool).reshape(-1)
        b = np.asarray(correct_b[s], dtype=bool).reshape(-1)
        if a.shape != (n,) or b.shape != (n,):
            raise ValueError(f"seed {s}: correctness has {a.size} / {b.size} entries for {n} pairs")
        d.append(a.astype(np.float64) - b.astype(np.float64))
    d = np.stack(d)                                                   # [seeds, pairs], values −1, 0, 1
    labels, codes = np.unique(np.concatenate([id1, id2]), return_inverse=True)
    c1, c2 = codes[:n], codes[n:]
    same = c1 == c2
    k = len(labels)
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    delta = 100.0 * float(d.mean())
    boot = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))
    for lo in range(0, n_boot, chunk):
        m = min(chunk, n_boot - lo)
        w = rng.multinomial(k, np.full(k, 1.0 / k), size=m).astype(np.float64)   # identity multiplicities
        wp = np.where(same, w[:, c1], w[:, c1] * w[:, c2])                       # pair weights [m, pairs]
        tot = wp.sum(axis=1, keepdims=True)
        per_seed = (wp @ d.T) / np.where(tot > 0, tot, 1.0)                        # [m, seeds]
        draw = rng.integers(0, len(seeds), size=(m, len(seeds)))
        boot[lo:lo + m] = 100.0 * np.take_along_axis(per_seed, draw, axis=1).mean(axis=1)
    alpha = 1 - level
    lo_ci, hi_ci = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    p = (1 + np.count_nonzero(np.abs(boot - delta) >= abs(delta) - 1e-12)) / (1 + n_boot)
    return {"delta": delta, "ci_low": float(lo_ci), "ci_high": float(hi_ci), "p_value": float(min(1.0, p)),
            "n_seeds": len(seeds), "n_identities": int(k), "n_pairs": int(n), "n_boot": n_boot}


__all__ = ["pair_identities", "hierarchical_bootstrap"]
