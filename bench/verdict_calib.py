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

    python bench/verdict_calib.py capacity                  # EXPLORATORY, after the study's test step

The capacity step of issue 27 (does a wider student follow the strong teacher further?): the ``capacity-*``
steps train a 2×-wide ``ir_cbam_tiny`` (widths 32-64-128-256) as BasicNet-LR and as the sface student, seeds
0 and 1, outside the study's folder (the model key does not name the backbone, so inside it they would join
the tiny family models). ``capacity`` evaluates them on lfw-half-val and — only once the registered test step
has published ``results/cpu/results.csv`` — on lfw-half, and writes ``results/cpu/exploratory/capacity.md``
beside the tiny students' rows of the same seeds: exploratory, 2 seeds, not in the family.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from lqlib import io, paths

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "lqlib" / "presets" / "verdict.yaml"
OUT = ROOT / "results" / "cpu" / "calibration" / "choices"
PAIRS = "lfw-half-val"
SCALES = (1, 2, 4, 8)
DECIDE_SCALE = 8.0


def outside_steps(prefix: str, preset: Path = PRESET) -> list[dict]:
    """The preset's ``<prefix>-*`` steps (students trained outside the study's folder): tag, method, teacher
    ("" for the study's own), seed, KD term and weight (None without KD), model key, run directory."""
    from lqlib.model_key import ModelKey

    steps = yaml.safe_load(preset.read_text())["notebooks"]
    out = []
    for s in steps:
        if not str(s.get("tag", "")).startswith(prefix + "-"):
            continue
        p = s["parameters"]
        weights = p.get("KD_WEIGHTS") or {}
        (term, weight), = (weights or {None: None}).items()
        teacher = p.get("TEACHER", "")
        out.append({"tag": s["tag"], "method": p["METHOD"], "teacher": teacher, "seed": int(p.get("SEED", 0)),
                    "term": term, "weight": None if weight is None else float(weight),
                    "key": str(ModelKey.student(p["METHOD"], teacher, kd_weights=weights)),
                    "run_dir": p["TRAIN_OVERRIDES"]["out_dir"]})
    if not out:
        raise SystemExit(f"error: no {prefix}-* step in {preset}")
    return out


def candidates(preset: Path = PRESET) -> list[dict]:
    """The preset's ``calib-*`` steps: term, weight, method, teacher, run directory."""
    return outside_steps("calib", preset)


def training_record(rows: list[dict]) -> None:
    """Add each row's training CE per epoch (first, last) and ``learned``: lqlib's check of a finished run
    (:func:`lqlib.callbacks.check_learning`: finite, non-zero losses, the CE lower later than in epoch 1)."""
    from lqlib.callbacks import DegenerateRunError, check_learning

    for r in rows:
        try:
            r["ce_first_last"], r["learned"] = list(check_learning(paths.resolve(r["run_dir"]))["loss_ce"]), True
        except DegenerateRunError as e:
            r["ce_first_last"], r["learned"] = None, False
            print(f"{r['tag']}: {e}", file=sys.stderr)


def evaluate_outside(rows: list[dict], pairs, study_name: str) -> None:
    """Add ``acc[<pairs' name>]`` (scale → accuracy %, eval mode both, protocol insightface) to each row, by
    the study evaluation lqlib's notebooks use (:func:`lqlib.study.evaluate_study`: the content leakage guard,
    per-pair correctness, cached per checkpoint) on the rows' runs, cached under ``runs/<study_name>/eval/``
    (the folder the runs live in, so a key shared with a family model, e.g. ``none`` seed 0, never meets its
    cache)."""
    from lqlib import study as S
    from lqlib.checkpoint import read_training_data

    models = [S.Model(r["key"], r["seed"], paths.resolve(r["run_dir"]),
                      read_training_data(paths.resolve(r["run_dir"]))[0]) for r in rows]
    df = S.evaluate_study(S.Study(study_name), pairs, scales=SCALES, eval_modes=("both",), protocol="insightface",
                          device="cpu", batch_size=128, models=models)
    for r in rows:
        got = df[(df["model_key"] == r["key"]) & (df["seed"] == r["seed"])]
        r.setdefault("acc", {})[pairs.name] = {float(g.scale): float(g.acc_mean) for g in got.itertuples()}


def _publish(path: Path, out: dict, markdown_of) -> int:
    """``out`` as ``<path>.json`` and its markdown as ``<path>.md`` (atomic writes), printed too."""
    text = markdown_of(out)
    io.write_json(path.with_suffix(".json"), out)
    io.write_text(path.with_suffix(".md"), text)
    print(text)
    return 0


def choose(rows: list[dict]) -> dict:
    """term → the chosen row (the rule in the module docstring)."""
    out = {}
    for term in sorted({r["term"] for r in rows}):
        ok = [r for r in rows if r["term"] == term and r["learned"]]
        if not ok:
            raise SystemExit(f"error: no candidate for {term!r} learned (training CE did not fall)")
        out[term] = max(ok, key=lambda r: (r["acc"][PAIRS][DECIDE_SCALE], -r["weight"]))
    return out


