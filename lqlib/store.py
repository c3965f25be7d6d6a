"""Validated on-disk caches of tensors: one file per JSON key, checked against its manifest on load.

Anything lqlib computes once and reads back later (a frozen teacher's embeddings of the training
set, its logits and attention maps, ...) goes through an :class:`ArrayStore`::

    store = ArrayStore("teacher_embeddings", what="teacher cache")     # cache/teacher_embeddings/
    arrays, manifest = store.load_or_build(key, build, expect={"emb": ((n, None), torch.float32)})

* the file is ``<digest of the key>.pt``: a ``{"arrays": {name: tensor}, "manifest": {...}}`` dict
  (``torch.save``, read back with ``weights_only=True``) plus a ``.json`` copy of the manifest for
  people; the manifest records the key itself and every array's shape and dtype;
* :meth:`ArrayStore.load` accepts a file only when it reads, its manifest's key is the requested key,
  every array has the shape and dtype its manifest records, they match ``expect`` (``None`` = any
  size in that dimension) and floating arrays are finite. A truncated, garbage or empty file, a
  table of the wrong width or row count: a :class:`CacheInvalidWarning` naming the file and the
  reason, and :meth:`~ArrayStore.load_or_build` builds it again;
* writes are atomic (:mod:`lqlib.io`: temp file + rename): a crash leaves the old file or none.

Keys should rest on content, not names: :func:`file_digest` (SHA-256 of a file, memoised by path,
inode, size and mtime) for weights files, :func:`tensor_digest` for data without a stable description.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from . import paths
from .errors import LqlibError
from .io import torch_save, write_json

Expect = Mapping[str, tuple[tuple[Optional[int], ...], Optional[torch.dtype]]]  # name → (shape, dtype)
Check = Callable[[Mapping[str, torch.Tensor]], Optional[str]]  # arrays → why they are unusable, or None


class CacheInvalidWarning(UserWarning):
    """A cache file could not be used (unreadable, or not what its manifest / the caller says)."""


class InvalidCacheFile(LqlibError, ValueError):
    """Raised by :meth:`ArrayStore.read` for a cache file that fails validation (message names it)."""


def key_digest(key: Any) -> str:
    """20 hex digits of SHA-256 of the canonical JSON of ``key``."""
    return hashlib.sha256(_canonical(key).encode()).hexdigest()[:20]


def _canonical(key: Any) -> str:
    return json.dumps(key, sort_keys=True, default=str)


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, computed once per (resolved path, inode, size, mtime). A file
    modified in the last 2 s is hashed every time (a rewrite of the same size within the file system's
    timestamp granularity would keep size and mtime: "racy git")."""
    p = Path(path).resolve()
    st = p.stat()
    memo = (str(p), st.st_ino, st.st_size, st.st_mtime_ns)
    if memo in _FILE_DIGESTS:
        return _FILE_DIGESTS[memo]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if time.time_ns() - st.st_mtime_ns > 2_000_000_000:
        _FILE_DIGESTS[memo] = h.hexdigest()
    return h.hexdigest()


