"""Tests for lqlib.evaluation (k-fold verification, protocols, embedding, evaluate, tables, significance)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lqlib.evaluation import (PROTOCOLS, aggregate_seeds, degrade_eval, embed, evaluate, mcnemar, paired_bootstrap,
                        resolve_folds, results_table, tar_at_far, to_markdown, unpack_pairs, verify, verify_scores)

# ───────────────────────────────────────────────────────────────────────────── helpers ──


class PoolNet(nn.Module):
    """A fast deterministic stand-in backbone: 8×8 average pool → linear (B, 16)."""

    def __init__(self, seed: int = 0, out: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(3 * 8 * 8, out)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(out, 3 * 8 * 8, generator=g))
            self.fc.bias.zero_()
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1  # normalised at the boundary
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))


def unit2d(cos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of 2-D unit vectors whose cosine similarity is ``cos``."""
    th = np.arccos(cos)
    return np.stack([np.ones_like(cos), np.zeros_like(cos)], 1), np.stack([np.cos(th), np.sin(th)], 1)


def random_pairs(n_pairs: int, seed: int = 0, size: int = 112):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2 * n_pairs, 3, size, size), generator=g, dtype=torch.uint8)
    issame = torch.arange(n_pairs) % 2 == 0
    return images, issame


# ─────────────────────────────────────────────────────────────────────────── verify ──

# Hand computation (cosine similarity, same ⇔ s > t; 2 folds of 4 pairs):
#   fold 0: s = [0.9, 0.5, 0.6, 0.2], same = [T, T, F, F]
#   fold 1: s = [0.8, 0.85, 0.3, 0.1], same = [T, T, F, F]
# Held-out fold 0, train on fold 1: sorted 0.1F 0.3F 0.8T 0.85T — only t = (0.3+0.8)/2 = 0.55 gets 4/4.
#   test fold 0 at 0.55: 0.9→same ✓, 0.5→diff ✗, 0.6→same ✗, 0.2→diff ✓  ⇒ 50 %.
# Held-out fold 1, train on fold 0: sorted 0.2F 0.5T 0.6F 0.9T; candidates (correct of 4):
#   t<0.2: 2, t=0.35: 3, t=0.55: 2, t=0.75: 3, t>0.9: 2 — a tie between 0.35 and 0.75; the tie rule
#   (fewest "same" predictions = largest similarity threshold) picks 0.75.
#   test fold 1 at 0.75: 0.8 ✓, 0.85 ✓, 0.3 ✓, 0.1 ✓ ⇒ 100 %.
# ⇒ acc_mean 75 %, acc_std (population) 25 %, thresholds [0.55, 0.75].
HAND_S = np.array([0.9, 0.5, 0.6, 0.2, 0.8, 0.85, 0.3, 0.1])
HAND_Y = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
HAND_F = np.array([0, 0, 0, 0, 1, 1, 1, 1])


def test_verify_scores_hand_example():
    r = verify_scores(HAND_S, HAND_Y, HAND_F, higher_is_same=True)
    assert r.fold_acc.tolist() == [50.0, 100.0]
    assert r.acc_mean == pytest.approx(75.0) and r.acc_std == pytest.approx(25.0)
    np.testing.assert_allclose(r.fold_thresholds, [0.55, 0.75])
    assert r.correct.tolist() == [True, False, False, True, True, True, True, True]
    assert r.n_pairs == 8 and r.n_impostors == 4


def test_verify_embeddings_hand_example_both_metrics():
    e1, e2 = unit2d(HAND_S)
    cos = verify(e1, e2, HAND_Y, HAND_F, metric="cosine")
    np.testing.assert_allclose(cos.fold_thresholds, [0.55, 0.75], atol=1e-9)
    assert cos.acc_mean == pytest.approx(75.0)
    # squared L2 of unit vectors = 2 − 2·cos: same folds, same decisions, thresholds 2 − 2t
    dist, correct = verify(torch.tensor(e1), torch.tensor(e2), torch.tensor(HAND_Y), torch.tensor(HAND_F),
                           metric="insightface", return_correct=True)
    np.testing.assert_allclose(dist.fold_thresholds, [0.9, 0.5], atol=1e-9)
    assert dist.acc_mean == pytest.approx(75.0) and correct.tolist() == cos.correct.tolist()
    assert not dist.higher_is_same and dist.metric == "sqeuclidean"


