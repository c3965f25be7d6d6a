"""Hierarchical bootstrap (seeds, then identities) of a gain: exact cases and the clustering effect."""
from __future__ import annotations

import numpy as np
import pytest

from lqlib.evaluation.hierarchical import hierarchical_bootstrap, pair_identities
from lqlib.evaluation.significance import paired_bootstrap

IDS = np.repeat(np.arange(40), 4)          # 40 people, 4 same-person pairs each


def test_identical_models_and_total_dominance():
    a = {0: np.arange(160) % 3 == 0, 1: np.arange(160) % 2 == 0}
    r = hierarchical_bootstrap(a, a, IDS, IDS, n_boot=200)
    assert (r["delta"], r["ci_low"], r["ci_high"], r["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    ones, zeros = np.ones(160, bool), np.zeros(160, bool)
    r = hierarchical_bootstrap({0: ones, 1: ones}, {0: zeros, 1: zeros}, IDS, IDS, n_boot=199)
    assert (r["delta"], r["ci_low"], r["ci_high"]) == (100.0, 100.0, 100.0)
    assert r["p_value"] == pytest.approx(1 / 200) and r["n_seeds"] == 2 and r["n_identities"] == 40


def test_seed_draws():
    # seed 0: +100 points, seed 1: −100 points, whatever the identities → Δ* ∈ {−100, 0, 100} (¼, ½, ¼)
    ones, zeros = np.ones(160, bool), np.zeros(160, bool)
    r = hierarchical_bootstrap({0: ones, 1: zeros}, {0: zeros, 1: ones}, IDS, IDS, n_boot=2000, seed=3)
    assert r["delta"] == 0.0 and (r["ci_low"], r["ci_high"]) == (-100.0, 100.0) and r["p_value"] == 1.0
    with pytest.raises(ValueError, match="no seed in common"):
        hierarchical_bootstrap({0: ones}, {1: ones}, IDS, IDS)
    with pytest.raises(ValueError, match="entries"):
        hierarchical_bootstrap({0: ones[:10]}, {0: ones}, IDS, IDS)


def test_identity_clusters_widen_the_interval():
    # every pair of a person has the same outcome: A right on people 0..23, B on 0..19 → Δ = 4·4/160 = 10 points
    a = IDS < 24
    b = IDS < 20
    h = hierarchical_bootstrap({0: a}, {0: b}, IDS, IDS, n_boot=4000, seed=1)
    p = paired_bootstrap(a, b, n_boot=4000, seed=1)
    assert h["delta"] == pytest.approx(10.0) and p["delta"] == pytest.approx(10.0)
    assert (h["ci_high"] - h["ci_low"]) > 1.5 * (p["ci_high"] - p["ci_low"])
    again = hierarchical_bootstrap({0: a}, {0: b}, IDS, IDS, n_boot=4000, seed=1)
    assert again == h                                           # deterministic for a seed


def test_pair_identities_follow_load_pairs_order(tmp_path):
    from test_data_synth import make_data_dir

    root = make_data_dir(tmp_path / "data")
    i1, i2 = pair_identities("lfw-10fold", root)
    from lqlib.data import get_split, load_pairs

    pairs = get_split("lfw-10fold", root).pairs
    assert i1.tolist() == [p.path1.parent.name for p in pairs] and i2.tolist() == [p.path2.parent.name for p in pairs]
    assert ((i1 == i2) == load_pairs("lfw-10fold", root).issame.numpy()).all() and len(i1) == 8
    s1, _ = pair_identities("lfw-10fold", root, max_pairs=4)
    assert len(s1) == 4


def test_the_bootstrap_is_centred_on_the_gain_with_mixed_pairs():
    # 300 people; pair i is a same-person pair of person i (i < 300) or a pair of people i−300 and
    # (i−300+1) mod 300 (different). A is right on every pair, B only on the different-person pairs: Δ = 50
    # points. Weighting a same-person pair by w² (not w) weights those pairs ≈ 2:1 and centres Δ* near 66.7.
    k = np.arange(300)
    id1 = np.concatenate([k, k])
    id2 = np.concatenate([k, (k + 1) % 300])
    a = np.ones(600, bool)
    b = np.concatenate([np.zeros(300, bool), np.ones(300, bool)])
    r = hierarchical_bootstrap({0: a, 1: a}, {0: b, 1: b}, id1, id2, n_boot=2000, seed=2)
    assert r["delta"] == pytest.approx(50.0)
    assert r["ci_low"] < 50.0 < r["ci_high"]
    assert abs((r["ci_low"] + r["ci_high"]) / 2 - 50.0) < 1.0 and r["ci_high"] - r["ci_low"] < 10.0
    assert r["p_value"] == pytest.approx(1 / 2001)
