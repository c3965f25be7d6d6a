"""The batch runner (lqlib.run) on presets: re-runs on changed parameters or teachers, the run record and what
publishes (results and figures), --only / --force, and the refusal to run on synthetic data without --synthetic."""
from pathlib import Path

import pytest

from lqlib import paths
from lqlib import study as S


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """runs/ under tmp_path, a face-data directory (lfw/pairs.txt is what the runner checks) and papermill
    replaced by a recorder (it writes an empty executed copy); yields the list of executed parameters."""
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    (tmp_path / "faces" / "lfw").mkdir(parents=True)
    (tmp_path / "faces" / "lfw" / "pairs.txt").write_text("1\t300\n")
    monkeypatch.setenv("LQLIB_DATA", str(tmp_path / "faces"))
    calls = []

    def fake(src, dst, parameters, **kw):
        calls.append(parameters)
        if parameters.get("MAX_PAIRS") == 666:
            raise RuntimeError("a step that fails")
        Path(dst).write_text("{}")

    monkeypatch.setattr("papermill.execute_notebook", fake)
    return calls


def test_runner_reruns_a_step_whose_parameters_changed(tmp_path, fake_runs):
    from lqlib import run

    preset = tmp_path / "p.yaml"
    preset.write_text("notebooks:\n  - notebook: 03_evaluation\n    parameters: {MAX_PAIRS: 10}\n")
    run.run(str(preset), str(tmp_path / "out"), log=lambda *a: None)
    run.run(str(preset), str(tmp_path / "out"), log=lambda *a: None)
    assert len(fake_runs) == 1  # done, same parameters: skipped
    preset.write_text("notebooks:\n  - notebook: 03_evaluation\n    parameters: {MAX_PAIRS: 20}\n")
    run.run(str(preset), str(tmp_path / "out"), log=lambda *a: None)
    assert len(fake_runs) == 2 and fake_runs[-1]["MAX_PAIRS"] == 20


def _two_step_preset(tmp_path, second=20):
    """A preset "p" of two 03 steps (tags a, b; MAX_PAIRS 10 and ``second``) that publishes its run record
    and tables to tmp_path/pub."""
    preset = tmp_path / "p.yaml"
    preset.write_text(f"publish: {tmp_path / 'pub'}\nnotebooks:\n  - notebook: 03_evaluation\n    tag: a\n"
                      f"    parameters: {{MAX_PAIRS: 10, PUBLISH_DIR: {tmp_path / 'pub'}}}\n"
                      "  - notebook: 03_evaluation\n    tag: b\n"
                      f"    parameters: {{MAX_PAIRS: {second}}}\n")
    return preset


def test_run_info_is_published_after_every_step_and_names_what_is_pending(tmp_path, fake_runs):
    import json

    from lqlib import run

    with pytest.raises(run.RunError):
        run.run(str(_two_step_preset(tmp_path, second=666)), log=lambda *a: None)  # runs/p: publishes
    info = json.loads((tmp_path / "pub" / "run_info.json").read_text())
    assert info["complete"] is False and info["pending"] == ["03_evaluation__b"]
    assert list(info["steps"]) == ["03_evaluation__a"]
    assert info["steps"]["03_evaluation__a"]["parameters"]["MAX_PAIRS"] == 10
    assert info["command"] == f"python -m lqlib.run --preset {info['preset']}" and info["environment"]["torch"]


def test_only_the_presets_own_run_dir_publishes(tmp_path, fake_runs):
    """Before, run_info.json of the preset's publish folder was rewritten by a run with --out elsewhere, and
    its tables (PUBLISH_DIR) were copied there too: another run dir publishes under <out>/published/."""
    import json

    from lqlib import run

    preset = _two_step_preset(tmp_path)
    run.run(str(preset), str(tmp_path / "elsewhere"), log=lambda *a: None)
    assert not (tmp_path / "pub").exists()
    assert fake_runs[0]["PUBLISH_DIR"] == str(tmp_path / "elsewhere" / "published")
    info = json.loads((tmp_path / "elsewhere" / "published" / "run_info.json").read_text())
    assert info["complete"] is True
    run.run(str(preset), log=lambda *a: None)  # runs/p: the owner
    assert fake_runs[-2]["PUBLISH_DIR"] == str(tmp_path / "pub") and (tmp_path / "pub" / "run_info.json").is_file()


