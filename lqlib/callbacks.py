"""What the training loop reports (arcface_torch's ``utils_callbacks``): per-epoch metrics, the run
summary, and the validation curve.

* :class:`MetricsLog` — ``metrics.csv`` in the run directory, one row per finished epoch (columns
  grow as new keys appear; rewritten atomically; truncated to the resumed epoch on a resume);
* :class:`Validation` — optional accuracy on a pair set at a few scales after every epoch (curves
  only; never used to select anything);
* :class:`EpochRecord` — what :class:`lqlib.train.Trainer` records and shows around its epochs: the
  progress bar, the metrics row (lr, mean of every loss term, validation accuracies, seconds, images/s)
  appended to ``metrics.csv``, and the stopping rule's decision over the validation history (kept in
  checkpoints, so a resumed run decides the same);
* :class:`LossSums` — an epoch's running sum of every loss term and the NaN/inf guard naming the term
  (:class:`NonFiniteLossError`), and the first-epoch check against a degenerate problem
  (:class:`DegenerateTrainingError`);
* :func:`write_summary` — ``summary.json`` at the end of a run.
"""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .convergence import ConvergenceRule
from .data import load_pairs
from .data.sources import eval_role
from .errors import LqlibError
from .evaluation import evaluate, scale_label
from .io import write_json, write_text


class MetricsLog:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.csv"

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def write(self, rows: list[dict]) -> None:
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
        write_text(self.path, buf.getvalue())

    def truncate(self, epochs_done: int, keep: bool = True) -> None:
        """Drop rows past ``epochs_done`` (a resume), or every row (``keep=False``: a fresh start)."""
        rows = self.read()
        kept = [r for r in rows if int(r["epoch"]) <= epochs_done] if keep else []
        if len(kept) != len(rows):
            self.write(kept)

    def append(self, row: dict) -> None:
        self.write(self.read() + [row])


class Validation:
    """Accuracy on ``pairs`` (a split name or .bin) at ``scales``, both images degraded."""

    def __init__(self, pairs: str, scales: Sequence[float]):
        self.spec, self.scales = pairs, tuple(scales)
        self._pairs = None

    def __call__(self, backbone: torch.nn.Module, device) -> dict:
        if self._pairs is None:
            self._pairs = load_pairs(self.spec)
        df = evaluate(backbone, self._pairs, scales=self.scales, eval_mode="both", device=device)
        return {f"val_acc_{scale_label(r.scale).replace('×', 'x')}": round(float(r.acc_mean), 3)
                for r in df.itertuples()}


