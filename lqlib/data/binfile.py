"""InsightFace ``.bin`` verification sets (``lfw.bin``, ``agedb_30.bin``, ...).

Format: a pickle of ``(images, issame)`` where ``images`` is a list of ``2N`` encoded images (JPEG or
PNG bytes) and ``issame`` a list of ``N`` booleans; images ``2i`` and ``2i + 1`` form pair ``i``.
InsightFace reads them with ``pickle.load(f, encoding="bytes")`` (the older files were written by
Python 2) and decodes with ``mx.image.imdecode``, which yields **RGB**; :func:`load_bin` decodes
with torchvision to RGB as well, so no channel swap is needed for JPEG/PNG entries. A few
third-party bins hold raw ``H×W×3`` numpy arrays instead of encoded bytes (typically BGR, from
OpenCV): those are accepted too, and ``bgr=True`` converts them.

Unpickling never runs arbitrary code: :class:`_BinUnpickler` admits only the handful of globals these
files contain (builtins containers, ``_codecs.encode`` for latin-1 only, and numpy's array
reconstruction); anything else raises :class:`BinFormatError`.
"""
from __future__ import annotations

import codecs
import importlib
import json
import os
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import LqlibError
from ..io import atomic_write, write_json
from .datasets import ImageDecodeError, as_encoded, bgr_to_rgb, decode_rgb, encode_jpeg, parallel_map, stack_images


class BinFormatError(LqlibError, ValueError):
    """A ``.bin`` file is not a well-formed (or not a safe) InsightFace verification set."""


def _latin1_encode(obj, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it, restricted to latin-1."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(obj, "latin1", errors)


def _numpy_core_attr(submodule: str, name: str):
    """``numpy[._]core.<submodule>.<name>`` from whichever package this numpy version provides."""
    for mod in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {submodule}.{name}")


# (module, name) → a zero-argument resolver. Nothing outside this table can be loaded.
_ALLOWED = {
    ("builtins", "bytes"): lambda: bytes,
    ("builtins", "bytearray"): lambda: bytearray,
    ("builtins", "list"): lambda: list,
    ("builtins", "tuple"): lambda: tuple,
    ("builtins", "bool"): lambda: bool,
    ("__builtin__", "bytearray"): lambda: bytearray,  # Python 2 name of builtins
    ("__builtin__", "list"): lambda: list,
    ("__builtin__", "tuple"): lambda: tuple,
    ("__builtin__", "bool"): lambda: bool,
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    # numpy arrays (protocol ≤ 4: multiarray._reconstruct; protocol 5: numeric._frombuffer) and numpy
    # scalars such as np.bool_ (multiarray.scalar), under numpy 1 (numpy.core) and numpy 2 (numpy._core) names
    **{(f"numpy.{pkg}.{sub}", name): (lambda sub=sub, name=name: _numpy_core_attr(sub, name))
       for pkg in ("core", "_core")
       for sub, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))},
}


class _BinUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only the globals listed in ``_ALLOWED``."""

    def find_class(self, module: str, name: str):
        resolver = _ALLOWED.get((module, name))
        if resolver is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return resolver()


def _unpickle(path: Path):
    try:
        with open(path, "rb") as f:
            return _BinUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        raise BinFormatError(f"{path}: not a valid InsightFace .bin pickle ({e})") from None
    except EOFError:
        raise BinFormatError(f"{path}: truncated .bin file (unexpected end of data)") from None
    except Exception as e:  # any other failure of a malformed stream
        raise BinFormatError(f"{path}: not a valid InsightFace .bin pickle ({type(e).__name__}: {e})") from None


def read_bin(path: str | os.PathLike) -> tuple[list, list[bool]]:
    """Unpickle and validate a ``.bin`` without decoding: ``(2N encoded images, N issame bools)``.

    Image entries are ``bytes`` (encoded JPEG/PNG) or ``numpy`` arrays (raw ``H×W×3`` pixels).
    """
    path = Path(path)
    obj = _unpickle(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise BinFormatError(f"{path}: expected a pickled (images, issame) pair, got {type(obj).__name__}")
    images, issame = obj
    if isinstance(issame, np.ndarray):
        issame = issame.reshape(-1).tolist()
    if not isinstance(images, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise BinFormatError(f"{path}: expected lists of images and issame flags, "
                             f"got {type(images).__name__} and {type(issame).__name__}")
    if len(images) % 2:
        raise BinFormatError(f"{path}: odd number of images ({len(images)}); pairs need 2N images")
    if len(images) != 2 * len(issame):
        raise BinFormatError(f"{path}: {len(images)} images but {len(issame)} issame flags (need 2N images for N pairs)")
    if not issame:
        raise BinFormatError(f"{path}: holds 0 pairs (no images, no issame flags); a verification set needs pairs")
    for i, im in enumerate(images):
        if not isinstance(im, (bytes, bytearray, np.ndarray)):
            raise BinFormatError(f"{path}: image {i} is a {type(im).__name__}, expected encoded bytes")
        if len(im) == 0 if isinstance(im, (bytes, bytearray)) else im.size == 0:
            raise BinFormatError(f"{path}: image {i} (pair {i // 2}) is empty (0 bytes)")
    flags = []
    for i, s in enumerate(issame):
        if isinstance(s, (bool, np.bool_)) or (isinstance(s, (int, np.integer)) and s in (0, 1)):
            flags.append(bool(s))
        else:
            raise BinFormatError(f"{path}: issame[{i}] is {s!r}, expected a boolean")
    return list(images), flags


def _decode_entry(entry, where: str, bgr: bool) -> torch.Tensor:
    if isinstance(entry, np.ndarray) and entry.ndim == 3:  # raw HWC pixels
        if entry.dtype != np.uint8 or entry.shape[2] != 3:
            raise ImageDecodeError(f"cannot decode {where}: raw array {entry.dtype} {entry.shape}, expected uint8 H×W×3")
        img = torch.from_numpy(np.ascontiguousarray(entry.transpose(2, 0, 1)))
        return bgr_to_rgb(img) if bgr else img
    return decode_rgb(entry, where=where, bgr=bgr)


def load_bin(path: str | os.PathLike, *, bgr: bool = False, threads: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a ``.bin`` verification set.

    Returns ``(images, issame)``: ``uint8`` **RGB** ``[2N, 3, H, W]`` and ``bool`` ``[N]``. ``bgr=True``
    swaps channels after decoding, for bins known to store BGR pixels (raw-array bins).
    A corrupt image raises :class:`~lqlib.data.datasets.ImageDecodeError` naming its index and the file.
    Decoding runs on ``threads`` threads (default ``min(4, CPU count)``).
    """
    path = Path(path)
    entries, issame = read_bin(path)
    imgs = parallel_map(lambda ie: _decode_entry(ie[1], f"image {ie[0]} of {path}", bgr), enumerate(entries), threads)
    try:
        images = stack_images(imgs, what=str(path))
    except ValueError as e:
        raise BinFormatError(str(e)) from None
    return images, torch.tensor(issame, dtype=torch.bool)


