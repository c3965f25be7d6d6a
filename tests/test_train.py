"""Training engine on CPU with a tiny backbone and a synthetic identity set."""
import csv
import os
import signal
import socket

import pytest
import torch

from lqlib.losses import KD_TERMS, KDTerm, register_kd
from lqlib.methods import METHODS, Method
from lqlib.train import NonFiniteLossError, TrainConfig, Trainer, TrainingInterrupted, is_finished, train, train_student, train_teacher

BASE = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, backbone="ir_cbam_tiny",
            epochs=2, batch_size=8, lr=0.05, num_workers=0, progress=False, head_kw={"s": 16.0, "m": 0.2},
            scales=[2, 4, 8])


def _cfg(tmp_path, name, **kw):
    return TrainConfig(name=name, out_dir=str(tmp_path / name), **{**BASE, **kw})


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    train_teacher(TrainConfig(name="teacher", out_dir=str(d), **{**BASE, "epochs": 3}))
    return d


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if k not in ("seconds", "img_per_s")} for r in rows]


def test_teacher_run_writes_files(teacher_dir):
    for f in ("checkpoint.pt", "metrics.csv", "summary.json", "config.json"):
        assert (teacher_dir / f).is_file()
    assert len(_metrics(teacher_dir)) == 3
    assert is_finished(teacher_dir)
    assert not list(teacher_dir.glob("*.tmp"))


@pytest.mark.parametrize("mode", ["none", "logit", "attention", "logit+attention"])
def test_loss_decreases_for_each_kd_method(tmp_path, teacher_dir, mode):
    losses = []
    # 6 epochs × 2 steps over the same 16 images
    cfg = _cfg(tmp_path, mode, method=mode, epochs=6)
    tr = Trainer(cfg, teacher=str(teacher_dir), callbacks=[lambda t, e, d, s: losses.append(
        float(sum(v.detach() for v in t.last_parts.values())))])
    tr.fit()
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_resume_after_sigterm_is_exact(tmp_path, teacher_dir):
    full = _cfg(tmp_path, "full", method="logit+attention", epochs=2)
    train_student(full, teacher=str(teacher_dir))

    cut = _cfg(tmp_path, "cut", method="logit+attention", epochs=2)
    def kill_mid_epoch_2(trainer, epoch, done, step):
        if step == 3:  # epoch 1 has 2 steps: this is the first step of epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(TrainingInterrupted):
        train_student(cut, teacher=str(teacher_dir), callbacks=[kill_mid_epoch_2])
    assert len(_metrics(tmp_path / "cut")) == 1
    train_student(cut, teacher=str(teacher_dir))  # resume=True by default
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")

    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_epoch_one_and_move_aside_other_epochs(tmp_path, teacher_dir, capsys):
    """The schedule depends on epochs: a resume with other epochs never continues the old run. Before, it
    raised until the folder was deleted by hand; now the old run is kept beside as <dir>.old-<time>, the
    notice says what changed, and the run starts over."""
    cfg = _cfg(tmp_path, "e1", method="attention", epochs=2)
    stop_after_epoch_one = lambda trainer, epoch, done, step: step == 2 and trainer.request_stop()  # noqa: E731
    with pytest.raises(TrainingInterrupted):
        train_student(cfg, teacher=str(teacher_dir), callbacks=[stop_after_epoch_one])
    capsys.readouterr()
    three = train_student(_cfg(tmp_path, "e1", method="attention", epochs=3), teacher=str(teacher_dir))
    notice = capsys.readouterr().err
    old = sorted(tmp_path.glob("e1.old-*"))
    assert len(old) == 1 and f"moved it to {old[0]}" in notice and "epochs: 2 → 3" in notice
    assert torch.load(old[0] / "checkpoint.pt", weights_only=True)["step"] == 2  # the interrupted run, intact
    assert three["final"]["epoch"] == "3" and len(_metrics(tmp_path / "e1")) == 3
    train_student(cfg, teacher=str(teacher_dir))  # back to 2 epochs: the 3-epoch run goes aside too
    assert len(list(tmp_path.glob("e1.old-*"))) == 2
    ref = _cfg(tmp_path, "e2", method="attention", epochs=2)
    train_student(ref, teacher=str(teacher_dir))
    assert _metrics(tmp_path / "e1") == _metrics(tmp_path / "e2")


