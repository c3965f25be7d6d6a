"""The verdict study's analysis calls on a tiny trained study: attention measure, family report, packed correctness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lqlib import study as S
from lqlib import verdict as V
from lqlib.data import PairSet
from lqlib.data.synthetic import SyntheticFaces
from lqlib.evaluation.correctness import load_correctness

N = 40


@pytest.fixture(scope="module")
def study(make_tiny_study):
    return make_tiny_study("v", compile=False)


def _pairs(name):
    images, issame = SyntheticFaces(num_classes=8, images_per_class=6, seed=5).pairs(N)
    return PairSet(images, issame, torch.arange(N) * 2 // N, name)


def test_attention_measure_of_every_own_model(study):
    df = V.attention_measure_study(study, _pairs("synth"), n_faces=10, scale=8, n_boot=50)
    blocks = df.groupby("model").size()
    assert list(dict.fromkeys(df["model"])) == [V.TEACHER_ON_LR, "BasicNet-LR", "+logit KD"]
    assert blocks.nunique() == 1 and set(df["scale"]) == {8.0} and set(df["measure"]) == {"pearson"}
    assert df.loc[df.model == "BasicNet-LR", "n_seeds"].eq(2).all()
    assert set(df.loc[df.model == V.TEACHER_ON_LR, "interval"]) == {"faces (1 seed)"}
    assert df["mean"].between(-1, 1).all() and (df["ci_low"] <= df["mean"] + 1e-12).all()


def test_family_report_with_hierarchical_bootstrap(study, monkeypatch):

    pairs = _pairs("lfw-half-val")                 # a split name: identities come from the split (stubbed here)
    res = S.evaluate_study(study, pairs, scales=(1, 8), eval_modes=("both",), batch_size=16)
    ids = np.repeat(np.arange(N // 2), 2)
    monkeypatch.setattr(V, "pair_identities", lambda *a, **k: (ids, ids[::-1].copy()))
    hyp = {"alpha": 0.05, "family": [{"id": "H1", "comparison": {"model": "logit", "baseline": "none"},
                                       "scale": 8, "seeds": 2}]}
    out = V.family_report(study, res, hyp, n_boot=200)
    r = out.iloc[0]
    assert r["n"] == 2 and r["seeds_ok"] and np.isfinite([r["boot_ci_low"], r["boot_ci_high"], r["boot_p"]]).all()
    assert r["boot_ci_low"] <= r["delta"] + 1e-9 <= r["boot_ci_high"] + 2e-9
    res_b = S.evaluate_study(study, _pairs("synth"), scales=(8,), eval_modes=("both",), batch_size=16)
    assert np.isnan(V.family_report(study, res_b, hyp, n_boot=50).iloc[0]["boot_p"])   # not a split: no identities


def test_publish_correctness(study, tmp_path):
    S.evaluate_study(study, _pairs("synth"), scales=(1, 8), eval_modes=("both",), batch_size=16)
    out = V.publish_correctness(study, "synth", tmp_path)
    got = load_correctness(out)
    assert out.name == "correctness_synth.npz" and {"teacher_s0", "none_s1", "logit_s0"} <= set(got)
    with np.load(study.eval_dir("synth") / "logit_s0.npz") as z:
        assert np.array_equal(got["logit_s0"]["both_x8"], z["both_x8"])


def test_attention_measure_figure(study, tmp_path):
    from lqlib import plotting

    df = V.attention_measure_study(study, _pairs("synth"), n_faces=12, scale=8, n_boot=50)
    ax = plotting.attention_measure_curve(df, title="synthetic study")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_legend().get_title().get_text() == "error bars: 95 % t-interval over seeds;\ndashed: 1 seed, face bootstrap"
    assert labels == [f"{V.TEACHER_ON_LR} (1 seed: faces only)", "BasicNet-LR (n=2 seeds)", "+logit KD (n=2 seeds)"]
    plotting.save_figure(ax.figure, "attention_measure", tmp_path)
    plotting.save_figure(ax.figure, "studyprep_attention_measure", "/tmp", formats=("png",))   # to look at
    assert (tmp_path / "attention_measure.png").is_file()
    with pytest.raises(ValueError, match="ci_low"):
        plotting.attention_measure_curve(df.drop(columns=["ci_low"]))


def test_save_attention_measure_and_synthetic_stand_in(study):
    df = V.attention_measure_study(study, _pairs("synthetic"), n_faces=10_000, scale=4, n_boot=20)
    assert df["n_faces"].iloc[0] < 10_000                         # the synthetic stand-in: all its faces
    out = V.save_attention_measure(study, df)
    assert out == study.results_dir("synthetic") / "attention_measure.csv" and out.is_file()
    with pytest.raises(ValueError, match="fewer than"):
        V.attention_measure_study(study, _pairs("lfw-half-val"), n_faces=10_000)


def test_family_verdicts_refuse_a_draft_on_the_test_folds(study, tmp_path, monkeypatch):
    import yaml

    from lqlib.evaluation.hypotheses import HypothesesError

    ids = np.repeat(np.arange(N // 2), 2)
    monkeypatch.setattr(V, "pair_identities", lambda *a, **k: (ids, ids))
    hyp = {"status": "draft", "alpha": 0.05, "family": [
        {"id": "H1", "comparison": {"model": "logit", "baseline": "none"}, "scale": 8, "seeds": 2}]}
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"hypotheses": hyp, "notebooks": ["03_evaluation"]}))
    test = S.evaluate_study(study, _pairs("lfw-half"), scales=(8,), eval_modes=("both",), batch_size=16)
    val = S.evaluate_study(study, _pairs("lfw-half-val"), scales=(8,), eval_modes=("both",), batch_size=16)
    with pytest.raises(HypothesesError, match="registered"):
        V.family_verdicts(study, test, str(preset))
    dry = V.family_verdicts(study, val, str(preset), n_boot=50)          # validation: a draft may be read
    assert dry["role"].tolist() == ["validation"] and (study.results_dir("lfw-half-val") / "family.csv").is_file()
    hyp["status"] = "registered"
    preset.write_text(yaml.safe_dump({"hypotheses": hyp, "notebooks": ["03_evaluation"]}))
    out = V.family_verdicts(study, test, str(preset), publish_dir=str(tmp_path / "pub"), n_boot=50)
    assert out["role"].tolist() == ["test"] and out["verdict"].iloc[0] in (
        "supported", "not supported", "inconclusive", "not supported (opposite direction)")
    assert (tmp_path / "pub" / "family.csv").is_file() and (tmp_path / "pub" / "correctness_lfw-half.npz").is_file()


def test_committed_hypotheses_file_is_the_verdict_presets_block():
    """results/cpu/hypotheses.yaml is what git order dates (committed before any test-fold number); the
    runner reads the preset. A family edited in one and not the other fails here."""
    import yaml

    from lqlib import paths
    from lqlib.evaluation.hypotheses import parse_family

    preset = yaml.safe_load(paths.resolve("lqlib/presets/verdict.yaml").read_text())["hypotheses"]
    committed = yaml.safe_load(paths.resolve("results/cpu/hypotheses.yaml").read_text())["hypotheses"]
    assert committed == preset
    fam = parse_family(committed)
    assert len(fam) == 5 and all(h.seeds >= 5 and h.scale == 8 for h in fam)
    assert committed["pairs"] == "lfw-half" and committed["validation"] == "lfw-half-val"


def _blocked_preset(tmp_path, values=(0, 1)):
    import yaml

    hyp = {"status": "registered", "alpha": 0.05, "pairs": "lfw-half",
           "family": [{"id": "H1", "comparison": {"model": "logit", "baseline": "none"}, "scale": 8, "seeds": 2}]}
    p = tmp_path / "blocked.yaml"
    p.write_text(yaml.safe_dump({"name": "blocked", "publish": str(tmp_path / "pub"), "hypotheses": hyp,
                                 "blocks": {"parameter": "SEED", "values": list(values)},
                                 "notebooks": ["03_evaluation"]}))
    return str(p), hyp


def _publish_blocks(study, res, tmp_path, seeds):
    """Publish the tiny study's seed k as block k, as a block's test step would (its own seed only)."""
    import shutil

    from lqlib.evaluation.correctness import pack_correctness

    for k in seeds:
        d = tmp_path / "pub" / "blocks" / f"seed-{k}"
        d.mkdir(parents=True, exist_ok=True)
        keep = (res["method"].fillna("").astype(str) == "") | (res["seed"] == k)
        res[keep].to_csv(d / "results.csv", index=False)
        one = tmp_path / f"eval-{k}"
        one.mkdir(exist_ok=True)
        for f in study.eval_dir("lfw-half").glob("*.npz"):
            if f.stem.endswith(f"_s{k}") and not f.stem.startswith("teacher"):
                shutil.copy(f, one / f.name)
        pack_correctness(one, d / "correctness_lfw-half.npz")


def test_pooled_family_over_blocks_equals_the_family_on_all_seeds(study, tmp_path, monkeypatch):
    """A blocked study (block k = seed k of every model) tested on its published blocks pooled gives the
    same family row as the same seeds tested in one study; a missing block writes nothing."""

    ids = np.repeat(np.arange(N // 2), 2)
    monkeypatch.setattr(V, "pair_identities", lambda *a, **k: (ids, ids[::-1].copy()))
    preset, hyp = _blocked_preset(tmp_path)
    res = S.evaluate_study(study, _pairs("lfw-half"), scales=(1, 8), eval_modes=("both",), batch_size=16)
    _publish_blocks(study, res, tmp_path, [0])
    assert V.pooled_family_verdicts(preset, "lfw-half", n_boot=50) is None       # block 1 has not published
    assert not (tmp_path / "pub" / "family.csv").exists()
    _publish_blocks(study, res, tmp_path, [1])
    pooled = V.pooled_family_verdicts(preset, "lfw-half", n_boot=200)
    whole = V.family_report(study, res, hyp, n_boot=200)
    for col in ("n", "delta", "delta_sd", "t", "p", "p_holm", "mde", "verdict"):
        assert pooled.iloc[0][col] == pytest.approx(whole.iloc[0][col]) if col != "verdict" else \
            pooled.iloc[0][col] == whole.iloc[0][col]
    assert pooled.iloc[0]["blocks"] == 2 and np.isfinite(pooled.iloc[0]["boot_p"])
    assert (tmp_path / "pub" / "family.csv").is_file()
    md = (tmp_path / "pub" / "verdicts.md").read_text()
    assert "| H1 | logit vs none | ×8 |" in md and pooled.iloc[0]["verdict"] in md
    (tmp_path / "pub" / "family.csv").unlink()
    again = V.pooled_family_verdicts(preset, "lfw-half", n_boot=200, publish=False)   # the notebook's dry read
    assert again.iloc[0]["p"] == pytest.approx(pooled.iloc[0]["p"]) and not (tmp_path / "pub" / "family.csv").exists()
    assert sorted(set(__import__("pandas").read_csv(tmp_path / "pub" / "results.csv")["block"])) == [0, 1]
    # a block holding another block's seed is refused
    bad = tmp_path / "pub" / "blocks" / "seed-1" / "results.csv"
    res.to_csv(bad, index=False)
    with pytest.raises(ValueError, match="seed-1.*holds student seeds"):
        V.pooled_family_verdicts(preset, "lfw-half", n_boot=50)


def test_a_blocks_test_step_publishes_and_tests_nothing_alone(study, tmp_path, monkeypatch):
    preset, _ = _blocked_preset(tmp_path, values=(0, 1, 2))
    res = S.evaluate_study(study, _pairs("lfw-half"), scales=(8,), eval_modes=("both",), batch_size=16)
    pub = tmp_path / "pub" / "blocks" / "seed-0"
    assert V.family_verdicts(study, res, preset, str(pub)) is None
    assert (pub / "correctness_lfw-half.npz").is_file() and not (tmp_path / "pub" / "family.csv").exists()


def test_pooled_attention_measure_over_blocks(tmp_path):
    """Block k's single-seed measure rows pooled: the mean over blocks and a t-interval across them."""
    import pandas as pd
    from scipy import stats

    preset, _ = _blocked_preset(tmp_path, values=(0, 1, 2))
    vals = {0: [0.2, 0.5], 1: [0.4, 0.6], 2: [0.3, 0.7]}        # per block: network blocks 0 and 1
    for k, (b0, b1) in vals.items():
        d = tmp_path / "pub" / "blocks" / f"seed-{k}"
        if k == 2:
            assert V.pooled_attention_measure(preset) is None      # block 2 has not published
        d.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"model": "BasicNet-LR", "kind": "spatial", "measure": "pearson", "block": [0, 1],
                      "mean": [b0, b1], "seeds_sd": float("nan"), "n_seeds": 1, "n_faces": 200,
                      "ci_low": 0.0, "ci_high": 1.0, "interval": "faces (1 seed)", "face_ci_halfwidth": 0.02,
                      "scale": 8.0, "pairs": "lfw-half-val"}).to_csv(d / "attention_measure_lfw-half-val.csv",
                                                                     index=False)
        if k == 1:       # blocks 0 and 1 so far: pooled on request, labelled with their n, written nowhere
            part = V.pooled_attention_measure(preset, partial=True)
            assert set(part["n_seeds"]) == {2} and part[part["block"] == 0]["mean"].iloc[0] == pytest.approx(0.3)
            assert not (tmp_path / "pub" / "attention_measure_lfw-half-val.csv").exists()
    one = V.pooled_attention_measure(preset, partial=True, publish=False)
    assert set(one["n_seeds"]) == {3} and not (tmp_path / "pub" / "attention_measure_lfw-half-val.csv").exists()
    out = V.pooled_attention_measure(preset)
    r = out[out["block"] == 0].iloc[0]
    half = stats.t.ppf(0.975, 2) * np.std([0.2, 0.4, 0.3], ddof=1) / np.sqrt(3)
    assert r["mean"] == pytest.approx(0.3) and r["n_seeds"] == 3
    assert r["ci_low"] == pytest.approx(0.3 - half) and r["ci_high"] == pytest.approx(0.3 + half)
    assert (tmp_path / "pub" / "attention_measure_lfw-half-val.csv").is_file()


