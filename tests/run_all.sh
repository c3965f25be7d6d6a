#!/usr/bin/env bash
# The project's test command (README, CI): unit tests, then every notebook through nbval,
# parameterised by the smoke preset (papermill --prepare-only), in order.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q tests
out=runs/ci-nbval
rm -rf "$out/notebooks"
python -m lqlib.run --preset smoke --prepare-only --out "$out"
python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
    --nbval-sanitize-with tests/nbval_sanitize.cfg "$out"/notebooks/*.ipynb
