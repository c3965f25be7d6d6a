"""A training run's plan: its settings resolved once, checked once, and written down before the first step.

:func:`plan_training` turns a :class:`~lqlib.config.TrainConfig` (from a recipe and the notebook's parameters,
:func:`lqlib.study_config.training_plan`, or ``--set`` pairs) into a frozen :class:`TrainingPlan`:

* the config, checked (:meth:`~lqlib.config.TrainConfig.validate`);
* the settings a method may also choose, resolved (:func:`lqlib.config.resolve`: backbone, head,
  degradation, ...) — the one place they are resolved;
* the KD terms as they will be weighted and parameterised (the method's registry values overridden by the run's
  ``kd_weights`` / ``kd_params``) — the one place a run's ``KD_WEIGHTS`` / ``KD_PARAMS`` are checked: a term the
  method does not use, or a parameter its term does not take, is one ``ValueError`` naming it;
* the teacher (its spec and its identity by content, :func:`lqlib.checkpoint.teacher_identity`) and the
  model's :class:`~lqlib.model_key.ModelKey`.

The trainer writes it as ``plan.json`` in the run folder before its first step (:meth:`TrainingPlan.save`); the
training-curve figure (:func:`lqlib.plotting.training_curves`) and the study's model list
(:meth:`lqlib.study.Study.models`, what 03 evaluates) read it back (:func:`load_plan`). A run folder without
``plan.json`` (written before plans existed) reads as ``None``: its readers fall back to ``config.json``.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from .checkpoint import teacher_identity
from .config import Settings, TrainConfig, resolve
from .config_checks import accepted_keys, check_keys
from .heads import HEADS
from .io import write_json
from .losses import KD_TERMS
from .methods import Method, get_method, term_weights
from .model_key import ModelKey
from .teachers import is_external_teacher

PLAN = "plan.json"
PLAN_VERSION = 1


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a training run will use, resolved (see the module docstring)."""

    config: TrainConfig
    settings: Settings
    kd_weights: dict = field(default_factory=dict)   # {term: weight}, every term of the method
    kd_params: dict = field(default_factory=dict)    # {term: {parameter: value}}, every term of the method
    teacher: Optional[str] = None                    # the teacher's spec (a run dir, an external teacher) or None
    teacher_id: Optional[str] = None                 # its identity by content when it exists
    key: ModelKey = field(default_factory=ModelKey)

    @property
    def method(self) -> Method:
        return get_method(self.config.method if self.config.role == "student" else "none")

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def to_dict(self) -> dict:
        return {"version": PLAN_VERSION, "key": str(self.key), "role": self.config.role,
                "method": self.config.method if self.config.role == "student" else "none",
                "settings": asdict(self.settings), "kd_weights": self.kd_weights, "kd_params": self.kd_params,
                "teacher": self.teacher, "teacher_id": self.teacher_id, "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingPlan":
        return cls(TrainConfig.from_dict(d["config"]), Settings(**d["settings"]), dict(d.get("kd_weights") or {}),
                   dict(d.get("kd_params") or {}), d.get("teacher"), d.get("teacher_id"), ModelKey.parse(d["key"]))

    def save(self, run_dir: Optional[Path] = None) -> Path:
        """``<run dir>/plan.json`` (atomically)."""
        path = Path(run_dir or self.run_dir) / PLAN
        write_json(path, self.to_dict())
        return path


def load_plan(run_dir: str | Path) -> Optional[TrainingPlan]:
    """The plan a run folder was trained with, or None for a run written before plans (no ``plan.json``)."""
    p = Path(run_dir) / PLAN
    if not p.is_file():
        return None
    try:
        return TrainingPlan.from_dict(json.loads(p.read_text()))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{p}: not a training plan ({e}); move it aside to read the run from config.json") from None


def kd_terms(name: str, kd_weights: Optional[dict], kd_params: Optional[dict]) -> tuple[dict, dict]:
    """``(weights, params)`` of every KD term of method ``name``: the registry's, overridden by the run's. A term
    the method does not use, or a parameter its term does not take, is a ``ValueError`` naming it."""
    method = get_method(name)
    for what, given in (("KD_WEIGHTS", kd_weights), ("KD_PARAMS", kd_params)):
        if not isinstance(given or {}, dict):
            raise ValueError(f"{what} must be a mapping {{term: ...}}, got {given!r}")
        unknown = sorted(set(given or {}) - set(method.kd))
        if unknown:
            raise ValueError(f"{what} names term(s) {unknown} that method {name!r} does not use "
                             f"(its terms: {sorted(method.kd) or 'none'})")
    kd_weights, kd_params = dict(kd_weights or {}), dict(kd_params or {})
    params = {}
    for term in method.kd:
        own = kd_params.get(term) or {}
        if not isinstance(own, dict):
            raise ValueError(f"KD_PARAMS[{term!r}] must be a mapping {{parameter: value}}, got {own!r}")
        takes = _parameters(KD_TERMS[term])
        bad = sorted(k for k in own if takes is not None and k not in takes)
        if bad:
            raise ValueError(f"KD_PARAMS[{term!r}] names parameter(s) {bad} the term does not take "
                             f"(it takes {sorted(takes)})")
        params[term] = {**method.params.get(term, {}), **own}
    return term_weights(method, kd_weights), params


def _parameters(cls) -> Optional[set]:
    """The keyword parameters a KD term's constructor takes (None when it takes any)."""
    sig = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in sig):
        return None
    return {p.name for p in sig if p.name != "self"}


def plan_training(cfg: TrainConfig, teacher: Any = None) -> TrainingPlan:
    """The plan of a training run with config ``cfg`` (``teacher``: a teacher object or spec that replaces
    ``cfg.teacher``, students only). Checks the config, resolves its settings, checks and completes the KD terms,
    names the teacher and the model's key; nothing is written."""
    cfg = cfg.validate()
    settings = resolve(cfg)   # explicit config field > method > recipe, per setting
    head_cls = HEADS.get(settings.head)
    if head_cls is None:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {settings.head!r}")
    check_keys("head_kw", cfg.head_kw, [k for k in accepted_keys(head_cls.__init__)
                                        if k not in ("embedding_size", "num_classes")])
    student = cfg.role == "student"
    weights, params = kd_terms(cfg.method, cfg.kd_weights, cfg.kd_params) if student else ({}, {})
    spec = teacher if teacher is not None else (cfg.teacher if student else None)
    named = str(spec) if isinstance(spec, (str, Path)) and str(spec) else None
    if student:
        external = named if named and is_external_teacher(named) else ""
        key = ModelKey.student(cfg.method, external, cfg.init_head_from_teacher, cfg.kd_weights, cfg.kd_params,
                               settings.head)
    else:
        key = ModelKey()
    return TrainingPlan(cfg, settings, weights, params, named if spec is not None else None,
                        teacher_identity(spec) if spec is not None else None, key)


__all__ = ["TrainingPlan", "plan_training", "load_plan", "kd_terms", "PLAN"]
