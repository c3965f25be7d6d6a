"""The checkpointing seam of :class:`lqlib.train.Trainer`: the state it saves every epoch and on a stop (models,
optimiser, schedule, random streams of every rank, the epoch record), its restore, and a resume with other settings
moved aside (``<run dir>.old-<time>``).
"""
from __future__ import annotations

import sys
import time
from typing import Optional

import torch
import torch.distributed as dist

from .callbacks import LossSums
from .checkpoint import load_checkpoint, same_teacher, save_checkpoint
from .config import TrainConfig
from .data.sampling import step_seed
from .models.interface import unwrap

# config keys that may change between a run and its resume
RESUMABLE_CHANGES = ("resume", "progress", "num_workers", "log_every", "device", "compile", "recipe")


class TrainerState:
    """:meth:`_save` / :meth:`_restore` of a :class:`~lqlib.train.Trainer` (its distiller, optimiser and record built)."""

    def _state(self, epoch: int, batch_in_epoch: int, step: int, gen: torch.Generator, sums: dict) -> dict:
        rng = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        d = self.distiller
        return {
            "model": unwrap(d.student).state_dict(), "head": d.head.state_dict(), "kd": d.composer.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "epoch": epoch,
            "batch_in_epoch": batch_in_epoch, "step": step, "rng": rng,
            "epoch_sums": {k: float(v) for k, v in sums.items()}, "config": self.cfg.to_dict(),
            "num_classes": self.num_classes, "backbone_name": self.backbone_name, "backbone_kw": self.backbone_kw,
            "head_name": self.head_name, "split": self.split, "teacher_id": self.teacher_id,
            **self.record.state(),
        }

    def _save(self, epoch: int, batch_in_epoch: int, step: int, gen: torch.Generator, sums: dict):
        """Rank 0 writes the checkpoint; under DDP it holds every rank's step generator (a collective:
        every rank saves at the same steps), so a resumed rank continues its own stream."""
        gens = None
        if self.distributed:
            gens = [None] * self.world
            dist.all_gather_object(gens, gen.get_state().cpu())
        if self.is_main:
            state = self._state(epoch, batch_in_epoch, step, gen, sums)
            if gens is not None:
                state["rng"]["gen_ranks"] = gens
            save_checkpoint(state, self.run_dir)

    def _epoch_streams(self, epoch: int, ck: Optional[dict], names: list) -> tuple:
        """(step generator, loss sums) of ``epoch``: fresh, from (seed, epoch, rank), or — resuming mid-epoch from
        checkpoint ``ck`` — this rank's saved stream (else its fresh seed) and the epoch's sums so far."""
        cfg = self.cfg
        gen = torch.Generator(device=self.device).manual_seed(step_seed(cfg.seed, epoch, self.rank))
        if ck is not None:
            states = ck["rng"].get("gen_ranks") or [ck["rng"]["gen"]]
            if self.rank < len(states):  # this rank's own stream (else: its fresh seed)
                gen.set_state(states[self.rank])
            return gen, LossSums(names, self.device, ck["epoch_sums"], self.distributed)
        torch.manual_seed(step_seed(cfg.seed, epoch))
        return gen, LossSums(names, self.device, None, self.distributed)

    def _restore(self) -> Optional[dict]:
        ck_path = self.run_dir / "checkpoint.pt"
        if not (self.cfg.resume and ck_path.is_file()):
            return None
        ck = load_checkpoint(ck_path, map_location="cpu")
        saved, mine = TrainConfig.upgrade(ck["config"]), self.cfg.to_dict()
        default = TrainConfig().to_dict()  # a field added since the checkpoint was written: its default
        changed = {k: (saved.get(k, default[k]), mine[k]) for k in mine
                   if k not in RESUMABLE_CHANGES and saved.get(k, default[k]) != mine[k]}
        if ck.get("teacher_id") is not None and ck["teacher_id"] != self.teacher_id and \
                not same_teacher(ck["teacher_id"], self.plan.teacher):  # (older checkpoints: none)
            changed["teacher weights"] = (ck["teacher_id"], self.teacher_id)
        if changed:
            self._move_aside(changed)
            return None
        d = self.distiller
        unwrap(d.student).load_state_dict(ck["model"])
        d.head.load_state_dict(ck["head"])
        d.composer.load_state_dict(ck["kd"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"]["torch"])
        self.record.load_state(ck)
        if ck["rng"].get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(ck["rng"]["cuda"], self.device)
        return ck

    def _move_aside(self, changed: dict):
        """A resume whose settings differ from the checkpoint's: keep the old run, next to the new one, as
        ``<run dir>.old-<time>``, say what changed, and train from scratch (nothing is lost, no traceback)."""
        old = self.run_dir.with_name(f"{self.run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        what = "; ".join(f"{k}: {a!r} → {b!r}" for k, a, b in ((k, *v) for k, v in sorted(changed.items())))
        if self.is_main:
            base, n = old, 1
            while old.exists():
                old, n = base.with_name(f"{base.name}-{n}"), n + 1
            self.run_dir.rename(old)
            print(f"NOTICE: {self.run_dir} was trained with other settings ({what}); moved it to {old} and "
                  "training again from scratch (delete the old folder when you no longer need it)",
                  file=sys.stderr, flush=True)
        if self.distributed:
            dist.barrier()
