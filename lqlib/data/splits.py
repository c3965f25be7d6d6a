"""Train/eval splits of the shared face data, and the :class:`PairSet` used for verification.

Splits (registry :data:`SPLITS`, looked up by :func:`get_split`):

* ``lfw-half`` — evaluation on LFW's first five folds, training on disjoint identities (:mod:`lqlib.data.lfw`,
  where ``pairs.txt`` is parsed);
* ``lfw-10fold`` — all pairs (6,000, 10 folds of 600) and no training set (:mod:`lqlib.data.lfw`).
* ``lfw-half-val`` — the validation split of lfw-half (:mod:`lqlib.data.validation`): training on
  lfw-half's training side minus 400 held-out LFW identities; pairs: 1,200 validation pairs (2 folds of
  600) drawn from those identities. lfw-half's test folds are never part of it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import paths
from .binfile import bin_folds, load_bin
from .datasets import parallel_map, read_image_rgb, stack_images
from .lfw import (CELEBA_IMAGES, LFW_IMAGES, LFW_PAIRS, EvalPair, PairSpec, Split, SplitError,  # noqa: F401
                  TrainSample, check_disjoint, eval_pairs_at, lfw_10fold, lfw_half, lfw_image_path, parse_pairs)
from .validation import lfw_half_val

SPLITS: dict[str, Callable[[str | os.PathLike | None], Split]] = {
    "lfw-half": lfw_half,
    "lfw-10fold": lfw_10fold,
    "lfw-half-val": lfw_half_val,
}


def get_split(name: str, data_dir: str | os.PathLike | None = None) -> Split:
    """Resolve split ``name`` on the data directory (argument → ``$LQLIB_DATA`` → ``../shared/data``)."""
    try:
        factory = SPLITS[name]
    except KeyError:
        raise KeyError(f"unknown split {name!r}; known: {', '.join(SPLITS)}") from None
    return factory(paths.data_dir(data_dir))


# --------------------------------------------------------------------------- PairSet

def contiguous_folds(n: int, k: int = 10) -> torch.Tensor:
    """Fold index of each of ``n`` pairs split into ``k`` contiguous, (nearly) equal folds."""
    return torch.arange(n, dtype=torch.int64) * k // max(n, 1)


@dataclass
class PairSet:
    """Verification pairs ready for evaluation: ``images`` uint8 **RGB** ``[2N, 3, H, W]`` (pair ``i`` is
    images ``2i`` and ``2i+1``), ``issame`` bool ``[N]``, ``folds`` int64 ``[N]`` (contiguous folds, from 0)."""

    images: torch.Tensor
    issame: torch.Tensor
    folds: torch.Tensor
    name: str = ""

    def __post_init__(self):
        n = len(self.issame)
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[0] != 2 * n:
            raise ValueError(f"PairSet {self.name!r}: images must be uint8 [2N, 3, H, W] with N={n}, "
                             f"got {self.images.dtype} {tuple(self.images.shape)}")
        if self.folds.shape != (n,):
            raise ValueError(f"PairSet {self.name!r}: folds must have shape ({n},), got {tuple(self.folds.shape)}")
        self.issame = self.issame.to(torch.bool)
        self.folds = self.folds.to(torch.int64)

    def __len__(self) -> int:
        return len(self.issame)

    @property
    def num_folds(self) -> int:
        return int(self.folds.max()) + 1 if len(self) else 0

    @property
    def first(self) -> torch.Tensor:
        """The first image of every pair, ``[N, 3, H, W]``."""
        return self.images[0::2]

    @property
    def second(self) -> torch.Tensor:
        """The second image of every pair, ``[N, 3, H, W]``."""
        return self.images[1::2]


def balanced_pair_subset(issame, folds, max_pairs: int) -> list[int]:
    """Indices of a fold-balanced subset of about ``max_pairs`` pairs: from each fold its first
    same-person and first different-person pairs in equal numbers, so the subset keeps the fold
    structure and the same/different balance (LFW lists all same pairs of a fold first)."""
    issame = [bool(v) for v in issame]
    folds = [int(f) for f in folds]
    if not max_pairs or max_pairs >= len(issame):
        return list(range(len(issame)))
    fold_ids = sorted(set(folds))
    per = max(max_pairs // len(fold_ids), 2)
    keep = []
    for f in fold_ids:
        idx = [i for i, v in enumerate(folds) if v == f]
        keep += [i for i in idx if issame[i]][: per // 2] + [i for i in idx if not issame[i]][: per - per // 2]
    return sorted(keep)


def load_pairs(source: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
               bgr: bool = False, threads: int | None = None, max_pairs: int = 0) -> PairSet:
    """A :class:`PairSet` from a ``.bin`` file, a split name, or a ``pairs.txt``-format file (``.txt``) whose
    images are ``<its folder>/images/<Name>/<Name>_NNNN.jpg`` (or ``<its folder>/<Name>/...``).

    A ``.bin``'s folds come from its ``.folds.json`` sidecar (written by lqlib's prepare step), else
    from the LFW layout (:func:`lqlib.data.binfile.bin_folds`: 600 pairs per fold).

    For a split (``"lfw-half"``, ``"lfw-10fold"``) the referenced JPEGs are decoded from the data
    directory (nothing is cached); folds are the official ones. ``max_pairs`` keeps a fold-balanced
    subset (:func:`balanced_pair_subset`; for a split only its images are decoded).
    """
    if str(source).endswith(".txt"):  # a pairs.txt-format list over a folder of aligned photos
        path = Path(source)
        images_root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
        return _decode_pairs(eval_pairs_at(images_root, path), path.stem, bgr=bgr, threads=threads,
                             max_pairs=max_pairs)
    if isinstance(source, os.PathLike) or str(source).endswith(".bin") or os.path.isfile(str(source)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f".bin verification set not found: {path}")
        images, issame = load_bin(path, bgr=bgr)
        folds = bin_folds(path, len(issame))
        name = path.stem
        if max_pairs and max_pairs < len(issame):
            keep = torch.tensor(balanced_pair_subset(issame.tolist(), folds.tolist(), max_pairs))
            images = images.view(-1, 2, *images.shape[1:])[keep].flatten(0, 1)
            issame, folds, name = issame[keep], folds[keep], f"{name}[{len(keep)}]"
        return PairSet(images, issame, folds, name)
    if source not in SPLITS:
        raise KeyError(f"{source!r} is neither a .bin file nor a split; known splits: {', '.join(SPLITS)}")
    proto = get_split(str(source), data_dir)
    return _decode_pairs(proto.pairs, proto.name, bgr=bgr, threads=threads, max_pairs=max_pairs)


def _decode_pairs(pairs: list[EvalPair], name: str, *, bgr: bool, threads: int | None, max_pairs: int) -> PairSet:
    """Decode the images of resolved pairs (each distinct image once) into a :class:`PairSet`."""
    if max_pairs and max_pairs < len(pairs):
        pairs = [pairs[i] for i in balanced_pair_subset([p.issame for p in pairs], [p.fold for p in pairs], max_pairs)]
        name = f"{name}[{len(pairs)}]"
    unique = sorted({q for p in pairs for q in (p.path1, p.path2)})
    decoded = dict(zip(unique, parallel_map(lambda p: read_image_rgb(p, bgr=bgr), unique, threads)))
    images = stack_images([decoded[q] for p in pairs for q in (p.path1, p.path2)], what=name)
    issame = torch.tensor([p.issame for p in pairs], dtype=torch.bool)
    folds = torch.tensor([p.fold for p in pairs], dtype=torch.int64)
    return PairSet(images, issame, folds, name)
