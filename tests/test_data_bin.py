"""InsightFace .bin verification sets: loading, writing, and refusing bad or malicious files."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from lqlib.data import BinFormatError, ImageDecodeError, load_bin, load_pairs, read_bin, write_bin
from test_data_synth import IGNORE_CODEC_DEPRECATION, jpeg_bytes, smooth_images

pytestmark = IGNORE_CODEC_DEPRECATION


def _dump(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_pickle_bin_loads(tmp_path, protocol):
    images = smooth_images(6)
    issame = [True, False, True]
    path = _dump(tmp_path / "set.bin", (jpeg_bytes(images), issame), protocol)
    loaded, flags = load_bin(path)
    assert loaded.dtype == torch.uint8 and loaded.shape == (6, 3, 24, 24)
    assert flags.dtype == torch.bool and flags.tolist() == issame
    assert (loaded.float() - images.float()).abs().mean() < 4  # RGB order kept, JPEG error small


def test_numpy_issame_and_bytearray_entries(tmp_path):
    images = smooth_images(4)
    entries = [bytearray(b) for b in jpeg_bytes(images)]
    path = _dump(tmp_path / "np.bin", (entries, np.array([True, False])), protocol=2)
    loaded, flags = load_bin(path)
    assert loaded.shape[0] == 4 and flags.tolist() == [True, False]
    path = _dump(tmp_path / "np_scalars.bin", (jpeg_bytes(images), [np.bool_(True), np.bool_(False)]))
    assert load_bin(path)[1].tolist() == [True, False]


def test_raw_array_bin_and_bgr(tmp_path):
    images = smooth_images(2)
    raw_bgr = [img.flip(0).permute(1, 2, 0).numpy() for img in images]  # HWC BGR, as OpenCV stores
    path = _dump(tmp_path / "raw.bin", (raw_bgr, [True]))
    assert torch.equal(load_bin(path, bgr=True)[0], images)
    assert torch.equal(load_bin(path)[0], images.flip(1))


def test_write_bin_round_trip(tmp_path):
    images = smooth_images(4)
    write_bin(tmp_path / "a.bin", images, [True, False], quality=95)
    loaded, flags = load_bin(tmp_path / "a.bin")
    assert loaded.shape == images.shape and flags.tolist() == [True, False]
    assert (loaded.float() - images.float()).abs().mean() < 4
    # encoded bytes pass through; a repeated bytes object is stored once
    enc = jpeg_bytes(images[:2])
    write_bin(tmp_path / "b.bin", [enc[0], enc[1], enc[0], enc[1]], torch.tensor([True, False]))
    entries, _ = read_bin(tmp_path / "b.bin")
    assert entries == [enc[0], enc[1], enc[0], enc[1]]
    assert (tmp_path / "b.bin").stat().st_size < sum(map(len, enc)) + 200
    with pytest.raises(ValueError, match="2N images"):
        write_bin(tmp_path / "c.bin", images[:3], [True])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]  # no temp files left


def test_load_pairs_from_bin(tmp_path):
    write_bin(tmp_path / "p.bin", smooth_images(40), [i % 2 == 0 for i in range(20)])
    ps = load_pairs(tmp_path / "p.bin")
    assert len(ps) == 20 and ps.name == "p" and ps.num_folds == 10
    assert ps.folds.tolist() == [i // 2 for i in range(20)]
    assert ps.first.shape == (20, 3, 24, 24)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("nested", [False, True])
def test_malicious_pickle_is_refused(tmp_path, nested):
    marker = tmp_path / "pwned"
    evil = _Evil(marker)
    path = _dump(tmp_path / "evil.bin", ([evil, b"x"], [True]) if nested else evil, protocol=2)
    with pytest.raises(BinFormatError, match="refusing to load global"):
        load_bin(path)
    assert not marker.exists()


def test_codecs_encode_restricted_to_latin1(tmp_path):
    # a hand-made protocol-2 stream calling _codecs.encode('x', 'rot13')
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    path = tmp_path / "rot.bin"
    path.write_bytes(payload)
    with pytest.raises(BinFormatError, match="not allowed"):
        read_bin(path)


@pytest.mark.parametrize("case", ["truncated", "not_pickle", "empty", "odd", "mismatch", "wrong_type"])
def test_malformed_bins(tmp_path, case):
    good = pickle.dumps((jpeg_bytes(smooth_images(4)), [True, False]))
    content = {
        "truncated": good[: len(good) // 2],
        "not_pickle": b"this is not a pickle at all",
        "empty": b"",
        "odd": pickle.dumps((jpeg_bytes(smooth_images(3)), [True])),
        "mismatch": pickle.dumps((jpeg_bytes(smooth_images(4)), [True])),
        "wrong_type": pickle.dumps({"images": []}),
    }[case]
    path = tmp_path / f"{case}.bin"
    path.write_bytes(content)
    with pytest.raises(BinFormatError) as err:
        load_bin(path)
    assert str(path) in str(err.value)


def test_corrupt_jpeg_names_index_and_file(tmp_path):
    enc = jpeg_bytes(smooth_images(4))
    enc[2] = enc[2][:20] + b"\x00" * 50
    path = _dump(tmp_path / "bad.bin", (enc, [True, False]))
    with pytest.raises(ImageDecodeError) as err:
        load_bin(path)
    assert "image 2" in str(err.value) and str(path) in str(err.value)


def test_empty_image_entry_names_index_and_file(tmp_path):
    """An empty entry (b"") is refused when the file is read, naming the file and the entry — not torch's
    "both buffer length (0) and count (-1) must not be 0" from decoding it."""
    enc = jpeg_bytes(smooth_images(4))
    enc[1] = b""
    path = _dump(tmp_path / "hole.bin", (enc, [True, False]))
    for reader in (read_bin, load_bin):
        with pytest.raises(BinFormatError, match=r"hole\.bin: image 1 \(pair 0\) is empty"):
            reader(path)
    from lqlib.data.datasets import decode_rgb

    with pytest.raises(ImageDecodeError, match="cannot decode entry 7: empty image data"):
        decode_rgb(b"", where="entry 7")


def test_zero_pair_bin_is_refused_at_load_naming_the_file(tmp_path):
    """A well-formed .bin with 0 pairs is refused by every reader, naming the file and the cause — not later by the
    verification's "k-fold verification needs at least 2 folds", which names neither."""
    from lqlib.study import load_eval_pairs

    path = _dump(tmp_path / "none.bin", ([], []))
    for reader in (read_bin, load_bin, load_pairs, load_eval_pairs):
        with pytest.raises(BinFormatError, match=r"none\.bin: holds 0 pairs"):
            reader(str(path))


