"""The verdict study's analysis steps on a study on disk (issue 27), one call each for the notebooks.

* :func:`attention_measure_study` (and :func:`save_attention_measure`) — the attention measure that can fail
  (:mod:`lqlib.attention_similarity`): the study's CBAM teacher on ``n_faces`` HR faces vs every own
  student × seed (BasicNet-LR included) and the teacher itself on the LR copies, per block, with
  intervals across seeds;
* :func:`family_report` — the registered family's tests (:func:`lqlib.evaluation.hypotheses.family_tests`:
  Holm over exactly the family, MDE, verdicts) with a hierarchical bootstrap over seeds and identities
  beside each (:mod:`lqlib.evaluation.hierarchical`), read from the study's per-pair evaluation cache;
* :func:`family_verdicts` — the same for a preset's ``hypotheses`` block, refused on the test folds unless the
  block is registered, written beside the study's tables (and the results folder);
* :func:`publish_correctness` — every model × seed × scale × eval mode's per-pair correctness of one
  evaluation set as one bit-packed file for the results folder (:mod:`lqlib.evaluation.correctness`);
* :func:`pooled_family_verdicts` — a **blocked** preset (``blocks``, :mod:`lqlib.presets`: one teacher and one seed
  of every model per block) is tested once, on the blocks' published results and per-pair correctness pooled,
  when every block has published; a block's own test step publishes and tests nothing across seeds.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from . import paths
from .attention_similarity import attention_measure, distinct_faces, seed_t_interval
from .checkpoint import load_backbone
from .data.sources import eval_role, eval_set_key
from .data.splits import SPLITS
from .evaluation import degrade_eval
from .evaluation.embedding import unique_images
from .evaluation.correctness import load_correctness, pack_correctness
from .evaluation.hierarchical import hierarchical_bootstrap, pair_identities
from .evaluation.hypotheses import HypothesesError, family_tests, parse_family, require_registered
from .evaluation.tables import scale_label, to_markdown
from .io import atomic_write, save_dataframe_csv
from .model_key import EXTERNAL_TEACHER, OWN_TEACHER, ModelKey, reading_order
from .presets import block_folders, block_spec, load_preset, published
from .study import Study, pair_correct_reader
from .study_eval import cache_stem, correctness_names

TEACHER_ON_LR = "BasicNet-HR (teacher on LR)"


def attention_measure_study(study: Study, pairs, n_faces: int = 200, scale: float = 8.0, kind: str = "spatial",
                            measure: str = "pearson", include_teacher: bool = True, n_boot: int = 2000,
                            device=None, models: Optional[Sequence] = None):
    """One tidy frame (:func:`lqlib.attention_similarity.attention_measure` columns plus ``scale`` and
    ``pairs``): teacher on the first ``n_faces`` distinct HR faces of ``pairs`` vs each own student (all
    its seeds) on their deterministic ×``scale`` copies (:func:`lqlib.evaluation.degrade_eval`); models are
    loaded one at a time. Students of an external teacher are left out (their teacher has no CBAM maps).
    ``models``: only these of the study's models (:class:`lqlib.study.Model`; default all)."""
    if str(getattr(pairs, "name", "")) == "synthetic":   # no face data: the stand-in set has fewer faces (loud notice given)
        n_faces = min(n_faces, len(unique_images(pairs.images)[0]))
    faces = distinct_faces(pairs, n_faces)
    lr = degrade_eval(faces, float(scale))
    teacher = load_backbone(study.teacher_dir)
    groups: dict = {TEACHER_ON_LR: {0: teacher}} if include_teacher else {}
    chosen = study.models() if models is None else models
    for m in sorted(chosen, key=lambda m: (reading_order(m.key), m.seed)):   # the tables' order
        if m.key.is_teacher or m.external_teacher:
            continue
        groups.setdefault(m.name, {})[m.seed] = (lambda d=m.run_dir: load_backbone(d))
    if len(groups) == int(include_teacher):
        raise FileNotFoundError(f"no own student in {study.root}: run 02_kd_ablation first")
    df = attention_measure(teacher, groups, faces, lr, kind, measure, n_boot=n_boot, device=device)
    df.insert(1, "scale", float(scale))
    df["pairs"] = str(getattr(pairs, "name", ""))
    return df


