"""Public face data into the user's cache, aligned for lqlib: ``python -m lqlib.data fetch lfw``.

**LFW** comes from the same public archives, with the same SHA-256 checksums, as scikit-learn's LFW fetcher
(:data:`LFW_FILES`: ``lfw.tgz``, the original photographs, or ``lfw-funneled.tgz`` with ``--variant funneled``,
and the official View-2 ``pairs.txt``), downloaded one verified file at a time by scikit-learn's own
``sklearn.datasets.fetch_file``. Then:

1. every file is checked against its SHA-256 — one placed by hand in ``<cache>/lfw/downloads/`` or given with
   ``--from`` too (a mismatch names the file and its checksum; nothing is overwritten);
2. the archive is extracted into a temporary folder beside ``<cache>/lfw/raw`` and renamed into place when
   complete: a truncated or wrong archive is named, and nothing half-extracted is left;
3. the photographs are aligned (:func:`lqlib.data.align.align_folder`, the face nearest the centre — LFW's
   subject —, a photo with no face warped with the run's median landmarks, as the reference alignment did)
   into ``<cache>/data/lfw/images/<Name>/<Name>_NNNN.jpg``, and ``pairs.txt`` is copied beside them last, so
   the folder is a face-data directory (:func:`lqlib.paths.data_dir` finds it) only once it is whole.

Every stage is resumable: a verified download is kept, a finished extraction is kept, and the alignment
resumes from its progress log. The cache is ``$LQLIB_CACHE``, else the platform's cache directory
(:func:`lqlib.paths.user_cache_dir`).

Offline: ``--from PATH`` takes the archive, a folder holding the downloaded files, or an already extracted
folder of photographs (``<Name>/<Name>_NNNN.jpg``, with ``pairs.txt`` in it or given by a downloaded copy).
With no network and no ``--from``, one line says what to download and where to put it.

**CelebA-299** (the training side of ``lfw-half`` besides LFW): see :mod:`lqlib.data.celeba`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .. import paths
from ..errors import LqlibError
from ..io import write_bytes
from ..store import file_digest


@dataclass(frozen=True)
class Remote:
    """One public file: its name, where it is published and its SHA-256."""

    filename: str
    url: str
    sha256: str


# scikit-learn's sklearn/datasets/_lfw.py: ARCHIVE, FUNNELED_ARCHIVE and TARGETS' pairs.txt (same URLs, same sums)
LFW_FILES: dict[str, Remote] = {
    "lfw.tgz": Remote("lfw.tgz", "https://ndownloader.figshare.com/files/5976018",
                      "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"),
    "lfw-funneled.tgz": Remote("lfw-funneled.tgz", "https://ndownloader.figshare.com/files/5976015",
                               "b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a"),
    "pairs.txt": Remote("pairs.txt", "https://ndownloader.figshare.com/files/5976006",
                        "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
}
LFW_VARIANTS = {"original": "lfw.tgz", "funneled": "lfw-funneled.tgz"}  # --variant → archive


class FetchError(LqlibError, RuntimeError):
    """A file could not be fetched, verified or extracted; the message names it (one line)."""


class OfflineError(FetchError):
    """The network is unreachable and nothing was given with ``--from``; the message says what to download."""


sha256_file = file_digest  # lqlib's one file digest (SHA-256 hex, read in blocks, memoised per path/size/mtime)


def verify(path: Path, sha256: str) -> Path:
    """``path`` if its SHA-256 is ``sha256``; else :class:`FetchError` naming both checksums."""
    got = sha256_file(path)
    if got != sha256:
        raise FetchError(f"{path}: SHA-256 {got} is not the published {sha256} (a truncated or different file): "
                         f"fetch it again, or pass --sha256 {path.name}=HEX if this other copy is meant")
    return path


def _fetch_file(url: str, folder: Path, filename: str, sha256: str) -> Path:
    """scikit-learn's verified download (the one downloader; tests replace this function)."""
    import warnings

    from sklearn.datasets import fetch_file

    with warnings.catch_warnings():  # its "Retry downloading" warnings: the one error line says it all
        warnings.simplefilter("ignore", UserWarning)
        return Path(fetch_file(url, folder=folder, local_filename=filename, sha256=sha256, n_retries=2, delay=1))