def _lfw_layout(n_folds: int):
    """issame of an LFW-layout set: per fold of 600, 300 same pairs then 300 different ones."""
    return ([True] * 300 + [False] * 300) * n_folds


def test_lfw_layout_bin_gets_its_real_folds(tmp_path):
    """A plain 3,000-pair .bin in LFW order (lfw_half.bin) is 5 folds of 600 — 300 same / 300 different
    each — not 10 contiguous one-class folds."""
    from lqlib.data.binfile import bin_folds

    flags = _lfw_layout(5)
    write_bin(tmp_path / "half.bin", [b"x"] * (2 * len(flags)), flags)  # contents never decoded here
    folds = bin_folds(tmp_path / "half.bin", len(flags))
    assert folds.tolist() == [i // 600 for i in range(3000)]
    same = torch.tensor(flags)
    for k in range(5):
        assert int(same[folds == k].sum()) == 300 and int((~same[folds == k]).sum()) == 300
    assert bin_folds(tmp_path / "x.bin", 6000).max() == 9  # InsightFace lfw/agedb/cplfw: 10 folds of 600


def test_folds_sidecar_round_trip_and_mismatch(tmp_path):
    from lqlib.data.binfile import bin_folds, folds_sidecar

    write_bin(tmp_path / "s.bin", smooth_images(8), [True, False, True, False], folds=[0, 0, 1, 1])
    assert folds_sidecar(tmp_path / "s.bin").name == "s.folds.json"
    assert load_pairs(tmp_path / "s.bin").folds.tolist() == [0, 0, 1, 1]
    with pytest.raises(BinFormatError, match="s.folds.json"):
        bin_folds(tmp_path / "s.bin", 5)
    with pytest.raises(ValueError, match="fold ids"):
        write_bin(tmp_path / "t.bin", smooth_images(4), [True, False], folds=[0])


def test_single_class_fold_raises():
    """Every evaluation checks that each fold holds both classes."""
    import numpy as np

    from lqlib.evaluation import verify_scores

    y = np.array(_lfw_layout(5))
    scores = np.where(y, 1.0, 0.0) + np.random.default_rng(0).normal(0, 0.5, len(y))
    res = verify_scores(scores, y, np.arange(3000) // 600)
    assert len(res.fold_acc) == 5
    with pytest.raises(ValueError, match="fold 0 holds only same-person pairs"):
        verify_scores(scores, y, np.arange(3000) * 10 // 3000)  # the old 10 contiguous folds