def _result_rows(block, seed_of_students):
    """One block's results.csv rows: its own teacher (recorded with seed 0), an external teacher, two students."""
    import pandas as pd

    rows = [("BasicNet-HR", "teacher", "", "", 0, 70.0 + block), ("teacher:sface", "teacher:sface", "", "sface", 0, 75.0),
            ("BasicNet-LR", "none", "none", "", seed_of_students, 60.0 + block),
            ("+logit KD", "logit", "logit", "", seed_of_students, 61.0 + 2 * block)]
    return pd.DataFrame([{"model": m, "model_key": k, "method": me, "teacher": t, "seed": s, "scale": 8,
                          "eval_mode": "both", "acc_mean": a, "dataset": "lfw-half"} for m, k, me, t, s, a in rows])


def test_pooled_results_give_each_teacher_its_block_and_an_external_teacher_once(tmp_path):
    preset, _ = _blocked_preset(tmp_path, values=(0, 1, 2))
    assert V.pooled_results(preset).empty                        # nothing published yet
    for k in (0, 1):
        d = tmp_path / "pub" / "blocks" / f"seed-{k}"
        d.mkdir(parents=True)
        _result_rows(k, k).to_csv(d / "results.csv", index=False)
    out = V.pooled_results(preset)
    own = out[out["model_key"] == "teacher"]
    assert list(own["seed"]) == [0, 1] and list(own["block"]) == [0, 1] and list(own["acc_mean"]) == [70.0, 71.0]
    assert (out["model_key"] == "teacher:sface").sum() == 1      # one frozen model, not two seeds of it
    assert list(out[out["model_key"] == "logit"]["acc_mean"]) == [61.0, 63.0]
    _result_rows(1, 0).to_csv(tmp_path / "pub" / "blocks" / "seed-1" / "results.csv", index=False)
    with pytest.raises(ValueError, match="seed-1.*holds student seeds \\[0\\]"):
        V.pooled_results(preset)