class EpochRecord:
    """The per-epoch record of one run (see the module docstring). ``is_main``: this process writes
    (rank 0 under DDP); ``distributed``: the stopping decision is rank 0's, broadcast to every rank (ranks'
    BN statistics, and so their validation scores, differ)."""

    def __init__(self, cfg, run_dir: Path, is_main: bool = True, distributed: bool = False):
        self.cfg, self.is_main, self.distributed = cfg, is_main, distributed
        self.metrics = MetricsLog(run_dir)
        self.validation = Validation(cfg.val_pairs, cfg.val_scales) if cfg.val_pairs else None
        self.convergence = ConvergenceRule.from_dict(cfg.early_stop) if cfg.early_stop else None
        self.history: list[float] = []          # the convergence metric per finished epoch
        self.decision: Optional[dict] = None    # the rule's last decision

    @property
    def stopped(self) -> bool:
        """The stopping rule said stop (a resumed run that had already met it trains no further)."""
        return bool(self.decision and self.decision["stop"])

    def lr_scale(self) -> float:
        """The stopping rule's factor on the learning rate (its plateau drops; 1 without ``lr_drops``)."""
        return self.convergence.lr_scale(self.decision, self.cfg.lr_gamma) if self.convergence else 1.0

    def state(self) -> dict:
        return {"val_history": list(self.history), "converged": self.decision}

    def load_state(self, ck: dict) -> None:
        self.history, self.decision = list(ck.get("val_history", [])), ck.get("converged")

    def start(self, epochs_done: int) -> None:
        """A (resumed) run starts: ``metrics.csv`` keeps the epochs already done (all of it unless resuming)."""
        if self.is_main:
            self.metrics.truncate(epochs_done, keep=self.cfg.resume)

    # ---- during an epoch
    def bar(self, epoch: int, initial: int, steps: int):
        """A progress bar over the epoch's ``steps`` (None when progress is off, or not the main process)."""
        if not (self.cfg.progress and self.is_main):
            return None
        return tqdm(total=steps, initial=initial, leave=False, dynamic_ncols=True,
                    desc=f"{self.cfg.name} epoch {epoch + 1}/{self.cfg.epochs}")

    @staticmethod
    def show(bar, sums: dict, done: int, n_img: int, t0: float, sync: bool) -> None:
        """One step on the bar; the running mean of every term and images/s at synced steps."""
        if bar is None:
            return
        if sync:
            bar.set_postfix({k: f"{float(v) / done:.3f}" for k, v in sums.items()}
                            | {"img/s": f"{n_img / max(time.time() - t0, 1e-9):.0f}"})
        bar.update(1)

    # ---- at its end
    def end_epoch(self, epoch: int, step: int, lr: float, sums: dict, done: int, seconds: float, n_img: int,
                  student: torch.nn.Module, device) -> dict:
        """The epoch's metrics row (validation included) and the stopping rule's decision on it. The row is
        written by :meth:`append` once the epoch's checkpoint is."""
        row = {"epoch": epoch + 1, "step": step, "lr": lr}
        row.update({k if k == "loss" else f"loss_{k}": float(v) / done for k, v in sums.items()})
        if self.validation is not None:
            row.update(self.validation(student, device))
        if self.convergence is not None:
            self.history.append(float(row.get(self.convergence.metric, float("nan"))))
            self.decision = self.convergence.decide(self.history)
            if self.distributed:
                box = [self.decision]
                dist.broadcast_object_list(box, src=0)
                self.decision = box[0]
        row.update({"seconds": round(seconds, 3), "img_per_s": round(n_img / max(seconds, 1e-9), 1)})
        return row

    def append(self, row: dict) -> None:
        if self.is_main:
            self.metrics.append(row)

    def summary(self, val_pairs: Optional[str], epochs: int) -> dict:
        """The validation and stopping-rule parts of ``summary.json``."""
        out = {}
        if val_pairs:
            out["validation"] = {"pairs": val_pairs, "role": eval_role(val_pairs), "scales": list(self.validation.scales)}
        if self.convergence is not None:
            out["convergence"] = {"rule": self.convergence.to_dict(), "history": list(self.history),
                                  "max_epochs": epochs, "epochs_trained": len(self.history),
                                  "decision": self.decision, "pairs": val_pairs}
        return out


class NonFiniteLossError(LqlibError, FloatingPointError):
    """A loss term became NaN or inf; the run stopped and kept its last good checkpoint."""


class DegenerateTrainingError(LqlibError, RuntimeError):
    """The training problem cannot teach anything (one class; a cross-entropy of exactly 0)."""


