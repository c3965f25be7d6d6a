"""One training loop for the HR teacher and every low-quality student.

``train_teacher(cfg)`` trains a backbone + margin head on high-resolution faces (the paper's
BasicNet-HR). ``train_student(cfg, teacher=run_dir)`` trains a student of the configured backbone on
degraded copies of the same batch while the frozen teacher sees the originals; the method name
(``cfg.method``, see :mod:`lqlib.methods`) picks the KD terms: ``none`` (BasicNet-LR), ``logit``,
``attention``, ``logit+attention``, and the seed methods.

Per step: the uint8 HR batch moves to the device; flips (and optional face-content replacement)
and the degradation happen there, seeded by a per-epoch device generator; the teacher runs under
``no_grad`` in eval mode; the student, its head and the KD connectors form one module (so DDP and
``torch.compile`` see one graph) that returns ``(total, {term: value})``.

Engine: bf16 autocast, channels_last and (optionally) ``torch.compile`` on CUDA; no host sync in a
step except every ``log_every`` steps; atomic checkpoints every epoch and on SIGTERM/SIGINT
(resume continues exactly, mid-epoch too: the sampler order and the degradation RNG are functions
of (seed, epoch), restored to the saved position); ``metrics.csv`` per epoch and ``summary.json`` at
the end in the run directory; a NaN/inf loss stops the run naming the term and keeps the last good
checkpoint; ``torchrun --nproc_per_node=N python -m lqlib.train ...`` trains with DDP (rank 0 writes).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io as _io
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from . import paths
from .checkpoint import checkpoint_path, load_checkpoint, load_trained, save_checkpoint
from .degrade import degrade, get_preset
from .heads import build_head
from .images import normalize
from .io import write_json, write_text
from .losses import LossComposer, ModelOutputs, Progress, build_kd_term
from .methods import build_composer, get_method
from .models import build_backbone


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; the run stopped and kept its last good checkpoint."""


class DegenerateTrainingError(RuntimeError):
    """The training problem cannot teach anything (one class; a cross-entropy of exactly 0)."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT (or ``request_stop``) stopped training after a checkpoint was written."""