def tensor_digest(t: torch.Tensor, chunk: int = 1 << 26) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and bytes (read in chunks, from any device)."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    flat = t.detach().reshape(-1)
    step = max(1, chunk // max(1, t.element_size()))
    for s in range(0, flat.numel(), step):
        h.update(flat[s:s + step].cpu().contiguous().view(torch.uint8).numpy())
    return h.hexdigest()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class ArrayStore:
    """A folder of cached tensor bundles under :func:`lqlib.paths.cache_dir` (see the module docstring).

    ``folder`` is a name under the cache directory (resolved at each call, so ``$LQLIB_CACHE`` and
    tests may move it) or an absolute path; ``what`` names the cache in messages."""

    def __init__(self, folder: str | os.PathLike, what: str = "cache"):
        self.folder, self.what = folder, what

    def directory(self) -> Path:
        f = Path(self.folder)
        return f if f.is_absolute() else paths.cache_dir() / f

    def path(self, key: Any) -> Path:
        return self.directory() / f"{key_digest(key)}.pt"

    # ------------------------------------------------------------------ reading
    def read(self, key: Any, expect: Optional[Expect] = None, check: Optional[Check] = None
             ) -> tuple[dict[str, torch.Tensor], dict]:
        """``(arrays, manifest)`` of ``key``'s file, validated; :class:`FileNotFoundError` when there is
        none, :class:`InvalidCacheFile` (naming the file and the reason) when it fails validation.
        ``check(arrays)`` may add a rule of the caller's (it returns the reason, or None)."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{self.what}: no file {path}")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, empty, garbage, not a torch file: all mean "rebuild"
            raise InvalidCacheFile(f"{path} is unreadable ({type(e).__name__}: {str(e)[:200]})") from e
        if not (isinstance(d, dict) and isinstance(d.get("arrays"), dict) and isinstance(d.get("manifest"), dict)):
            raise InvalidCacheFile(f"{path} is not an lqlib cache file (no arrays + manifest)")
        arrays, manifest = d["arrays"], d["manifest"]
        if _canonical(manifest.get("key")) != _canonical(key):
            raise InvalidCacheFile(f"{path}: its manifest describes another key ({manifest.get('key')!r})")
        recorded = manifest.get("arrays")
        if not isinstance(recorded, dict) or set(recorded) != set(arrays):
            raise InvalidCacheFile(f"{path}: arrays {sorted(arrays)} do not match the manifest's "
                                   f"{sorted(recorded) if isinstance(recorded, dict) else recorded!r}")
        for name, t in arrays.items():
            if not isinstance(t, torch.Tensor):
                raise InvalidCacheFile(f"{path}: {name!r} is a {type(t).__name__}, not a tensor")
            meta = recorded[name]
            if list(t.shape) != list(meta.get("shape", [])) or _dtype_name(t.dtype) != meta.get("dtype"):
                raise InvalidCacheFile(f"{path}: {name!r} is {tuple(t.shape)} {_dtype_name(t.dtype)}, the manifest "
                                       f"says {tuple(meta.get('shape', []))} {meta.get('dtype')}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise InvalidCacheFile(f"{path}: {name!r} holds NaN/inf")
        for name, (shape, dtype) in (expect or {}).items():
            if name not in arrays:
                raise InvalidCacheFile(f"{path}: no array {name!r}")
            t = arrays[name]
            if len(t.shape) != len(shape) or any(s is not None and s != a for s, a in zip(shape, t.shape)):
                want = tuple("*" if s is None else s for s in shape)
                raise InvalidCacheFile(f"{path}: {name!r} is {tuple(t.shape)}, expected {want}")
            if dtype is not None and t.dtype != dtype:
                raise InvalidCacheFile(f"{path}: {name!r} is {_dtype_name(t.dtype)}, expected {_dtype_name(dtype)}")
        reason = check(arrays) if check is not None else None
        if reason:
            raise InvalidCacheFile(f"{path}: {reason}")
        return arrays, manifest

    def load(self, key: Any, expect: Optional[Expect] = None, check: Optional[Check] = None
             ) -> Optional[tuple[dict[str, torch.Tensor], dict]]:
        """:meth:`read`, or None when there is no valid file (an invalid one gives a
        :class:`CacheInvalidWarning` naming it)."""
        try:
            return self.read(key, expect, check)
        except FileNotFoundError:
            return None
        except InvalidCacheFile as e:
            warnings.warn(f"{self.what}: {e}; rebuilding it", CacheInvalidWarning, stacklevel=3)
            return None

    # ------------------------------------------------------------------ writing
    def save(self, key: Any, arrays: Mapping[str, torch.Tensor], info: Optional[dict] = None) -> tuple[Path, dict]:
        """Write ``arrays`` under ``key`` atomically; returns ``(path, manifest)``."""
        path = self.path(key)
        arrays = {k: v.detach().cpu().contiguous() for k, v in arrays.items()}
        manifest = {"key": json.loads(_canonical(key)), **(info or {}),
                    "arrays": {k: {"shape": list(v.shape), "dtype": _dtype_name(v.dtype)} for k, v in arrays.items()},
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        torch_save({"arrays": arrays, "manifest": manifest}, path)
        write_json(path.with_suffix(".json"), manifest)
        return path, manifest

    def load_or_build(self, key: Any, build: Callable[[], Mapping[str, torch.Tensor]],
                      expect: Optional[Expect] = None, info: Optional[dict] = None,
                      log: Callable[[str], None] = print, check: Optional[Check] = None
                      ) -> tuple[dict[str, torch.Tensor], dict]:
        """The arrays of ``key`` from disk when valid, else ``build()``, validated against ``expect``
        (and ``check``) and saved (``info`` and the build's seconds go into the manifest)."""
        got = self.load(key, expect, check)
        if got is not None:
            return got
        path = self.path(key)
        log(f"{self.what}: building {path}")
        t0 = time.perf_counter()
        arrays = dict(build())
        for name, (shape, dtype) in (expect or {}).items():  # a build that breaks the contract is a bug: say so
            t = arrays.get(name)
            if t is None or len(t.shape) != len(shape) or any(s is not None and s != a for s, a in zip(shape, t.shape)):
                raise ValueError(f"{self.what}: built {name!r} has shape {None if t is None else tuple(t.shape)}, "
                                 f"expected {tuple('*' if s is None else s for s in shape)}")
        reason = check(arrays) if check is not None else None
        if reason:
            raise ValueError(f"{self.what}: the built arrays fail their check: {reason}")
        seconds = round(time.perf_counter() - t0, 1)
        try:
            _, manifest = self.save(key, arrays, {**(info or {}), "seconds": seconds})
        except OSError as e:  # the cache is an optimisation: keep the result, say why it is not stored
            warnings.warn(f"{self.what}: could not write {path} ({e}); using the result without storing it",
                          CacheInvalidWarning, stacklevel=2)
            manifest = {"key": key, **(info or {}), "seconds": seconds}
        log(f"{self.what}: done in {seconds} s")
        return {k: v.detach().cpu() for k, v in arrays.items()}, manifest
