"""The teacher's convergence rule: decisions on fake accuracy curves, and the training loop stopping by it."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lqlib.config import TrainConfig
from lqlib.convergence import ConvergenceRule, first_stop
from lqlib.train import is_finished, train_teacher

RULE = ConvergenceRule(min_delta=0.25, patience=3, min_epochs=5)


def test_rule_on_a_fake_accuracy_curve():
    #        epoch: 1     2     3     4     5     6     7     8     9
    curve = [60.0, 70.0, 75.0, 75.2, 75.4, 75.1, 75.3, 75.2, 76.0]
    # gains (> best + 0.25): epochs 1, 2, 3, then 75.4 > 75.25 at epoch 5 (75.2 at epoch 4 is not);
    # 75.1, 75.3, 75.2 are no gain over 75.4 → 3 epochs without gain → stop after epoch 8
    d = first_stop(RULE, curve)
    assert d == {"stop": True, "epoch": 8, "best_epoch": 5, "best": 75.4, "epochs_since_best": 3,
                 "reason": "no gain > 0.25 in val_acc_x1 for 3 epochs (patience 3) after 8 ≥ 5 epochs"}
    assert RULE.decide(curve[:7]) == {"stop": False, "epoch": 7, "best_epoch": 5, "best": 75.4,
                                      "epochs_since_best": 2, "reason": "improved 2 epoch(s) ago (patience 3)"}


def test_min_epochs_and_min_delta():
    flat = [80.0] * 4
    d = RULE.decide(flat)                 # 3 epochs without gain, but 4 < min_epochs 5
    assert not d["stop"] and d["reason"] == "4 < min_epochs 5" and d["best_epoch"] == 1
    assert RULE.decide(flat + [80.0])["stop"]            # epoch 5: 4 epochs since best ≥ patience
    # +0.2 per epoch is below min_delta, but the best moves only on a gain, so every second epoch gains
    # (80.4 > 80.0 + 0.25 at epoch 3, 80.8 > 80.65 at 5, 81.2 at 7, 81.6 at 9): a slow climb never stops
    creeping = [80.0 + 0.2 * i for i in range(10)]
    d = first_stop(RULE, creeping)
    assert d["stop"] is False and d["best_epoch"] == 9 and d["epoch"] == 10


def test_nan_and_bad_rules():
    d = RULE.decide([math.nan] * 6)
    assert d["stop"] and d["best_epoch"] == 0 and d["best"] is None
    with pytest.raises(ValueError, match="unknown key"):
        ConvergenceRule.from_dict({"patiense": 3})
    with pytest.raises(ValueError, match="patience"):
        ConvergenceRule(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        ConvergenceRule(min_delta=-1)


DROPS = ConvergenceRule(min_delta=0.25, patience=2, min_epochs=4, lr_drops=2)


def test_plateaus_lower_the_rate_before_the_rule_may_stop():
    #        epoch: 1     2     3     4     5     6     7     8     9     10    11
    curve = [60.0, 70.0, 70.1, 70.2, 75.0, 75.1, 75.0, 76.0, 76.1, 76.0, 76.2]
    # gains at 1, 2; 3-4 none → plateau after epoch 4: drop 1 (rate x0.1), count afresh; 75.0 gains at 5;
    # 6-7 none → drop 2 after epoch 7; 76.0 gains at 8; 9-10 none → the third plateau stops after epoch 10
    assert [DROPS.decide(curve[:e])["lr_drops"] for e in range(1, 12)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    d = first_stop(DROPS, curve)
    assert d["stop"] and d["epoch"] == 10 and d["lr_drop_epochs"] == [4, 7] and d["best_epoch"] == 8
    assert d["reason"].endswith("after 2 rate drop(s) (epochs [4, 7])")
    assert DROPS.decide(curve[:4])["reason"] == "plateau: learning rate lowered (drop 1 of 2)"
    # the same curve without drops stops at the first plateau (epoch 4): drops only ever delay a stop
    assert first_stop(ConvergenceRule(min_delta=0.25, patience=2, min_epochs=4), curve)["epoch"] == 4
    # a drop counts patience afresh even without a gain: flat after the drop → stop `patience` epochs later
    flat = [80.0] * 10
    assert [DROPS.decide(flat[:e])["stop"] for e in range(1, 8)] == [False] * 6 + [True]
    assert first_stop(DROPS, flat)["lr_drop_epochs"] == [3, 5]
    assert DROPS.lr_scale(first_stop(DROPS, flat), 0.1) == pytest.approx(0.01)
    assert DROPS.lr_scale(None, 0.1) == 1.0
    # the rule without drops records as before (no new keys), one with drops names them
    assert "lr_drops" not in RULE.to_dict() and "lr_drops" not in RULE.decide(curve)
    assert DROPS.to_dict()["lr_drops"] == 2
    with pytest.raises(ValueError, match="lr_drops"):
        ConvergenceRule(lr_drops=-1)


BASE = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, backbone="ir_cbam_tiny",
            batch_size=8, lr=0.05, num_workers=0, progress=False, head_kw={"s": 16.0, "m": 0.2}, compile=False)


def test_config_refuses_early_stop_on_test_or_without_validation():
    with pytest.raises(ValueError, match="needs val_pairs"):
        TrainConfig(**BASE, early_stop={"patience": 2}).validate()
    with pytest.raises(ValueError, match="TEST set"):
        TrainConfig(**BASE, val_pairs="lfw-half", early_stop={"patience": 2}).validate()
    with pytest.raises(ValueError, match="not a validation column"):
        TrainConfig(**BASE, val_pairs="lfw-half-val", val_scales=[8], early_stop={"patience": 2}).validate()
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig(**BASE, val_pairs="lfw-half-val", early_stop={"epochs": 2}).validate()
    TrainConfig(**BASE, val_pairs="lfw-half-val", early_stop={"patience": 2}).validate()


@pytest.fixture(scope="module")
def val_bin(tmp_path_factory):
    from lqlib.data import write_bin
    from lqlib.data.synthetic import SyntheticFaces

    images, issame = SyntheticFaces(num_classes=4, images_per_class=4, seed=0).pairs(40)
    path = tmp_path_factory.mktemp("val") / "val.bin"
    write_bin(path, images, issame, folds=torch.arange(40) // 20)
    return path


def test_training_stops_by_the_rule_and_stays_stopped(tmp_path, val_bin):
    # min_delta 100: no epoch after the first can improve → stop after min_epochs = 2 of at most 6
    cfg = TrainConfig(name="t", out_dir=str(tmp_path / "t"), **BASE, epochs=6, val_pairs=str(val_bin),
                      val_scales=[1], early_stop={"min_delta": 100.0, "patience": 1, "min_epochs": 2})
    summary = train_teacher(cfg)
    conv = summary["convergence"]
    assert conv["epochs_trained"] == 2 and conv["max_epochs"] == 6 and conv["decision"]["stop"]
    assert conv["decision"]["best_epoch"] == 1 and len(conv["history"]) == 2
    assert conv["rule"] == {"metric": "val_acc_x1", "min_delta": 100.0, "patience": 1, "min_epochs": 2}
    assert summary["validation"] == {"pairs": str(val_bin), "role": "other", "scales": [1.0]}
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["convergence"] == conv
    assert is_finished(tmp_path / "t")                        # a stopped teacher is a finished teacher
    again = train_teacher(cfg)                                # a re-run resumes and does not train further
    assert again["convergence"]["epochs_trained"] == 2
    assert len((tmp_path / "t" / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


def test_the_trainer_lowers_the_rate_at_each_plateau(tmp_path, val_bin):
    # min_delta 100: only epoch 1 improves, so every `patience` = 1 epoch is a plateau: drops after epochs 2
    # and 3 (rate x0.5 each), stop after epoch 4 (>= min_epochs 2, one epoch at the lowest rate)
    cfg = TrainConfig(name="d", out_dir=str(tmp_path / "d"), **{**BASE, "lr": 0.08}, epochs=8, schedule="constant",
                      lr_gamma=0.5, val_pairs=str(val_bin), val_scales=[1],
                      early_stop={"min_delta": 100.0, "patience": 1, "min_epochs": 2, "lr_drops": 2})
    summary = train_teacher(cfg)
    conv = summary["convergence"]
    assert conv["epochs_trained"] == 4 and conv["decision"]["lr_drop_epochs"] == [2, 3]
    lrs = [float(line.split(",")[2]) for line in (tmp_path / "d" / "metrics.csv").read_text().splitlines()[1:]]
    header = (tmp_path / "d" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[2] == "lr"
    assert lrs == pytest.approx([0.08, 0.08, 0.04, 0.02])   # the rate each epoch ended with


def test_validation_pairs_of_the_training_split_are_refused(tmp_path, monkeypatch):
    import lqlib.train as T
    import lqlib.train_build as TB
    from lqlib.data.synthetic import SyntheticFaces

    # the check runs once the training split is known; a stub dataset, so no face is decoded
    monkeypatch.setattr(TB, "build_dataset", lambda *a, **k: (SyntheticFaces(num_classes=4, images_per_class=4),
                                                             4, "lfw-half"))
    cfg = TrainConfig(name="l", out_dir=str(tmp_path / "l"), **{**BASE, "data": "lfw-half"}, epochs=1,
                      val_pairs="lfw-half-val")
    with pytest.raises(ValueError, match="holds identities of the training split 'lfw-half'"):
        T.Trainer(cfg)._build()


def test_the_draft_verdict_recipe():
    from lqlib.config import recipe

    t = TrainConfig.from_dict(recipe("cpu_verdict", "teacher")).validate()
    s = TrainConfig.from_dict(recipe("cpu_verdict", "student")).validate()
    assert t.data == s.data == "lfw-half-val" and t.val_pairs == "lfw-half-val"
    assert t.early_stop["min_epochs"] >= 20 and t.epochs > t.early_stop["min_epochs"] and t.schedule == "step"
    assert not s.early_stop and s.val_pairs is None
