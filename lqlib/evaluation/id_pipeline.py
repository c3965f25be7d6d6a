"""Identification evaluation: a model on an identification layout (``lfw-half-id``, ``tinyface``, a layout file).

Pipeline (what :func:`evaluate_identification` does)::

    layout (probe / gallery / distractor paths) ─► load at 112×112 ─► degrade_eval(scale) ─► embed (+ flip)
      ─► features (mean of the normalised image and flip embeddings) ─► [gallery templates] ─► identify
         (CMC, mAP, DIR@FPIR; with and without the distractors)

* ``cross``: gallery at HR (×1), probes degraded at each scale — the HR-enrolment / LR-probe setting;
  ``both``: gallery and probes degraded at the same scale. At ×1 the two are the same search.
* Natively low-resolution sets (TinyFace) are resized to 112×112 on loading — bicubic
  (``torch.nn.functional.interpolate``, ``align_corners=False``, antialiased when shrinking), aspect ratio not
  kept, as the usual TinyFace evaluations feed 112×112 crops; the interpolation is recorded in every row. They
  are evaluated at ``scale = 1`` (no further degradation).
* Images are decoded once per file list (:func:`decoded_faces`: a memory-mapped ``.npy`` under ``cache/decoded/``,
  shared by every model, scale and process) and embedded in chunks of :data:`LOAD_CHUNK` (TinyFace's 153k
  distractors never sit in memory at once); chunk ``k`` is degraded with a seed derived from (``seed``, ``k``), so an image's degraded
  copy depends only on (seed, its position in the layout, scale).
* ``templates=True`` replaces the gallery images of an identity by one template (the mean of their
  normalised embeddings, flips included); probes stay single images.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .embedding import _embed_on, degrade_eval, prepared_model
from .identification import NO_IDENTITY, identify, image_features, templates

LOAD_CHUNK = 1024   # a multiple of DEGRADE_CHUNK
SIZE = 112
INTERPOLATION = "bicubic"
ID_MODES = ("cross", "both")


def load_faces(paths: Sequence[Path], size: int = SIZE, interpolation: str = INTERPOLATION) -> torch.Tensor:
    """uint8 RGB ``[N, 3, size, size]``: each image decoded and, when not ``size``×``size`` already, resized."""
    from ..data import read_image_rgb

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, p in enumerate(paths):
        img = read_image_rgb(p)
        if tuple(img.shape[1:]) != (size, size):
            down = img.shape[1] > size or img.shape[2] > size
            x = F.interpolate(img[None].float(), size=(size, size), mode=interpolation, align_corners=False,
                              antialias=down)
            img = x[0].round().clamp(0, 255).to(torch.uint8)
        out[i] = img
    return out


def _chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.SeedSequence([int(seed), 7919, int(chunk)]).generate_state(1, np.uint32)[0])


def decoded_faces(paths: Sequence[Path], size: int = SIZE, interpolation: str = INTERPOLATION) -> np.ndarray:
    """uint8 ``[N, 3, size, size]`` of the images at ``paths`` (:func:`load_faces`), decoded once per file list and
    kept memory-mapped under ``cache/decoded/`` (:func:`lqlib.data.memory.decoded_files`): every model and
    scale of an identification, and the leakage guard, read the same pixels without decoding again."""
    from ..data.memory import decoded_files

    return decoded_files(paths, lambda chunk: load_faces(chunk, size, interpolation), (3, size, size),
                         {"kind": "id-faces", "size": size, "interpolation": interpolation}, chunk=LOAD_CHUNK)


def embed_faces(model, faces: np.ndarray, scale, dev, *, seed: int = 0, batch_size: int = 256, flip: bool = True,
                degrade_kw: Mapping[str, Any] | None = None, compile="auto") -> np.ndarray:
    """Features (:func:`image_features`) of decoded ``faces`` (:func:`decoded_faces`) degraded at ``scale``, in
    chunks of :data:`LOAD_CHUNK` (chunk ``k`` degraded with the seed of (``seed``, ``k``))."""
    feats = []
    for k, s in enumerate(range(0, len(faces), LOAD_CHUNK)):
        x = torch.from_numpy(np.array(faces[s:s + LOAD_CHUNK]))  # a writable copy of the chunk
        x = degrade_eval(x, scale, seed=_chunk_seed(seed, k), device=dev, degrade_kw=degrade_kw)
        e, ef = _embed_on(model, x, dev, batch_size, flip, compile)
        feats.append(image_features(e, ef))
    return np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)


def refuse_probes_in_gallery(probe_paths: Sequence[Path], probe_faces: np.ndarray, gallery_paths: Sequence[Path],
                             gallery_faces: np.ndarray) -> None:
    """A probe whose decoded pixels are those of a gallery (or distractor) image — one image listed twice, whatever
    its files are called — would find itself at rank 1: a :class:`~lqlib.data.splits.SplitError` naming the images.
    (The same path under both roles is refused with the layout, :mod:`lqlib.data.id_layouts`.) Re-encoded copies
    of a photo are not refused: real sets hold some under two names (LFW's Martha_Bowen_0002 is
    Gabrielle_Rose_0001), and they are the set's own."""
    from ..data.memory import pixel_hashes
    from ..data.splits import SplitError

    def hashes(faces):
        parts = [pixel_hashes(torch.from_numpy(np.array(faces[s:s + LOAD_CHUNK])))
                 for s in range(0, len(faces), LOAD_CHUNK)]
        return np.concatenate(parts) if parts else np.zeros(0, np.uint64)

    ph, gh = hashes(probe_faces), hashes(gallery_faces)
    same = np.flatnonzero(np.isin(ph, gh))
    if len(same):
        first = {h: i for i, h in reversed(list(enumerate(gh.tolist())))}
        shown = "; ".join(f"{probe_paths[i]} = {gallery_paths[first[int(ph[i])]]}" for i in same[:3])
        raise SplitError(f"{len(same)} probe image(s) are also in the gallery (identical pixels), so a search would find "
                         f"the probe itself: {shown}{' ...' if len(same) > 3 else ''}; list each image under one role")


