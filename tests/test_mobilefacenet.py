"""MobileFaceNet: shapes, attention maps, stage features, gradients."""
from __future__ import annotations

import pytest
import torch

from lqlib.models import BACKBONES, build_backbone
from lqlib.models.mobilefacenet import MobileFaceNet

SIZES = [(112, 112), (112, 96)]


def test_registered():
    for name in ("mobilefacenet", "mobilefacenet_cbam", "mobilefacenet_esca"):
        assert name in BACKBONES


@pytest.mark.parametrize("size", SIZES)
def test_shapes_and_features(size):
    torch.manual_seed(0)
    m = build_backbone("mobilefacenet", input_size=size, embedding_size=128).eval()
    x = torch.randn(2, 3, *size)
    emb, maps, feats = m(x, return_attention=True, return_features=True)
    assert emb.shape == (2, 128) and m.embedding_size == 128 and m.input_size == size
    assert maps == []  # attention="none": an empty list, not (None, None) entries
    h, w = size
    expected = [(64, h // 2, w // 2), (64, h // 4, w // 4), (128, h // 8, w // 8), (512, h // 16, w // 16)]
    assert [tuple(f.shape[1:]) for f in feats] == expected
    assert m.stage_channels == (64, 64, 128, 512)
    assert m.gdc.conv.kernel_size == (h // 16, w // 16)
    assert m.num_blocks == 15 and m.block_stage == (1,) * 5 + (2,) * 7 + (3,) * 3
    assert torch.equal(m(x), emb)  # plain call → the embedding alone
    e2, f2 = m(x, return_features=True)
    assert torch.equal(e2, emb) and len(f2) == 4


@pytest.mark.parametrize("attention,channel,spatial", [
    ("none", None, None), ("cbam", True, True), ("eca", True, False), ("esca", True, True), ("se", True, False)])
def test_attention_maps(attention, channel, spatial):
    m = MobileFaceNet(attention=attention, embedding_size=64).eval()
    _, maps = m(torch.randn(2, 3, 112, 112), return_attention=True)
    if attention == "none":
        assert maps == []
        return
    assert len(maps) == m.num_blocks == 15
    widths = [b.project.conv.out_channels for b in m.blocks]
    for (c, s), width in zip(maps, widths):
        assert (c is not None) == channel and (s is not None) == spatial
        if c is not None:
            assert c.shape == (2, width)
    if spatial:
        assert maps[0].spatial.shape == (2, 1, 28, 28) and maps[-1].spatial.shape == (2, 1, 7, 7)


def test_registered_attention_variants():
    m = build_backbone("mobilefacenet_esca", embedding_size=32, input_size=(112, 96)).eval()
    _, maps = m(torch.randn(2, 3, 112, 96), return_attention=True)
    assert len(maps) == 15 and maps[0].spatial.shape[-2:] == (28, 24)
    assert build_backbone("mobilefacenet_cbam").attention_type == "cbam"


@pytest.mark.parametrize("name", ["mobilefacenet", "mobilefacenet_cbam"])
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    m = build_backbone(name, embedding_size=32).train()
    emb, maps, feats = m(torch.randn(4, 3, 112, 112), return_attention=True, return_features=True)
    loss = emb.pow(2).mean() + sum(f.mean() for f in feats)
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, missing
