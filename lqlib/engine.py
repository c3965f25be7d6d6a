"""Compilation: ``torch.compile`` once per module and process, an on-disk cache across processes, and a
measured fall-back to eager.

* :func:`compiled` wraps a module so that its calls run through ``torch.compile``; if a call raises
  while compiling (an unsupported op, a missing compiler), the wrapper prints one line and runs eager
  from then on. ``unwrap`` (:mod:`lqlib.models.interface`) gives back the original module, so state
  dicts keep their plain keys.
* :func:`lqlib.runtime.use_inductor_cache` points Inductor's caches (FX graphs, AOT autograd, kernels) at
  ``runs/.inductor-cache`` so a resumed run, the next notebook kernel or the next student of the same
  architecture loads compiled graphs instead of compiling again (minutes → seconds on 2 cores).
* :class:`CompileProbe` decides, per training run, whether the compiled step is really faster: after
  the warm-up steps it times a few compiled steps, then a few eager ones, and keeps the faster engine.
  Compile seconds (the warm-up beyond the steady step time) are reported apart from step seconds.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable

import torch
from torch import nn

from .runtime import use_inductor_cache


class Compiled(nn.Module):
    """``module`` run through ``torch.compile``, eager after a failed compile (or when ``eager`` is set)."""

    def __init__(self, module: nn.Module, **compile_kw):
        super().__init__()
        use_inductor_cache()
        self._orig_mod = module
        object.__setattr__(self, "_fn", torch.compile(module, **compile_kw))  # not a child: no duplicate state
        self.failed = False
        self.eager = False   # set by CompileProbe when the compiled step is slower

    def forward(self, *args, **kwargs):
        if self.failed or self.eager:
            return self._orig_mod(*args, **kwargs)
        try:
            return self._fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eager
            msg = str(e).splitlines()[0][:200] if str(e) else ""
            if not _is_compile_error(e):
                raise
            print(f"torch.compile failed for {type(self._orig_mod).__name__} ({type(e).__name__}: {msg}); "
                  "running eager", file=sys.stderr)
            self.failed = True
            return self._orig_mod(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)


def _is_compile_error(e: Exception) -> bool:
    """Errors raised by dynamo/inductor (not by the model's own math)."""
    mod = type(e).__module__
    return mod.startswith(("torch._dynamo", "torch._inductor", "torch.fx", "torch._subclasses")) or \
        "compile" in type(e).__name__.lower() or "inductor" in str(e).lower() or "dynamo" in str(e).lower()


def compiled(module: nn.Module, enabled: bool = True, **compile_kw) -> nn.Module:
    """``Compiled(module)`` when ``enabled`` and the module has parameters (an onnxruntime teacher is
    not PyTorch code), else the module itself."""
    if not enabled or not any(True for _ in module.parameters()):
        return module
    return Compiled(module, **compile_kw)


def compiled_modules(root: nn.Module) -> list[Compiled]:
    return [m for m in root.modules() if isinstance(m, Compiled)]


class CompileProbe:
    """Times the training step to choose compiled vs eager (see the module docstring).

    ``observe(step_index, seconds)`` is called after every step; after ``warmup + 2·probe`` steps the
    decision is final. With no compiled module the probe only records timings."""

    def __init__(self, modules: Iterable[Compiled], warmup: int = 2, probe: int = 3):
        self.modules = list(modules)
        self.warmup, self.probe = warmup, probe
        self.times: list[float] = []
        self.decision = "eager (not compiled)" if not self.modules else None
        self.compile_s = 0.0

    @property
    def active(self) -> bool:
        return self.decision is None

    def observe(self, seconds: float) -> None:
        if not self.active:
            return
        self.times.append(seconds)
        n = len(self.times)
        if n == self.warmup + self.probe:  # compiled steps timed: now time eager
            for m in self.modules:
                m.eager = True
        elif n == self.warmup + 2 * self.probe:
            comp = sorted(self.times[self.warmup:self.warmup + self.probe])[self.probe // 2]
            eager = sorted(self.times[self.warmup + self.probe:])[self.probe // 2]
            failed = any(m.failed for m in self.modules)
            keep_compiled = not failed and comp < eager
            for m in self.modules:
                m.eager = not keep_compiled
            self.compile_s = max(0.0, sum(self.times[:self.warmup]) - self.warmup * comp)
            self.step_ms = {"compiled": round(1000 * comp, 1), "eager": round(1000 * eager, 1)}
            self.decision = ("compiled" if keep_compiled else
                             "eager (compile failed)" if failed else "eager (compiled step was slower)")

    def report(self) -> dict:
        out = {"engine": self.decision or "probing", "compile_s": round(self.compile_s, 1)}
        if hasattr(self, "step_ms"):
            out["step_ms"] = self.step_ms
        return out


def timed(fn):
    """``(result, seconds)`` of ``fn()`` with the device synchronised."""
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0
