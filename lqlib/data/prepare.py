"""The prepare step: pack the ``lfw-half`` split into files small enough for one device transfer.

Outputs (in ``out``):

* ``train.rec`` / ``train.idx`` — the lfw-half training set as an InsightFace IndexedRecordIO pack
  (labels ``0..K-1`` contiguous, grouped by identity; see :mod:`lqlib.data.recordio`);
* ``lfw_half.bin`` — the 3,000 evaluation pairs of official folds 1–5, in official order;
* ``lfw.bin`` — all 6,000 pairs (the ``lfw-10fold`` split);
* ``manifest.json`` — counts, the overlap check, file sizes, source paths and fingerprint, the JPEG
  quality and the lqlib version. Written last: a pack without a manifest is incomplete.

:func:`prepare_insightface` packs any folder of aligned faces plus pair lists the same way, in InsightFace's
layout (``train.rec``/``.idx``, ``<name>.bin`` test sets such as ``agedb_30.bin`` / ``cplfw.bin``).

Every image is decoded (RGB) and re-encoded as JPEG at one quality. With no ``quality`` given, the
highest of :data:`QUALITIES` whose projected ``train.rec + train.idx + lfw_half.bin`` fits ``max_mb``
(1 MB = 10⁶ bytes) is chosen from a sample, then checked on the real files (stepping down if needed).
Every file is written atomically. Re-running with the same sources and settings is a no-op unless
``force``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from .. import __version__, paths
from ..io import write_json, write_text
from .binfile import write_bin
from .datasets import encode_jpeg, parallel_map, read_image_rgb, reencode_jpeg
from .folders import scan_identity_folders
from .splits import LFW_PAIRS, Split, TrainSample, check_disjoint, eval_pairs_at as _eval_pairs_at, lfw_10fold, lfw_half
from .recordio import write_rec

FORMAT_VERSION = 1
QUALITIES = (95, 90, 85, 80, 75, 70, 65, 60, 55, 50, 45, 40)
MB = 1_000_000
DEFAULT_OUT = "data/packs"
TRAIN_REC, TRAIN_IDX, HALF_BIN, FULL_BIN, MANIFEST = "train.rec", "train.idx", "lfw_half.bin", "lfw.bin", "manifest.json"
TRANSFER_FILES = (TRAIN_REC, TRAIN_IDX, HALF_BIN)
_SAMPLE = 300  # images per estimate sample (training and evaluation each)
_REC_OVERHEAD = 8 + 24 + 3 + 14  # frame + IRHeader + padding + .idx line, per training image


def _fingerprint(root: Path, files: list[Path]) -> str:
    """SHA-256 over ``pairs.txt`` and the relative path and size of every source image."""
    h = hashlib.sha256((root / LFW_PAIRS).read_bytes())
    for p in files:
        h.update(f"{p.relative_to(root)}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


def _unique_eval_paths(proto: Split) -> list[Path]:
    return sorted({q for p in proto.pairs for q in (p.path1, p.path2)})


def _stride_sample(items: list, n: int) -> list:
    step = max(1, len(items) // n)
    return items[::step][:n]


def _estimate_mb(train: list[Path], half_eval: list[Path], threads: int | None) -> dict[int, float]:
    """Projected transfer size (MB) per quality, from stride samples of training and evaluation images."""
    samples = {"train": _stride_sample(train, _SAMPLE), "eval": _stride_sample(half_eval, _SAMPLE)}
    decoded = {k: parallel_map(read_image_rgb, v, threads) for k, v in samples.items()}
    out = {}
    for q in QUALITIES:
        mean = {k: sum(parallel_map(lambda im: len(encode_jpeg(im, q)[0]), v, threads)) / max(len(v), 1)
                for k, v in decoded.items()}
        total = len(train) * (mean["train"] + _REC_OVERHEAD) + len(half_eval) * (mean["eval"] + 8)
        out[q] = round(total / MB, 2)
    return out


def _load_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _up_to_date(manifest: dict | None, out: Path, fingerprint: str, settings: dict) -> bool:
    if not manifest or manifest.get("format") != FORMAT_VERSION:
        return False
    if manifest.get("source", {}).get("fingerprint") != fingerprint or manifest.get("settings") != settings:
        return False
    files = manifest.get("files", {})
    return all((out / name).is_file() and (out / name).stat().st_size == files.get(name, {}).get("bytes")
               for name in (TRAIN_REC, TRAIN_IDX, HALF_BIN, FULL_BIN))


def _write_packs(out: Path, half: Split, full: Split, encoded: dict[Path, bytes]) -> dict[str, int]:
    """Write the four data files from the re-encoded images; return their sizes in bytes."""
    write_rec(out / TRAIN_REC, out / TRAIN_IDX, ((encoded[s.path], s.label) for s in half.train))
    for name, proto in ((HALF_BIN, half), (FULL_BIN, full)):
        # the same bytes object for repeated images: pickle stores each image once
        write_bin(out / name, [encoded[q] for p in proto.pairs for q in (p.path1, p.path2)],
                  [p.issame for p in proto.pairs], folds=[p.fold for p in proto.pairs])
    return {name: (out / name).stat().st_size for name in (TRAIN_REC, TRAIN_IDX, HALF_BIN, FULL_BIN)}


def _summary(m: dict) -> str:
    t, e, f = m["train"], m["eval"], m["files"]
    return "\n".join([
        f"  training identities : {t['identities']:,} ({t['celeba_identities']} CelebA + {t['lfw_identities']:,} LFW)",
        f"  training images     : {t['images']:,} ({t['celeba_images']:,} CelebA + {t['lfw_images']:,} LFW)",
        f"  eval pairs          : {e['lfw_half']['pairs']:,} lfw-half ({e['lfw_half']['folds']} folds), "
        f"{e['lfw']['pairs']:,} lfw",
        f"  identity overlap    : {m['overlap']['identities']} (images: {m['overlap']['images']})",
        f"  JPEG quality        : {m['quality']}",
        *(f"  {name:<20}: {f[name]['bytes'] / MB:7.2f} MB" for name in f),
        f"  transfer (rec+idx+half bin): {m['transfer_mb']:.2f} MB (limit {m['settings']['max_mb']} MB)",
    ])


def prepare(data_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None, *,
            quality: int | None = None, max_mb: float = 55.0, force: bool = False,
            threads: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Build (or confirm up to date) the lfw-half packs in ``out`` (default ``data/packs``); return the manifest.

    ``quality=None`` picks the highest quality fitting ``max_mb``; an explicit quality is used as given
    (with a warning if the packs exceed ``max_mb``). The returned manifest has ``"skipped": True``
    when nothing had to be rebuilt.
    """
    t0 = time.perf_counter()
    root = paths.data_dir(data_dir)
    out = paths.resolve(out if out is not None else DEFAULT_OUT)
    half, full = lfw_half(root), lfw_10fold(root)
    half_eval, all_eval = _unique_eval_paths(half), _unique_eval_paths(full)
    train_paths = [s.path for s in half.train]
    sources = sorted(set(train_paths) | set(all_eval))
    settings = {"quality": quality if quality is not None else "auto", "max_mb": max_mb}
    fingerprint = _fingerprint(root, sources)

    old = _load_manifest(out)
    if not force and _up_to_date(old, out, fingerprint, settings):
        log(f"prepare: {out} is up to date (same sources and settings); nothing to do (use --force to rebuild)")
        log(_summary(old))
        return {**old, "skipped": True}

    log(f"prepare: {len(train_paths):,} training images, {len(all_eval):,} evaluation images from {root}")
    estimates: dict[int, float] = {}
    if quality is None:
        estimates = _estimate_mb(train_paths, half_eval, threads)
        fitting = [q for q in QUALITIES if estimates[q] <= max_mb]
        candidates = QUALITIES[QUALITIES.index(fitting[0]):] if fitting else QUALITIES[-1:]
        log("prepare: projected transfer size by quality: " + ", ".join(f"q{q}={mb} MB" for q, mb in estimates.items()))
    else:
        candidates = (int(quality),)

    for q in candidates:
        t1 = time.perf_counter()
        blobs = parallel_map(lambda p: reencode_jpeg(p.read_bytes(), q, where=f"image file {p}"), sources, threads)
        encoded = dict(zip(sources, blobs))
        sizes = _write_packs(out, half, full, encoded)
        transfer = sum(sizes[n] for n in TRANSFER_FILES) / MB
        log(f"prepare: quality {q}: re-encoded and wrote packs in {time.perf_counter() - t1:.1f} s, "
            f"transfer {transfer:.2f} MB")
        if transfer <= max_mb or quality is not None or q == candidates[-1]:
            break
        log(f"prepare: {transfer:.2f} MB exceeds {max_mb} MB; trying a lower quality")
    if transfer > max_mb:
        log(f"prepare: WARNING: transfer size {transfer:.2f} MB exceeds --max-mb {max_mb}")

    hs, fs = half.stats, full.stats
    manifest = {
        "format": FORMAT_VERSION,
        "lqlib_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "split": "lfw-half",
        "source": {
            "data_dir": str(root),
            "pairs_txt": str(root / LFW_PAIRS),
            "image_roots": sorted({str(p.parent.parent) for p in sources}),
            "files": len(sources),
            "fingerprint": fingerprint,
        },
        "settings": settings,
        "quality": q,
        "quality_estimates_mb": estimates,
        "colour": "RGB JPEG",
        "train": {
            "identities": hs["train_identities"], "images": hs["train_images"],
            "celeba_identities": hs["train_celeba_identities"], "celeba_images": hs["train_celeba_images"],
            "lfw_identities": hs["train_lfw_identities"], "lfw_images": hs["train_lfw_images"],
        },
        "eval": {
            "lfw_half": {"file": HALF_BIN, "pairs": hs["eval_pairs"], "folds": hs["eval_folds"],
                         "same": hs["eval_same"], "diff": hs["eval_diff"], "images": hs["eval_images"]},
            "lfw": {"file": FULL_BIN, "pairs": fs["eval_pairs"], "folds": fs["eval_folds"],
                    "same": fs["eval_same"], "diff": fs["eval_diff"], "images": fs["eval_images"]},
        },
        "overlap": {"identities": hs["identity_overlap"], "images": hs["image_overlap"],
                    "ok": hs["identity_overlap"] == 0 and hs["image_overlap"] == 0},
        "files": {name: {"bytes": size} for name, size in sizes.items()},
        "transfer_mb": round(transfer, 3),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "label_names": half.identities,
    }
    write_json(out / MANIFEST, manifest)
    log(f"prepare: wrote {out} in {manifest['elapsed_s']} s")
    log(_summary(manifest))
    return manifest