def save_attention_measure(study: Study, measure, publish_dir: str = "") -> Path:
    """``runs/<study>/results/<pairs>/attention_measure.csv`` (atomically), also into ``publish_dir`` when
    given (as ``attention_measure_<pairs>.csv``); returns the study's path. Each table keeps the rows it held
    of models not in ``measure`` (a student measured as soon as it was trained, notebook 02's
    ``ATTENTION_EVAL``, whose weights a later day no longer has), named in one printed line; the rows of the
    models in ``measure`` are replaced."""
    name = str(measure["pairs"].iloc[0])
    out = study.results_dir(name) / "attention_measure.csv"
    targets = [out] + ([paths.resolve(publish_dir) / f"attention_measure_{eval_set_key(name)}.csv"] if publish_dir else [])
    for target in targets:
        table = measure
        if target.is_file():
            earlier = pd.read_csv(target)
            kept = earlier[~earlier["model"].isin(set(measure["model"]))]
            if len(kept):
                print(f"{target}: kept the earlier rows of {', '.join(dict.fromkeys(kept['model']))} (not measured now)")
                table = pd.concat([kept, measure], ignore_index=True)
        save_dataframe_csv(table, target, index=False)
    return out


def _subset_size(name: str) -> int:
    m = re.search(r"\[(\d+)\]$", str(name))
    return int(m.group(1)) if m else 0


def family_report(study: Optional[Study], results, hypotheses: dict, n_boot: int = 2000,
                  data_dir: Optional[str] = None, reader=None):
    """:func:`~lqlib.evaluation.hypotheses.family_tests` plus, per hypothesis, ``boot_ci_low``,
    ``boot_ci_high`` and ``boot_p`` of the hierarchical bootstrap (seeds, then identities) from the
    per-pair correctness cached by :func:`lqlib.study.evaluate_study` (or ``reader(eval_mode)`` →
    ``f(model key, seed, scale)``, e.g. :func:`packed_reader`). Identities come from the
    split the results were evaluated on (``dataset`` column); for a ``.bin`` set, or when a model's
    per-pair correctness is missing, those columns are NaN."""
    out = family_tests(results, hypotheses)
    eval_set = str(results["dataset"].iloc[0])
    base = eval_set_key(eval_set)
    ids = pair_identities(base, data_dir, _subset_size(eval_set)) if base in SPLITS else None
    cols = {"boot_ci_low": [], "boot_ci_high": [], "boot_p": []}
    for h in parse_family(hypotheses):
        r = None
        if ids is not None:
            read = reader(h.eval_mode) if reader is not None else pair_correct_reader(study, eval_set, h.eval_mode)
            seeds = sorted(int(s) for s in results["seed"].unique())
            a = {s: read(h.model, s, h.scale) for s in seeds}
            b = {s: read(h.baseline, s, h.scale) for s in seeds}
            a, b = {s: v for s, v in a.items() if v is not None}, {s: v for s, v in b.items() if v is not None}
            if set(a) & set(b):
                r = hierarchical_bootstrap(a, b, ids[0], ids[1], n_boot=n_boot)
        cols["boot_ci_low"].append(r["ci_low"] if r else np.nan)
        cols["boot_ci_high"].append(r["ci_high"] if r else np.nan)
        cols["boot_p"].append(r["p_value"] if r else np.nan)
    for k, v in cols.items():
        out[k] = v
    return out


