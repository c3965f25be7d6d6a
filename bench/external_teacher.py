"""Verification accuracy of an external teacher (:func:`lqlib.teachers.build_teacher`) with :func:`lqlib.evaluation.evaluate`.

    python bench/external_teacher.py --teacher faceapi-resnet --pairs lfw-10fold --scales 1 2 4 8 \\
        [--runtime torch|onnx] [--no-flip] [--threads 2] [--out bench/results]

``--teacher`` is anything ``build_teacher`` takes (a registered name, an ``.onnx`` file, a spec
``.json``). ``--runtime onnx`` exports a PyTorch teacher once to ``<cache>/teachers/<name>/model.onnx``
and runs it with onnxruntime under the same spec (several times faster on CPU; the numbers match the
PyTorch model to ~1e-4). Writes ``<out>/external_teacher_<name>_<stamp>.csv`` and ``.json`` (the rows
plus command, threads, torch version and timings; ``s_per_forward`` = a row's seconds — degradation,
preprocessing, embedding of every pair image and its flip, scoring — per forward image), appends one
row per scale to ``<out>/external_teacher.md`` (all atomic) and prints the table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time

import torch

from lqlib import io, paths
from lqlib.evaluation import evaluate, to_markdown
from lqlib.teachers import ExternalTeacher, build_teacher

MD_HEADER = ("| date | teacher | runtime | pairs | scale | eval mode | protocol | flip | acc (%) | TAR@FAR=1e-3 | AUC | "
             "threads | s/forward |\n|---|---|---|---|---:|---|---|---|---|---:|---:|---:|---:|\n")


def markdown_rows(df, stamp: str, threads: int) -> str:
    """One ``external_teacher.md`` row per result row (accuracy as mean ± fold std)."""
    return "".join(
        f"| {stamp} | {r['teacher']} | {r['runtime']} | {r['dataset']} | ×{r['scale']:g} | {r['eval_mode']} | "
        f"{r['protocol']} | {r['flip']} | {r['acc_mean']:.2f} ± {r['acc_std']:.2f} | {r['tar_far1e-3']:.2f} | "
        f"{r['auc']:.4f} | {threads} | {r['s_per_forward']:.4f} |\n" for r in df.to_dict(orient="records"))


def onnx_teacher(teacher: ExternalTeacher, threads: int | None) -> ExternalTeacher:
    """The same teacher run by onnxruntime (export cached beside the converted weights)."""
    from lqlib.teachers.onnx import OnnxEmbedder, export_onnx

    if isinstance(teacher.model, OnnxEmbedder):  # already onnxruntime: reopen only for another thread count
        if not threads or threads == teacher.model.threads:
            return teacher
        return ExternalTeacher(OnnxEmbedder(teacher.model.path, teacher.model.providers, teacher.model._output, threads),
                               teacher.spec)
    path = paths.cache_dir() / "teachers" / teacher.spec.name / "model.onnx"
    if not path.is_file():
        print(f"[bench] exporting {teacher.spec.name} → {path} ({export_onnx(teacher.model, path)} exporter)")
    return ExternalTeacher(OnnxEmbedder(path, threads=threads), teacher.spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="faceapi-resnet")
    ap.add_argument("--pairs", default="lfw-10fold")
    ap.add_argument("--scales", type=float, nargs="+", default=[1])
    ap.add_argument("--mode", default="both", help="eval mode: both | cross | both+cross")
    ap.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from lqlib.data import load_pairs

    t0 = time.perf_counter()
    teacher = build_teacher(args.teacher)
    if args.runtime == "onnx":
        teacher = onnx_teacher(teacher, args.threads)
    pairs = load_pairs(args.pairs)
    t1 = time.perf_counter()
    df = evaluate(teacher, pairs, scales=[int(s) if s == int(s) else s for s in args.scales], eval_mode=args.mode,
                  flip=False if args.no_flip else None, batch_size=args.batch_size)
    t2 = time.perf_counter()
    df.insert(0, "teacher", teacher.spec.name)
    df["runtime"], df["flip"] = args.runtime, not args.no_flip
    df["s_per_forward"] = df["seconds"] / (2 * df["n_pairs"] * (1 if args.no_flip else 2))
    threads = torch.get_num_threads()
    print(to_markdown(df[["teacher", "scale", "eval_mode", "protocol", "acc_mean", "acc_std", "tar_far1e-3", "auc",
                          "n_pairs", "seconds", "s_per_forward"]], index=False))
    print(f"[bench] load {t1 - t0:.0f} s, evaluate {t2 - t1:.0f} s ({args.runtime}, threads={threads})")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.resolve(args.out)
    stem = out / f"external_teacher_{teacher.spec.name}_{stamp}"
    io.save_dataframe_csv(df, stem.with_suffix(".csv"), index=False)
    io.write_json(stem.with_suffix(".json"), {
        "command": " ".join(["python", *sys.argv]) if argv is None else f"main({list(argv)!r})",
        "stamp": stamp, "teacher": teacher.spec.name, "source": teacher.spec.source, "pairs": args.pairs,
        "runtime": args.runtime, "torch": torch.__version__, "threads": threads,
        "cpu": platform.processor() or platform.machine(), "load_seconds": t1 - t0, "evaluate_seconds": t2 - t1,
        "rows": df.to_dict(orient="records")})
    md = out / "external_teacher.md"
    old = md.read_text(encoding="utf-8") if md.is_file() else "# External teachers: verification accuracy\n\n" + MD_HEADER
    io.write_text(md, old + markdown_rows(df, stamp, threads))
    print(f"[bench] wrote {stem}.csv, .json and a row per scale in {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
