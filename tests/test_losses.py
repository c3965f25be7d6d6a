import math

import pytest
import torch

from lqlib.losses import LossComposer, ModelOutputs, Progress, attention_kd, build_kd_term, logit_kd, stage_pairing
from lqlib.models import AttentionMaps


def test_logit_kd_golden_T1():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    # CE = log(1 + e^-1) = 0.313262; p_t = (0.268941, 0.731059), p_s = reversed,
    # KL(p_t‖p_s) = (0.731059 − 0.268941)·ln(0.731059/0.268941) = 0.462117·1
    ce, kl = math.log(1 + math.exp(-1)), 0.462117
    assert logit_kd(s, t, y, T=1.0, lam=0.5).item() == pytest.approx(0.5 * ce + 0.5 * kl, abs=1e-5)
    assert logit_kd(s, t, y, T=1.0, lam=1.0).item() == pytest.approx(ce, abs=1e-6)


def test_logit_kd_T_squared_scaling():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    # at T=2 the logits become (0.5, 0): KL = (0.622459 − 0.377541)·0.5 = 0.122459; ×T² = 0.489836
    assert logit_kd(s, t, torch.tensor([0]), T=2.0, lam=0.0).item() == pytest.approx(4 * 0.122459, abs=1e-5)
    assert logit_kd(t, t, torch.tensor([1]), T=3.0, lam=0.0).item() == pytest.approx(0.0, abs=1e-7)


def test_logit_kd_bad_params():
    s = torch.zeros(1, 2)
    with pytest.raises(ValueError):
        logit_kd(s, s, torch.tensor([0]), T=0)
    with pytest.raises(ValueError):
        logit_kd(s, s, torch.tensor([0]), lam=1.5)


def _maps(c, sp):
    return AttentionMaps(torch.tensor([c], dtype=torch.float32), torch.tensor([sp], dtype=torch.float32).view(1, 1, 1, -1))


def test_attention_kd_identical_is_zero_and_orthogonal_values():
    a = [_maps([1, 2], [1, 0, 3]), _maps([0.5, 0.1], [2, 2, 2])]
    assert attention_kd(a, a).item() == pytest.approx(0.0, abs=1e-6)
    t = [_maps([1, 0], [1, 0, 0])] * 2
    s = [_maps([0, 1], [0, 1, 0])] * 2
    # every ρ = 1 − cos = 1: paper Σ (1+1)/2 = 2 blocks·1; askd Σ (1+1) = 4; mean = 1
    assert attention_kd(t, s, "paper").item() == pytest.approx(2.0)
    assert attention_kd(t, s, "askd").item() == pytest.approx(4.0)
    assert attention_kd(t, s, "mean").item() == pytest.approx(1.0)


def test_attention_kd_45_degrees_and_batch_mean():
    t = [AttentionMaps(torch.tensor([[1.0, 1.0], [1.0, 0.0]]), None)]
    s = [AttentionMaps(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), None)]
    # sample 0: ρ = 1 − 1/√2 = 0.292893; sample 1: ρ = 0 → batch mean 0.146447; channel only → paper = ρ_c
    assert attention_kd(t, s).item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2, abs=1e-6)


def test_attention_kd_pools_spatial_sizes_and_pairs_depths():
    t = [AttentionMaps(None, torch.ones(2, 1, 8, 8))]
    s = [AttentionMaps(None, torch.ones(2, 1, 4, 4))]
    assert attention_kd(t, s).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="pairing"):
        attention_kd(t * 2, s)
    assert stage_pairing([0, 0, 0, 1], [0, 1]) == [(2, 0), (3, 1)]
    assert stage_pairing([0, 0, 1, 1], [0, 0, 1, 1]) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_attention_kd_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        attention_kd([], [], "sum")


def test_composer_terms_and_ce_handling():
    torch.manual_seed(0)
    labels = torch.tensor([0, 1])
    logits = torch.randn(2, 3, requires_grad=True)
    maps = [AttentionMaps(torch.rand(2, 4), torch.rand(2, 1, 3, 3))]
    st = ModelOutputs(torch.randn(2, 8), logits, logits, maps)
    te = ModelOutputs(torch.randn(2, 8), torch.randn(2, 3), torch.randn(2, 3),
                      [AttentionMaps(torch.rand(2, 4), torch.rand(2, 1, 3, 3))])
    none = LossComposer()
    total, parts = none(st, None, labels, Progress())
    assert list(parts) == ["ce"] and not none.needs_teacher
    both = LossComposer({"logit": build_kd_term("logit", T=4, lam=0.5), "attention": build_kd_term("attention")},
                        {"logit": 1.0, "attention": 5.0})
    total, parts = both(st, te, labels, Progress())
    # the paper's Eq. 12: L = L_ArcFace (weight 1) + L_logit + L_att — the logit term does not remove the CE
    assert set(parts) == {"ce", "logit", "attention"}
    ce = torch.nn.functional.cross_entropy(logits.detach(), labels).item()
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert total.item() == pytest.approx(ce + parts["logit"].item() + 5 * parts["attention"].item(), rel=1e-6)
    assert both.effective_ce_weight == pytest.approx(1.5)  # 1 (ArcFace) + λ = 0.5 inside L_logit
    total.backward()
    assert logits.grad is not None
    # Hinton's form, only under its own name: the term replaces the CE (CE weight λ)
    hinton = LossComposer({"logit": build_kd_term("logit", T=4, lam=0.5, replace_ce=True)})
    _, parts = hinton(st, te, labels, Progress())
    assert set(parts) == {"logit"} and hinton.effective_ce_weight == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not used"):
        LossComposer({}, {"logit": 1.0})
    with pytest.raises(ValueError, match="unknown KD term"):
        build_kd_term("nope")


def test_every_method_keeps_the_arcface_ce_unless_named_otherwise():
    from lqlib.methods import METHODS, effective_ce_weight

    weights = {name: effective_ce_weight(name) for name in METHODS}
    assert weights["none"] == weights["attention"] == weights["logit+attention".split("+")[1]] == 1.0
    assert weights["logit"] == 1.5 and effective_ce_weight("logit+attention") == 1.5
    assert weights["logit_hinton"] == 0.5
    assert weights["labelfree"] == weights["labelfree_nofcr"] == 0.0
    assert {n for n, w in weights.items() if w < 1} == {"logit_hinton", "labelfree", "labelfree_nofcr"}
