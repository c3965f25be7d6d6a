"""Cached outputs of an own teacher (embedding, CBAM maps; logits through its head at read time):
the same loss as the live teacher for every term that reads only these, stored once per key.

Tolerance: rtol 1e-4, atol 1e-5 on every term, fp32 and bf16 alike. The table holds the teacher's
outputs in the dtype it produced them (bf16 under bf16 autocast: nothing is rounded on the way in), and
the test's live teacher runs the same eager kernels, so the only differences are float32 summation
order in the losses (measured: 0 for most terms, ≤ 1.5e-6 for DKD). In training the live teacher may be
compiled (Inductor fuses differently): a bf16 map value can then round one bf16 step (2⁻⁸ relative)
the other way, which this check does not cover. The negative controls (the mirror image's rows, the
next image's rows) fail the same check on a random-weight teacher, where they differ by ~0.3–25 %.
"""
import pytest
import torch

from lqlib import paths
from lqlib.data.memory import DecodedDataset
from lqlib.distiller import Distiller
from lqlib.heads import build_head
from lqlib.losses import Progress
from lqlib.methods import build_composer, get_method
from lqlib.models import build_backbone
from lqlib.teachers import outputs as teacher_outputs
from lqlib.teacher_loading import teacher_cache_for

CLASSES = 6


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (20, 3, 112, 112), dtype=torch.uint8, generator=g)
    labels = torch.arange(20) % CLASSES
    teacher = build_backbone("ir_cbam_tiny").eval()
    torch.manual_seed(5)
    teacher_head = build_head("arcface", teacher.embedding_size, CLASSES, s=16.0, m=0.3).eval()
    student = build_backbone("ir_cbam_tiny")
    return images, labels, teacher, teacher_head, student


def _distiller(method, setup, cache=None, **kd_params):
    images, labels, teacher, teacher_head, student = setup
    m = get_method(method)
    comp = build_composer(m, student, teacher, kd_params=kd_params or None)
    torch.manual_seed(3)  # the same student margin head for the live and the cached distiller
    head = build_head("arcface", student.embedding_size, CLASSES, s=16.0, m=0.3)
    return Distiller(student, head, comp, teacher=teacher, teacher_head=teacher_head, teacher_cache=cache,
                     channels_last=True).eval()