def family_verdicts(study: Study, results, preset: str, publish_dir: str = "", n_boot: int = 2000,
                    data_dir: Optional[str] = None):
    """The family of ``preset``'s ``hypotheses`` block on ``results`` (:func:`family_report`), written to
    ``runs/<study>/results/<set>/family.csv`` and, with ``publish_dir``, also there with the packed per-pair
    correctness of the set (:func:`publish_correctness`). On a TEST set (``eval_role``: lfw-half) the block
    must be ``status: registered`` (:func:`~lqlib.evaluation.hypotheses.require_registered`); on the
    validation set a draft may be read (a dry run). Adds ``pairs`` and ``role`` columns."""
    spec = load_preset(preset)
    hyp = spec.get("hypotheses")
    if not hyp:
        raise HypothesesError(f"preset {preset!r} has no 'hypotheses' block")
    eval_set = str(results["dataset"].iloc[0])
    role = eval_role(eval_set)
    if role == "test":
        require_registered(hyp)
    if spec.get("blocks") and role == "test":   # one block: publish it; the family is tested on all blocks pooled
        if publish_dir:
            publish_correctness(study, eval_set, publish_dir)
            return pooled_family_verdicts(preset, eval_set, data_dir=data_dir, n_boot=n_boot)
        print(f"{preset}: one block of a blocked study; the family is tested on all blocks pooled "
              "(pooled_family_verdicts), not here")
        return None
    out = family_report(study, results, hyp, n_boot=n_boot, data_dir=data_dir)
    out.insert(0, "pairs", eval_set)
    out.insert(1, "role", role)
    save_dataframe_csv(out, study.results_dir(eval_set) / "family.csv", index=False)
    if publish_dir:
        save_dataframe_csv(out, paths.resolve(publish_dir) / "family.csv", index=False)
        publish_correctness(study, eval_set, publish_dir)
    return out


def publish_correctness(study: Study, eval_set: str, out_dir: str | Path) -> Path:
    """Pack ``runs/<study>/eval/<eval_set>/*.npz`` into ``<out_dir>/correctness_<eval set>.npz``."""
    out = paths.resolve(out_dir) / f"correctness_{eval_set_key(eval_set)}.npz"
    pack_correctness(study.eval_dir(eval_set), out)
    return out


def packed_reader(correctness: dict, eval_mode: str):
    """``f(model key, seed, scale)`` → per-pair correctness from :func:`lqlib.evaluation.correctness.load_correctness`
    output (``{<key file name>_s<seed>: {<eval mode>_x<scale>: bool array}}``), None where absent."""
    def correct(key: str, seed: int, scale: float):
        stem, name = correctness_names(key, seed, eval_mode, scale)
        return correctness.get(stem, {}).get(name)
    return correct


def _is_student(results):
    """Rows of students (a teacher's own row, external or not, has no method)."""
    return results["method"].fillna("").astype(str) != ""


def pool_block_rows(frames, param: str):
    """One frame from each block's rows (``{block value: frame}``), with a ``block`` column (last). When the blocks
    are seeds, block k's own teacher (``model_key`` teacher, recorded with seed 0) becomes teacher seed k, since
    block k's teacher is teacher seed k; an external teacher (``teacher:<label>``: one frozen model, the same in
    every block) is kept once, from the first block that has it."""
    out, external_seen = [], False
    for v, df in frames.items():
        key = df["model_key"].astype(str)
        df = df.assign(seed=df["seed"].where(key != OWN_TEACHER, int(v))) if param.lower() == "seed" else df
        external = key.str.startswith(EXTERNAL_TEACHER)
        if external_seen:
            df = df[~external]
        external_seen = external_seen or bool(external.any())
        out.append(df.assign(block=v))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["block"])


def pooled_results(preset: str, eval_set: str = "lfw-half"):
    """Every published block's ``results.csv`` rows of ``eval_set``, one frame with a ``block`` column first
    (:func:`pool_block_rows`). A block holds its own seed of every student (checked: a block's student rows carry
    seed = block value when the blocks are seeds). Empty (no rows) while no block has published."""
    param, _ = block_spec(load_preset(preset))
    frames = {}
    for v, path in published(preset, "results.csv").items():
        df = pd.read_csv(path)
        df = df[df["dataset"].astype(str) == eval_set]
        own = df[_is_student(df)]
        if param.lower() == "seed" and not own.empty and set(own["seed"].astype(int)) != {int(v)}:
            raise ValueError(f"{path}: block {param}={v} holds student seeds {sorted(set(own['seed'].astype(int)))}")
        frames[v] = df
    out = pool_block_rows(frames, param)
    out.insert(0, "block", out.pop("block"))
    return out


