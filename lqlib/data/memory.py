"""Decode once: a training set as one uint8 tensor in memory, and the batch stream the trainer reads.

On 2 CPU cores, decoding JPEGs in every epoch (and in every notebook kernel) costs more than the
tiny students' training step. :func:`decoded` decodes a dataset once — on a thread pool, torchvision's
decoder releases the GIL — into a ``uint8 [N, 3, H, W]`` tensor and keeps it as a ``.npy`` under
``cache/decoded/`` keyed by the data's identity, so later processes only read it back (memory-mapped).
:func:`batch_stream` then serves batches by indexing that tensor — ``(images, labels, index)`` with
the samples' dataset indices (a teacher-embedding cache looks rows up by them). Sets too large for
memory (``max_bytes``) stream through a ``DataLoader`` instead, with the same output.
:func:`dataset_fingerprint` hashes every decoded image (8 bytes each) and keeps an 8×8 grey thumbnail of it
(64 bytes): a run records both so that an evaluation can refuse pair sets holding its training faces —
identical or re-encoded — whatever they are called (:func:`shared_faces`).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import paths
from ..io import atomic_write, write_json
from ..store import CacheInvalidWarning
from .datasets import parallel_map

DEFAULT_MAX_BYTES = 6 * 2**30


class DecodedDataset(Dataset):
    """``images`` uint8 [N, 3, H, W] and ``labels`` int64 [N], already decoded."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(f"DecodedDataset needs uint8 [N,3,H,W] images and N labels, got "
                             f"{images.dtype} {tuple(images.shape)} / {len(labels)}")
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.int64)
        self.num_classes = int(num_classes if num_classes is not None else int(self.labels.max()) + 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])

    def to(self, device) -> "DecodedDataset":
        """The same set with its pixels on ``device`` (e.g. once on the GPU: batches never cross the bus)."""
        return DecodedDataset(self.images.to(device), self.labels.to(device), self.num_classes)


def _labels(ds) -> torch.Tensor:
    lab = getattr(ds, "labels", None)
    return torch.as_tensor(np.asarray(lab) if lab is not None else [ds[i][1] for i in range(len(ds))],
                           dtype=torch.int64)


def decoded(ds: Dataset, key: dict | None = None, threads: int | None = None,
            max_bytes: int = DEFAULT_MAX_BYTES) -> Dataset:
    """``ds`` decoded into memory (a :class:`DecodedDataset`), read from / written to the disk cache
    when ``key`` (a JSON-able description of the data) is given; ``ds`` itself when it would need
    more than ``max_bytes``."""
    if isinstance(ds, DecodedDataset) or len(ds) == 0:
        return ds
    first = ds[0][0]
    if first.numel() * len(ds) > max_bytes:
        return ds
    labels = _labels(ds)
    n_cls = int(getattr(ds, "num_classes", int(labels.max()) + 1))
    path = None
    if key is not None:
        path = _cache_path({**key, "n": len(ds), "shape": list(first.shape)})
        arr = _read_cached(path, (len(ds), *first.shape))
        if arr is not None:
            return DecodedDataset(torch.from_numpy(np.ascontiguousarray(arr)), labels, n_cls)
    images = torch.stack(parallel_map(lambda i: ds[i][0], range(len(ds)), threads))
    if path is not None:
        with atomic_write(path, "wb") as f:
            np.save(f, images.numpy())
        write_json(path.with_suffix(".json"), {**key, "n": len(ds), "shape": list(images.shape)})
    return DecodedDataset(images, labels, n_cls)


