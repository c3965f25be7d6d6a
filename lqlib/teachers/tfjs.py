"""Reading TensorFlow.js models: ``model.json`` + binary weight shards → graph nodes + numpy arrays.

Format (tfjs-converter, "graph-model"): ``model.json`` has

* ``modelTopology.node`` — the frozen TF GraphDef as JSON: ``name``, ``op``, ``input`` (``"x"``,
  ``"x:1"`` for a second output, ``"^x"`` for a control dependency) and ``attr`` (TF AttrValues:
  strings base64-encoded under ``s``, ints as decimal strings under ``i``, lists under ``list``);
* ``weightsManifest`` — groups ``{paths: [shard files], weights: [{name, shape, dtype,
  quantization?}]}``; a group's shards are concatenated and its weights laid out back to back, each
  in little-endian ``dtype`` — unless ``quantization`` says how it was stored: ``{dtype: "uint8" |
  "uint16", scale, min}`` (value = q·scale + min, rounded for int32) or ``{dtype: "float16"}``.

Layout conversion to PyTorch (TF is NHWC with HWIO kernels):

* conv kernel H×W×I×O → O×I×H×W (:func:`conv_kernel_to_torch`);
* depthwise kernel H×W×C×M → (C·M)×1×H×W, output channel ``c·M + m`` as in TF
  (:func:`depthwise_kernel_to_torch`);
* dense (I, O) → (O, I) (:func:`dense_to_torch`), also for 1×1 convs feeding an ``nn.Linear``.

:func:`conv_layers` summarises a graph as its convolutions in execution order, each with its bias
(BN folded by the converter appears as ``BiasAdd``), stride, padding and the activation that follows
it — including PReLU, which TF graphs spell as ``relu(x) + c·(x − |x|)`` (slope 2c).
"""
from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("bool"),
    "uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2"),
}


class TfjsFormatError(ValueError):
    """model.json or its weight shards do not match the TF.js format (or use an unsupported feature)."""


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


# --------------------------------------------------------------------------- graph

def _attr_value(v: Mapping[str, Any]) -> Any:
    if "s" in v:
        raw = base64.b64decode(v["s"])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    if "i" in v:
        return int(v["i"])
    if "f" in v:
        return float(v["f"])
    if "b" in v:
        return bool(v["b"])
    if "type" in v:
        return v["type"]
    if "shape" in v:
        dims = v["shape"].get("dim", [])
        return [int(d.get("size", -1)) for d in dims]
    if "list" in v:
        lst = v["list"]
        for key in ("s", "i", "f", "b", "type", "shape"):
            if key in lst:
                return [_attr_value({key: item}) for item in lst[key]]
        return []
    return v  # tensor / func: kept as-is


@dataclass
class TfjsNode:
    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfjsGraph:
    """A TF.js graph model: nodes in file order (a valid execution order) and decoded weights."""

    nodes: list[TfjsNode]
    weights: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.by_name = {n.name: n for n in self.nodes}
        self._consumers: dict[str, list[TfjsNode]] = {}
        for n in self.nodes:
            for i in n.inputs:
                self._consumers.setdefault(i, []).append(n)

    def consumers(self, name: str) -> list[TfjsNode]:
        return self._consumers.get(name, [])

    @property
    def inputs(self) -> list[TfjsNode]:
        return [n for n in self.nodes if n.op == "Placeholder"]

    @property
    def outputs(self) -> list[str]:
        sig = (self.meta.get("userDefinedMetadata") or {}).get("signature", {}).get("outputs")
        if sig:
            return [o.get("name", k).split(":")[0] for k, o in sig.items()]
        return [n.name for n in self.nodes if n.op not in ("Const", "NoOp") and not self.consumers(n.name)]

    def const(self, name: str) -> np.ndarray:
        try:
            return self.weights[name]
        except KeyError:
            raise TfjsFormatError(f"node {name!r} is not a weight of this model") from None


def parse_nodes(topology: Mapping[str, Any]) -> list[TfjsNode]:
    nodes = []
    for n in topology.get("node", []):
        inputs = [i.split(":")[0] for i in n.get("input", []) if not i.startswith("^")]
        attrs = {k: _attr_value(v) for k, v in n.get("attr", {}).items()}
        nodes.append(TfjsNode(n["name"], n["op"], inputs, attrs))
    return nodes


def load_graph_model(json_path: str | os.PathLike) -> TfjsGraph:
    """Read a TF.js graph model (``model.json`` + the shards named in it, from the same folder)."""
    json_path = Path(json_path)
    with open(json_path, encoding="utf-8") as f:
        model = json.load(f)
    topology = model.get("modelTopology")
    if not isinstance(topology, dict) or "node" not in topology:
        raise TfjsFormatError(f"{json_path}: not a TF.js graph model (modelTopology.node missing; "
                              f"format={model.get('format')!r})")
    if "weightsManifest" not in model:
        raise TfjsFormatError(f"{json_path}: weightsManifest missing")

    meta = {k: v for k, v in model.items() if k not in ("modelTopology", "weightsManifest")}
    return TfjsGraph(parse_nodes(topology), decode_weights(model["weightsManifest"], shard_reader(json_path)), meta)


