import math

import pytest
import torch
import torch.nn.functional as F

from lqlib.heads import build_head


def _head(name, **kw):
    h = build_head(name, 2, 2, **kw)
    with torch.no_grad():
        h.weight.copy_(torch.eye(2))
    return h


def test_arcface_target_logit_is_s_cos_theta_plus_m():
    s, m, theta = 64.0, 0.5, math.pi / 3
    h = _head("arcface", s=s, m=m)
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]])
    logits, plain = h(emb, torch.tensor([0]), return_plain=True)
    assert logits[0, 0].item() == pytest.approx(s * math.cos(theta + m), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(s * math.sin(theta), rel=1e-5)  # non-target unchanged
    assert plain[0, 0].item() == pytest.approx(s * math.cos(theta), rel=1e-5)
    assert torch.equal(h(emb), plain)  # no labels → plain logits


def test_arcface_fallback_when_theta_plus_m_exceeds_pi():
    s, m, theta = 64.0, 0.5, math.pi - 0.1  # θ + m > π
    h = _head("arcface", s=s, m=m)
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]])
    logit = h(emb, torch.tensor([0]))[0, 0].item()
    expected = s * (math.cos(theta) - math.sin(math.pi - m) * m)
    assert logit == pytest.approx(expected, rel=1e-5)


def test_cosface():
    h = _head("cosface", s=30.0, m=0.35)
    emb = torch.tensor([[1.0, 0.0]])
    assert h(emb, torch.tensor([0]))[0, 0].item() == pytest.approx(30 * (1 - 0.35))


def test_curricularface_t_updates_and_hard_negative_modulation():
    s, m = 64.0, 0.5
    h = _head("curricularface", s=s, m=m).train()
    theta = math.pi / 3  # target cos 0.5, margin cos cos(θ+m)≈0.0707, other class cos sin θ≈0.866 → hard
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]])
    logits = h(emb, torch.tensor([0]))
    t = 0.01 * math.cos(theta)  # t ← 0.01·mean(cos_y) + 0.99·0
    assert h.t.item() == pytest.approx(t, rel=1e-5)
    c = math.sin(theta)
    assert logits[0, 1].item() == pytest.approx(s * c * (t + c), rel=1e-5)
    h(emb, torch.tensor([0]))
    assert h.t.item() == pytest.approx(0.99 * t + 0.01 * math.cos(theta), rel=1e-5)
    h.eval()
    h(emb, torch.tensor([0]))
    assert h.t.item() == pytest.approx(0.99 * t + 0.01 * math.cos(theta), rel=1e-5)  # frozen in eval


def test_unknown_head():
    with pytest.raises(ValueError, match="unknown head"):
        build_head("sphereface", 2, 2)


@pytest.mark.parametrize("name", ["arcface", "cosface", "curricularface"])
def test_head_is_fp32_under_bf16_autocast(name):
    """Cosines and margins stay fp32 inside a bf16 autocast region: a near-1 cosine (0.9998) would
    round to 1.0 in bf16 and move the ArcFace target logit at s=64 by whole units."""
    torch.manual_seed(0)
    head = build_head(name, 16, 5, s=64.0, m=0.5).eval()
    w = F.normalize(head.weight.detach(), dim=1)
    emb = w[[0, 1, 2]] + 0.01 * torch.randn(3, 16)   # close to their class centres: cos ≈ 0.9998
    labels = torch.tensor([0, 1, 2])
    ref, ref_plain = head(emb, labels, return_plain=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, plain = head(emb, labels, return_plain=True)
    assert out.dtype == torch.float32 and plain.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-4) and torch.allclose(plain, ref_plain, atol=1e-4)


def test_relational_gram_is_fp32_under_autocast():
    from lqlib.losses.relational import similarity_matrix

    x = torch.randn(6, 32)
    ref = similarity_matrix(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = similarity_matrix(x)
    assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=1e-6)
