"""A study's models on an identification layout: cached rows, tables over seeds, CMC curves, top-k matches."""
import numpy as np
import pytest
from torchvision.io import write_png

from lqlib import id_study as IS
from lqlib import study as S
from lqlib.data.synthetic import SyntheticFaces



@pytest.fixture(scope="module")
def setup(make_tiny_study, tmp_path_factory):
    st = make_tiny_study("idst", students=(("none", 0), ("none", 1), ("logit", 0)))
    faces = SyntheticFaces(num_classes=6, images_per_class=3, seed=9)
    d = tmp_path_factory.mktemp("idset")
    lines = ["path,role,identity"]
    for i in range(len(faces)):
        img, label = faces[i]
        write_png(img, str(d / f"{i}.png"))
        role = "distractor" if label == 5 else ("gallery" if i % 3 == 0 else "probe")
        lines.append(f"{i}.png,{role},{'' if role == 'distractor' else f'id{label}'}")
    (d / "toy.csv").write_text("\n".join(lines) + "\n")
    return st, str(d / "toy.csv")


def test_identify_study_rows_cache_tables_and_figures_data(setup):
    st, csv = setup
    res = IS.identify_study(st, csv, scales=(1, 4), eval_modes=("cross",), batch_size=8)
    assert list(dict.fromkeys(res["model_key"])) == ["teacher", "none", "logit"]
    assert len(res) == 4 * 2 * 2  # 4 runs × 2 scales × with / without distractors
    assert set(res.columns) >= {"model", "seed", "eval_mode", "scale", "distractors", "rank1", "rank5", "mAP",
                                "dir_fpir0.01", "n_gallery"}
    with_d = res[res["distractors"]]
    assert (with_d["n_gallery"] == 8).all() and (with_d["n_probes"] == 10).all()
    assert ((res["rank1"] >= 0) & (res["rank1"] <= res["rank5"]) & (res["rank5"] <= 100)).all()
    out = st.eval_dir("toy")
    assert (out / "toy.split.json").is_file() and (out / "none_s1_id.npz").is_file()
    stamp = (out / "none_s0_id.csv").stat().st_mtime
    again = IS.identify_study(st, csv, scales=(1, 4), eval_modes=("cross",), batch_size=8)
    assert (out / "none_s0_id.csv").stat().st_mtime == stamp  # served from the cache
    assert again[["model_key", "seed", "scale", "rank1"]].equals(res[["model_key", "seed", "scale", "rank1"]])

    tables = IS.id_tables(res)
    assert list(tables) == ["rank-1 (%), cross", "mAP (%), cross"]
    t = tables["rank-1 (%), cross"]
    assert list(t.index) == ["BasicNet-HR", "BasicNet-LR", "+logit KD"] and t.loc["BasicNet-LR", "n seeds"] == 2
    lr = res[(res["model_key"] == "none") & res["distractors"] & (res["scale"] == 4)]["rank1"]
    assert t.loc["BasicNet-LR", "×4"] == f"{lr.mean():.2f} ± {lr.std(ddof=1):.2f}"
    written = IS.save_id_tables(st, res)
    assert all(p.is_file() for p in written)

    assert IS.best_student(res, scale=4) == "logit"
    curves = IS.cmc_curves(st, res, scale=4)
    assert list(curves) == ["BasicNet-HR", "BasicNet-LR", "+logit KD"] and curves["BasicNet-LR"].shape == (2, 20)
    r1 = res[(res["model_key"] == "teacher") & res["distractors"] & (res["scale"] == 4)]["rank1"].iloc[0]
    assert curves["BasicNet-HR"][0, 0] == pytest.approx(r1)
    assert np.all(np.diff(curves["BasicNet-HR"][0]) >= 0) and curves["BasicNet-HR"][0, -1] == 100.0

    rows = IS.top_matches(st, "logit", 0, 4, probe_index=1, id_set=csv, k=3)
    assert [r["label"] for r in rows] == ["BasicNet-HR, HR probe", "+logit KD, probe ×4"]
    assert rows[0]["matches"].shape == (3, 3, 112, 112) and len(rows[1]["correct"]) == 3
    assert IS.top_matches(st, "logit", 0, 2, id_set=csv) == []  # ×2 was not evaluated: one line, nothing shown


def test_missing_set_data_is_one_line(setup, capsys, monkeypatch):
    monkeypatch.delenv("LQLIB_TINYFACE", raising=False)
    assert IS.identify_study(setup[0], "tinyface") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tinyface skipped" in err[0]
    with pytest.raises(ValueError, match="unknown identification set"):
        IS.load_layout("scface")


def test_leakage_guard_applies_and_lfw_half_id_is_lfw_halfs_own(tmp_path):
    m = S.Model("teacher", 0, tmp_path, "lfw-half")
    S._check_leakage(m, "lfw-half-id[600]", allow=False)  # its test identities: allowed
    with pytest.raises(S.LeakageError):
        S._check_leakage(m, "lfw-10fold", allow=False)


