#!/usr/bin/env bash
# One GPU window, one command (README, "GPU block"): the lfw-half study block of bench/gpu_block.py in one
# Python process, ≤ 9 minutes wall, ≤ 8 files in $OUT (accuracy.csv, pairs_correct.npz, timings.json,
# accuracy_vs_scale.png, kd_step.json, log).
#
#   SEED=3 bash bench/gpu_block.sh                 # on the GPU machine ($OUT is the device tool's folder)
#   OUT=/tmp/blk bash bench/gpu_block.sh --dry-run  # the same command on the CPU, tiny configuration
#
# Needs data/packs/{train.rec,train.idx,lfw_half.bin,lfw_half.folds.json,manifest.json} (python -m lqlib.data
# prepare --out data/packs; git-ignored, so sent with the command). Installs nothing: the GPU machine's
# Python already has every package the block imports. Environment: SEED (default 0), BUDGET_S (default
# 510), OUT (required); extra arguments go to `gpu_block.py run`. Exit status: 0 complete, 2 incomplete
# (time budget), 1 a failed step, 66 missing packs, 124/137 killed by the backstop timeout.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
SEED="${SEED:-0}"
BUDGET_S="${BUDGET_S:-510}"
case " $* " in
  *" --dry-run "*) ;;
  *) for f in train.rec train.idx lfw_half.bin lfw_half.folds.json manifest.json; do
       if [ ! -s "data/packs/$f" ]; then
         echo "gpu_block.sh: data/packs/$f is missing: build the packs with 'python -m lqlib.data prepare --out data/packs'" \
              "and send train.rec, train.idx, lfw_half.bin, lfw_half.folds.json and manifest.json with the command" \
              | tee "$OUT/log" >&2
         exit 66
       fi
     done ;;
esac
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# backstop: the budget guard ends the block well before this; the files written so far stay in $OUT
timeout -k 10 $(( ${BUDGET_S%.*} + 60 )) python3 bench/gpu_block.py run --out "$OUT" --seed "$SEED" \
    --budget-s "$BUDGET_S" "$@" 2>&1 | tee "$OUT/log"
