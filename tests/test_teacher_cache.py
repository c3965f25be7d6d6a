"""Cached teacher embeddings: the same loss as the live teacher, stored once per (teacher, data)."""
import pytest
import torch

from lqlib import paths
from lqlib.data.memory import DecodedDataset
from lqlib.distiller import Distiller
from lqlib.evaluation import embed
from lqlib.heads import build_head
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
def test_cached_and_live_teacher_give_the_same_loss(setup, method, same_batch_losses):
    images, labels, teacher, student = setup
    cache = TeacherEmbeddingCache.build(_fn(teacher), images)
    live, cached = _distiller(method, teacher, student).eval(), _distiller(method, teacher, student, cache).eval()
    cached.composer.load_state_dict(live.composer.state_dict())  # same connector weights
    idx = torch.tensor([3, 17, 5, 0, 22, 9, 11, 2])
    pl, pc = same_batch_losses(live, cached, images, labels, idx)
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


# ------------------------------------------------------------------------------ keys and validation
def _file_teacher(folder, seed):
    """A spec .json + state-dict teacher (an external file teacher) with weights drawn from ``seed``."""
    from lqlib.teachers import TeacherSpec

    torch.manual_seed(seed)
    net = build_backbone("ir_cbam_tiny", embedding_size=64)
    torch.save(net.state_dict(), folder / "w.pt")
    TeacherSpec(name="t", arch="ir_cbam_tiny", arch_kw={"embedding_size": 64}, weights="w.pt",
                embedding_size=64).save(folder / "spec.json")
    return str(folder / "spec.json")


def _cache_for(spec, images, data):
    """What the trainer does: load the teacher named by ``spec`` and ask for its cache."""
    from lqlib.teacher_loading import load_teacher, teacher_cache_for

    teacher, _ = load_teacher(spec, torch.device("cpu"))
    comp = build_composer(get_method("angular_emb"), build_backbone("ir_cbam_tiny"), teacher)
    ds = DecodedDataset(images, torch.arange(len(images)) % 4)
    return teacher_cache_for("auto", spec, teacher, comp, ds, data, torch.device("cpu"), "None"), teacher


def _live(teacher, images):
    return embed(teacher, images, batch_size=64, device="cpu", flip=True)


def test_synthetic_sets_of_other_seeds_get_their_own_embeddings(tmp_path, monkeypatch):
    """Synthetic data has no data key (data_key → None): a seed-1 run used to receive seed 0's table."""
    from lqlib.data.memory import decoded
    from lqlib.data.sampling import data_key
    from lqlib.data.synthetic import SyntheticFaces

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    spec = _file_teacher(tmp_path, 0)
    assert data_key("synthetic") is None
    for seed in (0, 1, 0):
        images = decoded(SyntheticFaces(num_classes=4, images_per_class=3, seed=seed)).images
        cache, teacher = _cache_for(spec, images, data_key("synthetic"))
        emb, emb_flip = _live(teacher, images)
        assert torch.allclose(cache.emb, emb, atol=1e-5) and torch.allclose(cache.emb_flip, emb_flip, atol=1e-5), seed
    assert len(list((tmp_path / "cache" / "teacher_embeddings").glob("*.pt"))) == 2  # seed 0 read back


def test_new_weights_at_the_same_path_are_a_new_teacher(setup, tmp_path, monkeypatch):
    """File teachers are keyed by their weights' SHA-256, not by path and spec."""
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    images = setup[0][:12]
    spec = _file_teacher(tmp_path, 0)
    first, _ = _cache_for(spec, images, {"split": "x"})
    _file_teacher(tmp_path, 1)  # retrained: same path, same spec, other weights
    second, teacher = _cache_for(spec, images, {"split": "x"})
    assert torch.allclose(second.emb, _live(teacher, images)[0], atol=1e-5)
    assert not torch.allclose(first.emb, second.emb)
    assert second.manifest["teacher"]["identity"].startswith("file:")


def _narrow(obj, width=7):
    """Every (N, 64) table in a cache file cut to ``width`` columns, and its manifest made to agree."""
    if isinstance(obj, torch.Tensor) and obj.dim() == 2 and obj.shape[1] == 64:
        return obj[:, :width].clone()
    if isinstance(obj, dict):
        return {k: (width if k == "embedding_size" else _narrow(v, width)) for k, v in obj.items()}
    if isinstance(obj, list) and len(obj) == 2 and obj[1] == 64:
        return [obj[0], width]
    return obj


def _damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"not a cache \x00\xff" * 100)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "width 7":
        torch.save(_narrow(torch.load(path, weights_only=True)), path)
    elif how == "rows":
        d = torch.load(path, weights_only=True)
        torch.save({k: (v[:5] if isinstance(v, torch.Tensor) else v) for k, v in d.items()}
                   if "emb" in d else {**d, "arrays": {k: v[:5] for k, v in d["arrays"].items()},
                                       "manifest": {**d["manifest"], "arrays": {k: {**m, "shape": [5, 64]} for k, m in
                                                                                d["manifest"]["arrays"].items()}}},
                   path)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "width 7", "rows"])
def test_an_invalid_cache_file_is_named_and_rebuilt(setup, tmp_path, monkeypatch, how):
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    images = setup[0][:12]
    spec = _file_teacher(tmp_path, 0)
    good, teacher = _cache_for(spec, images, {"split": "x"})
    (path,) = (tmp_path / "cache" / "teacher_embeddings").glob("*.pt")
    _damage(path, how)
    with pytest.warns(UserWarning, match=str(path)):
        again, _ = _cache_for(spec, images, {"split": "x"})
    assert torch.equal(again.emb, good.emb) and torch.equal(again.emb_flip, good.emb_flip)
    assert again.emb.shape == (12, 64)
    d = torch.load(path, weights_only=True)  # the rebuilt file is whole and valid again
    assert d["arrays"]["emb"].shape == (12, 64) and d["manifest"]["arrays"]["emb"]["shape"] == [12, 64]
    assert not list(path.parent.glob("*.tmp")) and not list(path.parent.glob(".*.tmp"))
