"""A plain-numpy interpreter for TF.js graph models: the independent reference for converted teachers.

It executes ``modelTopology.node`` op by op, in TF's own conventions (NHWC activations, HWIO and
H×W×C×M kernels straight from the decoded weights, TF "SAME"/"VALID" padding, fused ops applied as
listed), sharing nothing with the PyTorch mapping — no layout transposes, no module structure — so
agreement between the two checks the transposes, the padding, the activation/BN mapping and the
block wiring at once. Float64 by default. Slow (a MobileFaceNet forward of a few images takes a
second or two) and meant for verification only.

Supported ops: Placeholder, Const, Identity, Conv2D, _FusedConv2D, DepthwiseConv2dNative,
FusedDepthwiseConv2dNative (fused BiasAdd / Relu / Relu6 / Prelu), BiasAdd, Add, AddV2, Sub, Mul,
RealDiv, Maximum, Minimum, Abs, Neg, Relu, Relu6, Prelu, Sigmoid, Square, Sqrt, Rsqrt, Sum, Mean,
Squeeze, Reshape, MatMul.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .tfjs import TfjsFormatError, TfjsGraph, TfjsNode


def _pad_same(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    pads = [(0, 0)]
    for size, k in ((x.shape[1], kh), (x.shape[2], kw)):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def _windows(x: np.ndarray, kh: int, kw: int, stride: int, padding: str):
    """Yield (i, j, x[:, i::s, j::s] window slice) for every kernel offset; NHWC."""
    if padding == "SAME":
        x = _pad_same(x, kh, kw, stride)
    elif padding != "VALID":
        raise TfjsFormatError(f"unsupported padding {padding!r}")
    oh = (x.shape[1] - kh) // stride + 1
    ow = (x.shape[2] - kw) // stride + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]


def conv2d_nhwc(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """TF Conv2D: x N×H×W×I, w kh×kw×I×O."""
    kh, kw = w.shape[:2]
    return sum(np.einsum("nhwi,io->nhwo", win, w[i, j]) for i, j, win in _windows(x, kh, kw, stride, padding))


def depthwise_nhwc(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """TF DepthwiseConv2dNative: x N×H×W×C, w kh×kw×C×M → N×H'×W'×(C·M), channel c·M + m."""
    kh, kw, c, m = w.shape
    out = sum(win[..., :, None] * w[i, j] for i, j, win in _windows(x, kh, kw, stride, padding))
    return out.reshape(*out.shape[:3], c * m)


def _prelu(x, alpha):
    return np.where(x >= 0, x, x * alpha)


def _apply_fused(n: TfjsNode, y: np.ndarray, args: list[np.ndarray]) -> np.ndarray:
    extra = iter(args)
    for op in n.attrs.get("fused_ops", []):
        if op == "BiasAdd":
            y = y + next(extra)
        elif op == "Relu":
            y = np.maximum(y, 0)
        elif op == "Relu6":
            y = np.clip(y, 0, 6)
        elif op == "Prelu":
            y = _prelu(y, next(extra))
        else:
            raise TfjsFormatError(f"{n.name}: unsupported fused op {op!r}")
    return y


def _strides(n: TfjsNode) -> int:
    s = n.attrs.get("strides", [1, 1, 1, 1])
    if s[1] != s[2]:
        raise TfjsFormatError(f"{n.name}: unequal strides {s}")
    return int(s[1])


_BINARY = {"Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "RealDiv": np.divide,
           "Maximum": np.maximum, "Minimum": np.minimum, "BiasAdd": np.add}
_UNARY = {"Abs": np.abs, "Neg": np.negative, "Relu": lambda x: np.maximum(x, 0), "Relu6": lambda x: np.clip(x, 0, 6),
          "Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "Square": np.square, "Sqrt": np.sqrt,
          "Rsqrt": lambda x: 1 / np.sqrt(x), "Identity": lambda x: x}


def execution_order(graph: TfjsGraph, outputs: list[str]) -> list[TfjsNode]:
    """The nodes ``outputs`` depend on, each after its inputs (GraphDef order is not guaranteed)."""
    order: list[TfjsNode] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    for root in outputs:
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if state.get(name) == 2:
                continue
            if name not in graph.by_name:
                raise TfjsFormatError(f"graph has no node {name!r}")
            if expanded:
                state[name] = 2
                order.append(graph.by_name[name])
                continue
            if state.get(name) == 1:
                raise TfjsFormatError(f"cycle through {name!r}")
            state[name] = 1
            stack.append((name, True))
            stack.extend((i, False) for i in graph.by_name[name].inputs if state.get(i) != 2)
    return order


def run_graph(graph: TfjsGraph, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None,
              dtype=np.float64) -> dict[str, np.ndarray]:
    """Evaluate ``graph`` on ``feeds`` (placeholder name → NHWC array); return the requested node values."""
    outputs = outputs or graph.outputs
    values: dict[str, np.ndarray] = {}
    for n in execution_order(graph, outputs):
        ins = [values[i] for i in n.inputs]
        if n.op == "Placeholder":
            values[n.name] = np.asarray(feeds[n.name], dtype=dtype)
        elif n.op == "Const":
            w = graph.const(n.name)
            values[n.name] = w.astype(dtype) if w.dtype.kind == "f" else w
        elif n.op in ("Conv2D", "_FusedConv2D"):
            y = conv2d_nhwc(ins[0], ins[1], _strides(n), n.attrs.get("padding", "VALID"))
            values[n.name] = _apply_fused(n, y, ins[2:])
        elif n.op in ("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            y = depthwise_nhwc(ins[0], ins[1], _strides(n), n.attrs.get("padding", "VALID"))
            values[n.name] = _apply_fused(n, y, ins[2:])
        elif n.op in _BINARY:
            values[n.name] = _BINARY[n.op](ins[0], ins[1])
        elif n.op in _UNARY:
            values[n.name] = _UNARY[n.op](ins[0])
        elif n.op == "Prelu":
            values[n.name] = _prelu(ins[0], ins[1])
        elif n.op in ("Sum", "Mean"):
            axes = tuple(np.atleast_1d(ins[1]).astype(int).tolist())
            keep = bool(n.attrs.get("keep_dims", False))
            values[n.name] = (np.sum if n.op == "Sum" else np.mean)(ins[0], axis=axes, keepdims=keep)
        elif n.op == "Squeeze":
            dims = n.attrs.get("squeeze_dims", [])
            values[n.name] = np.squeeze(ins[0], axis=tuple(dims) if dims else None)
        elif n.op == "Reshape":
            values[n.name] = ins[0].reshape(tuple(int(s) for s in ins[1]))
        elif n.op == "MatMul":
            a = ins[0].T if n.attrs.get("transpose_a") else ins[0]
            b = ins[1].T if n.attrs.get("transpose_b") else ins[1]
            values[n.name] = a @ b
        else:
            raise TfjsFormatError(f"reference interpreter: unsupported op {n.op!r} ({n.name})")
    return {name: values[name] for name in outputs}
