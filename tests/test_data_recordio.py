"""MXNet/InsightFace IndexedRecordIO packs: reading spec-built packs, writing, and clear errors."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lqlib.data import ImageDecodeError, RecordDataset, RecordFormatError, write_rec
from test_data_synth import IGNORE_CODEC_DEPRECATION, jpeg_bytes, smooth_images

pytestmark = IGNORE_CODEC_DEPRECATION

MAGIC = 0xCED7230A


# ---- a writer built straight from the format description (independent of lqlib's writer)

def spec_record(payload: bytes, cflag: int = 0) -> bytes:
    return struct.pack("<II", MAGIC, (cflag << 29) | len(payload)) + payload + b"\0" * (-len(payload) % 4)


def spec_payload(label, image: bytes = b"", id_: int = 0) -> bytes:
    if isinstance(label, (list, tuple)):
        return struct.pack("<IfQQ", len(label), 0.0, id_, 0) + struct.pack(f"<{len(label)}f", *label) + image
    return struct.pack("<IfQQ", 0, float(label), id_, 0) + image


def spec_pack(tmp_path, payloads: list[bytes], name: str = "train", cflags: dict | None = None):
    rec, idx = tmp_path / f"{name}.rec", tmp_path / f"{name}.idx"
    blob, lines = b"", []
    for i, p in enumerate(payloads):
        lines.append(f"{i}\t{len(blob)}\n")
        blob += spec_record(p, (cflags or {}).get(i, 0))
    rec.write_bytes(blob)
    idx.write_text("".join(lines))
    return rec, idx


def insightface_payloads(images: torch.Tensor, labels: list[int]) -> list[bytes]:
    """Header record 0 [N+1, N+1+K], N image records (one with a label array), K identity records."""
    n, enc = len(labels), jpeg_bytes(images)
    imgs = [spec_payload(float(lab), enc[i], i + 1) for i, lab in enumerate(labels)]
    imgs[1] = spec_payload([float(labels[1]), 7.0], enc[1], 2)  # flag=2 label array: first element is the label
    starts = [i + 1 for i in range(n) if i == 0 or labels[i] != labels[i - 1]] + [n + 1]
    ids = [spec_payload([float(a), float(b)]) for a, b in zip(starts[:-1], starts[1:])]
    return [spec_payload([float(n + 1), float(n + 1 + len(ids))])] + imgs + ids


def test_reads_spec_written_insightface_pack(tmp_path):
    images, labels = smooth_images(5), [0, 0, 1, 1, 2]
    rec, idx = spec_pack(tmp_path, insightface_payloads(images, labels))
    ds = RecordDataset(rec)  # .idx found beside the .rec
    assert len(ds) == 5 and ds.num_classes == 3
    assert ds.labels.tolist() == labels and ds.labels.dtype == np.int64
    for i in range(5):
        img, lab = ds[i]
        assert img.dtype == torch.uint8 and img.shape == (3, 24, 24) and lab == labels[i]
        assert (img.float() - images[i].float()).abs().mean() < 4
    assert ds[-1][1] == 2
    with pytest.raises(IndexError):
        ds[5]


def test_pack_without_header_and_without_idx(tmp_path):
    images = smooth_images(3)
    rec, idx = spec_pack(tmp_path, [spec_payload(float(i), b) for i, b in enumerate(jpeg_bytes(images))], "plain")
    idx.unlink()
    ds = RecordDataset(rec)  # no header record: every record is an image; offsets found by scanning
    assert len(ds) == 3 and ds.labels.tolist() == [0, 1, 2]


def test_write_rec_round_trip_is_insightface_compatible(tmp_path):
    images = smooth_images(4)
    samples = [(images[0], 3), (jpeg_bytes(images[1:2])[0], 3), (images[2], 0), (images[3], 1)]
    n = write_rec(tmp_path / "w.rec", tmp_path / "w.idx", samples, quality=95)
    assert n == 4
    ds = RecordDataset(tmp_path / "w.rec", tmp_path / "w.idx")
    assert ds.labels.tolist() == [3, 3, 0, 1] and ds.num_classes == 4
    assert all((ds[i][0].float() - images[i].float()).abs().mean() < 4 for i in range(4))
    # raw check of the header record and identity records, as InsightFace reads them
    blob = (tmp_path / "w.rec").read_bytes()
    offsets = dict(tuple(map(int, ln.split("\t"))) for ln in (tmp_path / "w.idx").read_text().splitlines())
    assert sorted(offsets) == list(range(8))  # header + 4 images + 3 identities

    def labels_at(key):
        magic, lrec = struct.unpack_from("<II", blob, offsets[key])
        flag = struct.unpack_from("<I", blob, offsets[key] + 8)[0]
        assert magic == MAGIC and lrec >> 29 == 0
        return list(struct.unpack_from(f"<{flag}f", blob, offsets[key] + 8 + 24))

    assert labels_at(0) == [5.0, 8.0]  # images are records 1..4, identities 5..7
    assert [labels_at(k) for k in (5, 6, 7)] == [[1.0, 3.0], [3.0, 4.0], [4.0, 5.0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.idx", "w.rec"]


def test_pickle_safe_and_dataloader_workers(tmp_path):
    write_rec(tmp_path / "d.rec", None, [(img, i % 2) for i, img in enumerate(smooth_images(6))])
    ds = RecordDataset(tmp_path / "d.rec")
    ds[0]  # opens the file
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._fd is None and torch.equal(clone[1][0], ds[1][0])
    batches = list(DataLoader(ds, batch_size=3, num_workers=2))
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 1, 0, 1, 0, 1]
    assert batches[0][0].shape == (3, 3, 24, 24)


def test_idx_offset_past_end_of_rec(tmp_path):
    rec, idx = spec_pack(tmp_path, insightface_payloads(smooth_images(2), [0, 1]))
    idx.write_text(idx.read_text() + f"9\t{rec.stat().st_size + 100}\n")
    with pytest.raises(RecordFormatError, match="past the end"):
        RecordDataset(rec, idx)


def test_wrong_magic(tmp_path):
    rec, idx = spec_pack(tmp_path, insightface_payloads(smooth_images(2), [0, 1]))
    blob = bytearray(rec.read_bytes())
    blob[0:4] = b"\xde\xad\xbe\xef"
    rec.write_bytes(bytes(blob))
    with pytest.raises(RecordFormatError, match="bad magic"):
        RecordDataset(rec, idx)


def test_multipart_record_is_refused(tmp_path):
    payloads = [spec_payload(0.0, b) for b in jpeg_bytes(smooth_images(2))]
    rec, idx = spec_pack(tmp_path, payloads, cflags={1: 1})
    ds = RecordDataset(rec, idx)
    with pytest.raises(RecordFormatError, match="continuation flag"):
        ds[1]


def test_corrupt_jpeg_names_record_and_file(tmp_path):
    images, labels = smooth_images(3), [0, 1, 2]
    payloads = insightface_payloads(images, labels)
    payloads[2] = spec_payload(1.0, b"\xff\xd8\xff\xe0" + b"\x00" * 64, 2)
    rec, idx = spec_pack(tmp_path, payloads)
    ds = RecordDataset(rec, idx)
    assert ds.labels.tolist() == labels  # headers are still readable
    with pytest.raises(ImageDecodeError) as err:
        ds[1]
    assert "record 2" in str(err.value) and str(rec) in str(err.value)


def test_truncated_rec_and_bad_idx(tmp_path):
    rec, idx = spec_pack(tmp_path, [spec_payload(0.0, b) for b in jpeg_bytes(smooth_images(2))])
    rec.write_bytes(rec.read_bytes()[:-10])  # the last image record loses its tail
    ds = RecordDataset(rec, idx)
    ds[0]
    with pytest.raises(RecordFormatError, match="truncated record"):
        ds[1]
    idx.write_text("0\tzero\n")
    with pytest.raises(RecordFormatError, match="index<TAB>offset"):
        RecordDataset(rec, idx)