def test_block_status_and_teacher_curves_of_the_published_blocks(tmp_path):
    import json

    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd

    from lqlib import plotting

    preset, _ = _blocked_preset(tmp_path, values=(0, 1))
    d = tmp_path / "pub" / "blocks" / "seed-0"
    d.mkdir(parents=True)
    hist = [70.0, 80.0, 85.0, 84.0]
    pd.DataFrame({"epoch": [1, 2, 3, 4], "loss": [4.0, 3.0, 2.0, 1.5], "val_acc_x1": hist}).to_csv(
        d / "teacher_metrics.csv", index=False)
    (d / "teacher_summary.json").write_text(json.dumps({"convergence": {
        "epochs_trained": 4, "decision": {"stop": True, "best": 85.0, "best_epoch": 3}}}))
    (d / "run_info.json").write_text(json.dumps({"environment": {"cpu": "AMD EPYC", "gpu": None},
                                                 "total_seconds": 7200.0}))
    _result_rows(0, 0).to_csv(d / "results.csv", index=False)
    st = V.block_status(preset).set_index("block")
    assert list(st.index) == ["seed-0", "seed-1"]
    assert st.loc["seed-0", "results"] and not st.loc["seed-1", "results"] and not st.loc["seed-0", "correctness"]
    assert st.loc["seed-0", "teacher_epochs"] == 4 and st.loc["seed-0", "teacher_best_val"] == 85.0
    assert st.loc["seed-0", "teacher_best_epoch"] == 3 and st.loc["seed-0", "hours"] == 2.0
    curves = V.pooled_teacher_metrics(preset)
    assert list(curves.columns[:2]) == ["block", "epoch"] and list(curves["val_acc_x1"]) == hist
    ax = plotting.teacher_curves(curves)
    line, star, last = ax.lines[:3]
    assert list(line.get_ydata()) == hist
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (3, 85.0)      # the best epoch, not the last
    assert (last.get_xdata()[0], last.get_ydata()[0]) == (4, 84.0)
    assert "4 epochs, best 85.00 @ 3" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="val_acc_x1"):
        plotting.teacher_curves(curves.drop(columns="val_acc_x1"))


