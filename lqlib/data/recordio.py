"""MXNet IndexedRecordIO packs (``train.rec`` + ``train.idx``) as used by InsightFace, without mxnet.

Record framing (MXNet ``dmlc::RecordIOWriter``): ``uint32 magic 0xced7230a``, ``uint32 lrec`` (lower 29
bits = payload length, upper 3 bits = continuation flag; only whole records, flag 0, are supported),
the payload, then zero padding to a multiple of 4 bytes. All integers little-endian.

Payload (``mx.recordio.pack``): an ``IRHeader`` struct ``<IfQQ`` = ``(flag uint32, label float32,
id uint64, id2 uint64)``; if ``flag > 0`` it is followed by ``flag`` float32 labels (and the float
label field is unused); the rest is the encoded image (JPEG/PNG).

The ``.idx`` file is text, one ``index\\toffset`` line per record.

InsightFace layout: record 0 is a header with an empty image and ``flag = 2``; its labels
``[a, b]`` mean the images are records ``1 .. a-1`` and records ``a .. b-1`` are identity records whose
label pairs ``[start, end)`` list each identity's image records (this is what InsightFace's
``MXFaceDataset`` and the older ``FaceImageIter`` read). A pack without such a header (plain
``im2rec`` output) is read as "every record is an image".

Images decode to **RGB** ``uint8 [3, H, W]``: JPEG carries its own colour model and InsightFace's
mxnet code decodes to RGB as well, so no channel swap is needed (``bgr=True`` exists for packs
known to hold BGR pixels).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..errors import LqlibError
from ..io import atomic_write
from .datasets import LabeledImageDataset, as_encoded, decode_rgb

MAGIC = 0xCED7230A
_LEN_BITS = 29
_LEN_MASK = (1 << _LEN_BITS) - 1
_FRAME = struct.Struct("<II")
_IRHEADER = struct.Struct("<IfQQ")


class RecordFormatError(LqlibError, ValueError):
    """A ``.rec``/``.idx`` pair is malformed; the message names the file and the record."""


@dataclass(frozen=True)
class IRHeader:
    """The per-record header: ``label`` is a float (``flag == 0``) or a float32 array of ``flag`` values."""

    flag: int
    label: float | np.ndarray
    id: int = 0
    id2: int = 0

    @property
    def first_label(self) -> float:
        return float(self.label[0]) if self.flag > 0 else float(self.label)


# --------------------------------------------------------------------------- payload and framing

def pack_payload(label: float | Iterable[float], image: bytes = b"", id: int = 0, id2: int = 0) -> bytes:
    """``mx.recordio.pack``: IRHeader (+ label array when ``label`` is a sequence) + image bytes."""
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _IRHEADER.pack(0, float(label), id, id2) + image
    arr = np.asarray(list(label), dtype="<f4")
    return _IRHEADER.pack(arr.size, 0.0, id, id2) + arr.tobytes() + image


def unpack_payload(payload: bytes, *, where: str = "record") -> tuple[IRHeader, bytes]:
    """``mx.recordio.unpack``: payload → ``(IRHeader, image bytes)``."""
    if len(payload) < _IRHEADER.size:
        raise RecordFormatError(f"{where}: payload of {len(payload)} bytes is shorter than the 24-byte IRHeader")
    flag, label, id_, id2 = _IRHEADER.unpack_from(payload)
    start = _IRHEADER.size
    if flag > 0:
        end = start + 4 * flag
        if len(payload) < end:
            raise RecordFormatError(f"{where}: header announces {flag} labels but the payload is too short")
        label = np.frombuffer(payload, dtype="<f4", count=flag, offset=start).copy()
        start = end
    return IRHeader(flag, label, id_, id2), payload[start:]


def first_label(prefix: bytes, *, where: str = "record") -> float:
    """The label of a record (its float label, or the first of its label array) from the payload's
    first ``24 + 4`` bytes, without reading the image."""
    if len(prefix) < _IRHEADER.size:
        raise RecordFormatError(f"{where}: payload of {len(prefix)} bytes is shorter than the 24-byte IRHeader")
    flag, label, _, _ = _IRHEADER.unpack_from(prefix)
    if flag == 0:
        return float(label)
    if len(prefix) < _IRHEADER.size + 4:
        raise RecordFormatError(f"{where}: header announces {flag} labels but the payload is too short")
    return float(np.frombuffer(prefix, dtype="<f4", count=1, offset=_IRHEADER.size)[0])


def frame_record(payload: bytes) -> bytes:
    """Magic + length word + payload + zero padding to 4 bytes (one whole record, cflag 0)."""
    if len(payload) > _LEN_MASK:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds the 29-bit RecordIO limit")
    return _FRAME.pack(MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def read_record(fd: int, offset: int, *, where: str, max_bytes: int | None = None) -> bytes:
    """Read the payload of the record at ``offset`` of an open file descriptor (``os.pread``, no seek).

    ``max_bytes`` reads only the first bytes of the payload (enough for the header).
    """
    head = os.pread(fd, _FRAME.size, offset)
    if len(head) < _FRAME.size:
        raise RecordFormatError(f"{where}: truncated record header at offset {offset}")
    magic, lrec = _FRAME.unpack(head)
    if magic != MAGIC:
        raise RecordFormatError(f"{where}: bad magic 0x{magic:08x} at offset {offset} (expected 0x{MAGIC:08x}); "
                                "is this a RecordIO file, and does the .idx match it?")
    cflag, length = lrec >> _LEN_BITS, lrec & _LEN_MASK
    if cflag != 0:
        raise RecordFormatError(f"{where}: multi-part record (continuation flag {cflag}) is not supported")
    n = length if max_bytes is None else min(length, max_bytes)
    payload = os.pread(fd, n, offset + _FRAME.size)
    if len(payload) < n:
        raise RecordFormatError(f"{where}: truncated record (expected {length} bytes at offset {offset})")
    return payload


# --------------------------------------------------------------------------- index

def read_idx(idx_path: str | os.PathLike) -> dict[int, int]:
    """Parse an ``.idx`` file (``index\\toffset`` per line) into ``{index: offset}``."""
    idx_path = Path(idx_path)
    out: dict[int, int] = {}
    with open(idx_path, encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                key, off = int(parts[0]), int(parts[1])
                if len(parts) != 2 or off < 0:
                    raise ValueError
            except (ValueError, IndexError):
                raise RecordFormatError(f"{idx_path}:{lineno}: expected 'index<TAB>offset', got {line.strip()[:60]!r}") from None
            out[key] = off
    return out


def scan_offsets(rec_path: str | os.PathLike) -> dict[int, int]:
    """Build ``{index: offset}`` by walking a ``.rec`` sequentially (for packs without an ``.idx``)."""
    rec_path = Path(rec_path)
    size = rec_path.stat().st_size
    out: dict[int, int] = {}
    fd = os.open(rec_path, os.O_RDONLY)
    try:
        off = 0
        while off < size:
            head = os.pread(fd, _FRAME.size, off)
            if len(head) < _FRAME.size:
                raise RecordFormatError(f"{rec_path}: truncated record header at offset {off}")
            magic, lrec = _FRAME.unpack(head)
            if magic != MAGIC:
                raise RecordFormatError(f"{rec_path}: bad magic 0x{magic:08x} at offset {off}")
            length = lrec & _LEN_MASK
            out[len(out)] = off
            off += _FRAME.size + length + (-length % 4)
    finally:
        os.close(fd)
    return out


# --------------------------------------------------------------------------- dataset

class RecordDataset(LabeledImageDataset):
    """A map-style dataset over an IndexedRecordIO pack: ``(uint8 RGB [3, H, W], int label)``.

    ``idx_path`` defaults to the ``.rec`` path with suffix ``.idx`` (a sequential scan of the ``.rec``
    if that does not exist). The label is the record's float label, or the first element of its label
    array. The file is opened lazily in each process (DataLoader workers included) and read with
    ``os.pread``; no file handle is ever pickled. :attr:`labels` and :attr:`num_classes` read only
    the record headers (cached on first use). ``bgr=True`` swaps channels for BGR packs.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None,
                 transform: Callable | None = None, *, bgr: bool = False):
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"RecordIO file not found: {self.rec_path}")
        default_idx = self.rec_path.with_suffix(".idx")
        self.idx_path = Path(idx_path) if idx_path is not None else (default_idx if default_idx.is_file() else None)
        self.transform = transform
        self.bgr = bgr
        self._fd: int | None = None
        self._pid: int | None = None
        self._labels: np.ndarray | None = None
        self._offsets = self._load_offsets()
        self._keys = self._image_keys()

    # ---- opening
    def _load_offsets(self) -> dict[int, int]:
        if self.idx_path is None:
            return scan_offsets(self.rec_path)
        offsets = read_idx(self.idx_path)
        size = self.rec_path.stat().st_size
        if offsets:
            key, off = max(offsets.items(), key=lambda kv: kv[1])
            if off + _FRAME.size > size:
                raise RecordFormatError(f"{self.idx_path}: record {key} has offset {off}, past the end of "
                                        f"{self.rec_path} ({size} bytes); the .idx does not belong to this .rec")
        return offsets

    def _image_keys(self) -> np.ndarray:
        """Record indices holding images (InsightFace header-aware)."""
        keys = sorted(self._offsets)
        if 0 in self._offsets:
            header, image = unpack_payload(self._read(0), where=self._where(0))
            if header.flag > 0 and len(image) == 0:  # an InsightFace header record
                a, b = int(header.label[0]), int(header.label[1]) if header.flag > 1 else 0
                first, end = (1, a) if a > 1 else (a, b)  # [a, b) read as an image range if a <= 1
                keys = list(range(first, end))
                missing = [k for k in keys if k not in self._offsets]
                if missing:
                    raise RecordFormatError(f"{self.rec_path}: header record announces images {first}..{end - 1} "
                                            f"but record {missing[0]} is not in {self.idx_path}")
        return np.asarray(keys, dtype=np.int64)

    def _where(self, key: int) -> str:
        return f"record {key} of {self.rec_path}"

    def _read(self, key: int, max_bytes: int | None = None) -> bytes:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.rec_path, os.O_RDONLY), os.getpid()
        return read_record(self._fd, self._offsets[key], where=self._where(key), max_bytes=max_bytes)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fd"] = state["_pid"] = None
        return state

    # ---- dataset protocol
    def __len__(self) -> int:
        return len(self._keys)

    @property
    def labels(self) -> np.ndarray:
        """int64 labels of every image, from the record headers only (no decoding)."""
        if self._labels is None:
            out = np.empty(len(self._keys), dtype=np.int64)
            for i, key in enumerate(self._keys.tolist()):
                out[i] = int(first_label(self._read(key, max_bytes=_IRHEADER.size + 4), where=self._where(key)))
            self._labels = out
        return self._labels

    def header(self, index: int) -> IRHeader:
        """The IRHeader of image ``index`` (dataset index, not record index)."""
        key = int(self._keys[index])
        return unpack_payload(self._read(key), where=self._where(key))[0]

    def load_sample(self, index: int) -> tuple[torch.Tensor, int]:
        key = int(self._keys[index])
        header, image = unpack_payload(self._read(key), where=self._where(key))
        return decode_rgb(image, where=self._where(key), bgr=self.bgr), int(header.first_label)