class LossSums:
    """An epoch's running sum of every loss term (``"loss"`` and each part) and the first step at which each
    became NaN/inf, kept on the device: no host sync per step; :meth:`check` looks at synced steps. Under DDP
    the NaN flags and the stop flag travel in ONE all_reduce, so a NaN or a stop (budget, signal) on any rank
    stops every rank at the same step — and every rank issues the same collectives."""

    def __init__(self, names: Sequence[str], device, saved: Optional[dict] = None, distributed: bool = False):
        keys = ["loss", *names]
        self.device, self.distributed = device, distributed
        self.sums = {k: torch.tensor(v, device=device) for k, v in saved.items()} if saved else \
            {k: torch.zeros((), device=device) for k in keys}
        self.first_bad = {k: torch.full((), -1, device=device, dtype=torch.long) for k in keys}

    def add(self, total, parts: dict, step: int) -> None:
        with torch.no_grad():
            for k, v in [("loss", total), *parts.items()]:
                self.sums[k] += v.detach()
                bad = ~torch.isfinite(v.detach())
                self.first_bad[k] = torch.where(bad & (self.first_bad[k] < 0), torch.full_like(self.first_bad[k], step),
                                                self.first_bad[k])

    def check(self, epoch: int, stop: bool, checkpoint: Path) -> bool:
        """Raise :class:`NonFiniteLossError` when a term became NaN/inf; return whether to stop (this
        process's ``stop``, or under DDP any rank's)."""
        first_bad = self.first_bad
        if self.distributed:
            keys = list(first_bad)
            flags = torch.stack([*(first_bad[k] for k in keys),
                                 torch.tensor(int(stop), device=self.device, dtype=torch.long)])
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            first_bad, stop = dict(zip(keys, flags[:-1])), bool(flags[-1] > 0)
        bad = {k: int(v) for k, v in first_bad.items() if int(v) >= 0}
        if not bad:
            return stop
        terms = {k: s for k, s in bad.items() if k != "loss"} or bad
        name = min(terms, key=lambda k: (terms[k], k))
        keep = f"the last good checkpoint is {checkpoint}" if checkpoint.is_file() else "no checkpoint was written yet"
        raise NonFiniteLossError(f"loss term {name!r} became NaN/inf at step {terms[name]} (epoch {epoch + 1}); "
                                 f"training stopped, {keep}. Lower the lr or this term's weight, or check the data.")

    def check_learning(self, epoch: int, num_classes: int, num_images: int) -> None:
        """A first-epoch cross-entropy of exactly 0 (under DDP: every rank's together, so every rank raises or
        none does) is a problem that teaches nothing: :class:`DegenerateTrainingError`."""
        if epoch != 0 or "ce" not in self.sums:
            return
        ce = self.sums["ce"].detach().clone()
        if self.distributed:
            dist.all_reduce(ce, op=dist.ReduceOp.SUM)
        if float(ce) == 0.0:
            raise DegenerateTrainingError(
                f"the cross-entropy is exactly 0 over the first epoch ({num_classes} classes, "
                f"{num_images} images): nothing is being learnt — check the data subset")


def write_summary(run_dir: Path, summary: dict) -> Path:
    return write_json(Path(run_dir) / "summary.json", summary)


class DegenerateRunError(LqlibError, AssertionError):
    """A finished run's recorded losses show that it learnt nothing (notebook check cells raise it)."""


def check_learning(run_dir: Path, min_ce: float | None = None) -> dict:
    """Check a finished run's ``metrics.csv``: every loss column finite and not identically 0; the
    learning signal — the CE when there is one (KD terms may legitimately rise, e.g. under DKD's
    warm-up), else the total loss — lower in some later epoch than in the first; and (``min_ce``) a
    first-epoch CE of at least that value (a multi-class problem starts at CE ≈ ln(classes) or above).
    Returns {column: (first, last)}."""
    rows = MetricsLog(run_dir).read()
    if len(rows) < 2:
        raise DegenerateRunError(f"{run_dir}: {len(rows)} epoch(s) recorded; need at least 2 to see learning")
    out = {}
    for col in [c for c in rows[0] if c == "loss" or c.startswith("loss_")]:
        vals = [float(r[col]) for r in rows if r.get(col) not in (None, "")]
        if not all(math.isfinite(v) for v in vals):
            raise DegenerateRunError(f"{run_dir}: {col} is not finite: {vals}")
        if all(v == 0.0 for v in vals):
            raise DegenerateRunError(f"{run_dir}: {col} is exactly 0 in every epoch (a degenerate problem?)")
        out[col] = (vals[0], vals[-1])
        if col == ("loss_ce" if "loss_ce" in rows[0] else "loss") and not min(vals[1:]) < vals[0]:
            raise DegenerateRunError(f"{run_dir}: {col} never fell below its first-epoch value: {vals}")
    if min_ce is not None and "loss_ce" in out and out["loss_ce"][0] < min_ce:
        raise DegenerateRunError(f"{run_dir}: first-epoch CE {out['loss_ce'][0]:.4f} < {min_ce}")
    return out
