"""Paired significance tests for two models scored on the same pairs."""
from __future__ import annotations

from typing import Any

import numpy as np

from .verification import _np


def _paired(correct_a, correct_b):
    a = _np(correct_a, "correct_a").reshape(-1).astype(bool)
    b = _np(correct_b, "correct_b").reshape(-1).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"correct arrays differ in length: {a.shape} vs {b.shape}")
    if len(a) == 0:
        raise ValueError("empty correct arrays")
    return a, b


def paired_bootstrap(correct_a, correct_b, n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over pairs of the accuracy difference A − B (in accuracy points).

    Resampling n pairs with replacement is sampled exactly as a multinomial over the three per-pair
    outcomes (A only right, B only right, tie). Returns delta, ci_low/ci_high (95 % percentile
    interval) and a two-sided p-value from the null-shifted bootstrap distribution
    ``(1 + #{|d* − δ| ≥ |δ|}) / (1 + n_boot)``. Thresholds are held fixed (per-pair correctness as
    judged), so fold-threshold re-estimation noise is not included.
    """
    a, b = _paired(correct_a, correct_b)
    n = len(a)
    counts = np.array([(a & ~b).sum(), (~a & b).sum(), (a == b).sum()], dtype=np.float64)
    delta = 100.0 * (counts[0] - counts[1]) / n
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=int(n_boot))
    boot = 100.0 * (draws[:, 0] - draws[:, 1]) / n
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = (1 + np.count_nonzero(np.abs(boot - delta) >= abs(delta) - 1e-12)) / (1 + len(boot))
    return {"delta": float(delta), "ci_low": float(lo), "ci_high": float(hi), "p_value": float(min(1.0, p)),
            "n_pairs": n, "n_boot": int(n_boot)}


def mcnemar(correct_a, correct_b, *, exact: bool | None = None, exact_below: int = 25) -> dict[str, Any]:
    """McNemar test on paired correctness: exact two-sided binomial (``scipy.stats.binomtest``) when the
    discordant count is below ``exact_below`` (or ``exact=True``), else χ² with continuity correction."""
    from scipy import stats

    a, b = _paired(correct_a, correct_b)
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    nd = n01 + n10
    use_exact = (nd < exact_below) if exact is None else exact
    if nd == 0:
        return {"a_only": n01, "b_only": n10, "statistic": 0.0, "p_value": 1.0, "method": "none-discordant"}
    if use_exact:
        return {"a_only": n01, "b_only": n10, "statistic": float(n01),
                "p_value": float(stats.binomtest(n01, nd, 0.5).pvalue), "method": "exact-binomial"}
    chi2 = (abs(n01 - n10) - 1.0) ** 2 / nd
    return {"a_only": n01, "b_only": n10, "statistic": float(chi2), "p_value": float(stats.chi2.sf(chi2, 1)),
            "method": "chi2-cc"}
