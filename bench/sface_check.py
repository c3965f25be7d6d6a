"""The sface teacher on this machine: embedding rate of each runtime variant, and RGB vs BGR input.

    python bench/sface_check.py [--rounds 5] [--batch 32] [--pairs 600] [--out bench/results]

**Speed** (one run, the variants taking turns batch by batch so they share the machine's load; rates
are images/s of the embedding forward alone, ratios against the first row):

* ``published, inputs repaired, batch 1`` — only the unconsumed graph inputs dropped (the least that
  loads in onnxruntime; the batch stays fixed at 1, so one call per image);
* ``repaired, int8 dequantised per call`` — all repairs but no folding: onnxruntime dequantises the
  block-int8 weights on every forward (batch ``--batch``);
* ``repaired + fp32 weights folded`` (what :func:`lqlib.teachers.sface.load_sface` builds), with
  onnxruntime's graph optimisation ``basic`` vs ``all``, ``intra_op_num_threads`` 1 vs 2, and 2 threads
  without spinning (idle pool threads sleep).

A PyTorch port was not written (see the README's "External teachers").

**RGB vs BGR**: lqlib's ``evaluate`` (insightface protocol, no flips, ×1) on the first ``--pairs``
pairs of lfw-10fold, scored in 10 interleaved folds, with the spec's channel order set to each.

Writes ``<out>/sface_check_<stamp>.json`` and appends rows to ``<out>/sface_check.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time

import numpy as np


def _session(model_bytes: bytes, threads: int, level: str, spin: bool = True):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    if not spin:  # idle pool threads sleep instead of spinning (matters on a shared machine)
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    o.log_severity_level = 3
    return ort.InferenceSession(model_bytes, o, providers=["CPUExecutionProvider"])


def speed(rounds: int, batch: int) -> list[dict]:
    import onnx

    from lqlib.teachers import onnx_graph, sface

    data, where = sface.source_bytes(sface.cache_folder(), fetch=False)
    inputs_only = onnx.load_model_from_string(data)
    onnx_graph.drop_unconsumed_inputs(inputs_only)
    unfolded = onnx.load_model_from_string(data)
    onnx_graph.sanitize(unfolded, fold=False)
    folded = onnx.load_model_from_string(data)
    onnx_graph.sanitize(folded, fold=True)
    variants = [  # (name, model, threads, level, images per call, spin)
        ("published, inputs repaired, batch 1", inputs_only, 1, "all", 1, True),
        ("repaired, int8 dequantised per call", unfolded, 1, "all", batch, True),
        ("repaired + fp32 weights folded, opt basic", folded, 1, "basic", batch, True),
        ("repaired + fp32 weights folded, opt all", folded, 1, "all", batch, True),
        ("repaired + fp32 weights folded, opt all, 2 threads", folded, 2, "all", batch, True),
        ("repaired + fp32 weights folded, opt all, 2 threads, no spinning", folded, 2, "all", batch, False),
    ]
    sessions = [_session(m.SerializeToString(), t, lvl, spin) for _, m, t, lvl, _, spin in variants]
    x = np.random.default_rng(0).uniform(0, 255, (batch, 3, 112, 112)).astype(np.float32)
    rates: list[list[float]] = [[] for _ in variants]
    for r in range(rounds + 1):  # round 0 warms up
        for k, ((_, _, _, _, per_call, _), s) in enumerate(zip(variants, sessions)):
            t0 = time.perf_counter()
            for i in range(0, batch, per_call):
                s.run(None, {"data": x[i:i + per_call]})
            if r:
                rates[k].append(batch / (time.perf_counter() - t0))
    base = float(np.median(rates[0]))
    return [{"variant": name, "threads": t, "graph_optimization": lvl, "images_per_call": per_call, "spinning": spin,
             "images_per_s": float(np.median(rk)), "min": float(np.min(rk)), "max": float(np.max(rk)),
             "ratio": float(np.median(rk)) / base}
            for (name, _, t, lvl, per_call, spin), rk in zip(variants, rates)]


def channels(n_pairs: int) -> list[dict]:
    import torch

    from lqlib.data import load_pairs
    from lqlib.evaluation import evaluate
    from lqlib.teachers.sface import load_sface

    p = load_pairs("lfw-10fold")
    idx = torch.arange(n_pairs)  # whole official folds: 300 same, then 300 different pairs each
    images = torch.stack([p.images[2 * idx], p.images[2 * idx + 1]], 1).reshape(-1, *p.images.shape[1:])
    rows = []
    for order in ("RGB", "BGR"):
        t0 = time.perf_counter()
        r = evaluate(load_sface(channel_order=order), (images, p.issame[idx.numpy()], (idx % 10).numpy()),
                     scales=[1], flip=False).iloc[0]
        rows.append({"channel_order": order, "pairs": n_pairs, "acc_mean": float(r["acc_mean"]),
                     "acc_std": float(r["acc_std"]), "tar_far1e-3": float(r["tar_far1e-3"]), "auc": float(r["auc"]),
                     "seconds": time.perf_counter() - t0})
    return rows


def main(argv=None) -> int:
    from lqlib import io, paths

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pairs", type=int, default=600, help="RGB/BGR check on this many pairs (0: skip)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    sp = speed(args.rounds, args.batch)
    ch = channels(args.pairs) if args.pairs else []
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.resolve(args.out)
    io.write_json(out / f"sface_check_{stamp}.json", {
        "command": " ".join(["python", *sys.argv]) if argv is None else f"main({list(argv)!r})", "stamp": stamp,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load_avg": os.getloadavg(),
        "seconds": time.perf_counter() - t0, "speed": sp, "channels": ch})
    md = out / "sface_check.md"
    head = ("# sface: embedding rate and channel order\n\n`bench/sface_check.py`: rates are the median over rounds "
            "(the variants take turns in one run); ratio vs the first row of the same run.\n\n"
            "| date | variant | threads | opt | images/call | images/s | ratio |\n|---|---|---:|---|---:|---:|---:|\n")
    text = md.read_text(encoding="utf-8") if md.is_file() else head
    text += "".join(f"| {stamp} | {r['variant']} | {r['threads']} | {r['graph_optimization']} | {r['images_per_call']} | "
                    f"{r['images_per_s']:.1f} | {r['ratio']:.2f} |\n" for r in sp)
    text += "".join(f"| {stamp} | channel order {r['channel_order']} (lfw-10fold first {r['pairs']} pairs, ×1, no flip) "
                    f"| | | | acc {r['acc_mean']:.2f} ± {r['acc_std']:.2f} %, AUC {r['auc']:.4f} | |\n" for r in ch)
    io.write_text(md, text)
    for r in sp:
        print(f"{r['variant']:<55} {r['images_per_s']:7.1f} img/s  ×{r['ratio']:.2f}")
    for r in ch:
        print(f"{r['channel_order']}: {r['acc_mean']:.2f} ± {r['acc_std']:.2f} %  AUC {r['auc']:.4f}")
    print(f"[bench] {time.perf_counter() - t0:.0f} s; wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
