"""Weight initialisation shared by the backbones (arcface_torch's iresnet / mobilefacenet recipe)."""
from __future__ import annotations

from typing import Optional

from torch import nn


def init_weights(model: nn.Module, *, zero_conv_bias: bool = False, linear_std: Optional[float] = None) -> None:
    """Kaiming-normal convolutions (``fan_out``, ReLU gain), BatchNorms at scale 1 and shift 0 (a frozen scale,
    ``requires_grad`` False, is left as it was set), in module order. ``zero_conv_bias``: convolution biases
    set to 0 (else their default init stays); ``linear_std``: linear weights drawn from N(0, std²) (else their
    default init stays)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if zero_conv_bias and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.weight.requires_grad:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif linear_std is not None and isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, linear_std)


__all__ = ["init_weights"]
