"""The check a study's numbers must pass (03's check cell, tests/test_smoke_results.py): a study at chance,
with a NaN, or whose HR teacher sees ×8 better than ×1 fails; a working one passes."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lqlib.evaluation import DegenerateStudyError, check_study

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["teacher", "none", "logit", "attention", "logit+attention"]
NAMES = {"teacher": "BasicNet-HR", "none": "BasicNet-LR", "logit": "+logit KD", "attention": "+attention KD",
         "logit+attention": "+logit+attention KD"}


def _study(acc, dataset: str = "lfw-half") -> pd.DataFrame:
    """One row per model × scale × eval mode (seed 0) with accuracy ``acc(model, scale, mode)``."""
    rows = [{"model": NAMES[k], "model_key": k, "method": "" if k == "teacher" else k, "teacher": "", "seed": 0,
             "scale": float(s), "eval_mode": m, "protocol": "insightface", "acc_mean": acc(k, s, m), "acc_std": 5.0,
             "auc": 0.5, "n_pairs": 300, "dataset": dataset}
            for k in MODELS for s in (1, 2, 4, 8) for m in ("both", "cross")]
    return pd.DataFrame(rows)


def _chance(k, s, m):
    """A study at chance: 50 % give or take the pair noise of 300 pairs (distinct per row, never NaN)."""
    return 50.0 + float(np.random.default_rng(MODELS.index(k) * 100 + s * 10 + len(m)).uniform(-1.5, 1.5))


def _working(k, s, m):
    return {"teacher": 75.0 - 0.5 * s}.get(k, 62.0 + MODELS.index(k) - 0.1 * s)


def test_a_working_study_passes(tmp_path):
    got = check_study(_study(_working))
    assert got == {"checked": True, "teacher_x1": pytest.approx(74.5), "teacher_x8": pytest.approx(71.0)}
    _study(_working).to_csv(tmp_path / "r.csv", index=False)  # the empty teacher column reads back as NaN
    assert check_study(pd.read_csv(tmp_path / "r.csv"))["checked"]


@pytest.mark.parametrize("acc, why", [
    (_chance, "not above chance"),
    (lambda k, s, m: 58.0 if k == "teacher" else _working(k, s, m), "not above chance"),
    (lambda k, s, m: 70.0 + s if k == "teacher" else _working(k, s, m), "worse at ×1"),
    (lambda k, s, m: float("nan") if (k, s) == ("logit", 4) else _working(k, s, m), "NaN"),
])
def test_a_degenerate_study_fails_saying_why(acc, why):
    with pytest.raises(DegenerateStudyError, match=why):
        check_study(_study(acc))


def test_results_written_before_the_key_had_its_column_are_checked_too():
    old = _study(_chance).drop(columns=["method", "teacher"]).rename(columns={"model_key": "method"})
    with pytest.raises(DegenerateStudyError, match="not above chance"):
        check_study(old)


def test_synthetic_pairs_are_not_checked(capsys):
    assert check_study(_study(_chance, "synthetic")) == {"checked": False}
    assert "synthetic" in capsys.readouterr().out


def test_smoke_results_fail_on_a_study_at_chance(tmp_path):
    """tests/test_smoke_results.py on a fabricated study at 50 % ± pair noise: the degeneracy check fails, while
    the verification tests it had before (one row per scale, teacher ×1 ≥ ×8, students differ) pass on it."""
    out = tmp_path / "results" / "lfw-half"
    out.mkdir(parents=True)
    chance = _study(lambda k, s, m: 50.0 + (0.4 if s == 1 else 0.0) + 0.01 * MODELS.index(k) + 0.001 * s)
    chance.to_csv(out / "results.csv", index=False)
    env = dict(os.environ, LQLIB_SMOKE_RUN=str(tmp_path), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "-k", "not losses",
                           str(ROOT / "tests" / "test_smoke_results.py")], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    lines = proc.stdout.splitlines()
    failed = sorted(ln.split("::")[1].split()[0] for ln in lines if ln.startswith("FAILED"))
    passed = sorted(ln.split("::")[1].split()[0] for ln in lines if ln.startswith("PASSED"))
    assert "test_the_study_is_not_degenerate" in failed, proc.stdout[-3000:]
    before = {"test_every_method_one_row_per_scale", "test_teacher_is_better_on_hr_than_at_x8",
              "test_kd_methods_train_differently"}
    assert before <= set(passed), proc.stdout[-3000:]
