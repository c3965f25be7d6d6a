"""The GPU block's parts that are not its steps: constants, the time budget, the record written after every
step, the machine's facts, the packs, and the accuracy figure (used by ``bench/gpu_block.py`` and its merge,
``bench/gpu_block_merge.py``)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

from lqlib import __version__
from lqlib.io import save_dataframe_csv, write_json
from lqlib.study import Study

ROOT = Path(__file__).resolve().parents[1]

SCALES = (1, 2, 4, 8)
EVAL_MODES = ("both", "cross")
STUDENTS = ("none", "logit", "attention", "logit+attention")
MODELS = ("teacher", *STUDENTS)
OUTPUT_FILES = ("accuracy.csv", "pairs_correct.npz", "timings.json", "accuracy_vs_scale.png", "kd_step.json", "log")
PACK_FILES = ("train.rec", "train.idx", "lfw_half.bin", "lfw_half.folds.json", "manifest.json")
KD_BENCH = ["--backbone", "ir_cbam_100", "--batch", "256", "--skip", "teacher", "eval"]
# The dry run skips ``peak`` too: that part runs on a CPU device only, so the GPU command never runs it, and on a
# CPU without bf16 units its bf16 GEMMs alone took 466 s (2026-12-06, AMD EPYC AVX2) of the dry run's budget.
KD_BENCH_DRY = ["--backbone", "ir_cbam_tiny", "--batch", "8", "--classes", "16", "--steps", "1", "--rounds", "1",
                "--warmup", "1", "--device", "cpu", "--skip", "teacher", "eval", "peak"]
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
                                "--out data/packs` and copy those files to the GPU machine (docs/gpu.md)")


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



def _cfg_facts(cfg) -> dict:
    keys = ("backbone", "epochs", "batch_size", "lr", "schedule", "nesterov", "head_kw", "amp", "compile", "scales",
            "degradation", "data", "max_images", "device", "method", "teacher", "init_head_from_teacher")
    return {k: getattr(cfg, k) for k in keys}