def test_verdict_table_states_each_hypothesis_with_its_numbers():
    import pandas as pd

    fam = pd.DataFrame([{"id": "H1", "model": "logit", "baseline": "none", "scale": 8.0, "eval_mode": "both",
                         "direction": "greater", "n": 5, "acc": 70.5, "baseline_acc": 69.0, "delta": 1.5,
                         "delta_sd": 0.5, "p": 0.0031, "p_holm": 0.0155, "mde": 1.234, "boot_ci_low": 0.4,
                         "boot_ci_high": 2.6, "verdict": "supported"},
                        {"id": "H3", "model": "logit+attention", "baseline": "logit", "scale": 8.0,
                         "eval_mode": "both", "direction": "two-sided", "n": 5, "acc": 68.0, "baseline_acc": 70.5,
                         "delta": -2.5, "delta_sd": float("nan"), "p": 0.2, "p_holm": 0.4, "mde": float("nan"),
                         "boot_ci_low": float("nan"), "boot_ci_high": float("nan"), "verdict": "inconclusive"}])
    t = V.verdict_table(fam)
    r = t.iloc[0]
    assert r["comparison"] == "logit vs none" and r["scale"] == "×8" and r["Δ points (sd)"] == "+1.50 ± 0.50 (n=5)"
    assert r["p (Holm)"] == "0.0155" and r["MDE (80 %)"] == "1.23" and r["bootstrap 95 % CI"] == "[+0.40, +2.60]"
    assert r["accuracy (model / baseline)"] == "70.50 / 69.00" and r["verdict"] == "supported"
    assert t.iloc[1]["Δ points (sd)"] == "-2.50 (n=5)" and t.iloc[1]["bootstrap 95 % CI"] == "—"
    assert r["p"] == "0.0031" and t.iloc[1]["p"] == "0.2000"
    small = V.verdict_table(fam.assign(p=[8.31e-6, 3.7129e-4], p_holm=[4.2e-5, 1.0]))   # never "0.0000"
    assert small["p"].tolist() == ["8.3 × 10⁻⁶", "3.7 × 10⁻⁴"] and small["p (Holm)"].tolist() == ["4.2 × 10⁻⁵", "1.0000"]
    assert V.format_p(float("nan")) == "—" and V.format_p(0.001) == "0.0010" and V.format_p(9.96e-4) == "1.0 × 10⁻³"