# --------------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Training configuration. Defaults are the KD-for-LQ-FR paper's recipe."""

    name: str = "run"
    out_dir: Optional[str] = None            # default runs/<name>
    role: str = "student"                    # teacher | student
    method: str = "none"                     # KD mode (lqlib.methods), students only
    # data
    data: str = "lfw-half"                   # protocol name | train.rec | packs dir | identity folders | synthetic
    data_dir: Optional[str] = None
    max_images: Optional[int] = None         # deterministic subset for smoke runs
    synthetic: dict = field(default_factory=lambda: {"num_classes": 20, "images_per_class": 10})
    num_workers: int = 2
    # model
    backbone: str = "ir_cbam_18"
    backbone_kw: dict = field(default_factory=dict)
    head: str = "arcface"
    head_kw: dict = field(default_factory=lambda: {"s": 64.0, "m": 0.5})
    # optimisation
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "step"                   # step | cosine | onecycle
    lr_step_epochs: float = 5.0
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    grad_clip: Optional[float] = None
    hflip: bool = True
    face_content_replacement: Optional[float] = None  # probability per HR image; None: the method's (labelfree: 0.5)
    # student input
    scales: Any = field(default_factory=lambda: [2, 4, 8])  # a float or a per-sample list
    degrade_preset: str = "paper"
    # distillation
    teacher: Optional[str] = None            # teacher run dir / checkpoint, or an external teacher (lqlib.teachers name, .onnx, spec .json)
    kd_weights: dict = field(default_factory=dict)
    kd_params: dict = field(default_factory=dict)
    init_head_from_teacher: bool = False     # ablation switch: copy the teacher's margin head into the student
    # validation (curves only; never used to select anything)
    val_pairs: Optional[str] = None
    val_scales: Any = field(default_factory=lambda: [1, 8])
    # engine
    device: str = "auto"
    amp: str = "auto"                        # auto (bf16 on CUDA) | bf16 | off
    channels_last: Any = "auto"
    compile: Any = "auto"                    # auto (CUDA) | True | False
    seed: int = 0
    resume: bool = True
    log_every: int = 20
    max_steps_per_epoch: Optional[int] = None
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        if self.role not in ("teacher", "student"):
            raise ValueError(f"role must be 'teacher' or 'student', got {self.role!r}")
        for k in ("epochs", "batch_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError("amp must be 'auto', 'bf16' or 'off'")
        get_preset(self.degrade_preset)
        get_method(self.method)
        self._check_mappings()
        return self

    def _check_mappings(self):
        """Dict-valued fields: a dict whose keys the receiving code accepts (one-line errors)."""
        import inspect

        from .data.synthetic import SyntheticFaces
        from .heads import HEADS

        def accepted(fn) -> list[str]:
            kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            return [n for n, p in inspect.signature(fn).parameters.items() if n != "self" and p.kind in kinds]

        head_cls = HEADS.get(get_method(self.method).head or self.head)
        if head_cls is None:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {self.head!r}")
        checks = {"synthetic": accepted(SyntheticFaces.__init__),
                  "head_kw": [k for k in accepted(head_cls.__init__) if k not in ("embedding_size", "num_classes")],
                  "kd_weights": None, "kd_params": None, "backbone_kw": None}
        for name, keys in checks.items():
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping, got {value!r}")
            bad = [k for k in value if keys is not None and k not in keys]
            if bad:
                hint = " (YAML needs a space after ':', e.g. {num_classes: 40})" if any(":" in str(k) for k in bad) else ""
                raise ValueError(f"{name}: unknown key(s) {bad}; accepted: {keys}{hint}")

    @property
    def run_dir(self) -> Path:
        return paths.resolve(self.out_dir) if self.out_dir else paths.runs_dir() / self.name


def load_config(path: str | os.PathLike, **overrides) -> TrainConfig:
    import yaml

    with open(paths.resolve(path)) as f:
        d = yaml.safe_load(f) or {}
    d.update(overrides)
    return TrainConfig.from_dict(d)


# --------------------------------------------------------------------------------------------- data
def build_dataset(cfg: TrainConfig) -> tuple[Dataset, int]:
    """The training set named by ``cfg.data`` and its number of identities."""
    from .data.synthetic import SyntheticFaces

    if cfg.data == "synthetic":
        ds = SyntheticFaces(seed=cfg.seed, **cfg.synthetic)
        print("NOTICE: training on a SYNTHETIC identity set (no face data); numbers mean nothing about faces.",
              file=sys.stderr)
        n_cls = ds.num_classes
    else:
        from . import data as D

        p = paths.resolve(cfg.data)
        if p.suffix == ".rec" or (p.is_dir() and (p / "train.rec").is_file()):
            rec = p if p.suffix == ".rec" else p / "train.rec"
            ds = D.RecordDataset(rec)
        elif p.is_dir():
            ds = D.FolderDataset(p)
        else:
            proto = D.get_protocol(cfg.data, cfg.data_dir)
            ds = D.FolderDataset.from_samples([(s.path, s.label) for s in proto.train])
        n_cls = int(ds.num_classes)
    if cfg.max_images is not None and cfg.max_images < len(ds):
        ds, n_cls = _subset(ds, cfg.max_images)
    return ds, n_cls


def _dataset_labels(ds) -> torch.Tensor:
    labels = getattr(ds, "labels", None)
    if labels is None:
        labels = [ds[i][1] for i in range(len(ds))]
    return torch.as_tensor(labels, dtype=torch.long)


class _Relabel(Dataset):
    def __init__(self, ds, idx, mapping):
        self.ds, self.idx, self.mapping = ds, idx, mapping
        self.labels = torch.tensor([mapping[int(l)] for l in _dataset_labels(ds)[idx]])
        self.num_classes = len(mapping)

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        img, lab = self.ds[int(self.idx[i])]
        return img, self.mapping[int(lab)]


SUBSET_PER_CLASS = 4


def _subset(ds, n: int, per_class: int = SUBSET_PER_CLASS):
    """A deterministic, class-balanced subset of about ``n`` images: ``n // per_class`` identities
    with at least ``per_class`` images, spread evenly over the label range (not the largest first:
    one LFW identity alone can hold hundreds of images), ``per_class`` images each (the first ones).
    """
    labels = _dataset_labels(ds)
    counts = torch.bincount(labels)
    eligible = [c for c in range(len(counts)) if counts[c] >= per_class]
    want = max(2, n // per_class)
    if len(eligible) < 2:
        raise ValueError(f"max_images={n}: the training set has {len(eligible)} identities with >= {per_class} "
                         "images; a subset needs at least 2 classes")
    take = min(want, len(eligible))
    keep = [eligible[i * len(eligible) // take] for i in range(take)]
    keep_set, seen = set(keep), {}
    idx = []
    for i, l in enumerate(labels.tolist()):
        if l in keep_set and seen.get(l, 0) < per_class:
            seen[l] = seen.get(l, 0) + 1
            idx.append(i)
    mapping = {c: k for k, c in enumerate(sorted(keep_set))}
    return _Relabel(ds, torch.tensor(idx), mapping), len(mapping)


class EpochSampler(Sampler):
    """Shuffled order that is a pure function of (seed, epoch), sharded over ranks, resumable.

    ``start`` skips the first ``start`` samples of this rank's order (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        per = self.n // self.world
        return perm[self.rank * per:(self.rank + 1) * per]

    def __iter__(self):
        return iter(self._order()[self.start:])

    def __len__(self):
        return self.n // self.world - self.start


def step_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed of the generator of flips, face-content replacement and degradation for one epoch on one
    DDP rank: each rank draws its own stream (rank 0 is the single-process run)."""
    return seed * 7919 + epoch + 1 + 1_000_003 * rank


# --------------------------------------------------------------------------------------------- models
def _with_attention(backbone: str, attention: Optional[str]) -> str:
    if not attention:
        return backbone
    m = re.match(r"^(irx?)_([a-z]+)_(\w+)$", backbone)
    if m:
        return f"{m.group(1)}_{attention}_{m.group(3)}"
    if backbone.startswith("mobilefacenet"):
        return "mobilefacenet" if attention == "none" else f"mobilefacenet_{attention}"
    raise ValueError(f"cannot change the attention block of backbone {backbone!r}")


class StudentStep(nn.Module):
    """Student backbone + margin head + KD terms: one module, so DDP/compile see one graph."""

    def __init__(self, backbone: nn.Module, head: nn.Module, composer: LossComposer):
        super().__init__()
        self.backbone, self.head, self.composer = backbone, head, composer
        needs = composer.needs
        self.want_att, self.want_feat = "attention" in needs, "features" in needs

    def forward(self, x, labels, teacher_out: Optional[ModelOutputs], progress: Progress):
        out = run_model(self.backbone, self.head, x, labels, self.want_att, self.want_feat)
        return self.composer(out, teacher_out, labels, progress)


def run_model(backbone, head, x, labels, want_att: bool, want_feat: bool, want_logits: bool = True) -> ModelOutputs:
    res = backbone(x, return_attention=want_att, return_features=want_feat)
    if not (want_att or want_feat):
        res = (res,)
    emb = res[0]
    att = res[1] if want_att else []
    feat = res[-1] if want_feat else []
    logits = plain = None
    if want_logits and head is not None and labels is not None:
        logits, plain = head(emb, labels, return_plain=True)
    return ModelOutputs(emb, logits, plain, att, feat)


# --------------------------------------------------------------------------------------------- schedule
def _step_schedule(cfg, e):
    return cfg.lr_gamma ** math.floor(e / cfg.lr_step_epochs)


def _cosine_schedule(cfg, e):
    return 0.5 * (1 + math.cos(math.pi * min(e / cfg.epochs, 1.0)))


def _onecycle_schedule(cfg, e):
    w = cfg.warmup_epochs or 0.1 * cfg.epochs
    if e < w:
        return 0.04 + 0.96 * e / w
    return 0.5 * (1 + math.cos(math.pi * min((e - w) / max(cfg.epochs - w, 1e-8), 1.0))) + 1e-4


SCHEDULES: dict[str, Callable] = {"step": _step_schedule, "cosine": _cosine_schedule, "onecycle": _onecycle_schedule}


def lr_factor(cfg: TrainConfig, epoch_float: float) -> float:
    f = SCHEDULES[cfg.schedule](cfg, epoch_float)
    if cfg.schedule != "onecycle" and cfg.warmup_epochs > 0 and epoch_float < cfg.warmup_epochs:
        f *= (epoch_float + 1e-3) / cfg.warmup_epochs
    return f


# --------------------------------------------------------------------------------------------- engine
def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _auto(flag, cuda: bool) -> bool:
    return cuda if flag == "auto" else bool(flag)


class Trainer:
    """Runs one training job; see the module docstring. Use :func:`train` in normal code."""

    def __init__(self, cfg: TrainConfig, teacher: Any = None, callbacks: Optional[list[Callable]] = None):
        self.cfg = cfg.validate()
        self.callbacks = list(callbacks or [])
        self._stop = False
        self.rank, self.world, local = _dist_info()
        self.distributed = "WORLD_SIZE" in os.environ and "RANK" in os.environ  # launched by torchrun
        self.is_main = self.rank == 0
        self.device = _resolve_device(cfg, local)
        if self.distributed and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        cuda = self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if (cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)) else None
        self.channels_last = _auto(cfg.channels_last, True)  # faster on CUDA and (oneDNN) on CPU
        self.run_dir = cfg.run_dir
        self.method = get_method(cfg.method) if cfg.role == "student" else get_method("none")
        self._teacher_arg = teacher

    # ---- set-up
    def _build(self):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.dataset, self.num_classes = build_dataset(cfg)
        if self.num_classes < 2:
            raise DegenerateTrainingError(f"the training set {cfg.data!r} (max_images={cfg.max_images}) has "
                                          f"{self.num_classes} class(es): a classifier needs at least 2")
        bb_name = _with_attention(cfg.backbone, self.method.backbone_attention)
        bb_kw = {**cfg.backbone_kw, **self.method.backbone_kw}
        self.backbone_name, self.backbone_kw = bb_name, bb_kw
        self.head_name = self.method.head or cfg.head
        backbone = build_backbone(bb_name, **bb_kw)
        head = build_head(self.head_name, backbone.embedding_size, self.num_classes, **cfg.head_kw)
        self.teacher_backbone = self.teacher_head = None
        if cfg.role == "student" and self._teacher_spec() is not None:
            self._load_teacher()
        if cfg.init_head_from_teacher:
            if self.teacher_head is None:
                raise ValueError("init_head_from_teacher=True needs a teacher run with a margin head "
                                 f"(teacher={cfg.teacher!r})")
            if self.teacher_head.weight.shape != head.weight.shape:
                raise ValueError(f"cannot initialise the student head from the teacher: teacher head "
                                 f"{tuple(self.teacher_head.weight.shape)} vs student {tuple(head.weight.shape)} "
                                 "(train both on the same identities, or set init_head_from_teacher=False)")
            head.weight.data.copy_(self.teacher_head.weight.data)
        composer = build_composer(self.method, backbone, self.teacher_backbone, cfg.kd_weights, cfg.kd_params)
        if composer.needs_teacher and self.teacher_backbone is None:
            raise ValueError(f"method {cfg.method!r} needs a teacher: set teacher= (a teacher run directory)")
        self.face_content_replacement = (self.method.face_content_replacement if cfg.face_content_replacement is None
                                          else float(cfg.face_content_replacement))
        self.step_module = StudentStep(backbone, head, composer).to(self.device)
        if self.channels_last:
            self.step_module = self.step_module.to(memory_format=torch.channels_last)
            if self.teacher_backbone is not None:
                self.teacher_backbone.to(memory_format=torch.channels_last)
        params = [p for p in self.step_module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                         weight_decay=cfg.weight_decay)
        self.model = self.step_module
        if self.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self._compiled = False
        if _auto(cfg.compile, self.device.type == "cuda"):
            self._try_compile()
        self.sampler = EpochSampler(len(self.dataset), cfg.seed, self.rank, self.world)
        self.steps_per_epoch = len(self.dataset) // self.world // cfg.batch_size
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set ({len(self.dataset)} images)")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(cfg, s / self.steps_per_epoch))

    def _teacher_spec(self):
        return self._teacher_arg if self._teacher_arg is not None else self.cfg.teacher

    def _load_teacher(self):
        """Load the frozen teacher. A teacher named in the config must exist and be finished, for
        every student (a KD-free BasicNet-LR of a study included: it belongs to that teacher's study)."""
        t = self._teacher_spec()
        if isinstance(t, (str, os.PathLike)) and _is_external_teacher(t):
            from .teachers import build_teacher  # a registered external teacher, an .onnx or a spec .json
            backbone, head = build_teacher(t if str(t) in _external_teacher_names() else paths.resolve(t)), None
        elif isinstance(t, (str, os.PathLike)):
            run = paths.resolve(t)
            if not is_finished(run):
                state = "has no checkpoint" if not checkpoint_path(run).is_file() else "has not finished training"
                raise ValueError(f"teacher run {run} {state}: train the teacher first (01_teacher_training), "
                                 "then its students")
            backbone, head, _ = load_trained(run)
        elif isinstance(t, tuple):
            backbone, head = t
        else:  # a bare backbone (external teacher): no head, no logits
            backbone, head = t, None
        self.teacher_backbone = backbone.to(self.device).eval().requires_grad_(False)
        self.teacher_head = head.to(self.device).eval().requires_grad_(False) if head is not None else None

    def _try_compile(self):
        try:
            self.step_module.backbone = torch.compile(self.step_module.backbone)
            # a parameter-free teacher (onnxruntime session) is not PyTorch code: nothing to compile
            if self.teacher_backbone is not None and any(True for _ in self.teacher_backbone.parameters()):
                self.teacher_backbone = torch.compile(self.teacher_backbone)
            self._compiled = True
        except Exception as e:  # pragma: no cover - depends on the platform
            print(f"torch.compile unavailable ({e}); running eager", file=sys.stderr)

    def _uncompile(self):
        sm = self.step_module
        sm.backbone = getattr(sm.backbone, "_orig_mod", sm.backbone)
        if self.teacher_backbone is not None:
            self.teacher_backbone = getattr(self.teacher_backbone, "_orig_mod", self.teacher_backbone)
        self._compiled = False

    # ---- state
    def _backbone_state(self):
        bb = self.step_module.backbone
        return getattr(bb, "_orig_mod", bb).state_dict()

    def _state(self, epoch: int, batch_in_epoch: int, step: int, gen: torch.Generator, sums: dict) -> dict:
        rng = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {
            "model": self._backbone_state(), "head": self.step_module.head.state_dict(),
            "kd": self.step_module.composer.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "step": step, "rng": rng, "epoch_sums": {k: float(v) for k, v in sums.items()},
            "config": self.cfg.to_dict(), "num_classes": self.num_classes, "backbone_name": self.backbone_name,
            "backbone_kw": self.backbone_kw, "head_name": self.head_name,
        }

    def _save(self, *a):
        if self.is_main:
            save_checkpoint(self._state(*a), self.run_dir)

    def _restore(self) -> Optional[dict]:
        ck_path = self.run_dir / "checkpoint.pt"
        if not (self.cfg.resume and ck_path.is_file()):
            return None
        ck = load_checkpoint(ck_path, map_location="cpu")
        saved = dict(ck["config"])
        mine = self.cfg.to_dict()
        diff = {k for k in mine if k not in ("resume", "progress", "num_workers", "log_every", "device",
                                             "compile") and saved.get(k) != mine[k]}
        if diff:
            raise ValueError(f"{ck_path} was written with a different config ({sorted(diff)}); "
                             "use another out_dir or resume=False")
        bb = self.step_module.backbone
        getattr(bb, "_orig_mod", bb).load_state_dict(ck["model"])
        self.step_module.head.load_state_dict(ck["head"])
        self.step_module.composer.load_state_dict(ck["kd"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"]["torch"])
        if ck["rng"].get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(ck["rng"]["cuda"], self.device)
        return ck

    # ---- signals
    def request_stop(self):
        """Ask the loop to checkpoint and stop after the current step (what SIGTERM/SIGINT do)."""
        self._stop = True

    @contextlib.contextmanager
    def _signals(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {}

        def handler(signum, frame):
            if self._stop and signum == signal.SIGINT:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop = True

        for s in (signal.SIGTERM, signal.SIGINT):
            old[s] = signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # ---- the loop
    def fit(self) -> dict:
        cfg = self.cfg
        self._build()
        ck = self._restore()
        start_epoch = ck["epoch"] if ck else 0
        start_batch = ck["batch_in_epoch"] if ck else 0
        step = ck["step"] if ck else 0
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", cfg.to_dict())
            self._truncate_metrics(start_epoch)
        names = self.step_module.composer.part_names
        loader_kw = dict(batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.num_workers,
                         drop_last=True, pin_memory=self.device.type == "cuda")
        if cfg.num_workers > 0:
            loader_kw.update(persistent_workers=False, prefetch_factor=4)
        t_run = time.time()
        last_rate = float("nan")
        with self._signals():
            for epoch in range(start_epoch, cfg.epochs):
                gen = torch.Generator(device=self.device).manual_seed(step_seed(cfg.seed, epoch, self.rank))
                b0 = start_batch if epoch == start_epoch else 0
                if ck is not None and epoch == start_epoch and b0 > 0:
                    gen.set_state(ck["rng"]["gen"])
                    sums = {k: torch.tensor(v, device=self.device) for k, v in ck["epoch_sums"].items()}
                else:
                    torch.manual_seed(cfg.seed * 7919 + epoch + 1)
                    sums = {k: torch.zeros((), device=self.device) for k in ["loss", *names]}
                first_bad = {k: torch.full((), -1, device=self.device, dtype=torch.long) for k in ["loss", *names]}
                self.sampler.set_epoch(epoch, b0 * cfg.batch_size)
                loader = DataLoader(self.dataset, **loader_kw)
                self.model.train()
                t0, n_img = time.time(), 0
                bar = self._bar(epoch, b0)
                done = b0
                for images, labels in loader:
                    if done >= self.steps_per_epoch:
                        break
                    progress = Progress(epoch, step, epoch + done / self.steps_per_epoch)
                    total, parts = self._step(images, labels, gen, progress)
                    self.last_parts = parts
                    with torch.no_grad():
                        for k, v in [("loss", total), *parts.items()]:
                            sums[k] += v.detach()
                            bad = ~torch.isfinite(v.detach())
                            first_bad[k] = torch.where(bad & (first_bad[k] < 0), torch.full_like(first_bad[k], step),
                                                       first_bad[k])
                    step += 1
                    done += 1
                    n_img += images.shape[0] * self.world
                    if self.device.type == "cpu" or step % cfg.log_every == 0:
                        self._check_finite(first_bad, epoch)
                        if bar is not None:
                            last_rate = n_img / max(time.time() - t0, 1e-9)
                            bar.set_postfix({k: f"{float(v) / done:.3f}" for k, v in sums.items()}
                                            | {"img/s": f"{last_rate:.0f}"})
                    if bar is not None:
                        bar.update(1)
                    for cb in self.callbacks:
                        cb(self, epoch, done, step)
                    if self._stop:
                        self._check_finite(first_bad, epoch)
                        self._save(epoch, done, step, gen, sums)
                        if bar is not None:
                            bar.close()
                        raise TrainingInterrupted(f"training stopped at epoch {epoch} batch {done}; checkpoint "
                                                  f"{self.run_dir / 'checkpoint.pt'} (resume=True continues)")
                if bar is not None:
                    bar.close()
                self._check_finite(first_bad, epoch)
                if epoch == 0 and "ce" in sums and float(sums["ce"]) == 0.0:
                    raise DegenerateTrainingError(
                        f"the cross-entropy is exactly 0 over the first epoch ({self.num_classes} classes, "
                        f"{len(self.dataset)} images): nothing is being learnt — check the data subset")
                seconds = time.time() - t0
                row = {"epoch": epoch + 1, "step": step, "lr": self.optimizer.param_groups[0]["lr"]}
                row.update({k if k == "loss" else f"loss_{k}": float(v) / done for k, v in sums.items()})
                row.update(self._validate())
                row.update({"seconds": round(seconds, 3), "img_per_s": round(n_img / max(seconds, 1e-9), 1)})
                self._save(epoch + 1, 0, step, gen, {})
                if self.is_main:
                    self._append_metrics(row)
                ck = None
        summary = self._summary(time.time() - t_run)
        if self.distributed:
            dist.barrier()
        return summary

    def _bar(self, epoch, initial):
        if not (self.cfg.progress and self.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.steps_per_epoch, initial=initial, desc=f"{self.cfg.name} epoch {epoch + 1}/{self.cfg.epochs}",
                    leave=False, dynamic_ncols=True)

    def _step(self, images, labels, gen, progress):
        cfg = self.cfg
        dev = self.device
        hr = images.to(dev, non_blocking=True)
        labels = labels.to(dev, non_blocking=True)
        if cfg.hflip:
            flip = torch.rand(hr.shape[0], generator=gen, device=dev) < 0.5
            hr = torch.where(flip[:, None, None, None], hr.flip(-1), hr)
        if self.face_content_replacement > 0:
            from .augment import face_content_replacement

            hr = face_content_replacement(hr, generator=gen, p=self.face_content_replacement)[0]
        x_in = hr if cfg.role == "teacher" else degrade(hr, cfg.scales, preset=cfg.degrade_preset, generator=gen)
        x = normalize(x_in)
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.contiguous(memory_format=mf)
        composer = self.step_module.composer
        lab = labels if composer.needs_labels else None
        autocast = (torch.autocast(dev.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        teacher_out = None
        with autocast:
            if composer.needs_teacher:
                needs = composer.needs
                with torch.no_grad():
                    xt = normalize(hr).contiguous(memory_format=mf)
                    teacher_out = run_model(self.teacher_backbone, self.teacher_head, xt, labels,
                                            "attention" in needs, "features" in needs, "logits" in needs)
            try:
                total, parts = self.model(x, lab, teacher_out, progress)
            except Exception:
                if not self._compiled:
                    raise
                print("torch.compile failed on the first step; falling back to eager", file=sys.stderr)
                self._uncompile()
                total, parts = self.model(x, lab, teacher_out, progress)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.step_module.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return total, parts

    def _check_finite(self, first_bad: dict, epoch: int):
        if self.distributed:  # a NaN on any rank stops every rank (they all raise here)
            keys = list(first_bad)
            flags = torch.stack([first_bad[k] for k in keys])
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            first_bad = dict(zip(keys, flags))
        bad = {k: int(v) for k, v in first_bad.items() if int(v) >= 0}
        if not bad:
            return
        terms = {k: s for k, s in bad.items() if k != "loss"} or bad
        name = min(terms, key=lambda k: (terms[k], k))
        ck = self.run_dir / "checkpoint.pt"
        keep = f"the last good checkpoint is {ck}" if ck.is_file() else "no checkpoint was written yet"
        raise NonFiniteLossError(f"loss term {name!r} became NaN/inf at step {terms[name]} (epoch {epoch + 1}); "
                                 f"training stopped, {keep}. Lower the lr or this term's weight, or check the data.")

    def _validate(self) -> dict:
        if not self.cfg.val_pairs:
            return {}
        from .eval import evaluate
        from .data import load_pairs

        if not hasattr(self, "_val"):
            self._val = load_pairs(self.cfg.val_pairs)
        bb = self.step_module.backbone
        df = evaluate(getattr(bb, "_orig_mod", bb), self._val, scales=tuple(self.cfg.val_scales), mode="both",
                      device=self.device)
        return {f"val_acc_x{int(r.scale) if float(r.scale).is_integer() else r.scale}": round(float(r.acc_mean), 3)
                for r in df.itertuples()}

    # ---- files
    def _metrics_path(self) -> Path:
        return self.run_dir / "metrics.csv"

    def _read_metrics(self) -> list[dict]:
        p = self._metrics_path()
        if not p.is_file():
            return []
        with open(p, newline="") as f:
            return list(csv.DictReader(f))

    def _write_metrics(self, rows: list[dict]):
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
        write_text(self._metrics_path(), buf.getvalue())

    def _truncate_metrics(self, epochs_done: int):
        rows = self._read_metrics()
        keep = [r for r in rows if int(r["epoch"]) <= epochs_done]
        if len(keep) != len(rows) or (rows and not self.cfg.resume):
            self._write_metrics(keep if self.cfg.resume else [])

    def _append_metrics(self, row: dict):
        self._write_metrics(self._read_metrics() + [row])

    def _summary(self, seconds: float) -> dict:
        rows = self._read_metrics() if self.is_main else []
        summary = {
            "name": self.cfg.name, "role": self.cfg.role, "method": self.cfg.method if self.cfg.role == "student" else "teacher",
            "backbone": self.backbone_name, "head": self.head_name, "num_classes": self.num_classes,
            "num_images": len(self.dataset), "epochs": self.cfg.epochs, "steps_per_epoch": self.steps_per_epoch,
            "final": rows[-1] if rows else {}, "seconds_this_call": round(seconds, 2),
            "device": str(self.device), "world_size": self.world, "torch": torch.__version__,
            "amp": str(self.amp_dtype), "compiled": self._compiled, "run_dir": str(self.run_dir),
        }
        if torch.cuda.is_available() and self.device.type == "cuda":
            summary["gpu"] = torch.cuda.get_device_name(self.device)
        if self.is_main:
            write_json(self.run_dir / "summary.json", summary)
        return summary


def train(cfg: TrainConfig | dict, teacher: Any = None, callbacks: Optional[list[Callable]] = None) -> dict:
    """Train per ``cfg``; returns the summary dict (also written to ``<run_dir>/summary.json``)."""
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    return Trainer(cfg, teacher, callbacks).fit()


def _external_teacher_names() -> set[str]:
    from .teachers import TEACHERS
    return set(TEACHERS)


def _is_external_teacher(t: str | os.PathLike) -> bool:
    """``cfg.teacher`` names an external teacher (registered name, ``.onnx``, spec ``.json``), not a run dir."""
    return str(t) in _external_teacher_names() or Path(str(t)).suffix.lower() in (".onnx", ".json")


def train_teacher(cfg: TrainConfig | dict, **kw) -> dict:
    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    return train(dataclasses.replace(cfg, role="teacher"), **kw)


def train_student(cfg: TrainConfig | dict, teacher: Any = None, **kw) -> dict:
    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    return train(dataclasses.replace(cfg, role="student"), teacher=teacher, **kw)


def is_finished(run_dir: str | Path, epochs: Optional[int] = None) -> bool:
    """True when ``run_dir`` holds a summary and a checkpoint with all epochs done."""
    run_dir = paths.resolve(run_dir)
    if not (run_dir / "summary.json").is_file() or not (run_dir / "checkpoint.pt").is_file():
        return False
    ck = load_checkpoint(run_dir)
    want = epochs if epochs is not None else ck["config"]["epochs"]
    return ck["epoch"] >= want and ck["batch_in_epoch"] == 0


def _parse_value(v: str):
    import yaml

    return yaml.safe_load(v)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lqlib.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML file with TrainConfig fields")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields (YAML values)")
    ap.add_argument("--teacher", help="teacher run directory (students)")
    args = ap.parse_args(argv)
    over = {}
    for kv in args.set:
        if "=" not in kv:
            ap.error(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        over[k] = _parse_value(v)
    try:
        cfg = load_config(args.config, **over) if args.config else TrainConfig.from_dict(over)
        summary = train(cfg, teacher=args.teacher)
    except (ValueError, TypeError, FileNotFoundError, NonFiniteLossError, DegenerateTrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
