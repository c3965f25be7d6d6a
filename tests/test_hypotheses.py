"""The registered family: Holm over exactly its tests, MDE at its first step, one verdict per hypothesis."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from lqlib.evaluation.hypotheses import HypothesesError, family_tests, parse_family, require_registered
from lqlib.evaluation.power import mde
from lqlib.evaluation.seeds import holm, seed_test

BASE = [80.0, 81.0, 82.0, 80.5, 81.5]
DIFFS = {"logit": [1.8, 2.2, 2.0, 1.9, 2.1],               # +2.0, tight: supported
         "attention": [0.1, -0.1, 0.05, -0.05, 0.0],       # 0 ± 0.08: a 1-point gain is ruled out
         "attention_c": [3.0, -2.0, 1.0, -1.0, 2.5],       # +0.7 ± 2.1: inconclusive
         "at": [5.0, 5.1, 4.9, 5.0, 5.2]}                  # exploratory: not in the family
HYP = {"status": "registered", "alpha": 0.05, "power": 0.8, "min_effect": 1.0, "family": [
    {"id": "H1", "comparison": {"model": "logit", "baseline": "none"}, "scale": 8, "direction": "greater"},
    {"id": "H2", "comparison": {"model": "attention", "baseline": "none"}, "scale": 8, "direction": "greater"},
    {"id": "H3", "comparison": {"model": "logit+attention", "baseline": "logit"}, "scale": 8,
     "direction": "two-sided"},
    {"id": "H4", "comparison": {"model": "attention_c", "baseline": "none"}, "scale": 8, "direction": "greater"},
]}


def _results(extra_seeds=5):
    rows = []
    for k in range(extra_seeds):
        accs = {"none": BASE[k], **{m: BASE[k] + d[k] for m, d in DIFFS.items()}}
        accs["logit+attention"] = accs["logit"] - 2.0 + 0.1 * (k - 2)   # −2 ± 0.16 against logit
        for m, a in accs.items():
            for mode in ("both", "cross"):
                rows.append({"method": m, "seed": k, "scale": 8, "eval_mode": mode, "acc_mean": a - (mode == "cross")})
    return pd.DataFrame(rows)


def test_family_tests_holm_over_exactly_the_family_and_verdicts():
    res = _results()
    out = family_tests(res, HYP)
    assert out["id"].tolist() == ["H1", "H2", "H3", "H4"] and set(out["test"]) == {"paired t"}
    raw = []
    for h in HYP["family"]:
        pick = lambda m: {int(r.seed): r.acc_mean for r in res[(res.method == m) & (res.eval_mode == "both")].itertuples()}  # noqa: E731
        raw.append(seed_test(pick(h["comparison"]["model"]), pick(h["comparison"]["baseline"]))["p"])
    np.testing.assert_allclose(out["p"], raw)
    np.testing.assert_allclose(out["p_holm"], holm(raw))          # the exploratory 'at' row is not in the family
    assert out["alpha_first"].tolist() == [0.05 / 4] * 4
    assert out.loc[0, "mde"] == pytest.approx(mde(out.loc[0, "delta_sd"], 5, 0.05 / 4))
    assert out["delta"].tolist() == pytest.approx([2.0, 0.0, -2.0, 0.7])
    assert out["verdict"].tolist() == ["supported", "not supported", "supported (−)", "inconclusive"]
    assert out["seeds_ok"].all()


def test_opposite_direction_and_too_few_seeds():
    hyp = copy.deepcopy(HYP)
    hyp["family"][0]["direction"] = "less"
    hyp["family"][1]["seeds"] = 8
    out = family_tests(_results(), hyp)
    assert out.loc[0, "verdict"] == "not supported (opposite direction)"
    assert out["seeds_ok"].tolist() == [True, False, True, True]


def test_errors_name_the_problem():
    with pytest.raises(HypothesesError, match="'dkd'"):
        family_tests(_results(), {"family": [{"id": "X", "comparison": {"model": "dkd", "baseline": "none"},
                                             "scale": 8}]})
    with pytest.raises(HypothesesError, match="direction"):
        parse_family({"family": [{"id": "X", "comparison": {"model": "a", "baseline": "b"}, "scale": 8,
                                  "direction": "up"}]})
    with pytest.raises(HypothesesError, match=r"family\[0\]"):
        parse_family({"family": [{"id": "X", "scale": 8}]})
    with pytest.raises(HypothesesError, match="duplicate"):
        parse_family({"family": [HYP["family"][0], HYP["family"][0]]})
    one_seed = _results(extra_seeds=1)            # one block so far: no paired t, and the error says why
    with pytest.raises(HypothesesError, match=r"H1 \(none \(n < 2\), n = 1\).*at least 2"):
        family_tests(one_seed, HYP)
    with pytest.raises(HypothesesError, match=r"not 'registered'"):
        require_registered({"status": "draft"})
    require_registered(HYP)


def test_the_registered_verdict_preset_reads_the_test_folds_only_in_its_last_step():
    from lqlib.run import load_preset

    p = load_preset("verdict")
    fam = parse_family(p["hypotheses"])
    assert [h.id for h in fam] == ["H1", "H2", "H3", "H4", "H5"]
    assert all(h.scale == 8 and h.eval_mode == "both" and h.seeds >= 5 for h in fam)
    require_registered(p["hypotheses"])
    assert "draft" not in p
    reads = [s.get("parameters", {}).get("PAIRS") for s in p["notebooks"]]
    # the test folds: read by one step, the last that evaluates them; after it only 06_verdict, which pools what the
    # blocks published, and its exploratory identification step (lfw-half-id, after the verdicts)
    assert reads[-3] == p["hypotheses"]["pairs"] == "lfw-half" and reads[-2:] == [None, None]
    assert [n["notebook"] for n in p["notebooks"][-2:]] == ["06_verdict", "06_verdict"]
    assert "ID_SET" not in p["notebooks"][-2]["parameters"] and p["notebooks"][-1]["parameters"]["ID_SET"]
    assert all(r in (None, p["hypotheses"]["validation"]) for r in reads[:-3])
    # the family's models are the ones the preset trains: H5's student carries the weight chosen on validation
    sface = [s for s in p["notebooks"] if s.get("tag") == "sface"][0]["parameters"]
    assert sface["KD_WEIGHTS"] == {"angular": 50.0} and fam[4].model == "angular_emb_c[angular=50]@sface"


def test_run_info_says_which_set_each_step_read(tmp_path, monkeypatch):
    import json

    from lqlib import run as R

    monkeypatch.setattr(R, "environment", lambda: {})
    preset = {"name": "p", "hypotheses": HYP}
    status = {"03__val": {"status": "done", "seconds": 1.0, "parameters": {"PAIRS": "lfw-half-val"}},
              "03__test": {"status": "done", "seconds": 2.0, "parameters": {"PAIRS": "lfw-half"}},
              "02": {"status": "done", "seconds": 3.0, "parameters": {"METHOD": "none"}}}
    info = json.loads(R.publish_run_info(preset, tmp_path, status, [], tmp_path).read_text())
    assert info["steps"]["03__val"]["reads"] == "validation" and info["steps"]["03__test"]["reads"] == "test"
    assert "reads" not in info["steps"]["02"] and info["hypotheses"]["status"] == "registered"


def test_the_registered_converged_preset_is_its_committed_file_and_its_recipe():
    """The converged study: results/converged/hypotheses.yaml (dated by git) is the preset's block; the family is
    the verdict study's five plus H6 (BasicNet-LR vs the block's teacher, BasicNet-HR); the test folds are read by
    the test step only; the students' stopping rule is the one the hypotheses state (x8 on lfw-half-val, rate
    drops before a stop) and the teacher's is the verdict study's."""
    import yaml

    from lqlib import paths
    from lqlib.config import recipe
    from lqlib.run import load_preset

    p = load_preset("converged")
    committed = yaml.safe_load(paths.resolve("results/converged/hypotheses.yaml").read_text())["hypotheses"]
    assert committed == p["hypotheses"]
    require_registered(committed)
    fam = parse_family(committed)
    verdict = parse_family(load_preset("verdict")["hypotheses"])
    assert fam[:5] == verdict and [h.id for h in fam] == ["H1", "H2", "H3", "H4", "H5", "H6"]
    assert (fam[5].model, fam[5].baseline, fam[5].scale, fam[5].eval_mode) == ("none", "teacher", 8.0, "both")
    reads = [s.get("parameters", {}).get("PAIRS") for s in p["notebooks"]]
    assert reads[-2] == committed["pairs"] == "lfw-half" and reads[-1] is None
    assert all(r in (None, committed["validation"]) for r in reads[:-2])
    student, teacher = recipe("cpu_converged", "student"), recipe("cpu_converged", "teacher")
    assert student["early_stop"] == {"metric": "val_acc_x8", "min_delta": 0.25, "patience": 3, "min_epochs": 8,
                                     "lr_drops": 2}
    assert student["schedule"] == "constant" and student["val_pairs"] == "lfw-half-val" and student["epochs"] == 30
    assert teacher == recipe("cpu_verdict", "teacher")
    sface = [s for s in p["notebooks"] if s.get("tag") == "sface"][0]["parameters"]
    assert sface["KD_WEIGHTS"] == {"angular": 50.0}