def decoded_files(files: Sequence[str | Path], load: Callable[[Sequence[Path]], torch.Tensor], item_shape: tuple,
                  key: dict, chunk: int = 1024) -> np.ndarray:
    """The images at ``files`` decoded once: ``load(some files)`` (uint8 ``[n, *item_shape]``) runs chunk by
    chunk into one ``.npy`` under ``cache/decoded/``, keyed by ``key`` and every file's path, size and
    modification time (a changed file is decoded again), and is read back memory-mapped — later calls and
    processes decode nothing, and a set larger than memory streams from the disk. The file appears complete
    or not at all."""
    files = [Path(f) for f in files]
    shape = (len(files), *item_shape)
    if not files:
        return np.zeros(shape, np.uint8)
    ident = hashlib.sha256()
    for f in files:
        st = f.stat()
        ident.update(f"{f.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    desc = {**key, "files": ident.hexdigest(), "shape": list(shape)}
    path = _cache_path(desc, "files-")
    arr = _read_cached(path, shape)
    if arr is not None:
        return arr
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        for s in range(0, len(files), chunk):
            x = load(files[s:s + chunk])
            if tuple(x.shape) != (len(files[s:s + chunk]), *item_shape) or x.dtype != torch.uint8:
                raise ValueError(f"decoded_files: loading {files[s]} ... gave {x.dtype} {tuple(x.shape)}, expected "
                                 f"uint8 [n, {', '.join(map(str, item_shape))}]")
            out[s:s + chunk] = x.numpy()
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_json(path.with_suffix(".json"), {**desc, "n": len(files), "first": str(files[0])})
    return np.load(path, mmap_mode="r")


def _cache_path(desc: dict, prefix: str = "") -> Path:
    """``cache/decoded/<prefix><digest of desc>.npy``."""
    digest = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return paths.cache_dir() / "decoded" / f"{prefix}{digest}.npy"


def _read_cached(path: Path, shape: tuple) -> np.ndarray | None:
    """The decoded pixels at ``path`` (memory-mapped) when the file reads as a uint8 array of ``shape``;
    None when there is none; a :class:`~lqlib.store.CacheInvalidWarning` naming it (then it is decoded
    again and rewritten) when it is truncated, garbage, empty or of another shape."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
        if arr.shape == shape and arr.dtype == np.uint8:
            return arr
        reason = f"holds {arr.dtype} {arr.shape}, expected uint8 {shape}"
    except (ValueError, OSError, EOFError) as e:
        reason = f"is unreadable ({type(e).__name__}: {str(e)[:200]})"
    warnings.warn(f"decode cache: {path} {reason}; decoding again", CacheInvalidWarning, stacklevel=3)
    return None


def pixel_hashes(images: torch.Tensor | Sequence[torch.Tensor], threads: int | None = None) -> np.ndarray:
    """One 8-byte hash per image, in order (BLAKE2b of the decoded ``uint8`` pixels and their shape) of ``images``
    (``[N, 3, H, W]`` or a sequence of ``[3, H, W]``). The same face decoded from the same bytes hashes alike
    whatever its file is called."""
    def one(img: torch.Tensor) -> int:
        a = np.ascontiguousarray(img.detach().cpu().numpy())
        h = hashlib.blake2b(a.tobytes(), digest_size=8, person=b"lqlib-img")
        h.update(repr(a.shape).encode())
        return int.from_bytes(h.digest(), "little")

    if len(images) == 0:
        return np.zeros(0, dtype=np.uint64)
    return np.array(parallel_map(one, list(images), threads), dtype=np.uint64)


def image_hashes(images: torch.Tensor | Sequence[torch.Tensor], threads: int | None = None) -> np.ndarray:
    """Sorted unique :func:`pixel_hashes` of ``images``: the content fingerprint of a set of faces."""
    return np.unique(pixel_hashes(images, threads))


THUMB = 8                  # thumbnails: 8×8 grey means of a face (64 bytes)
NEAR_DUPLICATE_RMS = 2.0   # grey levels: a JPEG re-encoding moves a face's thumbnail by < 0.7 (q50-95), while
#                            the nearest lfw-half training face of any lfw-half test face is >= 13 away


def image_thumbnails(images: torch.Tensor | Sequence[torch.Tensor], chunk: int = 2048) -> np.ndarray:
    """``uint8 [N, 64]``: each face's 8×8 grid of grey means (rounded) — what survives a re-encoding of the
    same photo (another JPEG quality, another pack) but differs between photos."""
    out = []
    for s in range(0, len(images), chunk):
        part = images[s:s + chunk]
        x = (part if isinstance(part, torch.Tensor) else torch.stack(list(part))).detach().cpu().float()
        grey = torch.nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True), THUMB).flatten(1)
        out.append(grey.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, THUMB * THUMB), dtype=np.uint8)


def dataset_fingerprint(ds: Dataset, key: dict | None = None, threads: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, thumbnails)`` of every image of a training set — :func:`image_hashes` (identical pixels)
    and :func:`image_thumbnails` (the same photo re-encoded) — read from the pixels already in memory (a
    :class:`DecodedDataset`), else decoded once; kept under ``cache/fingerprints/`` when ``key`` (the
    data's identity, as for :func:`decoded`) is given."""
    path = None
    if key is not None:
        digest = hashlib.sha256(json.dumps({**key, "n": len(ds), "thumb": THUMB}, sort_keys=True,
                                           default=str).encode()).hexdigest()[:20]
        path = paths.cache_dir() / "fingerprints" / f"{digest}.npz"
        if path.is_file():
            try:
                with np.load(path) as z:
                    hashes, thumbs = z["hashes"], z["thumbs"]
                if hashes.dtype == np.uint64 and thumbs.dtype == np.uint8 and thumbs.shape == (len(ds), THUMB ** 2):
                    return hashes, thumbs
            except (OSError, ValueError, KeyError):
                pass  # rebuilt below
    images = ds.images if isinstance(ds, DecodedDataset) else parallel_map(lambda i: ds[i][0], range(len(ds)), threads)
    hashes, thumbs = image_hashes(images, threads), image_thumbnails(images)
    if path is not None:
        with atomic_write(path, "wb") as f:
            np.savez(f, hashes=hashes, thumbs=thumbs)
    return hashes, thumbs


def shared_faces(hashes: np.ndarray, thumbs: np.ndarray, train_hashes: np.ndarray,
                 train_thumbs: np.ndarray | None, chunk: int = 8192) -> tuple[int, int]:
    """``(identical, copies)``: how many of the faces (``hashes`` of the distinct ones, ``thumbs`` of all)
    are a training face's pixels exactly, and how many are within :data:`NEAR_DUPLICATE_RMS` of a training
    face's thumbnail (the same photo, possibly re-encoded; identical ones included)."""
    identical = int(np.isin(hashes, train_hashes).sum())
    if train_thumbs is None or not len(train_thumbs) or not len(thumbs):
        return identical, identical
    q = torch.from_numpy(np.unique(thumbs, axis=0)).float()
    best = torch.full((len(q),), float("inf"))
    for s in range(0, len(train_thumbs), chunk):
        t = torch.from_numpy(train_thumbs[s:s + chunk]).float()
        best = torch.minimum(best, torch.cdist(q, t).min(1).values)
    near = int((best / THUMB < NEAR_DUPLICATE_RMS).sum())
    return identical, max(near, identical)


class _Indexed(Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        img, lab = self.ds[i]
        return img, lab, i


def batch_stream(ds: Dataset, order: Sequence[int], batch_size: int, *, num_workers: int = 0,
                 pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Full batches ``(images uint8, labels, index)`` in ``order`` (a sampler's order; the last
    partial batch is dropped)."""
    order = torch.as_tensor(list(order), dtype=torch.int64)
    n = len(order) // batch_size * batch_size
    if isinstance(ds, DecodedDataset):
        order = order.to(ds.images.device)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            yield ds.images.index_select(0, idx), ds.labels.index_select(0, idx), idx
        return
    kw = dict(batch_size=batch_size, sampler=order[:n].tolist(), num_workers=num_workers, drop_last=True,
              pin_memory=pin_memory)
    if num_workers > 0:
        kw.update(prefetch_factor=4)
    for images, labels, idx in DataLoader(_Indexed(ds), **kw):
        yield images, labels, idx