def test_identification_refuses_a_layout_of_the_models_own_training_faces(setup, tmp_path):
    """The content guard of verification applies to identification too: a layout CSV made of the study's own
    synthetic training faces (4 ids x 4 images, seed 0) under an innocent name is refused before anything is
    evaluated (before, identification checked split names only and scored it)."""
    st, _ = setup
    own = SyntheticFaces(num_classes=4, images_per_class=4, seed=0)
    lines = ["path,role,identity"]
    for i in range(len(own)):
        img, label = own[i]
        write_png(img, str(tmp_path / f"{i}.png"))
        lines.append(f"{i}.png,{'gallery' if i % 4 == 0 else 'probe'},p{label}")
    (tmp_path / "holiday.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(S.LeakageError, match=r"was trained on 16 of the faces of"):
        IS.identify_study(st, str(tmp_path / "holiday.csv"), scales=(1,), eval_modes=("cross",), batch_size=8)
    res = IS.identify_study(st, str(tmp_path / "holiday.csv"), scales=(1,), eval_modes=("cross",), batch_size=8,
                            allow_leakage=True)
    assert len(res) > 0


def test_pooled_identification_of_a_blocked_study(tmp_path, monkeypatch):
    """The blocks' run folders (runs/<preset>-b<k>) evaluated one by one: block k's teacher is teacher seed k, an
    external teacher is evaluated with the first block only, and the rows and tables go to
    <publish>/identification/ (this was a driver script under results/)."""
    import pandas as pd
    import yaml

    from lqlib import paths

    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    preset = tmp_path / "blk.yaml"
    preset.write_text(yaml.safe_dump({"name": "blk", "publish": str(tmp_path / "pub"),
                                      "blocks": {"parameter": "SEED", "values": [0, 1]},
                                      "notebooks": ["01_teacher_training"]}))
    with pytest.raises(FileNotFoundError, match="blk-b0"):
        IS.pooled_identification(str(preset))
    for k in (0, 1):
        (tmp_path / "runs" / f"blk-b{k}").mkdir(parents=True)
    calls = []

    def fake(study, id_set, scales, eval_modes, extra_models=None, **kw):
        calls.append((study.name, sorted(extra_models or {})))
        k = int(study.name[-1])
        rows = [("BasicNet-HR", "teacher", 0, 40.0 + k), ("BasicNet-LR", "none", k, 20.0 + k)]
        rows += [("sface", "teacher:sface", 0, 90.0)] if extra_models else []
        return pd.DataFrame([{"model": m, "model_key": key, "seed": s, "scale": sc, "eval_mode": "cross",
                              "distractors": True, "rank1": r + sc, "mAP": r, "dataset": id_set}
                             for m, key, s, r in rows for sc in (1.0, 8.0)])

    monkeypatch.setattr(IS, "identify_study", fake)
    monkeypatch.setattr(S, "external_teachers", lambda names: {f"teacher:{n}": object() for n in names})
    out = IS.pooled_identification(str(preset), external_teachers=["sface"])
    assert calls == [("blk-b0", ["teacher:sface"]), ("blk-b1", [])]
    teacher = out[out["model_key"] == "teacher"]
    assert sorted(zip(teacher["block"], teacher["seed"])) == [(0, 0), (0, 0), (1, 1), (1, 1)]
    assert (out["model_key"] == "teacher:sface").sum() == 2 and set(out["block"]) == {0, 1}
    written = pd.read_csv(tmp_path / "pub" / "identification" / "lfw-half-id.csv")
    assert len(written) == len(out) and list(written.columns)[-1] == "block"
    md = (tmp_path / "pub" / "identification" / "lfw-half-id.md").read_text()
    assert "blk study's 2 blocks" in md and "| BasicNet-HR | 41.50 ± 0.71 |" in md   # rank-1 ×1 of the teachers: 41, 42


def test_published_identification_pools_what_the_blocks_published(tmp_path):
    """A study that spans days keeps no weights: its identification is pooled from each block's published
    per-model rows (blocks/seed-K/eval/<set>/*_id.csv). Block k's teacher becomes teacher seed k, an external
    teacher counts once; a block without files makes the pooled table wait (or, partial, pool the others)."""
    import pandas as pd
    import yaml

    preset = tmp_path / "blk.yaml"
    preset.write_text(yaml.safe_dump({"name": "blk", "publish": str(tmp_path / "pub"),
                                      "blocks": {"parameter": "SEED", "values": [0, 1, 2]},
                                      "notebooks": ["01_teacher_training"]}))

    def publish(k):
        d = tmp_path / "pub" / "blocks" / f"seed-{k}" / "eval" / "lfw-half-id"
        d.mkdir(parents=True)
        for stem, model, key, method, seed, r in (("teacher_s0", "BasicNet-HR", "teacher", "", 0, 40.0 + k),
                                                  ("teacher-sface_s0", "teacher:sface", "teacher:sface", "", 0, 90.0),
                                                  (f"none_s{k}", "BasicNet-LR", "none", "none", k, 20.0 + 2 * k)):
            pd.DataFrame([{"model": model, "model_key": key, "method": method, "teacher": "", "seed": seed,
                           "scale": sc, "eval_mode": "cross", "distractors": True, "rank1": r + sc, "mAP": r,
                           "dataset": "lfw-half-id"} for sc in (1.0, 8.0)]).to_csv(d / f"{stem}_id.csv", index=False)

    publish(0)
    publish(2)
    assert IS.published_identification(str(preset)) is None                     # block 1 has published nothing
    part = IS.published_identification(str(preset), partial=True)
    assert set(part["block"]) == {0, 2} and not (tmp_path / "pub" / "identification").exists()
    publish(1)
    out = IS.published_identification(str(preset))
    teacher = out[out["model_key"] == "teacher"]
    assert sorted(set(zip(teacher["block"], teacher["seed"]))) == [(0, 0), (1, 1), (2, 2)]
    assert (out["model_key"] == "teacher:sface").sum() == 2 and set(out.loc[out["model_key"] == "teacher:sface",
                                                                                "block"]) == {0}
    md = (tmp_path / "pub" / "identification" / "lfw-half-id.md").read_text()
    assert "blk study's 3 blocks" in md
    assert "| BasicNet-LR | 23.00 ± 2.00 |" in md and "| BasicNet-HR | 42.00 ± 1.00 |" in md   # rank-1 ×1 over blocks