def pooled_family_verdicts(preset: str, eval_set: str = "lfw-half", data_dir: Optional[str] = None,
                           n_boot: int = 2000, publish: bool = True):
    """The registered family of a blocked ``preset`` on every block's published ``results.csv`` and
    ``correctness_<set>.npz`` pooled (block k holds seed k of every model, with its own teacher), returned and,
    with ``publish``, written to ``<publish>/family.csv``, ``<publish>/verdicts.md`` (:func:`verdict_table`)
    and ``<publish>/results.csv`` (all blocks' rows, :func:`pooled_results`) — or, while a block has not
    published, None (and nothing written), naming the blocks still missing."""
    spec = load_preset(preset)
    hyp = spec.get("hypotheses") or {}
    require_registered(hyp)
    param, _ = block_spec(spec)
    key = eval_set_key(eval_set)
    folders = block_folders(preset)
    have = [published(preset, n) for n in ("results.csv", f"correctness_{key}.npz")]
    missing = [v for v in folders if not all(v in h for h in have)]
    if missing:
        print(f"{preset}: {len(folders) - len(missing)} of {len(folders)} blocks published; missing {param} "
              f"{missing}: the family is tested when every block has published")
        return None
    results = pooled_results(preset, eval_set)
    correctness, own_teacher = {}, cache_stem(OWN_TEACHER, 0)
    for v, d in folders.items():
        for stem, arrays in load_correctness(d / f"correctness_{key}.npz").items():
            if stem == own_teacher and param.lower() == "seed":   # block k's teacher is teacher seed k
                stem = cache_stem(OWN_TEACHER, int(v))
            correctness[stem] = arrays    # one seed of each model per block, so no two blocks share a stem
    # the family compares students with students or with the block's own teacher (H6: BasicNet-LR vs BasicNet-HR);
    # an external teacher is one frozen model, not a seed of anything
    own = _is_student(results) | (results["model_key"].astype(str) == OWN_TEACHER)
    out = family_report(None, results[own], hyp, n_boot=n_boot, data_dir=data_dir,
                        reader=lambda mode: packed_reader(correctness, mode))
    out.insert(0, "pairs", eval_set)
    out.insert(1, "role", "test")
    out.insert(2, "blocks", len(folders))
    if publish:

        root = paths.resolve(spec["publish"])
        save_dataframe_csv(results, root / "results.csv", index=False)
        save_dataframe_csv(out, root / "family.csv", index=False)
        with atomic_write(root / "verdicts.md", "w", encoding="utf-8") as f:
            f.write(f"# {preset}: the registered family on {eval_set}, {len(folders)} blocks pooled "
                    f"(lqlib.verdict.pooled_family_verdicts)\n\n{to_markdown(verdict_table(out), index=False)}\n")
    return out


def pooled_attention_measure(preset: str, pairs: str = "lfw-half-val", level: float = 0.95, *,
                             partial: bool = False, publish: bool = True):
    """The attention measure of a blocked ``preset`` over its blocks: every block's published
    ``attention_measure_<pairs>.csv`` (one seed per model, its own teacher) pooled into one row per model ×
    network block — ``mean`` over blocks of the per-seed face means, ``seeds_sd`` (ddof 1), ``n_seeds``, the
    t-interval across them (cut to [−1, 1]), ``interval`` naming it; the teacher's own row (on the LR faces)
    likewise over the blocks' teachers. With ``publish``, written to ``<publish>/attention_measure_<pairs>.csv``
    once every block has published. While a block is missing: None, or with ``partial`` the blocks published so
    far (never written; ``n_seeds`` says how many)."""
    name = f"attention_measure_{eval_set_key(pairs)}.csv"
    found = published(preset, name)
    missing = [v for v in block_folders(preset) if v not in found]
    if missing:
        print(f"{preset}: the attention measure of blocks {missing} is not published yet"
              + ("; pooling the published ones" if partial and found else ""))
        if not (partial and found):
            return None
    frames = []
    for v, path in found.items():
        df = pd.read_csv(path)
        if (df["n_seeds"] != 1).any():
            raise ValueError(f"{path}: a block holds one seed of each model, found n_seeds {sorted(set(df['n_seeds']))}")
        frames.append(df.assign(study_block=v))
    per = pd.concat(frames, ignore_index=True)
    keys = [c for c in ("model", "kind", "measure", "block", "stage") if c in per]
    rows = []
    for k, g in per.groupby(keys, sort=False):
        m = g["mean"].to_numpy(dtype=float)
        n = len(m)
        mean, sd, lo, hi = (float(x) for x in seed_t_interval(m, level)) if n >= 2 else \
            (float(m[0]), float("nan"), float(g["ci_low"].iloc[0]), float(g["ci_high"].iloc[0]))
        rows.append({**dict(zip(keys, k)), "mean": mean, "seeds_sd": sd, "n_seeds": n,
                     "n_faces": int(g["n_faces"].min()), "ci_low": lo, "ci_high": hi,
                     "interval": f"t across {n} seeds (one per block)" if n >= 2 else "faces (1 seed)",
                     "face_ci_halfwidth": float(g["face_ci_halfwidth"].mean()), "pairs": pairs})
    out = pd.DataFrame(rows)
    if publish and not missing:
        save_dataframe_csv(out, paths.resolve(load_preset(preset)["publish"]) / name, index=False)
    return out


