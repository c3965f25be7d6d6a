"""What notebook 05 hands the explorer: the student a STUDENT_KEY names (a method name where it is unambiguous),
03's thresholds of that student, and whether cos(teacher, student) means anything for it; and the recipes'
descriptions say what the recipes do."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from lqlib import paths
from lqlib import study as S
from lqlib.config import RECIPE_DIR, list_recipes, recipe
from lqlib.methods import METHODS, matches_teacher_embedding
from lqlib.model_key import ModelKey


def _fake_student(study: S.Study, method: str, seed: int = 0, teacher: str = "") -> None:
    """A finished student's run folder as lqlib.train leaves it (only the files Study.models reads)."""
    key = ModelKey.student(method, teacher)
    d = study.student_dir(key, seed)
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method, "seed": seed, "teacher": teacher}))
    (d / "summary.json").write_text(json.dumps({"head": "arcface"}))
    (d / "checkpoint.pt").write_bytes(b"")


@pytest.fixture
def study(tmp_path, monkeypatch) -> S.Study:
    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    st = S.Study("explore")
    _fake_student(st, "logit")
    _fake_student(st, "angular_emb_c", teacher="faceapi-resnet")
    _fake_student(st, "labelfree", teacher="faceapi-resnet")
    _fake_student(st, "labelfree")
    _fake_student(st, "angular_emb_c", seed=1)  # another seed: not a rival for seed 0
    return st


def test_a_method_name_finds_its_only_student(study):
    key = study.resolve_student("angular_emb_c", 0)
    assert key == "angular_emb_c@faceapi-resnet"
    assert study.student(key, 0) == study.student_dir("angular_emb_c@faceapi-resnet", 0)
    assert study.resolve_student("angular_emb_c", 1) == "angular_emb_c"  # seed 1's only one: the own teacher's


def test_an_exact_key_wins_and_an_ambiguous_method_is_refused(study):
    assert study.resolve_student("logit", 0) == "logit"
    assert study.resolve_student("labelfree", 0) == "labelfree"  # exact: the own teacher's student
    assert study.resolve_student("labelfree@faceapi-resnet", 0) == "labelfree@faceapi-resnet"
    _fake_student(study, "relational", teacher="faceapi-resnet")
    _fake_student(study, "relational", teacher="sface")
    with pytest.raises(ValueError, match=r"ambiguous.*relational@faceapi-resnet, relational@sface"):
        study.resolve_student("relational", 0)


def test_unknown_names_still_get_the_students_errors(study):
    assert study.resolve_student("attention", 0) == "attention"  # untrained: student() says what is trained
    with pytest.raises(FileNotFoundError, match="trained students"):
        study.student(study.resolve_student("attention", 0), 0)
    with pytest.raises(ValueError, match="did you mean"):
        study.student(study.resolve_student("logit_attention", 0), 0)


def test_which_students_live_in_the_teachers_embedding_space():
    assert {m for m in METHODS if matches_teacher_embedding(m)} == {"angular", "angular_emb", "labelfree",
                                                                      "labelfree_nofcr"}
    assert matches_teacher_embedding("logit+angular_emb") and not matches_teacher_embedding("logit+attention")
    assert not matches_teacher_embedding("angular_emb_c")  # centred targets: e_T minus a mean, not e_T
    assert ModelKey.parse("labelfree").in_teacher_space
    assert not ModelKey.parse("labelfree@sface").in_teacher_space  # another teacher's space than 05's teacher
    assert not ModelKey.parse("logit+attention").in_teacher_space
    assert not ModelKey.parse("teacher").in_teacher_space


def test_thresholds_come_from_03s_cached_evaluation(study):
    d = study.eval_dir("lfw-half")
    d.mkdir(parents=True)
    rows = [dict(scale=s, eval_mode=m, protocol="insightface", threshold_mean=t)
            for s, m, t in [(1, "both", 1.40), (8, "both", 1.62), (8, "cross", 1.55), (1, "cross", 9.0)]]
    pd.DataFrame(rows).to_csv(d / "logit_s0.csv", index=False)
    assert S.verification_thresholds(study, "logit", 0, "lfw-half[300]") == {1.0: 1.40, 8.0: 1.62}
    assert S.verification_thresholds(study, "logit", 0, "lfw-half", eval_mode="cross") == {1.0: 9.0, 8.0: 1.55}
    assert S.verification_thresholds(study, "logit", 1, "lfw-half") == {}  # not evaluated


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_descriptions_say_the_recipes_epochs(name, monkeypatch):
    """Each recipe's description names its teacher's and students' epochs as configured, and none is a draft."""
    monkeypatch.setenv("LQLIB_WEBFACE", "/nowhere")  # the paper recipe's data names it
    text = " ".join(yaml.safe_load((RECIPE_DIR / f"{name}.yaml").read_text())["description"].split())
    assert "DRAFT" not in text.upper() and "not yet used" not in text, text
    t, s = recipe(name, "teacher").get("epochs"), recipe(name, "student").get("epochs")
    assert re.search(rf"\bteacher (?:trains )?(?:at most )?{t} epochs\b", text, re.I), (name, t, text)
    assert re.search(rf"\bstudents (?:train )?(?:at most )?{s} epochs\b", text, re.I), (name, s, text)
