"""A study on disk: the teacher, the students and their evaluation under ``runs/<name>/``.

The notebooks share this layout through the run name::

    runs/<name>/teacher/                       the HR teacher (BasicNet-HR)
    runs/<name>/students/<key>_s<seed>/        one student per model key and seed (method none = BasicNet-LR)
    runs/<name>/eval/<eval set>/               per-model results (CSV) and per-pair correctness (.npz)
    runs/<name>/results/<eval set>/            tables: tidy CSV, paper-layout markdown, tests across seeds
    figures/<name>/                            figures (PDF + PNG)

A student's *key* is its KD method, plus ``[term=w,...]`` for KD weights or parameters other than the
method's own, ``@<teacher>`` for an external teacher and ``~headinit`` when its margin head was copied
from the teacher (an ablation switch, off by default). Results and
caches are keyed by evaluation set, so AgeDB-30 and CPLFW runs of one study never overwrite each
other. The functions here turn the notebooks' literal parameters into library calls, so a notebook
stays narrative plus a few lines; tables and tests live in :mod:`lqlib.evaluation`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import paths
from .data.sources import eval_set_key, leaks, overlapping_eval_sets
from .io import atomic_write, save_dataframe_csv, write_json, write_text
from .teachers import is_external_teacher, teacher_label

DISPLAY = {"teacher": "BasicNet-HR", "none": "BasicNet-LR", "logit": "+logit KD", "attention": "+attention KD",
           "logit+attention": "+logit+attention KD"}
HEAD_INIT = "~headinit"


class LeakageError(ValueError):
    """A model would be evaluated on pairs whose identities it was trained on."""


def model_key(method: str, teacher: str = "", head_from_teacher: bool = False,
              kd_weights: Optional[dict] = None, kd_params: Optional[dict] = None) -> str:
    """The study's key of a student: its method, ``[term=w,term.param=v]`` for KD weights or parameters
    that differ from the method's own (so a weight sweep never shares a run folder), ``@<teacher>``
    for an external teacher, and ``~headinit`` when its head was initialised from the teacher's."""
    key = method + _override_suffix(method, kd_weights, kd_params)
    key = f"{key}@{teacher_label(teacher)}" if teacher else key
    return key + (HEAD_INIT if head_from_teacher else "")


def _override_suffix(method: str, kd_weights: Optional[dict], kd_params: Optional[dict]) -> str:
    from .methods import get_method

    if not (kd_weights or kd_params):
        return ""
    m = get_method(method)
    parts = [f"{t}={float(w):g}" for t, w in sorted((kd_weights or {}).items()) if float(w) != m.kd.get(t)]
    parts += [f"{t}.{k}={v:g}" if isinstance(v, (int, float)) else f"{t}.{k}={v}"
              for t, kw in sorted((kd_params or {}).items()) for k, v in sorted(kw.items())
              if m.params.get(t, {}).get(k) != v]
    return f"[{','.join(parts)}]" if parts else ""


def parse_key(key: str) -> tuple[str, str, bool]:
    """The inverse of :func:`model_key`: ``(method, external teacher label or "", head_from_teacher)``;
    the method keeps its ``[...]`` overrides."""
    method, _, teacher = key.removesuffix(HEAD_INIT).partition("@")
    return method, teacher, key.endswith(HEAD_INIT)


def method_parts(key: str) -> list[str]:
    """The registry methods a student key combines, without overrides or teacher: ``logit+attention[attention=10]``
    → ``["logit", "attention"]``."""
    return parse_key(key)[0].partition("[")[0].split("+")


def display_name(key: str) -> str:
    """Table name of a model: the teacher is BasicNet-HR, a student without KD BasicNet-LR; an external
    teacher's student reads "<method> ← <teacher>"; a head copied from the teacher is said so."""
    method, teacher, head = parse_key(key)
    name = DISPLAY.get(method, method) + (f" ← {teacher}" if teacher else "")
    return name + (" (head from teacher)" if head else "")


def model_slug(key: str) -> str:
    """A file-name-safe form of a model key or display name."""
    return re.sub(r"[^A-Za-z0-9~]+", "-", key).strip("-")


