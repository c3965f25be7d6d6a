"""A study on disk: the teacher, the students and their evaluation under ``runs/<name>/``.

The notebooks share this layout through the run name::

    runs/<name>/teacher/                    the HR teacher (BasicNet-HR)
    runs/<name>/students/<mode>_s<seed>/    one student per KD mode and seed (mode none = BasicNet-LR)
    runs/<name>/eval/                       per-model results (CSV) and per-pair correctness (.npz)
    runs/<name>/results/                    tables: tidy CSV, paper-layout markdown, paired tests
    figures/<name>/                         figures (PDF + PNG)

The functions here turn the notebooks' literal parameters into library calls, so a notebook stays
narrative plus a few lines.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from . import paths
from .io import save_dataframe_csv, write_json, write_text

DISPLAY = {"teacher": "BasicNet-HR", "none": "BasicNet-LR", "logit": "+logit KD", "attention": "+attention KD",
           "logit+attention": "+logit+attention KD"}


def display_name(mode: str) -> str:
    """Table name of a model: the teacher is BasicNet-HR, a student without KD BasicNet-LR; a student
    of an external teacher ``<mode>@<teacher>`` reads "<mode> ← <teacher>"."""
    if "@" in mode:
        m, t = mode.split("@", 1)
        return f"{DISPLAY.get(m, m)} ← {t}"
    return DISPLAY.get(mode, mode)


def teacher_label(teacher: str) -> str:
    """Short name of an external teacher (a registered name, or the stem of its .onnx / spec .json)."""
    p = Path(teacher)
    if p.suffix.lower() in (".onnx", ".json"):
        return p.parent.name if p.stem == "spec" else p.stem
    return str(teacher)


def model_key(method: str, teacher: str = "") -> str:
    """The study's key of a student: its KD method, plus ``@<teacher>`` when the teacher is external."""
    return f"{method}@{teacher_label(teacher)}" if teacher else method


