"""A teacher published as fp16 safetensors: what its students see, and a run folder rebuilt from it."""
from __future__ import annotations

import shutil

import pytest
import torch

from lqlib import weights
from lqlib.checkpoint import CheckpointError, is_finished, load_trained
from lqlib.config import TrainConfig
from lqlib.train import train_teacher

BASE = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, backbone="ir_cbam_tiny",
            batch_size=8, lr=0.05, num_workers=0, progress=False, head_kw={"s": 16.0, "m": 0.2}, compile=False,
            epochs=2, role="teacher")


@pytest.fixture()
def teacher(tmp_path):
    cfg = TrainConfig(name="t", out_dir=str(tmp_path / "run" / "teacher"), **BASE)
    train_teacher(cfg)
    pub = tmp_path / "pub"
    pub.mkdir()
    for name in ("metrics.csv", "summary.json"):   # what 01 publishes beside the weights
        shutil.copyfile(tmp_path / "run" / "teacher" / name, pub / f"teacher_{name}")
    return cfg, tmp_path / "run" / "teacher", pub


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_publish_rounds_the_checkpoint_and_the_file_holds_the_same_weights(teacher):
    cfg, run, pub = teacher
    before, _, _ = load_trained(run)
    out = weights.publish_teacher(run, pub)
    assert out == pub / "teacher.safetensors" and out.stat().st_size < weights.MAX_BYTES
    after, head, _ = load_trained(run)
    w0, w1 = before.state_dict(), after.state_dict()
    floats = [k for k in w1 if torch.is_floating_point(w1[k])]
    assert floats and all(torch.equal(w1[k], w1[k].half().float()) for k in floats)  # fp16-exact now
    assert any(not torch.equal(w0[k], w1[k]) for k in floats)                       # and it was rounded
    assert max((w0[k] - w1[k]).abs().max().item() for k in floats) < 1e-2
    b, h, config = weights.read_teacher(out)
    assert _same(b.state_dict(), w1) and _same(h.state_dict(), head.state_dict()) and config["epochs"] == 2


def test_a_run_folder_rebuilt_from_the_file_resumes_as_the_finished_teacher(teacher):
    cfg, run, pub = teacher
    weights.publish_teacher(run, pub)
    published, _, _ = load_trained(run)
    metrics = (run / "metrics.csv").read_text()
    shutil.rmtree(run.parent)
    assert weights.restore_teacher(run, pub) and is_finished(run)
    assert not weights.restore_teacher(run, pub)          # a folder with a checkpoint is left alone
    summary = train_teacher(cfg)                          # resumes: nothing more to train
    assert summary["epochs"] == 2 and (run / "metrics.csv").read_text() == metrics
    assert (run / "training_data.json").is_file() and (run / "train_images.npy").is_file()
    restored, _, _ = load_trained(run)
    assert _same(restored.state_dict(), published.state_dict())


def test_refusals_name_the_file_and_write_nothing(teacher, monkeypatch):
    cfg, run, pub = teacher
    ck_before = (run / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(weights, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match=r"teacher\.safetensors.*over the"):
        weights.publish_teacher(run, pub)
    assert not (pub / "teacher.safetensors").exists() and (run / "checkpoint.pt").read_bytes() == ck_before
    bad = pub / "teacher.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="teacher.safetensors"):
        weights.read_teacher(bad)
    (run.parent / "u").mkdir()                                   # a checkpoint without its summary.json
    shutil.copyfile(run / "checkpoint.pt", run.parent / "u" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not finished"):
        weights.publish_teacher(run.parent / "u", pub)


def test_the_published_teacher_keeps_its_identity_in_a_rebuilt_run_folder(teacher):
    """A student's record names its teacher by content; the folder rebuilt on another day is the same teacher."""
    from lqlib.checkpoint import teacher_identity

    cfg, run, pub = teacher
    trained = teacher_identity(run)
    assert trained.startswith("ckpt:")                      # never published: its checkpoint's bytes
    weights.publish_teacher(run, pub)
    published = teacher_identity(run)
    assert published.startswith("weights:") and published != trained
    shutil.rmtree(run.parent)
    weights.restore_teacher(run, pub)
    assert teacher_identity(run) == published
    train_teacher(cfg)                                      # the resume leaves the identity as it is
    assert teacher_identity(run) == published
    zero, one = torch.zeros(2, dtype=torch.float16), torch.ones(2, dtype=torch.float16)
    assert weights.weights_digest({"model.x": zero}) != weights.weights_digest({"model.x": one})  # by value
    assert weights.weights_digest({"model.x": zero}) != weights.weights_digest({"model.y": zero})  # and by name


def test_a_teacher_published_before_digests_were_recorded_keeps_its_students(teacher, tmp_path):
    """Block 0 of the converged study: its teacher was published (rounded, marked) before checkpoints carried the
    weights' digest, and its students recorded it as ``ckpt:<file digest>``. The teacher is named by its weights
    (as a folder rebuilt from the file is), and those students still resume instead of being trained again."""
    from lqlib.checkpoint import file_digest, load_checkpoint, save_checkpoint, same_teacher, teacher_identity
    from lqlib.train import train_student

    cfg, run, pub = teacher
    weights.publish_teacher(run, pub)
    ck = load_checkpoint(run)
    del ck["weights_digest"]                                 # as the older publish left it
    save_checkpoint(ck, run)
    named = teacher_identity(run)
    old_name = f"ckpt:{file_digest(run / 'checkpoint.pt')}"
    shutil.rmtree(tmp_path / "re", ignore_errors=True)
    weights.restore_teacher(tmp_path / "re" / "teacher", pub)
    assert named.startswith("weights:") and named == teacher_identity(tmp_path / "re" / "teacher")
    assert same_teacher(old_name, run) and same_teacher(named, run)
    assert not same_teacher("ckpt:0123456789abcdef", run)

    scfg = TrainConfig(name="s", out_dir=str(tmp_path / "run" / "students" / "none_s0"), **{**BASE, "role": "student"},
                       method="logit", teacher=str(run))
    train_student(scfg)
    sdir = tmp_path / "run" / "students" / "none_s0"
    sck = load_checkpoint(sdir)
    assert sck["teacher_id"] == named
    sck["teacher_id"] = old_name                             # what the older code recorded
    save_checkpoint(sck, sdir)
    train_student(scfg)                                      # resumes as finished: nothing moved aside
    assert not [p for p in sdir.parent.iterdir() if ".old-" in p.name]
    sck = load_checkpoint(sdir)
    sck["teacher_id"] = "ckpt:0123456789abcdef"              # another teacher: trained anew, the old run kept aside
    save_checkpoint(sck, sdir)
    train_student(scfg)
    assert [p for p in sdir.parent.iterdir() if ".old-" in p.name]
