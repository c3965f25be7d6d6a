"""Power of the across-seed test: the minimal detectable effect (MDE) and the seeds a comparison needs.

The family's tests (:func:`lqlib.evaluation.seeds.seed_test`) are paired t-tests over training seeds:
the per-seed differences d_k = acc(method, seed k) − acc(baseline, seed k), k = 1..n, assumed
N(δ, σ²). The two-sided test at level α rejects when |t| > c = t_{1−α/2, n−1}; under δ the statistic
t = mean(d)/(sd(d)/√n) follows a non-central t with n − 1 degrees of freedom and non-centrality
δ√n/σ, so

    power(δ; σ, n, α) = P(T' > c) + P(T' < −c),   T' ~ nct(n − 1, δ√n/σ)

(:func:`paired_t_power`, exact, via ``scipy.stats.nct``). Holm's procedure tests the smallest p-value
of a family of m at α/m first (:func:`holm_first_alpha`): a comparison that is to be detectable
whatever the other p-values are must reach power at α/m — that is the conservative level used for
the MDE beside each verdict.

* :func:`mde` — the smallest δ (in the units of σ, accuracy points here) detected with the given power;
* :func:`seeds_needed` — the smallest n ≥ 2 whose power for a target δ reaches the given power;
* :func:`add_mde` — an ``mde`` and a ``power_at_delta`` column for a table of tests (``n``, ``delta``,
  ``delta_sd`` columns, as :func:`~lqlib.evaluation.seeds.compare_to_baseline` writes them);
* :func:`paired_differences`, :func:`power_plan` — from an earlier study's per-seed results, the sd of
  each comparison's per-seed differences and the seeds a new study needs (with an upper confidence
  bound of that sd, since an sd from 3 seeds has 2 degrees of freedom).
"""
from __future__ import annotations

import math

import numpy as np


def holm_first_alpha(alpha: float, family_size: int) -> float:
    """α/m: the level Holm's step-down procedure applies to the smallest p-value of a family of m."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if int(family_size) < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    return alpha / int(family_size)


def _check(sd: float, n: int, alpha: float):
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"sd of the paired differences must be a finite number > 0, got {sd}")
    if int(n) < 2:
        raise ValueError(f"a paired t-test needs n >= 2 seeds, got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def paired_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test over ``n`` seeds at level ``alpha`` for a true mean
    difference ``effect`` when the per-seed differences have standard deviation ``sd``."""
    from scipy import stats

    _check(sd, n, alpha)
    df = int(n) - 1
    c = stats.t.ppf(1 - alpha / 2, df)
    ncp = abs(float(effect)) * math.sqrt(int(n)) / float(sd)  # two-sided power is symmetric in the sign
    upper = float(stats.nct.sf(c, df, ncp))
    lower = float(stats.nct.cdf(-c, df, ncp))  # the far tail: scipy returns NaN where it underflows
    if not math.isfinite(upper):
        upper = 1.0 - float(stats.nct.cdf(c, df, ncp))
    return min(1.0, upper + (lower if math.isfinite(lower) else 0.0))


def mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The minimal detectable effect: the δ > 0 at which :func:`paired_t_power` equals ``power``."""
    from scipy import optimize

    _check(sd, n, alpha)
    if not alpha < power < 1:
        raise ValueError(f"power must be in (alpha, 1), got {power}")
    f = lambda d: paired_t_power(d * sd, sd, n, alpha) - power  # noqa: E731  (d: effect in units of sd)
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
        if hi > 1e6:
            raise ValueError(f"no detectable effect at n={n}, alpha={alpha}")
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-10)) * float(sd)


def seeds_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, max_n: int = 1000) -> int:
    """The smallest number of seeds n ≥ 2 whose paired t-test reaches ``power`` for ``effect``."""
    if not effect > 0:
        raise ValueError(f"effect must be > 0 (a difference to detect), got {effect}")
    for n in range(2, int(max_n) + 1):
        if paired_t_power(effect, sd, n, alpha) >= power:
            return n
    raise ValueError(f"more than max_n={max_n} seeds needed for effect {effect} with sd {sd}")


def add_mde(tests, alpha: float = 0.05, family_size: int | None = None, power: float = 0.8):
    """A copy of a tests table with ``alpha_first`` (α/m, m = ``family_size``, default: the table's rows
    with a test), ``mde`` (points, at that level and ``power``, from each row's ``delta_sd`` and ``n``)
    and ``power_at_delta`` (the power for the row's own observed ``delta``). Rows with no paired test
    (n < 2 or no sd) get NaN."""
    out = tests.copy()
    tested = out["p"].notna() if "p" in out.columns else np.ones(len(out), bool)
    m = int(family_size) if family_size is not None else max(int(np.sum(tested)), 1)
    a = holm_first_alpha(alpha, m)
    mdes, powers = [], []
    for r in out.itertuples():
        sd, n = float(getattr(r, "delta_sd", np.nan)), int(getattr(r, "n", 0) or 0)
        if n >= 2 and math.isfinite(sd) and sd > 0:
            mdes.append(mde(sd, n, a, power))
            powers.append(paired_t_power(abs(float(r.delta)), sd, n, a))
        else:
            mdes.append(np.nan)
            powers.append(np.nan)
    out["alpha_first"] = a
    out["mde"] = mdes
    out["power_at_delta"] = powers
    return out


def key_column(results) -> str:
    """The column naming each row's model: ``model_key`` (since the key has its own columns), ``method`` in
    results written before."""
    return "model_key" if "model_key" in results else "method"


def paired_differences(results, method: str, baseline: str, scale: float, eval_mode: str = "both") -> dict:
    """``{seed: acc(method, seed) − acc(baseline, seed)}`` at ``scale`` over the seeds both have
    (``results``: one row per model × seed × scale × eval mode, columns model_key, seed, scale, eval_mode,
    acc_mean — a study's ``results.csv``; ``method``/``baseline`` are model keys)."""
    df = results[results["eval_mode"] == eval_mode]
    df = df[np.isclose(df["scale"].astype(float), float(scale))]

    def pick(m):
        col = key_column(df)
        rows = df[df[col] == m]
        if rows.empty:
            raise ValueError(f"no {eval_mode} rows at x{scale:g} for model {m!r}; models: {sorted(set(df[col]))}")
        return {int(r.seed): float(r.acc_mean) for r in rows.itertuples()}

    a, b = pick(method), pick(baseline)
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}


def sd_upper_bound(sd: float, n: int, confidence: float = 0.8) -> float:
    """One-sided upper confidence bound of a normal sd estimated from ``n`` values:
    sd·√((n − 1)/χ²_{1−confidence, n−1})."""
    from scipy import stats

    if int(n) < 2:
        raise ValueError(f"an sd needs n >= 2 values, got {n}")
    return float(sd) * math.sqrt((int(n) - 1) / stats.chi2.ppf(1 - confidence, int(n) - 1))


def power_plan(results, comparisons, alpha: float = 0.05, power: float = 0.8, seeds=(3, 5, 8, 10),
               targets=(1.0, 2.0, 3.0), sd_confidence: float = 0.8):
    """Per comparison (dicts with ``name``, ``method``, ``baseline``, ``scale``, optional ``eval_mode``,
    ``note``) of a family of ``len(comparisons)`` tested with Holm at ``alpha`` (first step α/m): the
    earlier study's n, Δ and sd of the per-seed differences, the sd's upper ``sd_confidence`` bound,
    the power for that Δ and the MDE at each n of ``seeds``, and the seeds needed for |Δ| and for each
    of ``targets`` (points), with the sd and with its upper bound."""
    import pandas as pd

    a = holm_first_alpha(alpha, len(comparisons))
    rows = []
    for c in comparisons:
        d = paired_differences(results, c["method"], c["baseline"], c["scale"], c.get("eval_mode", "both"))
        v = np.array(list(d.values()))
        n, delta, sd = len(v), float(v.mean()), float(v.std(ddof=1))
        up = sd_upper_bound(sd, n, sd_confidence)
        row = {"comparison": c["name"], "measured_as": f"{c['method']} vs {c['baseline']} x{c['scale']:g}",
               "n_first": n, "delta": delta, "sd": sd, f"sd_up{int(100 * sd_confidence)}": up, "alpha_first": a}
        for k in seeds:
            row[f"power_n{k}"] = paired_t_power(delta, sd, k, a)
            row[f"mde_n{k}"] = mde(sd, k, a, power)
        row["seeds_for_delta"] = seeds_needed(abs(delta), sd, a, power) if abs(delta) > 0 else np.nan
        for t in targets:
            row[f"seeds_for_{t:g}"] = seeds_needed(t, sd, a, power)
            row[f"seeds_for_{t:g}_sd_up"] = seeds_needed(t, up, a, power)
        row["note"] = c.get("note", "")
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["holm_first_alpha", "paired_t_power", "mde", "seeds_needed", "add_mde", "paired_differences",
           "sd_upper_bound", "power_plan"]