def pooled_teacher_metrics(preset: str):
    """Every published block's teacher curve (``teacher_metrics.csv``: one row per epoch) in one frame, with a
    ``block`` column first (block k's teacher is teacher seed k when the blocks are seeds)."""
    frames = [pd.read_csv(path).assign(block=v) for v, path in published(preset, "teacher_metrics.csv").items()]
    if not frames:
        return pd.DataFrame(columns=["block", "epoch"])
    df = pd.concat(frames, ignore_index=True)
    return df[["block"] + [c for c in df.columns if c != "block"]]


def pooled_student_metrics(preset: str):
    """Every published block's curve (``<run>_metrics.csv``, one row per epoch; notebook 02's ``PUBLISH_DIR``) of
    each student the family compares, in one frame with ``block``, ``model`` (display name) and ``model_key``
    first; block k holds seed k. Empty while no block has published a student."""
    spec = load_preset(preset)
    keys = []
    for h in parse_family(spec.get("hypotheses") or {}):
        keys += [ModelKey.parse(k) for k in (h.model, h.baseline) if not ModelKey.parse(k).is_teacher]
    keys = sorted(dict.fromkeys(keys), key=ModelKey.sort_key)
    frames = []
    for v, d in block_folders(preset).items():
        for key in keys:
            path = d / f"{key.file_name}_s{v}_metrics.csv"
            if path.is_file():
                df = pd.read_csv(path)
                df.insert(0, "block", v)
                df.insert(1, "model", key.display_name)
                df.insert(2, "model_key", str(key))
                frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["block", "model", "model_key", "epoch"])
    return pd.concat(frames, ignore_index=True)


def block_status(preset: str):
    """One row per block of a blocked ``preset``: which of its outputs are published (results, per-pair
    correctness, the attention measure), its teacher's stopping (epochs trained, best validation ×1 accuracy
    and its epoch, from ``teacher_summary.json``), and the machine and wall time of its run (``run_info.json``)."""
    param, _ = block_spec(load_preset(preset))
    rows = []
    for v, d in block_folders(preset).items():
        row = {"block": paths.block_name(param, v), "results": (d / "results.csv").is_file(),
               "correctness": any(d.glob("correctness_*.npz")), "attention": any(d.glob("attention_measure_*.csv"))}
        summary = d / "teacher_summary.json"
        if summary.is_file():
            conv = json.loads(summary.read_text()).get("convergence") or {}
            dec = conv.get("decision") or {}
            row.update({"teacher_epochs": conv.get("epochs_trained"), "teacher_best_val": dec.get("best"),
                        "teacher_best_epoch": dec.get("best_epoch")})
        info = d / "run_info.json"
        if info.is_file():
            run = json.loads(info.read_text())
            env = run.get("environment") or {}
            row.update({"cpu": env.get("cpu"), "gpu": env.get("gpu"),
                        "hours": round(float(run.get("total_seconds") or 0.0) / 3600.0, 2)})
        rows.append(row)
    return pd.DataFrame(rows)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_p(p):
    """A p-value as a reader compares it with α: four decimals from 0.001 up (``0.0847``); below, two significant
    digits and the power of ten (``8.3 × 10⁻⁶``), never ``0.0000``; ``—`` when there is none (NaN)."""
    p = float(p)
    if p != p:
        return "—"
    if p >= 1e-3 or p == 0.0:
        return f"{p:.4f}"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def _delta_cell(r):
    """A family row's mean paired difference as a table shows it: ``+1.50 ± 0.50 (n=5)``, no ``±`` without an sd."""
    sd = f" ± {r.delta_sd:.2f}" if r.delta_sd == r.delta_sd else ""
    return f"{r.delta:+.2f}{sd} (n={int(r.n)})"


