"""Exploratory secondary outcome of the verdict study (issue 27 item 8): 1:N identification on lfw-half-id at
×1 and ×8 (cross: HR gallery, degraded probes; both: both degraded) of every model of the five blocks, after the
family was tested. Reads each block's run folder (runs/verdict-bK, the block's `runs/verdict` moved aside, with its
weights — not committed); sface (frozen, the same in every block) is evaluated with block 0 only. Per-model results
are cached in each run folder (an interrupted run resumes). Writes results/cpu/identification/lfw-half-id.csv and
lfw-half-id.md (rank-1 and mAP with the 656 distractors in the gallery, mean ± sd over the 5 blocks, by
lqlib.id_study.id_tables; descriptive).

    OMP_WAIT_POLICY=PASSIVE python results/cpu/identification/run_identification.py
"""
import sys
import time

import pandas as pd

from lqlib import id_study as IS
from lqlib import paths, study as S
from lqlib.evaluation.tables import to_markdown
from lqlib.io import save_dataframe_csv, write_text

SCALES, MODES, BLOCKS = [1, 8], ["cross", "both"], range(5)
frames = []
for k in BLOCKS:
    t0 = time.time()
    study = S.Study(f"verdict-b{k}")
    extra = S.external_teachers(["sface"]) if k == 0 else None
    df = IS.identify_study(study, "lfw-half-id", SCALES, MODES, extra_models=extra)
    if df is None:
        sys.exit("lfw-half-id: face data not available")
    df.loc[df["model_key"].astype(str) == "teacher", "seed"] = k     # block k's teacher is teacher seed k
    frames.append(df.assign(block=k))
    print(f"block {k}: {len(df)} rows in {time.time() - t0:.0f} s", flush=True)
out = pd.concat(frames, ignore_index=True)
save_dataframe_csv(out, paths.resolve("results/cpu/identification/lfw-half-id.csv"), index=False)

md = ["# lfw-half-id (exploratory): identification of the verdict study's five blocks, ± = std over blocks (ddof 1)\n",
      "cross: gallery at HR, probes degraded; both: gallery and probes degraded. Gallery with distractors.\n"]
md += [f"## {title}\n\n{to_markdown(table)}\n" for title, table in IS.id_tables(out).items()]
write_text(paths.resolve("results/cpu/identification/lfw-half-id.md"), "\n".join(md))
print("written", len(out), "rows")