def test_only_the_presets_own_run_draws_into_figures(tmp_path, fake_runs, monkeypatch):
    """Before, a run with --out elsewhere drew its figures into the checkout's figures/<out name>/ (untracked files
    in the repository): figures follow the publishing rule — only the preset's own run draws into figures/, any
    other run (--out elsewhere, synthetic data) into <out>/figures/."""
    import os

    import papermill

    from lqlib import run

    monkeypatch.delenv("LQLIB_FIGURES", raising=False)
    record, drawn = papermill.execute_notebook, []

    def notebook(src, dst, parameters, **kw):  # where the notebook's plotting.save_figure calls would write
        drawn.append(S.Study(parameters["RUN_NAME"]).figures_dir)
        return record(src, dst, parameters, **kw)

    monkeypatch.setattr(papermill, "execute_notebook", notebook)
    preset = _two_step_preset(tmp_path)
    run.run(str(preset), str(tmp_path / "elsewhere" / "vb"), log=lambda *a: None)
    assert drawn == [tmp_path / "elsewhere" / "vb" / "figures" / "vb"] * 2
    assert "LQLIB_FIGURES" not in os.environ  # set for the notebooks' kernels only while the run lasts
    run.run(str(preset), log=lambda *a: None)  # runs/p: the owner
    assert drawn[2:] == [paths.repo_root() / "figures" / "p"] * 2
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LQLIB_DATA", str(empty))
    run.run(str(preset), synthetic=True, log=lambda *a: None)  # no face data: runs/p-synthetic, not the owner
    assert drawn[4:] == [tmp_path / "runs" / "p-synthetic" / "figures" / "p-synthetic"] * 2


def test_force_with_only_reruns_those_steps_and_keeps_the_record_of_the_others(tmp_path, fake_runs):
    import json

    from lqlib import run

    preset = _two_step_preset(tmp_path)
    run.run(str(preset), log=lambda *a: None)
    run.run(str(preset), force=True, only=["__b"], log=lambda *a: None)
    assert [c["MAX_PAIRS"] for c in fake_runs] == [10, 20, 20]
    out = tmp_path / "runs" / "p"
    assert set(json.loads((out / "status.json").read_text())) == {"03_evaluation__a", "03_evaluation__b"}
    info = json.loads((tmp_path / "pub" / "run_info.json").read_text())
    assert info["complete"] is True and set(info["steps"]) == {"03_evaluation__a", "03_evaluation__b"}


def test_a_step_run_from_a_fresh_run_dir_keeps_the_published_record_of_the_others(tmp_path, fake_runs):
    """Before, running one step from a fresh run folder (the block's folder lost between sessions, or the
    verdict's pooling step run after the last block elsewhere) rewrote run_info.json with that step alone."""
    import json
    import shutil

    from lqlib import run

    preset = _two_step_preset(tmp_path)
    run.run(str(preset), log=lambda *a: None)
    first = json.loads((tmp_path / "pub" / "run_info.json").read_text())
    shutil.rmtree(tmp_path / "runs" / "p")
    run.run(str(preset), only=["__b"], log=lambda *a: None)
    assert [c["MAX_PAIRS"] for c in fake_runs] == [10, 20, 20]
    info = json.loads((tmp_path / "pub" / "run_info.json").read_text())
    assert info["complete"] is True and info["pending"] == []
    a, b = info["steps"]["03_evaluation__a"], info["steps"]["03_evaluation__b"]
    assert a["seconds"] == first["steps"]["03_evaluation__a"]["seconds"] and a["parameters"]["MAX_PAIRS"] == 10
    assert a["recorded"] == first["updated"] and a["environment"] == first["environment"]
    assert "recorded" not in b and info["total_seconds"] == round(a["seconds"] + b["seconds"], 1)
    (tmp_path / "pub" / "run_info.json").write_text(json.dumps({**first, "preset": "another"}))
    run.run(str(preset), force=True, only=["__b"], log=lambda *a: None)     # another preset's record: not kept
    assert list(json.loads((tmp_path / "pub" / "run_info.json").read_text())["steps"]) == ["03_evaluation__b"]


def test_a_bare_only_runs_nothing(tmp_path, fake_runs, capsys):
    """Before, ``--only`` with no value (nargs="*": []) selected every step."""
    from lqlib import run

    preset = _two_step_preset(tmp_path)
    with pytest.raises(SystemExit) as e:
        run.main(["--preset", str(preset), "--only"])
    assert e.value.code == 2 and "--only" in capsys.readouterr().err
    with pytest.raises(run.PresetError, match="at least one step"):
        run.run(str(preset), only=[], log=lambda *a: None)
    with pytest.raises(run.PresetError, match=r"matches no step.*03_evaluation__a"):
        run.run(str(preset), only=["07_"], log=lambda *a: None)
    assert fake_runs == []


