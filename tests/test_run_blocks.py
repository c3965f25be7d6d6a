"""lqlib.run's blocks: one self-contained block of a blocked preset per call (``--block K``)."""
from __future__ import annotations

import json

import pytest
import yaml

from lqlib import run as R


def _preset(tmp_path, **extra):
    p = tmp_path / "b.yaml"
    p.write_text(yaml.safe_dump({
        "name": "b", "publish": "results/b",
        "blocks": {"parameter": "SEED", "values": [0, 1, 2]},
        "notebooks": [
            {"notebook": "01_teacher_training", "parameters": {"RECIPE": "smoke"}},
            {"notebook": "02_kd_ablation", "tag": "calib", "parameters": {"SEED": 100, "METHOD": "none"}},
            {"notebook": "02_kd_ablation", "grid": {"SEED": [0, 1, 2], "METHOD": ["none", "logit"]}},
            {"notebook": "03_evaluation", "tag": "test", "parameters": {"PUBLISH_DIR": "results/b"}},
            {"notebook": "03_evaluation", "tag": "val", "parameters": {"PUBLISH_DIR": "results/b/validation"}},
            {"notebook": "03_evaluation", "tag": "other", "parameters": {"PUBLISH_DIR": "results/else"}},
        ], **extra}, sort_keys=False))
    return R.load_preset(str(p))


def test_block_plan_keeps_its_own_seed_and_sets_the_teachers(tmp_path):
    preset = _preset(tmp_path)
    steps = R.plan(preset, "b")
    b0 = {s.key: s.parameters for s in R.block_plan(preset, steps, 0)}
    b2 = {s.key: s.parameters for s in R.block_plan(preset, steps, 2)}
    assert [k for k in b2 if k.startswith("02")] == ["02_kd_ablation__SEED-2__METHOD-none",
                                                     "02_kd_ablation__SEED-2__METHOD-logit"]
    assert "SEED" not in b0["01_teacher_training"]          # the default already: the step's record stays valid
    assert b0["01_teacher_training"] == next(s.parameters for s in steps if s.key == "01_teacher_training")
    assert b2["01_teacher_training"]["SEED"] == 2
    assert b2["03_evaluation__test"]["PUBLISH_DIR"] == "results/b/blocks/seed-2"
    assert b2["03_evaluation__val"]["PUBLISH_DIR"] == "results/b/blocks/seed-2/validation"
    assert b2["03_evaluation__other"]["PUBLISH_DIR"] == "results/else"
    assert not any("calib" in k for k in b0)               # a fixed seed of no block
    with pytest.raises(R.PresetError, match="blocks are SEED in"):
        R.block_plan(preset, steps, 5)


def test_a_blocked_preset_needs_a_block_and_a_folder_keeps_its_block(tmp_path, monkeypatch):
    preset = _preset(tmp_path)
    path = str(tmp_path / "b.yaml")
    with pytest.raises(R.PresetError, match="runs in blocks: pass --block"):
        R.run(path, str(tmp_path / "out"), prepare_only=True)
    with pytest.raises(R.PresetError, match=r"preset 'smoke' has no blocks \(no 'blocks' section\): run it without --block"):
        R.run("smoke", str(tmp_path / "out2"), prepare_only=True, block=0)
    out = tmp_path / "out"
    R.claim_block(out, "SEED", 1, prepare_only=False)
    assert json.loads((out / "block.json").read_text()) == {"parameter": "SEED", "value": 1}
    R.claim_block(out, "SEED", 1, prepare_only=False)         # the same block again: fine
    with pytest.raises(R.PresetError, match="holds block SEED=1"):
        R.claim_block(out, "SEED", 2, prepare_only=False)
    with pytest.raises(R.PresetError, match="'blocks' needs"):
        R.block_spec({**preset, "blocks": {"parameter": "SEED"}})


def test_the_verdict_preset_runs_in_blocks():
    preset = R.load_preset("verdict")
    steps = R.block_plan(preset, R.plan(preset, "verdict"), 3)
    family = [s for s in steps if s.notebook.startswith("02") and s.parameters.get("METHOD") in
              ("none", "logit", "attention", "logit+attention", "attention_c", "angular_emb_c")
              and "TRAIN_OVERRIDES" not in s.parameters]
    assert len(family) == 6 and all(s.parameters["SEED"] == 3 for s in family)
    test = [s for s in steps if s.key == "03_evaluation__test"][0]
    assert test.parameters["PUBLISH_DIR"] == "results/cpu/blocks/seed-3" and steps[-3] is test
    assert [(s.notebook, s.parameters["PRESET"]) for s in steps[-2:]] == [("06_verdict.ipynb", "verdict")] * 2  # pool, after


def test_a_block_draws_its_figures_into_its_own_folder(tmp_path, monkeypatch):
    from lqlib import paths
    from lqlib.study import Study

    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    monkeypatch.setattr(paths, "figures_dir", lambda: tmp_path / "figures")
    study = Study("b")
    assert study.figures_dir == tmp_path / "figures" / "b"                   # an unblocked study
    R.claim_block(study.root, "SEED", 3, prepare_only=False)
    assert study.figures_dir == tmp_path / "figures" / "b" / "seed-3"        # same name as its results folder
    assert R.block_publish(_preset(tmp_path), 3) == "results/b/blocks/seed-3"
