"""A study on disk: the teacher, the students and their evaluation under ``runs/<name>/``.

The notebooks share this layout through the run name::

    runs/<name>/teacher/                       the HR teacher (BasicNet-HR)
    runs/<name>/students/<key>_s<seed>/        one student per model key and seed (method none = BasicNet-LR)
    runs/<name>/eval/<eval set>/               per-model results (CSV) and per-pair correctness (.npz)
    runs/<name>/results/<eval set>/            tables: tidy CSV, paper-layout markdown, tests across seeds
    figures/<name>/                            figures (PDF + PNG)

A training run's folder holds its plan (``plan.json``, :mod:`lqlib.training_plan`: settings, KD terms, teacher, key,
written before its first step), ``config.json``, ``metrics.csv``, ``summary.json`` and ``checkpoint.pt``; the study
reads a model's key from its plan (from ``config.json`` for runs written before plans).

Every model has a :class:`~lqlib.model_key.ModelKey` (its method, KD overrides, head, external teacher,
head initialisation; :mod:`lqlib.model_key` is the one place its text is parsed). Results and
caches are keyed by evaluation set, so AgeDB-30 and CPLFW runs of one study never overwrite each
other.

This module is the layout; it is also the notebooks' one import (``from lqlib import study as S``), so it
re-exports what they call from the modules that own it: the data they get (:mod:`lqlib.data.fallback`), the
training configurations (:mod:`lqlib.study_config`), and evaluating and reporting a study
(:mod:`lqlib.study_eval`, beside the scoring in :mod:`lqlib.evaluation`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .checkpoint import read_training_data
from .data.fallback import data_available, load_eval_pairs, pair_faces, resolve_training_data  # noqa: F401
from .data.sources import eval_set_key
from .methods import METHODS, get_method
from .model_key import ModelKey
from .paths import slug  # noqa: F401  (the notebooks' file names: S.slug(group))
from .study_config import training_config, training_plan  # noqa: F401
from .study_eval import (LeakageError, Model, _check_leakage, compare, compare_all, evaluate_cached, evaluate_study,  # noqa: F401
                         external_teachers, key_columns, model_groups, pair_correct_reader, published_eval_dir, save_tables,
                         sort_models, verification_thresholds)
from .teachers import is_external_teacher
from .training_plan import load_plan


OLD_RUN = ".old-"  # lqlib.train moves a run whose settings changed to <run dir>.old-<time>


@dataclass
class Study:
    name: str

    @property
    def root(self) -> Path:
        return paths.runs_dir() / self.name

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    def student_dir(self, key: ModelKey | str, seed: int = 0) -> Path:
        return self.root / "students" / f"{ModelKey.parse(key).file_name}_s{seed}"

    def eval_dir(self, eval_set: str) -> Path:
        return self.root / "eval" / eval_set_key(eval_set)

    def results_dir(self, eval_set: str) -> Path:
        return self.root / "results" / eval_set_key(eval_set)

    @property
    def figures_dir(self) -> Path:
        """``figures/<name>``; a run folder that holds one block of a blocked study (``block.json``, written by
        ``lqlib.run --block``) draws into ``figures/<name>/<block>`` (e.g. ``seed-3``), so no block overwrites
        another's figures."""
        block = self.root / "block.json"
        if block.is_file():
            b = json.loads(block.read_text())
            return paths.figures_dir() / self.name / paths.block_name(b["parameter"], b["value"])
        return paths.figures_dir() / self.name

    def resolve_student(self, key: ModelKey | str, seed: int = 0) -> ModelKey:
        """The key of a trained student named by ``key``: a full key (``angular_emb_c@faceapi-resnet``) as it is,
        or a bare method name (``angular_emb_c``) when exactly one trained student with ``seed`` has that method
        (e.g. its only student is the one of an external teacher). An ambiguous method name raises, listing the
        keys it could mean; anything else is left to :meth:`student` (which names what is trained)."""
        text = str(key).strip()
        trained = [m.key for m in self.models() if m.key != "teacher" and m.seed == seed]
        if text in trained or text not in METHODS and "+" not in text:
            return ModelKey.parse(text)
        same = [k for k in trained if k.method == text]
        if len(same) > 1:
            raise ValueError(f"student key {text!r} is ambiguous in {self.root} (seed {seed}): it is the method of "
                             f"{', '.join(map(str, sorted(same)))}; give one of these keys")
        return same[0] if same else ModelKey.parse(text)

    def student(self, key: ModelKey | str, seed: int = 0) -> Path:
        """The run dir of a trained (finished) student; raises listing the trained ones when it does not
        exist, naming the run dir when it has not finished, and for a key whose method is not exactly a
        registered one (folder names are slugs: ``logit_attention`` must not find ``logit+attention``)."""
        try:
            parsed = ModelKey.parse(key)
        except ValueError:
            parsed = None
        if parsed is None or parsed.is_teacher:
            get_method(str(key))  # a misspelt method: the error lists the near matches
            raise ValueError(f"not a student key: {key!r}")
        get_method(parsed.method)  # exact registry names only
        key = str(parsed)
        want = self.student_dir(key, seed)
        if (want / "checkpoint.pt").is_file() and (want / "summary.json").is_file():
            return want
        if want.is_dir():
            raise FileNotFoundError(f"student {key!r} with seed {seed} has not finished training: {want} holds no "
                                    "summary.json (re-run its 02_kd_ablation step: training resumes from its "
                                    "checkpoint)")
        known = [f"{m.key} (seed {m.seed})" for m in self.models() if m.key != "teacher"]
        raise FileNotFoundError(f"no student {key!r} with seed {seed} in {self.root}; trained students: "
                                f"{', '.join(known) or 'none (run 02_kd_ablation)'}")

    def models(self) -> list[Model]:
        """Every trained model of the study; the teacher has key 'teacher'."""
        out = []
        if (self.teacher_dir / "checkpoint.pt").is_file() and (self.teacher_dir / "summary.json").is_file():
            out.append(Model(ModelKey(), 0, self.teacher_dir, _split_of(self.teacher_dir)))  # finished only
        sdir = self.root / "students"
        for d in sorted(sdir.iterdir()) if sdir.is_dir() else []:
            if OLD_RUN in d.name:  # a run moved aside by a changed resume (lqlib.train): kept, not listed
                continue
            if (d / "summary.json").is_file() and (d / "checkpoint.pt").is_file():
                plan = load_plan(d)   # the key it was trained under; older runs: derived from config.json
                key, seed = (plan.key, plan.config.seed) if plan is not None else _key_from_config(d)
                out.append(Model(key, int(seed), d, _split_of(d)))
        return out