def layout_labels(layout) -> tuple[list[Path], np.ndarray, list[Path], np.ndarray, np.ndarray]:
    """(probe paths, probe labels, gallery paths, gallery labels, distractor mask): identities as integer codes
    in name order; distractors get :data:`NO_IDENTITY`."""
    names = sorted({e.identity for e in layout.entries if e.role != "distractor"})
    code = {n: i for i, n in enumerate(names)}
    probes = layout.role("probe")
    gallery = layout.role("gallery") + layout.role("distractor")
    p_lab = np.array([code[e.identity] for e in probes], np.int64)
    g_lab = np.array([code[e.identity] if e.role == "gallery" else NO_IDENTITY for e in gallery], np.int64)
    return ([e.path for e in probes], p_lab, [e.path for e in gallery], g_lab,
            np.array([e.role == "distractor" for e in gallery]))


def _parse_modes(eval_modes) -> list[str]:
    modes = [eval_modes] if isinstance(eval_modes, str) else list(eval_modes)
    bad = [m for m in modes if m not in ID_MODES]
    if bad or not modes:
        raise ValueError(f"identification eval_modes must be among {ID_MODES}, got {eval_modes!r}")
    return modes


def evaluate_identification(model: torch.nn.Module, layout, scales: Sequence[float] = (1, 2, 4, 8),
                            eval_modes: Sequence[str] = ("cross", "both"), *, seed: int = 0, batch_size: int = 256,
                            device=None, flip: bool = True, use_templates: bool = False,
                            degrade_kw: Mapping[str, Any] | None = None, top_k: int = 5,
                            return_details: bool = False, compile="auto"):
    """Identification of ``model`` on ``layout`` (an :class:`lqlib.data.id_layouts.IdLayout`) at each scale.

    Returns a DataFrame, one row per (eval mode, scale, distractors in the gallery or not): rank1, rank5, rank10,
    rank20, mAP, dir_fpir0.01, dir_fpir0.1 (all %), the FPIRs achieved, n_probes, n_mated, n_nonmated,
    n_gallery, dataset, templates, interpolation, seconds, preset, seed. With ``return_details=True`` also a
    dict ``(mode, scale, distractors) →`` :class:`~lqlib.evaluation.identification.IdentificationResult` and
    the HR gallery features (for browsing matches)."""
    import pandas as pd

    modes = _parse_modes(eval_modes)
    kw = dict(degrade_kw or {})
    p_paths, p_lab, g_paths, g_lab, distractor = layout_labels(layout)
    p_faces, g_faces = decoded_faces(p_paths), decoded_faces(g_paths)
    refuse_probes_in_gallery(p_paths, p_faces, g_paths, g_faces)
    native = layout.info.get("set") == "tinyface"
    rows, details, gallery_cache = [], {}, {}
    with prepared_model(model, device) as dev:
        def gallery_at(scale):
            key = float(scale)
            if key not in gallery_cache:
                gallery_cache[key] = embed_faces(model, g_faces, key, dev, seed=seed + 1, batch_size=batch_size,
                                                 flip=flip, degrade_kw=kw, compile=compile)
            return gallery_cache[key]

        for scale in scales:
            t0 = time.perf_counter()
            probes = embed_faces(model, p_faces, scale, dev, seed=seed, batch_size=batch_size, flip=flip,
                                 degrade_kw=kw, compile=compile)
            t_embed = time.perf_counter() - t0
            for m in modes:
                t1 = time.perf_counter()
                g = gallery_at(1 if m == "cross" else scale)
                for with_d in (True, False):
                    keep = np.ones(len(g_lab), bool) if with_d else ~distractor
                    gf, gl = (templates(g[keep], g_lab[keep]) if use_templates else (g[keep], g_lab[keep]))
                    res = identify(probes, p_lab, gf, gl, top_k=top_k)
                    if not use_templates:  # top-k as positions in the full gallery list
                        res.top_index = np.flatnonzero(keep)[res.top_index]
                    rows.append({"scale": scale, "eval_mode": m, "distractors": with_d, **res.summary(),
                                 "dataset": layout.name, "templates": use_templates,
                                 "interpolation": f"{INTERPOLATION} to {SIZE} (native LR)" if native else "none (112 px)",
                                 "seconds": t_embed + time.perf_counter() - t1,
                                 "preset": kw.get("preset", "paper"), "seed": seed})
                    details[(m, float(scale), with_d)] = res
            if float(scale) != 1.0:
                gallery_cache.pop(float(scale), None)
    df = pd.DataFrame(rows)
    if return_details:
        return df, {"results": details, "gallery_hr": gallery_cache.get(1.0), "gallery_paths": g_paths,
                    "probe_paths": p_paths, "probe_labels": p_lab, "gallery_labels": g_lab}
    return df


