"""The record of a batch run (:mod:`lqlib.run`): ``run_info.json`` in the preset's ``publish`` folder — the command,
where it ran (CPU model and flags, cores, torch, Python, GPU), the wall seconds and parameters of every step done,
what each step's pair set is for (validation / test), and the steps still pending."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from . import paths
from .checkpoint import checkpoint_path, teacher_identity
from .data.sources import eval_role
from .io import write_json
from .precision import cpu_flags


def source_revision(root: Optional[Path] = None) -> dict:
    """Which lqlib a run used: its version and, when the source is a git checkout, the commit and whether tracked
    files of the package or the notebooks differ from it (``modified``)."""
    from . import __version__

    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    out = {"version": __version__}
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                              text=True, timeout=20)
        top, sha = (head.stdout.split() + ["", ""])[:2] if head.returncode == 0 else ("", "")
        if top and Path(top).resolve() == root.resolve():
            diff = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                   "lqlib", "notebooks"], capture_output=True, text=True, timeout=20)
            out.update(commit=sha, modified=bool(diff.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def environment() -> dict:
    """Where a run ran: CPU model and flags, cores, torch, Python, GPU, and which lqlib (:func:`source_revision`)."""
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "fma"))),
            "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "omp": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ},
            "lqlib": source_revision()}


RUN_INFO = "run_info.json"


def publish_run_info(preset: dict, out_dir: Path, status: dict, steps: list, dst: Optional[Path] = None) -> Path:
    """``<dst>/run_info.json`` (``dst``: the preset's ``publish`` folder by default): the command, the
    environment, the wall seconds and parameters of every step done so far, and the steps of the preset
    still pending (a run stopped part-way says so).

    A step of the preset that an earlier run published to the same folder but this run folder has no record
    of (the folder was lost between runs, or a later step such as a pooling step ran from a fresh folder)
    keeps its earlier record, marked with the earlier run's ``recorded`` time and ``environment``; a step this
    run did replaces it."""
    dst = paths.resolve(dst if dst is not None else preset["publish"])
    done = {k: v for k, v in status.items() if v.get("status") == "done"}
    record = {k: {"seconds": v.get("seconds"), "parameters": v.get("parameters"), **_reads(v.get("parameters") or {}),
                  **{f: v[f] for f in ("note", "params_hash", "depends", "products", "recorded", "environment")
                     if v.get(f)}} for k, v in done.items()}
    keys = [s.key for s in steps]
    for k, v in _earlier_steps(dst / RUN_INFO, preset["name"]).items():
        if k in keys and k not in record:
            record[k] = v
    record = {**{k: record[k] for k in keys if k in record}, **record}    # the preset's step order
    pending = [k for k in keys if k not in record]
    info = {"command": f"python -m lqlib.run --preset {preset['name']}", "argv": sys.argv, "preset": preset["name"],
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "complete": not pending, "pending": pending,
            "environment": environment(), "steps": record,
            "total_seconds": round(sum(v.get("seconds") or 0 for v in record.values()), 1)}
    if preset.get("hypotheses"):
        info["hypotheses"] = preset["hypotheses"]
    return write_json(dst / RUN_INFO, info)


def _earlier_steps(path: Path, preset_name: str) -> dict:
    """The step records of an earlier ``run_info.json`` of the same preset at ``path`` ({} if none), each
    marked with when and where that run recorded it (a record carried over before keeps its marks)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("preset") != preset_name:
        return {}
    marks = {"recorded": earlier.get("updated"), "environment": earlier.get("environment")}
    return {k: {**v, **{m: x for m, x in marks.items() if m not in v}}
            for k, v in (earlier.get("steps") or {}).items() if isinstance(v, dict)}


def publish_snapshot(publish_dir: Optional[Path]) -> dict:
    """``{relative path: (size, mtime)}`` of every file under ``publish_dir`` ({} without one)."""
    if publish_dir is None or not Path(publish_dir).is_dir():
        return {}
    root = Path(publish_dir)
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def publish_changes(publish_dir: Optional[Path], before: dict) -> list[str]:
    """The files under ``publish_dir`` a step wrote (new or changed since ``before``), run_info.json aside."""
    after = publish_snapshot(publish_dir)
    return sorted(k for k, v in after.items() if before.get(k) != v and k != RUN_INFO)


# a step whose committed products stand for it on another day: a student evaluated and published as soon as it
# was trained (notebook 02's TEST_EVAL, lqlib.model_eval) needs nothing of its run folder afterwards; a teacher
# is restored by its own step (lqlib.weights), and the test and attention steps run after the block's students
STANDS_FOR_ITSELF = "TEST_EVAL"


def published_step(publish_dir: Path, preset_name: str, key: str, params: dict, params_hash: str,
                   depends: Optional[dict]) -> Optional[dict]:
    """The record in ``<publish_dir>/run_info.json`` of step ``key`` when it counts as done without its run
    folder: a step with ``TEST_EVAL`` whose record has the same parameters (``params_hash``) and the same
    teacher (``depends``: :func:`teacher_dependency`, by content) and whose published files all exist; else None."""
    if not params.get(STANDS_FOR_ITSELF):
        return None
    rec = _earlier_steps(Path(publish_dir) / RUN_INFO, preset_name).get(key)
    if not rec or rec.get("params_hash") != params_hash or rec.get("depends") != depends:
        return None
    products = rec.get("products") or []
    if not products or not all((Path(publish_dir) / p).is_file() for p in products):
        return None
    return rec


def _reads(params: dict) -> dict:
    """What a step's pair set is for (``reads``: validation / test / other, :func:`lqlib.data.sources.eval_role`),
    so run_info says which set every decision and every verdict read."""
    return {"reads": eval_role(str(params["PAIRS"]))} if params.get("PAIRS") else {}


def teacher_dependency(params: dict, run_name: str) -> Optional[dict]:
    """What a student step depends on besides its parameters: its teacher's identity by content
    (:func:`lqlib.checkpoint.teacher_identity`; the study's own teacher lives in runs/<RUN_NAME>/teacher,
    see :class:`lqlib.study.Study`), so a retrained teacher re-runs its students."""
    if "TEACHER" not in params:
        return None
    return {"teacher": teacher_identity(params["TEACHER"] or paths.runs_dir() / run_name / "teacher")}


def legacy_done(earlier: dict, target: Path, params: dict, run_name: str) -> bool:
    """A record from before dependencies were recorded: still done when its executed copy is newer than
    the teacher's checkpoint (the student was trained after the teacher was last written)."""
    ck = checkpoint_path(paths.resolve(params["TEACHER"]) if params["TEACHER"] else
                         paths.runs_dir() / run_name / "teacher")
    return not ck.is_file() or ck.stat().st_mtime <= target.stat().st_mtime


__all__ = ["RUN_INFO", "environment", "publish_run_info", "publish_snapshot", "publish_changes", "published_step",
           "teacher_dependency", "legacy_done"]