def _losses(d, setup, idx, amp_dtype, progress=Progress(epoch=9, step=0, epoch_fraction=9.0)):
    images, labels = setup[0], setup[1]
    gen = torch.Generator().manual_seed(7)  # same flips and degradations for both
    with torch.no_grad(), torch.autocast("cpu", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        total, parts = d(images[idx], labels[idx], gen, progress, index=idx)
    return total, parts


IDX = torch.tensor([3, 17, 5, 0, 12, 9, 11, 2])
CASES = [("logit", {}), ("logit_hinton", {}), ("logit", {"logit": {"source": "plain"}}), ("dkd", {}),
         ("attention", {}), ("askd", {}), ("attention", {"attention": {"reduction": "mean"}}),
         ("logit+attention", {})]
TOL = {None: dict(rtol=1e-4, atol=1e-5), torch.bfloat16: dict(rtol=1e-4, atol=1e-5)}


@pytest.fixture(scope="module")
def caches(setup):
    images, _, teacher = setup[0], setup[1], setup[2]
    return {amp: teacher_outputs.load_or_build(teacher, images, None, "cpu", amp, log=lambda *_: None)
            for amp in (None, torch.bfloat16)}


@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("method,params", CASES, ids=[f"{m}{'-' + str(p) if p else ''}" for m, p in CASES])
def test_cached_and_live_teacher_give_the_same_loss(setup, caches, method, params, amp):
    live = _distiller(method, setup, **params)
    cached = _distiller(method, setup, caches[amp], **params)
    gen = torch.Generator().manual_seed(7)
    flipped = live.inputs(setup[0][IDX], gen)[2]
    assert 0 < int(flipped.sum()) < len(IDX)  # the batch mixes originals and mirror images
    tl, pl = _losses(live, setup, IDX, amp)
    tc, pc = _losses(cached, setup, IDX, amp)
    assert set(pl) == set(pc) and set(pl) - {"ce"}
    for k in pl:
        assert torch.allclose(pl[k], pc[k], **TOL[amp]), (method, params, k, float(pl[k]), float(pc[k]))
    assert torch.allclose(tl, tc, **TOL[amp])
    # negative controls: the mirror image's rows, or the next image's, do not pass the same check
    t = caches[amp].table
    for wrong_table in (t.view(-1, 2, t.shape[1]).flip(1).reshape(t.shape), t.roll(2, dims=0)):
        wrong = _distiller(method, setup, teacher_outputs.TeacherOutputCache(wrong_table, caches[amp].layout), **params)
        _, pw = _losses(wrong, setup, IDX, amp)
        assert not all(torch.allclose(pl[k], pw[k], **TOL[amp]) for k in pl if k != "ce"), (method, params)


def test_rows_are_the_teachers_outputs_of_image_and_mirror(setup, caches):
    images, teacher = setup[0], setup[2]
    cache = caches[None]
    assert len(cache) == len(images) and cache.num_blocks == 4
    names = [n for n, _ in cache.layout]
    assert names == ["embedding", "channel.0", "spatial.0", "channel.1", "spatial.1", "channel.2", "spatial.2",
                     "channel.3", "spatial.3", "blocks"]
    out = cache.outputs(torch.tensor([4, 4]), torch.tensor([False, True]))
    x = torch.stack([images[4], images[4].flip(-1)])
    with torch.no_grad():
        emb, maps = teacher_outputs._teacher_forward(teacher, x, None)
    assert torch.allclose(out.embedding, emb, atol=1e-5)
    for (c, s), m in zip(out.attention, maps):
        assert c.shape == m.channel.shape and s.shape == m.spatial.shape
        assert torch.allclose(c, m.channel, atol=1e-6) and torch.allclose(s, m.spatial, atol=1e-6)
    assert out.logits is None  # no labels: no logits
    assert out.attention[0].spatial.shape[-2:] == (56, 56) and out.attention[3].spatial.shape[-2:] == (7, 7)


def test_bf16_table_is_stored_in_bf16_and_its_width(caches):
    c = caches[torch.bfloat16]
    # 512 embedding + channels 16+32+64+128 + spatial 56²+28²+14²+7²
    assert c.table.dtype == torch.bfloat16 and c.table.shape == (40, 512 + 240 + 4165)
    assert c.nbytes == 40 * 4917 * 2


def test_stored_once_per_key_and_validated(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    images, teacher = setup[0][:6], setup[2]
    calls = []
    real = teacher_outputs.build_table
    monkeypatch.setattr(teacher_outputs, "build_table", lambda *a, **k: calls.append(1) or real(*a, **k))
    key = {"teacher": {"run": "t", "sha256": "abc"}, "amp": "None", "data": {"d": 1}}
    a = teacher_outputs.load_or_build(teacher, images, key, "cpu", None, log=lambda *_: None)
    b = teacher_outputs.load_or_build(teacher, images, key, "cpu", None, log=lambda *_: None)
    assert calls == [1] and torch.equal(a.table, b.table)
    assert b.manifest["key"]["layout"] == a.layout and b.manifest["n"] == 6
    files = sorted((tmp_path / "teacher_outputs").glob("*.pt"))
    assert len(files) == 1
    files[0].write_bytes(b"garbage")  # an unreadable file is named and rebuilt
    with pytest.warns(UserWarning, match=files[0].name):
        c = teacher_outputs.load_or_build(teacher, images, key, "cpu", None, log=lambda *_: None)
    assert calls == [1, 1] and torch.equal(c.table, a.table)
    teacher_outputs.load_or_build(teacher, images, {**key, "amp": "torch.bfloat16"}, "cpu", torch.bfloat16,
                                  log=lambda *_: None)
    assert calls == [1, 1, 1] and len(list((tmp_path / "teacher_outputs").glob("*.pt"))) == 2


def test_which_terms_and_steps_get_the_output_cache(setup):
    images, labels, teacher, teacher_head, student = setup
    ds = DecodedDataset(images, labels)

    def pick(method, want, fcr=0.0, spec=None):
        comp = build_composer(get_method(method), student, teacher)
        return teacher_cache_for(want, spec or (teacher, teacher_head), teacher, comp, ds, None, torch.device("cpu"),
                                 "None", teacher_head=teacher_head, face_content_replacement=fcr, amp_dtype=None)

    assert isinstance(pick("logit+attention", True), teacher_outputs.TeacherOutputCache)
    assert isinstance(pick("dkd", True), teacher_outputs.TeacherOutputCache)
    assert pick("logit+attention", "auto") is None  # no stable identity: nothing to share, live teacher
    assert pick("logit+attention", False) is None
    for method, fcr in (("at", 0.0), ("hierfeat", 0.0), ("logit+attention", 0.5)):
        assert pick(method, "auto", fcr) is None
        with pytest.raises(ValueError, match="teacher_cache=True"):
            pick(method, True, fcr)
    comp = build_composer(get_method("logit"), student, teacher)
    cache = pick("logit", True)
    with pytest.raises(ValueError, match="face-content replacement"):
        Distiller(student, teacher_head, comp, teacher=teacher, teacher_head=teacher_head, teacher_cache=cache,
                  face_content_replacement=0.5)
    comp_at = build_composer(get_method("at"), student, teacher)
    with pytest.raises(ValueError, match="TeacherOutputCache serves"):
        Distiller(student, teacher_head, comp_at, teacher=teacher, teacher_head=teacher_head, teacher_cache=cache)


def test_students_of_a_teacher_run_share_its_stored_outputs(tmp_path, monkeypatch):
    from lqlib.train import Trainer, TrainConfig, train_teacher

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    common = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, backbone="ir_cbam_tiny",
                  epochs=1, batch_size=8, progress=False)
    train_teacher(TrainConfig(name="t", out_dir=str(tmp_path / "t"), **common))
    built = []
    real = teacher_outputs.build_table
    monkeypatch.setattr(teacher_outputs, "build_table", lambda *a, **k: built.append(1) or real(*a, **k))
    for name in ("s1", "s2"):
        tr = Trainer(TrainConfig(name=name, out_dir=str(tmp_path / name), method="logit+attention",
                                 teacher=str(tmp_path / "t"), **common))
        tr.fit()
        assert isinstance(tr.distiller.teacher_cache, teacher_outputs.TeacherOutputCache)
        assert len(tr.distiller.teacher_cache) == 16 and set(tr.last_parts) == {"ce", "logit", "attention"}
    assert built == [1]  # the second student read the stored table
    assert len(list((tmp_path / "cache" / "teacher_outputs").glob("*.pt"))) == 1
    at = Trainer(TrainConfig(name="a", out_dir=str(tmp_path / "a"), method="at", teacher=str(tmp_path / "t"), **common))
    at._build()
    assert at.distiller.teacher_cache is None  # stage features: the live teacher
