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


@pytest.mark.parametrize("name", ["arcface", "cosface", "curricularface", "adaface"])
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


# ---------------------------------------------------------------------------------------------- AdaFace
def _ada(norms, thetas, labels=None, **kw):
    """An AdaFace head on 2-D embeddings (class centres e0, e1) and a batch with the given feature
    norms and angles θ to class 0."""
    h = _head("adaface", **kw).train()
    emb = torch.tensor([[n * math.cos(t), n * math.sin(t)] for n, t in zip(norms, thetas)])
    labels = torch.zeros(len(norms), dtype=torch.long) if labels is None else labels
    return h, emb, labels


def test_adaface_logits_for_known_norms_and_angles():
    # momentum 1: μ, σ are this batch's mean and unbiased std; h = 1 so that ẑ reaches the clip
    s, m, h, eps = 64.0, 0.4, 1.0, 1e-3
    norms, thetas = [10.0, 20.0, 30.0, 60.0], [math.pi / 3, math.pi / 4, math.pi / 6, math.pi / 2]
    head, emb, labels = _ada(norms, thetas, s=s, m=m, h=h, momentum=1.0)
    logits, plain = head(emb, labels, return_plain=True)
    mu = 30.0
    sigma = math.sqrt(((10 - mu) ** 2 + (20 - mu) ** 2 + 0 + (60 - mu) ** 2) / 3)   # 21.602469 (n − 1)
    assert head.batch_mean.item() == pytest.approx(mu) and head.batch_std.item() == pytest.approx(sigma, rel=1e-6)
    zhat = [-0.925777, -0.462889, 0.0, 1.0]     # (‖z‖ − μ)/(σ + ε)·h, the last clipped from 1.388666
    for i, (n, t) in enumerate(zip(norms, thetas)):
        assert min(1.0, (n - mu) / (sigma + eps) * h) == pytest.approx(zhat[i], abs=1e-6)
        expected = s * (math.cos(t - m * zhat[i]) - (m * zhat[i] + m))
        assert logits[i, 0].item() == pytest.approx(expected, rel=1e-5, abs=1e-4)
        assert logits[i, 1].item() == pytest.approx(s * math.sin(t), rel=1e-5, abs=1e-4)  # non-target: s·cos
        assert plain[i, 0].item() == pytest.approx(s * math.cos(t), rel=1e-5, abs=1e-4)
    # the same numbers written out: 64·(cos(π/3 + 0.370311) − 0.029689), …, 64·(cos(π/2 − 0.4) − 0.8)
    assert logits[:, 0].tolist() == pytest.approx([7.871947, 22.399887, 29.825626, -26.277226], abs=1e-3)
    assert torch.equal(head(emb), plain)  # no labels → plain logits (and no statistics update)


def test_adaface_running_statistics_after_two_steps():
    head, emb, labels = _ada([10.0, 20.0, 30.0], [0.3, 0.6, 0.9])   # defaults: momentum 0.01, h 0.333
    assert (head.batch_mean.item(), head.batch_std.item()) == (20.0, 100.0)   # the official initial values
    head(emb, labels)
    # μ ← 0.01·20 + 0.99·20 = 20, σ ← 0.01·10 + 0.99·100 = 99.1 (std of 10, 20, 30 with n − 1 is 10)
    assert head.batch_mean.item() == pytest.approx(20.0) and head.batch_std.item() == pytest.approx(99.1)
    _, emb2, labels2 = _ada([3.0, 5.0], [0.2, 1.0])
    out = head(emb2, labels2)
    # μ ← 0.01·4 + 0.99·20 = 19.84, σ ← 0.01·√2 + 0.99·99.1 = 98.1231421
    assert head.batch_mean.item() == pytest.approx(19.84, rel=1e-6)
    assert head.batch_std.item() == pytest.approx(98.1231421, rel=1e-6)
    z = (3.0 - 19.84) / (98.1231421 + 1e-3) * 0.333                 # −0.0571497: the updated μ, σ are used
    assert out[0, 0].item() == pytest.approx(64 * (math.cos(0.2 - 0.4 * z) - (0.4 * z + 0.4)), rel=1e-5)
    head.eval()                                                      # eval: statistics frozen, still used
    out_eval = head(emb2, labels2)
    assert head.batch_mean.item() == pytest.approx(19.84, rel=1e-6)
    assert torch.allclose(out_eval, out)
    assert {"batch_mean", "batch_std"} <= set(head.state_dict())     # buffers: checkpoints hold them


