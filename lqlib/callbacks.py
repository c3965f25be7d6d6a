"""What the training loop reports (arcface_torch's ``utils_callbacks``): per-epoch metrics, the run
summary, and the validation curve.

* :class:`MetricsLog` — ``metrics.csv`` in the run directory, one row per finished epoch (columns
  grow as new keys appear; rewritten atomically; truncated to the resumed epoch on a resume);
* :class:`Validation` — optional accuracy on a pair set at a few scales after every epoch (curves
  only; never used to select anything);
* :func:`write_summary` — ``summary.json`` at the end of a run.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import torch

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
        from .data import load_pairs
        from .evaluation import evaluate, scale_label

        if self._pairs is None:
            self._pairs = load_pairs(self.spec)
        df = evaluate(backbone, self._pairs, scales=self.scales, eval_mode="both", device=device)
        return {f"val_acc_{scale_label(r.scale).replace('×', 'x')}": round(float(r.acc_mean), 3)
                for r in df.itertuples()}


def write_summary(run_dir: Path, summary: dict) -> Path:
    return write_json(Path(run_dir) / "summary.json", summary)


class DegenerateRunError(AssertionError):
    """A finished run's recorded losses show that it learnt nothing (notebook check cells raise it)."""


def check_learning(run_dir: Path, min_ce: float | None = None) -> dict:
    """Check a finished run's ``metrics.csv``: every loss column finite and not identically 0; the
    learning signal — the CE when there is one (KD terms may legitimately rise, e.g. under DKD's
    warm-up), else the total loss — lower in some later epoch than in the first; and (``min_ce``) a
    first-epoch CE of at least that value (a multi-class problem starts at CE ≈ ln(classes) or above).
    Returns {column: (first, last)}."""
    import math

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
