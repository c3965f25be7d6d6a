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
not depend on the end (``step``), or let the rule lower the rate itself (``lr_drops``, below), or read
the stopping epoch as the chosen number of epochs and train the final model with it.

**Rate drops on a plateau** (``lr_drops = k > 0``, as Keras' ``ReduceLROnPlateau`` before its
``EarlyStopping``): the first ``k`` times the last ``patience`` epochs bring no improvement, the rule
does not stop but lowers the learning rate (the trainer multiplies the schedule's factor by
``lr_gamma ** drops``) and counts ``patience`` afresh from that epoch; only a plateau after the
``k``-th drop (and ``≥ min_epochs``) stops training. So an early stop always ends at the lowest rate,
after at least ``patience`` epochs there. ``lr_drops = 0`` is the rule above, unchanged.
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
    lr_drops: int = 0           # plateaus that lower the learning rate before one may stop (module docstring)

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"early_stop.metric must be a metrics column name, got {self.metric!r}")
        if not (self.min_delta >= 0 and math.isfinite(self.min_delta)):
            raise ValueError(f"early_stop.min_delta must be a finite number >= 0, got {self.min_delta}")
        if int(self.lr_drops) < 0:
            raise ValueError(f"early_stop.lr_drops must be >= 0, got {self.lr_drops}")
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
        d = asdict(self)
        if not self.lr_drops:
            del d["lr_drops"]  # the rule without drops records as it always did
        return d

    def decide(self, history: Sequence[float]) -> dict:
        """The decision after ``len(history)`` epochs: ``stop``, ``epoch``, ``best_epoch`` (1-based; 0: no
        finite value yet), ``best``, ``epochs_since_best``, a one-line ``reason`` and, for a rule with
        ``lr_drops``, ``lr_drops`` (rate drops so far) and ``lr_drop_epochs`` (the epochs after which the
        rate was lowered)."""
        best, best_epoch, drops, mark = -math.inf, 0, [], 0
        for i, v in enumerate(history, start=1):
            v = float(v)
            if math.isfinite(v) and v > best + self.min_delta:
                best, best_epoch = v, i
            mark = max(best_epoch, drops[-1] if drops else 0)
            if i - mark >= self.patience and len(drops) < int(self.lr_drops):
                drops.append(i)          # a plateau before the last drop lowers the rate instead of stopping
                mark = i
        e = len(history)
        since = e - best_epoch
        waited = e - mark                # epochs without improvement since the last improvement or drop
        stop = e >= self.min_epochs and waited >= self.patience and len(drops) >= int(self.lr_drops)
        if stop:
            reason = (f"no gain > {self.min_delta:g} in {self.metric} for {waited} epochs (patience "
                      f"{self.patience}) after {e} ≥ {self.min_epochs} epochs")
            if drops:
                reason += f", after {len(drops)} rate drop(s) (epochs {drops})"
        elif drops and drops[-1] == e:
            reason = f"plateau: learning rate lowered (drop {len(drops)} of {self.lr_drops})"
        elif e < self.min_epochs:
            reason = f"{e} < min_epochs {self.min_epochs}"
        else:
            reason = f"improved {since} epoch(s) ago (patience {self.patience})"
        out = {"stop": bool(stop), "epoch": e, "best_epoch": best_epoch,
               "best": best if best_epoch else None, "epochs_since_best": since, "reason": reason}
        if self.lr_drops:
            out |= {"lr_drops": len(drops), "lr_drop_epochs": drops}
        return out

    def lr_scale(self, decision: dict | None, gamma: float) -> float:
        """The factor on the schedule's learning rate after ``decision``: ``gamma ** drops``."""
        return float(gamma) ** int((decision or {}).get("lr_drops", 0))


def first_stop(rule: ConvergenceRule, history: Sequence[float]) -> dict:
    """The decision at the first epoch where ``rule`` stops on ``history`` (the last decision if never)."""
    for e in range(1, len(history) + 1):
        d = rule.decide(history[:e])
        if d["stop"]:
            return d
    return rule.decide(history)


__all__ = ["ConvergenceRule", "first_stop"]
