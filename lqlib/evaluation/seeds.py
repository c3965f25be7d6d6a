"""Statistics across training seeds: the spread a table's ± shows, and the test behind a claimed gain.

A KD gain is a property of a training recipe, so its evidence must come from independent training
runs (seeds), not from the pairs of one run: with ~3,000 pairs the pair-level noise of one model is
±0.5 points, while retraining with another seed moves accuracy by several points at small scale.

* :func:`seed_summary` — per (model, eval mode, scale): mean over seeds, the seeds' sample std
  (ddof = 1; NaN for one seed), n seeds, and the mean over seeds of the fold std (its own column);
* :func:`seed_test` — a paired t-test over seeds of per-seed accuracy (method seed k vs baseline seed
  k), a one-sample t-test against a deterministic baseline (one run, e.g. a frozen external teacher),
  or Welch's t-test when the seeds are not paired;
* :func:`holm` — Holm's step-down correction of the p-values of one table;
* :func:`compare_to_baseline` — every model vs a baseline at the given scales: Δ, its seeds' spread,
  t, p, Holm-adjusted p, and (secondary, pair noise only) a paired bootstrap over the pairs of each
  seed, summarised by its largest p-value.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

KEYS = ("model", "model_key", "eval_mode", "scale")


def seed_summary(results, keys: Sequence[str] = KEYS):
    """Mean, seeds' sd (ddof=1), n seeds and mean fold sd of ``acc_mean`` per ``keys`` group."""
    keys = [k for k in keys if k in results.columns]
    g = results.groupby(keys, sort=False)
    out = g["acc_mean"].agg(acc="mean", seeds_sd=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan,
                            n_seeds="count")
    out["fold_sd"] = g["acc_std"].mean()
    return out.reset_index()


def seed_test(a: dict, b: dict) -> dict:
    """Test per-seed accuracies ``a`` (method) against ``b`` (baseline), dicts seed → accuracy.

    Seeds present in both are paired (paired t-test on the differences); otherwise Welch's t-test on
    the two groups. Fewer than 2 values on a side gives p = NaN (no test possible)."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        d = np.array([a[s] - b[s] for s in common], dtype=float)
        sd = float(d.std(ddof=1))
        if sd == 0:
            t, p = (0.0, 1.0) if d.mean() == 0 else (np.inf * np.sign(d.mean()), 0.0)
        else:
            t = float(d.mean() / (sd / np.sqrt(len(d))))
            p = float(2 * stats.t.sf(abs(t), len(d) - 1))
        return {"test": "paired t", "n": len(d), "delta": float(d.mean()), "delta_sd": sd, "t": float(t), "p": p}
    va, vb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    delta = float(va.mean() - vb.mean()) if len(va) and len(vb) else np.nan
    if len(vb) == 1 and len(va) >= 2:  # a deterministic baseline (e.g. a frozen external teacher): one-sample t
        res = stats.ttest_1samp(va, vb[0])
        sd = float(va.std(ddof=1))
        p = float(res.pvalue) if sd > 0 else (1.0 if delta == 0 else 0.0)
        return {"test": "one-sample t", "n": len(va), "delta": delta, "delta_sd": sd,
                "t": float(res.statistic) if sd > 0 else np.nan, "p": p}
    if len(va) < 2 or len(vb) < 2:
        return {"test": "none (n < 2)", "n": min(len(va), len(vb)), "delta": delta, "delta_sd": np.nan,
                "t": np.nan, "p": np.nan}
    res = stats.ttest_ind(va, vb, equal_var=False)
    return {"test": "Welch t", "n": min(len(va), len(vb)), "delta": delta, "delta_sd": np.nan,
            "t": float(res.statistic), "p": float(res.pvalue)}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaNs stay NaN and do not count as tests)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def compare_to_baseline(results, baseline: str = "none", scales: Sequence[float] = (4, 8),
                        eval_mode: str = "both", pair_correct: Optional[Callable] = None,
                        models: Optional[Sequence[str]] = None, alpha: float = 0.05, n_boot: int = 2000):
    """Every model (``results["model_key"]``, or the keys ``models``) vs the model key ``baseline`` at
    ``scales``, across seeds, Holm-corrected.

    ``pair_correct(model key, seed, scale)`` (optional) returns one run's per-pair correctness; it feeds
    the secondary, pair-level column ``pair_boot_p_max`` (the largest paired-bootstrap p over the
    seed pairs: pair noise only, says nothing about seed-to-seed variation).
    """
    import pandas as pd

    from .significance import paired_bootstrap

    df = results[results["eval_mode"] == eval_mode]
    if baseline not in set(df["model_key"]):
        raise ValueError(f"baseline {baseline!r} has no rows (models: {sorted(set(df['model_key']))})")
    wanted = models or [m for m in dict.fromkeys(df["model_key"]) if m != baseline]
    rows = []
    for key in wanted:
        for scale in scales:
            pick = lambda m: {int(r.seed): float(r.acc_mean) for r in df[(df["model_key"] == m) &  # noqa: E731
                              np.isclose(df["scale"].astype(float), float(scale))].itertuples()}
            a, b = pick(key), pick(baseline)
            if not a or not b:
                continue
            row = {"model": df[df["model_key"] == key]["model"].iloc[0], "model_key": key, "baseline": baseline,
                   "eval_mode": eval_mode, "scale": float(scale), "acc": float(np.mean(list(a.values()))),
                   "baseline_acc": float(np.mean(list(b.values()))), **seed_test(a, b)}
            if pair_correct is not None:
                ps = []
                for s in sorted(a):
                    ca, cb = pair_correct(key, s, scale), pair_correct(baseline, s if s in b else min(b), scale)
                    if ca is not None and cb is not None:
                        ps.append(paired_bootstrap(ca, cb, n_boot=n_boot, seed=s)["p_value"])
                row["pair_boot_p_max"] = max(ps) if ps else np.nan
            rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm(out["p"].to_numpy())
        out["significant"] = (out["p_holm"] < alpha).where(out["p_holm"].notna())  # no test: no verdict
    return out
