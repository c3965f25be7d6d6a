"""The training configuration (arcface_torch's ``configs/``): one dataclass, recipes, overrides.

:class:`TrainConfig` holds every option of a training run, with lqlib's defaults
(the paper's loss and degradation, an IR-CBAM-18 backbone: not the paper's full training set-up, which is
the ``paper`` recipe). *Recipes* are named sets of options in ``lqlib/recipes/<name>.yaml`` (``smoke``, ``cpu``,
``gpu``, ``paper``), with optional ``teacher:`` / ``student:`` sections for what differs between the
two roles; notebooks name a recipe and override single fields (``TRAIN_OVERRIDES``).
``--set KEY=VALUE`` pairs (YAML values) are parsed by :func:`parse_overrides`. Bad values are
one-line ``ValueError`` s naming the field.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from . import paths
from .convergence import ConvergenceRule
from .data.sources import eval_role
from .data.synthetic import SyntheticFaces
from .degrade import get_degradation
from .evaluation.tables import scale_label
from .methods import get_method
from .models import with_attention
from .schedules import SCHEDULES

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
# declared type (as written in TrainConfig) → (kind checked by TrainConfig._check_types, None allowed)
_SCALAR_TYPES = {"str": ("string", False), "Optional[str]": ("string", True), "int": ("int", False),
                 "Optional[int]": ("int", True), "float": ("number", False), "Optional[float]": ("number", True),
                 "bool": ("bool", False)}
ROLES = ("teacher", "student")
# fields renamed since runs were written: an older config.json or checkpoint still loads and resumes
RENAMED_FIELDS = {"degrade_preset": "degradation"}


@dataclass
class TrainConfig:
    """Training configuration. Defaults are lqlib's (see the module docstring); recipes override them."""

    name: str = "run"
    recipe: Optional[str] = None             # the recipe these fields started from (lqlib.config.resolve)
    out_dir: Optional[str] = None            # default runs/<name>
    role: str = "student"                    # teacher | student
    method: str = "none"                     # KD method (lqlib.methods), students only
    # data
    data: str = "lfw-half"                   # split name | train.rec | packs dir | identity folders | synthetic
    data_dir: Optional[str] = None
    max_images: Optional[int] = None         # deterministic class-balanced subset for smoke runs
    min_images_per_class: int = 1            # 2: drop single-image identities
    max_images_per_class: Optional[int] = None  # cap large identities (their first images)
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
    schedule: str = "step"                   # step | cosine | onecycle | constant
    lr_step_epochs: float = 5.0
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    grad_clip: Optional[float] = None
    hflip: bool = True
    face_content_replacement: Optional[float] = None  # probability per HR image; None: the method's (labelfree: 0.5)
    # student input
    scales: Any = field(default_factory=lambda: [2, 4, 8])  # a float or a per-sample list
    degradation: str = "paper"               # lqlib.degrade: paper | askd | clean
    # distillation
    teacher: Optional[str] = None            # teacher run dir / checkpoint, or an external teacher (lqlib.teachers name, .onnx, spec .json)
    kd_weights: dict = field(default_factory=dict)
    kd_params: dict = field(default_factory=dict)
    init_head_from_teacher: bool = False     # ablation switch: copy the teacher's margin head into the student
    teacher_cache: Any = "auto"              # auto: cached teacher embeddings (embedding-only KD) or an own teacher run's outputs (logit/attention/DKD) | True | False
    # validation: curves; with early_stop also the stopping epoch (lqlib.convergence), so then val_pairs
    # must be a validation set (lfw-half-val), never test folds
    val_pairs: Optional[str] = None
    val_scales: Any = field(default_factory=lambda: [1, 8])
    early_stop: dict = field(default_factory=dict)  # {} off; else ConvergenceRule fields (metric, min_delta, patience, min_epochs)
    # engine
    device: str = "auto"
    amp: str = "auto"                        # auto (bf16 on CUDA and bf16-capable CPUs) | bf16 | off
    channels_last: Any = "auto"
    compile: Any = "auto"                    # auto (every device; LQLIB_COMPILE=0 turns it off) | True | False
    seed: int = 0
    resume: bool = True
    log_every: int = 20
    max_steps_per_epoch: Optional[int] = None
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = cls.upgrade(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {sorted(names)}")
        return cls(**d)

    @staticmethod
    def upgrade(d: dict) -> dict:
        """``d`` with renamed fields under their current names (:data:`RENAMED_FIELDS`)."""
        return {RENAMED_FIELDS.get(k, k): v for k, v in d.items()}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        self._check_types()
        if self.role not in ("teacher", "student"):
            raise ValueError(f"role must be 'teacher' or 'student', got {self.role!r}")
        for k in ("epochs", "batch_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        get_degradation(self.degradation)
        get_method(self.method)
        self._check_mappings()
        if self.early_stop:
            self._check_early_stop()
        self._check_device()
        return self

    def _check_types(self):
        """Scalar fields hold values of their declared type (``--set lr=abc`` names ``lr``, not a ``>``)."""
        for f in dataclasses.fields(self):
            want = _SCALAR_TYPES.get(str(f.type))
            if want is None:
                continue
            kind, optional = want
            value = getattr(self, f.name)
            if value is None and optional:
                continue
            ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
                  "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                  "bool": lambda v: isinstance(v, bool),
                  "string": lambda v: isinstance(v, (str, os.PathLike))}[kind](value)
            if not ok:
                none = " (or null)" if optional else ""
                raise ValueError(f"{f.name} must be {'an' if kind == 'int' else 'a'} {kind}{none}, got {value!r}")

    def _check_device(self):
        if self.device == "auto":
            return
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (a torch device), "
                             f"got {self.device!r}") from None

    def _check_early_stop(self):
        """``early_stop`` needs validation pairs that are not a test set, and a scale it evaluates."""
        rule = ConvergenceRule.from_dict(self.early_stop)
        if not self.val_pairs:
            raise ValueError("early_stop needs val_pairs (the validation pairs it reads, e.g. lfw-half-val)")
        if eval_role(self.val_pairs) == "test":
            raise ValueError(f"early_stop reads val_pairs={self.val_pairs!r}, a TEST set: choices read validation "
                             "pairs only (e.g. val_pairs=lfw-half-val with data=lfw-half-val)")
        produced = {f"val_acc_{scale_label(float(s)).replace('×', 'x')}" for s in (
            self.val_scales if isinstance(self.val_scales, (list, tuple)) else [self.val_scales])}
        if rule.metric not in produced:
            raise ValueError(f"early_stop.metric {rule.metric!r} is not a validation column; val_scales "
                             f"{self.val_scales} give {sorted(produced)}")

    def _check_mappings(self):
        """Dict-valued fields: a dict whose keys the receiving code accepts (one-line errors). The keys of
        ``head_kw`` and ``kd_*`` depend on the resolved head and method: :func:`lqlib.training_plan.plan_training`
        checks them."""
        checks = {"synthetic": accepted_keys(SyntheticFaces.__init__), "head_kw": None,  # head_kw: by the resolved head,
                  "kd_weights": None, "kd_params": None, "backbone_kw": None, "early_stop": None}  # lqlib.training_plan
        for name, keys in checks.items():
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping, got {value!r}")
            check_keys(name, value, keys)

    @property
    def run_dir(self) -> Path:
        return paths.resolve(self.out_dir) if self.out_dir else paths.runs_dir() / self.name


