"""Face-recognition backbones and their registry.

``build_backbone(name, **kw)``: names ``ir_<attention>_<depth>`` with attention in
cbam | esca | eca | se | none and depth in tiny | 18 | 34 | 50 | 100 (e.g. ``ir_cbam_100``, the
paper's network), ``irx_cbam_<depth>`` for the grouped (ResNeXt, 32 groups) variant, and the
MobileFaceNets registered by :mod:`lqlib.models.mobilefacenet`. The contract every backbone
follows is :mod:`lqlib.models.interface`. Extra keyword arguments go to the class
(``embedding_size``, ``attention_kw={"kernel_size": 3, "maps": "pre"}``, ``dropout``, ...).

All backbones share one interface: ``model(x)`` → embedding; ``model(x, return_attention=True)``
→ ``(embedding, [AttentionMaps per block])``; ``return_features=True`` adds per-stage features.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Callable

from torch import nn

from ..registry import registrar
from .attention import ATTENTIONS, AttentionMaps, build_attention
from .iresnet import DEPTHS, TINY_WIDTHS, IResNet
from .mobilefacenet import MobileFaceNet

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str, factory: Callable[..., nn.Module] | None = None):
    """Register ``factory`` under ``name`` (usable as a decorator)."""
    return registrar(BACKBONES, "backbone", name, factory)


def _ir(depth, attention, groups=1, **kw):
    if depth == "tiny":
        kw.setdefault("widths", TINY_WIDTHS)
    return IResNet(DEPTHS[depth], groups=kw.pop("groups", groups), attention=attention, **kw)


for _att in ATTENTIONS:
    for _d in DEPTHS:
        register_backbone(f"ir_{_att}_{_d}", partial(_ir, _d, _att))
for _d in (50, 100):
    register_backbone(f"irx_cbam_{_d}", partial(_ir, _d, "cbam", 32))

register_backbone("mobilefacenet", MobileFaceNet)
for _att in ("cbam", "esca"):
    register_backbone(f"mobilefacenet_{_att}", partial(MobileFaceNet, attention=_att))


def with_attention(backbone: str, attention: str | None) -> str:
    """The name of ``backbone`` with its attention block replaced (``ir_cbam_18`` + ``esca`` →
    ``ir_esca_18``; a method such as ECACFace changes the block)."""
    if not attention:
        return backbone
    m = re.match(r"^(irx?)_([a-z]+)_(\w+)$", backbone)
    if m:
        return f"{m.group(1)}_{attention}_{m.group(3)}"
    if backbone.startswith("mobilefacenet"):
        return "mobilefacenet" if attention == "none" else f"mobilefacenet_{attention}"
    raise ValueError(f"cannot change the attention block of backbone {backbone!r}")


def build_backbone(name: str, **kw) -> nn.Module:
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}") from None
    return factory(**kw)


__all__ = ["AttentionMaps", "ATTENTIONS", "BACKBONES", "IResNet", "build_attention", "build_backbone",
           "register_backbone", "with_attention"]
