"""A study's models on an identification set: cached per model, tables, CMC curves and top-k matches.

Layout (beside the verification results of :mod:`lqlib.study`)::

    runs/<name>/eval/<set>/<model>_s<seed>_id.{csv,npz,json}   rows, CMC curves + top-k per probe, cache key
    runs/<name>/eval/<set>/<set>.split.json               the layout's sidecar (rule, counts, entries)
    runs/<name>/results/<set>/identification.{csv,md}          tidy rows and mean ± sd tables

A blocked study's blocks, into the preset's results: :func:`pooled_identification` (each block's run folder, with
its weights) or :func:`published_identification` (what each block published per model, no weights).

Identification sets: ``lfw-half-id`` (from the shared data) and ``tinyface`` (``$LQLIB_TINYFACE`` or a path), see
:mod:`lqlib.data.id_layouts`; a layout CSV path works too. A missing data set is one printed line and ``None``.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Optional, Sequence

import numpy as np
import torch

from . import paths
from . import study as S
from .data.memory import image_hashes, image_thumbnails
from .data.id_layouts import ID_SETS, read_layout_csv, subset_probes, tinyface_root, write_layout_json
from .data.sources import eval_set_key
from .evaluation import to_markdown
from .evaluation.id_pipeline import decoded_faces, layout_labels, load_faces
from .io import save_dataframe_csv, write_text
from .model_key import ModelKey
from .presets import block_folders, block_spec, load_preset
from .study_eval import published_eval_dir
from .verdict import pool_block_rows

CMC_RANKS = 20


def load_layout(id_set: str = "lfw-half-id", data_dir: str = "", tinyface: str = "", max_probes: int = 0):
    """The set's layout (``max_probes``: an evenly spaced subset of the probes, the gallery whole), or
    ``None`` with one line on stderr when its data is not there."""
    layout = _load_layout(id_set, data_dir, tinyface)
    return subset_probes(layout, max_probes) if layout is not None else None


def _load_layout(id_set: str, data_dir: str, tinyface: str):
    if id_set == "tinyface":
        if tinyface_root(tinyface or None) is None:
            print(f"identification: tinyface skipped — no TinyFace Testing_Set at "
                  f"{tinyface or '$LQLIB_TINYFACE (unset)'}", file=sys.stderr)
            return None
        return ID_SETS["tinyface"](tinyface or None)
    if id_set == "lfw-half-id":
        if not S.data_available(data_dir or None):
            print("identification: lfw-half-id skipped — no LFW data (../shared/data or $LQLIB_DATA)", file=sys.stderr)
            return None
        return ID_SETS["lfw-half-id"](data_dir or None)
    if str(id_set).endswith(".csv"):
        return read_layout_csv(id_set)
    raise ValueError(f"unknown identification set {id_set!r}: lfw-half-id, tinyface or a layout .csv")


def layout_faces(layout, chunk: int = 2048) -> tuple:
    """The content fingerprint the leakage guard compares with a run's training faces: pixel hashes and
    thumbnails (:mod:`lqlib.data.memory`) of the layout's probes and gallery images — the faces that carry an
    identity; distractors do not (a model that saw a distractor's identity gains no mated match)."""
    p_paths, _, g_paths, _, distractor = layout_labels(layout)
    # the pixels the evaluation reads too (decoded_faces: one decode per file list, cached)
    parts = [(decoded_faces(p_paths), np.arange(len(p_paths))),
             (decoded_faces(g_paths), np.flatnonzero(~distractor))]
    hashes, thumbs = [], []
    for faces, rows in parts:
        for s in range(0, len(rows), chunk):
            imgs = torch.from_numpy(faces[rows[s:s + chunk]])
            hashes.append(image_hashes(imgs))
            thumbs.append(image_thumbnails(imgs))
    if not hashes:
        return np.zeros(0, np.uint64), np.zeros((0, 64), np.uint8), {}
    return np.unique(np.concatenate(hashes)), np.concatenate(thumbs), {}


def identify_study(study: S.Study, id_set: str = "lfw-half-id", scales: Sequence[float] = (1, 2, 4, 8),
                   eval_modes: Sequence[str] = ("cross", "both"), *, data_dir: str = "", tinyface: str = "",
                   max_probes: int = 0, device=None, batch_size: int = 256, use_templates: bool = False,
                   extra_models: Optional[dict] = None, force: bool = False, allow_leakage: bool = False,
                   models: Optional[Sequence] = None, publish_dir: str = ""):
    """Identification of every model of the study on ``id_set`` (cached per model) → one tidy DataFrame
    (model, model_key, method, teacher, seed, eval_mode, scale, distractors, rank1 ... mAP, dir_fpir0.01 ...), or ``None`` (one line
    on stderr) when the set's data is not available. The layout's sidecar is written to the eval folder;
    models trained on identities of the set are refused as in verification. ``models`` and ``publish_dir``
    as in :func:`lqlib.study.evaluate_study` (only these models; each model's files also published under
    ``<publish_dir>/eval/<set>/``, and models published there read back)."""
    import pandas as pd

    from .evaluation.id_pipeline import evaluate_identification

    layout = load_layout(id_set, data_dir, tinyface, max_probes)
    if layout is None:
        return None
    if id_set == "tinyface":
        scales, eval_modes = (1,), ("both",)  # natively low resolution: no synthetic degradation
    out_dir = study.eval_dir(layout.name)  # lfw-half-id[600] shares lfw-half-id's folder; the key tells them apart
    write_layout_json(layout, out_dir / f"{eval_set_key(layout.name)}.split.json")
    key = {"set": layout.name, "digest": layout.digest(), "scales": [float(s) for s in scales],
           "eval_modes": list(eval_modes), "templates": bool(use_templates)}
    entries = [(m, None) for m in (study.models() if models is None else models)]
    entries += [(S.Model(ModelKey.parse(k), 0, None, "external"), mdl) for k, mdl in (extra_models or {}).items()]
    faces = None if allow_leakage else layout_faces(layout)
    for model, _ in entries:  # every model is checked before any is evaluated: a refusal leaves nothing half-done
        if model.run_dir is not None:
            S._check_leakage(model, layout.name, allow_leakage, faces)

    def run_one(net):
        df, det = evaluate_identification(net, layout, scales, eval_modes, device=device, batch_size=batch_size,
                                          use_templates=use_templates, return_details=True)
        arrays = {}
        for (m, s, with_d), res in det["results"].items():
            name = f"{m}_x{s:g}_{'d' if with_d else 'nod'}"
            arrays[f"cmc_{name}"] = res.cmc(CMC_RANKS)
            if with_d:
                arrays[f"top_{name}"] = res.top_index.astype(np.int32)
                arrays[f"topscore_{name}"] = res.top_score.astype(np.float16)
        return df, arrays

    frames = S.evaluate_cached(entries, out_dir, key, run_one, tag_suffix="_id", force=force,
                               publish=S.published_eval_dir(publish_dir, layout.name), read_published=models is None)
    if not frames:
        raise FileNotFoundError(f"no trained models under {study.root}: run 01_teacher_training and 02_kd_ablation first")
    results = pd.concat(frames, ignore_index=True)
    return S.sort_models(results)


def id_tables(results, distractors: bool = True) -> dict:
    """``{"rank-1 (%), cross": table, "mAP (%), cross": table, ...}``: per eval mode, models × scales, mean ± sd
    over training seeds (:func:`lqlib.evaluation.id_pipeline.id_table`)."""
    from .evaluation.id_pipeline import id_table

    out = {}
    for em in dict.fromkeys(results["eval_mode"]):
        for metric, label in (("rank1", "rank-1 (%)"), ("mAP", "mAP (%)")):
            out[f"{label}, {em}"] = id_table(results, metric, em, distractors)
    return out


def save_id_tables(study: S.Study, results) -> list:
    """Tidy CSV and the mean ± sd tables (markdown) to ``results/<set>/``."""
    name = str(results["dataset"].iloc[0])
    out_dir = study.results_dir(name)
    md = [f"# {name}: identification, ± = std over training seeds (ddof 1)\n",
          "cross: gallery at HR, probes degraded; both: gallery and probes degraded. Gallery with distractors; "
          "ties pessimistic (definitions: lqlib.evaluation.identification).\n"]
    for title, table in id_tables(results).items():
        md.append(f"## {title}\n\n{to_markdown(table)}\n")
    return [save_dataframe_csv(results, out_dir / "identification.csv", index=False),
            write_text(out_dir / "identification.md", "\n".join(md))]


BLOCK_RUNS = "{preset}-b{block}"   # a blocked study's run folders, one per block, moved aside after its run


def pooled_identification(preset: str, id_set: str = "lfw-half-id", runs: str = BLOCK_RUNS,
                          scales: Sequence[float] = (1, 8), eval_modes: Sequence[str] = ("cross", "both"), *,
                          external_teachers: Sequence[str] = (), publish: bool = True, **kw):
    """Identification (exploratory) of every model of every block of a blocked ``preset`` on ``id_set``: block
    ``k``'s run folder is ``runs/<runs formatted with preset and block=k>`` (its weights; by default
    ``runs/<preset>-b<k>``), each evaluated by :func:`identify_study` (cached in that folder, so an interrupted
    call resumes). Block k's own teacher is recorded as teacher seed k when the blocks are seeds; an external
    teacher (frozen, the same in every block) is evaluated with the first block only. Returns the rows with a
    ``block`` column (None when the set's data is not available) and, with ``publish``, writes
    ``<publish>/identification/<set>.csv`` and ``.md`` (mean ± sd over blocks, :func:`id_tables`)."""
    spec = load_preset(preset)
    param, values = block_spec(spec)
    studies = {v: S.Study(runs.format(preset=spec["name"], block=v)) for v in values}
    missing = [str(st.root) for st in studies.values() if not st.root.is_dir()]
    if missing:
        raise FileNotFoundError(f"{preset}: no run folder of block(s) {missing} (runs={runs!r}: each block's run "
                                "folder with its weights, e.g. runs/verdict moved to runs/verdict-b0 after block 0)")
    frames = {}
    for i, (v, study) in enumerate(studies.items()):
        extra = S.external_teachers(list(external_teachers)) if i == 0 and external_teachers else None
        frames[v] = identify_study(study, id_set, scales, eval_modes, extra_models=extra, **kw)
        if frames[v] is None:
            return None
    out = pool_block_rows(frames, param)
    if publish:
        _publish_pooled(spec, id_set, out, len(values))
    return out


def _publish_pooled(spec: dict, id_set: str, rows, n_blocks: int) -> None:
    """``<publish>/identification/<set>.csv`` (rows with their block) and ``.md`` (mean ± sd over blocks)."""
    root = paths.resolve(spec["publish"]) / "identification"
    md = [f"# {id_set} (exploratory): identification of the {spec['name']} study's {n_blocks} blocks, "
          "± = std over blocks (ddof 1)\n",
          "cross: gallery at HR, probes degraded; both: gallery and probes degraded. Gallery with distractors.\n"]
    md += [f"## {title}\n\n{to_markdown(table)}\n" for title, table in id_tables(rows).items()]
    save_dataframe_csv(rows, root / f"{eval_set_key(id_set)}.csv", index=False)
    write_text(root / f"{eval_set_key(id_set)}.md", "\n".join(md))


def published_identification(preset: str, id_set: str = "lfw-half-id", *, partial: bool = False,
                             publish: bool = True):
    """Identification (exploratory) of a blocked ``preset`` from what its blocks published, no weights needed:
    each model's rows as it was evaluated (``blocks/<block>/eval/<set>/*_id.csv``, notebook 02's ``TEST_EVAL``
    and the block's test step with ``PUBLISH_MODELS``). Block k's own teacher is teacher seed k when the blocks
    are seeds; an external teacher (frozen, the same in every block) is kept once, from the first block. Returns
    the rows with a ``block`` column — or None, naming the blocks without files, unless ``partial`` (then the
    blocks that have them, written nowhere). With ``publish`` and every block present, writes
    ``<publish>/identification/<set>.{csv,md}`` as :func:`pooled_identification` does."""
    import pandas as pd

    spec = load_preset(preset)
    param, values = block_spec(spec)
    frames, missing = {}, []
    for v, folder in block_folders(spec).items():
        files = sorted(published_eval_dir(folder, id_set).glob("*_id.csv"))
        if files:
            frames[v] = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
        else:
            missing.append(v)
    if missing:
        print(f"{spec['name']}: no published identification on {id_set} in block(s) {param} {missing}"
              + ("; pooling the others" if partial and frames else ""))
        if not partial or not frames:
            return None
    out = pool_block_rows(frames, param)
    if publish and not missing:
        _publish_pooled(spec, id_set, out, len(values))
    return out


def best_student(results, scale: float = 8, eval_mode: str = "cross", metric: str = "rank1") -> Optional[str]:
    """The KD student (not BasicNet-LR, not a teacher) with the best mean ``metric`` at ``scale``."""
    df = results[(results["eval_mode"] == eval_mode) & results["distractors"].astype(bool)
                 & np.isclose(results["scale"].astype(float), float(scale))]
    df = df[[not ModelKey.parse(k).is_teacher and k != "none" for k in df["model_key"]]]
    if not len(df):
        return None
    return str(df.groupby("model_key")[metric].mean().idxmax())


def cmc_curves(study: S.Study, results, scale: float = 8, eval_mode: str = "cross",
               keys: Optional[Sequence[str]] = None) -> dict:
    """``{display name: (n_seeds, 20) CMC}`` at ``scale`` from the cache, for ``keys`` (default: BasicNet-HR,
    BasicNet-LR and the best KD student)."""
    name = str(results["dataset"].iloc[0])
    if keys is None:
        keys = [k for k in ("teacher", "none", best_student(results, scale, eval_mode)) if k]
    out = {}
    for k in keys:
        rows = results[results["model_key"] == k].drop_duplicates("seed")
        curves = []
        for seed in rows["seed"]:
            p = study.eval_dir(name) / f"{ModelKey.parse(k).file_name}_s{int(seed)}_id.npz"
            with np.load(p) as z:
                arr = z.get(f"cmc_{eval_mode}_x{float(scale):g}_d")
                if arr is not None:
                    curves.append(arr)
        if curves:
            out[ModelKey.parse(k).display_name] = np.stack(curves)
    return out


def top_matches(study: S.Study, student_key: str, seed: int = 0, scale: float = 8, probe_index: int = 0,
                id_set: str = "lfw-half-id", data_dir: str = "", max_probes: int = 0, k: int = 5) -> list[dict]:
    """Rows for :func:`lqlib.plotting.match_grid`: the probe and its top-``k`` gallery matches for the teacher on
    the HR probe (×1) and for the student on the probe degraded at ``scale`` (gallery at HR, ``cross``), from
    :func:`identify_study`'s cache (03 with the same set and ``max_probes``); a missing cache is one printed
    line and ``[]``. The degraded probe shown is degraded afresh (identical to the evaluated copy for
    degradations without random draws, e.g. ``paper``)."""
    from .evaluation import degrade_eval

    layout = load_layout(id_set, data_dir, max_probes=max_probes)
    if layout is None:
        return []
    p_paths, p_lab, g_paths, g_lab, _ = layout_labels(layout)
    if not 0 <= probe_index < len(p_paths):
        raise IndexError(f"PROBE_INDEX {probe_index} out of range: {len(p_paths)} probes")
    rows = []
    for key, s, who in (("teacher", 1.0, "BasicNet-HR, HR probe"), (student_key, float(scale), None)):
        sd = 0 if key == "teacher" else seed
        p = study.eval_dir(layout.name) / f"{ModelKey.parse(key).file_name}_s{sd}_id.npz"
        name = f"cross_x{s:g}_d"
        with np.load(p) if p.is_file() else contextlib.nullcontext() as z:
            if z is None or f"top_{name}" not in z.files:
                print(f"top matches: no cross ×{s:g} identification of {key} (seed {sd}) in {p.parent} — run 03 with "
                      f"ID_SET={id_set!r} and this scale first", file=sys.stderr)
                return []
            idx, score = z[f"top_{name}"][probe_index][:k], z[f"topscore_{name}"][probe_index][:k]
        probe = load_faces([p_paths[probe_index]])
        if s != 1.0:
            probe = degrade_eval(probe, s, seed=0)
        rows.append({"label": who or f"{ModelKey.parse(key).display_name}, probe ×{s:g}", "probe": probe[0],
                     "matches": load_faces([g_paths[i] for i in idx]), "scores": score.astype(float),
                     "correct": g_lab[idx] == p_lab[probe_index]})
    return rows
