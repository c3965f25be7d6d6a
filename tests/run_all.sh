#!/usr/bin/env bash
# The project's test command (README, CI): unit tests, then every notebook through nbval,
# parameterised by the smoke preset (papermill --prepare-only), in order, then notebooks 04 and 05
# of that study opened in JupyterLab in headless Chromium (tests/browser).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q tests --ignore=tests/browser
out=runs/ci-nbval
rm -rf "$out/notebooks"
python -m lqlib.run --preset smoke --prepare-only --out "$out"
python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
    --nbval-sanitize-with tests/nbval_sanitize.cfg "$out"/notebooks/*.ipynb
# JupyterLab + the explorer's widget in a real browser (skips with one line when there is no Chromium,
# except in CI, where .ci/run installs it and sets LQLIB_REQUIRE_BROWSER=1)
python -m pytest -q -p no:cacheprovider tests/browser