def test_a_checkpoint_from_before_a_new_option_resumes(tmp_path):
    """A field added to TrainConfig since a run was written is read as its default: not a change that
    moves the finished run aside."""
    from lqlib.io import torch_save

    cfg = _cfg(tmp_path, "older", epochs=1)
    train_teacher(cfg)
    ck = torch.load(tmp_path / "older" / "checkpoint.pt", weights_only=True)
    del ck["config"]["hflip"], ck["config"]["grad_clip"]  # as if written before these options existed
    torch_save(ck, tmp_path / "older" / "checkpoint.pt")
    train_teacher(cfg)
    assert not list(tmp_path.glob("older.old-*"))


def test_a_retrained_teacher_restarts_its_student(tmp_path, teacher_dir, capsys):
    """Before, a finished student "resumed" (did nothing) against a retrained teacher at the same path and
    kept distilling from a teacher that no longer existed."""
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    cfg = _cfg(tmp_path, "st", method="logit", epochs=1)
    first = train_student(cfg, teacher=str(teacher))
    again = train_student(cfg, teacher=str(teacher))  # same teacher: resumes (nothing to do)
    assert first["teacher_id"] == again["teacher_id"] and first["teacher_id"].startswith("ckpt:")
    assert not list(tmp_path.glob("st.old-*"))
    train_teacher(_cfg(tmp_path, "teacher2", epochs=1, seed=3))
    shutil.copyfile(tmp_path / "teacher2" / "checkpoint.pt", teacher / "checkpoint.pt")  # "retrained"
    capsys.readouterr()
    third = train_student(cfg, teacher=str(teacher))
    assert third["teacher_id"] != first["teacher_id"] and len(list(tmp_path.glob("st.old-*"))) == 1
    assert "teacher weights" in capsys.readouterr().err


def test_same_seed_same_metrics(tmp_path):
    train_teacher(_cfg(tmp_path, "a", epochs=1))
    train_teacher(_cfg(tmp_path, "b", epochs=1))
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


@pytest.fixture
def nan_method(monkeypatch):
    @register_kd("nan_inject")
    class NanInject(KDTerm):
        needs = frozenset()

        def forward(self, student, teacher, labels, progress):
            bad = progress.epoch >= 1  # healthy in epoch 1, NaN from epoch 2 on
            return student.embedding.sum() * 0 + (float("nan") if bad else 0.0)

    monkeypatch.setitem(METHODS, "nan_inject", Method({"nan_inject": 1.0}))
    yield
    KD_TERMS.pop("nan_inject")