LFW_FOLD_PAIRS = 600  # LFW View 2 / InsightFace verification sets: folds of 300 same + 300 different pairs


def folds_sidecar(path: str | os.PathLike) -> Path:
    """``x.bin`` → ``x.folds.json``: the per-pair fold ids of a ``.bin`` (written by :func:`write_bin`)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.folds.json")


def bin_folds(path: str | os.PathLike, n: int) -> torch.Tensor:
    """The verification folds of the ``n`` pairs of ``path``: from its ``.folds.json`` sidecar when
    present, else the LFW layout — ``n / 600`` contiguous folds of 600 pairs (InsightFace's lfw.bin,
    agedb_30.bin, cplfw.bin: 10 folds) — and, for other sizes, 10 contiguous near-equal folds
    (InsightFace's ``KFold(10)``). The evaluation checks that every fold holds both classes."""
    side = folds_sidecar(path)
    if side.is_file():
        try:
            folds = json.loads(side.read_text())["folds"]
        except (ValueError, KeyError, TypeError) as e:
            raise BinFormatError(f"{side}: not a folds sidecar ({{\"folds\": [fold id per pair]}}): {e}") from None
        if len(folds) != n:
            raise BinFormatError(f"{side} lists {len(folds)} folds for the {n} pairs of {path}")
        return torch.tensor(folds, dtype=torch.int64)
    k = n // LFW_FOLD_PAIRS if n % LFW_FOLD_PAIRS == 0 and n >= 2 * LFW_FOLD_PAIRS else 10
    return torch.arange(n, dtype=torch.int64) * k // max(n, 1)


def write_bin(path: str | os.PathLike, images: torch.Tensor | Sequence, issame: Sequence[bool] | torch.Tensor,
              quality: int = 90, folds: Sequence[int] | torch.Tensor | None = None) -> Path:
    """Write an InsightFace ``.bin``: ``images`` is a ``uint8`` RGB ``[2N, 3, H, W]`` tensor (JPEG-encoded
    at ``quality``) or a sequence of ``2N`` items each either encoded bytes or a ``[3, H, W]`` tensor.

    Identical ``bytes`` objects repeated in ``images`` are stored once (pickle memoises them), which
    keeps sets where an image occurs in several pairs small; readers see ordinary ``2N`` entries.
    ``folds`` (one fold id per pair) are recorded in the ``.folds.json`` sidecar (:func:`bin_folds`).
    """
    path = Path(path)
    if isinstance(images, torch.Tensor):
        encoded = encode_jpeg(images, quality)
    else:
        encoded = [as_encoded(im, quality) for im in images]
    flags = [bool(s) for s in (issame.tolist() if isinstance(issame, torch.Tensor) else issame)]
    if len(encoded) != 2 * len(flags):
        raise ValueError(f"write_bin: {len(encoded)} images but {len(flags)} issame flags (need 2N images for N pairs)")
    fold_ids = None if folds is None else [int(v) for v in (folds.tolist() if isinstance(folds, torch.Tensor) else folds)]
    if fold_ids is not None and len(fold_ids) != len(flags):
        raise ValueError(f"write_bin: {len(fold_ids)} fold ids for {len(flags)} pairs")
    with atomic_write(path, "wb") as f:
        pickle.dump((encoded, flags), f, protocol=4)
    if fold_ids is not None:
        write_json(folds_sidecar(path), {"pairs": len(flags), "folds": fold_ids})
    return path
