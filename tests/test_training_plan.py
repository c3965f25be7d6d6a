"""A run's plan (lqlib.training_plan): resolved and checked once, written before the first step, read back by the
trainer, the study's model list and the curve figure; a run folder without one reads as before."""
import json

import pytest

from lqlib import paths
from lqlib import study as S
from lqlib import training_plan as TP
from lqlib.train import Trainer, train_student, train_teacher

OVR = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, max_images=None, epochs=1,
           batch_size=8, lr=0.05, progress=False, head_kw={"s": 16.0, "m": 0.2}, device="cpu")


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    st = S.Study("p")
    train_teacher(S.training_plan(st, "teacher", recipe="smoke", overrides=OVR))
    return st


def test_unknown_kd_terms_and_parameters_are_one_error_naming_them(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path)
    st = S.Study("e")
    plan = lambda **kw: S.training_plan(st, "student", recipe="smoke", method="logit", overrides=OVR, **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"KD_WEIGHTS names term\(s\) \['attention'\] that method 'logit' does not use"):
        plan(kd_weights={"attention": 2.0})
    with pytest.raises(ValueError, match=r"KD_PARAMS names term\(s\) \['atention'\]"):  # once ignored silently
        plan(kd_params={"atention": {"T": 2.0}})
    with pytest.raises(ValueError, match=r"KD_PARAMS\['logit'\] names parameter\(s\) \['tau'\]"):
        plan(kd_params={"logit": {"tau": 2.0}})
    assert not (tmp_path / "e").exists()                         # nothing written


def test_the_plan_holds_the_effective_terms_and_the_key():
    from lqlib.config import TrainConfig

    p = TP.plan_training(TrainConfig(method="logit+attention", kd_weights={"attention": 10},
                                     kd_params={"logit": {"T": 2.0}}, teacher="faceapi-resnet"))
    assert p.kd_weights == {"logit": 1.0, "attention": 10.0}       # the registry's logit weight, the run's attention
    assert p.kd_params["logit"]["T"] == 2.0 and "lam" in p.kd_params["logit"]   # the run's T, the method's λ
    assert str(p.key) == "logit+attention[attention=10,logit.T=2]@faceapi-resnet"
    assert p.teacher == "faceapi-resnet" and p.teacher_id == "name:faceapi-resnet"
    assert TP.TrainingPlan.from_dict(json.loads(json.dumps(p.to_dict()))) == p   # plan.json round trip


def test_a_run_writes_its_plan_before_the_first_step_and_resolves_once(study, monkeypatch):
    plan = S.training_plan(study, "student", recipe="smoke", method="logit", seed=3, kd_weights={"logit": 2.0},
                           overrides=OVR)
    seen = []
    calls = []
    real = TP.resolve
    monkeypatch.setattr(TP, "resolve", lambda cfg: calls.append(cfg) or real(cfg))

    def first_step(trainer, epoch, done, step):
        if step == 1:
            seen.append(json.loads((trainer.run_dir / TP.PLAN).read_text()))
    train_student(plan, callbacks=[first_step])
    assert calls == []                                            # given a plan, the trainer resolves nothing again
    assert seen and seen[0]["kd_weights"] == {"logit": 2.0} and seen[0]["key"] == "logit[logit=2]"
    assert seen[0]["teacher_id"].startswith("ckpt:") and seen[0]["settings"]["head"] == "arcface"
    assert TP.load_plan(plan.run_dir) == plan
    Trainer(plan.config)                                          # a bare config is planned by the trainer: once
    assert len(calls) == 1


def test_the_study_reads_keys_from_the_plan_and_older_runs_from_their_config(study):
    plan = S.training_plan(study, "student", recipe="smoke", method="logit", seed=1,
                           kd_params={"logit": {"T": 2.0}}, overrides=OVR)
    train_student(plan)
    assert [(str(m.key), m.seed) for m in study.models()] == [("teacher", 0), ("logit[logit.T=2]", 1)]
    record = json.loads((plan.run_dir / TP.PLAN).read_text())
    record["key"] = "logit[logit.T=3]"                            # the study takes the plan's word for it
    (plan.run_dir / TP.PLAN).write_text(json.dumps(record))
    assert str(study.models()[1].key) == "logit[logit.T=3]"
    (plan.run_dir / TP.PLAN).unlink()                             # a run from before plans: read from config.json
    assert TP.load_plan(plan.run_dir) is None
    assert [(str(m.key), m.seed) for m in study.models()] == [("teacher", 0), ("logit[logit.T=2]", 1)]
