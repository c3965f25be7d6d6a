"""Cached teacher embeddings: the same loss as the live teacher, stored once per (teacher, data)."""
import pytest
import torch

from lqlib import paths
from lqlib.data.memory import DecodedDataset
from lqlib.distiller import Distiller
from lqlib.evaluation import embed
from lqlib.heads import build_head
from lqlib.losses import Progress
from lqlib.methods import build_composer, get_method
from lqlib.models import build_backbone
from lqlib.teachers.cache import TeacherEmbeddingCache


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (24, 3, 112, 112), dtype=torch.uint8, generator=g)
    labels = torch.arange(24) % 6
    teacher = build_backbone("ir_cbam_tiny", embedding_size=64).eval()
    student = build_backbone("ir_cbam_tiny")
    return images, labels, teacher, student


def _distiller(method, teacher, student, cache=None, fcr=None):
    m = get_method(method)
    comp = build_composer(m, student, teacher)
    torch.manual_seed(3)  # the same margin head for the live and the cached distiller
    head = build_head("arcface", student.embedding_size, 6, s=16.0, m=0.2)
    return Distiller(student, head, comp, teacher=teacher, teacher_cache=cache, channels_last=False,
                     face_content_replacement=m.face_content_replacement if fcr is None else fcr)


def _fn(teacher):
    """The teacher's embeddings of images and flips in fp32 (the loss check compares exact numbers;
    training builds its cache under the trainer's own autocast)."""
    from lqlib.images import normalize

    def fn(x):
        with torch.no_grad():
            return teacher(normalize(x)).float(), teacher(normalize(x.flip(-1))).float()
    return fn


@pytest.mark.parametrize("method", ["angular_emb", "relational", "labelfree", "labelfree_nofcr"])
def test_cached_and_live_teacher_give_the_same_loss(setup, method):
    images, labels, teacher, student = setup
    cache = TeacherEmbeddingCache.build(_fn(teacher), images)
    live, cached = _distiller(method, teacher, student).eval(), _distiller(method, teacher, student, cache).eval()
    cached.composer.load_state_dict(live.composer.state_dict())  # same connector weights
    idx = torch.tensor([3, 17, 5, 0, 22, 9, 11, 2])
    out = {}
    for name, d in (("live", live), ("cached", cached)):
        gen = torch.Generator().manual_seed(7)  # same flips / replacements / degradations
        with torch.no_grad():
            out[name] = d(images[idx], labels[idx], gen, Progress(), index=idx)
    (tl, pl), (tc, pc) = out["live"], out["cached"]
    assert set(pl) == set(pc)
    for k in pl:
        assert torch.allclose(pl[k], pc[k], rtol=1e-4, atol=1e-5), (method, k, pl[k], pc[k])


def test_lookup_picks_the_flip_table(setup):
    images, _, teacher, _ = setup
    cache = TeacherEmbeddingCache.build(_fn(teacher), images[:6])
    got = cache.lookup(torch.tensor([4, 1]), torch.tensor([True, False]))
    assert torch.equal(got[0], cache.emb_flip[4]) and torch.equal(got[1], cache.emb[1])
    e, ef = _fn(teacher)(images[4:5])
    assert torch.allclose(cache.emb[4], e[0], atol=1e-5) and torch.allclose(cache.emb_flip[4], ef[0], atol=1e-5)


def test_cache_is_stored_once_per_teacher_and_data(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    images, _, teacher, _ = setup
    calls = []

    def fn(x):
        calls.append(len(x))
        return _fn(teacher)(x)

    key = {"teacher": {"external": "t", "spec": {"a": 1}}, "data": {"split": "x"}}
    a = TeacherEmbeddingCache.load_or_build(fn, images, key, log=lambda *_: None)
    b = TeacherEmbeddingCache.load_or_build(fn, images, key, log=lambda *_: None)
    assert calls == [24] and torch.equal(a.emb, b.emb) and b.manifest["n"] == 24
    TeacherEmbeddingCache.load_or_build(fn, images, {**key, "data": {"split": "y"}}, log=lambda *_: None)
    assert calls == [24, 24]  # another training set: another table
    assert len(list((tmp_path / "teacher_embeddings").glob("*.json"))) == 2


def test_cache_refused_for_terms_that_need_more_than_embeddings(setup):
    images, _, teacher, student = setup
    cache = TeacherEmbeddingCache.build(_fn(teacher), images[:4])
    with pytest.raises(ValueError, match="embedding-only"):
        _distiller("angular", teacher, student, cache)  # stage features: needs the live teacher


def test_trainer_uses_the_cache_for_an_embedding_only_method(tmp_path, monkeypatch):
    from lqlib.train import Trainer, TrainConfig

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    teacher = build_backbone("ir_cbam_tiny", embedding_size=32).eval()
    cfg = TrainConfig(name="c", out_dir=str(tmp_path / "c"), data="synthetic", synthetic={"num_classes": 4,
                      "images_per_class": 4}, backbone="ir_cbam_tiny", epochs=1, batch_size=8, progress=False,
                      method="angular_emb")
    tr = Trainer(cfg, teacher=teacher)
    tr.fit()
    assert isinstance(tr.distiller.teacher_cache, TeacherEmbeddingCache) and len(tr.distiller.teacher_cache) == 16
    off = Trainer(TrainConfig(**{**cfg.to_dict(), "out_dir": str(tmp_path / "d"), "teacher_cache": False}),
                  teacher=teacher)
    off._build()
    assert off.distiller.teacher_cache is None
    with pytest.raises(ValueError, match="teacher_cache=True"):
        Trainer(TrainConfig(**{**cfg.to_dict(), "method": "angular", "teacher_cache": True}), teacher=teacher)._build()


def test_centred_targets_subtract_the_training_mean(setup):
    images, _, teacher, _ = setup
    cache = TeacherEmbeddingCache.build(_fn(teacher), images)
    c = cache.centered()
    mean = torch.cat([cache.emb, cache.emb_flip]).mean(0)
    assert torch.allclose(c.emb, cache.emb - mean) and torch.allclose(c.mean, mean)
    assert torch.cat([c.emb, c.emb_flip]).mean(0).abs().max() < 1e-5
    from lqlib.methods import get_method

    assert get_method("angular_emb_c").teacher_center and not get_method("angular_emb").teacher_center
