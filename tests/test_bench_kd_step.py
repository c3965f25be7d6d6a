"""bench/kd_step.py compares the cached-teacher step with the live-teacher step on ONE engine.

On a machine whose probes disagree (or decide at different steps), the cached part used to be set to the
live part's decision while that decision was still open, and a probe still running during the timed rounds
could switch its engine afterwards: one part ran compiled, the other eager, and the ratio compared engines."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from torch import nn

from lqlib.engine import CompileProbe, compiled

spec = importlib.util.spec_from_file_location("kd_step", Path(__file__).resolve().parents[1] / "bench" / "kd_step.py")
kd_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kd_step)


class _Trainer:
    """What Part reads of a trainer: the distiller (with compiled modules) and its engine probe."""

    def __init__(self, times):
        self.distiller = nn.Sequential(compiled(nn.Linear(2, 2)), compiled(nn.Linear(2, 2)))
        self.probe = CompileProbe([m for m in self.distiller], warmup=1, probe=1)
        self.times = list(times)

    def engine_report(self):
        return self.probe.report()


def _part(times):
    p = object.__new__(kd_step.Part)
    p.tr, p.info = _Trainer(times), {}

    def run(steps):                      # one "step" = one probe observation with a scripted duration
        for _ in range(steps):
            if p.tr.probe.active:
                p.tr.probe.observe(p.tr.times.pop(0) if p.tr.times else 1.0)
        return 1.0
    p.run = run
    return p


def test_both_parts_end_on_the_live_parts_engine():
    live = _part([5.0, 1.0, 2.0])        # warm-up, compiled 1.0 s, eager 2.0 s: compiled wins
    cached = _part([5.0, 3.0, 1.0])      # its own probe would pick eager, and it has not decided yet
    live.run(1)                          # the live part's probe is still open when the comparison is set
    assert live.tr.probe.active and cached.tr.probe.active
    cached.use_engine_of(live)
    assert live.engine_used() == cached.engine_used() == "compiled"
    assert not cached.tr.probe.active and cached.info["own_probe"]["engine"].startswith("eager")
    assert cached.info["engine_as"] == "compiled, as the live-teacher part"
    cached.run(5)                        # later steps cannot switch it: its probe has decided
    assert cached.engine_used() == "compiled"


def test_eager_live_part_makes_the_cached_part_eager():
    live, cached = _part([5.0, 3.0, 1.0]), _part([5.0, 1.0, 2.0])
    cached.use_engine_of(live)
    assert live.engine_used() == cached.engine_used() == "eager"


def test_engine_used_reads_the_modules_not_the_probe_text():
    p = _part([])
    mods = list(p.tr.distiller)
    assert p.engine_used() == "compiled"
    mods[0].eager = True
    assert p.engine_used() == "mixed"
    mods[1].failed = True
    assert p.engine_used() == "eager"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