def test_threshold_grid_search_uses_tie_rule():
    r = verify_scores(HAND_S, HAND_Y, HAND_F, thresholds=np.arange(-1, 1.001, 0.05))
    # fold 1 training plateau 0.35..0.55 and 0.75..0.85 → largest of the tied grid points
    assert r.fold_thresholds[1] == pytest.approx(0.85)


def test_perfectly_separable_is_100():
    rng = np.random.default_rng(0)
    e1 = rng.normal(size=(600, 32))
    y = np.arange(600) % 2 == 0
    e2 = np.where(y[:, None], e1 + 0.05 * rng.normal(size=e1.shape), rng.normal(size=e1.shape))
    for metric in ("insightface", "cosine"):
        r = verify(e1, e2, y, metric=metric)
        assert r.acc_mean == 100.0 and r.acc_std == 0.0 and r.auc == 1.0
        assert r.tar_far1e3 == 100.0 and r.tar_far1e2 == 100.0
        assert len(r.fold_acc) == 10


def test_random_embeddings_near_chance():
    rng = np.random.default_rng(1)
    e1, e2 = rng.normal(size=(2000, 64)), rng.normal(size=(2000, 64))
    y = rng.random(2000) < 0.5
    r = verify(e1, e2, y)
    assert 45.0 <= r.acc_mean <= 55.0
    assert 0.45 <= r.auc <= 0.55
    assert r.fpr[0] == 0 and r.tpr[-1] == 1


def test_input_validation():
    e = np.ones((10, 4))
    bad = e.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        verify(bad, e, np.ones(10, bool), nfolds=2)
    with pytest.raises(ValueError, match="non-finite"):
        PROTOCOLS["askd"].score(e, bad, resolve_folds(10, nfolds=2))
    with pytest.raises(ValueError):
        verify(e, e[:9], np.ones(10, bool), nfolds=2)
    with pytest.raises(ValueError, match="entries"):
        verify(e, e, np.ones(9, bool), nfolds=2)
    with pytest.raises(ValueError, match="at least 2 folds"):
        verify(e, e, np.ones(10, bool), np.zeros(10, int))
    with pytest.raises(ValueError):
        verify(e, e, np.ones(10, bool), nfolds=1)


def test_resolve_folds_and_tar():
    assert resolve_folds(10, nfolds=3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]  # as KFold(3)
    fpr = np.array([0.0, 0.0, 0.002, 0.02, 1.0])
    tpr = np.array([0.0, 0.5, 0.6, 0.9, 1.0])
    assert tar_at_far(fpr, tpr, 1e-3) == 0.5  # step: best real threshold with FPR ≤ 1e-3
    assert tar_at_far(fpr, tpr, 1e-2) == 0.6
    assert tar_at_far(fpr, tpr, 1e-3, interp="linear") == pytest.approx(0.55)


# ──────────────────────────────────────────────────────────────────────── protocols ──

def test_insightface_protocol_sums_flips():
    e1, e1f = np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]])
    e2 = e2f = np.array([[1.0, 1, 0]])
    f = np.array([0])
    p = PROTOCOLS["insightface"]
    assert p.score(e1, e2, f, e1f, e2f).scores[0] == pytest.approx(0.0)  # (1,1,0)/√2 on both sides
    assert p.score(e1, e2, f).scores[0] == pytest.approx(2 - 2 / np.sqrt(2))
    assert not p.score(e1, e2, f).higher_is_same


