"""Identification layouts: which image is a probe, a gallery image or a distractor, and whose face it is.

A layout is a list of :class:`IdEntry` (path, role, identity). Roles: ``probe`` (mated or not: a probe whose
identity has no gallery image is non-mated), ``gallery`` (an enrolled image) and ``distractor`` (a gallery
image of no probe's identity; identity ``""`` = unknown). Three sources (registry :data:`ID_SETS`):

* ``lfw-half-id`` (:func:`lfw_half_id`) — built from the lfw-half **test** identities only (every name in LFW
  View-2 folds 1–5, none of which lfw-half trains on; checked against the split's training side):
  per identity with ≥ 2 images the lowest-numbered image is its gallery image and the next
  ``max_probes`` (10) are probes; identities with one image alternate, in name order, between gallery
  distractors (even positions) and non-mated probes (odd positions). Written to a JSON sidecar
  (:func:`write_layout_json`) with the rule, the counts and a hash of the entries.
* ``tinyface`` (:func:`tinyface_layout`) — ``<root>/Testing_Set/{Probe, Gallery_Match, Gallery_Distractor}``
  (``<root>`` may also be the ``Testing_Set`` folder itself); the identity of a Probe / Gallery_Match image is
  the part of its file name before the first ``_`` (TinyFace's ``<id>_<n>.jpg``, as its ``*_img_ID_pairs.mat``
  lists them); Gallery_Distractor images have none.
* a **layout file** (:func:`read_layout_csv`) — CSV with a header ``path,role,identity`` (paths relative to the
  file's folder): how SCface, QMUL-SurvFace or any other set is mapped onto the same evaluator.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import paths
from .folders import IMAGE_EXTENSIONS
from .splits import LFW_IMAGES, LFW_PAIRS, SplitError, lfw_half, parse_pairs

ROLES = ("probe", "gallery", "distractor")
TINYFACE_DIRS = {"Probe": "probe", "Gallery_Match": "gallery", "Gallery_Distractor": "distractor"}
LFW_HALF_ID_MAX_PROBES = 10
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class IdEntry:
    path: Path
    role: str        # probe | gallery | distractor
    identity: str    # "" for a distractor


@dataclass
class IdLayout:
    """A resolved identification layout: entries in a fixed order, and what built it."""

    name: str
    entries: list[IdEntry]
    info: dict

    def role(self, role: str) -> list[IdEntry]:
        return [e for e in self.entries if e.role == role]

    def counts(self) -> dict:
        probes = self.role("probe")
        enrolled = {e.identity for e in self.role("gallery")}
        return {"probes": len(probes), "mated_probes": sum(e.identity in enrolled for e in probes),
                "nonmated_probes": sum(e.identity not in enrolled for e in probes),
                "gallery": len(self.role("gallery")), "gallery_identities": len(enrolled),
                "distractors": len(self.role("distractor"))}

    def digest(self) -> str:
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.path.name}\t{e.role}\t{e.identity}\n".encode())
        return h.hexdigest()[:16]


def _check_roles(entries: Sequence[IdEntry], where: str) -> None:
    bad = [e for e in entries if e.role not in ROLES]
    if bad:
        raise SplitError(f"{where}: unknown role {bad[0].role!r} for {bad[0].path} (roles: {', '.join(ROLES)})")
    if not any(e.role == "probe" for e in entries) or not any(e.role == "gallery" for e in entries):
        raise SplitError(f"{where}: an identification layout needs probe and gallery images")
    searched = {e.path for e in entries if e.role != "probe"}
    twice = [str(e.path) for e in entries if e.role == "probe" and e.path in searched]
    if twice:
        raise SplitError(f"{where}: {len(twice)} probe image(s) are also listed in the gallery, so a search would find "
                         f"the probe itself: {', '.join(twice[:3])}{' ...' if len(twice) > 3 else ''}; list each image "
                         "under one role")


def subset_probes(layout: IdLayout, max_probes: int) -> IdLayout:
    """The layout with about ``max_probes`` probes, evenly spaced over its probe list (mated and non-mated in
    their proportions); the gallery and distractors stay whole. Named ``<name>[<n>]``."""
    probes = [i for i, e in enumerate(layout.entries) if e.role == "probe"]
    if not max_probes or max_probes >= len(probes):
        return layout
    keep = set(np.asarray(probes)[np.unique(np.linspace(0, len(probes) - 1, max_probes).round().astype(int))].tolist())
    entries = [e for i, e in enumerate(layout.entries) if e.role != "probe" or i in keep]
    return IdLayout(f"{layout.name}[{len(keep)}]", entries, {**layout.info, "probe_subset": len(keep)})


# --------------------------------------------------------------------------- lfw-half-id
def lfw_half_id(data_dir: str | os.PathLike | None = None, max_probes: int = LFW_HALF_ID_MAX_PROBES) -> IdLayout:
    """The ``lfw-half-id`` layout (rule in the module docstring); raises :class:`SplitError` if one of its
    identities is on lfw-half's training side."""
    root = paths.data_dir(data_dir)
    specs = parse_pairs(root / LFW_PAIRS)
    eval_folds = max(1, (max(s.fold for s in specs) + 1) // 2)
    names = sorted({n for s in specs if s.fold < eval_folds for n in (s.name1, s.name2)})
    train = {s.identity.split("/", 1)[1] for s in lfw_half(root).train if s.identity.startswith("lfw/")}
    leaked = sorted(train & set(names))
    if leaked:
        raise SplitError(f"lfw-half-id: {len(leaked)} identities are on lfw-half's training side, e.g. {leaked[:3]}")
    entries, singles = [], []
    for name in names:
        folder = root / LFW_IMAGES / name
        imgs = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []
        if not imgs:
            raise FileNotFoundError(f"lfw-half-id: no images for {name} in {folder}")
        if len(imgs) == 1:
            singles.append((name, imgs[0]))
            continue
        entries.append(IdEntry(imgs[0], "gallery", name))
        entries += [IdEntry(p, "probe", name) for p in imgs[1:1 + max_probes]]
    for i, (name, p) in enumerate(singles):
        entries.append(IdEntry(p, "distractor" if i % 2 == 0 else "probe", name))
    info = {"set": "lfw-half-id", "version": LAYOUT_VERSION, "source": f"{LFW_PAIRS} folds 1-{eval_folds}",
            "rule": ("test identities of lfw-half (every name in LFW View-2 folds 1-5; none is trained on); identity "
                     f"with >= 2 images: its lowest-numbered image is the gallery image, the next {max_probes} are "
                     "probes; identities with one image, in name order: even positions gallery distractors, odd "
                     "positions non-mated probes"),
            "max_probes_per_identity": max_probes, "test_identities": len(names)}
    return IdLayout("lfw-half-id", entries, info)


# --------------------------------------------------------------------------- TinyFace
def tinyface_identity(path: str | os.PathLike) -> str:
    """TinyFace's identity of a Probe / Gallery_Match image: the file name before the first ``_``."""
    stem = Path(path).stem
    ident, sep, _ = stem.partition("_")
    if not sep or not ident:
        raise SplitError(f"TinyFace file name {Path(path).name!r} is not '<identity>_<n>.<ext>'")
    return ident


def tinyface_root(root: str | os.PathLike | None = None) -> Path | None:
    """The TinyFace ``Testing_Set`` folder under ``root`` (argument → ``$LQLIB_TINYFACE``), or None."""
    root = root or os.environ.get("LQLIB_TINYFACE", "")
    if not root:
        return None
    r = paths.resolve(root)
    for cand in (r / "Testing_Set", r / "tinyface" / "Testing_Set", r):
        if all((cand / d).is_dir() for d in TINYFACE_DIRS):
            return cand
    return None


def tinyface_layout(root: str | os.PathLike | None = None) -> IdLayout:
    """TinyFace's test layout from ``root`` (or ``$LQLIB_TINYFACE``); ``FileNotFoundError`` naming what is
    missing when the folders are not there."""
    where = root or os.environ.get("LQLIB_TINYFACE", "")
    ts = tinyface_root(root)
    if ts is None:
        raise FileNotFoundError(f"TinyFace not found at {where or '(no path: set $LQLIB_TINYFACE)'}: expected "
                                f"Testing_Set/{{{', '.join(TINYFACE_DIRS)}}}")
    entries = []
    for folder, role in TINYFACE_DIRS.items():
        files = sorted(p for p in (ts / folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"TinyFace: no images in {ts / folder}")
        entries += [IdEntry(p, role, "" if role == "distractor" else tinyface_identity(p)) for p in files]
    _check_roles(entries, str(ts))
    return IdLayout("tinyface", entries, {"set": "tinyface", "root": str(ts),
                                          "identity_rule": "file name before the first '_'"})


# --------------------------------------------------------------------------- layout files
def read_layout_csv(path: str | os.PathLike, name: str = "") -> IdLayout:
    """A layout from a CSV file ``path,role,identity`` (header required; paths relative to the file's folder)."""
    p = paths.resolve(path)
    if not p.is_file():
        raise FileNotFoundError(f"identification layout file not found: {p}")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    if not {"path", "role", "identity"} <= set(reader.fieldnames or ()):
        raise SplitError(f"{p}: expected a CSV header 'path,role,identity'")
    if not rows:
        raise SplitError(f"{p}: no images under its header (an identification layout needs probe and gallery rows)")
    entries = []
    for i, r in enumerate(rows, start=2):
        img = (p.parent / r["path"]).resolve()
        if not img.is_file():
            raise FileNotFoundError(f"{p}:{i}: image {img} not found")
        role = r["role"].strip()
        ident = "" if role == "distractor" else r["identity"].strip()
        if role != "distractor" and not ident:
            raise SplitError(f"{p}:{i}: a {role} image needs an identity")
        entries.append(IdEntry(img, role, ident))
    _check_roles(entries, str(p))
    return IdLayout(name or p.stem, entries, {"set": name or p.stem, "layout_file": str(p)})


def write_layout_json(layout: IdLayout, path: str | os.PathLike) -> Path:
    """The sidecar of a layout: rule, counts, digest and every entry (paths relative to the LFW image folder's
    parent when possible), written atomically."""
    from ..io import write_json

    def rel(p: Path) -> str:
        return f"{p.parent.name}/{p.name}"

    doc = {**layout.info, "name": layout.name, "counts": layout.counts(), "digest": layout.digest(),
           "entries": [[rel(e.path), e.role, e.identity] for e in layout.entries]}
    return write_json(paths.resolve(path), doc)


def read_layout_json(path: str | os.PathLike, images_root: str | os.PathLike) -> IdLayout:
    """A layout back from its sidecar (entries relative to ``images_root``); the digest must match."""
    p = paths.resolve(path)
    doc = json.loads(p.read_text())
    root = Path(images_root)
    layout = IdLayout(doc["name"], [IdEntry(root / e[0], e[1], e[2]) for e in doc["entries"]],
                      {k: v for k, v in doc.items() if k not in ("entries", "counts", "digest")})
    if layout.digest() != doc.get("digest"):
        raise SplitError(f"{p}: the entries do not match the recorded digest (edited by hand?)")
    return layout


ID_SETS = {"lfw-half-id": lfw_half_id, "tinyface": tinyface_layout}
