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
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

T_START = time.monotonic()  # the budget counts from the process start, imports included
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lqlib import __version__, paths  # noqa: E402
from lqlib.io import save_dataframe_csv, write_json, write_text  # noqa: E402
from lqlib.study import Study  # noqa: E402

SCALES = (1, 2, 4, 8)
EVAL_MODES = ("both", "cross")
STUDENTS = ("none", "logit", "attention", "logit+attention")
MODELS = ("teacher", *STUDENTS)
OUTPUT_FILES = ("accuracy.csv", "pairs_correct.npz", "timings.json", "accuracy_vs_scale.png", "kd_step.json", "log")
PACK_FILES = ("train.rec", "train.idx", "lfw_half.bin", "lfw_half.folds.json", "manifest.json")
KD_BENCH = ["--backbone", "ir_cbam_100", "--batch", "256", "--skip", "teacher", "eval"]
KD_BENCH_DRY = ["--backbone", "ir_cbam_tiny", "--batch", "8", "--classes", "16", "--steps", "1", "--rounds", "1",
                "--warmup", "1", "--device", "cpu", "--skip", "teacher", "eval"]
DRY_TRAIN = dict(backbone="ir_cbam_tiny", batch_size=16, device="cpu", num_workers=0)
DRY_EPOCHS = {"teacher": 2, "student": 1}
DRY_MAX_IMAGES = 256       # a --dry-run on the real packs trains on a class-balanced subset
DRY_MAX_PAIRS = 100        # ... and evaluates a fold-balanced subset of the pairs


# ----------------------------------------------------------------------------------------------- budget
class Budget:
    """Seconds left for each phase of the block, from one clock.

    Training may run until the evaluation and benchmark reserves (and the writing margin) are all
    that is left; evaluation may use the benchmark's reserve too; the benchmark gets the rest."""

    def __init__(self, total_s: float, *, reserve_eval_s: float, reserve_bench_s: float, margin_s: float,
                 clock: Callable[[], float] = time.monotonic, start: Optional[float] = None):
        self.clock = clock
        self.total_s = float(total_s)
        self.end = (clock() if start is None else start) + self.total_s
        self.reserve = {"train": reserve_eval_s + reserve_bench_s + margin_s, "eval": margin_s, "bench": margin_s}

    def left(self, phase: str) -> float:
        return self.end - self.reserve[phase] - self.clock()


def guard(budget: Budget, name: str, log=print):
    """Training callback: stop cleanly (checkpoint, ``TrainingInterrupted``) when the training time is
    spent; one log line per finished epoch."""
    def callback(trainer, epoch: int, done: int, step: int):
        left = budget.left("train")
        if left <= 0 and not trainer._stop:
            log(f"{name}: time budget for training spent at epoch {epoch + 1} batch {done}: stopping")
            trainer.request_stop()
        if done == trainer.steps_per_epoch:
            parts = {k: round(float(v.detach()), 3) for k, v in getattr(trainer, "last_parts", {}).items()}
            log(f"{name}: epoch {epoch + 1}/{trainer.cfg.epochs} done (step {step}), last batch {parts}, "
                f"{left:.0f} s of training time left")
    return callback


