"""The checks of a :class:`~lqlib.config.TrainConfig` (its fields live in :mod:`lqlib.config`): every bad value is a
one-line ``ValueError`` naming the field. The options that depend on the resolved head and method (``head_kw``, the
KD terms) are checked by :func:`lqlib.training_plan.plan_training`, once the settings are resolved.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
from typing import Optional

import torch

from .convergence import ConvergenceRule
from .data.sources import eval_role
from .data.synthetic import SyntheticFaces
from .degrade import get_degradation
from .evaluation.tables import scale_label
from .methods import get_method
from .schedules import SCHEDULES

# declared type (as written in TrainConfig) → (kind checked by check_types, None allowed)
_SCALAR_TYPES = {"str": ("string", False), "Optional[str]": ("string", True), "int": ("int", False),
                 "Optional[int]": ("int", True), "float": ("number", False), "Optional[float]": ("number", True),
                 "bool": ("bool", False)}


def check_config(cfg) -> None:
    """Every field of ``cfg`` (a :class:`~lqlib.config.TrainConfig`) holds a value its code accepts."""
    check_types(cfg)
    if cfg.role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {cfg.role!r}")
    for k in ("epochs", "batch_size"):
        if int(getattr(cfg, k)) < 1:
            raise ValueError(f"{k} must be >= 1")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ValueError(f"lr must be a finite number > 0, got {cfg.lr}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.amp not in ("auto", "bf16", "off"):
        raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {cfg.amp!r}")
    get_degradation(cfg.degradation)
    get_method(cfg.method)
    check_mappings(cfg)
    if cfg.early_stop:
        check_early_stop(cfg)
    check_device(cfg)


def check_types(cfg) -> None:
    """Scalar fields hold values of their declared type (``--set lr=abc`` names ``lr``, not a ``>``)."""
    for f in dataclasses.fields(cfg):
        want = _SCALAR_TYPES.get(str(f.type))
        if want is None:
            continue
        kind, optional = want
        value = getattr(cfg, f.name)
        if value is None and optional:
            continue
        ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": lambda v: isinstance(v, bool),
              "string": lambda v: isinstance(v, (str, os.PathLike))}[kind](value)
        if not ok:
            none = " (or null)" if optional else ""
            raise ValueError(f"{f.name} must be {'an' if kind == 'int' else 'a'} {kind}{none}, got {value!r}")


def check_device(cfg) -> None:
    if cfg.device == "auto":
        return
    try:
        torch.device(cfg.device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (a torch device), "
                         f"got {cfg.device!r}") from None


def check_early_stop(cfg) -> None:
    """``early_stop`` needs validation pairs that are not a test set, and a scale it evaluates."""
    rule = ConvergenceRule.from_dict(cfg.early_stop)
    if not cfg.val_pairs:
        raise ValueError("early_stop needs val_pairs (the validation pairs it reads, e.g. lfw-half-val)")
    if eval_role(cfg.val_pairs) == "test":
        raise ValueError(f"early_stop reads val_pairs={cfg.val_pairs!r}, a TEST set: choices read validation "
                         "pairs only (e.g. val_pairs=lfw-half-val with data=lfw-half-val)")
    produced = {f"val_acc_{scale_label(float(s)).replace('×', 'x')}" for s in (
        cfg.val_scales if isinstance(cfg.val_scales, (list, tuple)) else [cfg.val_scales])}
    if rule.metric not in produced:
        raise ValueError(f"early_stop.metric {rule.metric!r} is not a validation column; val_scales "
                         f"{cfg.val_scales} give {sorted(produced)}")


def check_mappings(cfg) -> None:
    """Dict-valued fields: a dict whose keys the receiving code accepts (one-line errors). The keys of
    ``head_kw`` and ``kd_*`` depend on the resolved head and method: :func:`lqlib.training_plan.plan_training`
    checks them."""
    checks = {"synthetic": accepted_keys(SyntheticFaces.__init__), "head_kw": None,  # head_kw: by the resolved head,
              "kd_weights": None, "kd_params": None, "backbone_kw": None, "early_stop": None}  # lqlib.training_plan
    for name, keys in checks.items():
        value = getattr(cfg, name)
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        check_keys(name, value, keys)


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


__all__ = ["check_config", "check_types", "check_device", "check_early_stop", "check_mappings", "accepted_keys",
           "check_keys"]
