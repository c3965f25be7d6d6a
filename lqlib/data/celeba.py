"""lfw-half's CelebA-299 side from the user's own CelebA download: ``python -m lqlib.data fetch celeba --from DIR``.

CelebA cannot be downloaded by a script (its site asks each user to agree to its terms), so ``--from`` is
required: the folder of a CelebA download (any depth), holding either

* ``img_align_celeba/`` and ``list_landmarks_align_celeba.txt`` (the aligned 178×218 release and its five
  landmarks) — used first, or
* ``img_celeba/`` and ``list_landmarks_celeba.txt`` (the in-the-wild photographs and their landmarks), or
* either image folder without its landmark file: the photographs then go through ``align``'s detector
  (YuNet, the largest face).

The 6,275 ``(identity, file)`` entries of the split are committed with lqlib (:data:`ENTRIES_FILE`: CelebA's
anonymous 5-digit identity numbers and its file names, nothing else). Each listed photograph is warped with the
least-squares similarity onto lqlib's ArcFace template (:mod:`lqlib.data.align`) into
``<cache>/data/celeba299/images/<identity>/<file>.jpg`` beside the fetched LFW, with a manifest — the layout
``lfw-half`` reads. A listed file missing from the download is named (nothing is written).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import paths

ENTRIES_FILE = Path(__file__).with_name("celeba299.txt")
# (image folder, its landmark file), in the order they are looked for
LAYOUTS = (("img_align_celeba", "list_landmarks_align_celeba.txt"), ("img_celeba", "list_landmarks_celeba.txt"))
HINT = ("download CelebA from its site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html): img_align_celeba.zip and "
        "list_landmarks_align_celeba.txt (or img_celeba.7z and list_landmarks_celeba.txt), unpack them into one folder "
        "and run: python -m lqlib.data fetch celeba --from FOLDER")


def celeba299_entries(path: str | os.PathLike = ENTRIES_FILE) -> list[tuple[str, str]]:
    """The committed ``(identity, file)`` entries of CelebA-299 (6,275, sorted)."""
    rows = []
    for i, ln in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if ln.strip() and not ln.startswith("#"):
            parts = ln.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{i + 1}: expected 'identity file', got {ln!r}")
            rows.append((parts[0], parts[1]))
    return rows


def read_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A CelebA landmark file (a count line, a header line, then ``file x1 y1 … x5 y5``: left eye, right eye,
    nose, left and right mouth corners, as seen in the image) → file → ``[5, 2]``."""
    out = {}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, ln in enumerate(lines[2:], start=3):
        parts = ln.split()
        if not parts:
            continue
        try:
            out[parts[0]] = np.array([float(v) for v in parts[1:11]]).reshape(5, 2)
        except ValueError:
            raise ValueError(f"{path}:{i}: expected 'file x1 y1 ... x5 y5', got {ln[:80]!r}") from None
    return out


def find_download(source: Path) -> tuple[Path, Path | None]:
    """(image folder, landmark file or None) inside a CelebA download folder (see the module docstring)."""
    def first(name: str) -> Path | None:
        if source.name == name:
            return source
        return next(iter(sorted(source.rglob(name))), None)

    found = []
    for img_name, lm_name in LAYOUTS:
        img = first(img_name)
        if img is not None and img.is_dir():
            lm = first(lm_name)
            if lm is None and source.name == img_name:
                lm = next(iter(sorted(source.parent.rglob(lm_name))), None)
            found.append((img, lm if lm is not None and lm.is_file() else None))
    with_lm = [f for f in found if f[1] is not None]
    if with_lm or found:
        return (with_lm or found)[0]
    raise FileNotFoundError(f"fetch celeba: no img_align_celeba/ or img_celeba/ folder under {source}; {HINT}")


def fetch_celeba(source: str | os.PathLike | None = None, *, cache: str | os.PathLike | None = None,
                 entries: Sequence[tuple[str, str]] | None = None, checksums: Mapping[str, str] | None = None,
                 threads: int | None = None, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Build ``<cache>/data/celeba299/images`` from the CelebA download at ``source`` (see the module docstring);
    returns the face-data directory ``<cache>/data``. ``entries`` replaces the committed list (tests)."""
    from .align import align_folder

    if checksums:
        raise ValueError("fetch celeba: --sha256 applies to fetch lfw (CelebA is read from your own download)")
    if source is None:
        raise ValueError(f"fetch celeba needs --from: CelebA cannot be downloaded by a script; {HINT}")
    src = paths.resolve(source)
    if not src.exists():
        raise FileNotFoundError(f"fetch celeba: --from {src}: no such folder")
    images, lm_file = find_download(src)
    entries = list(entries) if entries is not None else celeba299_entries()
    missing = [f for _, f in entries if not (images / f).is_file()]
    if missing:
        raise FileNotFoundError(f"fetch celeba: {len(missing)} of the {len(entries)} CelebA-299 photos are not in "
                                f"{images}, e.g. {', '.join(missing[:3])}; {HINT}")
    landmarks = None
    if lm_file is not None:
        table = read_landmarks(lm_file)
        landmarks = {f: table[f] for _, f in entries if f in table}
        log(f"fetch celeba: {images} with the landmarks of {lm_file} ({len(landmarks)} of {len(entries)} photos; "
            "the others are detected)")
    else:
        log(f"fetch celeba: {images} without a landmark file: detecting faces (YuNet, the largest face)")
    cache = Path(cache).expanduser() if cache is not None else paths.user_cache_dir()
    out = cache / "data" / "celeba299" / "images"
    m = align_folder(images, out, pick="largest", no_face="skip", files={f: f"{i}/{Path(f).stem}.jpg" for i, f in entries},
                     landmarks=landmarks, threads=threads or min(4, os.cpu_count() or 1), progress=progress)
    c = m["counts"]
    log(f"fetch celeba: {c['aligned']} photos of {len({i for i, _ in entries})} identities aligned, {c['no_face']} "
        f"with no face found (skipped), {c['corrupt']} unreadable → {out}")
    return cache / "data"


__all__ = ["fetch_celeba", "celeba299_entries", "read_landmarks", "find_download", "ENTRIES_FILE"]
