"""The lfw-half validation split: fold composition, determinism, and zero overlap with training and test."""
from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from lqlib import paths
from lqlib.data import SplitError, get_split, parse_pairs
from lqlib.data.sources import eval_role, leaks, training_source
from lqlib.data.splits import EvalPair, check_disjoint
from lqlib.data.validation import (DESIGN, ValidationDesign, check_pairs_disjoint, lfw_half_val, pairs_txt,
                                   validation_definition, validation_pairs)

SMALL = ValidationDesign(folds=2, same_per_fold=6, diff_per_fold=6, same_per_identity=3, min_images=3,
                         max_images=5, singles_per_fold=2, seed=0)


def _images(n_multi=6, n_two=3, n_big=2, n_single=6) -> dict[str, list[int]]:
    imgs = {f"M{i:02d}": list(range(1, 3 + i % 3 + 1)) for i in range(n_multi)}  # 3..5 images
    imgs.update({f"M{i:02d}": [1, 2, 3] for i in range(n_multi, n_multi + 4)})     # 3 images
    imgs.update({f"T{i}": [1, 2] for i in range(n_two)})                             # 2 images: never same pairs
    imgs.update({f"B{i}": list(range(1, 30)) for i in range(n_big)})                 # > max_images: never used
    imgs.update({f"S{i}": [1] for i in range(n_single)})
    return imgs


def test_fold_composition_and_identity_rules():
    imgs = _images()
    specs = validation_pairs(imgs, SMALL)
    assert len(specs) == 24 and [s.fold for s in specs] == [0] * 12 + [1] * 12
    for f in (0, 1):
        fold = [s for s in specs if s.fold == f]
        assert [s.issame for s in fold] == [True] * 6 + [False] * 6  # pairs.txt order: same, then different
        same, diff = fold[:6], fold[6:]
        assert all(s.n1 != s.n2 and s.n1 in imgs[s.name1] and s.n2 in imgs[s.name1] for s in same)
        assert len({(s.name1, s.n1, s.n2) for s in same}) == 6           # no repeated same pair
        assert [len([s for s in same if s.name1 == n]) for n in dict.fromkeys(s.name1 for s in same)] == [3, 3]
        assert all(s.name1 != s.name2 for s in diff)
        assert len({frozenset((s.name1, s.name2)) for s in diff}) == 6   # each identity pair once
        assert all(s.n1 in imgs[s.name1] and s.n2 in imgs[s.name2] for s in diff)
        names = {n for s in fold for n in (s.name1, s.name2)}
        assert names <= {n for n, v in imgs.items() if 3 <= len(v) <= 5 or len(v) == 1}
        assert {s.name1 for s in same} == {n for n in names if len(imgs[n]) > 1}  # diff pool: fold's ids + singles
    folds = [{n for s in specs if s.fold == f for n in (s.name1, s.name2)} for f in (0, 1)]
    assert not folds[0] & folds[1]                                        # identity-disjoint folds


def test_deterministic_and_order_free():
    imgs = _images()
    a = validation_pairs(imgs, SMALL)
    shuffled = dict(reversed(list(imgs.items())))
    shuffled = {k: list(reversed(v)) for k, v in shuffled.items()}
    assert validation_pairs(shuffled, SMALL) == a
    other = validation_pairs(imgs, ValidationDesign(**{**SMALL.__dict__, "seed": 1}))
    assert other != a and len(other) == len(a)


def test_too_few_identities_and_bad_design():
    with pytest.raises(SplitError, match="identities with 3–5 images"):
        validation_pairs({"M0": [1, 2, 3], "M1": [1, 2, 3, 4], **{f"S{i}": [1] for i in range(9)}}, SMALL)
    with pytest.raises(SplitError, match="single-image"):
        validation_pairs(_images(n_single=3), SMALL)
    with pytest.raises(ValueError, match="same_per_identity"):
        ValidationDesign(min_images=2, same_per_identity=3)
    with pytest.raises(ValueError, match="folds"):
        ValidationDesign(folds=0)


def test_pairs_txt_round_trip(tmp_path):
    specs = validation_pairs(_images(), SMALL)
    (tmp_path / "pairs.txt").write_text(pairs_txt(specs))
    assert parse_pairs(tmp_path / "pairs.txt") == specs
    with pytest.raises(ValueError, match="same number"):
        pairs_txt(specs[:-1])


# --------------------------------------------------------------------------- the split on a fake data tree

def _touch(p: Path):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")  # the split reads directory listings only; nothing is decoded


def _tree(root: Path) -> Path:
    """LFW: test identities A0..A3 (in pairs.txt fold 0); training-side multi / single identities;
    CelebA: two identities."""
    lfw = root / "lfw" / "images"
    counts = {f"A{i}": 2 for i in range(4)}
    counts.update({f"M{i:02d}": 3 + i % 2 for i in range(10)})
    counts.update({f"S{i}": 1 for i in range(6)})
    counts["Big"] = 40
    for name, n in counts.items():
        for k in range(1, n + 1):
            _touch(lfw / name / f"{name}_{k:04d}.jpg")
    for ident in ("00001", "00002"):
        _touch(root / "celeba299" / "images" / ident / "000001.jpg")
    (root / "lfw" / "pairs.txt").write_text("2\t1\nA0\t1\t2\nA1\t1\tA2\t1\nM00\t1\t2\nM01\t1\tS0\t1\n")
    return root