@contextlib.contextmanager
def _progress(folder: Path, filename: str, enabled: bool):
    """A byte progress bar for a download in flight: ``fetch_file`` writes ``<filename>.part_*`` in ``folder``;
    a thread watches its size."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    stop = threading.Event()
    bar = []  # created with the first byte: a download that never starts prints nothing

    def watch():
        while not stop.wait(0.25):
            with contextlib.suppress(OSError):
                size = sum(p.stat().st_size for p in folder.glob(f"{filename}.part_*"))
                if size and not bar:
                    bar.append(tqdm(desc=filename, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True))
                if bar:
                    bar[0].update(size - bar[0].n)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        for b in bar:
            b.close()


def download(remote: Remote, folder: Path, *, sha256: str | None = None, progress: bool = True,
             offline_hint: str = "") -> Path:
    """``folder/<remote.filename>``: kept when already there and verified (a file placed by hand included; a
    mismatch is an error naming it), else downloaded by ``sklearn.datasets.fetch_file`` and verified."""
    sha = sha256 or remote.sha256
    target = folder / remote.filename
    if target.is_file():
        return verify(target, sha)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _progress(folder, remote.filename, progress):
            got = _fetch_file(remote.url, folder, remote.filename, sha)
        try:
            return verify(got, sha)
        except FetchError:
            got.unlink(missing_ok=True)  # a fresh download that does not match is not kept
            raise
    except OSError as e:  # urllib's URLError/HTTPError, and scikit-learn's checksum error (an OSError)
        why = str(getattr(e, "reason", None) or e).splitlines()[0][:160]
        if "checksum" in why.lower() or "sha256" in why.lower():
            raise FetchError(f"{remote.url} ({remote.filename}): {why}") from None
        raise OfflineError(f"cannot download {remote.filename} from {remote.url} ({why}). {offline_hint}".strip()) \
            from None


def extract(archive: Path, dest: Path, *, progress: bool = True) -> Path:
    """Extract the tar archive ``archive`` so that its single top folder becomes ``dest`` — atomically: into a
    temporary folder beside ``dest``, renamed when complete. A truncated or wrong archive raises
    :class:`FetchError` naming it; nothing is left behind."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            tops = {Path(m.name).parts[0] for m in members if m.name not in ("", ".")}
            for m in tqdm(members, desc=f"extract {archive.name}", unit="file", disable=not progress,
                          dynamic_ncols=True):
                tar.extract(m, tmp, filter="data")
        if len(tops) != 1 or not (tmp / next(iter(tops))).is_dir():
            raise FetchError(f"{archive}: expected one top folder, found {sorted(tops)[:5]}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp / next(iter(tops)), dest)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise FetchError(f"{archive}: not a complete tar archive ({type(e).__name__}: {e}); nothing was extracted — "
                         "delete it and fetch again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- LFW

def lfw_offline_hint(root: Path, archive: str) -> str:
    urls = " and ".join(f"{LFW_FILES[n].url} (save as {n})" for n in (archive, "pairs.txt"))
    return (f"Offline: download {urls} into {root / 'downloads'} (or any folder, then: python -m lqlib.data fetch "
            "lfw --from FOLDER)")


def _find_photos(folder: Path) -> Path | None:
    """The folder of identity folders inside an extracted LFW tree (``folder`` itself or its one subfolder)."""
    def looks(p: Path) -> bool:
        return any(f.suffix.lower() == ".jpg" and f.stem.startswith(f"{d.name}_")
                   for d in p.iterdir() if d.is_dir() for f in d.iterdir())
    if looks(folder):
        return folder
    subs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return subs[0] if len(subs) == 1 and looks(subs[0]) else None


def fetch_lfw(source: str | os.PathLike | None = None, *, cache: str | os.PathLike | None = None,
              variant: str = "original", checksums: Mapping[str, str] | None = None, threads: int | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """LFW's photographs and ``pairs.txt``, fetched (or taken from ``source``), verified, extracted and aligned
    into ``<cache>/data/lfw`` (see the module docstring). Returns the face-data directory ``<cache>/data``.

    ``checksums`` overrides the published SHA-256 of a file by name (a mirror's own files; the tests' archives).
    """
    if variant not in LFW_VARIANTS:
        raise ValueError(f"fetch lfw: --variant {variant!r}: expected one of {', '.join(LFW_VARIANTS)}")
    cache = Path(cache).expanduser() if cache is not None else paths.user_cache_dir()
    root, data = cache / "lfw", cache / "data" / "lfw"
    archive_name = LFW_VARIANTS[variant]
    sums = {n: r.sha256 for n, r in LFW_FILES.items()} | dict(checksums or {})
    downloads = root / "downloads"
    hint = lfw_offline_hint(root, archive_name)
    src = paths.resolve(source) if source is not None else None
    if src is not None and not src.exists():
        raise FileNotFoundError(f"fetch lfw: --from {src}: no such file or folder")

    src_file = src if src is not None and src.is_file() else None
    folder = src.parent if src_file is not None else src

    def obtain(name: str) -> Path:
        """A verified copy of ``name``: from ``--from`` (the file itself — an archive under any name — or beside
        it / in the folder), else downloaded."""
        given = None
        if src_file is not None and (src_file.name == name or (name == archive_name and src_file.name != "pairs.txt")):
            given = src_file
        elif folder is not None and (folder / name).is_file():
            given = folder / name
        if given is not None:
            log(f"fetch lfw: {given}: checking SHA-256")
            return verify(given, sums[name])
        return download(LFW_FILES[name], downloads, sha256=sums[name], progress=progress, offline_hint=hint)

    photos = _find_photos(src) if src is not None and src.is_dir() else None
    pairs = obtain("pairs.txt")
    raw = root / f"raw-{variant}"
    if photos is not None:
        log(f"fetch lfw: using the extracted photographs in {photos} (a folder cannot be checked against the "
            "archive's SHA-256)")
        raw = photos
    elif not raw.is_dir():
        archive = obtain(archive_name)
        log(f"fetch lfw: extracting {archive} → {raw}")
        extract(archive, raw, progress=progress)
    log(f"fetch lfw: aligning {raw} → {data / 'images'}")
    from .align import align_folder

    m = align_folder(raw, data / "images", pick="center", no_face="median", threads=threads or min(4, os.cpu_count() or 1),
                     progress=progress)
    write_bytes(data / "pairs.txt", pairs.read_bytes())  # last: the folder is a face-data directory from now on
    c = m["counts"]
    log(f"fetch lfw: {c['aligned']} photos aligned, {c['no_face']} with no face found (median landmarks), "
        f"{c['corrupt']} unreadable → {data}; face-data directory: {cache / 'data'}")
    return cache / "data"


def lfw_ready(cache: str | os.PathLike | None = None) -> bool:
    cache = Path(cache).expanduser() if cache is not None else paths.user_cache_dir()
    return (cache / "data" / "lfw" / "pairs.txt").is_file()


def _fetch_celeba(source=None, **kw) -> Path:
    from .celeba import fetch_celeba

    return fetch_celeba(source, **kw)


FETCHERS: dict[str, Callable[..., Path]] = {"lfw": fetch_lfw, "celeba": _fetch_celeba}

def fetch_when_no_face_data(data_dirs: Sequence, log: Callable[[str], None] = print) -> bool:
    """A fresh machine — no face-data directory anywhere (none of ``data_dirs``, the steps' ``DATA_DIR``
    values, is set, no ``$LQLIB_DATA`` folder, no ``../shared/data``, nothing fetched): fetch LFW into the user
    cache and align it (``python -m lqlib.data fetch lfw``) so a run trains on real faces, True when it did;
    offline, one line says how (the caller then goes on as without data). A data directory that exists but
    lacks LFW is the user's choice: nothing is fetched."""
    if lfw_ready() or any(data_dirs):
        return False
    try:
        paths.data_dir()
        return False
    except paths.DataNotFoundError:
        pass
    log(f"lqlib.run: no face data found: fetching LFW into {paths.user_cache_dir()} (python -m lqlib.data fetch lfw)")
    try:
        data = fetch_lfw(log=log)
    except (FetchError, OSError) as e:
        log(f"lqlib.run: {str(e).splitlines()[0]}")
        return False
    log(f"lqlib.run: face data: {data} (LFW; python -m lqlib.data fetch celeba adds lfw-half's CelebA-299 side)")
    return True


__all__ = ["FETCHERS", "fetch_lfw", "fetch_when_no_face_data", "download", "extract", "verify", "FetchError", "OfflineError", "LFW_FILES", "Remote",
           "lfw_ready", "sha256_file"]