@dataclass(frozen=True)
class Model:
    key: str          # "teacher", or a student key (model_key)
    seed: int
    run_dir: Path
    split: str        # the training split it was trained on

    @property
    def name(self) -> str:
        return display_name(self.key)

    @property
    def external_teacher(self) -> str:
        """The external teacher a student was distilled from ("" for the study's own teacher and its students)."""
        return parse_key(self.key)[1]


@dataclass
class Study:
    name: str

    @property
    def root(self) -> Path:
        return paths.runs_dir() / self.name

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    def student_dir(self, key: str, seed: int = 0) -> Path:
        return self.root / "students" / f"{model_slug(key)}_s{seed}"

    def eval_dir(self, eval_set: str) -> Path:
        return self.root / "eval" / eval_set_key(eval_set)

    def results_dir(self, eval_set: str) -> Path:
        return self.root / "results" / eval_set_key(eval_set)

    @property
    def figures_dir(self) -> Path:
        return paths.figures_dir() / self.name

    def student(self, key: str, seed: int = 0) -> Path:
        """The run dir of a trained (finished) student; raises listing the trained ones when it does not
        exist, naming the run dir when it has not finished, and for a key whose method is not exactly a
        registered one (folder names are slugs: ``logit-attention`` must not find ``logit+attention``)."""
        from .methods import get_method

        get_method(parse_key(key)[0].partition("[")[0])  # exact names only; the error lists near matches
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
        if (self.teacher_dir / "checkpoint.pt").is_file():
            out.append(Model("teacher", 0, self.teacher_dir, _split_of(self.teacher_dir)))
        sdir = self.root / "students"
        for d in sorted(sdir.iterdir()) if sdir.is_dir() else []:
            if (d / "summary.json").is_file() and (d / "checkpoint.pt").is_file():
                cfg = json.loads((d / "config.json").read_text())
                teacher = cfg.get("teacher") or ""
                external = teacher if is_external_teacher(teacher) else ""
                key = model_key(cfg["method"], external, bool(cfg.get("init_head_from_teacher")),
                                cfg.get("kd_weights"), cfg.get("kd_params"))
                out.append(Model(key, int(cfg.get("seed", 0)), d, _split_of(d)))
        return out


def _split_of(run_dir: Path) -> str:
    return json.loads((run_dir / "summary.json").read_text()).get("split", "unknown") \
        if (run_dir / "summary.json").is_file() else "unknown"


# ----------------------------------------------------------------------------------------------- data
def data_available(data_dir: str | None = None) -> bool:
    try:
        d = paths.data_dir(data_dir or None)
    except FileNotFoundError:
        return False
    return (d / "lfw" / "pairs.txt").is_file()


def _loud(msg: str):
    bar = "!" * min(len(msg) + 4, 100)
    print(f"{bar}\n! {msg}\n{bar}", file=sys.stderr)


def _synthetic_refused() -> bool:
    """``$LQLIB_SYNTHETIC=refuse``: set by :mod:`lqlib.run` in its notebooks unless the run allows synthetic data."""
    return os.environ.get("LQLIB_SYNTHETIC") == "refuse"


def resolve_training_data(data: str, data_dir: str | None = None, synthetic_fallback: bool = True) -> str:
    """The training-data spec to use: ``data`` itself, or ``"synthetic"`` (with a loud notice) when
    ``data`` names a split whose face data cannot be found and the fallback is allowed."""
    if data == "synthetic" or paths.resolve(data).exists() or data_available(data_dir):
        return data
    if not synthetic_fallback or _synthetic_refused():
        where = paths.data_dir(data_dir or None)  # raises with the message naming $LQLIB_DATA
        raise FileNotFoundError(f"training data {data!r} not found, and the face-data directory {where} has no "
                                "lfw/pairs.txt" + (" (lqlib.run refuses synthetic data without --synthetic)"
                                                   if _synthetic_refused() else ""))
    _loud("no face data found (see README: ../shared/data or $LQLIB_DATA): using a SYNTHETIC identity set")
    return "synthetic"


