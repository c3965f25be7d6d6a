"""The output convention every lqlib backbone (and external teacher) follows."""
from __future__ import annotations

import torch


def pack_outputs(emb: torch.Tensor, maps: list, feats: list, return_attention: bool, return_features: bool):
    """``emb``, or ``(emb, maps)`` / ``(emb, feats)`` / ``(emb, maps, feats)`` as the flags ask."""
    out = (emb,)
    if return_attention:
        out += (maps,)
    if return_features:
        out += (feats,)
    return out[0] if len(out) == 1 else out
