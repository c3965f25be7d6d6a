"""Where things live: the repository root, the face-data directory and the output folders.

Notebooks run from ``notebooks/`` under nbval and from wherever papermill was started, so every
path in lqlib is resolved from the repository root, never from the current working directory.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import LqlibError

ENV_DATA = "LQLIB_DATA"
ENV_FIGURES = "LQLIB_FIGURES"


class DataNotFoundError(LqlibError, FileNotFoundError):
    """Raised when no face-data directory can be found."""


def repo_root() -> Path:
    """The repository root: the first parent of this package holding ``pyproject.toml``.

    Falls back to the current directory for a non-editable install.
    """
    here = Path(__file__).resolve().parent
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "lqlib").is_dir():
            return p
    return Path.cwd()


def resolve(path: str | os.PathLike) -> Path:
    """Absolute path: absolute inputs are kept, relative ones are taken from the repo root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def slug(text: str) -> str:
    """A file-name-safe form of any text (a model key, a display name, a figure's group)."""
    return re.sub(r"[^A-Za-z0-9~]+", "-", str(text)).strip("-")


def block_name(parameter: str, value) -> str:
    """The folder name of one block of a blocked study (``seed-3``): its published results
    (``results/<publish>/blocks/<name>``) and its figures (``figures/<study>/<name>``)."""
    return f"{str(parameter).lower()}-{value_slug(value)}"


def value_slug(value) -> str:
    """A parameter value as a file-name part (``0.5``, ``logit_attention``): the runner's notebook names too."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(value)).strip("_") or "x"


def default_data_dir() -> Path:
    """``../shared/data`` beside the repository (the workbench's shared face data)."""
    return repo_root().parent / "shared" / "data"


def fetched_data_dir() -> Path:
    """Where ``python -m lqlib.data fetch`` puts aligned public face data (``lfw/``, ``celeba299/``): the
    ``data`` folder of the user cache (:func:`user_cache_dir`)."""
    return user_cache_dir() / "data"


def data_dir(path: str | os.PathLike | None = None, *, must_exist: bool = True) -> Path:
    """Resolve the face-data directory.

    Order: the ``path`` argument, then ``$LQLIB_DATA``, then ``../shared/data`` beside the repo, then the
    fetched data in the user cache (:func:`fetched_data_dir`, once ``lfw/pairs.txt`` is there).
    Raises :class:`DataNotFoundError` naming every place that was tried.
    """
    tried = []
    candidates = []
    if path not in (None, ""):
        candidates.append(("argument", resolve(path)))
    env = os.environ.get(ENV_DATA)
    if env:
        candidates.append((f"${ENV_DATA}", resolve(env)))
    candidates.append(("default", default_data_dir()))
    candidates.append(("fetched", fetched_data_dir()))
    for origin, cand in candidates:
        if origin == "fetched" and not (cand / "lfw" / "pairs.txt").is_file():
            tried.append(f"{origin}: {cand} (python -m lqlib.data fetch lfw)")
            continue
        if cand.is_dir():
            return cand
        tried.append(f"{origin}: {cand}")
        if origin == "argument":
            break  # an explicit path that does not exist is an error, not a hint
    if not must_exist:
        return candidates[0][1]
    raise DataNotFoundError(
        "No face-data directory found. Pass a data directory (data_dir=... / --data-dir) or set "
        f"${ENV_DATA}; the default is ../shared/data beside the repository, or fetch LFW once: "
        "python -m lqlib.data fetch lfw. Tried: " + "; ".join(tried)
    )


def installed_package_file(package: str, member: str) -> Path | None:
    """``member`` (a path inside a wheel, e.g. ``pkg/models/x.onnx``) of an installed ``package``, located
    with ``importlib.util.find_spec`` without importing the package; None when absent."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root).parent / member
        if path.is_file():
            return path
    return None


def runs_dir() -> Path:
    return repo_root() / "runs"


def results_dir() -> Path:
    return repo_root() / "results"


def figures_dir() -> Path:
    """``figures/`` of the repository; ``$LQLIB_FIGURES`` overrides (``lqlib.run`` points a run that does not own
    ``figures/`` — ``--out`` elsewhere, synthetic data — at ``<out>/figures``)."""
    env = os.environ.get(ENV_FIGURES)
    return Path(env).expanduser() if env else repo_root() / "figures"


def user_cache_dir() -> Path:
    """The user's cache for downloaded public datasets: ``$LQLIB_CACHE``, else the platform's cache directory
    (``$XDG_CACHE_HOME/lqlib`` or ``~/.cache/lqlib`` on Linux, ``~/Library/Caches/lqlib`` on macOS,
    ``%LOCALAPPDATA%\\lqlib\\Cache`` on Windows)."""
    import sys

    env = os.environ.get("LQLIB_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "lqlib" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lqlib"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lqlib"


def cache_dir() -> Path:
    """Downloaded/converted artefacts (never committed); ``$LQLIB_CACHE`` overrides."""
    env = os.environ.get("LQLIB_CACHE")
    return Path(env).expanduser() if env else repo_root() / "cache"