# --------------------------------------------------------------------------- writing

def _identity_ranges(labels: list[int]) -> list[tuple[int, int]] | None:
    """``[start, end)`` record ranges per identity (records start at 1), or None if labels are not grouped."""
    ranges, seen = [], set()
    for i, lab in enumerate(labels):
        if i == 0 or lab != labels[i - 1]:
            if lab in seen:
                return None
            seen.add(lab)
            ranges.append([i + 1, i + 2])
        else:
            ranges[-1][1] = i + 2
    return [tuple(r) for r in ranges]


def write_rec(rec_path: str | os.PathLike, idx_path: str | os.PathLike | None,
              samples: Iterable[tuple[torch.Tensor | bytes, int]], quality: int = 90) -> int:
    """Write an InsightFace-style pack from ``(image, int label)`` samples; returns the image count.

    ``image`` is encoded bytes (stored as-is) or a ``uint8`` RGB ``[3, H, W]`` tensor (JPEG-encoded
    at ``quality``). Layout: header record 0 (``flag=2``, labels ``[N+1, end]``), images as records
    ``1..N`` (``flag=0``, float label, ``id`` = record index), then — when each label's samples are
    contiguous — one identity record per label with its ``[start, end)`` image range. Both files are
    written to temporary files and renamed into place only when complete.
    """
    rec_path = Path(rec_path)
    idx_path = Path(idx_path) if idx_path is not None else rec_path.with_suffix(".idx")
    lines: list[str] = []
    labels: list[int] = []
    with atomic_write(rec_path, "wb") as fr, atomic_write(idx_path, "w", encoding="ascii") as fi:
        def put(key: int, payload: bytes) -> None:
            lines.append(f"{key}\t{fr.tell()}\n")
            fr.write(frame_record(payload))

        header_size = len(frame_record(pack_payload([0.0, 0.0])))
        fr.write(b"\0" * header_size)  # placeholder for record 0, rewritten once N is known
        for key, (image, label) in enumerate(samples, start=1):
            if int(label) != label:
                raise ValueError(f"write_rec: label of sample {key - 1} is not an integer: {label!r}")
            labels.append(int(label))
            put(key, pack_payload(float(label), as_encoded(image, quality), id=key))
        n = len(labels)
        ranges = _identity_ranges(labels) or []
        for j, (a, b) in enumerate(ranges):
            put(n + 1 + j, pack_payload([float(a), float(b)], id=n + 1 + j))
        fr.seek(0)
        fr.write(frame_record(pack_payload([float(n + 1), float(n + 1 + len(ranges))])))
        fr.seek(0, os.SEEK_END)
        fi.write("0\t0\n" + "".join(lines))
    return n
