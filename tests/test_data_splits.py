"""Protocols on a tiny synthetic LFW/CelebA tree (and, if present, a parse-only check of the real data)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lqlib import paths
from lqlib.data import (EvalPair, FolderDataset, SplitError, TrainSample, UnlabeledFolderDataset, get_split,
                        load_pairs, parse_pairs, scan_identity_folders)
from lqlib.data.splits import check_disjoint, contiguous_folds, lfw_10fold, lfw_half
from lqlib.paths import DataNotFoundError
from test_data_synth import (CELEBA_COUNTS, EXPECTED_TRAIN_IDENTITIES, EXPECTED_TRAIN_IMAGES, IGNORE_CODEC_DEPRECATION,
                             LFW_COUNTS, make_data_dir, smooth_images, write_jpeg)

pytestmark = IGNORE_CODEC_DEPRECATION


@pytest.fixture
def data_dir(tmp_path):
    return make_data_dir(tmp_path / "data")


def test_lfw_half_from_lfw_alone(data_dir):
    """A fresh machine with fetched LFW and no CelebA-299: the training side is LFW's disjoint identities, and
    the statistics say where it came from."""
    import shutil

    shutil.rmtree(data_dir / "celeba299")
    proto = get_split("lfw-half", data_dir)
    assert proto.identities == ["lfw/Frank", "lfw/Gina", "lfw/Hank"]
    assert proto.stats["train_celeba_identities"] == 0 and proto.stats["train_celeba_images"] == 0
    assert proto.stats["train_sources"].startswith("LFW alone (no CelebA-299")
    assert proto.stats["identity_overlap"] == 0 and len(proto.pairs) == 4
    assert get_split("lfw-half", make_data_dir(data_dir.parent / "d2")).stats["train_sources"] == "CelebA-299 + LFW"


def test_parse_pairs_folds(data_dir):
    specs = parse_pairs(data_dir / "lfw" / "pairs.txt")
    assert len(specs) == 8
    assert [s.fold for s in specs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [s.issame for s in specs] == [True, True, False, False] * 2
    assert (specs[3].name1, specs[3].n1, specs[3].name2, specs[3].n2) == ("Alice", 3, "Eve", 1)


@pytest.mark.parametrize("text, match", [
    ("2\t2\nAlice\t1\t2\n", "announces"),
    ("1\t1\nAlice\t1\nBob\t1\tCarol\t1\n", "same person"),
    ("1\t1\nAlice\t1\t2\nBob\t1\tCarol\tx\n", "different people"),
    ("ten\n", "folds"),
])
def test_parse_pairs_errors(tmp_path, text, match):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(SplitError, match=match):
        parse_pairs(tmp_path / "pairs.txt")


def test_lfw_half_is_disjoint(data_dir):
    proto = get_split("lfw-half", data_dir)
    assert proto.num_folds == 1 and len(proto.pairs) == 4
    assert proto.pairs[0] == EvalPair(data_dir / "lfw/images/Alice/Alice_0001.jpg",
                                      data_dir / "lfw/images/Alice/Alice_0002.jpg", True, 0)
    assert proto.identities == ["celeba/00001", "celeba/00002", "celeba/00003", "lfw/Frank", "lfw/Gina", "lfw/Hank"]
    assert len(proto.train) == EXPECTED_TRAIN_IMAGES and proto.num_classes == EXPECTED_TRAIN_IDENTITIES
    labels = [s.label for s in proto.train]
    assert labels == sorted(labels) and set(labels) == set(range(EXPECTED_TRAIN_IDENTITIES))
    assert proto.stats["identity_overlap"] == 0 and proto.stats["image_overlap"] == 0
    assert proto.stats["train_celeba_identities"] == len(CELEBA_COUNTS)
    eval_names = {p.path1.parent.name for p in proto.pairs} | {p.path2.parent.name for p in proto.pairs}
    assert eval_names == {"Alice", "Bob", "Carol", "Dave", "Eve"}
    # Frank is in fold 1 only: a training identity for lfw-half, an evaluation identity for lfw-10fold
    full = lfw_10fold(data_dir)
    assert len(full.pairs) == 8 and full.num_folds == 2 and full.train == []


def test_overlap_check_raises():
    p = Path("/d/lfw/images")
    pairs = [EvalPair(p / "Alice/Alice_0001.jpg", p / "Bob/Bob_0001.jpg", False, 0)]
    assert check_disjoint([TrainSample(p / "Cat/Cat_0001.jpg", 0, "lfw/Cat")], pairs) == (0, 0)
    with pytest.raises(SplitError, match="1 identities"):
        check_disjoint([TrainSample(p / "Bob/Bob_0002.jpg", 0, "lfw/Bob")], pairs)
    with pytest.raises(SplitError, match="1 images"):  # same file under another identity name
        check_disjoint([TrainSample(p / "Alice/Alice_0001.jpg", 0, "celeba/1")], pairs)


def test_missing_inputs(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv(paths.ENV_DATA, str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="LQLIB_DATA"):
        get_split("lfw-half", tmp_path / "missing")
    with pytest.raises(KeyError, match="lfw-half"):
        get_split("nope", data_dir)
    (data_dir / "lfw/images/Eve/Eve_0001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="Eve_0001.jpg"):
        lfw_half(data_dir)
    (data_dir / "lfw/pairs.txt").unlink()
    with pytest.raises(FileNotFoundError, match="pairs.txt"):
        lfw_half(data_dir)


def test_load_pairs_from_protocol(data_dir):
    ps = load_pairs("lfw-10fold", data_dir)
    assert len(ps) == 8 and ps.images.shape == (16, 3, 24, 24) and ps.images.dtype == torch.uint8
    assert ps.folds.tolist() == [0] * 4 + [1] * 4 and ps.issame.tolist() == [True, True, False, False] * 2
    assert torch.equal(ps.first[0], FolderDataset(data_dir / "lfw/images")[0][0])  # Alice_0001, RGB
    with pytest.raises(KeyError, match="neither"):
        load_pairs("lfw-quarter", data_dir)


def test_contiguous_folds():
    assert contiguous_folds(20, 10).tolist() == [i // 2 for i in range(20)]
    f = contiguous_folds(6000)
    assert torch.bincount(f).tolist() == [600] * 10 and bool((f.diff() >= 0).all())


def test_folder_datasets(data_dir):
    root = data_dir / "lfw/images"
    scan = scan_identity_folders(root)
    assert len(scan) == sum(LFW_COUNTS.values()) and scan == sorted(scan, key=lambda t: (t[1], t[0].name))
    ds = FolderDataset(root)
    assert ds.classes == sorted(LFW_COUNTS) and ds.num_classes == len(LFW_COUNTS)
    img, label = ds[len(ds) - 1]
    assert img.shape == (3, 24, 24) and label == ds.class_to_idx["Hank"]
    assert torch.equal(FolderDataset(root, bgr=True)[0][0], ds[0][0].flip(0))
    explicit = FolderDataset.from_samples([(p, 7) for p, _ in scan[:2]])
    assert explicit.labels.tolist() == [7, 7] and explicit.classes is None
    unl = UnlabeledFolderDataset(data_dir)  # any depth: LFW and CelebA images
    assert len(unl) == sum(LFW_COUNTS.values()) + sum(CELEBA_COUNTS.values()) and unl[0].shape == (3, 24, 24)
    with pytest.raises(FileNotFoundError):
        FolderDataset(data_dir / "nope")


def test_corrupt_folder_image_names_file(tmp_path):
    write_jpeg(tmp_path / "A" / "a.jpg", smooth_images(1)[0])
    (tmp_path / "A" / "b.jpg").write_bytes(b"not a jpeg")
    ds = FolderDataset(tmp_path)
    with pytest.raises(ValueError, match="b.jpg"):
        ds[1]


_REAL = paths.default_data_dir()


@pytest.mark.skipif(not (_REAL / "lfw" / "pairs.txt").is_file(), reason="shared face data not available")
def test_lfw_half_on_real_data():
    proto = lfw_half(_REAL)  # parsing and directory scans only: no image is decoded
    assert len(proto.pairs) == 3000 and proto.num_folds == 5
    assert sum(p.issame for p in proto.pairs) == 1500
    assert proto.stats["train_identities"] >= 1000 and proto.stats["train_images"] >= 10_000
    assert proto.stats["identity_overlap"] == 0 and proto.stats["image_overlap"] == 0
    assert len(parse_pairs(_REAL / "lfw" / "pairs.txt")) == 6000


def test_pairs_txt_over_a_photo_folder(data_dir):
    """PAIRS may be a pairs.txt-format file over a folder of aligned photos (<its folder>/images/<Name>/...)."""
    from lqlib.data.sources import eval_set_key, pairs_source

    txt = data_dir / "lfw" / "pairs.txt"
    ps = load_pairs(str(txt))
    ref = load_pairs("lfw-10fold", data_dir)
    assert ps.name == "pairs" and torch.equal(ps.images, ref.images) and torch.equal(ps.folds, ref.folds)
    assert pairs_source(str(txt)).kind == "txt" and eval_set_key(str(txt)) == "pairs"
    bad = data_dir / "lfw" / "bad.txt"
    bad.write_text("1\t1\nZed\t1\t2\nAlice\t1\tBob\t1\n")
    with pytest.raises(FileNotFoundError, match=r"referenced by .*bad\.txt are missing.*Zed_0001"):
        load_pairs(str(bad))


def test_pair_faces_shows_distinct_photos_first():
    """LFW lists reuse a photo in consecutive pairs: a four-face figure must not show the same photo twice
    (04's figures showed pair 1's and pair 2's shared first photo in two rows)."""
    from lqlib.data.fallback import pair_faces
    from lqlib.data.splits import PairSet

    photo = [torch.full((3, 4, 4), v, dtype=torch.uint8) for v in range(8)]
    # pairs (A, B, same): 0 (p0,p1,T) 1 (p0,p2,T) 2 (p3,p4,F) 3 (p5,p6,T) 4 (p5,p7,T)
    spec = [(0, 1, True), (0, 2, True), (3, 4, False), (5, 6, True), (5, 7, True)]
    pairs = PairSet(images=torch.stack([photo[i] for a, b, _ in spec for i in (a, b)]),
                    issame=torch.tensor([s for *_, s in spec]), folds=torch.zeros(5, dtype=torch.int64))
    a, b = pair_faces(pairs, 2)
    assert [int(x[0, 0, 0]) for x in a] == [0, 5] and [int(x[0, 0, 0]) for x in b] == [1, 6]
    a, b = pair_faces(pairs, 3)  # only two distinct first photos: a repeat fills in, in list order
    assert [int(x[0, 0, 0]) for x in a] == [0, 5, 0] and [int(x[0, 0, 0]) for x in b] == [1, 6, 2]
    a, _ = pair_faces(pairs, 1, same=False)
    assert [int(x[0, 0, 0]) for x in a] == [3]
    # the second column repeats too (LFW "X 1 4", "X 2 4"): 04's Grad-CAM figure showed one B photo in two rows
    spec = [(0, 1, True), (2, 1, True), (3, 4, True), (4, 5, True), (6, 7, True)]
    pairs = PairSet(images=torch.stack([photo[i] for a, b, _ in spec for i in (a, b)]),
                    issame=torch.tensor([s for *_, s in spec]), folds=torch.zeros(5, dtype=torch.int64))
    a, b = pair_faces(pairs, 3)
    assert [int(x[0, 0, 0]) for x in a] == [0, 3, 6] and [int(x[0, 0, 0]) for x in b] == [1, 4, 7]
