"""External teachers: spec preprocessing, freezing, state-dict/ONNX loaders, TF.js weights manifests, npm."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lqlib.images import normalize
from lqlib.models import build_backbone
from lqlib.teachers import ExternalTeacher, TeacherSpec, build_teacher, from_state_dict
from lqlib.teachers.tfjs import (conv_kernel_to_torch, decode_weight_buffer, decode_weights, dense_to_torch,
                                 shard_reader, TfjsFormatError)


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


# --------------------------------------------------------------------------- TF.js weights manifests

@pytest.fixture(scope="module")
def tfjs_manifest(tmp_path_factory):
    """A synthetic TF.js weights manifest, one group split over two shards: float32, float16-,
    uint8- and uint16-quantized float32, and int32 weights."""
    rng = np.random.default_rng(0)
    k1 = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b1 = rng.normal(size=4).astype(np.float32)
    bd = rng.normal(size=8).astype(np.float16)               # stored as float16
    q2 = rng.integers(0, 256, size=(1, 1, 8, 5)).astype(np.uint8)
    s2, m2 = 0.01, -1.2
    qd = rng.integers(0, 65536, size=(125, 6)).astype(np.uint16)
    sd, md = 1e-5, -0.3
    shape = np.array([-1, 125], dtype=np.int32)
    weights = [  # (spec, stored bytes, expected decoded value)
        ({"name": "k1", "shape": [3, 3, 3, 4], "dtype": "float32"}, k1.tobytes(), k1),
        ({"name": "b1", "shape": [4], "dtype": "float32"}, b1.tobytes(), b1),
        ({"name": "bd", "shape": [8], "dtype": "float32", "quantization": {"dtype": "float16"}}, bd.tobytes(),
         bd.astype(np.float32)),
        ({"name": "k2", "shape": [1, 1, 8, 5], "dtype": "float32",
          "quantization": {"dtype": "uint8", "scale": s2, "min": m2}}, q2.tobytes(),
         (q2.astype(np.float64) * s2 + m2).astype(np.float32)),
        ({"name": "shape", "shape": [2], "dtype": "int32"}, shape.tobytes(), shape),
        ({"name": "wd", "shape": [125, 6], "dtype": "float32",
          "quantization": {"dtype": "uint16", "scale": sd, "min": md}}, qd.tobytes(),
         (qd.astype(np.float64) * sd + md).astype(np.float32)),
    ]
    blob = b"".join(data for _, data, _ in weights)
    folder = tmp_path_factory.mktemp("tfjs")
    (folder / "a.bin").write_bytes(blob[:300])  # one group split over two shards
    (folder / "b.bin").write_bytes(blob[300:])
    manifest = [{"paths": ["a.bin", "b.bin"], "weights": [w for w, _, _ in weights]}]
    (folder / "weights_manifest.json").write_text(json.dumps(manifest))
    return folder / "weights_manifest.json", {w["name"]: v for w, _, v in weights}


def test_tfjs_decode(tfjs_manifest):
    path, expected = tfjs_manifest
    weights = decode_weights(json.loads(path.read_text()), shard_reader(path))
    assert set(weights) == set(expected)
    for name, value in expected.items():
        assert weights[name].dtype == value.dtype and weights[name].shape == value.shape
        np.testing.assert_array_equal(weights[name], value, err_msg=name)
    with pytest.raises(TfjsFormatError):
        decode_weight_buffer([{"name": "w", "shape": [4], "dtype": "float32"}], b"\0" * 12)
    with pytest.raises(FileNotFoundError, match="c.bin"):
        decode_weights([{"paths": ["c.bin"], "weights": []}], shard_reader(path))


def test_tfjs_layouts(tfjs_manifest):
    path, w = tfjs_manifest
    k = conv_kernel_to_torch(w["k1"])
    assert k.shape == (4, 3, 3, 3) and k[2, 1, 0, 2] == w["k1"][0, 2, 1, 2]
    x = np.random.default_rng(1).normal(size=(2, 125)).astype(np.float32)
    dense = dense_to_torch(w["wd"])  # (I, O) → nn.Linear weight (O, I)
    assert dense.shape == (6, 125) and dense.flags.c_contiguous
    np.testing.assert_allclose(x @ dense.T, x @ w["wd"], rtol=1e-6)
    with pytest.raises(TfjsFormatError, match="2-d"):
        dense_to_torch(w["k2"])


# --------------------------------------------------------------------------- npm

def test_npm_missing_is_a_clear_error(tmp_path, monkeypatch):
    from lqlib.teachers import faceapi, npm

    monkeypatch.setattr(npm.shutil, "which", lambda _: None)
    with pytest.raises(npm.NpmFetchError, match=r"npm pack @vladmandic/face-api@1\.7\.15"):
        npm.fetch_npm_files(faceapi.PACKAGE, faceapi.VERSION, faceapi.FILES, tmp_path)