# --------------------------------------------------------------------------- a folder → InsightFace's layout

PROPERTY = "property"  # InsightFace's "<classes>,<height>,<width>" beside train.rec


def prepare_insightface(images: str | os.PathLike, out: str | os.PathLike, pairs: dict[str, str | os.PathLike], *,
                        quality: int = 95, threads: int | None = None, log: Callable[[str], None] = print) -> dict:
    """An InsightFace-layout folder (what arcface_torch reads, and the paper preset's ``$LQLIB_WEBFACE``) from
    a folder of aligned 112×112 faces ``<images>/<identity>/<file>`` (``align``'s or ``fetch``'s output):

    * ``<name>.bin`` (+ its ``.folds.json``) for each ``name → pairs file`` of ``pairs`` (LFW's ``pairs.txt``
      format; ``Name n`` is ``<images>/<Name>/<Name>_NNNN.jpg``), e.g. ``{"agedb_30": ..., "cplfw": ...}``;
    * ``train.rec`` / ``train.idx`` — every identity named in **no** pair set (disjoint by construction, and
      checked), labels ``0..K-1``; ``property`` (``K,112,112``);
    * ``manifest.json`` (written last): counts, the sources, the JPEG quality.

    Every image is re-encoded as JPEG at ``quality``; every file is written atomically."""
    t0 = time.perf_counter()
    root, out = paths.resolve(images), paths.resolve(out)
    if not root.is_dir():
        raise FileNotFoundError(f"prepare: --images {root}: no such folder")
    if not pairs:
        raise ValueError("prepare: give at least one test pair set (--pairs NAME=PAIRS.txt)")
    sets = {name: _eval_pairs_at(root, Path(p)) for name, p in pairs.items()}
    test_names = {q.parent.name for prs in sets.values() for p in prs for q in (p.path1, p.path2)}
    samples = [(p, ident) for p, ident in scan_identity_folders(root) if ident not in test_names]
    if not samples:
        raise ValueError(f"prepare: every identity of {root} is in a pair set: nothing is left to train on")
    identities = sorted({ident for _, ident in samples})
    label = {ident: i for i, ident in enumerate(identities)}
    train = [TrainSample(p, label[ident], f"lfw/{ident}") for p, ident in samples]  # compared by name below
    for prs in sets.values():
        check_disjoint(train, prs)
    sources = sorted({s.path for s in train} | {q for prs in sets.values() for p in prs for q in (p.path1, p.path2)})
    encoded = dict(zip(sources, parallel_map(lambda p: reencode_jpeg(p.read_bytes(), quality, where=f"image file {p}"),
                                             sources, threads)))
    write_rec(out / TRAIN_REC, out / TRAIN_IDX, ((encoded[s.path], s.label) for s in train))
    for name, prs in sets.items():
        write_bin(out / f"{name}.bin", [encoded[q] for p in prs for q in (p.path1, p.path2)],
                  [p.issame for p in prs], folds=[p.fold for p in prs])
    write_text(out / PROPERTY, f"{len(identities)},112,112\n")
    manifest = {"format": FORMAT_VERSION, "lqlib_version": __version__, "layout": "insightface",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "split": str(out),
                "source": {"images": str(root), "pairs": {n: str(paths.resolve(p)) for n, p in pairs.items()}},
                "quality": quality, "colour": "RGB JPEG",
                "train": {"identities": len(identities), "images": len(train)},
                "eval": {name: {"file": f"{name}.bin", "pairs": len(prs), "folds": max(p.fold for p in prs) + 1,
                                "same": sum(p.issame for p in prs)} for name, prs in sets.items()},
                "overlap": {"identities": 0, "images": 0, "ok": True},
                "files": {n: {"bytes": (out / n).stat().st_size}
                          for n in (TRAIN_REC, TRAIN_IDX, *(f"{k}.bin" for k in sets))},
                "elapsed_s": round(time.perf_counter() - t0, 1), "label_names": identities}
    write_json(out / MANIFEST, manifest)
    log(f"prepare: {out}: train.rec {len(train):,} images of {len(identities):,} identities; "
        + ", ".join(f"{n}.bin {len(prs):,} pairs" for n, prs in sets.items()) + f" (JPEG q{quality})")
    return manifest
