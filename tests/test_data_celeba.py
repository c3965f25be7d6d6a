"""lqlib.data.celeba: the committed CelebA-299 list, and a CelebA-like download built from ../shared/raw photos
(flat folder named like CelebA, with and without a landmark file) aligned into the cache's celeba299/ layout."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lqlib import paths
from lqlib.data import align
from lqlib.data.celeba import celeba299_entries, fetch_celeba, read_landmarks

SHARED = paths.repo_root().parent / "shared"
RAW = SHARED / "raw" / "lfw-raw-folds12"
needs_raw = pytest.mark.skipif(not RAW.is_dir() or paths.installed_package_file(align.DETECTOR_PACKAGE,
                               align.DETECTOR_MEMBER) is None, reason="raw photographs or YuNet not available")


def test_committed_list_has_the_split_and_nothing_else():
    rows = celeba299_entries()
    assert len(rows) == 6275 and len({i for i, _ in rows}) == 299 and len({f for _, f in rows}) == 6275
    assert all(len(i) == 5 and i.isdigit() and f.endswith(".jpg") and len(f) == 10 for i, f in rows)
    shared = SHARED / "data" / "celeba299" / "images"
    if shared.is_dir():  # the list is exactly the shared subset's files
        assert sorted(rows) == sorted((p.parent.name, p.name) for p in shared.rglob("*.jpg"))


def _download(tmp_path: Path, with_landmarks: bool) -> tuple[Path, list[tuple[str, str]]]:
    """``CelebA/Img/img_celeba/NNNNNN.jpg`` (6 raw LFW photos renamed) [+ ``Anno/list_landmarks_celeba.txt``]."""
    img = tmp_path / "CelebA" / "Img" / "img_celeba"
    img.mkdir(parents=True)
    photos = [f for n in ("Abdullah_Gul", "Adrien_Brody", "Al_Sharpton") for f in sorted((RAW / n).iterdir())[:2]]
    entries, lines = [], []
    det = align.YuNet()
    import cv2

    for k, f in enumerate(photos):
        name = f"{k + 1:06d}.jpg"
        shutil.copy(f, img / name)
        entries.append((f"{k // 2 + 1:05d}", name))
        lm = align.pick_face(det.detect(cv2.imread(str(f))), (250, 250), "center").landmarks
        lines.append(name + " " + " ".join(str(int(round(v))) for v in lm.ravel()))
    if with_landmarks:
        (tmp_path / "CelebA" / "Anno").mkdir()
        (tmp_path / "CelebA" / "Anno" / "list_landmarks_celeba.txt").write_text(
            f"{len(lines)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
            "rightmouth_x rightmouth_y\n" + "\n".join(lines) + "\n")
    return tmp_path / "CelebA", entries


@needs_raw
@pytest.mark.parametrize("with_landmarks", [True, False])
def test_fetch_celeba_from_a_download(tmp_path, with_landmarks):
    src, entries = _download(tmp_path, with_landmarks)
    log = []
    out = fetch_celeba(src, cache=tmp_path / "cache", entries=entries, threads=1, progress=False, log=log.append)
    imgs = out / "celeba299" / "images"
    assert sorted((p.parent.name, p.name) for p in imgs.rglob("*.jpg")) == sorted(entries)
    recs = {r["file"]: r for r in __import__("json").loads((imgs / "manifest.json").read_text())["images"]}
    assert all(r["status"] == "aligned" for r in recs.values())
    if with_landmarks:
        assert "with the landmarks of" in log[0] and all(r["landmarks_from"] == "given" for r in recs.values())
        table = read_landmarks(src / "Anno" / "list_landmarks_celeba.txt")
        for f, r in recs.items():  # the file's landmarks were used as they are
            np.testing.assert_allclose(r["landmarks"], table[f])
    else:
        assert "detecting faces" in log[0] and not any("landmarks_from" in r for r in recs.values())


@needs_raw
def test_fetch_celeba_names_missing_photos_and_needs_from(tmp_path):
    src, entries = _download(tmp_path, with_landmarks=True)
    with pytest.raises(FileNotFoundError, match=r"1 of the 7 CelebA-299 photos are not in .*img_celeba, e.g. 000099.jpg"):
        fetch_celeba(src, cache=tmp_path / "cache", entries=entries + [("00009", "000099.jpg")], progress=False)
    assert not (tmp_path / "cache" / "data" / "celeba299").exists()
    with pytest.raises(ValueError, match="needs --from"):
        fetch_celeba(None, cache=tmp_path / "cache")