def verdict_table(family):
    """The family's verdicts as a table for a README: one row per hypothesis — the comparison, the mean
    paired difference in points ± its sd over n seeds, raw and Holm p, the minimal detectable effect at the
    preset's power (Holm's first step), the hierarchical bootstrap's interval, and the verdict."""
    rows = [{"id": r.id, "comparison": f"{r.model} vs {r.baseline}", "scale": scale_label(r.scale),
             "eval mode": r.eval_mode, "direction": r.direction,
             "accuracy (model / baseline)": f"{r.acc:.2f} / {r.baseline_acc:.2f}", "Δ points (sd)": _delta_cell(r),
             "p": format_p(r.p), "p (Holm)": format_p(r.p_holm), "MDE (80 %)": f"{r.mde:.2f}",
             "bootstrap 95 % CI": (f"[{r.boot_ci_low:+.2f}, {r.boot_ci_high:+.2f}]"
                                   if r.boot_ci_low == r.boot_ci_low else "—"),
             "verdict": r.verdict} for r in family.itertuples()]
    return pd.DataFrame(rows)


def families_side_by_side(studies, publish: Optional[str] = None):
    """The registered families of several studies beside each other (e.g. the verdict study's 3-epoch students
    and the converged study's): one row per comparison — hypothesis id, model vs baseline, scale, eval mode — and
    for each study its accuracies, Δ ± sd (n), Holm p and verdict, "—" where that study did not test the
    comparison. ``studies`` maps a label to a ``family.csv``, a results folder holding one, or a family frame
    (:func:`pooled_family_verdicts`), in the column order wanted. With ``publish`` (a preset), the table is also
    written to ``<its publish folder>/side_by_side.md``."""
    key = ["id", "model", "baseline", "scale", "eval_mode"]
    frames = {}
    for label, fam in studies.items():
        if not isinstance(fam, pd.DataFrame):
            path = paths.resolve(str(fam))
            path = path / "family.csv" if path.is_dir() else path
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no family.csv for {label!r} (a study's results folder after its "
                                        "family was tested)")
            fam = pd.read_csv(path)
        missing = [c for c in key + ["acc", "baseline_acc", "delta", "delta_sd", "n", "p_holm", "verdict"]
                   if c not in fam]
        if missing:
            raise ValueError(f"{label!r}: the family has no column(s) {missing}")
        frames[label] = fam.assign(scale=fam["scale"].astype(float)).set_index(key)
    order = list(dict.fromkeys(k for fam in frames.values() for k in fam.index))
    rows = []
    for k in order:
        row = {"id": k[0], "comparison": f"{k[1]} vs {k[2]}", "scale": scale_label(k[3]), "eval mode": k[4]}
        for label, fam in frames.items():
            r = fam.loc[k] if k in fam.index else None
            if isinstance(r, pd.DataFrame):
                r = r.iloc[0]
            names = [f"{label}: {c}" for c in ("accuracy (model / baseline)", "Δ points (sd)", "p (Holm)", "verdict")]
            if r is None:
                row.update(dict.fromkeys(names, "—"))
                continue
            row.update(zip(names, (f"{r.acc:.2f} / {r.baseline_acc:.2f}", _delta_cell(r), format_p(r.p_holm),
                                   r.verdict)))
        rows.append(row)
    out = pd.DataFrame(rows)
    if publish:
        root = paths.resolve(load_preset(publish)["publish"])
        with atomic_write(root / "side_by_side.md", "w", encoding="utf-8") as f:
            f.write(f"# The registered families side by side: {', '.join(studies)} "
                    f"(lqlib.verdict.families_side_by_side)\n\n{to_markdown(out, index=False)}\n")
    return out


__all__ = ["pool_block_rows", "pooled_student_metrics", "attention_measure_study", "save_attention_measure", "family_report", "family_verdicts", "publish_correctness",
           "pooled_family_verdicts", "pooled_results", "packed_reader", "block_folders", "published",
           "pooled_attention_measure", "pooled_teacher_metrics", "block_status", "verdict_table", "format_p", "families_side_by_side",
           "TEACHER_ON_LR"]
