"""MobileFaceNet (Chen et al. 2018, "MobileFaceNets"), the light student/teacher of ShrinkTeaNet and
ECACFace, with the same interface as :class:`lqlib.models.iresnet.IResNet`.

Architecture (paper, Table 1; arcface_torch's ``mbf``), for a 112×112 input::

    conv3×3 s2, 64 ─► depthwise 3×3, 64                                  56×56   (stem)
    bottleneck t=2, 64,  ×5, first s2                                     28×28   stage 1
    bottleneck t=4, 128, ×1, s2  ─► bottleneck t=2, 128, ×6                14×14   stage 2
    bottleneck t=4, 128, ×1, s2  ─► bottleneck t=2, 128, ×2                 7×7    stage 3
    conv1×1, 512 ─► linear GDC (depthwise 7×7, valid) ─► linear 1×1 to E ─► BN   (E = 512 by default; 128 in the paper)

Every conv is followed by BN; the non-linear ones by PReLU. A bottleneck is expand 1×1 (×t) ─► BN ─►
PReLU ─► depthwise 3×3 (stride) ─► BN ─► PReLU ─► project 1×1 ─► BN (linear) ─► attention, and adds
its input when stride is 1 and widths match. The attention block (``attention=``: none | cbam | eca |
esca | se, see :mod:`lqlib.models.attention`) sits on the residual branch after the projection,
before the addition — as in IResNet — so attention KD works with MobileFaceNet students/teachers.

Interface (as IResNet): ``forward(x, return_attention=False, return_features=False)`` → embedding,
or ``(emb, maps)`` / ``(emb, feats)`` / ``(emb, maps, feats)``.

* ``maps``: one :class:`AttentionMaps` per bottleneck (15), in forward order. **With
  ``attention="none"`` the list is empty** (``[]``), not a list of ``(None, None)``: there is nothing to
  distil, and attention KD then fails loudly instead of silently adding zero.
* ``feats``: 4 maps, one per resolution (the same stage indexing as IResNet, whose stage ``i`` ends at
  112/2^(i+1)): the stem output (64 ch, 56×56), the end of stage 1 (64 ch, 28×28), of stage 2 (128 ch,
  14×14), and the 512-channel 1×1-conv output that feeds the GDC (7×7).
* ``block_stage`` maps the 15 bottlenecks to stages 1, 2, 3 (the stem has no block), so
  :func:`lqlib.losses.attention.stage_pairing` pairs them with the IResNet blocks of the same resolution.

Input: normalised float RGB (:func:`lqlib.images.normalize`), 112×112 or 112×96 (any size: the GDC
kernel follows the final feature-map size, ``ceil(H/16) × ceil(W/16)``).

Registered as ``mobilefacenet``, ``mobilefacenet_cbam`` and ``mobilefacenet_esca``. (A TensorFlow
variant, ``mobilefacenet_tf``, with TF "SAME" padding and the layers of sirius-ai's MobileFaceNet_TF,
served only the retired ``vladmandic-mobilefacenet`` teacher and was removed with it.)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .attention import AttentionMaps, build_attention
from .init import init_weights
from .interface import pack_outputs

# (expansion t, output channels c, repeats n, first stride s): Table 1 of the paper.
BOTTLENECKS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)
GROUP_STAGE = (1, 2, 2, 3, 3)  # resolution stage of each bottleneck group (stage 0 is the stem)
STEM_WIDTH = 64
CONV_WIDTH = 512


class ConvBN(nn.Module):
    """conv (no bias, padding k//2 unless ``padding`` is given) ─► BN ─► PReLU (``prelu=False``: linear)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1, groups: int = 1,
                 prelu: bool = True, padding: int | None = None):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        pad = kernel[0] // 2 if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.act = nn.PReLU(cout, init=0.25) if prelu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Inverted residual: expand 1×1 ─► depthwise 3×3 ─► project 1×1 (linear) ─► attention (─► + input)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, attention: str = "none",
                 attention_kw: dict | None = None):
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBN(cin, hidden, 1)
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, 1, prelu=False)
        self.attention = build_attention(attention, cout, **(attention_kw or {}))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, AttentionMaps]:
        out, maps = self.attention(self.project(self.depthwise(self.expand(x))))
        return (x + out if self.residual else out), maps


class MobileFaceNet(nn.Module):
    """MobileFaceNet with optional per-bottleneck attention (see the module docstring).

    Parameters: ``embedding_size`` (512; the paper uses 128), ``attention`` / ``attention_kw`` (as
    IResNet), ``input_size`` (H, W), ``dropout`` before the final linear layer, ``bottlenecks`` (the
    (t, c, n, s) table) and ``group_stage`` (the resolution stage of each bottleneck group).
    """

    def __init__(self, embedding_size: int = 512, attention: str = "none", attention_kw: dict | None = None,
                 input_size: tuple[int, int] = (112, 112), dropout: float = 0.0,
                 bottlenecks: Sequence[tuple[int, int, int, int]] = BOTTLENECKS,
                 group_stage: Sequence[int] = GROUP_STAGE):
        super().__init__()
        if len(group_stage) != len(bottlenecks):
            raise ValueError("group_stage needs one stage index per bottleneck group")
        self.embedding_size = embedding_size
        self.attention_type = attention
        self.input_size = tuple(input_size)
        self.stem = nn.Sequential(ConvBN(3, STEM_WIDTH, 3, 2), ConvBN(STEM_WIDTH, STEM_WIDTH, 3, 1, groups=STEM_WIDTH))

        blocks, block_stage, stage_ends = [], [], {}
        cin, h, w = STEM_WIDTH, *(math.ceil(s / 2) for s in self.input_size)
        for (t, c, n, s), stage in zip(bottlenecks, group_stage):
            for i in range(n):
                stride = s if i == 0 else 1
                blocks.append(Bottleneck(cin, c, stride, t, attention, attention_kw))
                block_stage.append(stage)
                cin = c
                h, w = math.ceil(h / stride), math.ceil(w / stride)
            stage_ends[stage] = len(blocks) - 1
        self.blocks = nn.ModuleList(blocks)
        self.block_stage = tuple(block_stage)
        self._stage_ends = frozenset(v for k, v in stage_ends.items() if k != max(stage_ends))
        self.conv = ConvBN(cin, CONV_WIDTH, 1)
        self.stage_channels = (STEM_WIDTH, *(blocks[i].project.conv.out_channels for i in sorted(self._stage_ends)),
                               CONV_WIDTH)
        self.feature_size = (h, w)
        self.gdc = ConvBN(CONV_WIDTH, CONV_WIDTH, (h, w), groups=CONV_WIDTH, prelu=False, padding=0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(CONV_WIDTH, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        init_weights(self, zero_conv_bias=True, linear_std=0.01)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, return_attention: bool = False, return_features: bool = False):
        x = self.stem(x)
        feats = [x]
        maps: list[AttentionMaps] = []
        for i, block in enumerate(self.blocks):
            x, m = block(x)
            maps.append(m)
            if i in self._stage_ends:
                feats.append(x)
        x = self.conv(x)
        feats.append(x)
        x = torch.flatten(self.gdc(x), 1)
        emb = self.features(self.fc(self.dropout(x)))
        if self.attention_type == "none":
            maps = []
        return pack_outputs(emb, maps, feats, return_attention, return_features)