# ----------------------------------------------------------------------------------------------- record
class Record:
    """What the block did, written to the output folder after every step (a killed run leaves valid files)."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        self.meta = meta
        self.steps: list[dict] = []
        self.frames: list = []          # evaluation frames of finished models
        self.skipped_models: dict[str, str] = {}
        self.correct: dict = {}         # npz key → per-pair correctness
        self.t0 = time.perf_counter()

    def step(self, name: str, status: str, t_start: Optional[float] = None, **info) -> dict:
        row = {"step": name, "status": status}
        if t_start is not None:
            row["wall_s"] = round(time.perf_counter() - t_start, 1)
        row.update(info)
        self.steps.append(row)
        print(f"[block {time.perf_counter() - self.t0:6.0f} s] {name}: {status}"
              + (f" ({row['wall_s']} s)" if "wall_s" in row else "")
              + (f" — {info['reason']}" if "reason" in info else ""), flush=True)
        self.write()
        return row

    def skip_model(self, key: str, reason: str) -> None:
        self.skipped_models.setdefault(key, reason)

    @property
    def complete(self) -> bool:
        return all(s["status"] in ("done", "reused") for s in self.steps)

    def accuracy(self):
        import pandas as pd

        from lqlib.model_key import ModelKey

        rows = [pd.DataFrame([{"model": ModelKey.parse(k).display_name, **ModelKey.parse(k).columns(),
                               "seed": self.meta["seed"], "status": f"skipped: {why}"}])
                for k, why in self.skipped_models.items()]
        df = pd.concat([*self.frames, *rows], ignore_index=True) if (self.frames or rows) else \
            pd.DataFrame(columns=["model", "model_key", "method", "teacher", "seed", "eval_mode", "scale", "acc_mean",
                                  "status"])
        return df

    def write(self) -> None:
        import numpy as np

        from lqlib.io import atomic_write

        self.out.mkdir(parents=True, exist_ok=True)
        save_dataframe_csv(self.accuracy(), self.out / "accuracy.csv", index=False)
        if self.correct:
            with atomic_write(self.out / "pairs_correct.npz", "wb") as f:
                np.savez_compressed(f, **self.correct)
        skipped = [f"{s['step']}: {s['status']} — {s.get('reason', '')}".rstrip(" —")
                   for s in self.steps if s["status"] not in ("done", "reused")]
        write_json(self.out / "timings.json", {
            **self.meta, "wall_s": round(time.perf_counter() - self.t0, 1), "complete": self.complete,
            "skipped": skipped, "steps": self.steps})


# ----------------------------------------------------------------------------------------------- set-up
class BlockStudy(Study):
    """A :class:`lqlib.study.Study` rooted at the block's work folder (same layout: teacher/, students/)."""

    def __init__(self, name: str, work: Path):
        super().__init__(name)
        self.work = Path(work)

    @property
    def root(self) -> Path:
        return self.work


