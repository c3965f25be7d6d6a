"""Where a KD training step's time goes: ``torch.profiler`` over a few steps of the trainer's own step.

    python bench/profile_step.py --backbone ir_cbam_18 --batch 32            # eager, bf16, channels_last
    python bench/profile_step.py --backbone ir_cbam_18 --batch 32 --compile  # what torch.compile leaves

Builds the step as ``bench/kd_step.py`` does (synthetic uint8 batch in memory, the trainer's
``_step``: HR/LR split with degradation, teacher forward, student forward/backward, margin head, KD
terms, optimizer), warms it up, profiles ``--steps`` steps and groups the operators' self CPU time
into convolution (forward and backward, oneDNN), GEMM, and everything else; the top non-convolution
operators are named. Writes ``bench/results/profile_step_<tag>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kd_step import Part  # noqa: E402
from lqlib.config import TrainConfig  # noqa: E402
from lqlib.heads import build_head  # noqa: E402
from lqlib.io import write_json, write_text  # noqa: E402
from lqlib.models import build_backbone  # noqa: E402

CONV = ("convolution", "conv2d", "mkldnn_convolution", "_convolution", "convolution_backward", "conv_depthwise")
GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul")


def kind(name: str) -> str:
    low = name.lower()
    if any(c in low for c in CONV):
        return "convolution"
    if name in GEMM:
        return "gemm"
    return "other"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="ir_cbam_18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--classes", type=int, default=4000)
    ap.add_argument("--method", default="logit+attention")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--cached", action="store_true", help="the teacher's outputs from the output table")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    teacher = build_backbone(args.backbone)
    teacher_arg = (teacher, build_head("arcface", teacher.embedding_size, args.classes))
    images = torch.randint(0, 256, (args.batch, 3, 112, 112), dtype=torch.uint8)
    labels = torch.randint(0, args.classes, (args.batch,))
    cfg = TrainConfig.from_dict(dict(
        name="profile", out_dir=str(ROOT / "runs" / "_bench"), data="synthetic",
        synthetic={"num_classes": args.classes, "images_per_class": 1}, backbone=args.backbone, teacher_cache=False,
        batch_size=args.batch, method=args.method, device="cpu", num_workers=0, progress=False, resume=False,
        epochs=1, compile=bool(args.compile)))
    # compiled: warm up past the trainer's compile probe (2 + 3 compiled + 3 eager steps), or the
    # profiled steps would mix the probe's eager steps into the compiled engine
    warmup = max(args.warmup, 9) if args.compile else args.warmup
    part = Part(cfg, teacher_arg, (images, labels), warmup, output_cache=args.cached)
    t0 = time.perf_counter()
    part.run(args.steps)
    plain_s = (time.perf_counter() - t0) / args.steps
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        part.run(args.steps)
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = {}
    for e in events:
        groups[kind(e.key)] = groups.get(kind(e.key), 0.0) + e.self_cpu_time_total
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)
    top_other = [e for e in rows if kind(e.key) == "other"][:args.top]
    top_all = rows[:args.top]
    res = {"backbone": args.backbone, "batch": args.batch, "method": args.method, "compile": args.compile,
           "cached_teacher": args.cached, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "step_s_unprofiled": round(plain_s, 4), "step_s_profiled": round(total_us / 1e6 / args.steps, 4),
           "engine": part.tr.engine_report(),
           "groups_fraction": {k: round(v / total_us, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
           "top_non_conv": [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1e3 / args.steps, 2),
                             "fraction": round(e.self_cpu_time_total / total_us, 4), "calls_per_step": e.count // args.steps}
                            for e in top_other],
           "top_all": [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1e3 / args.steps, 2),
                        "fraction": round(e.self_cpu_time_total / total_us, 4)} for e in top_all]}
    tag = f"{args.backbone}_b{args.batch}{'_compiled' if args.compile else ''}{'_cached' if args.cached else ''}"
    out = Path(args.out)
    write_json(out / f"profile_step_{tag}.json", res)
    md = [f"# Profile of one KD step: {args.backbone}, batch {args.batch}, {args.method}, "
          f"{'compiled' if args.compile else 'eager'}{', cached teacher' if args.cached else ''} ({res['date']}, "
          f"{res['threads']} threads)\n",
          f"`python bench/profile_step.py --backbone {args.backbone} --batch {args.batch}"
          f"{' --compile' if args.compile else ''}{' --cached' if args.cached else ''}`; step "
          f"{res['step_s_unprofiled']} s unprofiled, {res['step_s_profiled']} s of operator self time profiled.\n",
          "Self CPU time by group: " + ", ".join(f"{k} {v:.1%}" for k, v in res["groups_fraction"].items()) + "\n",
          "| non-convolution operator | ms / step | of the step | calls / step |", "|---|---:|---:|---:|"]
    md += [f"| `{r['op']}` | {r['ms_per_step']} | {r['fraction']:.1%} | {r['calls_per_step']} |" for r in res["top_non_conv"]]
    write_text(out / f"profile_step_{tag}.md", "\n".join(md) + "\n")
    print("\n".join(md), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
