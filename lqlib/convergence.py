"""When has a model converged? A stopping rule on the validation curve (``early_stop`` in a recipe).

Rule (:class:`ConvergenceRule`, stated so a study can quote it): after every epoch the training loop
evaluates the validation pairs (``val_pairs``, e.g. ``lfw-half-val``; never the test folds) and
appends ``metric`` (default ``val_acc_x1``, verification accuracy in % at ×1) to the history. An
epoch *improves* when its value exceeds the best value so far by more than ``min_delta`` points (the
best is updated only then, as in Keras' ``EarlyStopping``). Training stops after epoch ``e`` when
``e ≥ min_epochs`` and the last ``patience`` epochs brought no improvement; ``epochs`` of the config
is the maximum. The decision is a function of the history only, so a resumed run decides the same,
and the run records it (``summary.json`` → ``convergence``: the rule, the history, the best and the
stopping epoch, and the validation set).

The learning-rate schedule is a function of the configured ``epochs`` (the maximum): with a one-cycle
or cosine schedule a stop before the maximum leaves the rate high. Use a schedule whose shape does
not depend on the end (``step``), or read the stopping epoch as the chosen number of epochs and train
the final model with it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence


@dataclass(frozen=True)
class ConvergenceRule:
    metric: str = "val_acc_x1"
    min_delta: float = 0.25     # accuracy points
    patience: int = 5           # epochs without improvement
    min_epochs: int = 20

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"early_stop.metric must be a metrics column name, got {self.metric!r}")
        if not (self.min_delta >= 0 and math.isfinite(self.min_delta)):
            raise ValueError(f"early_stop.min_delta must be a finite number >= 0, got {self.min_delta}")
        if int(self.patience) < 1 or int(self.min_epochs) < 1:
            raise ValueError(f"early_stop.patience and early_stop.min_epochs must be >= 1, got "
                             f"{self.patience} and {self.min_epochs}")

    @classmethod
    def from_dict(cls, d: dict) -> "ConvergenceRule":
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"early_stop: unknown key(s) {unknown}; accepted: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def decide(self, history: Sequence[float]) -> dict:
        """The decision after ``len(history)`` epochs: ``stop``, ``epoch``, ``best_epoch`` (1-based; 0: no
        finite value yet), ``best``, ``epochs_since_best`` and a one-line ``reason``."""
        best, best_epoch = -math.inf, 0
        for i, v in enumerate(history, start=1):
            v = float(v)
            if math.isfinite(v) and v > best + self.min_delta:
                best, best_epoch = v, i
        e = len(history)
        since = e - best_epoch
        stop = e >= self.min_epochs and since >= self.patience
        if stop:
            reason = (f"no gain > {self.min_delta:g} in {self.metric} for {since} epochs (patience "
                      f"{self.patience}) after {e} ≥ {self.min_epochs} epochs")
        elif e < self.min_epochs:
            reason = f"{e} < min_epochs {self.min_epochs}"
        else:
            reason = f"improved {since} epoch(s) ago (patience {self.patience})"
        return {"stop": bool(stop), "epoch": e, "best_epoch": best_epoch,
                "best": best if best_epoch else None, "epochs_since_best": since, "reason": reason}


def first_stop(rule: ConvergenceRule, history: Sequence[float]) -> dict:
    """The decision at the first epoch where ``rule`` stops on ``history`` (the last decision if never)."""
    for e in range(1, len(history) + 1):
        d = rule.decide(history[:e])
        if d["stop"]:
            return d
    return rule.decide(history)


__all__ = ["ConvergenceRule", "first_stop"]
