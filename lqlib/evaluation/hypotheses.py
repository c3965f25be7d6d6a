"""Hypotheses fixed before the test folds are read: the family, its tests with Holm, and one verdict each.

A study preset declares its primary family in a ``hypotheses`` block (``lqlib/presets/verdict.yaml``):
``alpha``, ``power``, ``min_effect`` (points; the smallest gain that would matter) and ``family``, a list
of ``{id, comparison: {model, baseline}, scale, eval_mode, direction, seeds}``; ``status`` becomes
``registered`` when the block is committed, before any test-fold number exists (:func:`require_registered`).

:func:`family_tests` runs the paired t-test over seeds (:func:`~lqlib.evaluation.seeds.seed_test`) for
exactly the family, Holm over exactly those p-values, the MDE at Holm's first step
(:mod:`lqlib.evaluation.power`) and a verdict per hypothesis:

* ``supported`` — Holm-adjusted p < alpha and Δ in the stated direction (``greater``/``less``; for
  ``two-sided`` either sign, named in the verdict);
* ``not supported`` — significant in the opposite direction, or not significant while the one-sided
  (1 − alpha/m) upper confidence bound of Δ in the stated direction lies below ``min_effect``: a gain
  that would matter is ruled out;
* ``inconclusive`` — otherwise; read it with the ``mde`` column (the effect 80 % power would detect).

Rows whose model has fewer seeds than declared are marked ``seeds_ok = False``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import LqlibError
from .power import holm_first_alpha, key_column, mde
from .seeds import holm, seed_test

DIRECTIONS = ("greater", "less", "two-sided")


class HypothesesError(LqlibError, ValueError):
    """A hypotheses block is malformed, not registered, or names a model without results."""


@dataclass(frozen=True)
class Hypothesis:
    id: str
    model: str
    baseline: str
    scale: float
    eval_mode: str = "both"
    direction: str = "greater"
    seeds: int = 5


def parse_family(hypotheses: dict) -> list[Hypothesis]:
    """The family of a ``hypotheses`` block as :class:`Hypothesis` records (errors name the entry)."""
    fam = (hypotheses or {}).get("family")
    if not isinstance(fam, list) or not fam:
        raise HypothesesError("hypotheses: 'family' must be a non-empty list")
    out = []
    for i, h in enumerate(fam):
        where = f"hypotheses.family[{i}] ({h.get('id', '?') if isinstance(h, dict) else h!r})"
        try:
            comp = h["comparison"]
            rec = Hypothesis(str(h["id"]), str(comp["model"]), str(comp["baseline"]), float(h["scale"]),
                             str(h.get("eval_mode", "both")), str(h.get("direction", "greater")),
                             int(h.get("seeds", 5)))
        except (KeyError, TypeError, ValueError) as e:
            raise HypothesesError(f"{where}: needs id, comparison {{model, baseline}}, scale ({e})") from None
        if rec.direction not in DIRECTIONS:
            raise HypothesesError(f"{where}: direction must be one of {DIRECTIONS}, got {rec.direction!r}")
        out.append(rec)
    ids = [h.id for h in out]
    if len(set(ids)) != len(ids):
        raise HypothesesError(f"hypotheses: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return out


def require_registered(hypotheses: dict) -> None:
    """Raise unless the block is ``status: registered`` (call before reading the test folds)."""
    status = (hypotheses or {}).get("status")
    if status != "registered":
        raise HypothesesError(f"hypotheses status is {status!r}, not 'registered': commit the family before any "
                              "test-fold number of the study exists")


def _verdict(h: Hypothesis, delta: float, sd: float, n: int, p_holm: float, alpha: float, a1: float,
             min_effect: float) -> str:
    if not math.isfinite(p_holm):
        return "no test (n < 2)"
    sign = 1.0 if h.direction != "less" else -1.0
    if p_holm < alpha:
        if h.direction == "two-sided":
            return f"supported ({'+' if delta > 0 else '−'})"
        return "supported" if sign * delta > 0 else "not supported (opposite direction)"
    from scipy import stats

    # one-sided (1 − α/m) upper bound of the effect in the stated direction (|Δ| for two-sided)
    eff = abs(delta) if h.direction == "two-sided" else sign * delta
    upper = eff + stats.t.ppf(1 - a1, n - 1) * sd / math.sqrt(n) if sd > 0 else eff
    return "not supported" if upper < min_effect else "inconclusive"


def family_tests(results, hypotheses: dict):
    """One row per hypothesis: id, model, baseline, scale, eval_mode, direction, n, seeds_ok, acc,
    baseline_acc, delta, delta_sd, t, p, p_holm, alpha_first, mde, verdict (module docstring).
    ``results``: per model × seed rows (model_key, seed, scale, eval_mode, acc_mean — a study's results.csv)."""
    import pandas as pd

    fam = parse_family(hypotheses)
    alpha = float(hypotheses.get("alpha", 0.05))
    power = float(hypotheses.get("power", 0.8))
    min_effect = float(hypotheses.get("min_effect", 1.0))
    a1 = holm_first_alpha(alpha, len(fam))
    rows = []
    for h in fam:
        df = results[(results["eval_mode"] == h.eval_mode) & np.isclose(results["scale"].astype(float), h.scale)]
        pick = {}
        for m in (h.model, h.baseline):
            sel = df[df[key_column(df)] == m]
            if sel.empty:
                raise HypothesesError(f"{h.id}: no {h.eval_mode} rows at x{h.scale:g} for {m!r}; "
                                      f"models: {sorted(set(df[key_column(df)]))}")
            pick[m] = {int(r.seed): float(r.acc_mean) for r in sel.itertuples()}
        test = seed_test(pick[h.model], pick[h.baseline])
        n = int(test["n"])
        sd = float(test["delta_sd"]) if test["delta_sd"] == test["delta_sd"] else float("nan")
        rows.append({"id": h.id, "model": h.model, "baseline": h.baseline, "scale": h.scale,
                     "eval_mode": h.eval_mode, "direction": h.direction, "test": test["test"], "n": n,
                     "seeds_ok": min(len(pick[h.model]), len(pick[h.baseline])) >= h.seeds,
                     "acc": float(np.mean(list(pick[h.model].values()))),
                     "baseline_acc": float(np.mean(list(pick[h.baseline].values()))),
                     "delta": float(test["delta"]), "delta_sd": sd, "t": test["t"], "p": test["p"],
                     "alpha_first": a1,
                     "mde": mde(sd, n, a1, power) if n >= 2 and sd > 0 else float("nan")})
    out = pd.DataFrame(rows)
    if any(t != "paired t" for t in out["test"]):
        bad = out.loc[out["test"] != "paired t", ["id", "test", "n"]]
        what = ", ".join(f"{r.id} ({r.test}, n = {r.n})" for r in bad.itertuples())
        raise HypothesesError(f"{what}: the family's tests are paired t-tests over seeds; both sides need the same "
                              f"seeds, at least 2")
    out["p_holm"] = holm(out["p"].to_numpy())
    out["verdict"] = [_verdict(h, r.delta, r.delta_sd, r.n, r.p_holm, alpha, a1, min_effect)
                      for h, r in zip(fam, out.itertuples())]
    return out


__all__ = ["Hypothesis", "HypothesesError", "parse_family", "require_registered", "family_tests", "DIRECTIONS"]
