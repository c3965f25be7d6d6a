"""The backbone contract: what every lqlib backbone (and external teacher) offers, in one place.

A backbone is an ``nn.Module`` with

* ``forward(x, return_attention=False, return_features=False)`` → the (B, E) embedding, or a tuple
  ``(embedding[, maps][, features])`` as the flags ask (:func:`pack_outputs`): ``maps`` one
  :class:`~lqlib.models.attention.AttentionMaps` per attention block in forward order, ``features``
  the output of each stage;
* ``embedding_size`` (E), ``block_stage`` (the stage label of every attention block; equal labels
  mean equal resolution, so IResNet has 0–3 and MobileFaceNet 1–3), ``stage_channels`` (channels of
  each stage's output);
* its blocks at module paths ``stages.<s>.<k>`` (IResNet) or ``blocks.<i>`` (MobileFaceNet)
  (:func:`block_paths`).

Losses (block pairing, connectors), figures (per-stage maps), Grad-CAM (target layers) and the
training step (:func:`forward_outputs`) read a model's structure only through the helpers here
(torchdistill's "one place knows the model structure").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Backbone(Protocol):
    embedding_size: int
    block_stage: Sequence[int]
    stage_channels: Sequence[int]

    def __call__(self, x: torch.Tensor, return_attention: bool = False, return_features: bool = False): ...


def pack_outputs(emb: torch.Tensor, maps: list, feats: list, return_attention: bool, return_features: bool):
    """``emb``, or ``(emb, maps)`` / ``(emb, feats)`` / ``(emb, maps, feats)`` as the flags ask."""
    out = (emb,)
    if return_attention:
        out += (maps,)
    if return_features:
        out += (feats,)
    return out[0] if len(out) == 1 else out


@dataclass
class ModelOutputs:
    """One model's outputs for a batch (fields the step did not need stay empty)."""

    embedding: torch.Tensor
    logits: Optional[torch.Tensor] = None        # margin-head logits (margin on the target class)
    plain_logits: Optional[torch.Tensor] = None  # s·cosθ, no margin
    attention: list = field(default_factory=list)  # [AttentionMaps] per block
    features: list = field(default_factory=list)   # [stage feature maps]


def forward_outputs(backbone: nn.Module, head: nn.Module | None, x: torch.Tensor, labels: torch.Tensor | None,
                    want_attention: bool, want_features: bool, want_logits: bool = True) -> ModelOutputs:
    """Run a backbone (+ margin head) on a normalised batch and collect what the loss terms need."""
    res = backbone(x, return_attention=want_attention, return_features=want_features)
    if not (want_attention or want_features):
        res = (res,)
    emb = res[0]
    att = res[1] if want_attention else []
    feat = res[-1] if want_features else []
    logits = plain = None
    if want_logits and head is not None and labels is not None:
        logits, plain = head(emb, labels, return_plain=True)
    return ModelOutputs(emb, logits, plain, att, feat)


def unwrap(model: nn.Module) -> nn.Module:
    """The module behind a ``torch.compile`` wrapper (the model itself otherwise)."""
    return getattr(model, "_orig_mod", model)


def embedding_size(model: nn.Module | None) -> int | None:
    e = getattr(model, "embedding_size", None) if model is not None else None
    return None if e is None else int(e)


def stage_channels(model: nn.Module | None) -> tuple[int, ...] | None:
    ch = getattr(model, "stage_channels", None) if model is not None else None
    return None if ch is None else tuple(int(c) for c in ch)


def block_stage(model: nn.Module | None) -> tuple[int, ...] | None:
    bs = getattr(model, "block_stage", None) if model is not None else None
    return None if bs is None else tuple(int(s) for s in bs)


def model_stages(model: nn.Module) -> list[int]:
    """Stage labels of a backbone's attention blocks, ascending."""
    bs = block_stage(model)
    if bs is None:
        raise ValueError(f"{type(model).__name__} declares no block_stage (not an lqlib backbone?)")
    return sorted(set(bs))


def last_block_per_stage(stages_of_blocks: Sequence[int]) -> list[int]:
    """Index of the last block of every stage, in ascending stage order."""
    last: dict[int, int] = {}
    for i, s in enumerate(stages_of_blocks):
        last[s] = i
    return [last[s] for s in sorted(last)]


def common_stages(teacher: nn.Module, student: nn.Module) -> tuple[list[int], list[int], list[int]]:
    """Stages both backbones have: (labels, their rows in the teacher's and in the student's by-stage
    arrays)."""
    t, s = model_stages(teacher), model_stages(student)
    labels = [st for st in t if st in s]
    if not labels:
        raise ValueError(f"teacher stages {t} and student stages {s} have none in common")
    return labels, [t.index(st) for st in labels], [s.index(st) for st in labels]


def stage_pairing(teacher_block_stage: Sequence[int], student_block_stage: Sequence[int]) -> list[tuple[int, int]]:
    """Pair every student block with the teacher block at the same relative depth of the same stage."""
    pairs = []
    for stage in sorted(set(student_block_stage)):
        s_idx = [i for i, st in enumerate(student_block_stage) if st == stage]
        t_idx = [i for i, st in enumerate(teacher_block_stage) if st == stage]
        if not t_idx:
            raise ValueError(f"teacher has no blocks in stage {stage}")
        for k, si in enumerate(s_idx):
            pairs.append((t_idx[round((k + 1) * len(t_idx) / len(s_idx)) - 1], si))
    return pairs


def block_paths(model: nn.Module) -> list[str]:
    """Module path of every attention block, in forward order (aligned with ``block_stage``)."""
    model = unwrap(model)
    if isinstance(getattr(model, "stages", None), nn.ModuleList):  # IResNet: stages.<s>.<k>
        return [f"stages.{s}.{k}" for s, stage in enumerate(model.stages) for k in range(len(stage))]
    if isinstance(getattr(model, "blocks", None), nn.ModuleList):  # MobileFaceNet: blocks.<i>
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    raise ValueError(f"cannot find the blocks of {type(model).__name__}; pass the target layer as a module path")


def stage_block_path(model: nn.Module, stage: int = -1) -> str:
    """Module path of the last block of stage ``stage`` (a stage label, or a negative index)."""
    stages = model_stages(model)
    label = stages[stage] if -len(stages) <= stage < 0 else stage
    if label not in stages:
        raise ValueError(f"stage {stage} not in this backbone's stages {stages}")
    return block_paths(model)[last_block_per_stage(block_stage(model))[stages.index(label)]]