def load_eval_pairs(source: str = "lfw-half", data_dir: str | None = None, max_pairs: int = 0,
                    synthetic_fallback: bool = True):
    """Evaluation pairs: a split name (lfw-half, lfw-10fold) or a .bin path; optionally a fold-balanced
    subset; synthetic pairs (loud notice) when no face data is found."""
    from .data import PairSet, load_pairs
    from .data.sources import pairs_source

    src = pairs_source(source)
    if src.kind == "bin" or data_available(data_dir) or not synthetic_fallback or _synthetic_refused():
        return load_pairs(str(src.path) if src.kind == "bin" else source, data_dir or None, max_pairs=max_pairs)
    _loud("no face data found: evaluating on SYNTHETIC pairs (numbers mean nothing about faces)")
    import torch

    from .data.synthetic import SyntheticFaces

    n = max_pairs or 200
    images, issame = SyntheticFaces(num_classes=20, images_per_class=10, seed=123).pairs(n)
    return PairSet(images, issame, torch.arange(n) * 5 // n, "synthetic")


def pair_faces(pairs, n: int = 4, same: bool = True):
    """The two images (A, B) of the first ``n`` same-person (or different-person) pairs."""
    idx = np.flatnonzero(pairs.issame.numpy() == same)[:n]
    return pairs.images[2 * idx], pairs.images[2 * idx + 1]


# ----------------------------------------------------------------------------------------------- training
def training_config(study: Study, role: str, *, recipe: str, data: str = "", data_dir: str = "", seed: int = 0,
                    method: str = "none", teacher: str = "", head_from_teacher: bool = False,
                    kd_weights: Optional[dict] = None, kd_params: Optional[dict] = None,
                    overrides: Optional[dict] = None):
    """A :class:`~lqlib.config.TrainConfig` for the teacher or a student of ``study`` from a recipe
    (:func:`lqlib.config.recipe`) and the notebook's parameters; ``overrides`` (the notebooks'
    ``TRAIN_OVERRIDES``) are applied last. ``teacher`` (students): empty for the study's own HR
    teacher, else an external teacher; ``head_from_teacher`` is the head-initialisation ablation."""
    from .config import TrainConfig, recipe as load_recipe

    d = load_recipe(recipe, role)
    key = model_key(method, teacher, head_from_teacher, kd_weights, kd_params) if role == "student" else "teacher"
    d.update(name=f"{study.name}-{model_slug(key)}-s{seed}", role=role, seed=seed,
             out_dir=str(study.teacher_dir if role == "teacher" else study.student_dir(key, seed)))
    d["data"] = resolve_training_data(data or d.get("data", "lfw-half"), data_dir)
    d["data_dir"] = data_dir or None
    if role == "student":
        d.update(method=method, teacher=teacher or str(study.teacher_dir), init_head_from_teacher=head_from_teacher,
                 kd_weights=dict(kd_weights or {}), kd_params=dict(kd_params or {}))
    d.update(overrides or {})
    return TrainConfig.from_dict(d)


# ----------------------------------------------------------------------------------------------- evaluation
def _check_leakage(model: Model, eval_set: str, allow: bool):
    if leaks(model.split, eval_set) and not allow:
        raise LeakageError(
            f"{model.name} (seed {model.seed}) was trained on {model.split!r}, whose training identities appear "
            f"in {eval_set!r} (refused: {', '.join(overlapping_eval_sets(model.split))}); evaluate on the split's "
            "own pairs, or pass allow_leakage=True (ALLOW_LEAKAGE in 03) to do it anyway")


def evaluate_study(study: Study, pairs, scales: Sequence[float] = (1, 2, 4, 8),
                   eval_modes: Sequence[str] = ("both", "cross"), protocol: str = "insightface", device=None,
                   batch_size: int = 256, extra_models: Optional[dict] = None, force: bool = False,
                   allow_leakage: bool = False):
    """Evaluate every model of the study on ``pairs`` (cached per model and evaluation set) → one tidy
    DataFrame: model (display name), method (student key or 'teacher'), seed, eval_mode, scale,
    acc_mean, acc_std, ... Per-pair correctness is kept in ``eval/<set>/<model>.npz`` for the pair-level
    tests. ``extra_models`` maps a key to a frozen model (e.g. an external teacher) evaluated the same
    way. A model trained on identities of this pair set is refused (:class:`LeakageError`)."""
    import pandas as pd
    import torch

    from .checkpoint import load_backbone
    from .evaluation import evaluate

    eval_set = getattr(pairs, "name", "pairs")
    out_dir = study.eval_dir(eval_set)
    key = {"pairs": eval_set, "n": int(len(pairs.issame)), "scales": [float(s) for s in scales],
           "eval_modes": list(eval_modes), "protocol": protocol}
    entries = [(m, None) for m in study.models()]
    entries += [(Model(k, 0, None, "external"), mdl) for k, mdl in (extra_models or {}).items()]
    frames = []
    for model, mdl in entries:
        if model.run_dir is not None:
            _check_leakage(model, eval_set, allow_leakage)
        tag = f"{model_slug(model.key)}_s{model.seed}"
        csv_p, npz_p, meta_p = (out_dir / f"{tag}.{ext}" for ext in ("csv", "npz", "json"))
        stamp = os.path.getmtime(model.run_dir / "checkpoint.pt") if model.run_dir is not None else 0.0
        if not force and csv_p.is_file() and npz_p.is_file() and meta_p.is_file():
            meta = json.loads(meta_p.read_text())
            if meta.get("key") == key and meta.get("checkpoint_mtime") == stamp:
                frames.append(pd.read_csv(csv_p))
                continue
        net = mdl if mdl is not None else load_backbone(model.run_dir)
        df, details = evaluate(net, pairs, scales=tuple(scales), eval_mode="+".join(eval_modes), protocol=protocol,
                               device=device, batch_size=batch_size, return_details=True)
        df = df.rename(columns={"seed": "eval_seed"})
        df.insert(0, "model", model.name)
        df.insert(1, "method", model.key)
        df.insert(2, "seed", model.seed)
        save_dataframe_csv(df, csv_p, index=False)
        arrays = {f"{k[0]}_x{k[1]:g}" if isinstance(k, tuple) else f"{eval_modes[0]}_x{float(k):g}": np.asarray(v)
                  for k, v in details.items()}
        with atomic_write(npz_p, "wb") as f:
            np.savez_compressed(f, **arrays)
        write_json(meta_p, {"key": key, "checkpoint_mtime": stamp})
        frames.append(df)
        del net
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if not frames:
        raise FileNotFoundError(f"no trained models under {study.root}: run 01_teacher_training and 02_kd_ablation first")
    results = pd.concat(frames, ignore_index=True)
    order = {k: i for i, k in enumerate(sorted(dict.fromkeys(results["method"]), key=reading_order))}
    return results.sort_values("method", key=lambda c: c.map(order), kind="stable", ignore_index=True)


PAPER_ABLATION = ("logit", "attention", "logit+attention")


def model_groups(results) -> dict[str, list[str]]:
    """The model keys of ``results`` in figure-sized groups, each in reading order and each with the
    baselines it is read against: "paper ablation" (BasicNet-HR, BasicNet-LR, the paper's KD terms),
    "other methods" (the same baselines and the study's other students, e.g. the seed methods) and,
    per external teacher, "← <teacher>" (the teacher's own row, BasicNet-LR and its students).
    Groups with no student of their own are left out ("all models" when that leaves none)."""
    keys = sorted(dict.fromkeys(results["method"]), key=reading_order)
    teacher_of = {k: parse_key(k)[1] for k in keys}
    base = [k for k in keys if k in ("teacher", "none")]
    own = [k for k in keys if k not in base and not k.startswith("teacher:") and not teacher_of[k]]
    paper = [k for k in own if "+".join(method_parts(k)) in PAPER_ABLATION]
    groups = {"paper ablation": base + paper, "other methods": base + [k for k in own if k not in paper]}
    for t in dict.fromkeys(t for t in teacher_of.values() if t):
        groups[f"← {t}"] = [k for k in keys if k == f"teacher:{t}"] + [k for k in base if k == "none"] + \
            [k for k in keys if teacher_of[k] == t]
    kept = {g: ks for g, ks in groups.items() if any(k not in base and not k.startswith("teacher:") for k in ks)}
    return kept or {"all models": keys}


def reading_order(key: str) -> tuple:
    """Sort key of a model key for tables and figures: BasicNet-HR, then the study's own students in the
    method registry's order (BasicNet-LR first; a combination after its last part, e.g. logit, attention,
    logit+attention), then each external teacher followed by its students in the same order."""
    from .methods import METHODS

    if key == "teacher":
        return (0,)
    if key.startswith("teacher:"):
        return (1, key.partition(":")[2], 0)
    pos = [list(METHODS).index(p) if p in METHODS else len(METHODS) for p in method_parts(key)]
    return (1, parse_key(key)[1], 1, max(pos), len(pos), key)


def external_teachers(names: Sequence[str]) -> dict:
    """``{"teacher:<label>": frozen model}`` for :func:`evaluate_study`'s ``extra_models``."""
    if not names:
        return {}
    from .teachers import build_teacher

    return {f"teacher:{teacher_label(n)}": build_teacher(n) for n in names}


def pair_correct_reader(study: Study, eval_set: str, eval_mode: str = "both"):
    """``f(method, seed, scale)`` → per-pair correctness from the evaluation cache (None if absent)."""
    def correct(method: str, seed: int, scale: float):
        p = study.eval_dir(eval_set) / f"{model_slug(method)}_s{seed}.npz"
        if not p.is_file():
            return None
        with np.load(p) as z:
            k = f"{eval_mode}_x{float(scale):g}"
            return z[k] if k in z.files else None
    return correct


def compare(study: Study, results, baseline: str = "none", scales: Sequence[float] = (4, 8),
            eval_mode: str = "both", methods: Optional[Sequence[str]] = None):
    """Every model (or ``methods``) vs ``baseline`` across seeds, Holm over this comparison
    (:func:`lqlib.evaluation.compare_to_baseline`)."""
    from .evaluation import compare_to_baseline

    eval_set = str(results["dataset"].iloc[0])
    return compare_to_baseline(results, baseline, scales, eval_mode, pair_correct_reader(study, eval_set, eval_mode),
                               methods=methods)


def compare_all(study: Study, results, external_teachers: Sequence[str] = (), scales: Sequence[float] = (4, 8),
                eval_mode: str = "both"):
    """The study's tests: every model vs BasicNet-LR; and, for each external teacher, its students vs
    the teacher's own accuracy (a one-sample test over seeds). One DataFrame, Holm within each."""
    import pandas as pd

    parts = [compare(study, results, "none", scales, eval_mode,
                     methods=[m for m in dict.fromkeys(results["method"]) if m not in ("none",)
                              and not m.startswith("teacher:")])]
    for t in external_teachers:
        label = teacher_label(t)
        students = [m for m in dict.fromkeys(results["method"]) if f"@{label}" in m]
        if students and f"teacher:{label}" in set(results["method"]):
            parts.append(compare(study, results, f"teacher:{label}", scales, eval_mode, methods=students))
    return pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]