def test_lfw_half_val_split_is_disjoint(tmp_path, monkeypatch):
    root = _tree(tmp_path / "data")
    design = ValidationDesign(folds=2, same_per_fold=3, diff_per_fold=3, same_per_identity=3, min_images=3,
                              max_images=10, singles_per_fold=2, seed=5)
    split = lfw_half_val(root, design)
    base = get_split("lfw-half", root)
    held = {q.parent.name for p in split.pairs for q in (p.path1, p.path2)}
    train_lfw = {s.identity.split("/", 1)[1] for s in split.train if s.identity.startswith("lfw/")}
    test = {q.parent.name for p in base.pairs for q in (p.path1, p.path2)}
    assert test == {"A0", "A1", "A2"}                      # fold 0 of this pairs.txt = lfw-half's test fold
    assert not held & train_lfw and not held & test and not train_lfw & test
    assert train_lfw | held == {s.identity.split("/", 1)[1] for s in base.train if s.identity.startswith("lfw/")}
    assert "Big" in train_lfw and "celeba/00001" in split.identities
    assert sorted({s.label for s in split.train}) == list(range(split.num_classes))
    assert len(split.pairs) == 12 and split.num_folds == 2
    st = split.stats
    assert (st["identity_overlap"], st["image_overlap"], st["train_test_identity_overlap"],
            st["validation_test_identity_overlap"]) == (0, 0, 0, 0)
    assert st["heldout_same_identities"] == 2 and st["design"]["seed"] == 5 and st["test_split"] == "lfw-half"
    assert st["train_identities"] == base.stats["train_identities"] - len(held)
    # the registered split uses DESIGN, which needs more identities than this tree has
    with pytest.raises(SplitError, match="identities with 3–10 images"):
        get_split("lfw-half-val", root)


def test_overlap_checks_raise():
    p = Path("/d/lfw/images")
    val = [EvalPair(p / "M/M_0001.jpg", p / "M/M_0002.jpg", True, 0)]
    test = [EvalPair(p / "A/A_0001.jpg", p / "M/M_0003.jpg", False, 0)]
    with pytest.raises(SplitError, match="1 shared identities"):
        check_pairs_disjoint(val, test, "validation and test")
    from lqlib.data.splits import TrainSample
    with pytest.raises(SplitError, match="1 identities"):
        check_disjoint([TrainSample(p / "M/M_0003.jpg", 0, "lfw/M")], val)


def test_sources_know_the_validation_split():
    assert training_source("lfw-half-val").split == "lfw-half-val"
    assert leaks("lfw-half", "lfw-half-val")          # a model trained on all of lfw-half saw these identities
    assert not leaks("lfw-half-val", "lfw-half") and not leaks("lfw-half-val", "lfw-half[300]")
    assert leaks("lfw-half-val", "lfw_10fold") and leaks("lfw-half-val", "lfw.bin")
    assert eval_role("lfw-half-val") == "validation" and eval_role("lfw-half[600]") == "test"
    assert eval_role("lfw_half.bin") == "test" and eval_role("agedb_30.bin") == "other"


_REAL = paths.default_data_dir()


@pytest.mark.skipif(not (_REAL / "lfw" / "pairs.txt").is_file(), reason="shared face data not available")
def test_lfw_half_val_on_real_data(tmp_path):
    d = validation_definition(_REAL, out=tmp_path)     # directory listings only: no image is decoded
    assert (d["eval_pairs"], d["eval_same"], d["eval_folds"]) == (1200, 600, 2)
    assert d["heldout_same_identities"] == 200 >= 150 and d["heldout_identities"] == 394
    assert (d["identity_overlap"], d["image_overlap"], d["train_test_identity_overlap"],
            d["validation_test_identity_overlap"]) == (0, 0, 0, 0)
    assert (d["train_identities"], d["train_images"]) == (3568, 13077) and d["design"] == DESIGN.__dict__
    text = (tmp_path / "validation_pairs.txt").read_text()
    # golden: the committed definition must not drift (same pairs on every machine and Python version)
    assert text.splitlines()[:2] == ["2\t300", "Anibal_Ibarra\t1\t3"]
    assert hashlib.sha256(text.encode()).hexdigest() == \
        "92ee4e62301140ff1d7cd4ae014ca6b8e04dbe3478fb3526fa0ee5fa158acb6a"
    specs = parse_pairs(tmp_path / "validation_pairs.txt")
    test_specs = [s for s in parse_pairs(_REAL / "lfw" / "pairs.txt") if s.fold < 5]
    test_names = {n for s in test_specs for n in (s.name1, s.name2)}
    assert not {n for s in specs for n in (s.name1, s.name2)} & test_names
    assert not set(itertools.chain.from_iterable((s.name1, s.name2) for s in specs if s.fold == 0)) & \
        set(itertools.chain.from_iterable((s.name1, s.name2) for s in specs if s.fold == 1))


def test_the_cli_writes_the_definition_and_names_a_missing_data_dir(tmp_path, capsys):
    from lqlib.data.__main__ import main

    assert main(["validation", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "v")]) == 2
    assert "nowhere" in capsys.readouterr().err and not (tmp_path / "v").exists()   # nothing half-written


@pytest.mark.skipif(not (_REAL / "lfw" / "pairs.txt").is_file(), reason="shared face data not available")
def test_the_committed_definition_is_what_the_code_builds(tmp_path):
    from lqlib.data.__main__ import main

    assert main(["validation", "--data-dir", str(_REAL), "--out", str(tmp_path)]) == 0
    committed = paths.resolve("results/cpu/validation")
    for name in ("validation_pairs.txt", "validation_split.json"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
