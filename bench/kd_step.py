"""Throughput of the KD training step, naive vs lqlib's fast path, in ONE run.

    python bench/kd_step.py --backbone ir_cbam_100 --batch 256          # on a GPU
    python bench/kd_step.py --backbone ir_cbam_tiny --batch 16 --steps 3  # CPU smoke

Measured with the trainer's own step (:meth:`lqlib.train.Trainer._step`: teacher forward on HR,
degradation on the device, student forward/backward, margin head, logit + attention KD, SGD):

* ``naive``  — eager fp32, NCHW, no torch.compile (the same math);
* ``fast``   — lqlib's defaults on this device (CUDA: bf16 autocast, channels_last, torch.compile);
* ``teacher``— teacher-only training (HR, ArcFace CE) with the fast path;
* ``eval``   — evaluation embedding throughput (images/s, no flip) with lqlib.evaluation.embed.

Batches are synthetic uint8 tensors already in memory (the data loader is not measured here).
Writes ``bench/results/kd_step_<backbone>_<device>.json`` and appends a row to ``kd_step.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lqlib.heads import build_head  # noqa: E402
from lqlib.io import write_json, write_text  # noqa: E402
from lqlib.losses import Progress  # noqa: E402
from lqlib.models import build_backbone  # noqa: E402
from lqlib.train import TrainConfig, Trainer  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_steps(cfg: TrainConfig, teacher, batch, steps: int, warmup: int) -> dict:
    tr = Trainer(cfg, teacher=teacher)
    tr._build()
    dev = tr.device
    images, labels = batch
    gen = torch.Generator(device=dev).manual_seed(0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(warmup):
        tr._step(images, labels, gen, Progress(0, i, 0.0))
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(steps):
        total, _ = tr._step(images, labels, gen, Progress(0, warmup + i, 0.0))
    _sync(dev)
    dt = time.perf_counter() - t0
    if not torch.isfinite(total):
        raise FloatingPointError("non-finite loss in the benchmark")
    out = {"img_per_s": round(images.shape[0] * steps / dt, 1), "ms_per_step": round(1000 * dt / steps, 1),
           "compiled": tr._compiled, "amp": str(tr.amp_dtype), "channels_last": tr.channels_last}
    if dev.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    del tr
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="ir_cbam_tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--classes", type=int, default=10000, help="identities of the margin head")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--method", default="logit+attention")
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip: naive fast teacher eval")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    torch.manual_seed(0)
    teacher = build_backbone(args.backbone)
    head = build_head("arcface", teacher.embedding_size, args.classes)
    images = torch.randint(0, 256, (args.batch, 3, 112, 112), dtype=torch.uint8)
    labels = torch.randint(0, args.classes, (args.batch,))
    if dev.type == "cuda":
        images, labels = images.to(dev), labels.to(dev)
    base = dict(name="bench", out_dir=str(ROOT / "runs" / "_bench"), data="synthetic",
                synthetic={"num_classes": args.classes, "images_per_class": 1}, backbone=args.backbone,
                batch_size=args.batch, method=args.method, device=str(dev), num_workers=0, progress=False,
                resume=False, init_head_from_teacher=True, epochs=1)
    res = {"backbone": args.backbone, "batch": args.batch, "classes": args.classes, "method": args.method,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or 'x86_64'}, "
                                                                                 f"{torch.get_num_threads()} threads)",
           "torch": torch.__version__, "steps": args.steps}
    parts = {
        "naive": dict(amp="off", channels_last=False, compile=False),
        "fast": dict(amp="auto", channels_last="auto", compile="auto"),
        "teacher": dict(role="teacher", amp="auto", channels_last="auto", compile="auto"),
    }
    for name, over in parts.items():
        if name in args.skip:
            continue
        cfg = TrainConfig.from_dict({**base, **over})
        res[name] = time_steps(cfg, (teacher, head), (images, labels), args.steps, args.warmup)
        print(name, res[name], flush=True)
    if "naive" in res and "fast" in res:
        res["speedup_fast_vs_naive"] = round(res["fast"]["img_per_s"] / res["naive"]["img_per_s"], 2)
    if "eval" not in args.skip:
        from lqlib.evaluation import embed

        n = max(args.batch * 4, 64)
        imgs = torch.randint(0, 256, (n, 3, 112, 112), dtype=torch.uint8)
        embed(teacher, imgs[: args.batch], batch_size=args.batch, device=dev, flip=False)
        _sync(dev)
        t0 = time.perf_counter()
        embed(teacher, imgs, batch_size=args.batch, device=dev, flip=False)
        _sync(dev)
        res["eval_img_per_s"] = round(n / (time.perf_counter() - t0), 1)
        print("eval", res["eval_img_per_s"], flush=True)

    out = Path(args.out)
    tag = f"{args.backbone}_{'cuda' if dev.type == 'cuda' else 'cpu'}"
    write_json(out / f"kd_step_{tag}.json", res)
    md = out / "kd_step.md"
    head_row = ("| backbone | batch | device | naive img/s | fast img/s | speed-up | teacher-only img/s | eval img/s | "
                "peak GiB | torch |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n")
    row = (f"| {args.backbone} | {args.batch} | {res['device']} | {res.get('naive', {}).get('img_per_s', '')} | "
           f"{res.get('fast', {}).get('img_per_s', '')} | {res.get('speedup_fast_vs_naive', '')} | "
           f"{res.get('teacher', {}).get('img_per_s', '')} | {res.get('eval_img_per_s', '')} | "
           f"{res.get('fast', {}).get('peak_mem_gib', '')} | {res['torch']} |\n")
    write_text(md, (md.read_text() if md.is_file() else "# KD step throughput\n\n" + head_row) + row)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
