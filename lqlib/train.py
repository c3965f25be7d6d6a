"""One training loop for the HR teacher and every low-quality student.

``train_teacher(cfg)`` trains a backbone + margin head on high-resolution faces (the paper's
BasicNet-HR). ``train_student(cfg, teacher=run_dir)`` trains a student on degraded copies of each
batch while the frozen teacher sees the originals; ``cfg.method`` (:mod:`lqlib.methods`) picks the KD
terms. What one step computes is the :class:`~lqlib.distiller.Distiller`'s business; the run's settings are its
plan's (:mod:`lqlib.training_plan`, written as ``plan.json`` before the first step), the set-up is
:mod:`lqlib.train_build` and the checkpoints :mod:`lqlib.train_state`; this module only loops: sampler →
distiller → backward → optimizer, with

* resumable, atomic checkpoints every epoch and on SIGTERM/SIGINT (resume continues exactly,
  mid-epoch too: the sampler order and the step generator are functions of (seed, epoch, rank),
  restored to the saved position); a resume with a different config (epochs included) or a retrained
  teacher moves the old run aside (``<run dir>.old-<time>``, saying what changed) and starts over;
* a NaN/inf guard naming the term, and a guard against degenerate problems (one class; a first-epoch
  CE of exactly 0); under DDP a NaN or a stop on any rank stops every rank at the same step (one
  ``all_reduce`` carries both), and the checkpoint keeps every rank's step generator;
* ``metrics.csv`` per epoch and ``summary.json`` at the end (:mod:`lqlib.callbacks`); the training
  split and a content fingerprint of the training faces (``training_data.json``, ``train_images.npy``)
  from the start, for the evaluations' leakage guard;
* the engine: bf16 autocast where the hardware has it (:mod:`lqlib.precision`), channels_last,
  optional ``torch.compile`` (:mod:`lqlib.engine`), DDP under ``torchrun`` (rank 0 writes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from .callbacks import DegenerateTrainingError, EpochRecord, LossSums, NonFiniteLossError, write_summary  # noqa: F401 (NonFiniteLossError: public here too)
from .checkpoint import is_finished, write_training_data  # noqa: F401 (is_finished: public here too)
from .config import TrainConfig, load_config, parse_overrides
from .data.memory import batch_stream
from .errors import command
from .io import write_json
from .losses import Progress
from .models.interface import unwrap
from .precision import autocast, autocast_dtype
from .runtime import stop_on_signals
from .train_build import TrainerBuild, sgd  # noqa: F401  (train.sgd: public)
from .train_state import RESUMABLE_CHANGES, TrainerState  # noqa: F401  (train.RESUMABLE_CHANGES: public)
from .training_plan import TrainingPlan, plan_training


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT (or ``request_stop``) stopped training after a checkpoint was written."""


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def _resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


