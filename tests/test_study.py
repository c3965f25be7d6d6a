"""The on-disk study: layout and keys, cached evaluation keyed by eval set, refusals, seed statistics."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lqlib import paths
from lqlib import study as S
from lqlib.data import PairSet
from lqlib.data.synthetic import SyntheticFaces
from lqlib.model_key import ModelKey, reading_order
from lqlib.train import train_teacher

OVR = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, max_images=None, epochs=2,
           batch_size=8, lr=0.05, progress=False, head_kw={"s": 16.0, "m": 0.2}, device="cpu")


@pytest.fixture(scope="module")
def study(make_tiny_study):
    return make_tiny_study("st")


def _pairs(name="synth", n=40):
    images, issame = SyntheticFaces(num_classes=8, images_per_class=6, seed=5).pairs(n)
    return PairSet(images, issame, torch.arange(n) * 2 // n, name)


def test_layout_keys_and_models(study):
    keys = sorted((str(m.key), m.seed) for m in study.models())
    assert keys == [("logit", 0), ("logit", 1), ("none", 0), ("none", 1), ("teacher", 0)]
    assert all(m.split == "synthetic" for m in study.models())
    assert study.student("logit", 1) == study.student_dir("logit", 1)


def test_students_of_other_kd_weights_or_params_get_their_own_key_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path)
    st = S.Study("w")
    cfg = lambda **kw: S.training_config(st, "student", recipe="smoke", method="angular_emb_c",  # noqa: E731
                                         teacher="faceapi-resnet", overrides=OVR, **kw)
    default, w50 = cfg(kd_weights={"angular": 5.0}), cfg(kd_weights={"angular": 50})
    assert ModelKey.student("angular_emb_c", "faceapi-resnet", False, {"angular": 5.0}) == "angular_emb_c@faceapi-resnet"
    assert default.out_dir == str(st.student_dir("angular_emb_c@faceapi-resnet"))
    assert w50.out_dir == str(st.student_dir("angular_emb_c[angular=50]@faceapi-resnet")) != default.out_dir
    assert ModelKey.student("logit", kd_params={"logit": {"T": 2.0, "lam": 0.5}}) == "logit[logit.T=2]"
    assert ModelKey.student("logit+attention", kd_weights={"attention": 10}, head_from_teacher=True) == \
        "logit+attention[attention=10]~headinit"
    k = ModelKey.parse("angular_emb_c[angular=50]@faceapi-resnet")
    assert (k.method, k.overrides, k.teacher, k.head_from_teacher) == ("angular_emb_c", "angular=50", "faceapi-resnet", False)
    assert k.display_name == "angular_emb_c[angular=50] ← faceapi-resnet"
    # the study finds the key again from the run's config
    run = Path(w50.out_dir)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(w50.to_dict()))
    (run / "summary.json").write_text(json.dumps({"split": "synthetic"}))
    (run / "checkpoint.pt").write_bytes(b"")
    assert [(m.key, m.external_teacher) for m in st.models()] == [("angular_emb_c[angular=50]@faceapi-resnet",
                                                                     "faceapi-resnet")]


def test_tables_read_baselines_then_own_students_in_registry_order_then_each_external_teacher():
    keys = ["angular_emb_c@faceapi-resnet", "logit+attention", "labelfree@faceapi-resnet", "logit", "ecacface",
            "teacher:faceapi-resnet", "attention", "none", "teacher", "angular_emb_c[angular=50]@faceapi-resnet", "at"]
    assert sorted(keys, key=reading_order) == [
        "teacher", "none", "logit", "attention", "logit+attention", "at", "ecacface", "teacher:faceapi-resnet",
        "angular_emb_c@faceapi-resnet", "angular_emb_c[angular=50]@faceapi-resnet", "labelfree@faceapi-resnet"]


def test_figure_groups_carry_their_baselines():
    keys = ["labelfree@faceapi-resnet", "logit+attention", "at", "none", "teacher", "teacher:faceapi-resnet",
            "logit[logit.T=2]", "angular_emb_c@faceapi-resnet"]
    groups = S.model_groups(pd.DataFrame({"model_key": keys}))
    assert groups == {"paper ablation": ["teacher", "none", "logit[logit.T=2]", "logit+attention"],
                      "other methods": ["teacher", "none", "at"],
                      "← faceapi-resnet": ["teacher:faceapi-resnet", "none", "angular_emb_c@faceapi-resnet",
                                           "labelfree@faceapi-resnet"]}
    assert S.model_groups(pd.DataFrame({"model_key": ["none", "teacher"]})) == {"all models": ["teacher", "none"]}


def test_unknown_student_raises_and_lists_the_trained_ones(study):
    with pytest.raises(FileNotFoundError, match=r"no student 'attention'.*logit \(seed 0\)"):
        study.student("attention", 0)


def test_student_resolves_exact_method_names_and_refuses_unfinished_runs(study):
    """Folder names are slugs (logit+attention → logit-attention): before, every spelling that slugs alike
    found the student, and a run dir with a checkpoint but no summary.json (unfinished) was accepted."""
    assert study.student("logit", 0) == study.student_dir("logit", 0)
    for alias in ("logit-attention", "logit_attention", "logit attention"):
        with pytest.raises(ValueError, match=rf"unknown method '{alias}'; did you mean 'logit\+attention'"):
            study.student(alias, 0)
    unfinished = study.student_dir("logit+attention", 0)
    unfinished.mkdir(parents=True)
    (unfinished / "checkpoint.pt").write_bytes(b"")
    try:
        with pytest.raises(FileNotFoundError, match=rf"has not finished training: {unfinished}"):
            study.student("logit+attention", 0)
    finally:
        (unfinished / "checkpoint.pt").unlink()
        unfinished.rmdir()


def test_runs_moved_aside_are_kept_but_not_listed(study, tmp_path, monkeypatch):
    import shutil

    src = study.student_dir("logit", 0)
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path)
    st = S.Study("aside")
    shutil.copytree(src, st.student_dir("logit", 0))
    shutil.copytree(src, st.student_dir("logit", 0).with_name("logit_s0.old-20261203-101500"))
    assert [(str(m.key), m.seed) for m in st.models()] == [("logit", 0)]


def test_evaluation_is_cached_per_eval_set(study):
    a = S.evaluate_study(study, _pairs("set-a"), scales=(1, 8), eval_modes=("both",), batch_size=16)
    assert set(a["model_key"]) == {"teacher", "none", "logit"} and set(a["model"]) >= {"BasicNet-HR", "BasicNet-LR"}
    assert len(a) == 5 * 2 and a.groupby(["model_key", "seed", "scale"]).size().max() == 1
    assert list(dict.fromkeys(a["model_key"])) == ["teacher", "none", "logit"]  # reading order, not folder order
    assert list(a.columns[:5]) == ["model", "model_key", "method", "teacher", "seed"]
    assert set(a["method"]) == {"", "none", "logit"} and set(a["teacher"]) == {""}
    files = sorted(p.name for p in study.eval_dir("set-a").iterdir())
    assert "logit_s1.npz" in files and "teacher_s0.csv" in files
    stamp = (study.eval_dir("set-a") / "none_s0.csv").stat().st_mtime
    again = S.evaluate_study(study, _pairs("set-a"), scales=(1, 8), eval_modes=("both",), batch_size=16)
    assert (study.eval_dir("set-a") / "none_s0.csv").stat().st_mtime == stamp  # served from the cache
    pd.testing.assert_frame_equal(a, again)
    S.evaluate_study(study, _pairs("set-b"), scales=(1,), eval_modes=("both",), batch_size=16)
    assert (study.eval_dir("set-a") / "none_s0.csv").is_file() and (study.eval_dir("set-b") / "none_s0.csv").is_file()


def test_leakage_is_refused_unless_allowed(study, tmp_path):
    s = json.loads((study.teacher_dir / "summary.json").read_text())
    model = S.Model("teacher", 0, study.teacher_dir, "lfw-half")
    for name in ("lfw", "lfw-10fold", "cplfw", "lfw[300]"):
        with pytest.raises(S.LeakageError, match="lfw-half"):
            S._check_leakage(model, name, allow=False)
    S._check_leakage(model, "lfw", allow=True)
    S._check_leakage(model, "lfw_half", allow=False)       # its own evaluation split
    S._check_leakage(model, "agedb_30", allow=False)
    assert s["split"] == "synthetic"


def test_leakage_guard_rests_on_content_not_names(study):
    """The teacher's own training faces under an innocent name: before, only names were checked, so this
    pair set was scored. Now every run records 8-byte hashes of its decoded training faces."""
    from lqlib.checkpoint import read_training_data
    from lqlib.data.datasets import decode_rgb, encode_jpeg

    split, hashes, thumbs = read_training_data(study.teacher_dir)
    assert split == "synthetic" and hashes.dtype == np.uint64 and len(hashes) == 16  # 4 ids x 4 images
    assert thumbs.dtype == np.uint8 and thumbs.shape == (16, 64)
    own = torch.stack([SyntheticFaces(num_classes=4, images_per_class=4, seed=0)[i][0] for i in range(16)])
    copy = PairSet(own, torch.tensor([True, False] * 4), torch.arange(8) // 4, "holiday-photos")
    with pytest.raises(S.LeakageError, match=r"BasicNet-HR \(seed 0, .*teacher\) was trained on 16 of the faces "
                                             r"of 'holiday-photos' \(16 with identical pixels"):
        S.evaluate_study(study, copy, scales=(1,), eval_modes=("both",), batch_size=16)
    assert not study.eval_dir("holiday-photos").exists()  # refused before anything was evaluated or written
    # the same photos re-encoded (another JPEG quality: other pixels, other hashes) are caught as well
    reencoded = torch.stack([decode_rgb(b) for b in encode_jpeg(own, 75)])
    assert not torch.equal(reencoded, own)
    again = PairSet(reencoded, copy.issame, copy.folds, "renamed")
    with pytest.raises(S.LeakageError, match=r"trained on 16 of the faces of 'renamed' \(0 with identical pixels"):
        S.evaluate_study(study, again, scales=(1,), eval_modes=("both",), batch_size=16)
    # one shared face is enough; the escape hatch still works
    mixed = PairSet(torch.cat([own[:1], _pairs().images[1:8]]), torch.tensor([True, False] * 2),
                    torch.zeros(4, dtype=torch.int64), "mixed")
    with pytest.raises(S.LeakageError, match=r"trained on 1 of the faces of .mixed. \(1 with identical"):
        S.evaluate_study(study, mixed, scales=(1,), eval_modes=("both",), batch_size=16)
    r = S.evaluate_study(study, copy, scales=(1,), eval_modes=("both",), batch_size=16, allow_leakage=True)
    assert set(r["model_key"]) == {"teacher", "none", "logit"}


def test_unfinished_or_unrecorded_runs_are_not_unknown_and_passed(study, tmp_path, monkeypatch):
    """Before, a teacher without summary.json counted as split "unknown" and was scored on lfw as BasicNet-HR."""
    import shutil

    src = study.teacher_dir
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path)
    half = S.Study("half")
    shutil.copytree(src, half.teacher_dir)
    (half.teacher_dir / "summary.json").unlink()  # stopped before its end
    assert [m.key for m in half.models()] == []  # an unfinished teacher is no BasicNet-HR
    assert S._split_of(half.teacher_dir) == "synthetic"  # but what it trains on is known from its start
    for f in ("training_data.json", "train_images.npy", "train_thumbs.npy"):
        (half.teacher_dir / f).unlink()
    model = S.Model("teacher", 0, half.teacher_dir, S._split_of(half.teacher_dir))
    with pytest.raises(S.LeakageError, match="not recorded"):
        S._check_leakage(model, "lfw", allow=False)
    S._check_leakage(model, "lfw", allow=True)


def test_packs_without_a_manifest_keep_the_guard(tmp_path, monkeypatch):
    """Before, packs without (or with a corrupt) manifest.json lost their split's name, so nothing was refused
    and a renamed copy of the packs' own .bin was scored. Now the run's content fingerprint refuses it, and a
    corrupt manifest is an error naming the file."""
    from lqlib.data import load_pairs, write_bin
    from lqlib.data.datasets import encode_jpeg
    from lqlib.data.recordio import write_rec

    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    faces = SyntheticFaces(num_classes=4, images_per_class=4, seed=7)
    blobs = encode_jpeg(torch.stack([faces[i][0] for i in range(16)]), 90)  # the packs' bytes, as prepare writes
    packs = tmp_path / "packs"
    packs.mkdir()
    write_rec(packs / "train.rec", packs / "train.idx", ((b, int(faces.labels[i])) for i, b in enumerate(blobs)))
    write_bin(tmp_path / "elsewhere" / "my_set.bin", blobs[:8], [True, False, True, False])  # "renamed lfw.bin"
    (packs / "manifest.json").write_text("{not json")
    st = S.Study("packs")
    with pytest.raises(ValueError, match=r"manifest\.json: not a readable packs manifest"):
        train_teacher(S.training_config(st, "teacher", recipe="smoke", data=str(packs),
                                        overrides={**OVR, "data": str(packs)}))
    (packs / "manifest.json").unlink()  # foreign packs (no manifest): trained on, named by their path
    train_teacher(S.training_config(st, "teacher", recipe="smoke", data=str(packs),
                                    overrides={**OVR, "data": str(packs), "epochs": 1}))
    assert st.models()[0].split == str(packs / "train.rec")
    pairs = load_pairs(str(tmp_path / "elsewhere" / "my_set.bin"))
    with pytest.raises(S.LeakageError, match=r"trained on 8 of the faces of 'my_set' \(8 with identical pixels"):
        S.evaluate_study(st, pairs, scales=(1,), eval_modes=("both",), batch_size=8)


def test_tables_and_tests_across_seeds(study):
    res = S.evaluate_study(study, _pairs("set-a"), scales=(1, 8), eval_modes=("both",), batch_size=16)
    tests = S.compare(study, res, baseline="none", scales=(8,))
    row = tests[tests["model_key"] == "logit"].iloc[0]
    acc = {s: float(res[(res.model_key == m) & (res.seed == s) & (res.scale == 8)].acc_mean.iloc[0])
           for m in ("logit",) for s in (0, 1)}
    base = {s: float(res[(res.model_key == "none") & (res.seed == s) & (res.scale == 8)].acc_mean.iloc[0]) for s in (0, 1)}
    assert row["test"] == "paired t" and row["n"] == 2
    assert row["delta"] == pytest.approx(np.mean([acc[s] - base[s] for s in (0, 1)]))
    assert "pair_boot_p_max" in tests.columns and "p_holm" in tests.columns
    written = S.save_tables(study, res, tests)
    md = (study.results_dir("set-a") / "tables.md").read_text()
    assert "std over training seeds" in md and "n seeds" in md and "fold sd" in md
    assert [p.name for p in written] == ["results.csv", "tests.csv", "tables.md"]


def test_paper_table_plus_minus_is_the_seed_std():
    from lqlib.evaluation import paper_table

    rows = [{"model": "BasicNet-LR", "method": "none", "seed": s, "eval_mode": "both", "scale": 8.0, "acc_mean": a,
             "acc_std": f} for s, a, f in ((0, 80.0, 1.0), (1, 82.0, 3.0), (2, 84.0, 2.0))]
    rows.append({"model": "BasicNet-HR", "method": "teacher", "seed": 0, "eval_mode": "both", "scale": 8.0,
                 "acc_mean": 70.0, "acc_std": 1.5})
    t = paper_table(pd.DataFrame(rows))
    assert list(t.index) == ["BasicNet-HR", "BasicNet-LR"]
    assert t.loc["BasicNet-LR", "×8"] == "82.00 ± 2.00" and t.loc["BasicNet-LR", "n seeds"] == 3
    assert t.loc["BasicNet-LR", "fold sd"] == "2.0" and t.loc["BasicNet-HR", "×8"] == "70.00"


def test_seed_test_and_holm():
    from lqlib.evaluation.seeds import holm, seed_test

    r = seed_test({0: 81.0, 1: 83.0, 2: 82.0}, {0: 79.0, 1: 80.0, 2: 81.0})
    assert r["test"] == "paired t" and r["delta"] == pytest.approx(2.0) and r["p"] == pytest.approx(0.0742, abs=1e-3)
    assert np.isnan(seed_test({0: 1.0}, {0: 2.0})["p"])
    assert holm([0.01, 0.04, 0.03, np.nan]).round(4).tolist()[:3] == [0.03, 0.06, 0.06]


def test_students_of_an_external_teacher_are_tested_against_its_own_accuracy():
    from lqlib.evaluation import compare_to_baseline

    rows = [{"model": "T", "model_key": "teacher:ext", "seed": 0, "eval_mode": "both", "scale": 8.0, "acc_mean": 70.0}]
    rows += [{"model": "S", "model_key": "angular_emb@ext", "seed": s, "eval_mode": "both", "scale": 8.0, "acc_mean": a}
             for s, a in ((0, 74.0), (1, 75.0), (2, 76.0))]
    t = compare_to_baseline(pd.DataFrame(rows), "teacher:ext", scales=(8,))
    r = t.iloc[0]
    assert r["test"] == "one-sample t" and r["delta"] == pytest.approx(5.0) and r["p"] < 0.05


def test_a_student_with_another_margin_head_gets_its_own_key_and_folder(tmp_path, monkeypatch):
    """``TRAIN_OVERRIDES={"head": "adaface"}`` in 02: BasicNet-LR with the AdaFace head is ``none^adaface``,
    never the ArcFace BasicNet-LR's folder; a method that picks its own head (ECACFace) keeps its key."""
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path)
    st = S.Study("h")
    ada = S.training_config(st, "student", recipe="smoke", method="none", overrides={**OVR, "head": "adaface"})
    arc = S.training_config(st, "student", recipe="smoke", method="none", overrides=OVR)
    assert ada.head == "adaface" and ada.out_dir == str(st.student_dir("none^adaface")) != arc.out_dir
    assert ModelKey.student("none", head="arcface") == "none"
    assert ModelKey.student("ecacface", head="curricularface") == "ecacface"  # the method's own head: no mark
    key = ModelKey.student("logit", "faceapi-resnet", True, {"logit": 2.0}, head="adaface")
    assert key == "logit[logit=2]^adaface@faceapi-resnet~headinit" and ModelKey.parse(str(key)) == key
    assert key.parts == ["logit"] and key.head == "adaface" and ModelKey.parse("none").head == ""
    assert ModelKey.parse("none^adaface").display_name == "BasicNet-LR (AdaFace head)"
    assert key.display_name == "logit[logit=2] (AdaFace head) ← faceapi-resnet (head from teacher)"
    assert reading_order("none^adaface")[:4] == reading_order("none")[:4]
    run = Path(ada.out_dir)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(ada.to_dict()))
    (run / "summary.json").write_text(json.dumps({"split": "synthetic"}))
    (run / "checkpoint.pt").write_bytes(b"")
    assert [m.key for m in st.models()] == ["none^adaface"]


def test_publish_training_record(tmp_path):
    run = tmp_path / "teacher"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="metrics.csv, summary.json"):
        S.publish_training_record(run, str(tmp_path / "pub"), "teacher")
    (run / "metrics.csv").write_text("epoch,loss,val_acc_x1\n1,25.7,74.8\n")
    (run / "summary.json").write_text('{"convergence": {"stopped_after": 20}}')
    (run / "checkpoint.pt").write_bytes(b"w")
    out = S.publish_training_record(run, str(tmp_path / "pub"), "teacher")
    assert sorted(p.name for p in (tmp_path / "pub").iterdir()) == ["teacher_metrics.csv", "teacher_summary.json"]
    assert out[0].read_text() == (run / "metrics.csv").read_text()
