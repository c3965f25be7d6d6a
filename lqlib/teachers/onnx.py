"""ONNX embedding models as teachers, run with onnxruntime.

Why onnxruntime and not a converter such as onnx2torch: a teacher is only ever run forward, frozen,
to produce targets, so a differentiable PyTorch re-implementation buys nothing, while a converter
adds a dependency whose op coverage lags the ONNX opset (onnx2torch is on PyPI, but a third-party
converter that must track every new opset/exporter change) and whose output must itself be
verified. onnxruntime is the reference ONNX executor, maintained by Microsoft, ships CPU and CUDA
providers, and is already lqlib's ``onnx`` extra. The price: an ONNX teacher gives embeddings only
(no attention maps, no stage features — :class:`~lqlib.teachers.external.ExternalTeacher` returns
empty lists), and each forward round-trips through numpy on the CPU side of the session API.

:class:`OnnxEmbedder` is an ``nn.Module`` without parameters: ``forward(x)`` feeds ``x`` (already in
the model's own preprocessing) to the session and returns a float32 tensor on ``x``'s device.
Models exported with a fixed batch of 1 are run sample by sample.

:func:`export_onnx` writes any lqlib backbone (or converted teacher) to ONNX with a dynamic batch:
the dynamo exporter (torch ≥ 2.5's default, needs onnxscript) first, the TorchScript exporter if
that fails. Besides portability this is a speed-up for frozen teachers on CPU: onnxruntime folds BN
and fuses activations, e.g. ~6× faster than eager PyTorch for the ported MobileFaceNet on 2 cores.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .external import ExternalTeacher
from .spec import TeacherSpec


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX teachers need onnxruntime: pip install 'lqlib[onnx]' (or onnxruntime-gpu)") from e
    return onnxruntime


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then CPU."""
    available = _require_onnxruntime().get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available


class OnnxEmbedder(nn.Module):
    """An onnxruntime session as a parameter-free module (first input → ``output`` or the first output)."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, output: str | None = None,
                 threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.providers = list(providers) if providers else default_providers()
        self.threads = threads
        self._output = output
        self._open()

    def _open(self):
        ort = _require_onnxruntime()
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=self.providers)
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_shape = inp.name, list(inp.shape)
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        if self._output is not None and self._output not in names:
            raise ValueError(f"{self.path.name} has no output {self._output!r}; outputs: {names}")
        self.output_name = self._output or names[0]
        self.output_shape = list(outputs[names.index(self.output_name)].shape)

    # onnxruntime sessions cannot be pickled/deep-copied: rebuild from the file.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("session", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    @property
    def fixed_batch(self) -> int | None:
        b = self.input_shape[0] if self.input_shape else None
        return b if isinstance(b, int) else None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if self.fixed_batch == 1 and len(batch) != 1:
            out = np.concatenate([self._run(batch[i:i + 1]) for i in range(len(batch))])
        else:
            out = self._run(batch)
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).reshape(len(batch), -1).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, input={self.input_shape}, providers={self.providers}"


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int] | None = None,
                channels: int = 3) -> str:
    """Export ``model`` (eval mode; its forward's plain call → embedding) to ``path`` with a dynamic batch.

    ``input_size`` defaults to ``model.input_size`` or 112×112. Returns the exporter used
    ("dynamo" or "torchscript"). One self-contained file (weights inside, so < 2 GB), written atomically.
    """
    import tempfile

    from ..io import write_bytes

    was_training = model.training
    model.eval()
    h, w = input_size or getattr(model, "input_size", (112, 112))
    x = torch.randn(2, channels, h, w)
    names = dict(input_names=["input"], output_names=["embedding"])
    try:
        with tempfile.TemporaryDirectory(prefix="lqlib-onnx-") as tmp:
            out = Path(tmp) / "model.onnx"
            try:
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(model, (x,), str(out), dynamo=True, external_data=False,
                                  dynamic_shapes=({0: batch},), verbose=False, **names)
                used = "dynamo"
            except Exception:  # noqa: BLE001 - exporter coverage varies; the legacy path is the fallback
                torch.onnx.export(model, (x,), str(out), dynamo=False, opset_version=17,
                                  dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}}, **names)
                used = "torchscript"
            write_bytes(path, out.read_bytes())
    finally:
        model.train(was_training)
    return used


def spec_from_onnx(embedder: OnnxEmbedder, name: str | None = None) -> TeacherSpec:
    """A default spec from the model's declared input/output shapes (lqlib normalisation assumed)."""
    shape = embedder.input_shape
    layout, size = "NCHW", (112, 112)
    if len(shape) == 4:
        if shape[-1] == 3 and shape[1] != 3:
            layout, dims = "NHWC", shape[1:3]
        else:
            dims = shape[2:4]
        if all(isinstance(d, int) for d in dims):
            size = tuple(dims)
    emb = embedder.output_shape[-1] if embedder.output_shape and isinstance(embedder.output_shape[-1], int) else None
    return TeacherSpec(name=name or embedder.path.stem, input_size=size, layout=layout, embedding_size=emb,
                       crop="none" if size == (112, 112) else "resize", source=str(embedder.path))


def from_onnx(path: str | os.PathLike, spec: TeacherSpec | None = None, providers: list[str] | None = None,
              output: str | None = None, threads: int | None = None) -> ExternalTeacher:
    """Teacher from an ONNX file, run by onnxruntime (embeddings only).

    Without ``spec`` the input size, layout and embedding size are read from the model and lqlib's
    normalisation (RGB, (px − 127.5)/127.5) is assumed: pass a spec for models trained otherwise.
    """
    embedder = OnnxEmbedder(path, providers=providers, output=output, threads=threads)
    return ExternalTeacher(embedder, spec or spec_from_onnx(embedder))
