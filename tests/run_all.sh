#!/usr/bin/env bash
# The project's test command (README, CI): the import layers, unit tests, then every notebook through
# nbval on the smoke preset (papermill --prepare-only parameterises them, nbval executes them in order),
# the numbers the smoke study produced (tests/test_smoke_results.py), and notebooks 04 and 05 of that
# study opened in JupyterLab in headless Chromium (tests/browser).
set -euo pipefail
cd "$(dirname "$0")/.."
# the cores the test command may use (default: all this process may run on, whatever OMP_NUM_THREADS says —
# `nproc` would follow it): the unit tests run in that many processes of one thread each (pytest-xdist, one
# test file per process at a time), the notebooks one after another with that many threads each
jobs="${LQLIB_TEST_JOBS:-$(python -c 'import os; print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())')}"
lint-imports --no-cache | tail -n 2
NO_MKDOCS_2_WARNING=1 mkdocs build --strict 2>&1 | grep -E "WARNING|ERROR|Aborted|Documentation built"  # the docs site (docs/, mkdocs.yml)
python -m pytest -q -n "$jobs" --dist loadfile tests --ignore=tests/browser
out=runs/ci-nbval
rm -rf "$out"
python -m lqlib.run --preset smoke --prepare-only --out "$out"
# bf16 autocast stays on; torch.compile is tested in tests/test_engine.py, so the notebooks skip it here
# (LQLIB_COMPILE=0) and CI does not pay a compile per notebook kernel
LQLIB_COMPILE=0 OMP_NUM_THREADS="$jobs" python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
    --nbval-sanitize-with tests/nbval_sanitize.cfg "$out"/notebooks/*.ipynb
LQLIB_SMOKE_RUN="$out" python -m pytest -q -p no:cacheprovider tests/test_smoke_results.py
# JupyterLab + the explorer's widget in a real browser (skips with one line when there is no Chromium,
# except in CI, where .ci/run installs it and sets LQLIB_REQUIRE_BROWSER=1)
python -m pytest -q -p no:cacheprovider tests/browser