def test_nan_stops_with_term_name_and_keeps_checkpoint(tmp_path, teacher_dir, nan_method):
    cfg = _cfg(tmp_path, "nan", method="nan_inject", epochs=3)
    with pytest.raises(NonFiniteLossError, match="nan_inject"):
        train_student(cfg, teacher=str(teacher_dir))
    ck = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1  # the last good checkpoint, from the end of epoch 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"lr_rate": 0.1})
    with pytest.raises(ValueError, match="unknown method"):
        train(_cfg(tmp_path, "x", method="telepathy"))
    with pytest.raises(ValueError, match="needs a teacher"):
        train(_cfg(tmp_path, "y", method="logit"))
    with pytest.raises(ValueError, match="lr"):
        train(_cfg(tmp_path, "z", lr=float("nan")))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_world_size_one_gloo(tmp_path, teacher_dir, monkeypatch):
    import torch.distributed as dist

    for k, v in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(k, v)
    try:
        tr = Trainer(_cfg(tmp_path, "ddp", method="logit+attention", epochs=1), teacher=str(teacher_dir))
        summary = tr.fit()
        assert isinstance(tr.model, torch.nn.parallel.DistributedDataParallel)
        assert dist.get_backend() == "gloo"
        assert summary["world_size"] == 1 and (tmp_path / "ddp" / "summary.json").is_file()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_missing_or_unfinished_teacher_is_an_error_for_every_student(tmp_path, teacher_dir):
    """A student names its study's teacher: a missing or unfinished teacher run is an error for every
    method (BasicNet-LR and ECACFace included), never a silent fallback."""
    for method in ("none", "ecacface", "logit"):
        with pytest.raises(ValueError, match="no checkpoint"):
            Trainer(_cfg(tmp_path, f"m-{method}", method=method, epochs=1,
                         teacher=str(tmp_path / "no-teacher"))).fit()
    half = _cfg(tmp_path, "half-teacher", role="teacher", epochs=2)
    with pytest.raises(TrainingInterrupted):
        train_teacher(half, callbacks=[lambda t, e, d, s: s == 1 and t.request_stop()])
    with pytest.raises(ValueError, match="not finished"):
        Trainer(_cfg(tmp_path, "u", method="none", epochs=1, teacher=str(tmp_path / "half-teacher"))).fit()
    # without any teacher, BasicNet-LR trains (fresh head)
    tr = Trainer(_cfg(tmp_path, "lr", method="none", epochs=1))
    tr.fit()
    assert tr.distiller.teacher is None


def test_student_heads_start_fresh_unless_asked(tmp_path, teacher_dir):
    """Every student's margin head starts random by default (as in the paper and A-SKD's code);
    copying the teacher's head is an explicit ablation switch."""
    from lqlib.checkpoint import load_trained

    _, t_head, _ = load_trained(teacher_dir)
    fresh = Trainer(_cfg(tmp_path, "fresh", method="logit", epochs=1), teacher=str(teacher_dir))
    fresh._build()
    assert not torch.equal(fresh.distiller.head.weight, t_head.weight)
    copied = Trainer(_cfg(tmp_path, "copy", method="logit", epochs=1, init_head_from_teacher=True),
                     teacher=str(teacher_dir))
    copied._build()
    assert torch.equal(copied.distiller.head.weight, t_head.weight)


