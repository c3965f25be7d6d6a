"""1:N identification metrics: golden values on a hand-built similarity matrix (ties, an identity with two
gallery images, distractors, non-mated probes), block invariance, and a brute-force reference."""
import numpy as np
import pytest

from lqlib.evaluation.identification import (NO_IDENTITY, identify, identify_scores, image_features, l2_normalize,
                                             templates)

# gallery: identity 10, identity 20 (two images), identity 30, one distractor
G = np.array([10, 20, 20, 30, NO_IDENTITY])
S = np.array([
    [0.90, 0.50, 0.40, 0.30, 0.10],   # 10: rank 1, AP 1
    [0.80, 0.70, 0.20, 0.75, 0.10],   # 20: mated 0.7, 0.2; wrong >= 0.7: 2 -> rank 3; AP (1/3 + 2/4) / 2
    [0.60, 0.10, 0.10, 0.60, 0.60],   # 30: tie with two wrong items -> rank 3 (pessimistic), AP 1/3
    [0.10, 0.50, 0.50, 0.45, 0.00],   # 20: both mated on top -> rank 1, AP 1
    [0.30, 0.20, 0.10, 0.00, 0.95],   # 99: non-mated, top 0.95
    [0.40, 0.10, 0.10, 0.10, 0.10],   # no identity: non-mated, top 0.40
    [0.00, 0.65, 0.00, 0.00, 0.00],   # 77: non-mated, top 0.65
])
P = np.array([10, 20, 30, 20, 99, NO_IDENTITY, 77])


def test_golden_cmc_map():
    r = identify_scores(S, P, G)
    assert r.rank.tolist() == [1, 3, 3, 1]
    assert r.n_mated == 4 and r.n_nonmated == 3 and r.n_gallery == 5
    np.testing.assert_allclose(r.cmc(5), [50.0, 50.0, 100.0, 100.0, 100.0])
    np.testing.assert_allclose(r.ap, [1.0, (1 / 3 + 2 / 4) / 2, 1 / 3, 1.0])
    assert r.mAP == pytest.approx(100 * (1 + 5 / 12 + 1 / 3 + 1) / 4)  # 68.75
    s = r.summary()
    assert (s["rank1"], s["rank5"], s["rank20"]) == (50.0, 100.0, 100.0)
    assert s["mAP"] == pytest.approx(68.75)


def test_golden_dir_at_fpir():
    r = identify_scores(S, P, G)
    np.testing.assert_allclose(sorted(r.nonmated_top), [0.40, 0.65, 0.95], rtol=1e-6)
    # FPIR 34 %: one false alarm of three allowed -> threshold just above 0.65: probe 0 (0.90) counts, probe 3 (0.50) not
    assert r.dir_at(0.34) == pytest.approx((25.0, 100 / 3))
    assert r.threshold_at(0.34) > np.float32(0.65) and r.threshold_at(0.34) == pytest.approx(0.65)
    # FPIR 70 %: two allowed -> threshold just above 0.40: both rank-1 probes
    assert r.dir_at(0.70) == pytest.approx((50.0, 200 / 3))
    # FPIR 10 %: none allowed -> above the largest non-mated score, 0.95: nobody
    assert r.dir_at(0.10) == (0.0, 0.0)
    # FPIR 100 %: no threshold -> the rank-1 rate
    assert r.dir_at(1.0) == (50.0, 100.0)
    # a rank-3 probe never counts, whatever its score: raise probe 1's mated score above every threshold
    s2 = S.copy()
    s2[1, 2] = 0.99  # now mated 0.99 is rank 1
    assert identify_scores(s2, P, G).dir_at(0.10) == (25.0, 0.0)


def test_without_nonmated_probes_dir_is_nan():
    r = identify_scores(S[:4], P[:4], G)
    assert np.isnan(r.dir_at(0.01)[0]) and r.n_nonmated == 0


