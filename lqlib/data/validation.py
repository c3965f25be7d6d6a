"""The validation split of lfw-half: held-out identities of the TRAINING side, as verification pairs.

Every choice of a study (epochs, KD weights, temperatures, calibration, the teacher's stopping
epoch) must read a set that is neither trained on nor the test set. ``lfw-half``'s test set is
LFW View-2 folds 1–5; its training side is CelebA-299 plus every LFW identity in no pair of those
folds. The split ``lfw-half-val`` (:func:`lfw_half_val`) moves some of those LFW training
identities out of training and into a validation pair set:

* **training** = lfw-half's training side minus every held-out identity (labels ``0..K-1`` again);
* **pairs** = the validation pairs (``PAIRS: lfw-half-val``), built by :func:`validation_pairs`
  with :data:`DESIGN`; the test pairs stay ``PAIRS: lfw-half`` (folds 1–5, untouched).

Validation design (:class:`ValidationDesign`, fixed seed, same result on every machine — only
directory listings are read, no image is decoded):

1. *Same-person identities*: the LFW training-side identities with ``min_images``–``max_images``
   images (3–10: each gives 3 distinct same pairs without taking the large identities that matter
   most for training), sorted by name and shuffled with ``random.Random(seed)``; fold ``f`` takes
   the next ``ceil(same_per_fold / same_per_identity)`` of them (100) and from each
   ``same_per_identity`` (3) of its image pairs, drawn without replacement — 300 same pairs.
2. *Different-person pairs*: the fold's same-pair identities plus ``singles_per_fold`` (100)
   single-image LFW training identities (shuffled the same way); 300 distinct identity pairs drawn
   without replacement from that pool, one random image of each identity.
3. Folds are identity-disjoint (as LFW's are), 600 pairs each (300 same, then 300 different, the
   ``pairs.txt`` order), ``folds`` (2) of them: 1,200 pairs, 200 held-out identities with ≥ 3
   images and 200 single-image ones — 400 held-out identities in all. A recipe with
   ``min_images_per_class: 2`` drops single-image identities anyway, so those cost it nothing.

Checked in code every time the split is built (:class:`~lqlib.data.lfw.SplitError` otherwise):
zero identity and image overlap between training and validation, training and the test folds,
and validation and the test folds.
"""
from __future__ import annotations

import itertools
import math
import os
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import paths
from .lfw import (LFW_PAIRS, EvalPair, PairSpec, Split, SplitError, TrainSample, check_disjoint, eval_pairs, lfw_half,
                  pair_stats)

VALIDATION_SPLIT = "lfw-half-val"
_LFW_NUMBER = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class ValidationDesign:
    """How the validation pairs are drawn (see the module docstring)."""

    folds: int = 2
    same_per_fold: int = 300
    diff_per_fold: int = 300
    same_per_identity: int = 3
    min_images: int = 3
    max_images: int = 10
    singles_per_fold: int = 100
    seed: int = 2027

    def __post_init__(self):
        for k in ("folds", "same_per_fold", "diff_per_fold", "same_per_identity", "min_images", "max_images"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"ValidationDesign.{k} must be >= 1, got {getattr(self, k)}")
        if self.singles_per_fold < 0:
            raise ValueError(f"ValidationDesign.singles_per_fold must be >= 0, got {self.singles_per_fold}")
        if self.max_images < self.min_images:
            raise ValueError(f"ValidationDesign: max_images {self.max_images} < min_images {self.min_images}")
        if math.comb(self.min_images, 2) < self.same_per_identity:
            raise ValueError(f"ValidationDesign: an identity with min_images={self.min_images} images has only "
                             f"{math.comb(self.min_images, 2)} same pairs, fewer than "
                             f"same_per_identity={self.same_per_identity}")

    @property
    def identities_per_fold(self) -> int:
        """Same-pair identities per fold."""
        return math.ceil(self.same_per_fold / self.same_per_identity)


DESIGN = ValidationDesign()


def validation_pairs(images: dict[str, list[int]], design: ValidationDesign = DESIGN) -> list[PairSpec]:
    """The validation pairs drawn from ``images`` (identity name → its image numbers), folds from 0.

    Deterministic for a given ``images`` mapping and ``design`` (the order of the mapping does not
    matter). Raises :class:`SplitError` when there are too few eligible identities.
    """
    rng = random.Random(design.seed)
    imgs = {name: sorted(set(int(n) for n in ns)) for name, ns in images.items()}
    multi = sorted(n for n, ns in imgs.items() if design.min_images <= len(ns) <= design.max_images)
    singles = sorted(n for n, ns in imgs.items() if len(ns) == 1)
    rng.shuffle(multi)
    rng.shuffle(singles)
    per = design.identities_per_fold
    if len(multi) < design.folds * per:
        raise SplitError(f"validation split: {design.folds} folds × {per} identities need {design.folds * per} "
                         f"identities with {design.min_images}–{design.max_images} images; only {len(multi)} exist")
    if len(singles) < design.folds * design.singles_per_fold:
        raise SplitError(f"validation split: {design.folds} folds × {design.singles_per_fold} single-image "
                         f"identities needed; only {len(singles)} exist")
    out: list[PairSpec] = []
    for f in range(design.folds):
        ids = multi[f * per:(f + 1) * per]
        same: list[PairSpec] = []
        for name in ids:
            combos = list(itertools.combinations(imgs[name], 2))
            for a, b in rng.sample(combos, design.same_per_identity):
                same.append(PairSpec(name, a, name, b, f))
        pool = sorted(ids + singles[f * design.singles_per_fold:(f + 1) * design.singles_per_fold])
        id_pairs = list(itertools.combinations(pool, 2))
        if len(id_pairs) < design.diff_per_fold:
            raise SplitError(f"validation split: fold {f} has {len(pool)} identities, {len(id_pairs)} identity "
                             f"pairs, fewer than diff_per_fold={design.diff_per_fold}")
        diff = [PairSpec(a, rng.choice(imgs[a]), b, rng.choice(imgs[b]), f)
                for a, b in rng.sample(id_pairs, design.diff_per_fold)]
        out += same[:design.same_per_fold] + diff
    return out