class _Labelled(torch.utils.data.Dataset):
    """Labels only (images are never decoded by the subset logic)."""

    def __init__(self, labels):
        self.labels = torch.tensor(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.zeros(3, 8, 8, dtype=torch.uint8), int(self.labels[i])


def test_smoke_subset_is_a_balanced_multiclass_problem():
    """max_images on lfw-half used to keep whole identities, largest first: George W Bush alone filled
    256 images, a one-class problem whose CE is identically 0."""
    from lqlib.data.sampling import class_balanced_subset

    labels = [0] * 530 + [i for i in range(1, 80) for _ in range(2 + i % 6)]
    sub, n_cls = class_balanced_subset(_Labelled(labels), 256)
    counts = torch.bincount(sub.labels)
    assert n_cls >= 32 and len(counts) == n_cls and (counts == 4).all() and len(sub) == 4 * n_cls
    with pytest.raises(ValueError, match="2 classes"):
        class_balanced_subset(_Labelled([0] * 50 + [1]), 32)


def test_one_class_training_set_is_refused(tmp_path):
    from lqlib.train import DegenerateTrainingError

    with pytest.raises(DegenerateTrainingError, match="1 class"):
        train_teacher(_cfg(tmp_path, "one", synthetic={"num_classes": 1, "images_per_class": 16}))


def test_zero_ce_in_the_first_epoch_is_refused(tmp_path, monkeypatch):
    from lqlib.losses import composer
    from lqlib.train import DegenerateTrainingError

    monkeypatch.setattr(composer.F, "cross_entropy", lambda logits, labels: (logits * 0).sum())
    with pytest.raises(DegenerateTrainingError, match="exactly 0"):
        train_teacher(_cfg(tmp_path, "zero", epochs=1))


def test_teacher_sees_hr_and_student_sees_the_degraded_batch(tmp_path, teacher_dir, monkeypatch):
    """The HR/LR split of a step: the frozen teacher gets the original batch, the student its
    degraded copy. Degradation is replaced by a constant image, so a swap is unmistakable."""
    import lqlib.distiller as D
    from lqlib.checkpoint import load_trained
    from lqlib.images import normalize

    monkeypatch.setattr(D, "degrade", lambda hr, *a, **k: torch.zeros_like(hr))
    seen = {}
    t_backbone, t_head, _ = load_trained(teacher_dir)
    t_backbone.register_forward_pre_hook(lambda m, args: seen.setdefault("teacher", args[0].detach().clone()))
    build = Trainer._build

    def build_and_hook(self):
        build(self)
        self.distiller.student.register_forward_pre_hook(
            lambda m, args: seen.setdefault("student", args[0].detach().clone()))

    monkeypatch.setattr(Trainer, "_build", build_and_hook)
    Trainer(_cfg(tmp_path, "split", method="logit+attention", epochs=1, max_steps_per_epoch=1),
            teacher=(t_backbone, t_head)).fit()
    lr_value = normalize(torch.zeros(1, dtype=torch.uint8)).item()
    assert torch.all(seen["student"] == lr_value)
    assert seen["teacher"].std() > 0.1 and not torch.all(seen["teacher"] == lr_value)


def test_ddp_ranks_draw_their_own_degradations():
    from lqlib.data.sampling import step_seed

    assert len({step_seed(0, 3, r) for r in range(8)}) == 8
    assert step_seed(0, 3, 0) == step_seed(0, 3)  # single process = rank 0


def test_labelfree_uses_face_content_replacement(tmp_path, teacher_dir):
    on = Trainer(_cfg(tmp_path, "lf", method="labelfree", epochs=1), teacher=str(teacher_dir))
    on._build()
    off = Trainer(_cfg(tmp_path, "lf0", method="labelfree_nofcr", epochs=1), teacher=str(teacher_dir))
    off._build()
    assert on.distiller.fcr == 0.5 and off.distiller.fcr == 0.0


def test_malformed_mapping_option_is_a_one_line_error(capsys):
    from lqlib.train import main

    assert main(["--set", "synthetic={num_classes:40}", "data=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "synthetic" in err and "num_classes" in err and "accepted" in err
    from lqlib.training_plan import plan_training

    with pytest.raises(ValueError, match="head_kw"):   # the resolved head's options: checked by the plan
        plan_training(TrainConfig(head_kw={"scale": 3}))


@pytest.mark.parametrize("setting, names", [("lr=abc", ("lr", "'abc'", "number")),
                                             ("epochs=two", ("epochs", "'two'", "int")),
                                             ("nesterov=maybe", ("nesterov", "bool")),
                                             ("device=tpu", ("device", "'tpu'", "cuda"))])
def test_a_bad_scalar_option_is_one_line_naming_the_field(capsys, setting, names):
    """Before: lr=abc said "'>' not supported between instances of 'str' and 'int'" (no field), device=tpu
    was a RuntimeError traceback from torch.device."""
    from lqlib.train import main

    assert main(["--set", setting, "data=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and all(n in err for n in names), err


def test_check_learning_flags_degenerate_runs(tmp_path):
    from lqlib.callbacks import DegenerateRunError, MetricsLog, check_learning

    log = MetricsLog(tmp_path)
    log.write([{"epoch": 1, "loss": 9.0, "loss_ce": 6.0, "loss_dkd": 0.5}, {"epoch": 2, "loss": 9.5, "loss_ce": 5.0,
                                                                            "loss_dkd": 2.0}])
    assert check_learning(tmp_path, min_ce=1.0)["loss_ce"] == (6.0, 5.0)  # a rising KD term (warm-up) is fine
    with pytest.raises(DegenerateRunError, match="first-epoch CE 6.0000 < 7.0"):
        check_learning(tmp_path, min_ce=7.0)
    log.write([{"epoch": 1, "loss": 1.0, "loss_ce": 0.0}, {"epoch": 2, "loss": 0.5, "loss_ce": 0.0}])
    with pytest.raises(DegenerateRunError, match="exactly 0"):
        check_learning(tmp_path)
    log.write([{"epoch": 1, "loss": 3.0, "loss_ce": 3.0}, {"epoch": 2, "loss": 3.5, "loss_ce": 3.5}])
    with pytest.raises(DegenerateRunError, match="never fell"):
        check_learning(tmp_path)
    log.write([{"epoch": 1, "loss": float("nan"), "loss_ce": 3.0}, {"epoch": 2, "loss": 2.0, "loss_ce": 2.0}])
    with pytest.raises(DegenerateRunError, match="not finite"):
        check_learning(tmp_path)


def test_adaface_head_by_name_learns(tmp_path):
    """``head: adaface`` with the paper's defaults (s 64, m 0.4, h 0.333): the CE falls, and the running
    norm statistics moved from their initial μ = 20, σ = 100 and were saved."""
    ces = []
    cfg = _cfg(tmp_path, "ada", method="none", head="adaface", head_kw={}, epochs=6)
    tr = Trainer(cfg, callbacks=[lambda t, e, d, s: ces.append(float(t.last_parts["ce"].detach()))])
    summary = tr.fit()
    assert summary["head"] == "adaface" and type(tr.distiller.head).__name__ == "AdaFace"
    assert tr.distiller.head.s == 64.0 and tr.distiller.head.m == 0.4
    assert len(ces) == 12 and sum(ces[-3:]) / 3 < 0.8 * sum(ces[:3]) / 3, ces
    head = torch.load(tmp_path / "ada" / "checkpoint.pt", weights_only=True)["head"]
    assert head["batch_mean"].item() != 20.0 and head["batch_std"].item() != 100.0
    assert torch.equal(head["batch_mean"], tr.distiller.head.batch_mean)


def test_adaface_resume_is_exact_including_the_running_statistics(tmp_path):
    ada = dict(method="none", head="adaface", head_kw={"s": 16.0, "m": 0.4}, epochs=2)
    train_student(_cfg(tmp_path, "full", **ada))
    cut = _cfg(tmp_path, "cut", **ada)
    kill = lambda trainer, epoch, done, step: step == 3 and os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    with pytest.raises(TrainingInterrupted):
        train_student(cut, callbacks=[kill])  # stopped in the middle of epoch 2
    mid = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["head"]
    train_student(cut)
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert set(a["head"]) == {"weight", "batch_mean", "batch_std"}
    assert all(torch.equal(a["head"][k], b["head"][k]) for k in a["head"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert mid["batch_mean"].item() != a["head"]["batch_mean"].item()  # the statistics moved after the cut


def test_a_finished_run_resumed_keeps_the_engine_it_trained_with(tmp_path):
    """Before, resuming a finished run (no step trained) rewrote its summary's engine with this call's probe
    ("probing" where the run had been compiled)."""
    import json

    cfg = _cfg(tmp_path, "done", epochs=1)
    train_teacher(cfg)
    summary = tmp_path / "done" / "summary.json"
    record = json.loads(summary.read_text())
    trained_with = {"engine": "compiled", "compile_s": 2.6, "step_ms": {"compiled": 475.8, "eager": 541.8}}
    summary.write_text(json.dumps({**record, "engine": trained_with}))   # as a compiled run records it
    again = train_teacher(cfg)                                            # finished: no step trained
    assert again["engine"] == trained_with and json.loads(summary.read_text())["engine"] == trained_with
    assert again["seconds_this_call"] < 60
