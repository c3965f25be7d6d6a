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
def test_loss_decreases_for_each_kd_mode(tmp_path, teacher_dir, mode):
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


def test_resume_after_epoch_one(tmp_path, teacher_dir):
    cfg = _cfg(tmp_path, "e1", method="attention", epochs=1)
    train_student(cfg, teacher=str(teacher_dir))
    cfg2 = _cfg(tmp_path, "e1", method="attention", epochs=2)
    train_student(cfg2, teacher=str(teacher_dir))
    ref = _cfg(tmp_path, "e2", method="attention", epochs=2)
    train_student(ref, teacher=str(teacher_dir))
    assert _metrics(tmp_path / "e1") == _metrics(tmp_path / "e2")


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


def test_basicnet_lr_without_a_trained_teacher(tmp_path, capsys):
    # method none needs a teacher only for the head initialisation: a missing teacher run is skipped with a notice
    cfg = _cfg(tmp_path, "lr", method="none", epochs=1, teacher=str(tmp_path / "no-teacher"))
    tr = Trainer(cfg)
    tr.fit()
    assert tr.teacher_backbone is None and "margin head starts random" in capsys.readouterr().err
    # a KD method still refuses to run without its teacher
    with pytest.raises(Exception, match="no checkpoint"):
        Trainer(_cfg(tmp_path, "kd", method="logit", epochs=1, teacher=str(tmp_path / "no-teacher"))).fit()
