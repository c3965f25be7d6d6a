"""Power of the paired t-test across seeds: golden values from the non-central t distribution."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lqlib.evaluation.power import add_mde, holm_first_alpha, mde, paired_t_power, seeds_needed


def test_textbook_power_values():
    # one-sample / paired two-sided t-test, alpha 0.05 (G*Power: d = 1 needs n = 10, power 0.8031;
    # d = 0.5 needs n = 34, power 0.8078, and n = 33 gives 0.7954)
    assert paired_t_power(1.0, 1.0, 10) == pytest.approx(0.803097, abs=1e-5)
    assert paired_t_power(0.5, 1.0, 34) == pytest.approx(0.807778, abs=1e-5)
    assert paired_t_power(0.5, 1.0, 33) == pytest.approx(0.795366, abs=1e-5)
    assert seeds_needed(1.0, 1.0) == 10 and seeds_needed(0.5, 1.0) == 34
    assert seeds_needed(2.0, 2.0) == 10                       # only effect / sd matters


def test_power_is_alpha_at_zero_symmetric_and_never_nan():
    assert paired_t_power(0.0, 1.0, 5, 0.01) == pytest.approx(0.01, abs=1e-12)
    assert paired_t_power(-1.0, 1.0, 10) == paired_t_power(1.0, 1.0, 10)
    assert paired_t_power(8.0, 1.0, 10) == 1.0                # scipy's far tail underflows to NaN there
    assert paired_t_power(1.0, 1.0, 3) < paired_t_power(1.0, 1.0, 5) < paired_t_power(1.0, 1.0, 10)


def test_the_first_studys_power_as_the_issue_states_it():
    # issue 27: 3 seeds, Holm over 14 tests → 9 % (logit x8, +2.07 ± 0.73), 34 % (+1.74 ± 0.28);
    # with 5 seeds 61 % and 100 %
    a = holm_first_alpha(0.05, 14)
    assert a == pytest.approx(0.05 / 14)
    assert round(100 * paired_t_power(2.07, 0.73, 3, a)) == 9
    assert round(100 * paired_t_power(1.74, 0.28, 3, a)) == 34
    assert round(100 * paired_t_power(2.07, 0.73, 5, a)) == 61
    assert round(100 * paired_t_power(1.74, 0.28, 5, a)) == 100


def test_mde_inverts_power():
    assert mde(1.0, 10) == pytest.approx(0.996001, abs=1e-5)
    assert mde(1.0, 2) == pytest.approx(11.549888, abs=1e-4)   # two seeds: one df, a wide t
    for sd, n, alpha in [(0.73, 5, 0.05 / 5), (0.28, 3, 0.01), (2.0, 8, 0.05)]:
        d = mde(sd, n, alpha)
        assert paired_t_power(d, sd, n, alpha) == pytest.approx(0.8, abs=1e-7)
    assert mde(2.0, 10) == pytest.approx(2 * mde(1.0, 10))


def test_bad_inputs():
    with pytest.raises(ValueError, match="n >= 2"):
        paired_t_power(1.0, 1.0, 1)
    with pytest.raises(ValueError, match="sd"):
        mde(0.0, 5)
    with pytest.raises(ValueError, match="family_size"):
        holm_first_alpha(0.05, 0)
    with pytest.raises(ValueError, match="effect"):
        seeds_needed(0.0, 1.0)
    with pytest.raises(ValueError, match="power"):
        mde(1.0, 5, 0.05, power=1.0)


def test_add_mde_to_a_tests_table():
    tests = pd.DataFrame({"method": ["a", "b", "c"], "n": [5, 3, 1], "delta": [1.0, -2.0, 0.5],
                          "delta_sd": [1.0, 0.5, np.nan], "p": [0.01, 0.2, np.nan]})
    out = add_mde(tests, family_size=5)
    assert list(out["alpha_first"]) == [0.01] * 3
    assert out.loc[0, "mde"] == pytest.approx(mde(1.0, 5, 0.01))
    assert out.loc[1, "power_at_delta"] == pytest.approx(paired_t_power(2.0, 0.5, 3, 0.01))
    assert math.isnan(out.loc[2, "mde"]) and "mde" not in tests.columns
    assert add_mde(tests).loc[0, "alpha_first"] == pytest.approx(0.025)   # default m: the 2 rows with a test


def _results():
    rows = []
    for seed, (base, m) in enumerate([(80.0, 82.0), (81.0, 82.5), (82.0, 85.5)]):   # differences 2, 1.5, 3.5
        rows += [{"method": "none", "seed": seed, "scale": 8, "eval_mode": "both", "acc_mean": base},
                 {"method": "logit", "seed": seed, "scale": 8, "eval_mode": "both", "acc_mean": m},
                 {"method": "logit", "seed": seed, "scale": 8, "eval_mode": "cross", "acc_mean": 0.0}]
    return pd.DataFrame(rows)


def test_paired_differences_and_power_plan():
    from lqlib.evaluation.power import paired_differences, power_plan, sd_upper_bound

    assert paired_differences(_results(), "logit", "none", 8) == {0: 2.0, 1: 1.5, 2: 3.5}
    with pytest.raises(ValueError, match="attention"):
        paired_differences(_results(), "attention", "none", 8)
    # sd of (2, 1.5, 3.5) = sqrt(((−1/3)² + (−5/6)² + (7/6)²)/2) = sqrt(13/12) = 1.040833
    # 80 % upper bound with 2 df: sd·sqrt(2/χ²_{0.2,2}); χ² with 2 df is exponential: χ²_{0.2,2} = −2 ln 0.8
    closed = math.sqrt(13 / 12 * 2 / (-2 * math.log(0.8)))
    assert closed == pytest.approx(2.203377, abs=1e-6)
    assert sd_upper_bound(math.sqrt(13 / 12), 3) == pytest.approx(closed, rel=1e-9)
    plan = power_plan(_results(), [{"name": "H1", "method": "logit", "baseline": "none", "scale": 8}] * 2,
                      seeds=(3, 5), targets=(2.0,))
    r = plan.iloc[0]
    assert r["alpha_first"] == pytest.approx(0.025) and r["n_first"] == 3
    assert r["delta"] == pytest.approx(7 / 3) and r["sd"] == pytest.approx(math.sqrt(13 / 12))
    assert r["power_n5"] == pytest.approx(paired_t_power(7 / 3, math.sqrt(13 / 12), 5, 0.025))
    assert r["mde_n3"] == pytest.approx(mde(math.sqrt(13 / 12), 3, 0.025))
    assert r["seeds_for_2"] == seeds_needed(2.0, math.sqrt(13 / 12), 0.025)
    assert r["seeds_for_2_sd_up"] == seeds_needed(2.0, sd_upper_bound(math.sqrt(13 / 12), 3), 0.025)
    assert r["seeds_for_2_sd_up"] > r["seeds_for_2"]
