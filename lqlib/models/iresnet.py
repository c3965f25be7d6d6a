"""IR-style residual backbones (ArcFace "IResNet") with an attention block in every residual block.

Block (Deng et al., ArcFace; arcface_torch ``IBasicBlock``)::

    x ─► BN ─► conv3×3 ─► BN ─► PReLU ─► conv3×3(stride, groups) ─► BN ─► attention ─► (+) ─► out
    └──────────────────── shortcut (identity, or conv1×1(stride) + BN on shape change) ──┘

The attention block (CBAM by default) sits on the residual branch, before the addition.
Stem: conv3×3(64) + BN + PReLU at full resolution; four stages (64, 128, 256, 512 channels), the
first block of each with stride 2, so a 112×112 face ends at 7×7. Head: BN → dropout → flatten →
linear → BN1d to the embedding (512-d).

On "ResNeXt-100": the KD-for-LQ-FR paper names its network "ResNeXt-100" but describes an IR-style
ArcFace backbone of depth 100 (stages [3, 13, 30, 3]) with CBAM. The aggregated-transformation
(ResNeXt) idea is available here as ``groups`` on the second 3×3 convolution; ``groups=1`` (the
default) is the plain IR-100 that the paper's depth and description match. ``irx_cbam_100``
builds the grouped variant (32 groups) for users who want the literal ResNeXt reading.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .attention import AttentionMaps, build_attention
from .init import init_weights
from .interface import pack_outputs

DEPTHS: dict[int | str, tuple[int, int, int, int]] = {
    "tiny": (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
WIDTHS = (64, 128, 256, 512)
TINY_WIDTHS = (16, 32, 64, 128)


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


class IRBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 1,
                 attention: str = "cbam", attention_kw: dict | None = None):
        super().__init__()
        if planes % groups:
            raise ValueError(f"groups={groups} must divide the block width {planes}")
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride, groups)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.attention = build_attention(attention, planes, **(attention_kw or {}))
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, AttentionMaps]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        out, maps = self.attention(out)
        return out + identity, maps


class IResNet(nn.Module):
    """IR backbone with per-block attention maps.

    ``forward(x, return_attention=False, return_features=False)``:

    * neither flag: the (B, E) embedding;
    * ``return_attention``: ``(embedding, maps)`` where ``maps`` is a list with one
      :class:`AttentionMaps` ``(channel (B, C) | None, spatial (B, 1, H, W) | None)`` per block, in
      forward order (49 entries for depth 100);
    * ``return_features``: ``(embedding, features)``, the output of each of the 4 stages (B, C, H, W);
    * both: ``(embedding, maps, features)``.

    Input: normalised float RGB (see :func:`lqlib.images.normalize`), 112×112 by default.
    """

    def __init__(self, layers: Sequence[int], widths: Sequence[int] = WIDTHS, embedding_size: int = 512,
                 groups: int = 1, attention: str = "cbam", attention_kw: dict | None = None,
                 dropout: float = 0.0, input_size: tuple[int, int] = (112, 112)):
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("IResNet needs 4 stages")
        self.embedding_size = embedding_size
        self.attention_type = attention
        self.input_size = tuple(input_size)
        self.stem = nn.Sequential(conv3x3(3, widths[0]), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        stages = []
        inplanes = widths[0]
        for n, w in zip(layers, widths):
            blocks = [IRBlock(inplanes, w, 2, groups, attention, attention_kw)]
            blocks += [IRBlock(w, w, 1, groups, attention, attention_kw) for _ in range(n - 1)]
            stages.append(nn.ModuleList(blocks))
            inplanes = w
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(widths)
        self.block_stage = tuple(i for i, n in enumerate(layers) for _ in range(n))
        h, w = (s // 16 for s in self.input_size)
        self.bn2 = nn.BatchNorm2d(widths[-1], eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1] * h * w, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad_(False)
        init_weights(self)

    @property
    def num_blocks(self) -> int:
        return len(self.block_stage)

    def forward(self, x: torch.Tensor, return_attention: bool = False, return_features: bool = False):
        x = self.stem(x)
        maps: list[AttentionMaps] = []
        feats: list[torch.Tensor] = []
        for stage in self.stages:
            for block in stage:
                x, m = block(x)
                maps.append(m)
            feats.append(x)
        x = self.dropout(self.bn2(x))
        emb = self.features(self.fc(torch.flatten(x, 1)))
        return pack_outputs(emb, maps, feats, return_attention, return_features)
