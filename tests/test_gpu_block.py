"""bench/gpu_block.py, the one command of a GPU window: its CPU dry run (the same command and code path,
tiny configuration), the time-budget guard, and the merge of returned blocks into results/gpu/."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lqlib import paths

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["teacher", "none", "logit", "attention", "logit+attention"]
# The GPU machine's Python lacks these (KINDS.md): the dry run runs with them made unimportable.
NOT_ON_GPU_MACHINE = ("pytorch_grad_cam", "ipywidgets", "papermill", "nbformat", "nbclient", "ipykernel",
                      "jupyter_client", "IPython", "ttach")


def _load():
    spec = importlib.util.spec_from_file_location("gpu_block", ROOT / "bench" / "gpu_block.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gb = _load()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    monkeypatch.setattr(paths, "results_dir", lambda: tmp_path / "results")
    monkeypatch.setenv("LQLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="module")
def block0(tmp_path_factory):
    """``bash bench/gpu_block.sh --dry-run`` as a GPU window would run it (SEED, OUT from the environment)."""
    tmp = tmp_path_factory.mktemp("block0")
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import sys\nfor m in {NOT_ON_GPU_MACHINE!r}:\n    sys.modules[m] = None\n"
        "print('[test] made unimportable: the packages the GPU machine lacks', file=sys.stderr)\n")
    env = dict(os.environ, OUT=str(tmp / "out"), SEED="0", LQLIB_CACHE=str(tmp / "cache"), LQLIB_COMPILE="0",
               OMP_NUM_THREADS="1", PYTHONPATH=str(site), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_block.sh"), "--dry-run", "--work", str(tmp / "work")],
                          env=env, capture_output=True, text=True, timeout=600)
    return tmp / "out", proc, time.perf_counter() - t0


def _check_accuracy(df: pd.DataFrame, seed: int):
    assert {"model", "model_key", "method", "teacher", "seed", "eval_mode", "scale", "acc_mean", "acc_std", "n_pairs",
            "status"} <= set(df.columns)
    assert (df["status"] == "ok").all() and (df["seed"] == seed).all()
    got = sorted(df[["model_key", "eval_mode", "scale"]].itertuples(index=False, name=None))
    want = sorted((m, e, float(s)) for m in MODELS for e in ("both", "cross") for s in (1, 2, 4, 8))
    assert [(m, e, float(s)) for m, e, s in got] == want  # every model × eval mode × scale, once
    assert df["acc_mean"].between(0, 100).all() and (df["n_pairs"] == 50).all()
    assert set(df.loc[df["model_key"] == "teacher", "model"]) == {"BasicNet-HR"}


def test_dry_run_is_the_gpu_command_on_the_cpu(block0):
    out, proc, seconds = block0
    log = (out / "log").read_text() if (out / "log").is_file() else proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(gb.OUTPUT_FILES) and len(files) <= 8
    assert "[test] made unimportable" in log and "gpu_block: COMPLETE" in log
    _check_accuracy(pd.read_csv(out / "accuracy.csv"), seed=0)
    t = json.loads((out / "timings.json").read_text())
    assert t["complete"] and t["dry_run"] and t["seed"] == 0 and t["skipped"] == []
    assert t["env"]["torch"] and t["env"]["gpu"] == "cpu" and t["env"]["packs"]["split"] == "dry-run"
    steps = {s["step"]: s for s in t["steps"]}
    for key in ["teacher"] + [f"student:{m}" for m in MODELS[1:]]:
        assert steps[key]["status"] == "done" and steps[key]["wall_s"] > 0
        assert {"compile_s", "s_per_epoch", "engine", "epochs_done"} <= set(steps[key])
    assert all(steps[f"eval:{m}"]["status"] == "done" for m in MODELS)
    assert t["config"]["teacher"]["epochs"] == 2 and t["config"]["student"]["init_head_from_teacher"] is False
    kd = json.loads((out / "kd_step.json").read_text())
    assert kd["status"] == "done" and kd["default"]["img_per_s"] > 0 and steps["kd_step"]["status"] == "done"
    with np.load(out / "pairs_correct.npz") as z:
        assert len(z.files) == 5 * 2 * 4 and z["logit-attention__cross__x8"].shape == (50,)
    print(f"dry run: {seconds:.1f} s")


class FakeClock:
    """One second per reading: the budget decisions become a function of the code path alone."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_budget_guard_stops_cleanly_and_says_what_was_skipped(isolated):
    out, work = isolated / "out", isolated / "work"
    # 10 s in all, 3 reserved: training may read the clock 6 more times — the teacher stops in epoch 2 of 2
    rc = gb.main(["run", "--out", str(out), "--seed", "0", "--dry-run", "--work", str(work), "--budget-s", "10",
                  "--reserve-eval-s", "1", "--reserve-bench-s", "1", "--margin-s", "1", "--min-bench-s", "5"],
                 clock=FakeClock())
    assert rc == 2  # incomplete, nothing failed
    t = json.loads((out / "timings.json").read_text())
    steps = {s["step"]: s for s in t["steps"]}
    assert steps["teacher"]["status"] == "stopped" and "time budget" in steps["teacher"]["reason"]
    assert steps["teacher"]["epochs_done"] == 1
    assert steps["student:none"]["status"] == "skipped" and "no training time left" in steps["student:none"]["reason"]
    assert all(steps[f"student:{m}"]["reason"] == "no finished teacher" for m in MODELS[2:])
    assert steps["kd_step"]["status"] == "skipped" and not t["complete"] and len(t["skipped"]) == 6
    df = pd.read_csv(out / "accuracy.csv")
    assert sorted(df["model_key"]) == sorted(MODELS) and df["status"].str.startswith("skipped").all()
    assert df.set_index("model_key").loc["teacher", "status"] == "skipped: training stopped"
    assert json.loads((out / "kd_step.json").read_text())["status"] == "skipped"
    from lqlib.checkpoint import load_checkpoint

    ck = load_checkpoint(work / "teacher")  # the stopped teacher is checkpointed mid-epoch: resumable
    assert (ck["epoch"], ck["batch_in_epoch"]) == (1, 2)