def _unfinished(rows: list[dict], prefix: str) -> bool:
    from lqlib.train import is_finished

    missing = [c["run_dir"] for c in rows if not is_finished(paths.resolve(c["run_dir"]))]
    if missing:
        print(f"error: unfinished students {missing}: run `python -m lqlib.run --preset verdict --only {prefix}`",
              file=sys.stderr)
    return bool(missing)


def cmd_report() -> int:
    from lqlib.study import load_eval_pairs

    cands = candidates()
    if _unfinished(cands, "calib"):
        return 2
    training_record(cands)
    evaluate_outside(cands, load_eval_pairs(PAIRS, synthetic_fallback=False), "verdict_calib")
    chosen = choose(cands)
    out = {"pairs": PAIRS, "eval_mode": "both", "protocol": "insightface", "decide_scale": DECIDE_SCALE,
           "seed": 100, "candidates": cands, "chosen": {t: r["weight"] for t, r in chosen.items()},
           "command": "python -m lqlib.run --preset verdict --only calib && python bench/verdict_calib.py report"}
    return _publish(OUT, out, markdown)


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
        ce = " → ".join(f"{v:.2f}" for v in r["ce_first_last"]) if r["ce_first_last"] else "did not fall"
        lines.append(f"| {r['term']} | {r['method']} | {r['teacher'] or 'own CBAM teacher'} | {r['weight']:g} | "
                     + " | ".join(f"{r['acc'][out['pairs']][float(s)]:.2f}" for s in SCALES)
                     + f" | {ce} | {'**yes**' if pick else ''} |")
    lines += ["", f"Command: `{out['command']}`", ""]
    return "\n".join(lines)


TEST = "lfw-half"
TEST_RESULTS = ROOT / "results" / "cpu" / "results.csv"   # written by the registered test step
CAPACITY_OUT = ROOT / "results" / "cpu" / "exploratory" / "capacity"


def tiny_rows(model_key: str, seeds) -> dict:
    """seed → scale → accuracy of the study's own tiny model ``model_key`` (results/cpu/results.csv, both)."""
    import pandas as pd

    df = pd.read_csv(TEST_RESULTS)
    df = df[(df["model_key"] == model_key) & (df["eval_mode"] == "both") & df["seed"].isin(list(seeds))]
    return {int(s): {float(r.scale): float(r.acc_mean) for r in g.itertuples()} for s, g in df.groupby("seed")}


def cmd_capacity() -> int:
    from lqlib.study import load_eval_pairs

    rows = outside_steps("capacity")
    if _unfinished(rows, "capacity"):
        return 2
    training_record(rows)
    sets = [PAIRS] + ([TEST] if TEST_RESULTS.is_file() else [])  # the test folds only after the registered test step
    for name in sets:
        evaluate_outside(rows, load_eval_pairs(name, synthetic_fallback=False), "verdict_capacity")
    if TEST in sets:
        for r in rows:
            r["tiny"] = tiny_rows(r["key"], [r["seed"]]).get(r["seed"])
    out = {"label": "EXPLORATORY (issue 27's capacity step: 2 seeds, not in the registered family)",
           "student": "ir_cbam_tiny at 2x width (32-64-128-256) vs the study's ir_cbam_tiny (16-32-64-128)",
           "eval_mode": "both", "rows": rows, "test_read": TEST in sets,
           "command": "python -m lqlib.run --preset verdict --only capacity && python bench/verdict_calib.py capacity"}
    return _publish(CAPACITY_OUT, out, capacity_markdown)


def capacity_markdown(out: dict) -> str:
    lines = [f"# The capacity step — {out['label']}", "", f"{out['student']}; accuracy (%), eval mode `both`.", ""]
    sets = sorted({k for r in out["rows"] for k in r["acc"]})
    head = "| model | seed | set | " + " | ".join(f"×{s}" for s in SCALES) + " | tiny, same seed (×8) |"
    lines += [head, "|---" * (len(SCALES) + 4) + "|"]
    for r in out["rows"]:
        for name in sets:
            acc = r["acc"][name]
            tiny = r.get("tiny") if name == TEST else None
            lines.append(f"| {r['key']} (wide) | {r['seed']} | {name} | "
                         + " | ".join(f"{acc[float(s)]:.2f}" for s in SCALES)
                         + f" | {'—' if not tiny else format(tiny[8.0], '.2f')} |")
    if not out["test_read"]:
        lines += ["", "Validation only: the test folds are read after the study's registered test step."]
    lines += ["", f"Command: `{out['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/verdict_calib.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("report")
    sub.add_parser("capacity")
    args = ap.parse_args(argv)
    return {"report": cmd_report, "capacity": cmd_capacity}[args.cmd]()


if __name__ == "__main__":
    sys.exit(main())
