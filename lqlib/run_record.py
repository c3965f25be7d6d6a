"""The record of a batch run (:mod:`lqlib.run`): ``run_info.json`` in the preset's ``publish`` folder — the command,
where it ran (CPU model and flags, cores, torch, Python, GPU), the wall seconds and parameters of every step done,
what each step's pair set is for (validation / test), and the steps still pending."""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from . import paths
from .data.sources import eval_role
from .io import write_json
from .precision import cpu_flags


def environment() -> dict:
    """Where a run ran: CPU model and flags, cores, torch, Python, GPU."""
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "fma"))),
            "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "omp": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ}}


RUN_INFO = "run_info.json"


def publish_run_info(preset: dict, out_dir: Path, status: dict, steps: list, dst: Optional[Path] = None) -> Path:
    """``<dst>/run_info.json`` (``dst``: the preset's ``publish`` folder by default): the command, the
    environment, the wall seconds and parameters of every step done so far, and the steps of the preset
    still pending (a run stopped part-way says so)."""
    dst = paths.resolve(dst if dst is not None else preset["publish"])
    done = {k: v for k, v in status.items() if v.get("status") == "done"}
    pending = [s.key for s in steps if s.key not in done]
    info = {"command": f"python -m lqlib.run --preset {preset['name']}", "argv": sys.argv, "preset": preset["name"],
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "complete": not pending, "pending": pending,
            "environment": environment(),
            "steps": {k: {"seconds": v.get("seconds"), "parameters": v.get("parameters"),
                          **_reads(v.get("parameters") or {}),
                          **({"note": v["note"]} if v.get("note") else {})} for k, v in done.items()},
            "total_seconds": round(sum(v.get("seconds", 0) for v in done.values()), 1)}
    if preset.get("hypotheses"):
        info["hypotheses"] = preset["hypotheses"]
    return write_json(dst / RUN_INFO, info)


def _reads(params: dict) -> dict:
    """What a step's pair set is for (``reads``: validation / test / other, :func:`lqlib.data.sources.eval_role`),
    so run_info says which set every decision and every verdict read."""
    return {"reads": eval_role(str(params["PAIRS"]))} if params.get("PAIRS") else {}


__all__ = ["RUN_INFO", "environment", "publish_run_info"]