def test_a_corrupt_status_json_is_one_error_naming_the_file(tmp_path, fake_runs, capsys):
    from lqlib import run

    preset = _two_step_preset(tmp_path)
    status = tmp_path / "runs" / "p" / "status.json"
    for text in ('{"03_evaluation__a": {"status": "do', "[1, 2]"):
        status.parent.mkdir(parents=True, exist_ok=True)
        status.write_text(text)
        assert run.main(["--preset", str(preset)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {status} is not a valid run record") and "Traceback" not in err
        assert status.read_text() == text and fake_runs == []  # left as it was, nothing ran


def test_a_retrained_teacher_reruns_its_students(tmp_path, fake_runs):
    """Before, a student step stayed "done" when its teacher was retrained (same parameters): it was skipped
    and its student kept the old teacher's distillation."""
    from lqlib import run

    preset = tmp_path / "s.yaml"
    preset.write_text("notebooks:\n  - notebook: 02_kd_ablation\n    grid: {METHOD: [logit]}\n")
    teacher = tmp_path / "runs" / "s" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "checkpoint.pt").write_bytes(b"teacher one")
    run.run(str(preset), log=lambda *a: None)
    run.run(str(preset), log=lambda *a: None)
    assert len(fake_runs) == 1
    (teacher / "checkpoint.pt").write_bytes(b"teacher two")  # retrained: other weights
    logs = []
    run.run(str(preset), log=logs.append)
    assert len(fake_runs) == 2 and any("its teacher changed" in m for m in logs)
    run.run(str(preset), log=lambda *a: None)
    assert len(fake_runs) == 2


def test_runner_refuses_synthetic_data_before_the_first_step(tmp_path, fake_runs, monkeypatch, capsys):
    """No face data: before, the cpu preset trained on the synthetic set and 03 copied its tables over the
    committed results/cpu/. Now the run stops before its first step naming where it looked; --synthetic
    runs it, publishing under <out>/published/ only."""
    import json

    from lqlib import run

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LQLIB_DATA", str(empty))
    committed = paths.resolve("results/cpu/run_info.json")
    before = committed.read_bytes() if committed.is_file() else None
    assert run.main(["--preset", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"looked in: {empty} (no lfw/pairs.txt there)" in err and "--synthetic" in err
    assert fake_runs == [] and not (tmp_path / "out").exists()
    # the preset's own run dir (the publishing one) is refused the same way
    assert run.main(["--preset", "cpu"]) == 2 and fake_runs == []
    # --synthetic: runs, in runs/cpu-synthetic, and publishes into <out>/published only
    run.run("cpu", synthetic=True, only=["03_evaluation__half1"], log=lambda *a: None)
    out = tmp_path / "runs" / "cpu-synthetic"
    assert fake_runs[0]["RUN_NAME"] == "cpu-synthetic" and fake_runs[0]["PUBLISH_DIR"] == str(out / "published")
    assert json.loads((out / "published" / "run_info.json").read_text())["preset"] == "cpu"
    assert (committed.read_bytes() if committed.is_file() else None) == before
    # with face data, --synthetic changes nothing: the preset's own run dir, publishing as usual
    monkeypatch.setenv("LQLIB_DATA", str(tmp_path / "faces"))
    logs = []
    run.run(str(_two_step_preset(tmp_path)), synthetic=True, log=logs.append)
    assert fake_runs[-1]["RUN_NAME"] == "p" and (tmp_path / "pub" / "run_info.json").is_file()
    assert any("face data found" in m for m in logs)
    import os

    assert "LQLIB_SYNTHETIC" not in os.environ  # set for the notebooks' kernels only while the run lasts


def test_notebooks_of_a_run_that_refuses_synthetic_data_do_not_fall_back(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LQLIB_DATA", str(empty))
    assert S.resolve_training_data("lfw-half") == "synthetic"  # interactive use: the loud fallback
    monkeypatch.setenv("LQLIB_SYNTHETIC", "refuse")
    with pytest.raises(FileNotFoundError, match=rf"{empty} has no lfw/pairs.txt.*--synthetic"):
        S.resolve_training_data("lfw-half")
    with pytest.raises(FileNotFoundError):
        S.load_eval_pairs("lfw-half")


def test_a_student_published_on_an_earlier_day_counts_as_done(tmp_path, fake_runs, monkeypatch):
    """A block that spans days keeps only its teachers' weights: a student step with TEST_EVAL whose products
    (curve, per-model evaluation) are committed is skipped on a fresh run folder — but only with the same
    parameters, the same teacher and every product still there."""
    import json
    import shutil

    from lqlib import run

    pub = tmp_path / "pub"
    preset = tmp_path / "s.yaml"
    preset.write_text(f"publish: {pub}\nnotebooks:\n  - notebook: 02_kd_ablation\n"
                      f"    parameters: {{PUBLISH_DIR: {pub}, TEST_EVAL: {{PAIRS: lfw-half}}}}\n"
                      "    grid: {METHOD: [none]}\n  - notebook: 02_kd_ablation\n    tag: plain\n"
                      f"    parameters: {{PUBLISH_DIR: {pub}}}\n    grid: {{METHOD: [logit]}}\n")
    executed = list(fake_runs)
    fake = __import__("papermill").execute_notebook

    def student(src, dst, parameters, **kw):   # what notebook 02 publishes
        fake(src, dst, parameters, **kw)
        d = Path(parameters["PUBLISH_DIR"])
        (d / "eval" / "lfw-half").mkdir(parents=True, exist_ok=True)
        (d / f"{parameters['METHOD']}_s0_summary.json").write_text("{}")
        if parameters.get("TEST_EVAL"):
            (d / "eval" / "lfw-half" / f"{parameters['METHOD']}_s0.npz").write_bytes(b"bits")
    monkeypatch.setattr("papermill.execute_notebook", student)
    teacher = tmp_path / "runs" / "s" / "teacher"

    def new_day(weights=b"teacher one"):   # the run folder is gone; the teacher is rebuilt from its published file
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        teacher.mkdir(parents=True)
        (teacher / "checkpoint.pt").write_bytes(weights)

    new_day()
    run.run(str(preset), log=lambda *a: None)
    assert [p["METHOD"] for p in fake_runs] == ["none", "logit"]
    rec = json.loads((pub / "run_info.json").read_text())["steps"]["02_kd_ablation__METHOD-none"]
    assert rec["products"] == ["eval/lfw-half/none_s0.npz", "none_s0_summary.json"]
    assert rec["depends"]["teacher"].startswith("ckpt:") and rec["params_hash"]

    new_day()
    logs = []
    run.run(str(preset), log=logs.append)
    assert [p["METHOD"] for p in fake_runs] == ["none", "logit", "logit"]   # only the step without TEST_EVAL ran
    assert any("02_kd_ablation METHOD=none: published earlier (2 files in" in m for m in logs)
    status = json.loads((tmp_path / "runs" / "s" / "status.json").read_text())
    assert status["02_kd_ablation__METHOD-none"]["published"] is True
    again = json.loads((pub / "run_info.json").read_text())["steps"]["02_kd_ablation__METHOD-none"]
    assert again["products"] == rec["products"] and again["recorded"]   # kept, with when it was recorded

    new_day()
    (pub / "eval" / "lfw-half" / "none_s0.npz").unlink()                # a product missing: trained again
    run.run(str(preset), log=lambda *a: None)
    assert [p["METHOD"] for p in fake_runs][3:] == ["none", "logit"]
    new_day(b"teacher two")                                             # another teacher: trained again
    run.run(str(preset), log=lambda *a: None)
    assert [p["METHOD"] for p in fake_runs][5:] == ["none", "logit"]
    assert executed == []


def test_run_record_names_the_lqlib_commit(tmp_path):
    """run_info.json's environment says which lqlib ran: the commit of a git checkout (and whether its package or
    notebooks were modified); a source that is no checkout of its own gives the version only."""
    import subprocess

    from lqlib import __version__
    from lqlib.run_record import environment, source_revision

    repo = Path(__file__).resolve().parent.parent
    env = environment()["lqlib"]
    assert env["version"] == __version__
    if (repo / ".git").exists():
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert env["commit"] == head.strip() and isinstance(env["modified"], bool)
    (tmp_path / "lqlib").mkdir()
    assert source_revision(tmp_path) == {"version": __version__}     # inside no repository of its own
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "lqlib" / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"],
                   check=True)
    clean = source_revision(tmp_path)
    assert len(clean["commit"]) == 40 and clean["modified"] is False
    (tmp_path / "lqlib" / "a.py").write_text("x = 2\n")
    assert source_revision(tmp_path)["modified"] is True
