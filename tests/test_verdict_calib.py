"""bench/verdict_calib.py: the verdict study's validation choices and its capacity step (students trained
outside the study's folder, named by the preset's calib-* / capacity-* steps)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vc():
    spec = importlib.util.spec_from_file_location("verdict_calib", ROOT / "bench" / "verdict_calib.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_presets_outside_steps(vc):
    cal = vc.candidates()
    assert [(c["term"], c["weight"], c["seed"]) for c in cal] == [
        ("attention_c", 1.0, 100), ("attention_c", 5.0, 100), ("angular", 5.0, 100), ("angular", 50.0, 100)]
    assert all(c["run_dir"].startswith("runs/verdict_calib/") for c in cal)   # never inside runs/verdict/
    cap = vc.outside_steps("capacity")
    assert [(c["method"], c["seed"]) for c in cap] == [("none", 0), ("none", 1), ("angular_emb_c", 0),
                                                        ("angular_emb_c", 1)]
    assert len({c["run_dir"] for c in cap}) == 4 and all("verdict_capacity" in c["run_dir"] for c in cap)
    with pytest.raises(SystemExit, match="no nothing-\\* step"):
        vc.outside_steps("nothing")


def _row(term, w, x8, learned=True):
    return {"term": term, "weight": w, "acc": {"lfw-half-val": {8.0: x8}}, "learned": learned}


def test_choice_rule(vc):
    rows = [_row("a", 1.0, 85.0), _row("a", 5.0, 86.0), _row("b", 5.0, 80.0), _row("b", 50.0, 80.0),
            _row("c", 1.0, 70.0), _row("c", 9.0, 99.0, learned=False)]
    got = {t: r["weight"] for t, r in vc.choose(rows).items()}
    assert got == {"a": 5.0, "b": 5.0, "c": 1.0}     # higher x8; a tie -> the smaller; a non-learner is out
    with pytest.raises(SystemExit, match="'d'"):
        vc.choose([_row("d", 1.0, 90.0, learned=False)])