def pairs_txt(specs: list[PairSpec]) -> str:
    """``specs`` in the LFW ``pairs.txt`` format (header ``<folds>\\t<n>``; per fold n same, then n
    different lines), so the validation set can be committed beside a study and re-parsed by
    :func:`~lqlib.data.lfw.parse_pairs`. Needs equal numbers of same and different pairs per fold."""
    folds = sorted({s.fold for s in specs})
    lines, per = [], None
    for f in folds:
        same = [s for s in specs if s.fold == f and s.issame]
        diff = [s for s in specs if s.fold == f and not s.issame]
        if len(same) != len(diff) or (per is not None and len(same) != per):
            raise ValueError(f"pairs.txt needs the same number of same and different pairs in every fold; "
                             f"fold {f} has {len(same)} same and {len(diff)} different")
        per = len(same)
        lines += [f"{s.name1}\t{s.n1}\t{s.n2}" for s in same]
        lines += [f"{s.name1}\t{s.n1}\t{s.name2}\t{s.n2}" for s in diff]
    return "\n".join([f"{len(folds)}\t{per or 0}", *lines]) + "\n"


def _lfw_images(train: list[TrainSample]) -> dict[str, list[int]]:
    """LFW identity name → image numbers (``Name_0003.jpg`` → 3) of a split's training samples."""
    out: dict[str, list[int]] = {}
    for s in train:
        if s.identity.startswith("lfw/"):
            m = _LFW_NUMBER.search(s.path.stem)
            if m is None:
                raise SplitError(f"{s.path}: not an LFW image name (<Name>_<nnnn>.jpg)")
            out.setdefault(s.identity.split("/", 1)[1], []).append(int(m.group(1)))
    return out


def check_pairs_disjoint(a: list[EvalPair], b: list[EvalPair], what: str) -> int:
    """Raise :class:`SplitError` if two pair sets share an identity (LFW folder name); else 0."""
    names_a = {q.parent.name for p in a for q in (p.path1, p.path2)}
    names_b = {q.parent.name for p in b for q in (p.path1, p.path2)}
    shared = sorted(names_a & names_b)
    if shared:
        raise SplitError(f"{what}: {len(shared)} shared identities (e.g. {shared[:3]})")
    return 0


def lfw_half_val(data_dir: str | os.PathLike | None = None, design: ValidationDesign = DESIGN) -> Split:
    """The ``lfw-half-val`` split: lfw-half's training side minus the held-out identities, and the
    validation pairs drawn from them (module docstring). ``stats`` holds the design, the counts and
    the three overlap checks (all 0); ``stats["test_split"]`` names the test pairs (``lfw-half``)."""
    root = paths.data_dir(data_dir)
    base = lfw_half(root)
    specs = validation_pairs(_lfw_images(base.train), design)
    held = {n for s in specs for n in (s.name1, s.name2)}
    pairs = eval_pairs(root, specs)
    kept = [s for s in base.train if not (s.identity.startswith("lfw/") and s.identity.split("/", 1)[1] in held)]
    identities = sorted({s.identity for s in kept})
    label_of = {ident: i for i, ident in enumerate(identities)}
    train = [TrainSample(s.path, label_of[s.identity], s.identity) for s in kept]

    val_train = check_disjoint(train, pairs)
    test_train = check_disjoint(train, base.pairs)
    val_test = check_pairs_disjoint(pairs, base.pairs, "validation and test pairs (lfw-half folds 1–5)")
    same_ids = {s.name1 for s in specs if s.issame}
    stats = {
        "split": VALIDATION_SPLIT,
        "test_split": "lfw-half",
        "pairs_file": str(LFW_PAIRS),
        **pair_stats(pairs),
        "heldout_identities": len(held),
        "heldout_same_identities": len(same_ids),
        "heldout_single_image_identities": len(held - same_ids),
        "train_identities": len(identities),
        "train_images": len(train),
        "train_lfw_identities": sum(i.startswith("lfw/") for i in identities),
        "identity_overlap": val_train[0], "image_overlap": val_train[1],
        "train_test_identity_overlap": test_train[0],
        "validation_test_identity_overlap": val_test,
        "design": asdict(design),
    }
    return Split(VALIDATION_SPLIT, root, train, pairs, identities, stats)


def validation_definition(data_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> dict:
    """The validation split's definition for a study's results: the statistics (design, counts, zero
    overlaps) and, with ``out`` (a folder), ``validation_pairs.txt`` (pairs.txt format) and
    ``validation_split.json`` written there (atomically)."""
    from ..io import write_json, write_text

    split = lfw_half_val(data_dir)
    specs = [PairSpec(p.path1.parent.name, int(_LFW_NUMBER.search(p.path1.stem).group(1)),
                      p.path2.parent.name, int(_LFW_NUMBER.search(p.path2.stem).group(1)), p.fold)
             for p in split.pairs]
    d = dict(split.stats)
    if out is not None:
        out = Path(out)
        write_text(out / "validation_pairs.txt", pairs_txt(specs))
        write_json(out / "validation_split.json", d)
    return d
