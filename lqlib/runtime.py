"""How code runs: whether ``torch.compile`` is used, and where its on-disk cache lives.

``compile="auto"`` (training config, evaluation) compiles on every device, CPU included, unless the
environment says ``LQLIB_COMPILE=0`` (the unit tests set it; compiling is tested where a test is about
compiling). Inductor's caches live in ``runs/.inductor-cache`` (:func:`use_inductor_cache`), so the next
process compiling the same architecture loads the compiled graphs instead of compiling again.
:func:`stop_on_signals` turns SIGTERM/SIGINT into a polite stop request of a long loop.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable

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


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None], stopping: Callable[[], bool]):
    """Inside the block, SIGTERM and SIGINT call ``request_stop()`` (the loop checkpoints and stops); a second
    Ctrl-C while ``stopping()`` interrupts at once. Outside the main thread (where handlers cannot be set) it
    does nothing. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stopping() and signum == signal.SIGINT:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        request_stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
