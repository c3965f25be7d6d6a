import pytest
import torch

from lqlib.models import BACKBONES, AttentionMaps, build_backbone


def test_registry_names():
    for d in ("tiny", 18, 34, 50, 100):
        assert f"ir_cbam_{d}" in BACKBONES
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("ir_cbam_7")


@pytest.mark.parametrize("depth,blocks", [(18, 8), (34, 16), (50, 24), (100, 49)])
def test_block_counts(depth, blocks):
    m = build_backbone(f"ir_cbam_{depth}")
    assert m.num_blocks == blocks
    assert len(m.block_stage) == blocks


def test_tiny_forward_shapes_and_maps():
    m = build_backbone("ir_cbam_tiny").eval()
    x = torch.randn(2, 3, 112, 112)
    emb, maps, feats = m(x, return_attention=True, return_features=True)
    assert emb.shape == (2, 512)
    assert len(maps) == m.num_blocks == 4
    for i, mp in enumerate(maps):
        assert isinstance(mp, AttentionMaps)
        c = m.stage_channels[m.block_stage[i]]
        assert mp.channel.shape == (2, c)
        assert mp.spatial.shape[:2] == (2, 1)
        assert 0 <= float(mp.spatial.min().detach()) and float(mp.spatial.max().detach()) <= 1  # post-sigmoid gates
    assert [f.shape[-1] for f in feats] == [56, 28, 14, 7]
    assert torch.equal(m(x), emb)  # plain call = embedding; eval mode is deterministic
    e2, maps2 = m(x, return_attention=True)
    assert torch.equal(e2, emb) and len(maps2) == 4


def test_ir18_attention_count_and_pre_sigmoid_maps():
    m = build_backbone("ir_cbam_18", attention_kw={"maps": "pre", "kernel_size": 3}).eval()
    _, maps = m(torch.randn(1, 3, 112, 112), return_attention=True)
    assert len(maps) == 8
    assert float(maps[0].spatial.min()) < 0  # logits, not gates


def test_gradients_reach_every_parameter():
    m = build_backbone("ir_cbam_tiny").train()
    emb = m(torch.randn(4, 3, 112, 112))
    emb.pow(2).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


@pytest.mark.parametrize("att", ["se", "eca", "esca", "none"])
def test_other_attention_blocks(att):
    m = build_backbone(f"ir_{att}_tiny").eval()
    e, maps = m(torch.randn(2, 3, 112, 112), return_attention=True)
    assert e.shape == (2, 512) and len(maps) == 4
    if att == "none":
        assert all(mp.channel is None and mp.spatial is None for mp in maps)
    if att in ("se", "eca"):
        assert all(mp.spatial is None and mp.channel is not None for mp in maps)
    if att == "esca":
        assert all(mp.spatial is not None for mp in maps)


def test_groups_resnext_variant():
    m = build_backbone("ir_cbam_tiny", groups=4)
    assert m.stages[1][0].conv2.groups == 4
    assert m(torch.randn(2, 3, 112, 112)).shape == (2, 512)
    with pytest.raises(ValueError, match="groups"):
        build_backbone("ir_cbam_tiny", groups=3)


def test_non_square_input():
    m = build_backbone("ir_cbam_tiny", input_size=(112, 96)).eval()
    assert m(torch.randn(1, 3, 112, 96)).shape == (1, 512)
