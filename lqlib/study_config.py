"""A study's training plans: the notebooks' literal parameters (recipe, data, method, teacher, KD
weights, overrides) → one :class:`~lqlib.training_plan.TrainingPlan` whose config's ``out_dir`` is the model's
folder in the study's layout (:class:`lqlib.study.Study`; the teacher's ``teacher/``, a student's folder named by its
:class:`~lqlib.model_key.ModelKey`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from .config import TrainConfig, recipe as load_recipe
from .data.fallback import resolve_training_data
from .training_plan import TrainingPlan, plan_training


def training_plan(study, role: str, *, recipe: str, data: str = "", data_dir: str = "", seed: int = 0,
                  method: str = "none", teacher: str = "", head_from_teacher: bool = False,
                  kd_weights: Optional[dict] = None, kd_params: Optional[dict] = None,
                  overrides: Optional[dict] = None) -> TrainingPlan:
    """The :class:`~lqlib.training_plan.TrainingPlan` of the teacher or a student of ``study`` (a
    :class:`lqlib.study.Study`) from a recipe (:func:`lqlib.config.recipe`) and the notebook's parameters;
    ``overrides`` (the notebooks' ``TRAIN_OVERRIDES``) are applied last. ``teacher`` (students): empty for the
    study's own HR teacher, else an external teacher; ``head_from_teacher`` is the head-initialisation ablation.
    The run's folder is the model's in the study's layout (named by the plan's key) unless ``overrides`` name
    ``out_dir``. Settings, KD weights and parameters are resolved and checked here, once
    (:func:`lqlib.training_plan.plan_training`)."""
    d = load_recipe(recipe, role)
    d.update(role=role, seed=seed, recipe=recipe)
    d["data"] = resolve_training_data(data or d.get("data", "lfw-half"), data_dir)
    d["data_dir"] = data_dir or None
    if role == "student":
        d.update(method=method, teacher=teacher or str(study.teacher_dir), init_head_from_teacher=head_from_teacher,
                 kd_weights=dict(kd_weights or {}), kd_params=dict(kd_params or {}))
    d.update(overrides or {})
    plan = plan_training(TrainConfig.from_dict(d))
    # the key names the head the run will use (TRAIN_OVERRIDES {"head": "adaface"} → none^adaface)
    where = {"name": f"{study.name}-{plan.key.file_name}-s{seed}",
             "out_dir": str(study.teacher_dir if role == "teacher" else study.student_dir(plan.key, seed))}
    where.update({k: v for k, v in (overrides or {}).items() if k in ("name", "out_dir")})  # an explicit one wins
    return dataclasses.replace(plan, config=dataclasses.replace(plan.config, **where))


def training_config(study, role: str, **kw) -> TrainConfig:
    """The :class:`~lqlib.config.TrainConfig` of :func:`training_plan` (same arguments)."""
    return training_plan(study, role, **kw).config


__all__ = ["training_plan", "training_config"]
