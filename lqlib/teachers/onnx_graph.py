"""Repairs of exported ONNX graphs that onnxruntime refuses or runs slowly (pure ``onnx`` protobuf edits).

Models published as ONNX files are often exported by old tool chains and post-processed (e.g. block
quantised) by others. Three defects seen in such files, each fixed by one function here:

* **graph inputs consumed by no node** (e.g. the pre-quantisation weight names a quantiser left in the
  input list): onnxruntime refuses the model ("Required inputs [...] are missing") —
  :func:`drop_unconsumed_inputs`;
* **initializers that are also graph inputs** (the pre-IR-4 convention): onnxruntime must treat them
  as overridable, so it cannot constant-fold them and warns — :func:`drop_initializer_inputs`;
* **a fixed batch dimension** (``1``): the model then runs one image per call —
  :func:`make_batch_symbolic` renames dimension 0 of the inputs and outputs to a symbol and removes
  the intermediate shapes (``value_info``) that still carry the fixed size.

One optimisation, exact in float32: :func:`fold_constant_dequantize` replaces
``DequantizeLinear`` (per-tensor, per-axis or blocked, opset ≥ 21) of constant integer weights — and
``Reshape`` of constants by a constant shape — with the float32 result as an initializer, so the
weights are decoded once at load time instead of on every forward, and onnxruntime can fuse
``Conv → BatchNormalization`` again. The dequantised value is ``(q − zero_point) · scale``, computed
as onnxruntime does (integer difference, converted to float32, times the float32 scale).

:func:`sanitize` applies all of them (and :func:`drop_unused_initializers`) and returns what changed.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("repairing ONNX graphs needs onnx: pip install 'lqlib[onnx]'") from e
    return onnx


def _consumed(graph) -> set[str]:
    return {name for node in graph.node for name in node.input if name}


def drop_unconsumed_inputs(model) -> list[str]:
    """Remove graph inputs no node reads (graph outputs are kept). Returns their names."""
    graph, used = model.graph, _consumed(model.graph) | {o.name for o in model.graph.output}
    dropped = [i.name for i in graph.input if i.name not in used]
    keep = [i for i in graph.input if i.name in used]
    del graph.input[:]
    graph.input.extend(keep)
    return dropped


def drop_initializer_inputs(model) -> list[str]:
    """Remove graph inputs that are also initializers (they become plain constants). Returns their names."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    dropped = [i.name for i in graph.input if i.name in inits]
    keep = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)
    return dropped


def drop_unused_initializers(model) -> list[str]:
    """Remove initializers no node reads (nor any graph output). Returns their names."""
    graph = model.graph
    used = _consumed(graph) | {o.name for o in graph.output}
    dropped = [i.name for i in graph.initializer if i.name not in used]
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return dropped


def make_batch_symbolic(model, name: str = "batch") -> list[str]:
    """Dimension 0 of every graph input and output becomes the symbol ``name`` (where it is a fixed
    number); intermediate ``value_info`` shapes are cleared (onnxruntime re-infers them). Returns the
    names of the tensors changed."""
    changed = []
    for value in list(model.graph.input) + list(model.graph.output):
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape") or not tensor_type.shape.dim:
            continue
        dim = tensor_type.shape.dim[0]
        if dim.HasField("dim_value"):
            dim.ClearField("dim_value")
            dim.dim_param = name
            changed.append(value.name)
    if changed:
        del model.graph.value_info[:]
    return changed


def _attrs(node) -> dict[str, Any]:
    return {a.name: _onnx().helper.get_attribute_value(a) for a in node.attribute}


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1,
               block_size: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear`` in numpy, float32: per-tensor (scalar scale), per-axis (1-D scale along
    ``axis``) or blocked (``block_size`` > 0: scale has ``q``'s shape with ``axis`` divided into
    blocks of ``block_size``)."""
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros_like(scale, dtype=q.dtype) if zero_point is None else np.asarray(zero_point)
    axis = axis % max(q.ndim, 1)
    if scale.ndim == 0 or scale.size == 1 and block_size == 0:
        s, z = scale.reshape(()), zp.reshape(())
    elif block_size > 0:
        if scale.shape[axis] * block_size < q.shape[axis] or scale.ndim != q.ndim:
            raise ValueError(f"DequantizeLinear: scale {scale.shape} does not block {q.shape} along axis {axis} "
                             f"in blocks of {block_size}")
        idx = np.arange(q.shape[axis]) // block_size
        s, z = np.take(scale, idx, axis=axis), np.take(zp, idx, axis=axis)
    else:
        shape = [1] * q.ndim
        shape[axis] = -1
        s, z = scale.reshape(shape), zp.reshape(shape)
    diff = q.astype(np.int32) - np.asarray(z).astype(np.int32)
    return (diff.astype(np.float32) * s).astype(np.float32)


def fold_constant_dequantize(model) -> list[str]:
    """Replace ``DequantizeLinear`` / ``Reshape`` nodes whose inputs are all initializers by their
    float32 result (an initializer of the same name as the node's output), in graph order, so chains
    (dequantize → reshape) fold completely. Inputs that fed only folded nodes are removed. Returns the
    names of the folded outputs."""
    onnx = _onnx()
    from onnx import numpy_helper

    graph = model.graph
    consts = {i.name: i for i in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name):
        if name not in values:
            values[name] = numpy_helper.to_array(consts[name])
        return values[name]

    keep, folded = [], []
    for node in graph.node:
        ins = [n for n in node.input if n]
        if node.op_type in ("DequantizeLinear", "Reshape") and ins and all(n in consts for n in ins) \
                and len(node.output) == 1:
            if node.op_type == "DequantizeLinear":
                a = _attrs(node)
                zp = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                out = dequantize(value(node.input[0]), value(node.input[1]), zp, a.get("axis", 1),
                                 a.get("block_size", 0))
            else:
                if _attrs(node).get("allowzero", 0):
                    keep.append(node)
                    continue
                x, shape = value(node.input[0]), value(node.input[1]).astype(np.int64).tolist()
                out = x.reshape(tuple(x.shape[i] if s == 0 else s for i, s in enumerate(shape)))  # 0: keep dim
            name = node.output[0]
            values[name] = out
            consts[name] = numpy_helper.from_array(out, name)
            folded.append(name)
        else:
            keep.append(node)
    if folded:
        del graph.node[:]
        graph.node.extend(keep)
        known = {i.name for i in graph.initializer}
        graph.initializer.extend(consts[n] for n in folded if n not in known)
        drop_unused_initializers(model)
        onnx.checker.check_model(model)
    return folded


def sanitize(model, fold: bool = True, batch_name: str = "batch") -> dict[str, list[str]]:
    """All repairs (and, with ``fold``, :func:`fold_constant_dequantize`) in place; returns
    ``{repair: [names changed]}``."""
    report = {"unconsumed_inputs": drop_unconsumed_inputs(model),
              "initializer_inputs": drop_initializer_inputs(model),
              "symbolic_batch": make_batch_symbolic(model, batch_name)}
    report["folded"] = fold_constant_dequantize(model) if fold else []
    report["unused_initializers"] = drop_unused_initializers(model)
    _onnx().checker.check_model(model)
    return report
