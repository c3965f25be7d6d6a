"""The attention measure for analysis: per-face Pearson similarity of maps, intervals across seeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lqlib.attention_similarity import (attention_measure, distinct_faces, face_block_similarity,
                                        model_block_similarity, similarity_intervals)
from lqlib.data import PairSet
from lqlib.models import AttentionMaps, build_backbone


def _sp(rows):
    return AttentionMaps(None, torch.tensor(rows, dtype=torch.float32).view(len(rows), 1, 1, -1))


def test_face_block_similarity_hand_built_maps():
    # block 0: face 0 r = 0.8 (centred dot 4 / norms² 5·5), face 1 identical maps → 1
    # block 1: face 0 mirror images around 0.85 → r = −1 (cosine 0.993103); face 1 constant teacher map → 0
    t = [_sp([[1, 2, 3, 4], [1, 2, 3, 4]]), _sp([[0.9, 0.8, 0.9, 0.8], [0.5, 0.5, 0.5, 0.5]])]
    s = [_sp([[1, 3, 2, 4], [1, 2, 3, 4]]), _sp([[0.8, 0.9, 0.8, 0.9], [0.1, 0.9, 0.2, 0.3]])]
    r = face_block_similarity(t, s)
    assert r.shape == (2, 2) and r.dtype == np.float64
    np.testing.assert_allclose(r, [[0.8, -1.0], [1.0, 0.0]], atol=1e-6)
    cos = face_block_similarity(t, s, measure="cosine")
    assert cos[0, 1] == pytest.approx(2.88 / 2.90, abs=1e-6) and cos[1, 0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="channel"):
        face_block_similarity(t, s, kind="channel")       # these blocks have no channel map
    with pytest.raises(ValueError, match="pairing"):
        face_block_similarity(t, s[:1])
    assert face_block_similarity(t, s[:1], pairing=[(1, 0)]).shape == (2, 1)


def _seed_faces(m0, m1):
    """Two faces per seed with means m0 (block 0) and m1 (block 1), each face ±0.1 around the mean."""
    return np.array([[m0 - 0.1, m1 - 0.1], [m0 + 0.1, m1 + 0.1]])


def test_intervals_t_across_seeds_golden():
    df = similarity_intervals({0: _seed_faces(0.5, 0.2), 1: _seed_faces(0.6, 0.2), 2: _seed_faces(0.7, 0.2)})
    assert df["mean"].tolist() == pytest.approx([0.6, 0.2])
    assert df["seeds_sd"].tolist() == pytest.approx([0.1, 0.0], abs=1e-12)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)           # t_{0.975, 2} · sd / √n = 0.248414
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert df.loc[0, "ci_low"] == pytest.approx(0.6 - half) and df.loc[0, "ci_high"] == pytest.approx(0.6 + half)
    assert df.loc[1, "ci_low"] == pytest.approx(0.2) and df.loc[1, "ci_high"] == pytest.approx(0.2)
    # two faces ±0.1: bootstrap means are m−0.1, m, m+0.1 (¼, ½, ¼) → percentile interval ±0.1
    assert df["face_ci_halfwidth"].tolist() == pytest.approx([0.1, 0.1])
    assert set(df["interval"]) == {"t across 3 seeds"} and set(df["n_seeds"]) == {3} and set(df["n_faces"]) == {2}


def test_two_seed_interval_is_cut_to_the_range_of_r():
    df = similarity_intervals({0: _seed_faces(0.9, 0.5), 1: _seed_faces(0.5, 0.5)})
    # block 0: mean 0.7, sd 0.2828, t_{0.975,1} = 12.706 → ±2.54, cut to [−1, 1]; block 1: sd 0 → [0.5, 0.5]
    assert df.loc[0, "mean"] == pytest.approx(0.7)
    assert (df.loc[0, "ci_low"], df.loc[0, "ci_high"]) == (-1.0, 1.0)
    assert df.loc[1, "ci_low"] == pytest.approx(0.5) and df.loc[1, "ci_high"] == pytest.approx(0.5)


def test_intervals_one_seed_is_marked_and_errors():
    df = similarity_intervals({4: _seed_faces(0.5, 0.3)})
    assert df["interval"].tolist() == ["faces (1 seed)"] * 2 and df["seeds_sd"].isna().all()
    assert df["ci_low"].tolist() == pytest.approx([0.4, 0.2]) and df["ci_high"].tolist() == pytest.approx([0.6, 0.4])
    with pytest.raises(ValueError, match="no seeds"):
        similarity_intervals({})
    with pytest.raises(ValueError, match="same blocks"):
        similarity_intervals({0: _seed_faces(0.5, 0.3), 1: np.zeros((2, 3))})
    with pytest.raises(ValueError, match="at least 2"):
        similarity_intervals({0: np.zeros((1, 2))})


def test_models_batched_and_tidy_frame():
    torch.manual_seed(0)
    a, b = build_backbone("ir_cbam_tiny").eval(), build_backbone("ir_cbam_tiny").eval()
    faces = torch.randint(0, 256, (5, 3, 112, 112), dtype=torch.uint8)
    same = model_block_similarity(a, a, faces, faces, batch_size=2)
    assert same.shape == (5, len(a.block_stage)) and np.allclose(same, 1.0, atol=1e-4)
    ab = model_block_similarity(a, b, faces, faces, batch_size=2)
    np.testing.assert_allclose(ab, model_block_similarity(a, b, faces, faces, batch_size=64), atol=1e-5)
    assert (ab < 0.999).any()
    df = attention_measure(a, {"self": {0: a, 1: a}, "other": {0: b}}, faces, faces, n_boot=50)
    assert list(df["model"]) == ["self"] * len(a.block_stage) + ["other"] * len(a.block_stage)
    assert {"block", "stage", "mean", "ci_low", "ci_high", "interval", "measure", "kind"} <= set(df.columns)
    assert df[df.model == "self"]["mean"].tolist() == pytest.approx([1.0] * len(a.block_stage), abs=1e-4)
    assert set(df[df.model == "other"]["interval"]) == {"faces (1 seed)"}
    with pytest.raises(ValueError, match="same faces"):
        model_block_similarity(a, b, faces, faces[:3])


def test_distinct_faces():
    imgs = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 2, 2).clone()
    images = imgs[[0, 1, 0, 2, 3, 1]]                     # pairs (0,1), (0,2), (3,1)
    ps = PairSet(images, torch.tensor([True, False, True]), torch.tensor([0, 0, 1]), "t")
    got = distinct_faces(ps, 4)
    assert got[:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="fewer than 5"):
        distinct_faces(ps, 5)
