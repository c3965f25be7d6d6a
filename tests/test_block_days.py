"""A study block that spans days: each student evaluated as soon as it is trained, its evaluation published per
model (lqlib.model_eval), and the block's test step reading a published student whose run folder is gone."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from lqlib import model_eval as ME
from lqlib import study as S
from lqlib import verdict as V
from lqlib.data import PairSet
from lqlib.data.synthetic import SyntheticFaces

N = 40


@pytest.fixture(scope="module")
def study(make_tiny_study):
    return make_tiny_study("days", students=(("none", 0), ("logit", 0)))


def _pairs(name="set-d"):
    images, issame = SyntheticFaces(num_classes=8, images_per_class=6, seed=5).pairs(N)
    return PairSet(images, issame, torch.arange(N) * 2 // N, name)


def _model(study, key):
    return next(m for m in study.models() if str(m.key) == key)


def _rows(df, key):
    part = df[df["model_key"] == key].sort_values(["eval_mode", "scale"])
    return part[["eval_mode", "scale", "acc_mean", "threshold_mean"]].reset_index(drop=True)


def test_a_published_student_is_read_back_when_its_run_folder_is_gone(study, tmp_path):
    pub = tmp_path / "pub"
    kw = dict(scales=(1, 8), eval_modes=("both",), batch_size=16)
    one = S.evaluate_study(study, _pairs(), models=[_model(study, "logit")], publish_dir=str(pub), **kw)
    assert set(one["model_key"]) == {"logit"}
    published = pub / "eval" / "set-d"
    assert sorted(p.name for p in published.iterdir()) == ["logit_s0.csv", "logit_s0.json", "logit_s0.npz"]
    full = S.evaluate_study(study, _pairs(), publish_dir=str(pub), **kw)
    assert {"teacher", "none", "logit"} <= set(full["model_key"])
    assert (published / "teacher_s0.npz").is_file()                 # every model evaluated here is published too
    with np.load(study.eval_dir("set-d") / "logit_s0.npz") as z:
        bits = {k: z[k].copy() for k in z.files}

    gone = tmp_path / "moved"                                         # another day: the student's weights are gone
    shutil.move(str(study.student_dir("logit", 0)), gone)
    shutil.rmtree(study.eval_dir("set-d"))
    try:
        without = S.evaluate_study(study, _pairs(), **kw)
        assert "logit" not in set(without["model_key"])              # not published: not there
        shutil.rmtree(study.eval_dir("set-d"))
        back = S.evaluate_study(study, _pairs(), publish_dir=str(pub), **kw)
        pd.testing.assert_frame_equal(_rows(back, "logit"), _rows(full, "logit"))
        read = S.pair_correct_reader(study, "set-d", "both")
        assert np.array_equal(read("logit", 0, 8.0), bits["both_x8"])  # per-pair tests see it as before
        other = S.evaluate_study(study, _pairs(), scales=(1,), eval_modes=("both",), batch_size=16,
                                 publish_dir=str(tmp_path / "pub"))
        assert "logit" not in set(other["model_key"])                # published with other settings: not mixed in
    finally:
        shutil.rmtree(study.student_dir("logit", 0), ignore_errors=True)
        shutil.move(str(gone), study.student_dir("logit", 0))


def test_evaluate_trained_uses_the_test_steps_settings_and_publishes_one_model(study, tmp_path, monkeypatch):
    monkeypatch.setattr(S, "load_eval_pairs", lambda name, data_dir="", max_pairs=0: _pairs("set-e"))
    pub = tmp_path / "pub"
    with pytest.raises(ME.EvalSettingsError, match=r"TEST_EVAL: unknown setting\(s\) \['SCALES'\]"):
        ME.evaluate_trained(study, "none", 0, {"SCALES": [8]}, str(pub))
    with pytest.raises(ME.EvalSettingsError, match="TEST_EVAL needs PUBLISH_DIR"):
        ME.evaluate_trained(study, "none", 0, {"ID_SET": ""}, "")
    with pytest.raises(FileNotFoundError, match="no finished model attention with seed 0"):
        ME.evaluate_trained(study, "attention", 0, {"ID_SET": ""}, str(pub))
    assert not pub.exists()                                          # refusals write nothing
    out = ME.evaluate_trained(study, "none", 0, {"EVAL_SCALES": [1, 8], "EVAL_MODES": ["both"], "ID_SET": "",
                                                 "BATCH_SIZE": 16}, str(pub), log=lambda *a: None)
    assert out["identification"] is None and set(out["verification"]["model_key"]) == {"none"}
    assert sorted(p.name for p in (pub / "eval" / "set-e").iterdir()) == ["none_s0.csv", "none_s0.json", "none_s0.npz"]
    # 03 with the same settings reuses that evaluation: the same cache key, nothing evaluated twice
    stamp = (study.eval_dir("set-e") / "none_s0.csv").stat().st_mtime_ns
    S.evaluate_study(study, _pairs("set-e"), scales=(1, 8), eval_modes=("both",), batch_size=16, publish_dir=str(pub))
    assert (study.eval_dir("set-e") / "none_s0.csv").stat().st_mtime_ns == stamp


def test_the_converged_students_are_evaluated_with_the_test_steps_settings():
    """The key of a student's early evaluation must be the test step's, or the step would not find it."""
    from lqlib import presets

    preset = presets.load_preset("converged")
    steps = presets.block_plan(preset, presets.plan(preset, "converged"), 2)
    test = next(s for s in steps if s.key == "03_evaluation__test").parameters
    students = [s.parameters for s in steps if s.notebook.startswith("02_kd_ablation")]
    assert len(students) == 13 and test["PUBLISH_MODELS"] is True
    attention = next(s for s in steps if s.notebook.startswith("04")).parameters
    for p in students:
        settings = ME.test_settings(p["TEST_EVAL"])
        assert {k: settings[k] for k in ("PAIRS", "EVAL_SCALES", "EVAL_MODES", "PROTOCOL", "ID_SET", "ID_EVAL_MODES",
                                         "ID_MAX_PROBES", "ID_TEMPLATES", "MAX_PAIRS")} == \
            {k: test.get(k, ME.SETTINGS[k]) for k in ("PAIRS", "EVAL_SCALES", "EVAL_MODES", "PROTOCOL", "ID_SET",
                                                       "ID_EVAL_MODES", "ID_MAX_PROBES", "ID_TEMPLATES", "MAX_PAIRS")}
        measure = ME.attention_settings(p["ATTENTION_EVAL"])
        assert {k: measure[k] for k in ("PAIRS", "N_MEASURE_FACES", "SCALE")} == \
            {k: attention[k] for k in ("PAIRS", "N_MEASURE_FACES", "SCALE")}
        assert p["PUBLISH_DIR"] == "results/converged/blocks/seed-2"


def test_the_attention_table_keeps_the_rows_of_students_measured_earlier(study, tmp_path, monkeypatch):
    monkeypatch.setattr(S, "load_eval_pairs", lambda name, data_dir="", max_pairs=0: _pairs("synth"))
    pub = tmp_path / "pub"
    settings = {"PAIRS": "synth", "N_MEASURE_FACES": 10}
    first = ME.measure_trained(study, "logit", 0, settings, str(pub))
    assert set(first["model"]) == {"+logit KD"}
    table = pub / "attention_measure_synth.csv"
    early = pd.read_csv(table)
    gone = tmp_path / "moved"
    shutil.move(str(study.student_dir("logit", 0)), gone)           # later: 04 has only BasicNet-LR and the teacher
    try:
        later = V.attention_measure_study(study, _pairs("synth"), n_faces=10, scale=8, n_boot=50)
        assert "+logit KD" not in set(later["model"])
        V.save_attention_measure(study, later, str(pub))
    finally:
        shutil.move(str(gone), study.student_dir("logit", 0))
    merged = pd.read_csv(table)
    assert set(merged["model"]) == {V.TEACHER_ON_LR, "BasicNet-LR", "+logit KD"}
    kept = merged[merged["model"] == "+logit KD"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, early)                       # the earlier rows, as they were
    again = V.attention_measure_study(study, _pairs("synth"), n_faces=10, scale=8, n_boot=50)
    V.save_attention_measure(study, again, str(pub))                 # measured again: replaced, not doubled
    assert pd.read_csv(table).groupby("model").size().nunique() == 1