def dry_packs(folder: Path) -> Path:
    """Tiny synthetic stand-ins for the packs (train.rec/.idx, lfw_half.bin with 5 folds, manifest):
    the dry run reads them through the same loaders as the real ones."""
    import torch

    from lqlib.data import write_bin, write_rec
    from lqlib.data.synthetic import SyntheticFaces

    if (folder / "manifest.json").is_file():
        return folder
    train = SyntheticFaces(num_classes=16, images_per_class=4, seed=0)
    write_rec(folder / "train.rec", folder / "train.idx", (train[i] for i in range(len(train))))
    n = 50
    images, issame = SyntheticFaces(num_classes=12, images_per_class=4, seed=99).pairs(n)
    write_bin(folder / "lfw_half.bin", images, issame, folds=torch.arange(n) * 5 // n)
    write_json(folder / "manifest.json", {"split": "dry-run", "dry_run": True,
                                          "train": {"images": len(train), "identities": train.num_classes},
                                          "eval": {"lfw_half": {"pairs": n, "folds": 5}}})
    return folder


def check_packs(packs: Path) -> None:
    missing = [f for f in PACK_FILES if not (packs / f).is_file()]
    if missing:
        raise FileNotFoundError(f"packs folder {packs} lacks {missing}: build it with `python -m lqlib.data prepare "
                                "--out data/packs` and send those files with the command (README, GPU block)")


def environment(device: str, packs: Path) -> dict:
    import torch

    env = {"gpu": "cpu", "device": device, "torch": torch.__version__, "python": platform.python_version(),
           "lqlib": __version__, "host": platform.node(), "cpu_count": os.cpu_count(),
           "threads": torch.get_num_threads(), "git_commit": _git_commit(),
           "LQLIB_COMPILE": os.environ.get("LQLIB_COMPILE", ""), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   cudnn_benchmark=torch.backends.cudnn.benchmark, driver=_nvidia_smi("driver_version"))
    m = json.loads((packs / "manifest.json").read_text())
    env["packs"] = {"folder": str(packs), "split": m.get("split"), "quality": m.get("quality"),
                    "transfer_mb": m.get("transfer_mb"), "created": m.get("created"),
                    "train_images": m.get("train", {}).get("images"),
                    "train_identities": m.get("train", {}).get("identities"),
                    "fingerprint": m.get("source", {}).get("fingerprint")}
    return env


def _git_commit() -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia_smi(field: str) -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------------------------- training
def _same_config(cfg) -> bool:
    """The finished run in ``cfg.run_dir`` was trained with ``cfg`` (up to what a resume may change)."""
    from lqlib.checkpoint import load_checkpoint
    from lqlib.train import RESUMABLE_CHANGES

    saved, mine = load_checkpoint(cfg.run_dir)["config"], cfg.to_dict()
    return all(saved.get(k) == v for k, v in mine.items() if k not in RESUMABLE_CHANGES)


def run_summary(summary: dict, run_dir: Path) -> dict:
    """Per-run timing facts: engine, compile seconds, steady seconds per epoch, images/s."""
    import csv

    rows = []
    if (run_dir / "metrics.csv").is_file():
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    secs = sorted(float(r["seconds"]) for r in rows)
    ips = sorted(float(r["img_per_s"]) for r in rows)
    eng = summary.get("engine", {}) if summary else {}
    return {"epochs_done": len(rows), "s_per_epoch": secs[len(secs) // 2] if secs else None,
            "first_epoch_s": float(rows[0]["seconds"]) if rows else None,
            "img_per_s": ips[len(ips) // 2] if ips else None, "engine": eng.get("engine"),
            "compile_s": eng.get("compile_s"), "step_ms": eng.get("step_ms"),
            "final_loss": float(rows[-1]["loss"]) if rows else None}


class Block:
    def __init__(self, args, budget: Budget, record: Record, packs: Path, work: Path, device: str):
        self.args, self.budget, self.rec, self.packs, self.work, self.device = args, budget, record, packs, work, device
        self.study = BlockStudy(f"gpu-block-s{args.seed}", work)
        self.finished: dict[str, Path] = {}   # model key → run dir
        self.rate: dict[str, float] = {}       # role → steady seconds per epoch
        self.compile_s: dict[str, float] = {}  # role → compile seconds of its last run
        self.failed = False

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
    def evaluate(self, pairs) -> None:
        import torch

        from lqlib.checkpoint import load_checkpoint
        from lqlib.data.sources import leaks
        from lqlib.evaluation import evaluate
        from lqlib.models import build_backbone
        from lqlib.model_key import ModelKey

        shared: dict[str, torch.nn.Module] = {}
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
                ck = load_checkpoint(self.finished[key])
                split = ck.get("split", "unknown")
                if leaks(split, pairs.name):
                    raise ValueError(f"{key} was trained on {split!r}, which shares identities with {pairs.name!r}")
                arch = json.dumps([ck["backbone_name"], ck.get("backbone_kw", {})], sort_keys=True)
                if arch not in shared:  # one module per architecture: its evaluation graph compiles once
                    net = build_backbone(ck["backbone_name"], **ck.get("backbone_kw", {}))
                    shared[arch] = net.to(self.device, memory_format=torch.channels_last).eval()
                net = shared[arch]
                net.load_state_dict(ck["model"])
                df, details = evaluate(net, pairs, scales=SCALES, eval_mode="+".join(EVAL_MODES), device=self.device,
                                       batch_size=self.args.eval_batch, return_details=True)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                self.failed = True
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                self.rec.skip_model(key, f"evaluation failed ({reason})")
                self.rec.step(step, "failed", t0, reason=reason)
                continue
            df = df.rename(columns={"seed": "eval_seed"})
            mk = ModelKey.parse(key)
            for i, (col, value) in enumerate({"model": mk.display_name, **mk.columns(), "seed": self.args.seed}.items()):
                df.insert(i, col, value)
            df["status"] = "ok"
            self.rec.frames.append(df)
            for (mode, scale), correct in details.items():
                self.rec.correct[f"{mk.file_name}__{mode}__x{float(scale):g}"] = correct
            last = time.perf_counter() - t0
            acc = df.set_index(["eval_mode", "scale"])["acc_mean"]
            self.rec.step(step, "done", t0, acc_both={f"x{s:g}": round(float(acc[("both", s)]), 2) for s in SCALES})

    # ---- the KD step benchmark
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


def plot(df, path: Path) -> None:
    """Accuracy against scale, one panel per eval mode (mean ± sd over seeds when there are several)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lqlib import plotting

    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty:
        return
    plotting.set_style()
    modes = [m for m in EVAL_MODES if m in set(ok["eval_mode"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        plotting.accuracy_vs_scale(ok, eval_mode=mode, ax=ax, title=f"{mode} (lfw-half)")
    fig.tight_layout()
    plotting.save_figure(fig, path.stem, path.parent, formats=("png",))
    plt.close(fig)


def run(args, clock: Callable[[], float] = time.monotonic) -> int:
    """The ``run`` sub-command; returns the exit status (0 complete, 2 incomplete, 1 a step failed)."""
    import torch

    budget = Budget(args.budget_s, reserve_eval_s=args.reserve_eval_s, reserve_bench_s=args.reserve_bench_s,
                    margin_s=args.margin_s, clock=clock, start=T_START if clock is time.monotonic else None)
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


def _cfg_facts(cfg) -> dict:
    keys = ("backbone", "epochs", "batch_size", "lr", "schedule", "nesterov", "head_kw", "amp", "compile", "scales",
            "degradation", "data", "max_images", "device", "method", "teacher", "init_head_from_teacher")
    return {k: getattr(cfg, k) for k in keys}


# ----------------------------------------------------------------------------------------------- merge
def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-") or "x"


def block_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if (d / "timings.json").is_file()) if root.is_dir() else []


def merge(src: Path, root: Path, *, allow_dry_run: bool = False, replace: bool = False) -> Path:
    """Copy the returned block ``src`` into ``root/<gpu>_<date>_s<seed>/`` and rebuild the tables."""
    t = json.loads((src / "timings.json").read_text())
    if t.get("dry_run") and not allow_dry_run:
        raise ValueError(f"{src} is a dry run (CPU, tiny configuration): not merged into {root} "
                         "(pass --allow-dry-run to merge it anyway, e.g. into a scratch --results folder)")
    name = "_".join(slug(v) for v in (t["env"]["gpu"], t["started"][:10], f"s{t['seed']}"))
    dst = root / name
    for d in block_dirs(root):
        other = json.loads((d / "timings.json").read_text())
        if d != dst and int(other["seed"]) == int(t["seed"]):
            raise ValueError(f"seed {t['seed']} is already merged in {d.name}; seeds must differ between blocks "
                             f"(next unused seed: {next_seed(root)})")
    if dst.exists():
        if not replace:
            raise FileExistsError(f"{dst} exists (the same GPU, date and seed); pass --replace to overwrite it")
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    copied = []
    for f in OUTPUT_FILES:
        if (src / f).is_file():
            shutil.copyfile(src / f, dst / f)
            copied.append(f)
    others = sorted(p.name for p in src.iterdir() if p.is_file() and p.name not in OUTPUT_FILES)
    print(f"merge: {src} → {dst} ({', '.join(copied)})" + (f"; not copied: {others}" if others else ""))
    rebuild(root)
    return dst


def next_seed(root: Path) -> int:
    used = {int(json.loads((d / "timings.json").read_text())["seed"]) for d in block_dirs(root)}
    return next(s for s in range(len(used) + 1) if s not in used)


def rebuild(root: Path) -> list[Path]:
    """``accuracy_all.csv``, ``tables.md`` and ``accuracy_vs_scale.png`` over every block folder in ``root``."""
    import numpy as np
    import pandas as pd

    from lqlib.evaluation import compare_to_baseline, paper_table, to_markdown
    from lqlib.model_key import ModelKey
    from lqlib.study import key_columns

    blocks, frames = [], []
    for d in block_dirs(root):
        t = json.loads((d / "timings.json").read_text())
        blocks.append({"block": d.name, "GPU": t["env"]["gpu"], "date": t["started"][:10], "seed": t["seed"],
                       "wall s": t.get("wall_s"), "complete": t.get("complete"),
                       "not done": "; ".join(t.get("skipped", [])) or "—", "dir": d})
        if (d / "accuracy.csv").is_file():
            df = key_columns(pd.read_csv(d / "accuracy.csv"))  # blocks written before the key had its columns
            df = df[df["status"] == "ok"].copy()
            df.insert(0, "block", d.name)
            frames.append(df)
    if not blocks:
        raise FileNotFoundError(f"no block folders under {root}")
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    written = [save_dataframe_csv(results, root / "accuracy_all.csv", index=False)]
    seeds = sorted(int(s) for s in results["seed"].unique()) if len(results) else []
    correct = {}  # (model slug, seed, eval mode, scale) → per-pair correctness, for the pair-level test
    for b in blocks:
        if (b["dir"] / "pairs_correct.npz").is_file():
            with np.load(b["dir"] / "pairs_correct.npz") as z:
                for k in z.files:
                    slug_, mode, scale = k.split("__")
                    correct[(slug_, int(b["seed"]), mode, float(scale[1:]))] = z[k]
    pair_correct = lambda mode: lambda m, seed, sc: correct.get((ModelKey.parse(m).file_name, int(seed), mode, float(sc)))  # noqa: E731

    table = pd.DataFrame([{k: v for k, v in b.items() if k != "dir"} for b in blocks])
    md = ["# GPU blocks: lfw-half, IR-CBAM-18 (gpu recipe), accuracy (%)\n",
          "Rebuilt by `python bench/gpu_block.py merge` from every block folder here (one per GPU window); "
          "do not edit by hand.\n",
          f"{len(blocks)} block(s), seeds {seeds}. ± = std over training seeds (ddof 1), `n seeds` = how many; "
          "`fold sd` = mean over seeds of the 5-fold std (pair noise), per scale.\n",
          to_markdown(table, index=False)]
    for mode in EVAL_MODES:
        if len(results) and mode in set(results["eval_mode"]):
            md.append(f"## {mode}\n\n{to_markdown(paper_table(results, mode))}")
    if len(seeds) >= 2 and "none" in set(results["model_key"]):
        for mode in EVAL_MODES:
            cmp = compare_to_baseline(results, "none", (4, 8), mode, pair_correct(mode))
            if len(cmp):
                cols = [c for c in ("model", "scale", "n", "acc", "baseline_acc", "delta", "delta_sd", "t", "p",
                                    "p_holm", "significant", "pair_boot_p_max") if c in cmp.columns]
                md.append(f"## {mode}: vs BasicNet-LR across seeds (paired t over seeds, Holm over the table; "
                          f"pair_boot_p_max: pair noise only)\n\n{to_markdown(cmp[cols], index=False)}")
    else:
        md.append("## vs BasicNet-LR\n\nFewer than 2 seeds: no test across seeds yet (each window adds one seed).\n")
    written.append(write_text(root / "tables.md", "\n".join(md)))
    if len(results):
        plot(results, root / "accuracy_vs_scale.png")
        written.append(root / "accuracy_vs_scale.png")
    print(f"merge: rebuilt {', '.join(p.name for p in written)} from {len(blocks)} block(s), seeds {seeds}")
    return written


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: Optional[list[str]] = None, clock: Callable[[], float] = time.monotonic) -> int:
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
            return run(args, clock)
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
    sys.exit(main())