def test_top_k_and_block_invariance():
    r = identify_scores(S, P, G, top_k=3)
    assert r.top_index[0].tolist() == [0, 1, 2]
    assert r.top_index[2].tolist() == [0, 3, 4]  # ties: earlier gallery item first
    np.testing.assert_allclose(r.top_score[1], [0.80, 0.75, 0.70], rtol=1e-6)
    small = identify_scores(S, P, G, top_k=3, probe_block=2, gallery_block=2)
    for a in ("rank", "ap", "best_mated", "nonmated_top", "top_index", "top_score"):
        np.testing.assert_array_equal(getattr(small, a), getattr(r, a))


def _reference(scores, probe_labels, gallery_labels):
    """Brute force: sort each probe's gallery by score, wrong items first among equal scores."""
    ranks, aps = [], []
    for s, lab in zip(scores, probe_labels):
        correct = (gallery_labels == lab) & (lab != NO_IDENTITY)
        if not correct.any():
            continue
        order = np.lexsort((correct, -s))  # by score desc, then wrong (False) before correct
        pos = np.flatnonzero(correct[order]) + 1
        ranks.append(pos[0])
        aps.append(np.mean(np.arange(1, len(pos) + 1) / pos))
    return np.array(ranks), np.array(aps)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 15, 120)
    g[rng.random(120) < 0.2] = NO_IDENTITY
    p = rng.integers(0, 20, 70)
    s = rng.integers(0, 6, (70, 120)).astype(np.float32) / 5  # 6 values: ties everywhere
    ref_rank, ref_ap = _reference(s, p, g)
    for pb, gb in ((2048, 8192), (16, 7)):
        r = identify_scores(s, p, g, probe_block=pb, gallery_block=gb)
        np.testing.assert_array_equal(r.rank, ref_rank)
        np.testing.assert_allclose(r.ap, ref_ap)


def test_many_gallery_images_per_identity_uses_sorted_counting():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(4), 12)  # 12 images per identity (> 8: the sort-based count)
    p = rng.integers(0, 5, 30)
    s = rng.integers(0, 9, (30, len(g))).astype(np.float32)
    r = identify_scores(s, p, g, gallery_block=10)
    ref_rank, ref_ap = _reference(s, p, g)
    np.testing.assert_array_equal(r.rank, ref_rank)
    np.testing.assert_allclose(r.ap, ref_ap)


def test_identify_from_features_equals_cosine_matrix():
    rng = np.random.default_rng(3)
    gf, pf = rng.normal(size=(50, 16)), rng.normal(size=(20, 16))
    g, p = np.arange(50) % 25, rng.integers(0, 30, 20)
    r = identify(pf, p, gf, g, gallery_block=9, probe_block=7)
    ref = identify_scores(l2_normalize(pf) @ l2_normalize(gf).T, p, g)
    np.testing.assert_array_equal(r.rank, ref.rank)
    np.testing.assert_allclose(r.ap, ref.ap)


def test_templates_and_flip_features():
    f = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [0.0, -1.0]])
    t, lab = templates(f, np.array([7, 7, NO_IDENTITY, 3]))
    assert lab.tolist() == [7, 3, NO_IDENTITY]
    np.testing.assert_allclose(t, [[np.sqrt(0.5), np.sqrt(0.5)], [0.0, -1.0], [0.6, 0.8]], atol=1e-6)
    feat = image_features(np.array([[2.0, 0.0]]), np.array([[0.0, 5.0]]))
    np.testing.assert_allclose(feat, [[np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="does not match"):
        identify_scores(S[:, :3], P, G)
    with pytest.raises(ValueError, match="NaN"):
        identify(np.full((2, 4), np.nan), [1, 2], np.ones((3, 4)), [1, 2, 3])
    with pytest.raises(ValueError, match="probes and a gallery"):
        identify_scores(np.zeros((2, 0)), [1, 2], np.array([], dtype=int))
