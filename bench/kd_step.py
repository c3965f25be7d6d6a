"""Throughput of the KD training step, naive vs lqlib's default engine, measured in ONE run.

    python bench/kd_step.py                                            # CPU: ir_cbam_18, batch 32, logit+attention
    python bench/kd_step.py --backbone ir_cbam_100 --batch 256         # on a GPU

Every part runs the trainer's own step (:meth:`lqlib.train.Trainer._step`: the distiller's HR/LR split
with degradation, teacher forward on HR, student forward/backward, margin head, the method's KD
terms, SGD) on synthetic uint8 batches already in memory:

* ``naive``   — eager fp32, NCHW, no torch.compile (the same math);
* ``default`` — lqlib's defaults on this device (bf16 autocast where the hardware has it,
  channels_last, torch.compile with its measured fall-back);
* ``teacher`` — teacher-only training (HR, ArcFace CE) with the defaults;
* ``cached``  — the defaults with the own teacher's outputs read from a
  :class:`~lqlib.teachers.outputs.TeacherOutputCache` (embedding + CBAM maps; logits through the
  teacher's head) instead of running the teacher (with ``--teacher``: the external teacher's cached
  embeddings); the table covers the dataset rows the timed batch reads, its build rate is reported;
* ``eval``    — :func:`lqlib.evaluation.embed` throughput with flips (a flip counts as an image),
  compiled as ``evaluate`` runs it.

The first ``--warmup`` steps are not timed: they hold the compile and the trainer's engine probe
(compiled vs eager, :class:`lqlib.engine.CompileProbe`), whose decision, compile seconds and probed
step times are reported apart from the steady-state step time. FLOPs per step are
counted with ``torch.utils.flop_counter.FlopCounterMode`` (one eager fp32 step) and turned into an
achieved GFLOP/s, reported as a fraction of the peak *measured in the same run* (``bench/peak.py``:
best GEMM / convolution rate on these threads) and of the rate this backbone's own convolutions reach
forward + backward (the network's ceiling here); the nominal estimate
(:func:`lqlib.precision.machine_peak_gflops`) is kept as a note. Writes
``bench/results/kd_step_<tag>.json`` and appends a row to ``bench/results/kd_step.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lqlib.config import TrainConfig  # noqa: E402
from lqlib.heads import build_head  # noqa: E402
from lqlib.io import write_json, write_text  # noqa: E402
from lqlib.losses import Progress  # noqa: E402
from lqlib.models import build_backbone  # noqa: E402
from lqlib.models.interface import unwrap  # noqa: E402
from lqlib.precision import cpu_flags, machine_peak_gflops  # noqa: E402
from lqlib.runtime import compile_enabled  # noqa: E402
from lqlib.train import Trainer  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def step_flops(tr: Trainer, batch) -> float:
    """FLOPs of one (eager) training step, forward + backward, from torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    images, labels = batch
    gen = torch.Generator(device=tr.device).manual_seed(0)
    with FlopCounterMode(display=False) as fc:
        tr._step(images, labels, gen, Progress(0, 0, 0.0))
    return float(fc.get_total_flops())


