"""Fixtures of the browser tests: Chromium driven by Playwright, a trained study, a JupyterLab server.

The notebooks need a trained study: ``runs/ci-nbval`` (``$LQLIB_BROWSER_RUN`` overrides), which the nbval
step of ``tests/run_all.sh`` trains just before this step. Run alone, the ``study`` fixture trains it
with ``python -m lqlib.run --preset smoke --only 01_ 02_`` (a few minutes on 2 cores).

Everything the browser part does is bounded by one budget (``BUDGET_S``, 180 s; the study's training
is not part of it): every wait gets at most what is left of it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from browser_helpers import CHROMIUM_ARGS, OUT, REPO, JupyterLab, browser_missing, find_chromium

RUN = os.environ.get("LQLIB_BROWSER_RUN", "ci-nbval")
BUDGET_S = float(os.environ.get("LQLIB_BROWSER_BUDGET_S", "180"))
NOTEBOOKS = ("04_attention_maps", "05_degradation_explorer")


def _kernel_env() -> dict:
    """The server's and thereby the kernel's environment: this checkout's lqlib, one thread (2 shared cores)."""
    pp = os.environ.get("PYTHONPATH")
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "PYTHONPATH": str(REPO) + (os.pathsep + pp if pp else "")}


def _lqlib_run(*args: str, timeout: float) -> None:
    env = {**os.environ, **_kernel_env()}
    subprocess.run([sys.executable, "-m", "lqlib.run", "--preset", "smoke", "--out", f"runs/{RUN}", *args],
                   cwd=REPO, env=env, check=True, timeout=timeout)


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


class Budget:
    """One deadline for the browser part; ``ms(cap)`` is a Playwright timeout within it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.t0 = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.t0)

    def ms(self, cap_s: float) -> float:
        left = self.left()
        if left <= 0:
            pytest.fail(f"browser test over its {self.seconds:.0f} s budget", pytrace=False)
        return 1000 * min(cap_s, left)


# ------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the Chromium executable; fails when there is none (the test module skips before, outside CI)."""
    missing = browser_missing()
    if missing:
        pytest.fail(f"browser test required here (CI / LQLIB_REQUIRE_BROWSER=1), but {missing}", pytrace=False)
    return find_chromium()


@pytest.fixture(scope="session")
def study(chromium) -> str:
    """Name of a trained study (teacher + at least one student) under runs/; trains the smoke one if missing."""
    from lqlib.study import Study

    def trained() -> bool:
        kinds = {m.key == "teacher" for m in Study(RUN).models()}
        return kinds == {True, False}

    if not trained():
        print(f"\nbrowser test: no trained study runs/{RUN}; training the smoke one (01, 02) first", flush=True)
        _lqlib_run("--only", "01_", "02_", timeout=1800)
        assert trained(), f"runs/{RUN} still holds no teacher and student"
    return RUN


@pytest.fixture(scope="session")
def notebooks(study) -> dict[str, str]:
    """Output-free copies of the study's parameterised notebooks 04 and 05, as paths relative to the repo.

    They come from ``runs/<RUN>/notebooks/`` (written by the nbval step, or by a full run; prepared there
    when missing), and are copied to ``runs/browser/notebooks/`` without outputs, so that every output the
    test sees was produced in the browser session, and the run's own copies are never rewritten.
    """
    src_dir = REPO / "runs" / study / "notebooks"
    if not all((src_dir / f"{n}.ipynb").is_file() for n in NOTEBOOKS):
        _lqlib_run("--prepare-only", "--only", *(n[:3] for n in NOTEBOOKS), timeout=120)
    dst_dir = OUT / "notebooks"
    dst_dir.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):  # this session's screenshots only
        old.unlink()
    out = {}
    for name in NOTEBOOKS:
        nb = json.loads((src_dir / f"{name}.ipynb").read_text())
        injected = "".join("".join(c["source"]) for c in nb["cells"]
                           if "injected-parameters" in c.get("metadata", {}).get("tags", []))
        assert f'RUN_NAME = "{study}"' in injected, f"{src_dir / name}.ipynb is not parameterised for run {study}"
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        nb.get("metadata", {}).pop("widgets", None)
        (dst_dir / f"{name}.ipynb").write_text(json.dumps(nb, indent=1))
        out[name] = (dst_dir / f"{name}.ipynb").relative_to(REPO).as_posix()
    return out


@pytest.fixture(scope="session")
def budget(notebooks) -> Budget:
    """Starts the clock once the study and the notebooks are ready."""
    return Budget(BUDGET_S)


@pytest.fixture(scope="session")
def lab(budget):
    """A JupyterLab server on a free localhost port with a random token and the repository as root dir."""
    server = JupyterLab(REPO, OUT / "jupyterlab.log", env=_kernel_env())
    # a SIGTERM (a CI timeout, `timeout`, kill) ends the session like Ctrl-C, so that this teardown still runs
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start(timeout=min(60.0, budget.left()))
        yield server
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def browser_context(chromium, lab):
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="lqlib-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1500, "height": 1100}, device_scale_factor=1)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context, lab):
    """A fresh tab; console errors are collected in ``page.console_errors``; its kernel is shut down after."""
    pg = browser_context.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(f"pageerror: {e}"))
    try:
        yield pg
    finally:
        pg.close()
        lab.shutdown_kernels()