def _slug(mode: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", mode).strip("-")


@dataclass
class Study:
    name: str

    @property
    def root(self) -> Path:
        return paths.runs_dir() / self.name

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    def student_dir(self, mode: str, seed: int = 0) -> Path:
        return self.root / "students" / f"{_slug(mode)}_s{seed}"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def figures_dir(self) -> Path:
        return paths.figures_dir() / self.name

    def student(self, mode: str, seed: int = 0) -> Path:
        """The run dir of a trained student; falls back to any trained student (then the teacher)
        so that the figure notebooks also run on a partial study."""
        want = self.student_dir(mode, seed)
        if (want / "checkpoint.pt").is_file():
            return want
        found = [d for m, s, d in self.models() if m != "teacher"]
        if not found and not (self.teacher_dir / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"no trained model under {self.root}: run 01_teacher_training and 02_kd_ablation")
        fallback = found[0] if found else self.teacher_dir
        print(f"note: no student {mode!r} (seed {seed}) in {self.root}; using {fallback.name}", file=sys.stderr)
        return fallback

    def models(self) -> list[tuple[str, int, Path]]:
        """Every trained model of the study as (mode, seed, run dir); the teacher has mode 'teacher'."""
        out = []
        if (self.teacher_dir / "checkpoint.pt").is_file():
            out.append(("teacher", 0, self.teacher_dir))
        sdir = self.root / "students"
        if sdir.is_dir():
            for d in sorted(sdir.iterdir()):
                summ = d / "summary.json"
                if summ.is_file() and (d / "checkpoint.pt").is_file():
                    s = json.loads(summ.read_text())
                    cfg = json.loads((d / "config.json").read_text())
                    teacher = cfg.get("teacher") or ""
                    external = teacher and Path(paths.resolve(teacher)) != self.teacher_dir
                    out.append((model_key(s["method"], teacher if external else ""), int(cfg.get("seed", 0)), d))
        return out


# ----------------------------------------------------------------------------------------------- data
def data_available(data_dir: str | None = None) -> bool:
    try:
        d = paths.data_dir(data_dir or None)
    except FileNotFoundError:
        return False
    return (d / "lfw" / "pairs.txt").is_file()


def resolve_training_data(data: str, data_dir: str | None = None, synthetic_fallback: bool = True) -> str:
    """The training-data spec to use: ``data`` itself, or ``"synthetic"`` (with a loud notice) when
    ``data`` names a protocol whose face data cannot be found and the fallback is allowed."""
    if data == "synthetic":
        return data
    p = paths.resolve(data)
    if p.exists():
        return str(p)
    if data_available(data_dir):
        return data
    if not synthetic_fallback:
        paths.data_dir(data_dir or None)  # raises with the message naming $LQLIB_DATA
        raise FileNotFoundError(f"training data {data!r} not found")
    _loud("no face data found (see README: ../shared/data or $LQLIB_DATA): using a SYNTHETIC identity set")
    return "synthetic"


def _loud(msg: str):
    bar = "!" * min(len(msg) + 4, 100)
    print(f"{bar}\n! {msg}\n{bar}", file=sys.stderr)


def load_eval_pairs(source: str = "lfw-half", data_dir: str | None = None, max_pairs: int = 0,
                    synthetic_fallback: bool = True):
    """Evaluation pairs: a protocol name (lfw-half, lfw-10fold) or a .bin path; optionally a
    fold-balanced subset; synthetic pairs (loud notice) when no face data is found."""
    from .data import PairSet, load_pairs

    p = paths.resolve(source)
    if p.suffix == ".bin" or data_available(data_dir) or not synthetic_fallback:
        return load_pairs(str(p) if p.suffix == ".bin" else source, data_dir or None, max_pairs=max_pairs)
    _loud("no face data found: evaluating on SYNTHETIC pairs (numbers mean nothing about faces)")
    from .data.synthetic import SyntheticFaces
    import torch

    n = max_pairs or 200
    images, issame = SyntheticFaces(num_classes=20, images_per_class=10, seed=123).pairs(n)
    return PairSet(images, issame, torch.arange(n) * 5 // n, "synthetic")


def pair_faces(pairs, n: int = 4, same: bool = True):
    """The two images (A, B) of the first ``n`` same-person (or different-person) pairs."""
    idx = np.flatnonzero(pairs.issame.numpy() == same)[:n]
    return pairs.images[2 * idx], pairs.images[2 * idx + 1]


# ----------------------------------------------------------------------------------------------- training
def training_config(study: Study, role: str, *, mode: str = "none", seed: int = 0, overrides: Optional[dict] = None,
                    teacher: str = "", **params):
    """A :class:`~lqlib.train.TrainConfig` for the teacher or a student of ``study``.

    ``params`` are TrainConfig fields (lower-case); ``overrides`` is a dict applied last (the
    notebooks' ``TRAIN_OVERRIDES``). ``teacher`` (students only): empty for the study's own HR
    teacher, else an external teacher (:func:`lqlib.teachers.build_teacher`: a registered name, an
    ``.onnx`` or a spec ``.json``); the student then lives in ``students/<mode>@<teacher>_s<seed>``."""
    from .train import TrainConfig

    key = model_key(mode, teacher) if role == "student" else mode
    out = study.teacher_dir if role == "teacher" else study.student_dir(key, seed)
    d = dict(name=f"{study.name}-{'teacher' if role == 'teacher' else _slug(key)}-s{seed}", out_dir=str(out),
             role=role, method=mode if role == "student" else "none", seed=seed)
    if role == "student":
        d["teacher"] = teacher or str(study.teacher_dir)
        if teacher:
            d["init_head_from_teacher"] = False  # an external teacher has no head for our identities
    d.update({k: v for k, v in params.items() if v is not None})
    d.update(overrides or {})
    return TrainConfig.from_dict(d)


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_study(study: Study, pairs, scales: Sequence[float] = (1, 2, 4, 8), modes: Sequence[str] = ("both", "cross"),
                   protocol: str = "insightface", device=None, batch_size: int = 256, extra_models: Optional[dict] = None,
                   force: bool = False):
    """Evaluate every model of the study (cached per model) → one tidy DataFrame.

    Columns: method (display name), kd_mode (KD mode or 'teacher'), seed, mode (both/cross),
    scale, acc_mean, acc_std, tar_far1e-3, tar_far1e-2, auc, ... Per-pair correctness is kept in
    ``eval/<model>.npz`` for the paired tests. ``extra_models`` maps a display name to a model
    (e.g. an external teacher) evaluated the same way.
    """
    import pandas as pd
    import torch

    from .checkpoint import load_backbone
    from .evaluation import evaluate

    frames = []
    key = {"pairs": getattr(pairs, "name", "pairs"), "n": int(len(pairs.issame)), "scales": [float(s) for s in scales],
           "modes": list(modes), "protocol": protocol}
    models = [(m, s, d, None) for m, s, d in study.models()]
    models += [(name, 0, None, mdl) for name, mdl in (extra_models or {}).items()]
    for mode, seed, run_dir, model in models:
        tag = f"{_slug(mode)}_s{seed}"
        csv_p, npz_p, meta_p = (study.eval_dir / f"{tag}.{ext}" for ext in ("csv", "npz", "json"))
        stamp = os.path.getmtime(run_dir / "checkpoint.pt") if run_dir is not None else 0.0
        if not force and csv_p.is_file() and npz_p.is_file() and meta_p.is_file():
            meta = json.loads(meta_p.read_text())
            if meta.get("key") == key and meta.get("checkpoint_mtime") == stamp:
                frames.append(pd.read_csv(csv_p))
                continue
        mdl = model if model is not None else load_backbone(run_dir)
        df, details = evaluate(mdl, pairs, scales=tuple(scales), mode="+".join(modes), protocol=protocol,
                               device=device, batch_size=batch_size, return_details=True)
        df = df.rename(columns={"seed": "eval_seed"})
        df.insert(0, "method", display_name(mode))
        df.insert(1, "kd_mode", mode)
        df.insert(2, "seed", seed)
        save_dataframe_csv(df, csv_p, index=False)
        arrays = {f"{k[0]}_x{k[1]:g}" if isinstance(k, tuple) else f"{modes[0]}_x{float(k):g}": np.asarray(v)
                  for k, v in details.items()}
        from .io import atomic_write

        with atomic_write(npz_p, "wb") as f:
            np.savez_compressed(f, **arrays)
        write_json(meta_p, {"key": key, "checkpoint_mtime": stamp})
        frames.append(df)
        del mdl
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if not frames:
        raise FileNotFoundError(f"no trained models under {study.root}: run 01_teacher_training and 02_kd_ablation first")
    return pd.concat(frames, ignore_index=True)


def external_teachers(names: Sequence[str]) -> dict:
    """``{"teacher:<label>": frozen model}`` for :func:`evaluate_study`'s ``extra_models`` (each name as
    :func:`lqlib.teachers.build_teacher` takes it)."""
    if not names:
        return {}
    from .teachers import build_teacher

    return {f"teacher:{teacher_label(n)}": build_teacher(paths.resolve(n) if Path(n).suffix else n) for n in names}


def paper_tables(results, eval_mode: str = "both"):
    """Paper layout (rows = methods, columns = ×1 ×2 ×4 ×8), mean ± std over seeds (fold std for a
    single seed), with BasicNet-HR and BasicNet-LR first."""
    from .evaluation import results_table

    df = results[results["mode"] == eval_mode]
    order = ["BasicNet-HR", "BasicNet-LR"] + [m for m in dict.fromkeys(df.method) if m not in ("BasicNet-HR", "BasicNet-LR")]
    frames = {}
    for m in order:
        sub = df[df.method == m]
        if sub.empty:
            continue
        g = sub.groupby("scale")
        agg = g.acc_mean.mean().to_frame("acc_mean")
        agg["acc_std"] = g.acc_mean.std(ddof=0) if sub.seed.nunique() > 1 else g.acc_std.mean()
        n = sub.seed.nunique()
        frames[f"{m} (n={n})" if n > 1 else m] = agg.reset_index()
    return results_table(frames)


def paired_tests(study: Study, results, baseline: str = "none", scales: Sequence[float] = (4, 8),
                 eval_mode: str = "both", n_boot: int = 2000):
    """Each KD mode vs ``baseline`` (BasicNet-LR) on the same pairs: per seed, paired bootstrap over
    pairs (Δ accuracy, 95% CI, p) and McNemar's test; one row per (mode, seed, scale)."""
    import pandas as pd

    from .evaluation import mcnemar, paired_bootstrap

    def correct(mode, seed, scale):
        p = study.eval_dir / f"{_slug(mode)}_s{seed}.npz"
        if not p.is_file():
            return None
        with np.load(p) as z:
            k = f"{eval_mode}_x{float(scale):g}"
            return z[k] if k in z.files else None

    rows = []
    modes = [m for m in dict.fromkeys(results["kd_mode"]) if m not in ("teacher", baseline)]
    base_seeds = sorted(set(results[results["kd_mode"] == baseline].seed))
    for mode in modes + ["teacher"]:
        for seed in sorted(set(results[results["kd_mode"] == mode].seed)):
            bseed = seed if seed in base_seeds else (base_seeds[0] if base_seeds else None)
            if bseed is None:
                continue
            for s in scales:
                a, b = correct(mode, seed, s), correct(baseline, bseed, s)
                if a is None or b is None:
                    continue
                boot = paired_bootstrap(a, b, n_boot=n_boot, seed=seed)
                mc = mcnemar(a, b)
                rows.append({"method": display_name(mode), "kd_mode": mode, "seed": seed, "baseline_seed": bseed,
                             "scale": s, "mode": eval_mode, **{f"boot_{k}": v for k, v in boot.items()},
                             **{f"mcnemar_{k}": v for k, v in mc.items()}})
    return pd.DataFrame(rows)


def save_tables(study: Study, results, tests=None, publish_dir: str = "") -> list[Path]:
    """Write tidy CSV + paper-layout markdown (+ paired tests) to the study's results dir, and copy
    them to ``publish_dir`` (e.g. results/lfw_half) when given."""
    from .evaluation import to_markdown

    out = [save_dataframe_csv(results, study.results_dir / "results.csv", index=False)]
    md = []
    for em in sorted(set(results["mode"])):
        md.append(f"## {em} (accuracy %, mean ± std)\n\n{to_markdown(paper_tables(results, em))}\n")
    if tests is not None and len(tests):
        out.append(save_dataframe_csv(tests, study.results_dir / "paired_tests.csv", index=False))
        cols = [c for c in ("method", "seed", "scale", "boot_delta", "boot_ci_low", "boot_ci_high", "boot_p_value",
                            "mcnemar_p_value") if c in tests.columns]
        md.append(f"## paired tests vs BasicNet-LR\n\n{to_markdown(tests[cols], index=False)}\n")
    out.append(write_text(study.results_dir / "tables.md", "\n".join(md)))
    if publish_dir:
        dst = paths.resolve(publish_dir)
        dst.mkdir(parents=True, exist_ok=True)
        for p in out:
            shutil.copyfile(p, dst / p.name)
    return out