def evaluate_tinyface(model: torch.nn.Module, root=None, **kw):
    """TinyFace rank-1/5/20 and mAP (with and without its distractors) from ``root`` or ``$LQLIB_TINYFACE``;
    without the data: one line on stderr and ``None`` — never a number."""
    from ..data.id_layouts import tinyface_layout, tinyface_root

    if tinyface_root(root) is None:
        print(f"tinyface: skipped — no TinyFace Testing_Set at {root or '$LQLIB_TINYFACE (unset)'}", file=sys.stderr)
        return None
    kw.setdefault("scales", (1,))
    kw.setdefault("eval_modes", ("both",))
    return evaluate_identification(model, tinyface_layout(root), **kw)


def id_table(results, metric: str = "rank1", eval_mode: str = "cross", distractors: bool = True, decimals: int = 2):
    """Rows = models (BasicNet-HR, BasicNet-LR first), columns = scales, cells ``mean ± sd`` over training seeds
    (ddof 1; no ± for one seed), then ``n seeds``."""
    import math

    import pandas as pd

    from .tables import scale_label, table_order

    df = results[(results["eval_mode"] == eval_mode) & (results["distractors"] == distractors)]
    models = table_order(df["model"])
    scales = sorted(df["scale"].astype(float).unique())
    rows = []
    for m in models:
        sub = df[df["model"] == m]
        row = {}
        for s in scales:
            v = sub[np.isclose(sub["scale"].astype(float), s)][metric].astype(float)
            sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
            row[scale_label(s)] = "" if not len(v) else f"{v.mean():.{decimals}f}" + (
                "" if math.isnan(sd) else f" ± {sd:.{decimals}f}")
        row["n seeds"] = int(sub["seed"].nunique()) if "seed" in sub else 1
        rows.append(row)
    table = pd.DataFrame(rows, index=models)
    table.index.name = "model"
    return table
