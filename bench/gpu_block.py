"""One GPU window, one command: the lfw-half study block in ONE process, then a merge into ``results/gpu/``.

    bash bench/gpu_block.sh                                      # on the GPU machine (SEED=N, OUT=folder)
    python bench/gpu_block.py run --out OUT --seed 0 --budget-s 510   # what the wrapper runs
    python bench/gpu_block.py run --out /tmp/blk --seed 0 --dry-run   # the same code path on the CPU, tiny
    python bench/gpu_block.py merge <returned folder>            # → results/gpu/<gpu>_<date>_s<seed>/ + tables
    python bench/gpu_block.py next-seed                          # the smallest seed no merged block has

``run`` trains, in one Python process, the IR-CBAM-18 teacher on the lfw-half pack (the ``gpu`` recipe:
40 epochs, batch 256, bf16, compiled; reused when a finished one is in the block's work folder), then
the students ``none``, ``logit``, ``attention``, ``logit+attention`` (Eq. 12, fresh heads, 25 epochs,
the caller's seed), evaluates every finished model at ×1/×2/×4/×8 ``both`` and ``cross`` on
``lfw_half.bin`` with its official folds, and runs ``bench/kd_step.py`` for ``ir_cbam_100`` at batch 256
(a child process with a hard time limit). The training pack is decoded once (``cache/decoded``) and
each run holds it as one uint8 tensor on the GPU; degradation runs on the GPU; training graphs are
compiled once per architecture and role (later runs load them from the Inductor cache) and the
evaluation graph once (every model's weights are loaded into one shared backbone).

A time budget guards the block: training stops (``Trainer.request_stop``, checkpoint written) when
only the evaluation and benchmark reserves are left, a student is not started when its estimated
time does not fit, a model is not evaluated when the last evaluation's time does not fit, and the
benchmark gets what is left. Whatever finished is written after every step, so even a killed process
leaves valid files. Output folder (≤ 8 files): ``accuracy.csv`` (one row per model × eval mode ×
scale; a ``status`` row per model that was skipped), ``pairs_correct.npz`` (per-pair correctness, for
the pair-level test of the merge), ``timings.json`` (per step wall seconds, compile seconds, engine,
what was skipped and why, GPU, torch, seed, packs), ``accuracy_vs_scale.png``, ``kd_step.json`` and
``log`` (tee'd by ``gpu_block.sh``). Exit status: 0 complete, 2 incomplete (budget), 1 a step failed.

``merge`` copies a returned block into ``results/gpu/<gpu>_<date>_s<seed>/`` and rebuilds
``results/gpu/accuracy_all.csv``, ``tables.md`` and ``accuracy_vs_scale.png`` from every block folder:
± is the std over seeds (n shown), and with ≥ 2 seeds every model is tested against BasicNet-LR
across seeds (paired t, Holm). Seeds must differ between blocks (a repeated seed is refused).

Evaluation is the study's own (:func:`lqlib.study.evaluate_study` on the block's work folder, which has a
study's layout). Beside this file: ``gpu_block_parts.py`` (constants, budget, record, machine facts, packs,
figure) and ``gpu_block_merge.py`` (``merge``, ``next-seed``).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

T_START = time.monotonic()  # the command's budget counts from the process start, imports included
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # lqlib, and this script's parts beside it

from gpu_block_merge import merge, next_seed  # noqa: E402
from gpu_block_parts import (DRY_EPOCHS, DRY_MAX_IMAGES, DRY_MAX_PAIRS, DRY_TRAIN, EVAL_MODES,  # noqa: E402,F401
                             KD_BENCH, KD_BENCH_DRY, MODELS, OUTPUT_FILES, SCALES, STUDENTS, BlockStudy, Budget, Record,
                             _cfg_facts, _same_config, check_packs, dry_packs, environment, guard, plot, run_summary)
from lqlib import paths  # noqa: E402
from lqlib.io import write_json  # noqa: E402


class Block:
    def __init__(self, args, budget: Budget, record: Record, packs: Path, work: Path, device: str):
        self.args, self.budget, self.rec, self.packs, self.work, self.device = args, budget, record, packs, work, device
        self.study = BlockStudy(f"gpu-block-s{args.seed}", work)
        self.finished: dict[str, Path] = {}   # model key → run dir
        self.rate: dict[str, float] = {}       # role → steady seconds per epoch
        self.compile_s: dict[str, float] = {}  # role → compile seconds of its last run
        self.failed = False
        self.shared: dict = {}                 # architecture → the one evaluation module of it

    def config(self, role: str, method: str = "none"):
        from lqlib.study import training_config

        over = {"progress": False}
        if self.args.dry_run:
            over.update(DRY_TRAIN, epochs=DRY_EPOCHS[role], max_images=None if self.args.packs is None else DRY_MAX_IMAGES)
        cfg = training_config(self.study, role, recipe="gpu", data=str(self.packs), seed=self.args.seed,
                              method=method, overrides=over)
        if role == "student" and method == "none":  # BasicNet-LR uses no teacher: it need not wait for one
            cfg = dataclasses.replace(cfg, teacher=None)
        return cfg

    def train(self, key: str, cfg) -> None:
        """Train one model (or reuse a finished one) under the budget guard; record what happened."""
        import torch

        from lqlib.checkpoint import is_finished
        from lqlib.train import Trainer, TrainingInterrupted

        role = cfg.role
        step = key if key == "teacher" else f"student:{key}"
        if is_finished(cfg.run_dir, cfg.epochs) and _same_config(cfg):
            self.finished[key] = cfg.run_dir
            self.rec.step(step, "reused", run_dir=str(cfg.run_dir))
            return
        left, est = self.budget.left("train"), self.estimate(role, cfg.epochs)
        if left <= 0 or (est is not None and est > left):
            why = f"needs ~{est:.0f} s of training, {max(left, 0):.0f} s left" if est else "no training time left"
            self.rec.skip_model(key, why)
            self.rec.step(step, "skipped", reason=why, estimate_s=est)
            return
        t0 = time.perf_counter()
        print(f"=== {step}: {cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.backbone}, seed {cfg.seed}, "
              f"{left:.0f} s of training time left, " + (f"estimate {est:.0f} s" if est else "no estimate yet"), flush=True)
        trainer = Trainer(cfg, callbacks=[guard(self.budget, step)])
        summary, status, reason = None, "done", None
        try:
            summary = trainer.fit()
        except TrainingInterrupted as e:
            status, reason = "stopped", f"{'time budget' if self.budget.left('train') <= 0 else 'signal'}: {e}"
        except Exception as e:  # noqa: BLE001 - one failed model must not lose the block
            traceback.print_exc()
            status, reason = "failed", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            self.failed = True
        facts = run_summary(summary or {"engine": trainer.engine_report() if hasattr(trainer, "probe") else {}},
                            cfg.run_dir)
        del trainer
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if status == "done":
            self.finished[key] = cfg.run_dir
            if facts["s_per_epoch"]:
                self.rate[role] = facts["s_per_epoch"]
            self.compile_s[role] = facts["compile_s"] or 0.0
        else:
            self.rec.skip_model(key, f"training {status}" + (f" ({reason})" if status == "failed" else ""))
        info = {"reason": reason} if reason else {}
        self.rec.step(step, status, t0, epochs=cfg.epochs, run_dir=str(cfg.run_dir), **info, **facts)

    def estimate(self, role: str, epochs: int) -> Optional[float]:
        """Seconds a run of ``role`` should take: its role's last steady epoch time (a student's first
        run: 1.5 × the teacher's, for the teacher's forward and the degradation) plus compile seconds."""
        if role in self.rate:
            return self.rate[role] * epochs + self.compile_s.get(role, 0.0)
        if role == "student" and "teacher" in self.rate:
            return 1.5 * self.rate["teacher"] * epochs + self.compile_s.get("teacher", 0.0)
        return None

    # ---- evaluation
    def load_shared(self, run_dir: Path):
        """The run's weights in the one module of its architecture, so the evaluation graph compiles once."""
        import torch

        from lqlib.checkpoint import load_checkpoint
        from lqlib.models import build_backbone

        ck = load_checkpoint(run_dir)
        arch = json.dumps([ck["backbone_name"], ck.get("backbone_kw", {})], sort_keys=True)
        if arch not in self.shared:
            net = build_backbone(ck["backbone_name"], **ck.get("backbone_kw", {}))
            self.shared[arch] = net.to(self.device, memory_format=torch.channels_last).eval()
        self.shared[arch].load_state_dict(ck["model"])
        return self.shared[arch]

    def evaluate(self, pairs) -> None:
        """Every finished model through :func:`lqlib.study.evaluate_study` (the study's evaluation, cached per
        model in the work folder, leakage refused), one model at a time so the budget can stop in between."""
        import numpy as np

        from lqlib.study import evaluate_study

        last = None
        for key in MODELS:
            if key not in self.finished:
                continue
            step = f"eval:{key}"
            left = self.budget.left("eval")
            if left <= 0 or (last is not None and last > left):
                why = f"evaluation needs ~{last or 0:.0f} s, {max(left, 0):.0f} s left"
                self.rec.skip_model(key, why)
                self.rec.step(step, "skipped", reason=why)
                continue
            t0 = time.perf_counter()
            try:
                model = next(m for m in self.study.models() if m.key == key)
                df = evaluate_study(self.study, pairs, SCALES, EVAL_MODES, device=self.device,
                                    batch_size=self.args.eval_batch, models=[model], load=self.load_shared)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                self.failed = True
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                self.rec.skip_model(key, f"evaluation failed ({reason})")
                self.rec.step(step, "failed", t0, reason=reason)
                continue
            df["seed"] = self.args.seed  # the window's seed (a study numbers its one teacher seed 0)
            df["status"] = "ok"
            self.rec.frames.append(df)
            with np.load(self.study.eval_dir(pairs.name) / f"{model.key.file_name}_s{model.seed}.npz") as z:
                for mode in EVAL_MODES:
                    for s in SCALES:
                        self.rec.correct[f"{model.key.file_name}__{mode}__x{float(s):g}"] = z[f"{mode}_x{float(s):g}"]
            last = time.perf_counter() - t0
            acc = df.set_index(["eval_mode", "scale"])["acc_mean"]
            self.rec.step(step, "done", t0, acc_both={f"x{s:g}": round(float(acc[("both", s)]), 2) for s in SCALES})

    def kd_bench(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the benchmark's process needs the GPU memory
        out = self.rec.out / "kd_step.json"
        argv = list(KD_BENCH_DRY if self.args.dry_run else KD_BENCH)
        left = self.budget.left("bench")
        if left < self.args.min_bench_s:
            why = f"{max(left, 0):.0f} s left, the benchmark needs at least {self.args.min_bench_s:.0f} s"
            write_json(out, {"status": "skipped", "reason": why, "argv": argv})
            self.rec.step("kd_step", "skipped", reason=why)
            return
        scratch = self.work / "kd_step"
        shutil.rmtree(scratch, ignore_errors=True)
        cmd = [sys.executable, str(ROOT / "bench" / "kd_step.py"), *argv, "--out", str(scratch)]
        print(f"=== kd_step: {' '.join(cmd[1:])} (at most {left:.0f} s)", flush=True)
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # its own process group: a time-out ends it and any compile workers it started
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        found = sorted(scratch.glob("kd_step_*.json"))
        if rc == 0 and found:
            res = json.loads(found[0].read_text())
            res.update(status="done", wall_s=round(time.perf_counter() - t0, 1), argv=argv)
            write_json(out, res)
            d = res.get("default", {})
            self.rec.step("kd_step", "done", t0, default_img_per_s=d.get("img_per_s"), compile_s=d.get("compile_s"),
                          naive_img_per_s=res.get("naive", {}).get("img_per_s"),
                          speedup=res.get("speedup_default_vs_naive"), parts_skipped=["teacher", "eval"])
            return
        status, why = ("stopped", f"time budget: killed after {left:.0f} s") if rc is None else \
            ("failed", f"exit status {rc} (see the log)")
        self.failed |= status == "failed"
        write_json(out, {"status": status, "reason": why, "argv": argv, "wall_s": round(time.perf_counter() - t0, 1)})
        self.rec.step("kd_step", status, t0, reason=why)


def run(args, clock: Callable[[], float] = time.monotonic, start: Optional[float] = None) -> int:
    """The ``run`` sub-command; returns the exit status (0 complete, 2 incomplete, 1 a step failed)."""
    import torch

    budget = Budget(args.budget_s, reserve_eval_s=args.reserve_eval_s, reserve_bench_s=args.reserve_bench_s,
                    margin_s=args.margin_s, clock=clock, start=start)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve() if args.work else paths.runs_dir() / f"gpu-block-s{args.seed}"
    if args.dry_run:
        device = "cpu"
        packs = paths.resolve(args.packs) if args.packs else dry_packs(work / "dry-packs")
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device; use --dry-run for the CPU check", file=sys.stderr)
            return 1
        device = "cuda"
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions
        packs = paths.resolve(args.packs or "data/packs")
    check_packs(packs)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta = {"seed": args.seed, "dry_run": bool(args.dry_run), "started": started, "budget_s": args.budget_s,
            "startup_s": round(time.monotonic() - T_START, 1),
            "reserves_s": {"eval": args.reserve_eval_s, "bench": args.reserve_bench_s, "margin": args.margin_s},
            "scales": list(SCALES), "eval_modes": list(EVAL_MODES), "students": list(STUDENTS), "work": str(work),
            "env": environment(device, packs)}
    rec = Record(out, meta)
    print(f"gpu_block: seed {args.seed}, {meta['env']['gpu']}, torch {torch.__version__}, budget {args.budget_s:.0f} s, "
          f"packs {packs}, work {work}", flush=True)
    block = Block(args, budget, rec, packs, work, device)
    try:
        t0 = time.perf_counter()
        from lqlib.data import load_pairs

        pairs = load_pairs(packs / "lfw_half.bin", max_pairs=DRY_MAX_PAIRS if args.dry_run and args.packs else 0)
        rec.step("load_pairs", "done", t0, pairs=int(len(pairs.issame)), folds=int(pairs.folds.max()) + 1,
                 pairs_name=pairs.name)
        teacher_cfg = block.config("teacher")
        meta["config"] = {"teacher": _cfg_facts(teacher_cfg), "student": _cfg_facts(block.config("student", "logit"))}
        block.train("teacher", teacher_cfg)
        for method in STUDENTS:
            if method != "none" and "teacher" not in block.finished:
                rec.skip_model(method, "no finished teacher")
                rec.step(f"student:{method}", "skipped", reason="no finished teacher")
                continue
            block.train(method, block.config("student", method))
        block.evaluate(pairs)
        block.kd_bench()
    except Exception as e:  # noqa: BLE001 - whatever happened, write what finished
        traceback.print_exc()
        block.failed = True
        rec.step("block", "failed", reason=f"{type(e).__name__}: {e}")
    try:
        plot(rec.accuracy(), out / "accuracy_vs_scale.png")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        rec.step("plot", "failed", reason=f"{type(e).__name__}: {e}")
    rec.write()
    status = 1 if block.failed else (0 if rec.complete else 2)
    print(f"gpu_block: {'COMPLETE' if status == 0 else 'INCOMPLETE' if status == 2 else 'FAILED STEP(S)'} in "
          f"{time.perf_counter() - rec.t0:.0f} s; files in {out}: {sorted(p.name for p in out.iterdir())}", flush=True)
    return status



# ----------------------------------------------------------------------------------------------- CLI
def main(argv: Optional[list[str]] = None, clock: Callable[[], float] = time.monotonic,
         start: Optional[float] = None) -> int:
    """``start``: the clock reading the budget counts from (the command passes its process start, imports
    included); default the call itself, so an in-process caller (a test, a notebook) gets the whole budget."""
    ap = argparse.ArgumentParser(prog="bench/gpu_block.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train, evaluate and benchmark one block in this process")
    r.add_argument("--out", required=True, help="output folder (≤ 8 files)")
    r.add_argument("--seed", type=int, default=0, help="training seed of this window (teacher and students)")
    r.add_argument("--budget-s", type=float, default=510.0, help="wall seconds for the whole block")
    r.add_argument("--dry-run", action="store_true", help="tiny configuration on the CPU (synthetic packs unless --packs)")
    r.add_argument("--packs", default=None, help="packs folder (default data/packs; the dry run: synthetic)")
    r.add_argument("--work", default=None, help="run folder of the block (default runs/gpu-block-s<seed>)")
    r.add_argument("--reserve-eval-s", type=float, default=None, help="kept from training for evaluation (GPU 60, dry 5)")
    r.add_argument("--reserve-bench-s", type=float, default=None, help="kept from training for kd_step (GPU 60, dry 15)")
    r.add_argument("--margin-s", type=float, default=None, help="kept for writing the outputs (GPU 10, dry 2)")
    r.add_argument("--min-bench-s", type=float, default=None, help="kd_step needs at least this (GPU 30, dry 5)")
    r.add_argument("--eval-batch", type=int, default=None, help="evaluation batch (GPU 256, dry 64)")
    m = sub.add_parser("merge", help="copy a returned block into results/gpu/ and rebuild the tables")
    m.add_argument("block", help="the returned output folder")
    m.add_argument("--results", default=None, help="default results/gpu")
    m.add_argument("--allow-dry-run", action="store_true")
    m.add_argument("--replace", action="store_true", help="overwrite a block folder of the same GPU, date and seed")
    s = sub.add_parser("next-seed", help="print the smallest seed no merged block has")
    s.add_argument("--results", default=None)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            dry = args.dry_run
            for name, gpu_v, dry_v in (("reserve_eval_s", 60.0, 5.0), ("reserve_bench_s", 60.0, 15.0),
                                       ("margin_s", 10.0, 2.0), ("min_bench_s", 30.0, 5.0), ("eval_batch", 256, 64)):
                if getattr(args, name) is None:
                    setattr(args, name, dry_v if dry else gpu_v)
            return run(args, clock, start)
        root = paths.resolve(args.results) if args.results else paths.results_dir() / "gpu"
        if args.cmd == "merge":
            merge(Path(args.block), root, allow_dry_run=args.allow_dry_run, replace=args.replace)
        else:
            print(next_seed(root))
        return 0
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(start=T_START))

