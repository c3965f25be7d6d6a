"""``bench/gpu_block.py merge`` and ``next-seed``: returned blocks into ``results/gpu/`` and the tables over them."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from gpu_block_parts import EVAL_MODES, OUTPUT_FILES, plot
from lqlib.io import save_dataframe_csv, write_text


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-") or "x"


def block_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if (d / "timings.json").is_file()) if root.is_dir() else []


def merge(src: Path, root: Path, *, allow_dry_run: bool = False, replace: bool = False) -> Path:
    """Copy the returned block ``src`` into ``root/<gpu>_<date>_s<seed>/`` and rebuild the tables."""
    t = json.loads((src / "timings.json").read_text())
    if t.get("dry_run") and not allow_dry_run:
        raise ValueError(f"{src} is a dry run (CPU, tiny configuration): not merged into {root} "
                         "(pass --allow-dry-run to merge it anyway, e.g. into a scratch --results folder)")
    name = "_".join(slug(v) for v in (t["env"]["gpu"], t["started"][:10], f"s{t['seed']}"))
    dst = root / name
    for d in block_dirs(root):
        other = json.loads((d / "timings.json").read_text())
        if d != dst and int(other["seed"]) == int(t["seed"]):
            raise ValueError(f"seed {t['seed']} is already merged in {d.name}; seeds must differ between blocks "
                             f"(next unused seed: {next_seed(root)})")
    if dst.exists():
        if not replace:
            raise FileExistsError(f"{dst} exists (the same GPU, date and seed); pass --replace to overwrite it")
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    copied = []
    for f in OUTPUT_FILES:
        if (src / f).is_file():
            shutil.copyfile(src / f, dst / f)
            copied.append(f)
    others = sorted(p.name for p in src.iterdir() if p.is_file() and p.name not in OUTPUT_FILES)
    print(f"merge: {src} → {dst} ({', '.join(copied)})" + (f"; not copied: {others}" if others else ""))
    rebuild(root)
    return dst


def next_seed(root: Path) -> int:
    used = {int(json.loads((d / "timings.json").read_text())["seed"]) for d in block_dirs(root)}
    return next(s for s in range(len(used) + 1) if s not in used)


def rebuild(root: Path) -> list[Path]:
    """``accuracy_all.csv``, ``tables.md`` and ``accuracy_vs_scale.png`` over every block folder in ``root``."""
    import numpy as np
    import pandas as pd

    from lqlib.evaluation import compare_to_baseline, paper_table, to_markdown
    from lqlib.model_key import ModelKey
    from lqlib.study import key_columns

    blocks, frames = [], []
    for d in block_dirs(root):
        t = json.loads((d / "timings.json").read_text())
        blocks.append({"block": d.name, "GPU": t["env"]["gpu"], "date": t["started"][:10], "seed": t["seed"],
                       "wall s": t.get("wall_s"), "complete": t.get("complete"),
                       "not done": "; ".join(t.get("skipped", [])) or "—", "dir": d})
        if (d / "accuracy.csv").is_file():
            df = key_columns(pd.read_csv(d / "accuracy.csv"))  # blocks written before the key had its columns
            df = df[df["status"] == "ok"].copy()
            df.insert(0, "block", d.name)
            frames.append(df)
    if not blocks:
        raise FileNotFoundError(f"no block folders under {root}")
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    written = [save_dataframe_csv(results, root / "accuracy_all.csv", index=False)]
    seeds = sorted(int(s) for s in results["seed"].unique()) if len(results) else []
    correct = {}  # (model slug, seed, eval mode, scale) → per-pair correctness, for the pair-level test
    for b in blocks:
        if (b["dir"] / "pairs_correct.npz").is_file():
            with np.load(b["dir"] / "pairs_correct.npz") as z:
                for k in z.files:
                    slug_, mode, scale = k.split("__")
                    correct[(slug_, int(b["seed"]), mode, float(scale[1:]))] = z[k]
    pair_correct = lambda mode: lambda m, seed, sc: correct.get((ModelKey.parse(m).file_name, int(seed), mode, float(sc)))  # noqa: E731

    table = pd.DataFrame([{k: v for k, v in b.items() if k != "dir"} for b in blocks])
    md = ["# GPU blocks: lfw-half, IR-CBAM-18 (gpu recipe), accuracy (%)\n",
          "Rebuilt by `python bench/gpu_block.py merge` from every block folder here (one per GPU window); "
          "do not edit by hand.\n",
          f"{len(blocks)} block(s), seeds {seeds}. ± = std over training seeds (ddof 1), `n seeds` = how many; "
          "`fold sd` = mean over seeds of the 5-fold std (pair noise), per scale.\n",
          to_markdown(table, index=False)]
    for mode in EVAL_MODES:
        if len(results) and mode in set(results["eval_mode"]):
            md.append(f"## {mode}\n\n{to_markdown(paper_table(results, mode))}")
    if len(seeds) >= 2 and "none" in set(results["model_key"]):
        for mode in EVAL_MODES:
            cmp = compare_to_baseline(results, "none", (4, 8), mode, pair_correct(mode))
            if len(cmp):
                cols = [c for c in ("model", "scale", "n", "acc", "baseline_acc", "delta", "delta_sd", "t", "p",
                                    "p_holm", "significant", "pair_boot_p_max") if c in cmp.columns]
                md.append(f"## {mode}: vs BasicNet-LR across seeds (paired t over seeds, Holm over the table; "
                          f"pair_boot_p_max: pair noise only)\n\n{to_markdown(cmp[cols], index=False)}")
    else:
        md.append("## vs BasicNet-LR\n\nFewer than 2 seeds: no test across seeds yet (each window adds one seed).\n")
    written.append(write_text(root / "tables.md", "\n".join(md)))
    if len(results):
        plot(results, root / "accuracy_vs_scale.png")
        written.append(root / "accuracy_vs_scale.png")
    print(f"merge: rebuilt {', '.join(p.name for p in written)} from {len(blocks)} block(s), seeds {seeds}")
    return written

