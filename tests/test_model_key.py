"""The model key: one parser, one formatter, and the names, file names and order every table reads."""
import re
from pathlib import Path

import pytest

from lqlib.model_key import ModelKey, reading_order

ROOT = Path(__file__).resolve().parents[1]

TEXTS = ["teacher", "teacher:faceapi-resnet", "none", "logit+attention", "angular_emb_c[angular=50]@faceapi-resnet",
         "logit[logit=2]^adaface@faceapi-resnet~headinit", "none^adaface", "logit~headinit", "relational@mbf",
         "logit[logit.T=2,logit.lam=0.3]"]


@pytest.mark.parametrize("text", TEXTS)
def test_parse_then_format_is_the_identity(text):
    k = ModelKey.parse(text)
    assert str(k) == text and k == text and ModelKey.parse(k) is k and hash(k) == hash(text)


def test_fields_of_a_full_student_key():
    k = ModelKey.parse("logit+attention[attention=10]^adaface@faceapi-resnet~headinit")
    assert (k.method, k.overrides, k.head, k.teacher, k.head_from_teacher) == \
        ("logit+attention", "attention=10", "adaface", "faceapi-resnet", True)
    assert k.parts == ["logit", "attention"] and not k.is_teacher
    assert k.columns() == {"model_key": str(k), "method": "logit+attention", "teacher": "faceapi-resnet"}
    assert k.file_name == "logit-attention-attention-10-adaface-faceapi-resnet~headinit"


def test_teacher_rows():
    own, ext = ModelKey.parse("teacher"), ModelKey.parse("teacher:faceapi-resnet")
    assert own.is_teacher and ext.is_teacher and own.parts == [] and ext.teacher == "faceapi-resnet"
    assert own.display_name == "BasicNet-HR" and own.columns() == {"model_key": "teacher", "method": "", "teacher": ""}
    assert ModelKey.external_teacher("some/dir/spec.json") == "teacher:dir"


def test_student_key_keeps_only_what_differs_from_the_method():
    assert ModelKey.student("angular_emb_c", "faceapi-resnet", kd_weights={"angular": 5.0}) == \
        "angular_emb_c@faceapi-resnet"
    assert ModelKey.student("logit", kd_params={"logit": {"T": 2.0, "lam": 0.5}}) == "logit[logit.T=2]"
    assert ModelKey.student("none", head="arcface") == "none" and ModelKey.student("ecacface", head="curricularface") == \
        "ecacface" and ModelKey.student("ecacface", head="adaface") == "ecacface^adaface"  # an explicit head wins
    assert ModelKey.student("relational", "x/y/model.onnx") == "relational@model"


@pytest.mark.parametrize("bad", ["", "logit@", "logit[x=1", "logit@a@b", "teacher:", "lo git"])
def test_malformed_text_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="not a model key"):
        ModelKey.parse(bad)


def test_reading_order_and_comparison_agree():
    keys = ["angular_emb_c@faceapi-resnet", "logit+attention", "teacher:faceapi-resnet", "none", "teacher", "logit"]
    want = ["teacher", "none", "logit", "logit+attention", "teacher:faceapi-resnet", "angular_emb_c@faceapi-resnet"]
    assert sorted(keys, key=reading_order) == want
    assert [str(k) for k in sorted(ModelKey.parse(k) for k in keys)] == want


def test_the_key_is_parsed_in_one_place():
    """No other module takes a key's text apart (``partition("@")``, ``startswith("teacher:")``, ...)."""
    pattern = re.compile(r"""partition\(\s*["'][@~^\[:]|split\(\s*["']@|startswith\(\s*["']teacher:|["']teacher:["']\s*\)|"""
                         r"""removesuffix\(\s*(?:HEAD_INIT|["']~headinit)|endswith\(\s*(?:HEAD_INIT|["']~headinit)""")
    files = [p for d in ("lqlib", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    files += sorted((ROOT / "notebooks").glob("*.ipynb"))
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in files if p.name != "model_key.py"
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, "model-key text parsed outside lqlib/model_key.py:\n" + "\n".join(hits)
