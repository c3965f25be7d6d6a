"""Cross-architecture distillation: relational KD, embedding-only angular KD, and training a student
from an external (frozen, head-less) teacher given as an object, an ONNX file or a spec JSON."""
import json

import pytest
import torch

from lqlib.losses import KD_TERMS, ModelOutputs, Progress, build_kd_term
from lqlib.losses.relational import relational_kd, similarity_matrix
from lqlib.methods import get_method
from lqlib.models import build_backbone
from lqlib.teachers import ExternalTeacher, TeacherSpec
from lqlib.train import TrainConfig, Trainer, train_student

BASE = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, backbone="ir_cbam_tiny",
            epochs=3, batch_size=8, lr=0.05, num_workers=0, progress=False, head_kw={"s": 16.0, "m": 0.2},
            scales=[4])


def test_relational_cosine_is_zero_for_same_geometry_and_ignores_width():
    torch.manual_seed(0)
    t = torch.randn(6, 192)
    q, _ = torch.linalg.qr(torch.randn(512, 192))  # isometry into 512-d: same pairwise cosines, other width
    s = 3.0 * t @ q.t()
    assert relational_kd(s, t).item() < 1e-10
    assert relational_kd(s, t, "sp").item() < 1e-10
    other = torch.randn(6, 512)
    assert relational_kd(other, t).item() > 1e-3


def test_relational_matches_hand_formula_and_has_gradient():
    torch.manual_seed(1)
    s, t = torch.randn(5, 8, requires_grad=True), torch.randn(5, 3)
    ns, nt = s / s.norm(dim=1, keepdim=True), t / t.norm(dim=1, keepdim=True)
    d = (ns @ ns.t() - nt @ nt.t()) ** 2
    want = (d.sum() - d.diagonal().sum()) / (5 * 4)
    got = relational_kd(s, t)
    torch.testing.assert_close(got, want)
    got.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # SP form: row-normalised Gram matrices, squared Frobenius / B²
    g = lambda x: torch.nn.functional.normalize(x @ x.t(), dim=1)  # noqa: E731
    torch.testing.assert_close(relational_kd(s, t, "sp"), ((g(s) - g(t)) ** 2).sum() / 25)
    assert similarity_matrix(t).shape == (5, 5)
    with pytest.raises(ValueError, match="kind"):
        relational_kd(s, t, "rkd")
    with pytest.raises(ValueError, match="batches differ"):
        relational_kd(s, t[:4])


def test_cross_architecture_terms_need_only_embeddings():
    student = build_backbone("ir_cbam_tiny", embedding_size=64)
    teacher = build_backbone("mobilefacenet", embedding_size=32)
    for method in ("angular_emb", "relational", "angular_emb+relational"):
        m = get_method(method)
        for name in m.kd:
            term = build_kd_term(name, student=student, teacher=teacher, **m.params[name])
            assert term.needs == frozenset({"embedding"}), (method, name)
            so = ModelOutputs(embedding=torch.randn(4, 64, requires_grad=True))
            to = ModelOutputs(embedding=torch.randn(4, 32))
            loss = term(so, to, torch.arange(4), Progress())
            assert loss.ndim == 0 and torch.isfinite(loss)
            loss.backward()
    assert "relational" in KD_TERMS


def _external_teacher(seed=0):
    torch.manual_seed(seed)
    model = build_backbone("mobilefacenet", embedding_size=48).eval()
    spec = TeacherSpec(name="ext", channel_order="BGR", mean=127.5, std=128.0, embedding_size=48)
    return ExternalTeacher(model, spec)


