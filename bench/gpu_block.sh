#!/usr/bin/env bash
# The lfw-half study block on one CUDA GPU, one command (docs/gpu.md): bench/gpu_block.py in one Python process,
# within a time budget, ≤ 8 files in $OUT (accuracy.csv, pairs_correct.npz, timings.json, accuracy_vs_scale.png,
# kd_step.json, log).
#
#   SEED=0 bash bench/gpu_block.sh                 # on a machine with one CUDA GPU
#   SEED=0 BUDGET_S=900 bash bench/gpu_block.sh    # a longer budget (seconds from process start; default 510)
#   OUT=/tmp/blk bash bench/gpu_block.sh --dry-run  # the same command on the CPU, tiny configuration
#
# Needs data/packs/{train.rec,train.idx,lfw_half.bin,lfw_half.folds.json,manifest.json} (python -m lqlib.data
# prepare --out data/packs; git-ignored, so copy them along when the GPU is on another machine). Installs nothing.
# Environment: SEED (default 0), BUDGET_S (default 510), OUT (default runs/gpu-block-out-s$SEED); extra arguments
# go to `gpu_block.py run`. Exit status: 0 complete, 2 incomplete (time budget), 1 a failed step, 66 missing
# packs, 124/137 killed by the backstop timeout. Then: python bench/gpu_block.py merge "$OUT".
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
SEED="${SEED:-0}"
OUT="${OUT:-runs/gpu-block-out-s$SEED}"
mkdir -p "$OUT"
BUDGET_S="${BUDGET_S:-510}"
case " $* " in
  *" --dry-run "*) ;;
  *) for f in train.rec train.idx lfw_half.bin lfw_half.folds.json manifest.json; do
       if [ ! -s "data/packs/$f" ]; then
         echo "gpu_block.sh: data/packs/$f is missing: build the packs with 'python -m lqlib.data prepare --out data/packs'" \
              "(on another machine: copy train.rec, train.idx, lfw_half.bin, lfw_half.folds.json and manifest.json there)" \
              | tee "$OUT/log" >&2
         exit 66
       fi
     done ;;
esac
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# backstop: the budget guard ends the block well before this; the files written so far stay in $OUT
timeout -k 10 $(( ${BUDGET_S%.*} + 60 )) python3 bench/gpu_block.py run --out "$OUT" --seed "$SEED" \
    --budget-s "$BUDGET_S" "$@" 2>&1 | tee "$OUT/log"
