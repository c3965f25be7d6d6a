"""A finished teacher as an fp16 ``safetensors`` file: the only weights a registered study publishes.

A study that spans several working days keeps its teachers in git, small and readable by anyone
(``safetensors``: tensors plus a JSON header, no pickle):

* :func:`publish_teacher` — after the teacher has finished: its checkpoint's floating-point weights are
  rounded to fp16 **in the checkpoint itself** (so every student of this run distils from exactly the
  weights that are published), then written to ``<publish_dir>/teacher.safetensors`` with what a resume
  needs (config, epochs, the stopping rule's history, optimiser hyper-parameters, RNG state) in its
  header. Refused when the file would exceed :data:`MAX_BYTES`.
* :func:`restore_teacher` — on another day, in a run folder without a checkpoint: the checkpoint is
  rebuilt from the published file (momentum buffers are not kept: a finished teacher trains no further),
  so the usual ``train_teacher(cfg)`` resumes it as a finished run (same settings, else it is moved aside
  and trained anew), rewrites its summary and training-data record, and its students load it as ever.
* :func:`read_teacher` — ``(backbone, head, config)`` straight from a published file, for a reader.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .checkpoint import (PUBLISHED, PUBLISHED_PARTS, CheckpointError, is_finished, load_checkpoint, published_tensors,
                         save_checkpoint, weights_digest)

FILE = "teacher.safetensors"
MAX_BYTES = 8 * 2**20          # the project's rule for committed weights
_TENSOR_PARTS = PUBLISHED_PARTS


def _rounded(state: dict) -> dict:
    """``state`` with every floating tensor rounded to fp16 (kept in its own dtype)."""
    return {k: v.to(torch.float16).to(v.dtype) if torch.is_floating_point(v) else v for k, v in state.items()}


def _header(ck: dict) -> dict:
    """Everything of a checkpoint but its tensors, as JSON: what a resume reads besides the weights."""
    out = {k: v for k, v in ck.items() if k not in (*_TENSOR_PARTS, "rng", "optimizer", "epoch_sums")}
    out["optimizer_param_groups"] = ck["optimizer"]["param_groups"]
    return out


def publish_teacher(run_dir: str | os.PathLike, publish_dir: str | os.PathLike) -> Path:
    """Round the finished teacher of ``run_dir`` to fp16 and write ``<publish_dir>/teacher.safetensors``."""
    from safetensors.torch import save

    from . import paths
    from .io import write_bytes

    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise CheckpointError(f"{run_dir}: the teacher has not finished training; publish it when it has")
    ck = load_checkpoint(run_dir)
    for part in _TENSOR_PARTS:
        ck[part] = _rounded(ck[part])
    ck["weights"] = PUBLISHED
    tensors = published_tensors(ck)
    ck["weights_digest"] = weights_digest(tensors)   # the teacher's identity here and in a restored run folder
    tensors |= {f"rng.{k}": v for k, v in ck["rng"].items() if isinstance(v, torch.Tensor)}
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    out = paths.resolve(publish_dir) / FILE
    if size > MAX_BYTES:
        raise ValueError(f"{out}: the teacher's fp16 weights take {size / 2**20:.1f} MiB, over the "
                         f"{MAX_BYTES / 2**20:.0f} MiB allowed for committed weights; nothing written")
    header = json.dumps(_header(ck), sort_keys=True)
    save_checkpoint(ck, run_dir)            # the students distil from exactly what is published
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(out, save(tensors, metadata={"format": "lqlib-teacher-1", "checkpoint": header}))


def _load(path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if meta.get("format") != "lqlib-teacher-1":
        raise CheckpointError(f"{path}: not a teacher published by lqlib (format {meta.get('format')!r})")
    return json.loads(meta["checkpoint"]), tensors


def _checkpoint(header: dict, tensors: dict) -> dict:
    ck = {k: v for k, v in header.items() if k != "optimizer_param_groups"}
    for part in _TENSOR_PARTS:
        ck[part] = {k[len(part) + 1:]: (v.float() if torch.is_floating_point(v) else v)
                    for k, v in tensors.items() if k.startswith(part + ".")}
    ck["rng"] = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    ck["optimizer"] = {"state": {}, "param_groups": header["optimizer_param_groups"]}
    ck["epoch_sums"] = {}
    return ck


def restore_teacher(run_dir: str | os.PathLike, publish_dir: str | os.PathLike) -> bool:
    """Rebuild the checkpoint of ``run_dir`` from ``<publish_dir>/teacher.safetensors`` when the run folder
    has none and the file exists (True), else leave everything as it is (False). The published training
    record (``teacher_metrics.csv``, ``teacher_summary.json``) becomes the run's ``metrics.csv`` and
    ``summary.json``."""
    from . import paths
    from .io import write_bytes

    run_dir, src = Path(run_dir), paths.resolve(publish_dir)
    if (run_dir / "checkpoint.pt").is_file() or not (src / FILE).is_file():
        return False
    header, tensors = _load(src / FILE)
    ck = _checkpoint(header, tensors)
    ck["weights_digest"] = weights_digest({k: v for k, v in tensors.items() if k.split(".", 1)[0] in _TENSOR_PARTS})
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "summary.json"):
        if (src / f"teacher_{name}").is_file():
            write_bytes(run_dir / name, (src / f"teacher_{name}").read_bytes())
    save_checkpoint(ck, run_dir)
    return True


def read_teacher(path: str | os.PathLike):
    """``(backbone, head, config dict)`` of a published teacher, in eval mode (fp32)."""
    from .heads import build_head
    from .models import build_backbone

    header, tensors = _load(Path(path))
    ck = _checkpoint(header, tensors)
    backbone = build_backbone(ck["backbone_name"], **ck.get("backbone_kw", {}))
    backbone.load_state_dict(ck["model"])
    head = build_head(ck["head_name"], backbone.embedding_size, ck["num_classes"], **ck["config"].get("head_kw", {}))
    head.load_state_dict(ck["head"])
    return backbone.eval(), head.eval(), ck["config"]


__all__ = ["FILE", "MAX_BYTES", "publish_teacher", "restore_teacher", "read_teacher", "weights_digest"]
