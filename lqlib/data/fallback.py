"""The data a notebook gets: the real faces, or — when none are found and the run allows it — a synthetic
identity set with a loud notice (the smoke preset on a machine without ``../shared/data``).

``$LQLIB_SYNTHETIC=refuse`` (set by :mod:`lqlib.run` unless a run allows synthetic data) turns the fallback
into an error naming the data directory.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

from .. import paths
from .memory import pixel_hashes
from .sources import pairs_source
from .splits import PairSet, load_pairs
from .synthetic import SyntheticFaces


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
    _loud("no face data found (see README: ../shared/data, $LQLIB_DATA, or python -m lqlib.data fetch lfw): "
          "using a SYNTHETIC identity set")
    return "synthetic"


def load_eval_pairs(source: str = "lfw-half", data_dir: str | None = None, max_pairs: int = 0,
                    synthetic_fallback: bool = True):
    """Evaluation pairs: a split name (lfw-half, lfw-10fold) or a .bin path; optionally a fold-balanced
    subset; synthetic pairs (loud notice) when no face data is found."""
    src = pairs_source(source)
    if src.kind != "split" or data_available(data_dir) or not synthetic_fallback or _synthetic_refused():
        return load_pairs(str(src.path) if src.kind != "split" else source, data_dir or None, max_pairs=max_pairs)
    _loud("no face data found: evaluating on SYNTHETIC pairs (numbers mean nothing about faces)")
    n = max_pairs or 200
    images, issame = SyntheticFaces(num_classes=20, images_per_class=10, seed=123).pairs(n)
    return PairSet(images, issame, torch.arange(n) * 5 // n, "synthetic")


def pair_faces(pairs, n: int = 4, same: bool = True):
    """The two images (A, B) of the first ``n`` same-person (or different-person) pairs neither of whose photos
    has been shown yet, in either column: LFW's pair lists reuse a photo in nearby pairs ("Name 1 2", "Name 1 3";
    also "Name 1 4", "Name 2 4"), and a figure of four faces should show four photos in each column. Pairs
    repeating a photo fill in, in list order, only when there are too few others."""
    candidates = np.flatnonzero(pairs.issame.numpy() == same)
    first, second = (pixel_hashes(pairs.images[2 * candidates + k]).tolist() for k in (0, 1))
    shown, fresh = set(), np.zeros(len(candidates), dtype=bool)
    for i, (ha, hb) in enumerate(zip(first, second)):
        if ha not in shown and hb not in shown:
            fresh[i] = True
            shown.update((ha, hb))
    idx = np.concatenate([candidates[fresh], candidates[~fresh]])[:n]
    return pairs.images[2 * idx], pairs.images[2 * idx + 1]


__all__ = ["data_available", "resolve_training_data", "load_eval_pairs", "pair_faces"]
