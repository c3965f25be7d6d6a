"""lqlib.config.resolve: one rule for the settings a method may also choose —
explicit config field > the method's setting > the recipe's value (else lqlib's default) — tested per setting."""
import dataclasses

import pytest

from lqlib import methods
from lqlib.config import TrainConfig, recipe, resolve


def cfg(method="none", rec="smoke", role="student", **explicit) -> TrainConfig:
    """A config as a notebook builds it: the recipe's fields, then ``explicit`` ones (TRAIN_OVERRIDES)."""
    return TrainConfig.from_dict({**recipe(rec, role), "recipe": rec, "role": role, "method": method, **explicit})


def test_backbone_attention_method_over_recipe_explicit_over_method():
    assert resolve(cfg("none")).backbone == "ir_cbam_tiny"                        # the recipe's
    assert resolve(cfg("ecacface")).backbone == "ir_esca_tiny"                    # the method's attention block
    assert resolve(cfg("ecacface", backbone="ir_se_tiny")).backbone == "ir_se_tiny"  # explicit wins


def test_backbone_kw_key_by_key():
    assert resolve(cfg("askd_pre")).backbone_kw == {"attention_kw": {"maps": "pre"}}
    mine = {"attention_kw": {"maps": "post"}, "dropout": 0.1}
    assert resolve(cfg("askd_pre", backbone_kw=mine)).backbone_kw == mine
    assert resolve(cfg("none", backbone_kw={"dropout": 0.1})).backbone_kw == {"dropout": 0.1}


def test_head_explicit_over_method_over_default():
    assert resolve(cfg("none")).head == "arcface"
    assert resolve(cfg("ecacface")).head == "curricularface"
    assert resolve(cfg("ecacface", head="adaface")).head == "adaface"   # before: the method won here
    assert resolve(cfg("none", head="adaface")).head == "adaface"


def test_face_content_replacement_explicit_over_method_over_zero():
    assert resolve(cfg("logit")).face_content_replacement == 0.0
    assert resolve(cfg("labelfree")).face_content_replacement == 0.5
    assert resolve(cfg("labelfree", face_content_replacement=0.2)).face_content_replacement == 0.2
    assert resolve(cfg("logit", face_content_replacement=0.3)).face_content_replacement == 0.3


def test_degradation_explicit_over_method_over_recipe(monkeypatch):
    assert resolve(cfg("askd")).degradation == "paper"   # A-SKD sets none: the study's A-SKD used the paper's
    assert resolve(cfg("askd", degradation="askd")).degradation == "askd"
    monkeypatch.setitem(methods.METHODS, "askd", dataclasses.replace(methods.METHODS["askd"], degradation="askd"))
    assert resolve(cfg("askd")).degradation == "askd"                               # a method that sets one
    assert resolve(cfg("askd", degradation="clean")).degradation == "clean"         # explicit still wins


def test_teacher_role_has_no_method_and_no_recipe_means_defaults():
    t = resolve(cfg("ecacface", role="teacher"))
    assert (t.backbone, t.head, t.face_content_replacement) == ("ir_cbam_tiny", "arcface", 0.0)
    bare = resolve(TrainConfig(method="ecacface"))
    assert (bare.backbone, bare.head) == ("ir_esca_18", "curricularface")


def test_the_trainer_and_the_key_use_the_resolved_head(tmp_path, monkeypatch):
    from lqlib import paths
    from lqlib.study import Study
    from lqlib.study_config import training_config
    from lqlib.training_plan import plan_training

    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path)
    st = Study("s")
    own = training_config(st, "student", recipe="smoke", method="ecacface")
    ada = training_config(st, "student", recipe="smoke", method="ecacface", overrides={"head": "adaface"})
    assert own.out_dir == str(st.student_dir("ecacface")) and ada.out_dir == str(st.student_dir("ecacface^adaface"))
    assert resolve(ada.validate()).head == "adaface" and resolve(own.validate()).head == "curricularface"
    with pytest.raises(ValueError, match="head_kw"):  # the plan checks the resolved head's options
        plan_training(dataclasses.replace(ada, head_kw={"nope": 1}))
