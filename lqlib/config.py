"""The training configuration (arcface_torch's ``configs/``): one dataclass, recipes, overrides.

:class:`TrainConfig` holds every option of a training run, with lqlib's defaults
(the paper's loss and degradation, an IR-CBAM-18 backbone: not the paper's full training set-up, which is
the ``paper`` recipe). *Recipes* are named sets of options in ``lqlib/recipes/<name>.yaml`` (``smoke``, ``cpu``,
``gpu``, ``paper``), with optional ``teacher:`` / ``student:`` sections for what differs between the
two roles; notebooks name a recipe and override single fields (``TRAIN_OVERRIDES``).
``--set KEY=VALUE`` pairs (YAML values) are parsed by :func:`parse_overrides`. Bad values are
one-line ``ValueError`` s naming the field (:meth:`TrainConfig.validate`; the checks: :mod:`lqlib.config_checks`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from . import paths
from .config_checks import check_config
from .methods import get_method
from .models import with_attention

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
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
        """Every field checked (:func:`lqlib.config_checks.check_config`: one-line errors naming the field); ``self``."""
        check_config(self)
        return self

    @property
    def run_dir(self) -> Path:
        return paths.resolve(self.out_dir) if self.out_dir else paths.runs_dir() / self.name


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
