"""The verdict study's choices on the validation split (issue 27): one KD weight per candidate term, read on
lfw-half-val only, before the family is trained and long before any test-fold number exists.

    python -m lqlib.run --preset verdict --only calib       # trains the candidates (HEAVY: ~7 min each, 2 cores)
    python bench/verdict_calib.py report                    # evaluates them on lfw-half-val, applies the rule

The candidates are the ``calib-*`` steps of ``lqlib/presets/verdict.yaml``: one student per weight, seed 100
(no family seed), trained into ``runs/verdict_calib/<name>`` — outside the study's folder, so a calibration
student never joins a family model's seeds or tables. The rule is the ``choices`` block of
``results/cpu/hypotheses.yaml`` (committed before the candidates were trained): per term, the weight whose
student has the higher lfw-half-val accuracy at ×8, eval mode ``both`` (protocol ``insightface``, 1,200 pairs
in 2 folds); an exact tie goes to the smaller weight; a candidate whose training CE did not fall is out.
One seed per weight: the choice protects against a badly scaled term, it cannot resolve differences smaller
than the seed-to-seed spread (≈ 1 point in the first study).

``report`` writes ``results/cpu/calibration/choices.{json,md}`` (accuracy at ×1/×2/×4/×8, the training CE
per epoch, the choice per term).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import yaml

from lqlib import io, paths

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "lqlib" / "presets" / "verdict.yaml"
OUT = ROOT / "results" / "cpu" / "calibration" / "choices"
PAIRS = "lfw-half-val"
SCALES = (1, 2, 4, 8)
DECIDE_SCALE = 8.0


def candidates(preset: Path = PRESET) -> list[dict]:
    """The preset's ``calib-*`` steps: term, weight, method, teacher, run directory."""
    steps = yaml.safe_load(preset.read_text())["notebooks"]
    out = []
    for s in steps:
        if not str(s.get("tag", "")).startswith("calib-"):
            continue
        p = s["parameters"]
        (term, weight), = p["KD_WEIGHTS"].items()
        out.append({"tag": s["tag"], "method": p["METHOD"], "teacher": p.get("TEACHER", "") or "own CBAM teacher",
                    "term": term, "weight": float(weight), "run_dir": p["TRAIN_OVERRIDES"]["out_dir"]})
    if not out:
        raise SystemExit(f"error: no calib-* step in {preset}")
    return out


def ce_per_epoch(d: Path) -> list[float]:
    with open(d / "metrics.csv") as f:
        return [round(float(r["loss_ce"]), 3) for r in csv.DictReader(f)]


def evaluate_run(d: Path, pairs) -> dict:
    """scale → accuracy (%) on the validation pairs, cached beside the checkpoint (keyed on its mtime)."""
    from lqlib.checkpoint import load_backbone
    from lqlib.evaluation import evaluate

    cache = d / f"eval_{PAIRS}_both.json"
    stamp = os.path.getmtime(d / "checkpoint.pt")
    if cache.is_file():
        got = json.loads(cache.read_text())
        if got.get("checkpoint_mtime") == stamp:
            return {float(k): v for k, v in got["acc"].items()}
    t0 = time.time()
    df = evaluate(load_backbone(d), pairs, scales=SCALES, eval_mode="both", protocol="insightface",
                  batch_size=128, device="cpu")
    acc = {float(r.scale): float(r.acc_mean) for r in df.itertuples()}
    io.write_json(cache, {"checkpoint_mtime": stamp, "seconds": round(time.time() - t0, 1),
                          "acc": {str(k): v for k, v in acc.items()}})
    return acc


def choose(rows: list[dict]) -> dict:
    """term → the chosen row (the rule in the module docstring)."""
    out = {}
    for term in sorted({r["term"] for r in rows}):
        ok = [r for r in rows if r["term"] == term and r["learned"]]
        if not ok:
            raise SystemExit(f"error: no candidate for {term!r} learned (training CE did not fall)")
        out[term] = max(ok, key=lambda r: (r["acc"][DECIDE_SCALE], -r["weight"]))
    return out


def cmd_report() -> int:
    from lqlib.study import load_eval_pairs
    from lqlib.train import is_finished

    cands = candidates()
    missing = [c["run_dir"] for c in cands if not is_finished(paths.resolve(c["run_dir"]))]
    if missing:
        print(f"error: unfinished candidates {missing}: run `python -m lqlib.run --preset verdict --only calib`",
              file=sys.stderr)
        return 2
    pairs = load_eval_pairs(PAIRS, synthetic_fallback=False)
    rows = []
    for c in cands:
        d = paths.resolve(c["run_dir"])
        ce = ce_per_epoch(d)
        rows.append({**c, "acc": evaluate_run(d, pairs), "ce_per_epoch": ce, "learned": ce[-1] < 0.8 * ce[0]})
    chosen = choose(rows)
    out = {"pairs": PAIRS, "eval_mode": "both", "protocol": "insightface", "decide_scale": DECIDE_SCALE,
           "seed": 100, "candidates": rows, "chosen": {t: r["weight"] for t, r in chosen.items()},
           "command": "python -m lqlib.run --preset verdict --only calib && python bench/verdict_calib.py report"}
    io.write_json(OUT.with_suffix(".json"), out)
    io.write_text(OUT.with_suffix(".md"), markdown(out))
    print(markdown(out))
    return 0


def markdown(out: dict) -> str:
    lines = [f"# Verdict study — KD weights chosen on {out['pairs']} (validation only)", "",
             f"One student per candidate weight (seed {out['seed']}), `cpu_verdict` recipe; accuracy (%) on "
             f"{out['pairs']}, eval mode `{out['eval_mode']}`, protocol `{out['protocol']}`. Rule (committed before "
             f"these students were trained, results/cpu/hypotheses.yaml `choices`): per term the weight with the "
             f"higher ×{out['decide_scale']:g} accuracy; an exact tie → the smaller weight; a student whose "
             "training CE did not fall is out. One seed: this guards against a badly scaled term and cannot "
             "resolve differences within the seed-to-seed spread.", "",
             "| term | method | teacher | weight | " + " | ".join(f"×{s}" for s in SCALES)
             + " | CE epoch 1 → last | chosen |", "|---" * (len(SCALES) + 6) + "|"]
    for r in out["candidates"]:
        pick = out["chosen"][r["term"]] == r["weight"]
        lines.append(f"| {r['term']} | {r['method']} | {r['teacher']} | {r['weight']:g} | "
                     + " | ".join(f"{r['acc'][float(s)]:.2f}" for s in SCALES)
                     + f" | {r['ce_per_epoch'][0]:.2f} → {r['ce_per_epoch'][-1]:.2f} | {'**yes**' if pick else ''} |")
    lines += ["", f"Command: `{out['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/verdict_calib.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("report")
    args = ap.parse_args(argv)
    return cmd_report() if args.cmd == "report" else 2


if __name__ == "__main__":
    sys.exit(main())
