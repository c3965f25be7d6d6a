"""A strong pretrained teacher: face-api.js's FaceRecognitionNet (a port of dlib's ResNet), in PyTorch.

Source: npm package ``@vladmandic/face-api@1.7.15`` (MIT), files
``model/face_recognition_model-weights_manifest.json`` + ``model/face_recognition_model.bin``
(6.4 MB) — the weights of face-api.js's ``FaceRecognitionNet``, itself a TF.js port of dlib's
``dlib_face_recognition_resnet_model_v1`` (a ResNet-34-like network, 128-d descriptor, 150×150 RGB
dlib "chips"). The manifest is a TF.js weights manifest without a graph: 117 tensors, 109 stored as
uint8 with per-tensor affine quantisation (value = q·scale + min) and 8 as float32; decoding is
:func:`lqlib.teachers.tfjs.decode_weights`.

The network, as in ``src/faceRecognitionNet/*.ts`` of the package (NHWC there, NCHW here):

* input: RGB 0..255 minus the mean (122.782, 117.001, 104.298), divided by 255;
* ``conv32_down``: conv 7×7 stride 2 **valid** (+ bias) → scale (x·w + b per channel) → ReLU;
* max-pool 3×3 stride 2 **valid**;
* residual blocks ``conv(3×3 same) → scale → ReLU → conv(3×3 same) → scale``, + input, ReLU:
  ``conv32_1..3``, ``conv64_1..3``, ``conv128_1..2``, ``conv256_1..2``;
* residual-down blocks ``conv64_down``, ``conv128_down``, ``conv256_down``, ``conv256_down_out``: the
  first conv is 3×3 stride 2 **valid**; the shortcut is a 2×2/2 average pool (valid) with the channels
  zero-padded (concatenated zeros) to the block's width; where the conv path is smaller than the pooled
  shortcut (8→3 vs 4 and 4→1 vs 2 at 150 px input) it is zero-padded at the bottom/right first;
* mean over H×W → ``fc`` 256→128 without bias: the 128-d descriptor (not normalised; face-api.js
  compares descriptors by Euclidean distance, dlib's threshold 0.6).

Geometry: dlib's 150-px chip (padding 0.25) is not lqlib's ArcFace 112×112 crop (plain resizing
112→150 was reported to give only ≈88 % on LFW; not re-measured here). The
:class:`~lqlib.teachers.spec.TeacherSpec` warps lqlib's crop onto the chip with the similarity
``chip = 1.4495·p + (−6.62, −29.51)`` (derived by hand: least squares between the 5 ArcFace template
landmarks and dlib's chip landmarks, a 0.3° rotation dropped), bilinear, mirrored (``"reflect"``)
outside the crop — the bottom ~12 rows of the chip lie below the 112 crop. With it, lqlib's
``evaluate`` (insightface protocol, ``lfw-10fold``, mode ``both``) gives 98.80 ± 0.35 % at ×1 and, with
the ``paper`` degradation (Gaussian blur applied at the *low* resolution), 96.13 / 85.27 / 70.03 % at
×2 / ×4 / ×8 (``bench/results/external_teacher.md``).

Verification: the PyTorch port was compared with the package's own runtime — ``dist/face-api.node-wasm.js``
with ``@tensorflow/tfjs@4.22.0``, CPU backend, in node 20 — on 8 real LFW faces warped to 150×150
chips (``bench/faceapi_node_check.py``): max |Δ descriptor entry| = 2.2e-7 (3.3e-7 with the wasm
backend) for entries up to 0.46 and descriptor norms ≥ 1.33. The converted state dict + spec are
cached under ``<cache>/teachers/faceapi-resnet/`` with the SHA-256 of the two npm files, the package version and
the converter version; a cache that disagrees with any of them is converted again.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import paths
from ..io import torch_save
from .external import ExternalTeacher
from .npm import fetch_npm_files
from .spec import TeacherSpec, similarity_warp
from .tfjs import TfjsFormatError, conv_kernel_to_torch, decode_weights, dense_to_torch, shard_reader

NAME = "faceapi-resnet"
PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
FILES = ("model/face_recognition_model-weights_manifest.json", "model/face_recognition_model.bin")
CONVERTER = 1  # bump when the conversion changes: cached state dicts are then rebuilt
EMBEDDING_SIZE = 128
INPUT_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)
# lqlib 112×112 ArcFace crop → dlib 150-px chip (padding 0.25): chip = CHIP_SCALE·p + CHIP_SHIFT
CHIP_SCALE = 1.4495
CHIP_SHIFT = (-6.62, -29.51)

SPEC = TeacherSpec(
    name=NAME, input_size=(INPUT_SIZE, INPUT_SIZE), crop="none", channel_order="RGB", mean=MEAN_RGB,
    std=(255.0,) * 3, pixel_scale=255.0, layout="NCHW", embedding_size=EMBEDDING_SIZE,
    warp=similarity_warp(CHIP_SCALE, CHIP_SHIFT), warp_border="reflect",
    source=f"npm {PACKAGE}@{VERSION} {', '.join(FILES)} (MIT); face-api.js FaceRecognitionNet, "
           "a port of dlib_face_recognition_resnet_model_v1",
    weights="state_dict.pt",
)


def cache_folder(cache: str | os.PathLike | None = None) -> Path:
    return Path(cache) if cache is not None else paths.cache_dir() / "teachers" / NAME


# --------------------------------------------------------------------------- the network

class Scale(nn.Module):
    """Per-channel affine ``x·weight + bias`` (dlib's "affine" layer; face-api.js's scale layer)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvScale(nn.Module):
    """conv (+ bias) → scale [→ ReLU]; stride 2 is TF 'valid' (no padding), stride 1 'same'."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=0 if stride > 1 else kernel // 2)
        self.scale = Scale(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale(self.conv(x))
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    """face-api.js ``residual`` (``down=False``) or ``residualDown`` block."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        if cin != cout and not down:
            raise ValueError("a residual block changes width only when it downsamples")
        self.down = down
        self.conv1 = ConvScale(cin, cout, 3, 2 if down else 1, relu=True)
        self.conv2 = ConvScale(cout, cout, 3, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
            x = F.pad(x, (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))            # zero channels
            out = F.pad(out, (0, x.shape[3] - out.shape[3], 0, x.shape[2] - out.shape[2]))  # bottom/right
        return F.relu(out + x)


def block_table() -> list[tuple[str, int, int, bool]]:
    """(name, in channels, out channels, downsamples) of the residual blocks, in forward order."""
    rows, cin = [], 32
    for width, repeats in ((32, 3), (64, 3), (128, 2), (256, 2)):
        if width != cin:
            rows.append((f"conv{width}_down", cin, width, True))
        rows += [(f"conv{width}_{i}", width, width, False) for i in range(1, repeats + 1)]
        cin = width
    rows.append(("conv256_down_out", 256, 256, True))
    return rows


class FaceRecognitionNet(nn.Module):
    """face-api.js FaceRecognitionNet: N×3×150×150 normalised RGB → N×128 descriptor.

    Module names follow the weights manifest (``conv32_1/conv1/conv/filters`` ↔
    ``conv32_1.conv1.conv.weight``), see :func:`manifest_to_state_dict`.
    """

    def __init__(self, embedding_size: int = EMBEDDING_SIZE):
        super().__init__()
        self.embedding_size = embedding_size
        self.conv32_down = ConvScale(3, 32, 7, 2, relu=True)
        self.block_names = []
        for name, cin, cout, down in block_table():
            self.add_module(name, Residual(cin, cout, down))
            self.block_names.append(name)
        self.fc = nn.Linear(256, embedding_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv32_down(x), 3, 2)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------- weights

_LEAVES = {"filters": "weight", "bias": "bias", "weights": "weight", "biases": "bias"}


def torch_key(manifest_name: str) -> str:
    """``conv32_1/conv1/scale/biases`` → ``conv32_1.conv1.scale.bias``; ``fc`` → ``fc.weight``."""
    parts = manifest_name.split("/")
    if parts == ["fc"]:
        return "fc.weight"
    if parts[-1] not in _LEAVES:
        raise TfjsFormatError(f"unexpected weight name {manifest_name!r}")
    return ".".join(parts[:-1] + [_LEAVES[parts[-1]]])


def _to_torch_layout(key: str, value: np.ndarray) -> np.ndarray:
    if key == "fc.weight":
        return dense_to_torch(value)           # (256, 128) → (128, 256)
    if value.ndim == 4:
        return conv_kernel_to_torch(value)     # HWIO → OIHW
    return value


def read_manifest(manifest_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Decode a TF.js weights manifest (a list of groups; shards beside it) → ``{name: float32 array}``."""
    manifest_path = Path(manifest_path)
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    if not isinstance(manifest, list) or not all(isinstance(g, dict) and "weights" in g for g in manifest):
        raise TfjsFormatError(f"{manifest_path}: not a TF.js weights manifest (a list of weight groups)")
    return decode_weights(manifest, shard_reader(manifest_path))


def manifest_to_state_dict(weights: dict[str, np.ndarray], model: nn.Module) -> dict[str, torch.Tensor]:
    """Manifest tensors (TF layout) → a state dict for ``model``, checking names and shapes exactly."""
    expected = model.state_dict()
    state = {}
    for name, value in weights.items():
        key = torch_key(name)
        if key not in expected:
            raise TfjsFormatError(f"manifest weight {name!r} ({key}) has no place in {type(model).__name__}")
        arr = _to_torch_layout(key, np.asarray(value, dtype=np.float32))
        if tuple(arr.shape) != tuple(expected[key].shape):
            raise TfjsFormatError(f"{name}: shape {arr.shape} (torch layout) vs {tuple(expected[key].shape)}")
        state[key] = torch.from_numpy(np.ascontiguousarray(arr))
    missing = sorted(set(expected) - set(state))
    if missing:
        raise TfjsFormatError(f"the manifest lacks {len(missing)} tensors, e.g. {missing[:3]}")
    return state


def build_network(weights: dict[str, np.ndarray] | None = None) -> FaceRecognitionNet:
    """The network in eval mode, carrying ``weights`` (decoded manifest) when given."""
    model = FaceRecognitionNet()
    if weights is not None:
        model.load_state_dict(manifest_to_state_dict(weights, model))
    return model.eval()


# --------------------------------------------------------------------------- cache

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _provenance(files: Sequence[Path]) -> dict:
    return {"package": f"{PACKAGE}@{VERSION}", "converter": CONVERTER,
            "sha256": {p.name: _sha256(p) for p in files}}


def convert_faceapi(manifest_path: str | os.PathLike, out_dir: str | os.PathLike) -> TeacherSpec:
    """Convert the manifest + shard into ``out_dir/state_dict.pt`` + ``out_dir/spec.json``."""
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    model = build_network(read_manifest(manifest_path))
    files = [manifest_path, manifest_path.parent / Path(FILES[1]).name]
    torch_save(model.state_dict(), out_dir / SPEC.weights)
    spec = TeacherSpec.from_dict({**SPEC.to_dict(), "notes": _provenance([f for f in files if f.is_file()])})
    spec.save(out_dir / "spec.json")
    return spec


def cache_is_current(folder: Path) -> bool:
    """Converted files present, made by this converter from this package version — and, where the
    npm files are still beside them, from exactly those files (SHA-256)."""
    spec_path = folder / "spec.json"
    if not spec_path.is_file() or not (folder / SPEC.weights).is_file():
        return False
    notes = TeacherSpec.load(spec_path).notes
    if notes.get("package") != f"{PACKAGE}@{VERSION}" or notes.get("converter") != CONVERTER:
        return False
    recorded = notes.get("sha256", {})
    present = [folder / Path(f).name for f in FILES if (folder / Path(f).name).is_file()]
    return all(recorded.get(p.name) == _sha256(p) for p in present)


def load_faceapi_resnet(cache: str | os.PathLike | None = None, refresh: bool = False) -> ExternalTeacher:
    """face-api.js FaceRecognitionNet as a frozen :class:`ExternalTeacher` (fetch + convert on first use).

    First use runs ``npm pack @vladmandic/face-api@1.7.15`` (npm must be installed and the registry
    reachable), keeps the two model files and converts them; afterwards the cached ``state_dict.pt`` +
    ``spec.json`` are loaded directly. ``refresh=True`` converts again.
    """
    folder = cache_folder(cache)
    if refresh or not cache_is_current(folder):
        manifest_path, _ = fetch_npm_files(PACKAGE, VERSION, FILES, folder)
        convert_faceapi(manifest_path, folder)
    spec = TeacherSpec.load(folder / "spec.json")
    model = FaceRecognitionNet(spec.embedding_size or EMBEDDING_SIZE)
    model.load_state_dict(torch.load(folder / spec.weights, map_location="cpu", weights_only=True))
    return ExternalTeacher(model.eval(), spec)