# --------------------------------------------------------------------------- layouts

def conv_kernel_to_torch(w: np.ndarray) -> np.ndarray:
    """TF conv kernel H×W×I×O → PyTorch O×I×H×W."""
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def depthwise_kernel_to_torch(w: np.ndarray) -> np.ndarray:
    """TF depthwise kernel H×W×C×M → PyTorch (C·M)×1×H×W (groups=C)."""
    h, k, c, m = w.shape
    return np.ascontiguousarray(w.reshape(h, k, c * m).transpose(2, 0, 1)[:, None])


def dense_to_torch(w: np.ndarray) -> np.ndarray:
    """TF dense kernel (I, O) — or a 1×1 conv kernel 1×1×I×O — → PyTorch ``nn.Linear`` (O, I)."""
    if w.ndim == 4:
        if w.shape[:2] != (1, 1):
            raise TfjsFormatError(f"only a 1×1 conv kernel maps to a dense layer, got {w.shape}")
        w = w[0, 0]
    return np.ascontiguousarray(w.T)


# --------------------------------------------------------------------------- conv summary

CONV_OPS = {"Conv2D": "conv", "_FusedConv2D": "conv", "DepthwiseConv2dNative": "depthwise",
            "FusedDepthwiseConv2dNative": "depthwise"}


@dataclass
class TfConv:
    """One convolution of a TF graph with what follows it (see :func:`conv_layers`)."""

    name: str
    kind: str                     # "conv" | "depthwise"
    kernel: np.ndarray            # TF layout
    bias: np.ndarray | None
    stride: int
    padding: str                  # "SAME" | "VALID"
    activation: str               # "linear" | "relu" | "prelu"
    alpha: np.ndarray | None = None  # PReLU slopes
    output: str = ""              # node whose value is the activated output


def _prelu_after(graph: TfjsGraph, x: str) -> tuple[np.ndarray, str] | None:
    """Match ``relu(x) + c·(x − |x|)`` (any operand order) on tensor ``x``; return (slope 2c, output node)."""
    cons = graph.consumers(x)
    relu = next((n for n in cons if n.op == "Relu"), None)
    absn = next((n for n in cons if n.op == "Abs"), None)
    sub = next((n for n in cons if n.op == "Sub" and absn is not None and n.inputs == [x, absn.name]), None)
    if sub is None:
        return None
    mul = next((n for n in graph.consumers(sub.name) if n.op == "Mul"), None)
    if mul is None:
        return None
    const = [i for i in mul.inputs if i != sub.name]
    if len(const) != 1 or const[0] not in graph.weights:
        return None
    pos = relu.name if relu is not None else x  # x itself when Relu was fused into the producer
    add = next((n for n in graph.consumers(mul.name) if n.op in ("Add", "AddV2") and set(n.inputs) == {pos, mul.name}),
               None)
    if add is None:
        return None
    return 2.0 * graph.const(const[0]), add.name


def conv_layers(graph: TfjsGraph) -> list[TfConv]:
    """The graph's convolutions in execution order, with bias, stride, padding and activation.

    A ``Relu`` fused into the convolution makes the activation ``relu`` — also when the graph then
    applies the PReLU pattern to the already-rectified value, which is the identity there (the
    tfjs-converter fuses ``Relu`` into depthwise convs even when the pre-activation value has other
    consumers). A fused ``Prelu`` reads its slopes from the fourth input.
    """
    layers = []
    for n in graph.nodes:
        if n.op not in CONV_OPS:
            continue
        strides = n.attrs.get("strides", [1, 1, 1, 1])
        if n.attrs.get("data_format", "NHWC") != "NHWC" or strides[1] != strides[2]:
            raise TfjsFormatError(f"{n.name}: only NHWC convolutions with equal strides are supported")
        if any(d != 1 for d in n.attrs.get("dilations", [1, 1, 1, 1])):
            raise TfjsFormatError(f"{n.name}: dilated convolutions are not supported")
        fused = n.attrs.get("fused_ops", [])
        bias = graph.const(n.inputs[2]) if "BiasAdd" in fused else None
        act, alpha, out = "linear", None, n.name
        if "Relu" in fused:
            act = "relu"
        elif "Prelu" in fused:
            act, alpha = "prelu", graph.const(n.inputs[3])
        elif set(fused) - {"BiasAdd"}:
            raise TfjsFormatError(f"{n.name}: unsupported fused ops {fused}")
        if act != "prelu":
            prelu = _prelu_after(graph, n.name)
            if prelu is not None and act == "linear":
                act, (alpha, out) = "prelu", prelu
            elif prelu is not None:  # PReLU on relu(x): identity, the output is the pattern's Add
                out = prelu[1]
            else:
                relu = next((c for c in graph.consumers(n.name) if c.op == "Relu"), None)
                if relu is not None and act == "linear" and len(graph.consumers(n.name)) == 1:
                    act, out = "relu", relu.name
        layers.append(TfConv(n.name, CONV_OPS[n.op], graph.const(n.inputs[1]), bias, int(strides[1]),
                             n.attrs.get("padding", "VALID"), act, alpha, out))
    return layers
