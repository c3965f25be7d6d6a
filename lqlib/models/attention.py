"""Attention blocks placed on the residual branch of every backbone block.

Every block returns ``(output, AttentionMaps(channel, spatial))`` so attention maps travel with the
forward pass (no hooks, no global state; fine under torch.compile and DDP):

* ``channel`` — (B, C) channel gate, or None for blocks without one;
* ``spatial`` — (B, 1, H, W) spatial gate, or None.

``maps="post"`` returns the gates after the sigmoid (the KD paper's maps); ``maps="pre"`` returns
the logits before it (A-SKD's code distils those).

Blocks:

* ``cbam`` — CBAM (Woo et al., ECCV 2018): channel gate = shared MLP (reduction r) on the global
  average- and max-pooled features, summed, sigmoid; then spatial gate = k×k conv over
  [mean; max] across channels, sigmoid. Channel gate first.
* ``se`` — squeeze-and-excitation (Hu et al. 2018): MLP on the average-pooled features.
* ``eca`` — ECA (Wang et al., CVPR 2020): global average pool → 1-D conv across channels with
  adaptive kernel k = nearest odd |log2(C)/γ + b/γ| (γ=2, b=1) → sigmoid.
* ``esca`` — ECACFace's ESCA: ECA channel gate followed by a spatial gate built from 3×3 average
  and 3×3 max pooling (stride 1, same size) of the channel-mean and channel-max maps,
  concatenated, a 3×3 conv and a sigmoid. (The seed describes the pooling but not whether it is
  applied to the feature tensor or to its channel statistics; pooling the two channel statistics
  keeps the gate at CBAM's cost and is what we implement.)
* ``none`` — identity, no maps.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn


class AttentionMaps(NamedTuple):
    channel: Optional[torch.Tensor]
    spatial: Optional[torch.Tensor]


def _check_maps(maps: str) -> str:
    if maps not in ("post", "pre"):
        raise ValueError(f"maps must be 'post' or 'pre', got {maps!r}")
    return maps


class ChannelGate(nn.Module):
    """CBAM channel gate: shared MLP on avg- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1, bias=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # → logits (B, C, 1, 1)
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return self.mlp(avg) + self.mlp(mx)


class SpatialGate(nn.Module):
    """CBAM spatial gate: k×k conv over [mean; max] across channels."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("spatial kernel_size must be odd")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # → logits (B, 1, H, W)
        return self.conv(torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1))


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, maps: str = "post"):
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate(kernel_size)
        self.maps = _check_maps(maps)

    def forward(self, x: torch.Tensor):
        c_logit = self.channel_gate(x)
        c = torch.sigmoid(c_logit)
        x = x * c
        s_logit = self.spatial_gate(x)
        s = torch.sigmoid(s_logit)
        x = x * s
        if self.maps == "pre":
            return x, AttentionMaps(c_logit.flatten(1), s_logit)
        return x, AttentionMaps(c.flatten(1), s)


class SE(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, maps: str = "post", **_):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.maps = _check_maps(maps)

    def forward(self, x: torch.Tensor):
        logit = self.fc(x.mean(dim=(2, 3)))
        c = torch.sigmoid(logit)
        x = x * c[:, :, None, None]
        return x, AttentionMaps(logit if self.maps == "pre" else c, None)


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA's adaptive kernel: nearest odd number to |log2(C)/γ + b/γ|."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


class ECAGate(nn.Module):
    def __init__(self, channels: int, gamma: float = 2.0, b: float = 1.0):
        super().__init__()
        k = eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # → logits (B, C)
        return self.conv(x.mean(dim=(2, 3))[:, None, :])[:, 0, :]


class ECA(nn.Module):
    def __init__(self, channels: int, maps: str = "post", **_):
        super().__init__()
        self.gate = ECAGate(channels)
        self.maps = _check_maps(maps)

    def forward(self, x: torch.Tensor):
        logit = self.gate(x)
        c = torch.sigmoid(logit)
        return x * c[:, :, None, None], AttentionMaps(logit if self.maps == "pre" else c, None)


class ESCASpatialGate(nn.Module):
    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.max = nn.MaxPool2d(3, stride=1, padding=1)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.avg(x.mean(dim=1, keepdim=True))
        m = self.max(x.amax(dim=1, keepdim=True))
        return self.conv(torch.cat([a, m], dim=1))


class ESCA(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3, maps: str = "post", **_):
        super().__init__()
        self.channel_gate = ECAGate(channels)
        self.spatial_gate = ESCASpatialGate(kernel_size)
        self.maps = _check_maps(maps)

    def forward(self, x: torch.Tensor):
        c_logit = self.channel_gate(x)
        c = torch.sigmoid(c_logit)
        x = x * c[:, :, None, None]
        s_logit = self.spatial_gate(x)
        s = torch.sigmoid(s_logit)
        x = x * s
        if self.maps == "pre":
            return x, AttentionMaps(c_logit, s_logit)
        return x, AttentionMaps(c, s)


class NoAttention(nn.Module):
    def __init__(self, channels: int = 0, **_):
        super().__init__()

    def forward(self, x: torch.Tensor):
        return x, AttentionMaps(None, None)


ATTENTIONS: dict[str, type[nn.Module]] = {"cbam": CBAM, "se": SE, "eca": ECA, "esca": ESCA, "none": NoAttention}


def build_attention(name: str, channels: int, **kw) -> nn.Module:
    try:
        cls = ATTENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; choose from {sorted(ATTENTIONS)}") from None
    if cls is CBAM:
        kw = {k: v for k, v in kw.items() if k in ("reduction", "kernel_size", "maps")}
    return cls(channels, **kw)