def _key_from_config(run_dir: Path) -> tuple[ModelKey, int]:
    """(key, seed) of a student run written before plans (``config.json`` and ``summary.json``)."""
    cfg = json.loads((run_dir / "config.json").read_text())
    teacher = cfg.get("teacher") or ""
    external = teacher if is_external_teacher(teacher) else ""
    head = json.loads((run_dir / "summary.json").read_text()).get("head") or cfg.get("head", "")  # trained with
    key = ModelKey.student(cfg["method"], external, bool(cfg.get("init_head_from_teacher")),
                           cfg.get("kd_weights"), cfg.get("kd_params"), head)
    return key, int(cfg.get("seed", 0))


def _split_of(run_dir: Path) -> str:
    return read_training_data(run_dir)[0]


def publish_training_record(run_dir: str | Path, publish_dir: str, prefix: str) -> list[Path]:
    """Copy a training run's record — ``metrics.csv`` (per-epoch losses, validation accuracy) and
    ``summary.json`` (incl. the stopping rule's decision) — into ``publish_dir`` as ``<prefix>_metrics.csv``
    and ``<prefix>_summary.json``, so a curve stays checkable once the run folder is gone (never weights)."""
    import shutil

    run_dir, dst = Path(run_dir), paths.resolve(publish_dir)
    missing = [n for n in ("metrics.csv", "summary.json") if not (run_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir}: no {', '.join(missing)} — train it first")
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("metrics.csv", "summary.json"):
        target = dst / f"{prefix}_{name}"
        shutil.copyfile(run_dir / name, target)
        out.append(target)
    return out