@pytest.mark.parametrize("theta", [0.3, 1.2, 2.4])
def test_adaface_limiting_cases_cosface_arcface(theta):
    """The paper: ẑ = −1 gives ArcFace (angular margin m), ẑ = 0 CosFace (additive margin m), ẑ = +1
    s·(cos(θ − m) − 2m). (ẑ = 0 is a pure CosFace margin, not a mix: g_angle = 0, g_add = m.)"""
    s, m = 64.0, 0.4
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]]) * 20.0   # ‖z‖ = 20
    lab = torch.tensor([0])

    def ada_at(mean):  # eval mode, σ = 1 − ε so that ẑ = (20 − μ)·h with h = 1
        h = _head("adaface", s=s, m=m, h=1.0).eval()
        h.batch_mean.fill_(mean)
        h.batch_std.fill_(1.0 - 1e-3)
        return h(emb, lab)[0, 0].item()

    cos_face = _head("cosface", s=s, m=m)(emb, lab)[0, 0].item()
    assert ada_at(20.0) == pytest.approx(cos_face, rel=1e-5, abs=1e-4)              # ẑ = 0
    assert ada_at(20.0) == pytest.approx(s * (math.cos(theta) - m), rel=1e-5, abs=1e-4)
    assert ada_at(25.0) == pytest.approx(s * math.cos(theta + m), rel=1e-5, abs=1e-4)  # ẑ = −1 (clipped from −5)
    if theta + m < math.pi:  # ArcFace's fall-back branch is not AdaFace's (it clips θ + g to π − ε)
        arc = _head("arcface", s=s, m=m)(emb, lab)[0, 0].item()
        assert ada_at(25.0) == pytest.approx(arc, rel=1e-5, abs=1e-4)
    # ẑ = +1: s·(cos(θ − m) − 2m), θ − m clipped to ≥ ε (θ = 0.3 < m: the target cosine stays ≤ cos ε)
    assert ada_at(15.0) == pytest.approx(s * (math.cos(max(theta - m, 1e-3)) - 2 * m), rel=1e-5, abs=1e-4)


def test_adaface_norm_is_gradient_stopped():
    """The margin reads ‖z‖ without a gradient: the loss depends on z only through its direction,
    so the gradient is orthogonal to every embedding (a head that let ‖z‖ into the graph would not be)."""
    head, emb, labels = _ada([10.0, 20.0, 30.0], [0.3, 0.6, 0.9], s=64.0, h=1.0, momentum=1.0)
    emb.requires_grad_(True)
    F.cross_entropy(head(emb, labels), labels).backward()
    assert emb.grad.abs().sum() > 0
    assert torch.allclose((emb.grad * emb).sum(1), torch.zeros(3), atol=1e-5)


def test_adaface_theta_clipped_near_pi():
    s, m, eps = 64.0, 0.4, 1e-3
    head, emb, labels = _ada([30.0], [math.pi - 0.05], s=s, m=m, h=1.0, momentum=1.0)
    head.eval().batch_mean.fill_(40.0)                         # ẑ = −1: θ + m > π is clipped to π − ε
    head.batch_std.fill_(1.0 - 1e-3)
    assert head(emb, labels)[0, 0].item() == pytest.approx(s * math.cos(math.pi - eps), rel=1e-6)


def test_adaface_bad_parameters():
    with pytest.raises(ValueError, match="momentum"):
        build_head("adaface", 2, 2, momentum=0.0)
    with pytest.raises(ValueError, match="h must"):
        build_head("adaface", 2, 2, h=-1.0)


def test_docs_head_table_lists_every_registered_head():
    from pathlib import Path

    from lqlib.heads import HEAD_NAMES, HEADS

    page = (Path(__file__).resolve().parents[1] / "docs" / "heads.md").read_text()
    table = page.split("# Margin heads", 1)[1].split("\n\n")[2]
    rows = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert rows == list(HEADS) and set(HEAD_NAMES) == set(HEADS)
