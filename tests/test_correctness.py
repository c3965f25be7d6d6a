"""Packed per-pair correctness: exact round trip, small on disk, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from lqlib.evaluation.correctness import load_correctness, pack_correctness


def test_round_trip_and_size(tmp_path):
    rng = np.random.default_rng(0)
    ev = tmp_path / "eval"
    ev.mkdir()
    want = {}
    for stem in ("none_s0", "logit_s0", "logit_s1"):
        arrays = {f"{m}_x{s}": rng.random(3001) < 0.8 for m in ("both", "cross") for s in (1, 2, 4, 8)}
        np.savez_compressed(ev / f"{stem}.npz", **arrays)
        want[stem] = arrays
    index = pack_correctness(ev, tmp_path / "correct.npz")
    assert index["logit_s1"]["cross_x8"] == 3001 and set(index) == set(want)
    got = load_correctness(tmp_path / "correct.npz")
    assert set(got) == set(want)
    for stem in want:
        for k, v in want[stem].items():
            assert got[stem][k].dtype == bool and np.array_equal(got[stem][k], v)
    # 3 × 8 arrays of 3,001 pairs: 376 bytes each packed (+ ~200 bytes of zip/npy headers per array)
    size = (tmp_path / "correct.npz").stat().st_size
    assert size < 24 * (376 + 250)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no per-pair"):
        pack_correctness(tmp_path, tmp_path / "x.npz")
    np.savez(tmp_path / "bad.npz", both_x8=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="bad.npz"):
        pack_correctness(tmp_path, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a packed"):
        load_correctness(tmp_path / "plain.npz")