def test_askd_protocol_fold_mean_subtraction():
    rng = np.random.default_rng(2)
    n, d = 12, 5
    a, b, af, bf = (rng.normal(size=(n, d)) for _ in range(4))
    folds = np.repeat([0, 1, 2], 4)
    ps = PROTOCOLS["askd"].score(a, b, folds, af, bf)
    assert ps.scores.shape == (3, n) and ps.higher_is_same and ps.fold_ids.tolist() == [0, 1, 2]
    fa, fb = np.concatenate([a, af], 1), np.concatenate([b, bf], 1)
    for k in range(3):
        tr = folds != k
        mu = np.concatenate([fa[tr], fb[tr]]).mean(0)
        x, y = fa - mu, fb - mu
        want = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        np.testing.assert_allclose(ps.scores[k], want, rtol=1e-12)
    # the mean subtraction really changes the scores vs. plain cosine of the concatenated features
    plain = (fa * fb).sum(1) / np.linalg.norm(fa, axis=1) / np.linalg.norm(fb, axis=1)
    assert not np.allclose(ps.scores[0], plain)
    # ...and makes them invariant to a common offset, unlike the InsightFace scores
    off = 10.0 * rng.normal(size=d)
    ps2 = PROTOCOLS["askd"].score(a + off, b + off, folds, af + off, bf + off)
    np.testing.assert_allclose(ps2.scores, ps.scores, atol=1e-10)
    i1 = PROTOCOLS["insightface"].score(a, b, folds, af, bf).scores
    i2 = PROTOCOLS["insightface"].score(a + off, b + off, folds, af + off, bf + off).scores
    assert not np.allclose(i1, i2)
    # verify with per-fold score rows runs end to end
    r = PROTOCOLS["askd"].verify(a, b, np.arange(n) % 2 == 0, folds, emb1_flip=af, emb2_flip=bf)
    assert len(r.fold_acc) == 3 and r.scores.shape == (n,)


# ──────────────────────────────────────────────────────────────── embed / degradation ──

