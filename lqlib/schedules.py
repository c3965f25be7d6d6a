"""Learning-rate schedules: plain numbers in, a factor of the base learning rate out.

All take the (fractional) epoch ``e`` and return the multiplier of ``lr`` at that point; the trainer
wraps :func:`lr_factor` in a ``LambdaLR`` over steps (``e = step / steps_per_epoch``).

* ``step`` — ``gamma ** floor(e / step_epochs)`` (the paper: ÷10 every 5 epochs);
* ``cosine`` — ``(1 + cos(π·e/epochs)) / 2``;
* ``constant`` — 1 (for a rate that only the stopping rule lowers: ``early_stop.lr_drops``);
* ``onecycle`` — linear warm-up from 0.04 to 1 over ``warmup`` epochs (default 10 % of the run), then
  cosine to ~0 (the lfw-half calibration recipe).

Any schedule but ``onecycle`` gets a linear warm-up when ``warmup_epochs > 0``.
"""
from __future__ import annotations

import math
from typing import Callable


def step(e: float, *, step_epochs: float = 5.0, gamma: float = 0.1, **_) -> float:
    return gamma ** math.floor(e / step_epochs)


def cosine(e: float, *, epochs: float, **_) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(e / epochs, 1.0)))


def constant(e: float, **_) -> float:
    return 1.0


def onecycle(e: float, *, epochs: float, warmup_epochs: float = 0.0, **_) -> float:
    w = warmup_epochs or 0.1 * epochs
    if e < w:
        return 0.04 + 0.96 * e / w
    return 0.5 * (1 + math.cos(math.pi * min((e - w) / max(epochs - w, 1e-8), 1.0))) + 1e-4


SCHEDULES: dict[str, Callable[..., float]] = {"step": step, "cosine": cosine, "onecycle": onecycle,
                                              "constant": constant}


def lr_factor(schedule: str, e: float, *, epochs: float, step_epochs: float = 5.0, gamma: float = 0.1,
              warmup_epochs: float = 0.0) -> float:
    """The multiplier of the base learning rate at fractional epoch ``e``."""
    try:
        fn = SCHEDULES[schedule]
    except KeyError:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}") from None
    f = fn(e, epochs=epochs, step_epochs=step_epochs, gamma=gamma, warmup_epochs=warmup_epochs)
    if schedule != "onecycle" and warmup_epochs > 0 and e < warmup_epochs:
        f *= (e + 1e-3) / warmup_epochs
    return f
