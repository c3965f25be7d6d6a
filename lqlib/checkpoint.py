"""Training checkpoints: atomic save, safe load (``weights_only=True``) and rebuilding trained models.

A checkpoint is a plain dict of tensors, numbers, strings and state dicts:
``model``, ``head``, ``kd`` (learnable KD connectors), ``optimizer``, ``scheduler``, ``epoch`` (epochs
fully done), ``batch_in_epoch`` (batches done in the current epoch, for mid-epoch interrupts),
``step``, ``rng`` (torch CPU, device generator, CUDA), ``epoch_sums`` (partial-epoch metric sums),
``config`` (the TrainConfig as a dict) and ``num_classes``.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import torch

from .errors import LqlibError
from .io import torch_save

CHECKPOINT = "checkpoint.pt"


class CheckpointError(LqlibError, RuntimeError):
    pass


def checkpoint_path(run_or_file: str | Path) -> Path:
    p = Path(run_or_file)
    return p / CHECKPOINT if p.is_dir() else p


def save_checkpoint(state: dict, run_dir: str | Path) -> Path:
    return torch_save(state, Path(run_dir) / CHECKPOINT)


def load_checkpoint(run_or_file: str | Path, map_location="cpu") -> dict:
    path = checkpoint_path(run_or_file)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (train the model first, or check the run directory)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e


def load_trained(run_or_file: str | Path, map_location="cpu", eval_mode: bool = True):
    """Rebuild ``(backbone, head, config_dict)`` from a run directory or checkpoint file."""
    from .heads import build_head
    from .models import build_backbone

    ck = load_checkpoint(run_or_file, map_location)
    cfg = ck["config"]
    backbone = build_backbone(ck["backbone_name"], **ck.get("backbone_kw", {}))
    backbone.load_state_dict(ck["model"])
    head = build_head(ck["head_name"], backbone.embedding_size, ck["num_classes"], **cfg.get("head_kw", {}))
    head.load_state_dict(ck["head"])
    if eval_mode:
        backbone.eval()
        head.eval()
    return backbone, head, cfg


def load_backbone(run_or_file: str | Path, map_location="cpu"):
    """The trained backbone of a run, in eval mode."""
    return load_trained(run_or_file, map_location)[0]


TRAINING_DATA = "training_data.json"
TRAIN_IMAGES = "train_images.npy"   # uint64 [N]: 8-byte hashes of the decoded training faces
TRAIN_THUMBS = "train_thumbs.npy"   # uint8 [N, 64]: their 8×8 grey thumbnails (re-encoded copies)


class TrainingData(NamedTuple):
    split: str                      # the training split's name; "unknown" when nothing records it
    hashes: Optional["np.ndarray"]  # None for runs written before fingerprints were recorded
    thumbs: Optional["np.ndarray"]


def write_training_data(run_dir: str | Path, split: str, fingerprint) -> None:
    """Record what a run trains on, before its first step (an unfinished run is known too): the split name
    and the content fingerprint ``(hashes, thumbnails)`` of its decoded training faces
    (:func:`lqlib.data.memory.dataset_fingerprint`)."""
    import numpy as np

    from .io import atomic_write, write_json

    run_dir = Path(run_dir)
    if fingerprint is not None:
        for name, arr in zip((TRAIN_IMAGES, TRAIN_THUMBS), fingerprint):
            with atomic_write(run_dir / name, "wb") as f:
                np.save(f, arr)
    write_json(run_dir / TRAINING_DATA, {"split": split, "faces": None if fingerprint is None else len(fingerprint[1]),
                                         "fingerprint": [TRAIN_IMAGES, TRAIN_THUMBS] if fingerprint is not None
                                         else None})


def read_training_data(run_dir: str | Path) -> TrainingData:
    """What a run trained on: the split from ``summary.json`` or ``training_data.json`` ("unknown" when
    neither says) and its content fingerprint (None for runs written before it was recorded). An
    unreadable record is an error naming the file."""
    import json

    import numpy as np

    run_dir = Path(run_dir)
    split = "unknown"
    for name in ("summary.json", TRAINING_DATA):
        p = run_dir / name
        if p.is_file():
            try:
                split = json.loads(p.read_text()).get("split") or split
            except (ValueError, AttributeError) as e:
                raise CheckpointError(f"cannot read {p}: {e}") from None
            if split != "unknown":
                break
    arrays = []
    for name, dtype, ndim in ((TRAIN_IMAGES, np.uint64, 1), (TRAIN_THUMBS, np.uint8, 2)):
        p = run_dir / name
        if not p.is_file():
            arrays.append(None)
            continue
        try:
            a = np.load(p)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read the training fingerprint {p}: {e}") from None
        if a.dtype != dtype or a.ndim != ndim:
            raise CheckpointError(f"{p}: not a training fingerprint ({np.dtype(dtype).name}, {ndim}-D), "
                                  f"got {a.dtype} {a.shape}")
        arrays.append(a)
    return TrainingData(split, *arrays)


def file_digest(path: str | Path, chars: int = 16) -> str:
    """The first ``chars`` hex digits of the SHA-256 of a file's bytes (:func:`lqlib.store.file_digest`:
    computed once per path, size and mtime, so a large teacher checkpoint is not read again per student)."""
    from .store import file_digest as sha256

    return sha256(path)[:chars]


def teacher_identity(spec) -> Optional[str]:
    """What a student's training depends on of its teacher, by content: ``weights:<digest>`` of a published
    teacher's fp16 weights (:mod:`lqlib.weights`: the run that published them and a run folder rebuilt from
    them on another day name the same teacher), else ``ckpt:<digest>`` of a teacher run's
    checkpoint (a retrained teacher is another teacher), ``file:<digest>`` of an external teacher's file
    (``.onnx``, spec ``.json`` plus the weights it names), ``name:<name>`` of a registered one; None when
    ``spec`` is an object or names nothing that exists yet."""
    import json
    import os

    from . import paths
    from .teachers import is_external_teacher

    if not isinstance(spec, (str, os.PathLike)) or not str(spec):
        return None
    p = paths.resolve(spec)
    if is_external_teacher(spec):
        if not p.is_file():
            return f"name:{spec}"
        parts = [file_digest(p)]
        if p.suffix.lower() == ".json":
            try:
                weights = json.loads(p.read_text()).get("weights")
            except (ValueError, AttributeError):
                weights = None
            w = (p.parent / weights) if isinstance(weights, str) and not Path(weights).is_absolute() else \
                (Path(weights) if isinstance(weights, str) else None)
            if w is not None and w.is_file():
                parts.append(file_digest(w))
        return "file:" + "+".join(parts)
    ck = checkpoint_path(p)
    if not ck.is_file():
        return None
    digest = file_digest(ck)
    if digest not in _WEIGHTS_IDS:   # a published teacher is its published weights, wherever its checkpoint came from
        try:
            _WEIGHTS_IDS[digest] = published_weights_digest(load_checkpoint(ck))
        except CheckpointError:      # not a checkpoint lqlib can read: named by its bytes (loading it will say more)
            _WEIGHTS_IDS[digest] = None
    published = _WEIGHTS_IDS[digest]
    return f"weights:{published}" if published else f"ckpt:{digest}"


_WEIGHTS_IDS: dict = {}   # checkpoint digest → the published weights' digest (None: never published)


def same_teacher(recorded: Optional[str], spec) -> bool:
    """Whether ``recorded`` (a student's record of its teacher) names the teacher ``spec`` is now: its
    :func:`teacher_identity`, or — for a record written before published teachers were named by their weights —
    ``ckpt:<digest>`` of the very checkpoint file that is there now."""
    now = teacher_identity(spec)
    if recorded == now:
        return True
    if not (isinstance(recorded, str) and recorded.startswith("ckpt:") and now and now.startswith("weights:")):
        return False
    from . import paths

    ck = checkpoint_path(paths.resolve(spec))
    return ck.is_file() and recorded == f"ckpt:{file_digest(ck)}"


PUBLISHED = "fp16-rounded (published)"          # a checkpoint whose weights were published (lqlib.weights)
PUBLISHED_PARTS = ("model", "head", "kd")       # the state dicts a published teacher keeps


def published_tensors(ck: dict) -> dict:
    """The tensors a published teacher file holds for checkpoint ``ck``: ``<part>.<name>``, floating ones as fp16."""
    return {f"{part}.{k}": (v.to(torch.float16) if torch.is_floating_point(v) else v).contiguous()
            for part in PUBLISHED_PARTS for k, v in ck[part].items()}


def weights_digest(tensors: dict) -> str:
    """SHA-256 of published tensors (name, dtype, shape and bytes, in name order): the same for the run that
    published them, for every run folder rebuilt from them, and for a checkpoint rounded before publishing."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def published_weights_digest(ck: dict) -> Optional[str]:
    """The digest of the weights a checkpoint's teacher was published with, or None (never published)."""
    if ck.get("weights_digest"):
        return str(ck["weights_digest"])
    if ck.get("weights") == PUBLISHED:          # published before checkpoints recorded the digest
        return weights_digest(published_tensors(ck))
    return None


def is_finished(run_dir: str | Path, epochs: Optional[int] = None) -> bool:
    """True when ``run_dir`` holds a summary and a checkpoint with all epochs done, or stopped by its
    convergence rule (``early_stop``, :mod:`lqlib.convergence`) at the end of an epoch."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file() or not (run_dir / "checkpoint.pt").is_file():
        return False
    ck = load_checkpoint(run_dir)
    want = epochs if epochs is not None else ck["config"]["epochs"]
    converged = bool((ck.get("converged") or {}).get("stop")) and epochs is None
    return (ck["epoch"] >= want or converged) and ck["batch_in_epoch"] == 0