def test_merge_accumulates_seeds_across_blocks(block0, isolated, capsys, monkeypatch):
    out0 = block0[0]
    out1 = isolated / "out1"
    # an in-process call gets its whole budget however long ago this module was imported (the command's
    # budget counts from its process start; here the block0 fixture alone may take minutes)
    monkeypatch.setattr(gb, "T_START", time.monotonic() - 1e6)
    rc = gb.main(["run", "--out", str(out1), "--seed", "1", "--dry-run", "--work", str(isolated / "work1"),
                  "--min-bench-s", "1e9"])  # no benchmark in this block: incomplete, still mergeable
    assert rc == 2
    _check_accuracy(pd.read_csv(out1 / "accuracy.csv"), seed=1)
    assert gb.main(["merge", str(out0)]) == 1  # a dry run is refused by default
    assert gb.main(["merge", str(out0), "--allow-dry-run"]) == 0
    assert gb.main(["merge", str(out1), "--allow-dry-run"]) == 0
    assert gb.main(["merge", str(out1), "--allow-dry-run"]) == 1  # same GPU, date and seed: not twice
    root = isolated / "results" / "gpu"
    date = json.loads((out0 / "timings.json").read_text())["started"][:10]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [f"cpu_{date}_s0", f"cpu_{date}_s1"]
    assert (root / f"cpu_{date}_s0" / "log").is_file() and (root / f"cpu_{date}_s1" / "pairs_correct.npz").is_file()
    every = pd.read_csv(root / "accuracy_all.csv")
    assert every.groupby(["model_key", "eval_mode", "scale"])["seed"].nunique().eq(2).all() and len(every) == 80
    md = (root / "tables.md").read_text()
    assert "| BasicNet-LR |" in md and "std over training seeds" in md and "vs BasicNet-LR across seeds" in md
    from lqlib.evaluation import paper_table

    assert (paper_table(every, "cross")["n seeds"] == 2).all()
    assert (root / "accuracy_vs_scale.png").stat().st_size > 0
    capsys.readouterr()
    assert gb.main(["next-seed"]) == 0 and capsys.readouterr().out.strip() == "2"