def accepted_keys(fn) -> list[str]:
    """The keyword arguments ``fn`` accepts by name (``self`` left out)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in inspect.signature(fn).parameters.items() if n != "self" and p.kind in kinds]


def check_keys(name: str, value: dict, keys: Optional[list]) -> None:
    """A one-line ``ValueError`` naming option ``name`` when ``value`` has a key outside ``keys`` (None: any)."""
    bad = [k for k in value if keys is not None and k not in keys]
    if bad:
        hint = " (YAML needs a space after ':', e.g. {num_classes: 40})" if any(":" in str(k) for k in bad) else ""
        raise ValueError(f"{name}: unknown key(s) {bad}; accepted: {keys}{hint}")


@dataclass(frozen=True)
class Settings:
    """The settings a run's method may also choose, resolved (:func:`resolve`)."""

    backbone: str
    backbone_kw: dict
    head: str
    degradation: str
    face_content_replacement: float
    teacher_center: bool


def resolve(cfg: TrainConfig) -> Settings:
    """Where each setting a method may also choose comes from — one rule for all of them::

        an explicit config field  >  the method's setting  >  the recipe's value (else lqlib's default)

    A field is *explicit* when its value differs from the one the recipe named in ``cfg.recipe`` gives it
    (without a recipe: the :class:`TrainConfig` default), e.g. set by ``TRAIN_OVERRIDES`` or ``--set``; a
    field set to the very value the recipe gives it is not explicit. Per setting:

    * ``backbone`` — the method's attention block (ECACFace: ESCA) replaces the recipe backbone's;
    * ``backbone_kw`` — key by key: explicit keys, then the method's (A-SKD-pre: pre-sigmoid maps), then the recipe's;
    * ``head`` — the method's margin head (ECACFace: CurricularFace), else the recipe's / ArcFace;
    * ``degradation`` — the method's named degradation (no method sets one today), else the recipe's / ``paper``;
    * ``face_content_replacement`` — the method's probability (label-free KD: 0.5), else 0;
    * ``teacher_center`` — the method's only (no config field).

    A teacher (role ``teacher``) has the method ``none``."""
    method = get_method(cfg.method if cfg.role == "student" else "none")
    base = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}
    if cfg.recipe:
        base.update(recipe(cfg.recipe, cfg.role))

    def pick(name: str, from_method):
        value = getattr(cfg, name)
        return value if value != base[name] or from_method is None else from_method

    backbone = cfg.backbone if cfg.backbone != base["backbone"] else with_attention(cfg.backbone, method.backbone_attention)
    explicit_kw = {k: v for k, v in cfg.backbone_kw.items() if base["backbone_kw"].get(k) != v}
    fcr = pick("face_content_replacement", method.face_content_replacement)
    return Settings(backbone=backbone, backbone_kw={**cfg.backbone_kw, **method.backbone_kw, **explicit_kw},
                    head=pick("head", method.head), degradation=pick("degradation", method.degradation),
                    face_content_replacement=float(fcr or 0.0), teacher_center=bool(method.teacher_center))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe(name: str, role: str) -> dict:
    """The TrainConfig fields of recipe ``name`` for ``role`` (shared fields, then the role's section)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    p = RECIPE_DIR / f"{name}.yaml"
    if not p.is_file():
        raise ValueError(f"unknown recipe {name!r}; available: {list_recipes()}")
    d = yaml.safe_load(p.read_text()) or {}
    sections = {k: d.pop(k, None) or {} for k in ROLES}
    d.pop("description", None)
    out = {**d, **sections[role]}
    for k, v in out.items():
        if isinstance(v, str) and "$" in v:
            out[k] = os.path.expandvars(v)
            if "$" in out[k]:
                raise ValueError(f"recipe {name!r}: {k}={v!r} names an environment variable that is not set")
    try:
        TrainConfig.from_dict(out)
    except (TypeError, ValueError) as e:
        raise ValueError(f"recipe {p}: {e}") from None
    return out


def load_config(path: str | os.PathLike, **overrides) -> TrainConfig:
    with open(paths.resolve(path)) as f:
        d = yaml.safe_load(f) or {}
    d.update(overrides)
    return TrainConfig.from_dict(d)


def parse_overrides(pairs: list[str]) -> dict:
    """``["epochs=3", "head_kw={s: 32}"]`` → ``{"epochs": 3, "head_kw": {"s": 32}}`` (YAML values)."""
    out = {}
    for kv in pairs:
        if "=" not in kv:
            raise ValueError(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {k}: cannot parse {v!r} as YAML ({str(e).splitlines()[0]})") from None
    return out
