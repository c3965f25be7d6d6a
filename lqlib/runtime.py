"""How code runs: whether ``torch.compile`` is used, and where its on-disk cache lives.

``compile="auto"`` (training config, evaluation) compiles on every device, CPU included, unless the
environment says ``LQLIB_COMPILE=0`` (the unit tests set it; compiling is tested where a test is about
compiling). Inductor's caches live in ``runs/.inductor-cache`` (:func:`use_inductor_cache`), so the next
process compiling the same architecture loads the compiled graphs instead of compiling again.
"""
from __future__ import annotations

import os

from . import paths


def compile_enabled(flag="auto") -> bool:
    if flag == "auto":
        return os.environ.get("LQLIB_COMPILE", "1").lower() not in ("0", "false", "no")
    return bool(flag)


def use_inductor_cache() -> str:
    """Set (unless the user set it) Inductor's cache directory to ``runs/.inductor-cache``."""
    d = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not d:
        d = str(paths.runs_dir() / ".inductor-cache")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = d
    os.makedirs(d, exist_ok=True)
    return d