def save_tables(study: Study, results, comparison=None, publish_dir: str = "") -> list[Path]:
    """Write the tidy CSV, the paper-layout markdown and the tests across seeds to
    ``results/<eval set>/`` of the study (and copy them to ``publish_dir`` when given)."""
    from .evaluation import paper_table, to_markdown

    out_dir = study.results_dir(str(results["dataset"].iloc[0]))
    out = [save_dataframe_csv(results, out_dir / "results.csv", index=False)]
    md = [f"# {results['dataset'].iloc[0]}: accuracy (%), ± = std over training seeds (ddof 1); fold sd separately\n"]
    for em in dict.fromkeys(results["eval_mode"]):
        md.append(f"## {em}\n\n{to_markdown(paper_table(results, em))}\n")
    if comparison is not None and len(comparison):
        out.append(save_dataframe_csv(comparison, out_dir / "tests.csv", index=False))
        cols = [c for c in ("model", "scale", "n", "acc", "baseline_acc", "delta", "delta_sd", "t", "p", "p_holm",
                            "significant", "pair_boot_p_max") if c in comparison.columns]
        for base, part in comparison.groupby("baseline", sort=False):
            md.append(f"## vs {display_name(base)}, across training seeds (t-test over seeds, Holm within this "
                      f"table; pair_boot_p_max: pair noise only)\n\n{to_markdown(part[cols], index=False)}\n")
    out.append(write_text(out_dir / "tables.md", "\n".join(md)))
    if publish_dir:
        dst = paths.resolve(publish_dir)
        dst.mkdir(parents=True, exist_ok=True)
        for p in out:
            shutil.copyfile(p, dst / p.name)
    return out
