"""attention_c: attention KD with centred maps (ρ = 1 − Pearson r), golden values computed by hand."""
from __future__ import annotations


import pytest
import torch

from lqlib.losses import ModelOutputs, attention_kd, build_kd_term
from lqlib.losses.base import Progress
from lqlib.methods import build_composer, effective_ce_weight, get_method, term_weights
from lqlib.models import AttentionMaps
from lqlib.models.maps import pearson_distance, pearson_per_sample


def _maps(c, sp):
    return AttentionMaps(torch.tensor([c], dtype=torch.float64), torch.tensor([sp], dtype=torch.float64).view(1, 1, 1, -1))


# teacher and student maps that are mirror images of each other around a high mean: the paper's cosine
# is ≈ 1 (ρ ≈ 0) although the maps disagree everywhere; Pearson r = −1 (ρ = 2).
T = [_maps([0.6, 0.7, 0.8], [0.9, 0.8, 0.9, 0.8])]
S = [_maps([0.8, 0.7, 0.6], [0.8, 0.9, 0.8, 0.9])]


def test_cosine_near_one_but_pearson_negative():
    cos_c = (0.48 + 0.49 + 0.48) / (0.36 + 0.49 + 0.64)          # 1.45 / 1.49 = 0.973154
    cos_s = (4 * 0.72) / (2 * 0.81 + 2 * 0.64)                     # 2.88 / 2.90 = 0.993103
    assert cos_c == pytest.approx(0.973154, abs=1e-6) and cos_s == pytest.approx(0.993103, abs=1e-6)
    paper = attention_kd(T, S, "paper").item()
    assert paper == pytest.approx(((1 - cos_c) + (1 - cos_s)) / 2, abs=1e-6)   # 0.016871: "students copy"
    assert paper == pytest.approx(0.016871, abs=1e-6)
    centred = attention_kd(T, S, "paper", measure="pearson").item()
    assert centred == pytest.approx(2.0, abs=1e-6)                  # (ρ_c + ρ_s)/2 = (2 + 2)/2
    assert attention_kd(T, S, "askd", measure="pearson").item() == pytest.approx(4.0, abs=1e-6)


def test_pearson_golden_values():
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]])
    s = torch.tensor([[1.0, 3.0, 2.0, 4.0], [3.0, 5.0, 7.0, 9.0], [0.1, 0.9, 0.2, 0.3]])
    # row 0: centred (−1.5, −.5, .5, 1.5)·(−1.5, .5, −.5, 1.5) = 4, norms² 5 and 5 → r = 0.8
    # row 1: s = 2t + 1 → r = 1 (invariant to scale and offset; cos would be 0.9949)
    # row 2: a constant teacher map has nothing to correlate → r = 0
    r = pearson_per_sample(t, s)
    assert r.tolist() == pytest.approx([0.8, 1.0, 0.0], abs=1e-6)
    assert pearson_distance(t, s).item() == pytest.approx((0.2 + 0.0 + 1.0) / 3, abs=1e-6)
    assert pearson_distance(t[:2], s[:2]).item() == pytest.approx(0.1, abs=1e-6)   # batch mean


def test_two_blocks_mixed_kinds_and_identical_maps():
    a = [_maps([1, 2], [1, 0, 3]), _maps([0.5, 0.1], [2, 2, 5])]
    assert attention_kd(a, a, measure="pearson").item() == pytest.approx(0.0, abs=1e-6)
    # block 0 identical (0); block 1: channel only, r([0.5, 0.9], [0.9, 0.5]) = −1 → ρ_c = 2, paper = ρ_c
    t = [_maps([1, 2], [1, 0, 3]), AttentionMaps(torch.tensor([[0.5, 0.9]]), None)]
    s = [_maps([1, 2], [1, 0, 3]), AttentionMaps(torch.tensor([[0.9, 0.5]]), None)]
    assert attention_kd(t, s, measure="pearson").item() == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match="measure"):
        attention_kd(t, s, measure="spearman")


def test_pearson_spatial_maps_are_pooled_before_centring():
    t = torch.tensor([1.0, 1.0, 3.0, 3.0]).view(1, 1, 1, 4).repeat(1, 1, 2, 1)   # 2×4, pools to (1, 3)
    s = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)                                  # 1×2
    val = attention_kd([AttentionMaps(None, t)], [AttentionMaps(None, s)], measure="pearson").item()
    assert val == pytest.approx(0.0, abs=1e-6)   # t pooled to 1×2 = (1, 3): r with (1, 2) is 1


def test_registered_term_and_method():
    m = get_method("attention_c")
    assert m.kd == {"attention_c": 5.0} and m.params == {"attention_c": {"reduction": "paper"}}
    assert effective_ce_weight("attention_c") == 1.0 and effective_ce_weight("logit+attention_c") == 1.5
    term = build_kd_term("attention_c")
    assert term.name == "attention_c" and term.measure == "pearson" and "attention" in term.needs
    out_t = ModelOutputs(embedding=torch.zeros(1, 2), attention=T)
    out_s = ModelOutputs(embedding=torch.zeros(1, 2), attention=S)
    prog = Progress()
    assert term(out_s, out_t, None, prog).item() == pytest.approx(2.0, abs=1e-6)
    assert build_kd_term("attention")(out_s, out_t, None, prog).item() == pytest.approx(0.016871, abs=1e-6)
    comp = build_composer(get_method("logit+attention_c"))
    assert set(comp.weights) == {"logit", "attention_c"} and comp.weights["attention_c"] == 5.0
    assert comp.weights["logit"] == 1.0


def test_a_student_trains_with_attention_c(tmp_path):
    import csv

    from lqlib.train import TrainConfig, train_student, train_teacher

    base = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, backbone="ir_cbam_tiny",
                epochs=1, batch_size=8, lr=0.05, num_workers=0, progress=False, head_kw={"s": 16.0, "m": 0.2},
                compile=False, device="cpu")
    train_teacher(TrainConfig(name="t", out_dir=str(tmp_path / "t"), **base))
    s = train_student(TrainConfig(name="s", out_dir=str(tmp_path / "s"), method="logit+attention_c", **{**base, "epochs": 2}),
                      teacher=str(tmp_path / "t"))
    rows = list(csv.DictReader(open(tmp_path / "s" / "metrics.csv")))
    vals = [float(r["loss_attention_c"]) for r in rows]
    assert len(vals) == 2 and all(0.0 < v < 2.0 * 4 for v in vals)     # Σ over 4 blocks of (ρ_c+ρ_s)/2, ρ ∈ [0, 2]
    assert s["effective_ce_weight"] == 1.5


def test_term_weights_are_the_registry_weights_with_the_runs_overrides():
    assert term_weights("logit+attention") == {"logit": 1.0, "attention": 5.0}      # the registered weights
    assert term_weights("attention_c", {"attention_c": 5.0}) == {"attention_c": 5.0}
    assert term_weights(get_method("angular_emb_c")) == {"angular": 5.0}
    assert term_weights(get_method("angular_emb_c"), {"angular": 50.0}) == {"angular": 50.0}
    assert term_weights("none") == {}
    with pytest.raises(ValueError, match="kd_weights names terms the method does not use: \\['attention'\\]"):
        term_weights("logit", {"attention": 2.0})
