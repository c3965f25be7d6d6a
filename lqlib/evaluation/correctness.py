"""Per-pair correctness of every model × seed × scale × eval mode, packed into one small committable file.

A study's evaluation cache keeps one ``.npz`` per model and seed (``runs/<name>/eval/<set>/<key>_s<seed>.npz``:
``<eval mode>_x<scale>`` → bool per pair). :func:`pack_correctness` gathers a folder of them into one
``.npz`` of bit-packed arrays (``numpy.packbits``: 3,000 pairs take 375 bytes, ~ 0.6 kB with the file headers:
~ 0.2 MB for 40 model-seeds × 8 rows; an index of names and lengths travels in the file), so the pair-level and
hierarchical tests of a published study can be recomputed from git; :func:`load_correctness` restores
``{file stem: {array name: bool array}}`` exactly.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io import atomic_write


def pack_correctness(folder: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Pack every ``*.npz`` of ``folder`` into ``out`` (written atomically); returns an index
    ``{stem: {name: n_pairs}}``. Raises when the folder holds no ``.npz`` or an array is not 1-D bool-like."""
    folder = Path(folder)
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no per-pair correctness (.npz) in {folder}")
    packed, index = {}, {}
    for f in files:
        with np.load(f) as z:
            for name in z.files:
                a = np.asarray(z[name])
                if a.ndim != 1 or not (a.dtype == bool or np.isin(a, (0, 1)).all()):
                    raise ValueError(f"{f}: array {name!r} is not a 1-D per-pair correctness (shape {a.shape}, "
                                     f"dtype {a.dtype})")
                packed[f"{f.stem}/{name}"] = np.packbits(a.astype(bool))
                index.setdefault(f.stem, {})[name] = int(a.size)
    packed["__index__"] = np.frombuffer(json.dumps(index, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_write(out, "wb") as fh:
        np.savez_compressed(fh, **packed)
    return index


def load_correctness(path: str | os.PathLike) -> dict:
    """``{stem: {name: bool array}}`` from a file written by :func:`pack_correctness`."""
    with np.load(Path(path)) as z:
        if "__index__" not in z.files:
            raise ValueError(f"{path}: not a packed correctness file (no __index__)")
        index = json.loads(z["__index__"].tobytes().decode())
        return {stem: {name: np.unpackbits(z[f"{stem}/{name}"], count=n).astype(bool) for name, n in arrays.items()}
                for stem, arrays in index.items()}


__all__ = ["pack_correctness", "load_correctness"]