def test_embed_batches_flip_and_restores_mode():
    m = PoolNet().train()
    x, _ = random_pairs(10, size=32)
    e, ef = embed(m, x, batch_size=7)
    assert m.training  # mode restored
    assert e.dtype == torch.float32 and e.shape == (20, 16) and ef.shape == (20, 16)
    assert m.calls == [14, 14, 12]  # each batch with its flips in one forward
    from lqlib.images import normalize
    from lqlib.precision import autocast, autocast_dtype

    with torch.no_grad(), autocast("cpu", autocast_dtype("cpu")):  # the same numerics as embed
        np.testing.assert_allclose(e, m(normalize(x)).float(), atol=1e-5)
        np.testing.assert_allclose(ef, m(normalize(x.flip(-1))).float(), atol=1e-5)
    e2, none = embed(m, x, batch_size=64, flip=False)
    assert none is None and torch.allclose(e, e2, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        embed(m, x.float())


@pytest.mark.parametrize("random_sigma", [False, True])
def test_degrade_eval_deterministic_and_batch_independent(random_sigma):
    x, _ = random_pairs(150, seed=3, size=32)  # 300 images: crosses DEGRADE_CHUNK boundaries
    kw = {"blur_sigma": (0.1, 2.0)} if random_sigma else {}
    full = degrade_eval(x, 4, seed=5, degrade_kw=kw)
    assert torch.equal(full, degrade_eval(x, 4, seed=5, degrade_kw=kw))
    pieces = torch.cat([degrade_eval(x, 4, seed=5, indices=range(i, min(300, i + 50)), degrade_kw=kw)
                        for i in range(0, 300, 50)])
    assert torch.equal(full, pieces)
    odd = degrade_eval(x, 4, seed=5, indices=np.arange(1, 300, 2), degrade_kw=kw)
    assert torch.equal(full[1::2], odd)
    perm = np.random.default_rng(0).permutation(300)[:50]
    assert torch.equal(full[perm], degrade_eval(x, 4, seed=5, indices=perm, degrade_kw=kw))
    assert torch.equal(degrade_eval(x, 1, degrade_kw=kw), x)  # ×1 is the identity
    other = degrade_eval(x, 4, seed=6, degrade_kw=kw)
    assert torch.equal(full, other) == (not random_sigma)  # only random σ depends on the seed


# ──────────────────────────────────────────────────────────────────────────── evaluate ──

COLUMNS = ["scale", "eval_mode", "protocol", "acc_mean", "acc_std", "tar_far1e-3", "tar_far1e-2", "auc",
           "threshold_mean", "n_pairs", "dataset", "seconds"]


def test_evaluate_cross_uses_hr_gallery_and_shares_embeddings():
    x, y = random_pairs(30, seed=4, size=32)
    m = PoolNet()
    pairs = SimpleNamespace(images=x, issame=y, folds=torch.arange(30) // 10, name="toy")
    df, det = evaluate(m, pairs, scales=(1, 4), eval_mode="both+cross", batch_size=16, return_details=True)
    assert df.shape[0] == 4 and set(COLUMNS) <= set(df.columns)
    assert df["dataset"].eq("toy").all() and df["n_pairs"].eq(30).all()
    assert set(det) == {("both", 1), ("cross", 1), ("both", 4), ("cross", 4)}
    # forward passes: ×1 all 60 images, ×4 all 60 (cross reuses ×1's gallery and ×4's probes), ×2 for flips
    assert sum(m.calls) == 2 * (60 + 60)
    r1 = df[df.scale == 1].set_index("eval_mode")
    assert r1.loc["both", "acc_mean"] == r1.loc["cross", "acc_mean"]  # ×1: both ≡ cross
    # reproduce the ×4 cross row by hand: HR first images, degraded second images
    e, ef = embed(m, x)
    lr = degrade_eval(x, 4)
    el, elf = embed(m, lr)
    ps = PROTOCOLS["insightface"].score(e[0::2], el[1::2], resolve_folds(30, pairs.folds), ef[0::2], elf[1::2])
    want = verify_scores(ps, y, pairs.folds)
    got = df[(df.scale == 4) & (df["eval_mode"] == "cross")].iloc[0]
    assert got.acc_mean == pytest.approx(want.acc_mean) and got.auc == pytest.approx(want.auc)
    assert det[("cross", 4)].tolist() == want.correct.tolist()
    # ...and two identical calls give identical frames
    df2 = evaluate(m, pairs, scales=(1, 4), eval_mode="both+cross", batch_size=16)
    pd.testing.assert_frame_equal(df.drop(columns="seconds"), df2.drop(columns="seconds"))


def test_evaluate_nan_model_raises():
    class NaNNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.full((x.shape[0], 4), float("nan"))

    x, y = random_pairs(4, size=16)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(NaNNet(), (x, y), scales=(1,), nfolds=2)


def test_evaluate_tiny_backbone_shape_modes_and_batch_size_independence():
    from lqlib.models import build_backbone

    torch.manual_seed(0)
    model = build_backbone("ir_cbam_tiny")
    model.train()
    x, y = random_pairs(40, seed=7)
    # flip=False halves the forward passes (the flip paths are tested with PoolNet above)
    kw = dict(protocol="askd", degrade_kw={"degradation": "askd"}, seed=3, nfolds=4, flip=False)
    a = evaluate(model, (x, y), scales=(1, 4), eval_mode="both+cross", batch_size=7, **kw)
    assert model.training  # mode restored
    assert list(a.columns[:12]) == COLUMNS and a.shape == (4, 14)
    assert a["eval_mode"].tolist() == ["both", "cross", "both", "cross"] and a["protocol"].eq("askd").all()
    assert a["scale"].tolist() == [1, 1, 4, 4] and a["n_pairs"].eq(40).all() and a["dataset"].eq("pairs").all()
    assert a[["acc_mean", "acc_std", "auc", "tar_far1e-2"]].apply(np.isfinite).all().all()
    # same ×4 cross row with another batch size (and without the both-mode rows around it). CPU kernels
    # may differ by ~1e-6 between batch sizes; the degradation itself is bit-identical (tested above)
    b = evaluate(model, (x, y), scales=(4,), eval_mode="cross", batch_size=64, **kw)
    num = ["acc_mean", "acc_std", "tar_far1e-3", "tar_far1e-2", "auc", "threshold_mean"]
    np.testing.assert_allclose(a[num].to_numpy(float)[3:], b[num].to_numpy(float), atol=1e-4)


def test_unpack_pairs_validation():
    x, y = random_pairs(3, size=16)
    images, issame, folds, name = unpack_pairs((x, y, [0, 0, 1]))
    assert images is x and issame.dtype == bool and list(folds) == [0, 0, 1] and name == "pairs"
    with pytest.raises(ValueError, match="2 per pair"):
        unpack_pairs((x[:5], y))
    with pytest.raises(ValueError, match="uint8"):
        unpack_pairs((x.float(), y))
    with pytest.raises(TypeError):
        unpack_pairs(42)


# ───────────────────────────────────────────────────────────────────────────── tables ──

def _frame(accs, stds, eval_mode="both"):
    return pd.DataFrame({"scale": [1, 2, 4, 8], "eval_mode": eval_mode, "protocol": "insightface", "acc_mean": accs,
                         "acc_std": stds, "auc": 0.9, "n_pairs": 6000, "dataset": "lfw", "seconds": 1.0})


def test_results_table_and_markdown():
    frames = {"teacher": _frame([99.5, 98.0, 90.971, 70.0], [0.3, 0.4, 0.4234, 1.0]),
              "student": _frame([99.0, 97.0, 88.0, 65.0], [0.2, 0.5, 0.6, 1.1])}
    t = results_table(frames)
    assert list(t.columns) == ["×1", "×2", "×4", "×8"] and list(t.index) == ["teacher", "student"]
    assert t.loc["teacher", "×4"] == "90.97 ± 0.42"
    f = results_table(frames, with_std=False)
    assert f.loc["student", "×8"] == 65.0
    md = to_markdown(t)
    lines = md.strip().split("\n")
    assert lines[0] == "| method | ×1 | ×2 | ×4 | ×8 |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| teacher | 99.50 ± 0.30 | 98.00 ± 0.40 | 90.97 ± 0.42 | 70.00 ± 1.00 |"
    assert to_markdown(f).split("\n")[1] == "|---|---:|---:|---:|---:|"
    assert "| student | 99.00 | 97.00 | 88.00 | 65.00 |" in to_markdown(f)
    both = pd.concat([_frame([1, 2, 3, 4], [0] * 4), _frame([5, 6, 7, 8], [0] * 4, "cross")])
    assert list(results_table({"m": both}).index) == ["m [both]", "m [cross]"]
    assert list(results_table({"m": both}, eval_mode="cross").index) == ["m"]


def test_aggregate_seeds():
    s0, s1 = _frame([90.0, 80, 70, 60], [1.0] * 4), _frame([92.0, 82, 70, 64], [3.0] * 4)
    s0["seed"], s1["seed"] = 0, 1
    ag = aggregate_seeds([s0, s1])
    assert ag.shape[0] == 4 and ag["n_seeds"].eq(2).all()
    assert ag["acc_mean"].tolist() == [91.0, 81.0, 70.0, 62.0]
    np.testing.assert_allclose(ag["acc_mean_seeds_std"], [np.sqrt(2), np.sqrt(2), 0, 2 * np.sqrt(2)])
    assert ag["acc_std"].tolist() == [2.0] * 4 and "seed" not in ag
    t = results_table({"kd": ag})  # over-seed std is used for an aggregated frame
    assert t.loc["kd", "×8"] == "62.00 ± 2.83"


# ─────────────────────────────────────────────────────────────────────── significance ──

def test_significance_identical_and_known():
    rng = np.random.default_rng(0)
    c = rng.random(3000) < 0.9
    boot = paired_bootstrap(c, c)
    assert boot["delta"] == 0 and boot["p_value"] == 1.0 and boot["ci_low"] == boot["ci_high"] == 0
    mc = mcnemar(c, c)
    assert mc["p_value"] == 1.0
    a = np.ones(100, bool)
    b = a.copy()
    b[:10] = False  # A right on 10 pairs where B is wrong, never the reverse
    mc = mcnemar(a, b)
    assert mc["method"] == "exact-binomial" and mc["p_value"] == pytest.approx(2 * 0.5**10)
    assert mcnemar(a, b, exact=False)["p_value"] == pytest.approx(0.0044, abs=2e-4)  # χ²=8.1, cc
    bt = paired_bootstrap(a, b, n_boot=2000, seed=1)
    assert bt["delta"] == pytest.approx(10.0) and bt["ci_low"] > 0 and bt["p_value"] < 0.01
    assert paired_bootstrap(a, b, n_boot=2000, seed=1) == bt  # seeded


def test_table_order_puts_the_baselines_first_and_keeps_the_rest_in_order_of_appearance():
    from lqlib.evaluation.tables import table_order

    assert table_order(["+logit KD", "BasicNet-LR", "at", "+logit KD", "BasicNet-HR"]) == \
        ["BasicNet-HR", "BasicNet-LR", "+logit KD", "at"]
    assert table_order(["at"]) == ["at"]