@pytest.mark.parametrize("method", ["angular_emb", "relational", "angular_emb+relational"])
def test_student_trains_from_external_teacher_object(tmp_path, method):
    teacher = _external_teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    losses = []
    cfg = TrainConfig(name=method, out_dir=str(tmp_path / "s"), method=method, **{**BASE, "epochs": 5})
    tr = Trainer(cfg, teacher=teacher, callbacks=[lambda t, e, d, s: losses.append(
        {k: float(v.detach()) for k, v in t.last_parts.items()})])
    tr.fit()
    assert tr.distiller.teacher_head is None  # external teacher: no classifier, the student head learns from labels
    assert set(losses[0]) >= {"ce"} | set(get_method(method).kd)
    total = [sum(p.values()) for p in losses]
    assert sum(total[-2:]) / 2 < sum(total[:2]) / 2, total
    for k, v in teacher.state_dict().items():  # frozen for good
        torch.testing.assert_close(v, before[k])


def test_student_from_external_teacher_spec_json(tmp_path):
    teacher = _external_teacher(3)
    folder = tmp_path / "ext"
    folder.mkdir()
    torch.save(teacher.model.state_dict(), folder / "w.pt")
    spec = TeacherSpec(**{**teacher.spec.to_dict(), "arch": "mobilefacenet", "arch_kw": {"embedding_size": 48},
                          "weights": "w.pt"})
    spec.save(folder / "spec.json")
    cfg = TrainConfig(name="json", out_dir=str(tmp_path / "s"), method="relational",
                      teacher=str(folder / "spec.json"), **{**BASE, "epochs": 1})
    summary = train_student(cfg)
    assert (tmp_path / "s" / "checkpoint.pt").is_file() and summary
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["teacher"].endswith("spec.json")


def test_student_from_onnx_teacher(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from lqlib.teachers.onnx import export_onnx

    teacher = _external_teacher(5)
    path = tmp_path / "t.onnx"
    export_onnx(teacher.model, path)
    cfg = TrainConfig(name="onnx", out_dir=str(tmp_path / "s"), method="angular_emb", teacher=str(path),
                      **{**BASE, "epochs": 1})
    tr = Trainer(cfg)
    tr.fit()
    assert type(tr.distiller.teacher).__name__ == "ExternalTeacher"
    assert "angular" in tr.last_parts


def test_study_keys_students_of_external_teachers(tmp_path, monkeypatch):
    from lqlib import paths
    from lqlib import study as S
    from lqlib.model_key import ModelKey

    monkeypatch.setattr(paths, "runs_dir", lambda: tmp_path / "runs")
    st = S.Study("ext")
    teacher = _external_teacher(7)
    folder = tmp_path / "mbf"
    folder.mkdir()
    torch.save(teacher.model.state_dict(), folder / "w.pt")
    TeacherSpec(**{**teacher.spec.to_dict(), "arch": "mobilefacenet", "arch_kw": {"embedding_size": 48},
                   "weights": "w.pt"}).save(folder / "spec.json")
    cfg = S.training_config(st, "student", recipe="smoke", method="relational", seed=1,
                            teacher=str(folder / "spec.json"), overrides={**BASE, "epochs": 1})
    assert cfg.init_head_from_teacher is False and cfg.teacher.endswith("spec.json")
    assert cfg.out_dir == str(st.student_dir("relational@mbf", 1))
    train_student(cfg)
    assert [(m.key, m.seed, m.external_teacher) for m in st.models()] == [("relational@mbf", 1, "mbf")]
    assert S.Model("logit~headinit", 0, folder, "x").external_teacher == ""
    assert S.Model("angular_emb@mbf~headinit", 0, folder, "x").external_teacher == "mbf"
    assert ModelKey.parse("relational@mbf").display_name == "relational ← mbf"
    assert ModelKey.parse("none").display_name == "BasicNet-LR"
    assert ModelKey.parse("logit~headinit").display_name == "+logit KD (head from teacher)"
    # the study's own teacher keeps the plain key
    own = S.training_config(st, "student", recipe="smoke", method="logit", seed=0, overrides=BASE)
    assert own.teacher == str(st.teacher_dir) and own.out_dir == str(st.student_dir("logit", 0))
    ext = S.external_teachers([str(folder / "spec.json")])
    assert list(ext) == ["teacher:mbf"] and isinstance(ext["teacher:mbf"], ExternalTeacher)
    assert S.external_teachers([]) == {}
