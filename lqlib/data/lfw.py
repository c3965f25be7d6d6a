"""LFW's pair list and the splits read straight from it: the parsers under the split registry.

Data layout (see ``<data_dir>/README.md``): ``lfw/images/<Name>/<Name>_NNNN.jpg``, ``lfw/pairs.txt``
(official LFW View-2), ``celeba299/images/<id>/<file>.jpg``. All images are aligned 112×112 RGB JPEG.

``pairs.txt``: the first line is ``<folds>\\t<n>``; then, per fold, ``n`` same-person lines
``Name\\tn1\\tn2`` followed by ``n`` different-person lines ``Name1\\tn1\\tName2\\tn2``. Folds are numbered
from 0 in lqlib (official fold 1 is fold 0).

* :func:`lfw_half` — evaluation on the first half of the folds (official folds 1–5: 3,000 pairs, 5 folds of
  600); training on every CelebA-299 identity (named ``celeba/<id>``) plus every LFW identity that
  appears in no evaluation pair (named ``lfw/<Name>``, all its images). Without ``celeba299/`` (LFW
  fetched on a fresh machine) the training side is LFW alone; ``stats["train_sources"]`` says which. The
  identity overlap between training and evaluation is computed and must be zero.
* :func:`lfw_10fold` — all pairs (6,000, 10 folds of 600) and no training set.

The validation split built on lfw-half is :mod:`lqlib.data.validation`; the registry of all of them (and the
:class:`~lqlib.data.splits.PairSet`) is :mod:`lqlib.data.splits`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import LqlibError
from .folders import scan_identity_folders

LFW_PAIRS = Path("lfw") / "pairs.txt"
LFW_IMAGES = Path("lfw") / "images"
CELEBA_IMAGES = Path("celeba299") / "images"


class SplitError(LqlibError, ValueError):
    """A split's inputs are malformed or its invariants (e.g. zero identity overlap) do not hold."""


# --------------------------------------------------------------------------- pairs.txt

@dataclass(frozen=True)
class PairSpec:
    """One line of ``pairs.txt``: ``name1``'s image ``n1`` vs ``name2``'s image ``n2`` (fold from 0)."""

    name1: str
    n1: int
    name2: str
    n2: int
    fold: int

    @property
    def issame(self) -> bool:
        return self.name1 == self.name2