def test_student_curves_of_the_published_blocks_mark_rate_drops_and_the_kept_epoch(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd

    from lqlib import plotting

    preset, _ = _blocked_preset(tmp_path, values=(0, 1))
    for k in (0, 1):
        d = tmp_path / "pub" / "blocks" / f"seed-{k}"
        d.mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "lr": [0.1, 0.1, 0.01, 0.01, 0.001],
                      "val_acc_x8": [60.0, 65.0, 70.0 + k, 71.0, 71.5]}).to_csv(d / f"none_s{k}_metrics.csv", index=False)
    pd.DataFrame({"epoch": [1, 2, 3], "lr": [0.1, 0.1, 0.01], "val_acc_x8": [62.0, 66.0, 72.0]}).to_csv(
        tmp_path / "pub" / "blocks" / "seed-0" / "logit_s0_metrics.csv", index=False)
    (tmp_path / "pub" / "blocks" / "seed-0" / "at_s0_metrics.csv").write_text("epoch,val_acc_x8\n1,50\n")  # not in the family
    m = V.pooled_student_metrics(preset)
    assert list(m.columns[:3]) == ["block", "model", "model_key"]
    assert sorted(set(zip(m["block"], m["model_key"]))) == [(0, "logit"), (0, "none"), (1, "none")]
    assert list(m[(m.block == 1)]["val_acc_x8"]) == [60.0, 65.0, 71.0, 71.0, 71.5]
    fig = plotting.student_curves(m)
    first = fig.axes[0]
    assert [a.get_title() for a in fig.axes] == ["block 0", "block 1"]
    line, last, drops = first.lines[:3]                       # BasicNet-LR in block 0
    assert list(line.get_ydata()) == [60.0, 65.0, 70.0, 71.0, 71.5]
    assert (last.get_xdata()[0], last.get_ydata()[0]) == (5, 71.5)
    assert list(drops.get_xdata()) == [3, 5]                  # the two epochs whose rate was lowered
    assert sorted(t.get_text() for t in fig.axes[-1].get_legend().get_texts()) == ["+logit KD", "BasicNet-LR"]
    with pytest.raises(ValueError, match="val_acc_x8"):
        plotting.student_curves(m.drop(columns="val_acc_x8"))


