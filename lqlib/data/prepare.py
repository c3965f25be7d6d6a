"""The prepare step: pack the ``lfw-half`` split into files small enough for one device transfer.

Outputs (in ``out``):

* ``train.rec`` / ``train.idx`` — the lfw-half training set as an InsightFace IndexedRecordIO pack
  (labels ``0..K-1`` contiguous, grouped by identity; see :mod:`lqlib.data.recordio`);
* ``lfw_half.bin`` — the 3,000 evaluation pairs of official folds 1–5, in official order;
* ``lfw.bin`` — all 6,000 pairs (the ``lfw-10fold`` split);
* ``manifest.json`` — counts, the overlap check, file sizes, source paths and fingerprint, the JPEG
  quality and the lqlib version. Written last: a pack without a manifest is incomplete.

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
from ..io import write_json
from .binfile import write_bin
from .datasets import encode_jpeg, parallel_map, read_image_rgb, reencode_jpeg
from .splits import LFW_PAIRS, Split, lfw_10fold, lfw_half
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