class Part:
    """One configuration of the step, built and warmed up once, then timed in rounds."""

    def __init__(self, cfg: TrainConfig, teacher, batch, warmup: int, flops: bool = False, output_cache: bool = False):
        self.tr = Trainer(cfg, teacher=teacher)
        self.tr._build()
        self.batch, self.step_i = batch, 0
        self.rows = len(self.tr.dataset)
        extra = {}
        if output_cache:  # the own teacher's outputs from a table over the rows the timed batch reads
            from lqlib.teachers import outputs as teacher_outputs

            d, self.rows = self.tr.distiller, len(batch[1])
            t0 = time.perf_counter()
            d.teacher_cache = teacher_outputs.load_or_build(unwrap(d.teacher), self.tr.dataset.images[:self.rows], None,
                                                            self.tr.device, self.tr.amp_dtype, log=lambda *_: None)
            extra = {"cache_build_img_per_s": round(2 * self.rows / (time.perf_counter() - t0), 1),
                     "cache_row_bytes": d.teacher_cache.table.shape[1] * d.teacher_cache.table.element_size()}
        self.gen = torch.Generator(device=self.tr.device).manual_seed(0)
        self.info = {"amp": str(self.tr.amp_dtype), "channels_last": self.tr.channels_last, **extra}
        if flops:
            self.info["gflop_per_step"] = round(step_flops(self.tr, batch) / 1e9, 2)
        if not compile_enabled(cfg.compile):
            warmup = min(warmup, 2)  # nothing to compile or probe: oneDNN's first-call set-up only
        self.info["warmup_s"] = round(self.run(warmup), 1)
        self.rates: list[float] = []

    def run(self, steps: int) -> float:
        images, labels = self.batch
        t0 = time.perf_counter()
        for _ in range(steps):
            index = torch.arange(len(labels)) % self.rows  # rows of the (cached) teacher table
            total, _ = self.tr._step(images, labels, self.gen, Progress(0, self.step_i, 0.0), index)
            self.step_i += 1
        _sync(self.tr.device)
        if not torch.isfinite(total):
            raise FloatingPointError("non-finite loss in the benchmark")
        return time.perf_counter() - t0

    def settle(self) -> None:
        """Step until this part's engine probe has decided (a probe still running during the timed
        rounds would switch engines in the middle of them)."""
        while self.tr.probe.active:
            self.run(1)

    def engine_used(self) -> str:
        """The engine the timed steps really run on, read off the compiled modules themselves."""
        from lqlib.engine import compiled_modules

        mods = compiled_modules(self.tr.distiller)
        if not mods:
            return "eager (not compiled)"
        eager = {bool(m.eager or m.failed) for m in mods}
        return "mixed" if len(eager) > 1 else ("eager" if eager == {True} else "compiled")

    def use_engine_of(self, other: "Part", steps: int = 2) -> None:
        """Run on the engine ``other``'s probe chose (a comparison of two parts is about what differs
        between them, not about two noisy probes on a shared machine). Both probes are settled first,
        so neither switches engines later; this part's own decision is kept in ``info``."""
        from lqlib.engine import compiled_modules

        other.settle()
        self.settle()
        compiled = other.engine_used() == "compiled"
        self.info["own_probe"] = self.tr.engine_report()
        for m in compiled_modules(self.tr.distiller):
            m.eager = not compiled
        self.run(steps)
        if self.engine_used() != other.engine_used():
            raise RuntimeError(f"the parts run on different engines: {self.engine_used()} vs {other.engine_used()}")
        self.info["engine_as"] = f"{self.engine_used()}, as the live-teacher part"

    def time_round(self, steps: int) -> None:
        self.rates.append(self.batch[0].shape[0] * steps / self.run(steps))

    def result(self) -> dict:
        rates = sorted(self.rates)
        out = {**self.info, "img_per_s": round(rates[len(rates) // 2], 1), "img_per_s_rounds": [round(r, 1) for r in self.rates],
               "engine": self.tr.engine_report(), "engine_used": self.engine_used()}
        out["ms_per_step"] = round(1000 * self.batch[0].shape[0] / out["img_per_s"], 1)
        out["compile_s"] = out["engine"].get("compile_s", 0.0)
        if self.tr.device.type == "cuda":
            out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(self.tr.device) / 2**30, 2)
        return out


def eval_throughput(backbone: str, batch: int, n: int, dev, compile_eval: bool) -> dict:
    from lqlib.evaluation import embed

    model = build_backbone(backbone)
    imgs = torch.randint(0, 256, (n, 3, 112, 112), dtype=torch.uint8)
    t0 = time.perf_counter()
    embed(model, imgs[: 2 * batch], batch_size=batch, device=dev, flip=True, compile=compile_eval)
    _sync(dev)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    embed(model, imgs, batch_size=batch, device=dev, flip=True, compile=compile_eval)
    _sync(dev)
    dt = time.perf_counter() - t0
    return {"img_per_s_with_flips": round(2 * n / dt, 1), "warmup_s": round(warm, 1), "compiled": compile_eval}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="ir_cbam_18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--classes", type=int, default=4000, help="identities of the margin head")
    ap.add_argument("--steps", type=int, default=3, help="steps per timing round")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds; the parts alternate, the median counts")
    ap.add_argument("--warmup", type=int, default=8, help="steps before timing: compile + the engine probe (2+3+3)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--method", default=None, help="default: logit+attention; angular_emb with --teacher")
    ap.add_argument("--teacher", default="", help="an external teacher (e.g. faceapi-resnet): times the live "
                    "teacher against its cached embeddings (part 'cached')")
    ap.add_argument("--eval-images", type=int, default=512)
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip: naive default teacher cached eval flops peak")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    torch.manual_seed(0)
    args.method = args.method or ("angular_emb" if args.teacher else "logit+attention")
    if args.teacher:
        from lqlib.teachers import build_teacher

        teacher_arg = build_teacher(args.teacher)
    else:
        teacher = build_backbone(args.backbone)
        teacher_arg = (teacher, build_head("arcface", teacher.embedding_size, args.classes))
    synthetic = ({"num_classes": 64, "images_per_class": 4} if args.teacher  # the table the cache part builds
                 else {"num_classes": args.classes, "images_per_class": 1})
    images = torch.randint(0, 256, (args.batch, 3, 112, 112), dtype=torch.uint8)
    labels = torch.randint(0, synthetic["num_classes"], (args.batch,))  # the head has that many classes
    if dev.type == "cuda":
        images, labels = images.to(dev), labels.to(dev)
    base = dict(name="bench", out_dir=str(ROOT / "runs" / "_bench"), data="synthetic",
                synthetic=synthetic, backbone=args.backbone, teacher_cache=False,
                batch_size=args.batch, method=args.method, device=str(dev), num_workers=0, progress=False,
                resume=False, epochs=1)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "fma")))
    res = {"backbone": args.backbone, "teacher_model": args.teacher or "same architecture", "batch": args.batch,
           "classes": args.classes, "method": args.method,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "threads": torch.get_num_threads(), "cpu_flags": flags, "torch": torch.__version__,
           "steps_per_round": args.steps, "rounds": args.rounds, "warmup_steps": args.warmup, "date": time.strftime("%Y-%m-%d %H:%M"),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")}
    configs = {
        "naive": dict(amp="off", channels_last=False, compile=False),
        "default": dict(),
        "teacher": dict(role="teacher"),
        "cached": dict(),  # + the own teacher's output table (Part(output_cache=True))
    }
    if args.teacher:  # live external teacher vs its cached embeddings; teacher-only training is not the point
        configs = {"naive": configs["naive"], "default": {}, "cached": dict(teacher_cache=True)}
    parts = {}
    for name, over in configs.items():
        if name not in args.skip:
            cfg = TrainConfig.from_dict({**base, **over})
            parts[name] = Part(cfg, teacher_arg, (images, labels), args.warmup,
                               flops=name == "naive" and "flops" not in args.skip,
                               output_cache=name == "cached" and not args.teacher)
            print(name, "ready", parts[name].info, flush=True)
    if "cached" in parts and "default" in parts:
        parts["cached"].use_engine_of(parts["default"])
    # the parts take turns, round after round: drifts of a shared machine hit all of them alike
    for _ in range(args.rounds):
        for part in parts.values():
            part.time_round(args.steps)
    for name, part in parts.items():
        res[name] = part.result()
        print(name, res[name], flush=True)
    if "cached" in res and "default" in res:  # only a like-for-like ratio (use_engine_of raised otherwise)
        res["speedup_cached_vs_live"] = round(res["cached"]["img_per_s"] / res["default"]["img_per_s"], 2)
        res["engine_of_the_comparison"] = res["default"]["engine_used"]
    if "naive" in res and "default" in res:
        res["speedup_default_vs_naive"] = round(res["default"]["img_per_s"] / res["naive"]["img_per_s"], 2)
    if "peak" not in args.skip and dev.type == "cpu":  # the peak these threads reach now, in this run
        from bench.peak import measure

        t0 = time.perf_counter()
        pk = measure([args.backbone], {args.backbone: args.batch}, repeats=3)
        res["measured_peak"] = {**pk["peak"], "gemm_2048": {k: v["2048x2048x2048"] for k, v in pk["gemm"].items()},
                                "conv_fwd_bwd": {k: pk["conv"][args.backbone][f"{k}_fwd_bwd_weighted"] for k in ("bf16", "fp32")},
                                "conv_fwd": {k: pk["conv"][args.backbone][f"{k}_fwd_weighted"] for k in ("bf16", "fp32")},
                                "seconds": round(time.perf_counter() - t0, 1)}
        print("measured peak", res["measured_peak"], flush=True)
    gflop = res.get("naive", {}).get("gflop_per_step")
    if gflop and dev.type == "cpu":
        nominal = machine_peak_gflops(torch.get_num_threads())
        mp = res.get("measured_peak")
        for name in ("naive", "default"):
            if name in res:
                achieved = gflop * res[name]["img_per_s"] / args.batch
                res[name]["achieved_gflops"] = round(achieved, 1)
                dtype = "bf16" if "bfloat16" in res[name]["amp"] else "fp32"
                if mp:
                    res[name]["fraction_of_measured_peak"] = round(achieved / mp[dtype], 3)
                    res[name]["fraction_of_conv_fwd_bwd"] = round(achieved / mp["conv_fwd_bwd"][dtype], 3)
                res[name]["fraction_of_nominal_estimate"] = round(achieved / nominal[dtype], 3)
        res["nominal_estimate"] = nominal
    if "eval" not in args.skip and not args.teacher:
        res["eval"] = eval_throughput(args.backbone, args.batch, args.eval_images, dev, compile_eval=True)
        print("eval", res["eval"], flush=True)

    out = Path(args.out)
    tag = f"{args.backbone}{'_' + args.teacher if args.teacher else ''}_b{args.batch}_{'cuda' if dev.type == 'cuda' else 'cpu'}"
    write_json(out / f"kd_step_{tag}.json", res)
    md = out / "kd_step.md"
    head_row = ("| date | backbone | teacher | batch | method | device | threads | naive img/s | default img/s | "
                "speed-up | compile s | teacher-only img/s | cached-teacher img/s (× live) | eval img/s (flips count) | "
                "default GFLOP/s | of measured bf16 peak | of the backbone's convs (fwd+bwd) | measured peak bf16 "
                "(conv fwd+bwd) | nominal est. | torch |\n"
                "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    d = res.get("default", {})
    mp = res.get("measured_peak", {})
    cached = (f"{res['cached']['img_per_s']} (×{res['speedup_cached_vs_live']}, both {res['engine_of_the_comparison']})"
              if "cached" in res and "default" in res else "")
    row = (f"| {res['date']} | {args.backbone} | {res['teacher_model']} | {args.batch} | {args.method} | {res['device']} | "
           f"{res['threads']} | "
           f"{res.get('naive', {}).get('img_per_s', '')} | {d.get('img_per_s', '')} | "
           f"{res.get('speedup_default_vs_naive', '')} | {d.get('compile_s', '')} | "
           f"{res.get('teacher', {}).get('img_per_s', '')} | {cached} | "
           f"{res.get('eval', {}).get('img_per_s_with_flips', '')} | "
           f"{d.get('achieved_gflops', '')} | {d.get('fraction_of_measured_peak', '')} | "
           f"{d.get('fraction_of_conv_fwd_bwd', '')} | {mp.get('bf16', '')} ({mp.get('conv_fwd_bwd', {}).get('bf16', '')}) | "
           f"{d.get('fraction_of_nominal_estimate', '')} of {res.get('nominal_estimate', {}).get('bf16', '')} | {res['torch']} |\n")
    text = md.read_text() if md.is_file() else "# KD step throughput (bench/kd_step.py)\n"
    if head_row.splitlines()[0] not in text:  # a new table format: earlier rows stay above it
        text += ("\n## Against the peak measured in the same run (from 2026-12-03)\n\nFractions are of the best "
                 "GEMM/convolution rate measured in the run (`bench/peak.py`) and of the rate this backbone's own "
                 "convolutions reach forward + backward; the nominal estimate (cores × nominal clock × FLOP/cycle) "
                 "is a note. Earlier tables' fractions are of that nominal estimate.\n\n" + head_row)
    write_text(md, text + row)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
