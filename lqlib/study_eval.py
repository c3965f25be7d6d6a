"""Evaluating a study and reporting it: every model of a study on a pair set (cached per model and evaluation
set, leakage refused), the tidy results with the model key's columns, the tests across seeds, the tables
written to ``results/<eval set>/`` and the figure groups. The scoring itself is :mod:`lqlib.evaluation`; the
layout it reads and writes is :class:`lqlib.study.Study` (taken as an argument, so this module sits below it).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from . import paths
from .checkpoint import load_backbone, read_training_data
from .data.memory import image_hashes, image_thumbnails, shared_faces
from .data.sources import eval_set_key, leaks, overlapping_eval_sets
from .errors import LqlibError
from .evaluation import compare_to_baseline, evaluate, paper_table, to_markdown
from .io import atomic_write, save_dataframe_csv, write_bytes, write_json, write_text
from .model_key import ModelKey, reading_order
from .teachers import build_teacher


class LeakageError(LqlibError, ValueError):
    """A model would be evaluated on pairs whose identities it was trained on."""


@dataclass(frozen=True)
class Model:
    key: ModelKey     # the own teacher, an external teacher's row or a student
    seed: int
    run_dir: Path
    split: str        # the training split it was trained on

    def __post_init__(self):
        object.__setattr__(self, "key", ModelKey.parse(self.key))  # a key's text works too

    @property
    def name(self) -> str:
        return self.key.display_name

    @property
    def external_teacher(self) -> str:
        """The external teacher a student was distilled from ("" for the study's own teacher and its students)."""
        return self.key.teacher


def _check_leakage(model: Model, eval_set: str, allow: bool, faces: Optional[tuple] = None):
    """Refuse to score a model on pairs it was trained on: by content — any face of the pair set
    (``faces``: :func:`lqlib.data.memory.image_hashes` and :func:`~lqlib.data.memory.image_thumbnails` of
    its images, and optionally a dict remembering the comparisons) that is one of the run's recorded
    training faces (identical pixels, or the same photo re-encoded), whatever the file is called — and by
    name (splits known to share identities: :data:`lqlib.data.sources.LEAKY_EVAL_SETS`). A model whose
    training data is not recorded at all is refused too: it cannot be checked."""
    if allow:
        return
    how = "pass allow_leakage=True (ALLOW_LEAKAGE in 03) to do it anyway"
    where = f"{model.name} (seed {model.seed}, {model.run_dir})"
    if model.run_dir is not None and faces is not None:
        trained = read_training_data(model.run_dir)
        identical, copies = (0, 0)
        if trained.hashes is not None:  # students of one training set share its fingerprint: compared once
            seen = faces[2] if len(faces) > 2 else {}
            tag = trained.hashes.tobytes()
            if tag not in seen:
                seen[tag] = shared_faces(faces[0], faces[1], trained.hashes, trained.thumbs)
            identical, copies = seen[tag]
        if copies:
            raise LeakageError(f"{where} was trained on {copies} of the faces of {eval_set!r} ({identical} with "
                               "identical pixels, the others re-encoded copies), whatever the file is called: it "
                               f"would be scored on its own training faces; evaluate on other pairs, or {how}")
    if model.split == "unknown":
        raise LeakageError(f"{where}: what it was trained on is not recorded (no summary.json / training_data.json), "
                           f"so its evaluation on {eval_set!r} cannot be checked for leakage; {how}")
    if leaks(model.split, eval_set):
        raise LeakageError(
            f"{where} was trained on {model.split!r}, whose training identities appear "
            f"in {eval_set!r} (refused: {', '.join(overlapping_eval_sets(model.split))}); evaluate on the split's "
            f"own pairs, or {how}")


def evaluate_study(study, pairs, scales: Sequence[float] = (1, 2, 4, 8),
                   eval_modes: Sequence[str] = ("both", "cross"), protocol: str = "insightface", device=None,
                   batch_size: int = 256, extra_models: Optional[dict] = None, force: bool = False,
                   allow_leakage: bool = False, models: Optional[Sequence[Model]] = None,
                   load: Optional[Callable[[Path], torch.nn.Module]] = None, publish_dir: str = ""):
    """Evaluate every model of the study on ``pairs`` (cached per model and evaluation set) → one tidy
    DataFrame: model (display name), model_key, method ("" for a teacher's own row), teacher (the external
    teacher, "" for the study's own), seed, eval_mode, scale, acc_mean, acc_std, ... Per-pair correctness is kept in ``eval/<set>/<model>.npz`` for the pair-level
    tests. ``extra_models`` maps a key (e.g. :func:`external_teachers`) to a frozen model (e.g. an external teacher) evaluated the same
    way. A model trained on identities of this pair set is refused (:class:`LeakageError`). ``models``: only
    these of the study's models (default all); ``load``: run dir → backbone (default
    :func:`lqlib.checkpoint.load_backbone`; the GPU block loads every model into one compiled module).
    ``publish_dir``: each model's files are also published under ``<publish_dir>/eval/<set>/``, and, when
    ``models`` is not given, models published there but not trained in this run folder are read back
    (:func:`evaluate_cached`: a study block that spans days)."""
    eval_set = getattr(pairs, "name", "pairs")
    out_dir = study.eval_dir(eval_set)
    key = {"pairs": eval_set, "n": int(len(pairs.issame)), "scales": [float(s) for s in scales],
           "eval_modes": list(eval_modes), "protocol": protocol}
    entries = [(m, None) for m in (study.models() if models is None else models)]
    entries += [(Model(ModelKey.parse(k), 0, None, "external"), mdl) for k, mdl in (extra_models or {}).items()]
    # the faces of the pair set, by content (pixel hashes, thumbnails; comparisons remembered per training set)
    faces = None if allow_leakage else (image_hashes(pairs.images), image_thumbnails(pairs.images), {})
    for model, _ in entries:  # every model is checked before any is evaluated: a refusal leaves nothing half-done
        if model.run_dir is not None:
            _check_leakage(model, eval_set, allow_leakage, faces)

    def run_one(net):
        df, details = evaluate(net, pairs, scales=tuple(scales), eval_mode="+".join(eval_modes), protocol=protocol,
                               device=device, batch_size=batch_size, return_details=True)
        return df, {f"{k[0]}_x{k[1]:g}" if isinstance(k, tuple) else f"{eval_modes[0]}_x{float(k):g}": np.asarray(v)
                    for k, v in details.items()}

    frames = evaluate_cached(entries, out_dir, key, run_one, force=force, load=load,
                             publish=published_eval_dir(publish_dir, eval_set), read_published=models is None)
    if not frames:
        raise FileNotFoundError(f"no trained models under {study.root}: run 01_teacher_training and 02_kd_ablation first")
    results = pd.concat(frames, ignore_index=True)
    return sort_models(results)


def published_eval_dir(publish_dir: str | os.PathLike, eval_set: str) -> Optional[Path]:
    """``<publish_dir>/eval/<set>/``: where a study block publishes each model's evaluation files (None without
    ``publish_dir``)."""
    return paths.resolve(publish_dir) / "eval" / eval_set_key(eval_set) if publish_dir else None


def evaluate_cached(entries, out_dir: Path, key: dict, run_one: Callable, *, tag_suffix: str = "",
                    force: bool = False, load: Optional[Callable[[Path], torch.nn.Module]] = None,
                    publish: Optional[Path] = None, read_published: bool = True) -> list:
    """The per-model loop every study evaluation shares: for each ``(Model, frozen model or None)`` of
    ``entries``, reuse ``<out_dir>/<file name>_s<seed><tag_suffix>.{csv,npz,json}`` when its ``key`` and the
    checkpoint's time match, else load the model, ``run_one(net) → (DataFrame, {name: array})``, prefix the
    rows with the model's key columns and seed, and write the three files (atomically). Returns the frames.

    ``publish`` (a folder in results/, :func:`published_eval_dir`): every model's three files are copied there
    as soon as they exist, so a finished model's rows and per-pair correctness can be committed before its
    weights are gone; and (``read_published``) a model published there with the same ``key`` that is not among
    ``entries`` — trained on an earlier day, its run folder lost — is read from there (and copied into
    ``out_dir``, so the pair-level tests and packed correctness see it) instead of being evaluated."""
    frames, local = [], set()
    for model, mdl in entries:
        tag = f"{model.key.file_name}_s{model.seed}{tag_suffix}"
        local.add(tag)
        files = [out_dir / f"{tag}.{ext}" for ext in CACHE_PARTS]
        csv_p, npz_p, meta_p = files
        stamp = os.path.getmtime(model.run_dir / "checkpoint.pt") if model.run_dir is not None else 0.0
        if not force and csv_p.is_file() and npz_p.is_file() and meta_p.is_file():
            meta = json.loads(meta_p.read_text())
            if meta.get("key") == key and meta.get("checkpoint_mtime") == stamp:
                frames.append(key_columns(pd.read_csv(csv_p).rename(columns={"preset": "degradation"})))  # older caches
                _copy_new(files, publish)
                continue
        net = mdl if mdl is not None else (load or load_backbone)(model.run_dir)
        df, arrays = run_one(net)
        df = df.rename(columns={"seed": "eval_seed"})
        for i, (col, value) in enumerate({"model": model.name, **model.key.columns(), "seed": model.seed}.items()):
            df.insert(i, col, value)
        save_dataframe_csv(df, csv_p, index=False)
        with atomic_write(npz_p, "wb") as f:
            np.savez_compressed(f, **arrays)
        write_json(meta_p, {"key": key, "checkpoint_mtime": stamp})
        _copy_new(files, publish)
        frames.append(df)
        del net
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for tag in (_published_tags(publish, key, tag_suffix, local) if read_published else []):
        files = [publish / f"{tag}.{ext}" for ext in CACHE_PARTS]
        _copy_new(files, out_dir)
        frames.append(key_columns(pd.read_csv(files[0])))
    return frames


CACHE_PARTS = ("csv", "npz", "json")   # one model's rows, per-pair arrays and cache key


def _copy_new(files: Sequence[Path], dst: Optional[Path]):
    """Copy ``files`` into ``dst`` (atomically) where the copy is missing or differs; nothing without ``dst``."""
    if dst is None:
        return
    for f in files:
        target = dst / f.name
        data = f.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            write_bytes(target, data)


def _published_tags(publish: Optional[Path], key: dict, tag_suffix: str, skip: set) -> list[str]:
    """The file stems published in ``publish`` with this cache ``key`` (all three files present), but not in ``skip``."""
    if publish is None or not publish.is_dir():
        return []
    out = []
    for meta_p in sorted(publish.glob(f"*{tag_suffix}.json")):
        tag = meta_p.stem
        if tag in skip or not all((publish / f"{tag}.{ext}").is_file() for ext in CACHE_PARTS):
            continue
        try:
            meta = json.loads(meta_p.read_text())
        except ValueError as e:
            raise LqlibError(f"{meta_p}: not a valid published evaluation record ({e})") from None
        if isinstance(meta, dict) and meta.get("key") == key:
            out.append(tag)
    return out


def verification_thresholds(study, key, seed: int, eval_set: str, eval_mode: str = "both",
                            protocol: str = "insightface") -> dict[float, float]:
    """``{scale: threshold}`` of one model on ``eval_set`` from 03's cached evaluation (the mean of its
    fold thresholds, ``threshold_mean``; squared distances for the InsightFace protocol); ``{}`` when 03 has not
    evaluated the model there."""
    p = study.eval_dir(eval_set) / f"{cache_stem(key, seed)}.csv"
    if not p.is_file():
        return {}
    df = pd.read_csv(p)
    df = df[(df["eval_mode"] == eval_mode) & (df["protocol"] == protocol)]
    return {float(s): float(t) for s, t in zip(df["scale"], df["threshold_mean"])}


KEY_COLUMNS = ("model_key", "method", "teacher")


def key_columns(results):
    """``results`` with the model key's columns (``model_key``, ``method``, ``teacher``) derived from the key,
    right after ``model``. Tables written before the key had its own columns held it in ``method``."""
    keys = results["model_key"] if "model_key" in results else results["method"]
    rest = results.drop(columns=[c for c in KEY_COLUMNS if c in results])
    at = list(rest.columns).index("model") + 1 if "model" in rest else 0
    cols = [ModelKey.parse(k).columns() for k in keys.astype(str)]
    for i, col in enumerate(KEY_COLUMNS):
        rest.insert(at + i, col, [c[col] for c in cols])
    return rest


def sort_models(results):
    """The rows of ``results`` in the models' reading order (:meth:`ModelKey.sort_key`), stable within a model."""
    order = {k: i for i, k in enumerate(sorted(dict.fromkeys(results["model_key"]), key=reading_order))}
    return results.sort_values("model_key", key=lambda c: c.map(order), kind="stable", ignore_index=True)


PAPER_ABLATION = ("logit", "attention", "logit+attention")


def model_groups(results) -> dict[str, list[str]]:
    """The model keys of ``results`` in figure-sized groups, each in reading order and each with the
    baselines it is read against: "paper ablation" (BasicNet-HR, BasicNet-LR, the paper's KD terms),
    "other methods" (the same baselines and the study's other students, e.g. the seed methods) and,
    per external teacher, "← <teacher>" (the teacher's own row, BasicNet-LR and its students).
    Groups with no student of their own are left out ("all models" when that leaves none)."""
    keys = sorted({ModelKey.parse(k) for k in results["model_key"]}, key=ModelKey.sort_key)
    base = [k for k in keys if k in ("teacher", "none")]
    own = [k for k in keys if k not in base and not k.is_teacher and not k.teacher]
    paper = [k for k in own if k.method in PAPER_ABLATION]
    groups = {"paper ablation": base + paper, "other methods": base + [k for k in own if k not in paper]}
    for t in dict.fromkeys(k.teacher for k in keys if k.teacher):
        groups[f"← {t}"] = [k for k in keys if k.is_teacher and k.teacher == t] + [k for k in base if k == "none"] + \
            [k for k in keys if not k.is_teacher and k.teacher == t]
    kept = {g: [str(k) for k in ks] for g, ks in groups.items() if any(k not in base and not k.is_teacher for k in ks)}
    return kept or {"all models": [str(k) for k in keys]}


def external_teachers(names: Sequence[str]) -> dict:
    """``{teacher key: frozen model}`` for :func:`evaluate_study`'s ``extra_models``."""
    if not names:
        return {}
    return {str(ModelKey.external_teacher(n)): build_teacher(n) for n in names}


def cache_stem(key: str, seed: int) -> str:
    """One model × seed's file stem in the evaluation cache (``<stem>.csv`` rows, ``<stem>.npz`` per-pair
    correctness) and in packed correctness files."""
    return f"{ModelKey.parse(key).file_name}_s{int(seed)}"


def correctness_names(key: str, seed: int, eval_mode: str, scale: float) -> tuple[str, str]:
    """(file stem, array name) of one model × seed × eval mode × scale's per-pair correctness, in the
    evaluation cache (``<stem>.npz``) and in a packed file (:mod:`lqlib.evaluation.correctness`) alike."""
    return cache_stem(key, seed), f"{eval_mode}_x{float(scale):g}"


def pair_correct_reader(study, eval_set: str, eval_mode: str = "both"):
    """``f(model key, seed, scale)`` → per-pair correctness from the evaluation cache (None if absent)."""
    def correct(key: str, seed: int, scale: float):
        stem, k = correctness_names(key, seed, eval_mode, scale)
        p = study.eval_dir(eval_set) / f"{stem}.npz"
        if not p.is_file():
            return None
        with np.load(p) as z:
            return z[k] if k in z.files else None
    return correct


def compare(study, results, baseline: str = "none", scales: Sequence[float] = (4, 8),
            eval_mode: str = "both", models: Optional[Sequence[str]] = None):
    """Every model (or the model keys ``models``) vs the model key ``baseline`` across seeds, Holm over this comparison
    (:func:`lqlib.evaluation.compare_to_baseline`)."""
    eval_set = str(results["dataset"].iloc[0])
    return compare_to_baseline(results, baseline, scales, eval_mode, pair_correct_reader(study, eval_set, eval_mode),
                               models=models)


def compare_all(study, results, external_teachers: Sequence[str] = (), scales: Sequence[float] = (4, 8),
                eval_mode: str = "both"):
    """The study's tests: every model vs BasicNet-LR; and, for each external teacher, its students vs
    the teacher's own accuracy (a one-sample test over seeds). One DataFrame, Holm within each."""
    keys = [ModelKey.parse(k) for k in dict.fromkeys(results["model_key"])]
    parts = [compare(study, results, "none", scales, eval_mode,
                     models=[str(k) for k in keys if k != "none" and not k.is_teacher])]
    for t in external_teachers:
        teacher = ModelKey.external_teacher(t)
        students = [str(k) for k in keys if not k.is_teacher and k.teacher == teacher.teacher]
        if students and teacher in keys:
            parts.append(compare(study, results, str(teacher), scales, eval_mode, models=students))
    return pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]


def save_tables(study, results, comparison=None, publish_dir: str = "") -> list[Path]:
    """Write the tidy CSV, the paper-layout markdown and the tests across seeds to
    ``results/<eval set>/`` of the study (and copy them to ``publish_dir`` when given)."""
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
            md.append(f"## vs {ModelKey.parse(base).display_name}, across training seeds (t-test over seeds, Holm within this "
                      f"table; pair_boot_p_max: pair noise only)\n\n{to_markdown(part[cols], index=False)}\n")
    out.append(write_text(out_dir / "tables.md", "\n".join(md)))
    if publish_dir:
        dst = paths.resolve(publish_dir)
        dst.mkdir(parents=True, exist_ok=True)
        for p in out:
            shutil.copyfile(p, dst / p.name)
    return out
