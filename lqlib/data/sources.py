"""What a data spec string names — the one place that parses one.

Training data (``TrainConfig.data``, the notebooks' ``DATA``):

* ``"synthetic"`` — the synthetic identity set (tests, and runs without face data);
* a split name (``"lfw-half"``) — its training side, decoded from the data directory;
* a ``train.rec`` file, or a folder holding one (a packs dir written by ``prepare``; its
  ``manifest.json`` names the split it was packed from);
* a folder of identity folders (``<root>/<identity>/<image>``).

Pair sets (the notebooks' ``PAIRS``): a split name (its evaluation pairs, official folds), a
``.bin`` file, or a ``pairs.txt``-format ``.txt`` file over a folder of aligned photos.

Every trained model records the name of its training split (:attr:`TrainingSource.split`:
``lfw-half``, ``synthetic``, or the path of custom data), so an evaluation can refuse pair sets
whose identities the model was trained on (:func:`overlapping_eval_sets`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from .splits import SPLITS

# Evaluation sets sharing identities with a training split: LFW folds 6-10 identities are in
# lfw-half's training side, so lfw.bin / lfw-10fold (all folds) and CPLFW (LFW identities) leak; the
# validation pairs (lfw-half-val) are identities of lfw-half's training side too, so a model trained on
# all of lfw-half has seen them.
LEAKY_EVAL_SETS: dict[str, tuple[str, ...]] = {"lfw-half": ("lfw", "lfw-10fold", "cplfw", "lfw-half-val"),
                                               "lfw-half-val": ("lfw", "lfw-10fold", "cplfw")}

# What a pair set is for in a study: decisions read "validation" sets only, verdicts "test" sets.
EVAL_ROLES: dict[str, str] = {"lfw-half-val": "validation", "lfw-half": "test"}


@dataclass(frozen=True)
class TrainingSource:
    kind: str            # synthetic | split | rec | folder
    path: Path | None    # the .rec file or identity-folder root
    split: str           # the training split's name (recorded in every run's summary)


@dataclass(frozen=True)
class PairsSource:
    kind: str            # split | bin | txt
    name: str            # split name, or the .bin's stem
    path: Path | None


def _packs_split(rec: Path) -> str:
    """The split a ``train.rec`` was packed from (its ``manifest.json``); the path itself for packs without
    one (InsightFace's own ``train.rec``). A manifest that cannot be read is an error naming it, never a
    silent loss of the split's name (the leakage guard also reads the runs' content fingerprints)."""
    manifest = rec.parent / "manifest.json"
    if not manifest.is_file():
        return str(rec)
    try:
        m = json.loads(manifest.read_text())
        return str(m.get("split") or m.get("protocol") or rec)
    except (ValueError, AttributeError, UnicodeDecodeError) as e:
        raise ValueError(f"{manifest}: not a readable packs manifest ({e}); write the packs again "
                         "(lqlib.data.prepare, 00_data_prep PREPARE=True) or remove the file") from None


def training_source(spec: str | os.PathLike) -> TrainingSource:
    """Parse a training-data spec (see the module docstring); raises naming the spec."""
    spec = str(spec)
    if spec == "synthetic":
        return TrainingSource("synthetic", None, "synthetic")
    if spec in SPLITS:
        return TrainingSource("split", None, spec)
    p = paths.resolve(spec)
    if p.suffix == ".rec" and p.is_file():
        return TrainingSource("rec", p, _packs_split(p))
    if p.is_dir() and (p / "train.rec").is_file():
        return TrainingSource("rec", p / "train.rec", _packs_split(p / "train.rec"))
    if p.is_dir():
        return TrainingSource("folder", p, str(p))
    raise ValueError(f"training data {spec!r}: not 'synthetic', a split ({', '.join(SPLITS)}), a .rec file, "
                     "a packs folder with train.rec, nor a folder of identity folders")


def pairs_source(spec: str | os.PathLike) -> PairsSource:
    """Parse a pair-set spec: a split name or a ``.bin`` path."""
    spec = str(spec)
    if spec in SPLITS:
        return PairsSource("split", spec, None)
    p = paths.resolve(spec)
    if p.suffix in (".bin", ".txt"):  # .txt: a pairs.txt-format list over a folder of aligned photos
        return PairsSource(p.suffix[1:], p.stem, p)
    raise ValueError(f"pairs {spec!r}: neither a .bin file, a pairs .txt file nor a split ({', '.join(SPLITS)})")


def eval_set_key(name: str) -> str:
    """Canonical name of an evaluation set: ``lfw_half.bin``/``lfw-half[150]`` → ``lfw-half``,
    ``agedb_30`` → ``agedb-30``."""
    base = re.sub(r"\[\d+\]$", "", Path(str(name)).stem if str(name).endswith((".bin", ".txt")) else str(name))
    return base.lower().replace("_", "-")


def overlapping_eval_sets(training_split: str) -> tuple[str, ...]:
    """Evaluation sets that share identities with ``training_split`` (canonical names)."""
    return LEAKY_EVAL_SETS.get(training_split, ())


def eval_role(eval_set: str) -> str:
    """``validation`` / ``test`` / ``other``: what evaluating on ``eval_set`` may decide (``lfw-half-val``:
    choices of a study; ``lfw-half``: its verdicts, read once at the end)."""
    return EVAL_ROLES.get(eval_set_key(eval_set), "other")


def leaks(training_split: str, eval_set: str) -> bool:
    return eval_set_key(eval_set) in overlapping_eval_sets(training_split)
