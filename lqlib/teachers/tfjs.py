"""Reading TensorFlow.js *weights manifests*: ``weightsManifest`` + binary shards → numpy arrays.

What remains of lqlib's TF.js support is what :mod:`lqlib.teachers.faceapi` needs: face-api.js ships
its networks as a bare weights manifest (no graph), and the network itself is written out in PyTorch.
(A TF.js *graph-model* reader and a numpy interpreter for it served only the retired
``vladmandic-mobilefacenet`` teacher and were removed with it.)

Format (tfjs-converter): a manifest is a list of groups ``{paths: [shard files], weights: [{name,
shape, dtype, quantization?}]}``; a group's shards are concatenated and its weights laid out back to
back, each in little-endian ``dtype`` — unless ``quantization`` says how it was stored: ``{dtype:
"uint8" | "uint16", scale, min}`` (value = q·scale + min, rounded for int32) or ``{dtype: "float16"}``.
:func:`decode_weights` decodes a manifest, :func:`shard_reader` reads its shards from the manifest's
folder.

Layout conversion to PyTorch (TF is NHWC with HWIO kernels):

* conv kernel H×W×I×O → O×I×H×W (:func:`conv_kernel_to_torch`);
* dense (I, O) → (O, I) (:func:`dense_to_torch`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import LqlibError

DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("bool"),
    "uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2"),
}


class TfjsFormatError(LqlibError, ValueError):
    """A weights manifest or its shards do not match the TF.js format (or use an unsupported feature)."""


# --------------------------------------------------------------------------- weights

def _decode_one(spec: Mapping[str, Any], buf: memoryview, offset: int) -> tuple[np.ndarray, int]:
    name, dtype = spec["name"], spec["dtype"]
    shape = tuple(int(s) for s in spec.get("shape", []))
    count = math.prod(shape)
    if dtype == "string":
        values = []
        for _ in range(count):
            (length,) = np.frombuffer(buf, "<u4", 1, offset)
            offset += 4
            values.append(bytes(buf[offset:offset + int(length)]))
            offset += int(length)
        return np.array(values, dtype=object).reshape(shape), offset
    if dtype not in ("float32", "int32", "bool"):
        raise TfjsFormatError(f"weight {name!r}: unsupported dtype {dtype!r}")
    quant = spec.get("quantization")
    stored = DTYPES[quant["dtype"]] if quant else DTYPES[dtype]
    nbytes = count * stored.itemsize
    if offset + nbytes > len(buf):
        raise TfjsFormatError(f"weight {name!r} needs bytes {offset}..{offset + nbytes}, the shards hold {len(buf)}")
    raw = np.frombuffer(buf, stored, count, offset)
    offset += nbytes
    if quant is None:
        values = raw.copy()
    elif quant["dtype"] == "float16":
        values = raw.astype(np.float32)
    elif quant["dtype"] in ("uint8", "uint16"):
        values = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
        values = np.round(values).astype(np.int32) if dtype == "int32" else values.astype(np.float32)
    else:
        raise TfjsFormatError(f"weight {name!r}: unsupported quantization {quant!r}")
    return values.reshape(shape), offset


def decode_weight_buffer(specs: Sequence[Mapping[str, Any]], buffer: bytes) -> dict[str, np.ndarray]:
    """Decode one manifest group's concatenated shards into ``{name: array}`` (TF layout)."""
    buf, offset, out = memoryview(buffer), 0, {}
    for spec in specs:
        out[spec["name"]], offset = _decode_one(spec, buf, offset)
    if offset != len(buf):
        raise TfjsFormatError(f"weight group decoded {offset} bytes but its shards hold {len(buf)}")
    return out


def decode_weights(manifest: Sequence[Mapping[str, Any]], read: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """All weights of a ``weightsManifest``; ``read(path)`` returns a shard's bytes."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        weights.update(decode_weight_buffer(group["weights"], b"".join(read(p) for p in group["paths"])))
    return weights


def shard_reader(json_path: str | os.PathLike) -> Callable[[str], bytes]:
    """``read(path)`` for :func:`decode_weights`: the bytes of a shard named in ``json_path``, from its folder."""
    json_path = Path(json_path)

    def read(path: str) -> bytes:
        shard = json_path.parent / path
        if not shard.is_file():
            raise FileNotFoundError(f"weight shard {shard} (named in {json_path.name}) not found")
        return shard.read_bytes()

    return read


# --------------------------------------------------------------------------- layouts

def conv_kernel_to_torch(w: np.ndarray) -> np.ndarray:
    """TF conv kernel H×W×I×O → PyTorch O×I×H×W."""
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def dense_to_torch(w: np.ndarray) -> np.ndarray:
    """TF dense kernel (I, O) → PyTorch ``nn.Linear`` weight (O, I)."""
    if w.ndim != 2:
        raise TfjsFormatError(f"a dense kernel is 2-d (I, O), got shape {w.shape}")
    return np.ascontiguousarray(w.T)