class Trainer(TrainerBuild, TrainerState):
    """Runs one training job; see the module docstring. Use :func:`train` in normal code."""

    def __init__(self, plan: TrainingPlan | TrainConfig, teacher: Any = None,
                 callbacks: Optional[list[Callable]] = None):
        # the run's settings, KD terms and teacher, resolved and checked once (lqlib.training_plan)
        self.plan = plan if isinstance(plan, TrainingPlan) else plan_training(plan, teacher)
        self.cfg = cfg = self.plan.config
        self.callbacks = list(callbacks or [])
        self._stop = False
        self.rank, self.world, local = _dist_info()
        self.distributed = "WORLD_SIZE" in os.environ and "RANK" in os.environ  # launched by torchrun
        self.is_main = self.rank == 0
        self.device = _resolve_device(cfg, local)
        if self.distributed and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.amp_dtype = autocast_dtype(self.device.type, cfg.amp)
        self.channels_last = True if cfg.channels_last == "auto" else bool(cfg.channels_last)
        self.run_dir = cfg.run_dir
        self.method = self.plan.method
        self._teacher_arg = teacher if teacher is not None else self.plan.teacher
        # the teacher by content (a retrained teacher is another one: a resume against it starts over)
        self.teacher_id = self.plan.teacher_id
        self._steps_this_call = 0      # steps this call trained (a finished run resumed trains none)
        # per epoch: progress bar, metrics.csv, validation, the stopping rule (lqlib.callbacks)
        self.record = EpochRecord(cfg, self.run_dir, self.is_main, self.distributed)

    # ---- signals
    def request_stop(self):
        """Ask the loop to checkpoint and stop after the current step (what SIGTERM/SIGINT do)."""
        self._stop = True

    # ---- the loop
    def fit(self) -> dict:
        cfg = self.cfg
        self._build()
        ck = self._restore()
        start_epoch = ck["epoch"] if ck else 0
        start_batch = ck["batch_in_epoch"] if ck else 0
        step = ck["step"] if ck else 0
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", cfg.to_dict())
            self.plan.save(self.run_dir)
            write_training_data(self.run_dir, self.split, self.fingerprint)
        self.record.start(start_epoch)
        names = self.distiller.composer.part_names
        t_run = time.time()
        with stop_on_signals(self.request_stop, lambda: self._stop):
            for epoch in range(start_epoch, cfg.epochs):
                if self.record.stopped:
                    break  # a resumed run that had already met its stopping rule
                b0 = start_batch if epoch == start_epoch else 0
                gen, losses = self._epoch_streams(epoch, ck if epoch == start_epoch and b0 > 0 else None, names)
                sums = losses.sums
                self.sampler.set_epoch(epoch, b0 * cfg.batch_size)
                self.model.train()
                t0, n_img = time.time(), 0
                bar = self.record.bar(epoch, b0, self.steps_per_epoch)
                done = b0
                batches = batch_stream(self.dataset, list(self.sampler), cfg.batch_size,
                                       num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda")
                for images, labels, index in batches:
                    if done >= self.steps_per_epoch:
                        break
                    progress = Progress(epoch, step, epoch + done / self.steps_per_epoch)
                    total, parts = self._step(images, labels, gen, progress, index)
                    self.last_parts = parts
                    losses.add(total, parts, step)
                    step += 1
                    done += 1
                    n_img += images.shape[0] * self.world
                    for cb in self.callbacks:
                        cb(self, epoch, done, step)
                    sync = self.device.type == "cpu" or step % cfg.log_every == 0
                    # one check (under DDP: one collective, on every rank at the same steps) for NaN and stop;
                    # a single process stops at once, DDP ranks at the next synced step, all together
                    stop = self._check_finite(losses, epoch) if sync or (
                        self._stop and not self.distributed) else False
                    self.record.show(bar, sums, done, n_img, t0, sync)
                    if stop:
                        self._save(epoch, done, step, gen, sums)
                        if bar is not None:
                            bar.close()
                        raise TrainingInterrupted(f"training stopped at epoch {epoch} batch {done}; checkpoint "
                                                  f"{self.run_dir / 'checkpoint.pt'} (resume=True continues)")
                if bar is not None:
                    bar.close()
                stop = self._check_finite(losses, epoch)  # a stop asked for between synced steps
                losses.check_learning(epoch, self.num_classes, len(self.dataset))
                row = self.record.end_epoch(epoch, step, self.optimizer.param_groups[0]["lr"], sums, done,
                                            time.time() - t0, n_img, unwrap(self.distiller.student), self.device)
                self._save(epoch + 1, 0, step, gen, {})
                self.record.append(row)
                ck = None
                if self.record.stopped:
                    break
                if stop and epoch + 1 < cfg.epochs:
                    raise TrainingInterrupted(f"training stopped after epoch {epoch + 1}; checkpoint "
                                              f"{self.run_dir / 'checkpoint.pt'} (resume=True continues)")
        summary = self._summary(time.time() - t_run)
        if self.distributed:
            dist.barrier()
        return summary

    def engine_report(self) -> dict:
        """Compiled or eager (and why), compile seconds, and the probed step times."""
        return self.probe.report()

    def _engine_of_the_run(self) -> dict:
        """This call's engine report; for a call that trained no step (a finished run resumed), the engine the
        earlier call recorded in ``summary.json`` — the one the run trained with."""
        report = self.engine_report()
        earlier = self.run_dir / "summary.json"
        if not self._steps_this_call and self.is_main and earlier.is_file():
            try:
                before = json.loads(earlier.read_text()).get("engine") or {}
            except ValueError:
                before = {}
            if before.get("engine") not in (None, "probing"):
                return before
        return report

    def _step(self, images, labels, gen, progress, index=None):
        self._steps_this_call += 1
        t0 = time.perf_counter() if self.probe.active else 0.0
        hr = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with autocast(self.device.type, self.amp_dtype):
            total, parts = self.model(hr, labels, gen, progress, index)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_([p for p in self.distiller.parameters() if p.requires_grad], self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.probe.active:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            total.item()  # the step's work is done when its loss is
            self.probe.observe(time.perf_counter() - t0)
        return total, parts

    def _check_finite(self, losses: LossSums, epoch: int) -> bool:
        """The NaN/inf guard (:meth:`LossSums.check`); under DDP a stop on any rank becomes every rank's."""
        stop = losses.check(epoch, self._stop, self.run_dir / "checkpoint.pt")
        self._stop = self._stop or (stop and self.distributed)
        return stop

    def _summary(self, seconds: float) -> dict:
        rows = self.record.metrics.read() if self.is_main else []
        summary = {
            "name": self.cfg.name, "role": self.cfg.role,
            "method": self.cfg.method if self.cfg.role == "student" else "teacher",
            "backbone": self.backbone_name, "head": self.head_name, "num_classes": self.num_classes,
            "num_images": len(self.dataset), "split": self.split, "epochs": self.cfg.epochs,
            "steps_per_epoch": self.steps_per_epoch, "final": rows[-1] if rows else {},
            "seconds_this_call": round(seconds, 2), "device": str(self.device), "world_size": self.world,
            "torch": torch.__version__, "amp": str(self.amp_dtype), "engine": self._engine_of_the_run(),
            "effective_ce_weight": self.distiller.composer.effective_ce_weight, "run_dir": str(self.run_dir),
            "teacher_id": self.teacher_id,
        }
        summary.update(self.record.summary(self.cfg.val_pairs, self.cfg.epochs))
        if torch.cuda.is_available() and self.device.type == "cuda":
            summary["gpu"] = torch.cuda.get_device_name(self.device)
        if self.is_main:
            write_summary(self.run_dir, summary)
        return summary


Plan = TrainingPlan | TrainConfig | dict


def train(plan: Plan, teacher: Any = None, callbacks: Optional[list[Callable]] = None) -> dict:
    """Train per ``plan`` (a :class:`~lqlib.training_plan.TrainingPlan`, or a config it is made from); returns
    the summary dict (also written to ``<run_dir>/summary.json``)."""
    if isinstance(plan, dict):
        plan = TrainConfig.from_dict(plan)
    return Trainer(plan, teacher, callbacks).fit()


def _as_role(plan: Plan, role: str) -> TrainingPlan | TrainConfig:
    """``plan`` for ``role``: a plan of that role as it is, anything else as a config of that role."""
    if isinstance(plan, TrainingPlan):
        if plan.config.role == role:
            return plan
        plan = plan.config
    cfg = TrainConfig.from_dict(plan) if isinstance(plan, dict) else plan
    return dataclasses.replace(cfg, role=role)


def train_teacher(plan: Plan, **kw) -> dict:
    return train(_as_role(plan, "teacher"), **kw)


def train_student(plan: Plan, teacher: Any = None, **kw) -> dict:
    return train(_as_role(plan, "student"), teacher=teacher, **kw)


@command(ValueError, TypeError, FileNotFoundError)  # a bad --set value or config file: the user's to fix
def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lqlib.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML file with TrainConfig fields")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields (YAML values)")
    ap.add_argument("--teacher", help="teacher run directory (students)")
    args = ap.parse_args(argv)
    try:
        over = parse_overrides(args.set)
        cfg = load_config(args.config, **over) if args.config else TrainConfig.from_dict(over)
        summary = train(cfg, teacher=args.teacher)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