def test_pooled_family_tests_each_block_against_its_own_teacher(tmp_path, monkeypatch):
    """H6 of the converged study (BasicNet-LR vs BasicNet-HR): every block publishes its own teacher as
    ``teacher`` with seed 0 (rows and per-pair correctness ``teacher_s0``); pooled, block k's teacher is seed k,
    paired with block k's students — in the t-test and in the bootstrap alike. (The pooled family once kept only
    the students' rows and let the last block's ``teacher_s0`` stand for every block's.)"""
    import pandas as pd
    import yaml

    from lqlib.evaluation.correctness import pack_correctness
    from lqlib.evaluation.hierarchical import hierarchical_bootstrap
    from lqlib.study_eval import correctness_names

    n_pairs = 40
    ids = np.repeat(np.arange(n_pairs // 2), 2)
    monkeypatch.setattr(V, "pair_identities", lambda *a, **k: (ids, ids[::-1].copy()))
    hyp = {"status": "registered", "alpha": 0.05, "pairs": "lfw-half",
           "family": [{"id": "H1", "comparison": {"model": "logit", "baseline": "none"}, "scale": 8, "seeds": 3},
                      {"id": "H6", "comparison": {"model": "none", "baseline": "teacher"}, "scale": 8, "seeds": 3}]}
    preset = tmp_path / "blocked.yaml"
    preset.write_text(yaml.safe_dump({"name": "blocked", "publish": str(tmp_path / "pub"), "hypotheses": hyp,
                                      "blocks": {"parameter": "SEED", "values": [0, 1, 2]},
                                      "notebooks": ["03_evaluation"]}))
    rng = np.random.default_rng(3)
    truth = {}   # (model key, block) → per-pair correctness
    for k in range(3):
        d, one = tmp_path / "pub" / "blocks" / f"seed-{k}", tmp_path / f"eval-{k}"
        d.mkdir(parents=True)
        one.mkdir()
        rows = []
        for key, method, seed, p_correct in (("teacher", "", 0, 0.55 + 0.15 * k), ("none", "none", k, 0.8),
                                             ("logit", "logit", k, 0.85), ("teacher:sface", "", 0, 0.7)):
            c = rng.random(n_pairs) < p_correct
            truth[key, k] = c
            stem = correctness_names(key, seed, "both", 8)[0]
            np.savez(one / f"{stem}.npz", both_x8=c)
            rows.append({"model": key, "model_key": key, "method": method,
                         "teacher": "sface" if key == "teacher:sface" else "", "seed": seed, "scale": 8,
                         "eval_mode": "both", "acc_mean": 100 * c.mean(), "dataset": "lfw-half"})
        pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
        pack_correctness(one, d / "correctness_lfw-half.npz")
    out = V.pooled_family_verdicts(str(preset), "lfw-half", n_boot=300, publish=False).set_index("id")
    h6 = out.loc["H6"]
    deltas = [100 * (truth["none", k].mean() - truth["teacher", k].mean()) for k in range(3)]
    assert h6["n"] == 3 and h6["seeds_ok"] and h6["delta"] == pytest.approx(np.mean(deltas))
    assert h6["delta_sd"] == pytest.approx(np.std(deltas, ddof=1))
    want = hierarchical_bootstrap({k: truth["none", k] for k in range(3)}, {k: truth["teacher", k] for k in range(3)},
                                  ids, ids[::-1].copy(), n_boot=300)
    assert (h6["boot_ci_low"], h6["boot_ci_high"], h6["boot_p"]) == pytest.approx(
        (want["ci_low"], want["ci_high"], want["p_value"]))
    assert out.loc["H1", "n"] == 3 and np.isfinite(out.loc["H1", "boot_p"])


def test_families_side_by_side_match_comparisons_not_ids(tmp_path):
    """Two studies' families beside each other: a row per comparison (an id re-used for another comparison is
    its own row), "—" where a study did not test it; read from a results folder or a frame."""
    import pandas as pd

    def fam(rows):
        base = {"scale": 8.0, "eval_mode": "both", "n": 5, "acc": 70.0, "baseline_acc": 68.0, "delta_sd": 1.0}
        return pd.DataFrame([{**base, **r} for r in rows])

    short = fam([{"id": "H1", "model": "logit", "baseline": "none", "delta": 1.59, "p_holm": 0.169,
                  "verdict": "inconclusive"},
                 {"id": "H5", "model": "sface", "baseline": "none", "delta": 9.93, "p_holm": 4.2e-5,
                  "verdict": "supported"}])
    (tmp_path / "cpu").mkdir()
    short.to_csv(tmp_path / "cpu" / "family.csv", index=False)
    long = fam([{"id": "H1", "model": "logit", "baseline": "none", "delta": -0.5, "delta_sd": float("nan"),
                 "p_holm": 0.9, "verdict": "not supported", "acc": 87.1, "baseline_acc": 87.6},
                {"id": "H5", "model": "attention", "baseline": "none", "delta": 0.2, "p_holm": 1.0,
                 "verdict": "inconclusive"},
                {"id": "H6", "model": "none", "baseline": "teacher", "delta": 9.4, "p_holm": 0.003,
                 "verdict": "supported"}])
    t = V.families_side_by_side({"3 epochs": tmp_path / "cpu", "converged": long})
    assert t["id"].tolist() == ["H1", "H5", "H5", "H6"]
    h1 = t.iloc[0]
    assert h1["3 epochs: Δ points (sd)"] == "+1.59 ± 1.00 (n=5)" and h1["converged: Δ points (sd)"] == "-0.50 (n=5)"
    assert h1["converged: accuracy (model / baseline)"] == "87.10 / 87.60" and h1["converged: verdict"] == "not supported"
    assert t.iloc[1]["3 epochs: p (Holm)"] == "4.2 × 10⁻⁵" and t.iloc[1]["converged: verdict"] == "—"
    assert t.iloc[2]["comparison"] == "attention vs none" and t.iloc[2]["3 epochs: verdict"] == "—"
    assert t.iloc[3]["3 epochs: Δ points (sd)"] == "—" and t.iloc[3]["converged: p (Holm)"] == "0.0030"
    preset, _ = _blocked_preset(tmp_path)
    from lqlib.evaluation.tables import to_markdown
    out = V.families_side_by_side({"3 epochs": tmp_path / "cpu" / "family.csv", "converged": long}, publish=preset)
    written = (tmp_path / "pub" / "side_by_side.md").read_text(encoding="utf-8")
    assert to_markdown(out, index=False) in written and "3 epochs, converged" in written
    assert written.count("\n| H") == 4 and "| +9.40 ± 1.00 (n=5) | 0.0030 | supported |" in written
    with pytest.raises(FileNotFoundError, match="no family.csv for 'later'"):
        V.families_side_by_side({"later": tmp_path / "nothing"})
    with pytest.raises(ValueError, match="'bad': the family has no column"):
        V.families_side_by_side({"bad": short.drop(columns="p_holm")})
