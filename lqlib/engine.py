"""Compilation: ``torch.compile`` with a fall-back to eager, decided once per module.

:func:`compiled` wraps a module so that its first call runs through ``torch.compile``; if that call
raises (an unsupported op, a missing compiler), the wrapper prints one line and runs eager from then
on. ``unwrap`` (:mod:`lqlib.models.interface`) gives back the original module, so state dicts keep
their plain keys.
"""
from __future__ import annotations

import sys

import torch
from torch import nn


class Compiled(nn.Module):
    """``module`` run through ``torch.compile``, eager after a failed first call."""

    def __init__(self, module: nn.Module, **compile_kw):
        super().__init__()
        self._orig_mod = module
        self._fn = torch.compile(module, **compile_kw)
        self.ok: bool | None = None   # None until the first call

    def forward(self, *args, **kwargs):
        if self.ok is False:
            return self._orig_mod(*args, **kwargs)
        try:
            out = self._fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eager
            if self.ok:
                raise
            print(f"torch.compile failed for {type(self._orig_mod).__name__} ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:200] if str(e) else ''}); running eager", file=sys.stderr)
            self.ok = False
            return self._orig_mod(*args, **kwargs)
        self.ok = True
        return out

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)


def compiled(module: nn.Module, enabled: bool = True, **compile_kw) -> nn.Module:
    """``Compiled(module)`` when ``enabled`` and the module has parameters (an onnxruntime teacher is
    not PyTorch code), else the module itself."""
    if not enabled or not any(True for _ in module.parameters()):
        return module
    return Compiled(module, **compile_kw)
