"""Does a study's table say anything? The checks a notebook runs on its own numbers.

nbval runs the notebooks without stored outputs, so nothing compares their numbers with a reference:
a study whose models never learned would still "pass". :func:`check_study` fails loudly
(:class:`DegenerateStudyError`) on results that cannot come from a working study:

* a NaN in any numeric column (a fold with one class, a broken embedding);
* BasicNet-HR (model key ``teacher``, the HR-trained teacher) at ×1 not above chance (50 %) by
  ``chance_margin`` points: with the smoke preset's 300 pairs the binomial sd at chance is 2.9 points, so
  the default 10 is > 3 sd — the smoke study's 2-epoch teacher reaches ~75 %;
* BasicNet-HR at ×1 below BasicNet-HR at ×8 (``both``, else the first eval mode): a model trained on HR faces that sees ×8 faces
  better than HR ones learned nothing about faces.

Synthetic pairs (no face data found: ``dataset == "synthetic"``) are not checked, with one printed line.
"""
from __future__ import annotations

import math

import pandas as pd

from ..errors import LqlibError

OWN_TEACHER = "teacher"   # the model key of BasicNet-HR (lqlib.model_key.OWN_TEACHER)
CHANCE = 50.0


class DegenerateStudyError(LqlibError, AssertionError):
    """A study's results cannot come from models that learned (see :func:`check_study`)."""


def check_study(results, chance_margin: float = 10.0) -> dict:
    """Check a study's tidy results (:func:`lqlib.study.evaluate_study`); returns what was checked
    (``{"checked": bool, "teacher_x1": ..., "teacher_x8": ...}``) or raises :class:`DegenerateStudyError`
    naming every problem found."""
    if len(results) == 0:
        raise DegenerateStudyError("no results to check")
    if set(results.get("dataset", pd.Series(["?"])).astype(str)) == {"synthetic"}:
        print("check_study: synthetic pairs (no face data) — numbers mean nothing about faces, not checked")
        return {"checked": False}
    problems = []
    text = ("model", "model_key", "method", "teacher")  # "" reads back from a CSV as NaN: not a number column
    num = [c for c in results.columns if c not in text and pd.api.types.is_numeric_dtype(results[c])]
    nan_cols = [c for c in num if results[c].isna().any()]
    if nan_cols:
        rows = results[results[nan_cols].isna().any(axis=1)]
        who = sorted(set(rows.get("model_key", rows.get("model", pd.Series(["?"]))).astype(str)))
        problems.append(f"NaN in {nan_cols} (models {who})")
    key = "model_key" if "model_key" in results else "method"   # results written before the key had its column
    modes = list(dict.fromkeys(results["eval_mode"]))
    mode = "both" if "both" in modes else modes[0]
    t = results[(results[key].astype(str) == OWN_TEACHER) & (results["eval_mode"] == mode)]
    acc = t.groupby(t["scale"].astype(float))["acc_mean"].mean()
    x1, x8 = float(acc.get(1.0, math.nan)), float(acc.get(8.0, math.nan))
    if math.isnan(x1):
        problems.append(f"no BasicNet-HR ('teacher') row at ×1 in `{mode}`")
    elif not x1 > CHANCE + chance_margin:
        problems.append(f"BasicNet-HR at ×1 is {x1:.2f} %, not above chance ({CHANCE:g} %) by {chance_margin:g} points")
    if not math.isnan(x1) and not math.isnan(x8) and x1 < x8:
        problems.append(f"BasicNet-HR is worse at ×1 ({x1:.2f} %) than at ×8 ({x8:.2f} %)")
    if problems:
        raise DegenerateStudyError("degenerate study: " + "; ".join(problems))
    return {"checked": True, "teacher_x1": x1, "teacher_x8": x8}


__all__ = ["DegenerateStudyError", "check_study", "CHANCE"]
