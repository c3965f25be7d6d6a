"""Numbers of the smoke study that nbval just executed (recommenders' ``tests/smoke``): the notebooks
must not only run, they must produce a sane study. Runs after nbval in ``tests/run_all.sh``, which
sets ``LQLIB_SMOKE_RUN``; skipped in a plain ``pytest tests``."""
import csv
import os
from pathlib import Path

import pandas as pd
import pytest

from lqlib import paths
from lqlib.evaluation import check_study

RUN = os.environ.get("LQLIB_SMOKE_RUN")
pytestmark = pytest.mark.skipif(not RUN, reason="set LQLIB_SMOKE_RUN=runs/<smoke study> (tests/run_all.sh does)")
MODELS = ["teacher", "none", "logit", "attention", "logit+attention"]


@pytest.fixture(scope="module")
def root() -> Path:
    return paths.resolve(RUN)


@pytest.fixture(scope="module")
def results(root) -> pd.DataFrame:
    files = sorted((root / "results").glob("*/results.csv"))
    assert files, f"no results/<eval set>/results.csv under {root}"
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def test_every_method_one_row_per_scale(results):
    both = results[results["eval_mode"] == "both"]
    assert sorted(set(both["model_key"])) == sorted(MODELS)
    assert both.groupby(["model_key", "seed", "scale"]).size().eq(1).all()
    assert sorted(both["scale"].unique()) == [1.0, 2.0, 4.0, 8.0]


def test_the_study_is_not_degenerate(results):
    """No NaN, BasicNet-HR ×1 above chance by a margin, ×1 ≥ ×8 (the check cell of 03; a study at chance fails:
    tests/test_study_checks.py)."""
    check_study(results)


def test_teacher_is_better_on_hr_than_at_x8(results):
    t = results[(results["model_key"] == "teacher") & (results["eval_mode"] == "both")].set_index("scale")["acc_mean"]
    assert t[1.0] >= t[8.0], t.to_dict()


def test_kd_methods_train_differently(results):
    both = results[results["eval_mode"] == "both"].set_index(["model_key", "scale"])["acc_mean"]
    assert not both.loc["logit"].equals(both.loc["attention"]), "logit and attention students are identical"


@pytest.mark.parametrize("run", ["teacher", "students/none_s0", "students/logit_s0", "students/attention_s0",
                                 "students/logit-attention_s0"])
def test_losses_positive_finite_and_falling(root, run):
    rows = list(csv.DictReader(open(root / run / "metrics.csv")))
    assert len(rows) >= 2
    for col in [c for c in rows[0] if c.startswith("loss")]:
        vals = [float(r[col]) for r in rows]
        assert all(v > 0 for v in vals), (run, col, vals)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    if run == "teacher":
        assert float(rows[0]["loss_ce"]) >= 1.0
        summary = pd.read_json(root / run / "summary.json", typ="series")
        assert summary["num_classes"] >= 32


def test_identification_beside_verification(root):
    """03's lfw-half-id search: every model, ×1-×8, and a teacher that identifies far above chance on HR probes."""
    p = root / "results" / "lfw-half-id" / "identification.csv"
    assert p.is_file(), f"03 wrote no identification table ({p})"
    ident = pd.read_csv(p)
    assert sorted(set(ident["model_key"])) == sorted(MODELS)
    cross = ident[(ident["eval_mode"] == "cross") & ident["distractors"]]
    assert sorted(cross["scale"].unique()) == [1.0, 2.0, 4.0, 8.0]
    t = cross[cross["model_key"] == "teacher"].set_index("scale")
    chance = 100.0 / t["n_gallery"].iloc[0]
    assert t.loc[1.0, "rank1"] > 50 * chance, t["rank1"].to_dict()
    assert t.loc[1.0, "rank1"] >= t.loc[8.0, "rank1"], t["rank1"].to_dict()
    assert (cross["rank1"] <= cross["rank5"]).all() and cross[["rank1", "mAP"]].notna().all().all()
