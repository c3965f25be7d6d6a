"""Verification accuracy of an external teacher (:func:`lqlib.teachers.build_teacher`) with :func:`lqlib.evaluation.evaluate`.

    python bench/external_teacher.py --teacher vladmandic-mobilefacenet --pairs lfw-10fold --scales 1 \\
        [--runtime torch|onnx] [--no-flip] [--threads 2] [--out bench/results]

``--teacher`` is anything ``build_teacher`` takes (a registered name, an ``.onnx`` file, a spec
``.json``). ``--runtime onnx`` exports a PyTorch teacher once to ``<cache>/teachers/<name>/model.onnx``
and runs it with onnxruntime under the same spec (several times faster on CPU; the numbers match the
PyTorch model to ~1e-4). Writes ``<out>/external_teacher_<name>_<stamp>.csv`` (atomic) and prints it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import torch

from lqlib import io, paths
from lqlib.evaluation import evaluate, to_markdown
from lqlib.teachers import ExternalTeacher, build_teacher


def onnx_teacher(teacher: ExternalTeacher, threads: int | None) -> ExternalTeacher:
    """The same teacher run by onnxruntime (export cached beside the converted weights)."""
    from lqlib.teachers.onnx import OnnxEmbedder, export_onnx

    if isinstance(teacher.model, OnnxEmbedder):
        return teacher
    path = paths.cache_dir() / "teachers" / teacher.spec.name / "model.onnx"
    if not path.is_file():
        print(f"[bench] exporting {teacher.spec.name} → {path} ({export_onnx(teacher.model, path)} exporter)")
    return ExternalTeacher(OnnxEmbedder(path, threads=threads), teacher.spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="vladmandic-mobilefacenet")
    ap.add_argument("--pairs", default="lfw-10fold")
    ap.add_argument("--scales", type=float, nargs="+", default=[1])
    ap.add_argument("--mode", default="both")
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
    df = evaluate(teacher, pairs, scales=[int(s) if s == int(s) else s for s in args.scales], mode=args.mode,
                  flip=False if args.no_flip else None, batch_size=args.batch_size)
    t2 = time.perf_counter()
    df.insert(0, "teacher", teacher.spec.name)
    df["runtime"], df["flip"] = args.runtime, not args.no_flip
    print(to_markdown(df[["teacher", "scale", "mode", "protocol", "acc_mean", "acc_std", "tar_far1e-3", "auc",
                          "n_pairs", "seconds"]], index=False))
    print(f"[bench] load {t1 - t0:.0f} s, evaluate {t2 - t1:.0f} s ({args.runtime}, threads={torch.get_num_threads()})")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.resolve(args.out) / f"external_teacher_{teacher.spec.name}_{stamp}.csv"
    io.save_dataframe_csv(df, out, index=False)
    print(f"[bench] wrote {Path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