def parse_pairs(path: str | os.PathLike) -> list[PairSpec]:
    """Parse an LFW ``pairs.txt`` into pairs in file order, with their fold index (from 0)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LFW pair list not found: {path}")
    lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise SplitError(f"{path}: empty pair list")
    try:
        head = [int(x) for x in lines[0]]
    except ValueError:
        raise SplitError(f"{path}:1: expected '<folds> <pairs per half-fold>', got {' '.join(lines[0])!r}") from None
    num_folds, per_half = (1, head[0]) if len(head) == 1 else head[:2]
    expected = num_folds * 2 * per_half
    if len(lines) - 1 != expected:
        raise SplitError(f"{path}: header announces {num_folds} folds × 2 × {per_half} = {expected} pairs, "
                            f"found {len(lines) - 1} pair lines")
    out = []
    for i, parts in enumerate(lines[1:]):
        fold, same = i // (2 * per_half), (i % (2 * per_half)) < per_half
        try:
            if same and len(parts) == 3:
                out.append(PairSpec(parts[0], int(parts[1]), parts[0], int(parts[2]), fold))
            elif not same and len(parts) == 4:
                out.append(PairSpec(parts[0], int(parts[1]), parts[2], int(parts[3]), fold))
            else:
                raise ValueError
        except ValueError:
            kind = "'Name n1 n2' (same person)" if same else "'Name1 n1 Name2 n2' (different people)"
            raise SplitError(f"{path}:{i + 2}: expected {kind}, got {' '.join(parts)!r}") from None
    return out


def lfw_image_path(images_root: str | os.PathLike, name: str, n: int) -> Path:
    """``<images_root>/<Name>/<Name>_<nnnn>.jpg``."""
    return Path(images_root) / name / f"{name}_{n:04d}.jpg"


# --------------------------------------------------------------------------- split results

@dataclass(frozen=True)
class TrainSample:
    path: Path
    label: int
    identity: str


@dataclass(frozen=True)
class EvalPair:
    path1: Path
    path2: Path
    issame: bool
    fold: int


@dataclass
class Split:
    """A resolved split: training samples (labels ``0..K-1``, grouped by label), evaluation pairs
    (official order) and statistics. ``identities[label]`` is the identity name of a label."""

    name: str
    data_dir: Path
    train: list[TrainSample]
    pairs: list[EvalPair]
    identities: list[str]
    stats: dict = field(default_factory=dict)

    @property
    def num_folds(self) -> int:
        return max((p.fold for p in self.pairs), default=-1) + 1

    @property
    def num_classes(self) -> int:
        return len(self.identities)


def require_dir(p: Path, what: str) -> Path:
    if not p.is_dir():
        raise FileNotFoundError(f"{what} not found: {p} (expected the layout described in the data README)")
    return p


def eval_pairs(data_dir: Path, specs: list[PairSpec]) -> list[EvalPair]:
    """Resolve pair specs to image paths; every referenced image must exist."""
    return _resolve_pairs(require_dir(data_dir / LFW_IMAGES, "LFW image folder"), specs, data_dir / LFW_PAIRS)


def eval_pairs_at(images: str | os.PathLike, pairs_txt: str | os.PathLike) -> list[EvalPair]:
    """The pairs of a ``pairs.txt``-format file over a folder of identity folders (``Name n`` is
    ``<images>/<Name>/<Name>_NNNN.jpg``); every referenced image must exist."""
    return _resolve_pairs(require_dir(Path(images), "image folder"), parse_pairs(pairs_txt), Path(pairs_txt))


def _resolve_pairs(images: Path, specs: list[PairSpec], listed_in: Path) -> list[EvalPair]:
    pairs = [EvalPair(lfw_image_path(images, s.name1, s.n1), lfw_image_path(images, s.name2, s.n2), s.issame, s.fold)
             for s in specs]
    referenced = sorted({p for pr in pairs for p in (pr.path1, pr.path2)})
    missing = [p for p in referenced if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) referenced by {listed_in} are missing, "
                                f"e.g. {', '.join(map(str, missing[:3]))}")
    return pairs


def pair_stats(pairs: list[EvalPair]) -> dict:
    return {
        "eval_pairs": len(pairs),
        "eval_same": sum(p.issame for p in pairs),
        "eval_diff": sum(not p.issame for p in pairs),
        "eval_folds": max((p.fold for p in pairs), default=-1) + 1,
        "eval_images": len({q for p in pairs for q in (p.path1, p.path2)}),
        "eval_identities": len({q.parent.name for p in pairs for q in (p.path1, p.path2)}),
    }


def check_disjoint(train: list[TrainSample], pairs: list[EvalPair]) -> tuple[int, int]:
    """Count the LFW identities and the images shared by training samples and evaluation pairs.

    Training identities are compared by their LFW name (``lfw/<Name>`` → ``Name``; evaluation names
    are the pair images' folder names); images by path. Raises :class:`SplitError` on any overlap,
    otherwise returns ``(0, 0)``.
    """
    eval_paths = {q for p in pairs for q in (p.path1, p.path2)}
    eval_names = {q.parent.name for q in eval_paths}
    train_names = {s.identity.split("/", 1)[1] for s in train if s.identity.startswith("lfw/")}
    identities = sorted(train_names & eval_names)
    images = sorted(str(s.path) for s in train if s.path in eval_paths)
    if identities or images:
        raise SplitError(f"training and evaluation overlap in {len(identities)} identities "
                            f"(e.g. {identities[:3]}) and {len(images)} images (e.g. {images[:3]})")
    return len(identities), len(images)


def lfw_half(data_dir: str | os.PathLike | None = None) -> Split:
    """The ``lfw-half`` split: evaluate on the first half of the folds, train on disjoint identities.

    Raises ``FileNotFoundError`` for a missing data dir / pair list / referenced image and
    :class:`SplitError` if training and evaluation share an identity or an image.
    """
    root = paths.data_dir(data_dir)
    specs = parse_pairs(root / LFW_PAIRS)
    num_folds = max(s.fold for s in specs) + 1
    eval_folds = max(1, num_folds // 2)
    pairs = eval_pairs(root, [s for s in specs if s.fold < eval_folds])
    eval_names = {n for s in specs if s.fold < eval_folds for n in (s.name1, s.name2)}

    # LFW alone (a fresh machine's fetched LFW, no CelebA-299 yet): the training side is LFW's identities only,
    # and the statistics say so (python -m lqlib.data fetch celeba adds the CelebA side)
    celeba = scan_identity_folders(root / CELEBA_IMAGES) if (root / CELEBA_IMAGES).is_dir() else []
    lfw = scan_identity_folders(root / LFW_IMAGES)
    named = [(p, f"celeba/{ident}") for p, ident in celeba]
    named += [(p, f"lfw/{ident}") for p, ident in lfw if ident not in eval_names]
    identities = sorted({ident for _, ident in named})
    label_of = {ident: i for i, ident in enumerate(identities)}
    train = sorted((TrainSample(p, label_of[ident], ident) for p, ident in named), key=lambda s: (s.label, s.path.name))

    identity_overlap, image_overlap = check_disjoint(train, pairs)

    celeba_ids = {ident for _, ident in named if ident.startswith("celeba/")}
    stats = {
        "split": "lfw-half",
        **pair_stats(pairs),
        "train_identities": len(identities),
        "train_images": len(train),
        "train_celeba_identities": len(celeba_ids),
        "train_celeba_images": len(celeba),
        "train_lfw_identities": len(identities) - len(celeba_ids),
        "train_lfw_images": len(train) - len(celeba),
        "identity_overlap": identity_overlap,
        "image_overlap": image_overlap,
        "train_sources": "CelebA-299 + LFW" if celeba else
                         f"LFW alone (no CelebA-299: {root / CELEBA_IMAGES} not found; python -m lqlib.data fetch celeba)",
    }
    return Split("lfw-half", root, train, pairs, identities, stats)


def lfw_10fold(data_dir: str | os.PathLike | None = None) -> Split:
    """The ``lfw-10fold`` split: every pair of ``pairs.txt`` (official folds), no training set."""
    root = paths.data_dir(data_dir)
    pairs = eval_pairs(root, parse_pairs(root / LFW_PAIRS))
    return Split("lfw-10fold", root, [], pairs, [], {"split": "lfw-10fold", **pair_stats(pairs)})
