#!/usr/bin/env bash
# teacher calibration for the cpu preset: accuracy (val ×1/×8 on lfw-half each epoch) vs minutes
cd "$(dirname "$0")/../../.."  # the repository root
export OMP_WAIT_POLICY=PASSIVE
common=(role=teacher backbone=ir_cbam_tiny batch_size=64 lr=0.1 schedule=onecycle nesterov=true "head_kw={s: 32.0, m: 0.5}" num_workers=0 val_pairs=lfw-half progress=false device=cpu "val_scales=[1, 8]")
.venv/bin/python -m lqlib.train --set name=c1 out_dir=runs/calib/c1_all_e8 epochs=8 "${common[@]}" > runs/calib/c1.log 2>&1
.venv/bin/python -m lqlib.train --set name=c2 out_dir=runs/calib/c2_min2_e8 epochs=8 min_images_per_class=2 "${common[@]}" > runs/calib/c2.log 2>&1
.venv/bin/python -m lqlib.train --set name=c3 out_dir=runs/calib/c3_min2max20_e10 epochs=10 min_images_per_class=2 max_images_per_class=20 "${common[@]}" > runs/calib/c3.log 2>&1
echo done > runs/calib/DONE
