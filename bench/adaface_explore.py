"""EXPLORATORY: BasicNet-LR (method ``none``) with the AdaFace head vs the ArcFace head, `cpu` recipe.

    python bench/adaface_explore.py train --head adaface --seed 0     # one student (HEAVY: ~8-14 min, 2 cores)
    python bench/adaface_explore.py report [--runs DIR]               # evaluate what is trained, write the tables

Each student is the `cpu` recipe's BasicNet-LR (``lqlib.config.recipe("cpu", "student")``, method ``none``,
8 epochs on per-sample ×2/×4/×8, seed k) with only the margin head changed: ``--head adaface`` uses
``head_kw = {s: 32, m: 0.4, h: 0.333}`` — the paper's m and h, the recipe's scale s = 32 (the recipe uses
ArcFace s = 32 instead of the papers' 64 on this 1,205-identity set; s is the softmax temperature both heads
share, so the comparison changes the margin only). ``--head arcface`` is the recipe unchanged, to check
that a retrained seed reproduces the committed ``results/cpu/results.csv`` row (same code, same recipe), which
is what justifies reading the ArcFace arm's other seeds from that file. Students go to
``runs/adaface_explore/<head>-s<seed>`` (no teacher: method ``none`` uses none); nothing is published
into ``results/cpu``.

``report`` evaluates every trained student on lfw-half (3,000 pairs, 5 folds) at ×1/×2/×4/×8, eval mode
``both``, protocol ``insightface`` (as ``03_evaluation``; cached per checkpoint), takes the ArcFace arm
per seed from the first CPU study's ``results/cpu/results.csv`` (git ``359cd4c``; BasicNet-LR, ``none``, ``both``), and writes
``bench/results/adaface_explore.{json,md}``: per seed, mean ± sd over seeds, the paired difference
AdaFace − ArcFace per seed and a paired t-test across seeds (:func:`lqlib.evaluation.seeds.seed_test`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lqlib import io, paths

ROOT = Path(__file__).resolve().parents[1]
RUNS = "adaface_explore"
HEAD_KW = {"adaface": {"s": 32.0, "m": 0.4, "h": 0.333}, "arcface": None}  # None: the recipe's (s 32, m 0.5)
SCALES = (1, 2, 4, 8)
COMMITTED = "359cd4c:results/cpu/results.csv"  # the first CPU study (replaced in the tree by the verdict study)
OUT = ROOT / "bench" / "results" / "adaface_explore"


def run_dir(head: str, seed: int) -> Path:
    return paths.runs_dir() / RUNS / f"{head}-s{seed}"


def config(head: str, seed: int):
    from lqlib.config import TrainConfig, recipe

    d = recipe("cpu", "student")
    d.update(name=f"{RUNS}-{head}-s{seed}", out_dir=str(run_dir(head, seed)), role="student", method="none",
             seed=seed, head=head, progress=False)
    if HEAD_KW[head] is not None:
        d["head_kw"] = dict(HEAD_KW[head])
    return TrainConfig.from_dict(d)


def cmd_train(head: str, seed: int) -> int:
    from lqlib.train import is_finished, train_student

    cfg = config(head, seed)
    if is_finished(cfg.run_dir, cfg.epochs):
        print(f"{cfg.run_dir} already trained")
        return 0
    t0 = time.time()
    summary = train_student(cfg)
    print(json.dumps({"run": str(cfg.run_dir), "seconds": round(time.time() - t0, 1), "final": summary["final"],
                      "engine": summary["engine"]}, indent=1, default=str))
    return 0


def evaluate_run(d: Path, pairs) -> list[dict]:
    """Rows (scale, acc_mean, acc_std) of one student, cached beside its checkpoint."""
    import os

    from lqlib.checkpoint import load_backbone
    from lqlib.evaluation import evaluate

    cache = d / "eval_lfw-half_both.json"
    stamp = os.path.getmtime(d / "checkpoint.pt")
    if cache.is_file():
        got = json.loads(cache.read_text())
        if got.get("checkpoint_mtime") == stamp:
            return got["rows"]
    t0 = time.time()
    df = evaluate(load_backbone(d), pairs, scales=SCALES, eval_mode="both", protocol="insightface",
                  batch_size=128, device="cpu")
    rows = [{"scale": float(r.scale), "acc_mean": float(r.acc_mean), "acc_std": float(r.acc_std)}
            for r in df.itertuples()]
    io.write_json(cache, {"checkpoint_mtime": stamp, "seconds": round(time.time() - t0, 1), "rows": rows})
    return rows


def committed_arcface() -> dict:
    """seed → scale → accuracy of BasicNet-LR (none, both) in the committed CPU study."""
    import pandas as pd

    import io as _io
    import subprocess

    df = pd.read_csv(_io.StringIO(subprocess.check_output(["git", "show", COMMITTED], text=True, cwd=ROOT)))
    df = df[(df.model == "BasicNet-LR") & (df.method == "none") & (df.eval_mode == "both")]
    return {int(s): {float(r.scale): float(r.acc_mean) for r in g.itertuples()} for s, g in df.groupby("seed")}


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None, "n": int(len(v))}


def ce_curve(d: Path) -> list[float]:
    """The training CE per epoch (``metrics.csv``): evidence that the student learns."""
    import csv

    with open(d / "metrics.csv") as f:
        return [round(float(r["loss_ce"]), 4) for r in csv.DictReader(f)]


def cmd_report(runs: Path | None = None) -> int:
    from lqlib.evaluation.seeds import seed_test
    from lqlib.study import load_eval_pairs

    runs_root = Path(runs) if runs else paths.runs_dir() / RUNS
    trained = {}
    for head in HEAD_KW:
        for d in sorted(runs_root.glob(f"{head}-s*")):
            from lqlib.train import is_finished

            if is_finished(d):
                trained[(head, int(d.name.split("-s")[-1]))] = d
    if not any(h == "adaface" for h, _ in trained):
        print("error: no finished AdaFace student under runs/adaface_explore (train first)", file=sys.stderr)
        return 2
    pairs = load_eval_pairs("lfw-half", synthetic_fallback=False)
    acc = {"adaface": {}, "arcface_retrained": {}}
    runs = {}
    for (head, seed), d in sorted(trained.items()):
        rows = evaluate_run(d, pairs)
        key = "adaface" if head == "adaface" else "arcface_retrained"
        acc[key][seed] = {r["scale"]: r["acc_mean"] for r in rows}
        m = json.loads((d / "summary.json").read_text())
        runs[f"{head}-s{seed}"] = {"train_seconds": m.get("seconds_this_call"), "final": m.get("final"),
                                   "ce_per_epoch": ce_curve(d),
                                   "engine": m.get("engine", {}).get("engine"),
                                   "eval_seconds": json.loads((d / "eval_lfw-half_both.json").read_text())["seconds"]}
    acc["arcface"] = committed_arcface()
    seeds = sorted(acc["adaface"])
    table = {}
    for sc in map(float, SCALES):
        a = {s: acc["adaface"][s][sc] for s in seeds}
        b = {s: acc["arcface"][s][sc] for s in seeds if s in acc["arcface"]}
        t = seed_test(a, b)
        table[f"x{sc:g}"] = {"adaface": {"per_seed": a, **_summary(list(a.values()))},
                             "arcface": {"per_seed": b, **_summary(list(b.values()))},
                             "diff_per_seed": {s: a[s] - b[s] for s in seeds if s in b}, "test": t}
    repro = {f"s{s}": {f"x{sc:g}": {"retrained": v, "committed": acc["arcface"][s][sc], "diff": v - acc["arcface"][s][sc]}
                       for sc, v in per.items()} for s, per in acc["arcface_retrained"].items()}
    status = ("" if len(seeds) >= 3 else f"INCOMPLETE: only AdaFace seed(s) {seeds} of 0, 1, 2 were trained (the heavy "
              "lock was free too late before the deadline); with fewer than 3 seeds the paired t-test has at most 1 "
              "degree of freedom and decides nothing. ")
    out = {"label": f"EXPLORATORY (not a pre-registered comparison; {len(seeds)} AdaFace seed(s), one recipe, one "
                    "evaluation set)", "status": status,
           "what": "BasicNet-LR (method none), cpu recipe, AdaFace head vs ArcFace head; lfw-half 3,000 pairs, "
                   "eval mode both, protocol insightface; accuracy %",
           "adaface_head_kw": HEAD_KW["adaface"], "arcface_head_kw": {"s": 32.0, "m": 0.5},
           "arcface_source": f"{COMMITTED} (the first CPU study), seeds {sorted(acc['arcface'])}",
           "seeds": seeds, "scales": table, "arcface_reproduction": repro, "runs": runs,
           "command": "python bench/adaface_explore.py train --head adaface --seed {0,1,2}; "
                      "python bench/adaface_explore.py train --head arcface --seed 0; python bench/adaface_explore.py report"}
    io.write_json(OUT.with_suffix(".json"), out)
    io.write_text(OUT.with_suffix(".md"), markdown(out))
    print(markdown(out))
    return 0


def markdown(out: dict) -> str:
    seeds = out["seeds"]
    lines = [f"# AdaFace vs ArcFace head, BasicNet-LR, `cpu` recipe — {out['label']}", "",
             f"{out['what']}. AdaFace head_kw {out['adaface_head_kw']}; ArcFace {out['arcface_head_kw']} "
             f"from {out['arcface_source']}.", "", *([f"**{out['status']}**", ""] if out.get("status") else []),
             "| scale | " + " | ".join(f"AdaFace s{s}" for s in seeds) + " | AdaFace mean ± sd | "
             + " | ".join(f"ArcFace s{s}" for s in seeds) + " | ArcFace mean ± sd | Δ per seed | Δ mean ± sd | paired t | p |",
             "|---" * (2 * len(seeds) + 7) + "|"]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    for sc, r in out["scales"].items():
        a, b, t = r["adaface"], r["arcface"], r["test"]
        cells = [sc, *(fmt(a["per_seed"].get(s)) for s in seeds), f"{a['mean']:.2f} ± {fmt(a['sd'])}",
                 *(fmt(b["per_seed"].get(s)) for s in seeds), f"{b['mean']:.2f} ± {fmt(b['sd'])}",
                 " / ".join(f"{d:+.2f}" for d in r["diff_per_seed"].values()),
                 f"{t['delta']:+.2f} ± {fmt(t['delta_sd'])}", fmt(t["t"]), "—" if t["p"] != t["p"] else f"{t['p']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if out["arcface_reproduction"]:
        lines += ["", "ArcFace retrained here vs the committed number (same recipe and training code):", "",
                  "| seed | scale | retrained | committed | diff |", "|---|---|---:|---:|---:|"]
        for s, per in out["arcface_reproduction"].items():
            for sc, v in per.items():
                lines.append(f"| {s} | {sc} | {v['retrained']:.2f} | {v['committed']:.2f} | {v['diff']:+.2f} |")
    lines += ["", "Runs (training seconds of the last call, engine decision, evaluation seconds):", ""]
    lines += [f"- {k}: train {v['train_seconds']} s ({v['engine']}), eval {v['eval_seconds']} s, training CE per "
              f"epoch {' → '.join(f'{c:.2f}' for c in v.get('ce_per_epoch', []))}" for k, v in out["runs"].items()]
    lines += ["", f"Command: `{out['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/adaface_explore.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--head", choices=sorted(HEAD_KW), required=True)
    t.add_argument("--seed", type=int, required=True)
    r = sub.add_parser("report")
    r.add_argument("--runs", help="folder of the trained students (default runs/adaface_explore)")
    args = ap.parse_args(argv)
    return cmd_train(args.head, args.seed) if args.cmd == "train" else cmd_report(args.runs)


if __name__ == "__main__":
    sys.exit(main())
