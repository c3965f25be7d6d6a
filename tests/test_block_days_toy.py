"""A blocked study over two "days", end to end through the runner and papermill at toy scale (synthetic faces).

Day 1 trains the teacher (published as fp16 safetensors) and BasicNet-LR (evaluated at once, published per model);
then the run folder is lost. Day 2 runs the same command: the teacher is rebuilt from its file, BasicNet-LR counts as
done from what was published, the KD student trains against the rebuilt (same) teacher, and the test step (03) and
the attention step (04) report all three models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lqlib import paths

pytestmark = pytest.mark.slow

TINY = {"backbone": "ir_cbam_tiny", "epochs": 3, "batch_size": 16, "lr": 0.1, "schedule": "onecycle",
        "head_kw": {"s": 32.0, "m": 0.5}, "device": "cpu", "num_workers": 0, "compile": False, "progress": False,
        "log_every": 1}
TEST = {"PAIRS": "lfw-half", "MAX_PAIRS": 60, "EVAL_SCALES": [1, 8], "EVAL_MODES": ["both"], "ID_SET": "",
        "BATCH_SIZE": 32, "DEVICE": "cpu"}
MEASURE = {"PAIRS": "lfw-half", "N_MEASURE_FACES": 8}


def _preset(tmp: Path) -> Path:
    student = {"RECIPE": "smoke", "TRAIN_OVERRIDES": TINY, "PUBLISH_DIR": "results/ci-days",
               "TEST_EVAL": TEST, "ATTENTION_EVAL": MEASURE}
    preset = {
        "name": "ci-days", "publish": "results/ci-days", "allow_synthetic": True,
        "blocks": {"parameter": "SEED", "values": [0]},
        "notebooks": [
            {"notebook": "01_teacher_training", "parameters": {"RECIPE": "smoke", "TRAIN_OVERRIDES": TINY,
                                                               "PUBLISH_DIR": "results/ci-days", "PUBLISH_WEIGHTS": True}},
            {"notebook": "02_kd_ablation", "parameters": student, "grid": {"SEED": [0], "METHOD": ["none", "logit"]}},
            {"notebook": "04_attention_maps", "parameters": {**MEASURE, "N_FACES": 2, "PUBLISH_DIR": "results/ci-days"}},
            {"notebook": "03_evaluation", "tag": "test",
             "parameters": {**TEST, "TEST_SCALES": [8], "CHECK_STUDY": False, "PUBLISH_DIR": "results/ci-days",
                            "PUBLISH_MODELS": True}},
        ]}
    path = tmp / "ci-days.yaml"
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    return path


@pytest.fixture
def no_face_data(tmp_path, monkeypatch):
    """No face data anywhere (the kernels inherit it): every step runs on the synthetic identity set."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LQLIB_DATA", str(tmp_path / "empty"))
    name = "ci-days"
    for d in (paths.runs_dir() / name, paths.figures_dir() / name):
        shutil.rmtree(d, ignore_errors=True)
    yield name
    for d in (paths.runs_dir() / name, paths.figures_dir() / name):
        shutil.rmtree(d, ignore_errors=True)


def _errors(out: Path) -> list:
    found = []
    for nb in sorted((out / "notebooks").glob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            found += [f"{nb.name}: {o.get('ename')}: {o.get('evalue')}" for o in c.get("outputs", [])
                      if o.get("output_type") == "error"]
    return found


def test_a_block_continues_the_next_day_from_what_it_published(tmp_path, no_face_data):
    from lqlib.run import run

    preset, out = _preset(tmp_path), tmp_path / no_face_data
    pub = out / "published"                  # a synthetic run publishes beside itself, never into results/
    run(str(preset), str(out), block=0, only=["01_teacher", "METHOD-none"], log=print)
    assert not _errors(out)
    assert (pub / "teacher.safetensors").is_file()
    day1 = pd.read_csv(pub / "eval" / "synthetic" / "none_s0.csv")
    assert sorted(p.name for p in (pub / "eval" / "synthetic").iterdir()) == ["none_s0.csv", "none_s0.json",
                                                                              "none_s0.npz"]
    assert set(pd.read_csv(pub / "attention_measure_synthetic.csv")["model"]) == {"BasicNet-LR"}

    # the next day: the run folder and the executed notebooks are gone, what was published is kept
    shutil.rmtree(paths.runs_dir() / no_face_data)
    for p in out.iterdir():
        if p.name != "published":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    logs = []
    run(str(preset), str(out), block=0, log=lambda m: (logs.append(m), print(m)))
    assert not _errors(out)
    executed = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
    assert executed == ["01_teacher_training.ipynb", "02_kd_ablation__SEED-0__METHOD-logit.ipynb",
                        "03_evaluation__test.ipynb", "04_attention_maps.ipynb"], executed
    assert any("METHOD=none: published earlier" in m for m in logs), logs
    assert not (paths.runs_dir() / no_face_data / "students" / "none_s0").exists()   # not trained again

    results = pd.read_csv(pub / "results.csv")
    assert set(results["model_key"]) == {"teacher", "none", "logit"}
    none = results[results["model_key"] == "none"].sort_values("scale")["acc_mean"].to_numpy()
    assert list(none) == list(day1.sort_values("scale")["acc_mean"])                  # day 1's numbers, read back
    assert set(pd.read_csv(pub / "attention_measure_synthetic.csv")["model"]) >= {"BasicNet-LR", "+logit KD"}
    info = json.loads((pub / "run_info.json").read_text())
    assert info["complete"] is True
    assert info["steps"]["02_kd_ablation__SEED-0__METHOD-none"]["recorded"]           # day 1's record, kept
    assert info["steps"]["02_kd_ablation__SEED-0__METHOD-logit"]["depends"]["teacher"].startswith("weights:")
