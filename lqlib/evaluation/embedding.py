"""Batched embedding at the model boundary, and deterministic degradation of evaluation images."""
from __future__ import annotations

import contextlib
import hashlib
import weakref
from typing import Any, Mapping

import numpy as np
import torch

from ..degrade import degrade, get_degradation
from ..images import hflip, normalize
from ..precision import autocast, autocast_dtype
from ..runtime import compile_enabled, use_inductor_cache


def _model_device(model: torch.nn.Module) -> torch.device | None:
    for t in [*model.parameters(), *model.buffers()]:
        return t.device
    return None


def _norm_device(d) -> torch.device:
    d = torch.device(d)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return d


@contextlib.contextmanager
def prepared_model(model: torch.nn.Module, device=None):
    """Eval mode on ``device`` (default: the model's), channels_last (faster on CUDA and, with oneDNN,
    on CPU too); all restored on exit."""
    orig = _model_device(model)
    dev = _norm_device(device if device is not None else (orig or "cpu"))
    was_training = model.training
    moved = orig is not None and _norm_device(orig) != dev
    made_cl = False
    model.eval()
    try:
        if moved:
            model.to(dev)
        w4 = next((p for p in model.parameters() if p.dim() == 4), None)
        if w4 is not None and not w4.is_contiguous(memory_format=torch.channels_last):
            model.to(memory_format=torch.channels_last)
            made_cl = True
        yield dev
    finally:
        if made_cl:
            model.to(memory_format=torch.contiguous_format)
        if moved:
            model.to(orig)
        model.train(was_training)


def _forward(model, x) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, (tuple, list)) else out


_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()


def _eval_callable(model: torch.nn.Module, compile: bool):
    """The model's forward, compiled once per process (and per model) when ``compile`` — batches are
    padded to one size so the graph is compiled once — or the model itself."""
    if not compile or not any(True for _ in model.parameters()):
        return model
    if model not in _COMPILED:
        use_inductor_cache()
        _COMPILED[model] = torch.compile(model, dynamic=False)
    return _COMPILED[model]


def _embed_on(model, images, dev, batch_size, flip, compile="auto"):
    """Embeddings of ``images`` (and their flips): the flip of a chunk runs in the same forward as
    the chunk (one batch of 2·B), the last chunk is padded to full size; bf16 autocast where the
    hardware has it (:func:`lqlib.precision.autocast_dtype`); outputs float32 on the CPU."""
    compile = compile_enabled(compile)
    fn = _eval_callable(model, compile)
    amp = autocast(dev.type, autocast_dtype(dev.type))
    n = len(images)
    outs, outs_f = [], []
    with torch.inference_mode(), amp:
        for s in range(0, n, batch_size):
            x = normalize(images[s:s + batch_size].to(dev, non_blocking=True))
            b = len(x)
            if b < batch_size and compile:
                x = torch.cat([x, x.new_zeros((batch_size - b, *x.shape[1:]))])
            if flip:
                x = torch.cat([x, hflip(x)])
            e = _forward(fn, x.contiguous(memory_format=torch.channels_last)).float()
            k = len(e) // 2 if flip else len(e)
            outs.append(e[:b])
            if flip:
                outs_f.append(e[k:k + b])
    cat = lambda o: torch.cat(o).cpu() if o else torch.empty(0)  # noqa: E731
    return cat(outs), (cat(outs_f) if flip else None)


def embed(model: torch.nn.Module, images_uint8: torch.Tensor, *, batch_size: int = 256, device=None,
          flip: bool = True, compile="auto") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings of uint8 RGB NCHW images (and of their horizontal flips): float32 CPU tensors.

    Batched under ``torch.inference_mode``; :func:`lqlib.images.normalize` at the model boundary; bf16
    autocast where the hardware has it, channels_last; ``compile`` (``"auto"``: unless
    ``LQLIB_COMPILE=0``) runs the model through ``torch.compile`` once per model and process; the model runs in eval mode on ``device`` (default:
    its own) and gets its previous mode, device and memory format back afterwards.
    """
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.dim() != 4:
        raise ValueError("images must be a uint8 NCHW tensor")
    if images_uint8.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (normalize() happens here), got {images_uint8.dtype}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    with prepared_model(model, device) as dev:
        return _embed_on(model, images_uint8, dev, batch_size, flip, compile)


def unique_images(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, inverse)``: the index of the first occurrence of each distinct image, and for every
    image the position of its distinct image in ``first`` (pair sets repeat images across pairs)."""
    seen: dict[bytes, int] = {}
    first, inverse = [], []
    flat = images.reshape(len(images), -1)
    for i in range(len(images)):
        h = hashlib.blake2b(flat[i].numpy().tobytes(), digest_size=16).digest()
        if h not in seen:
            seen[h] = len(first)
            first.append(i)
        inverse.append(seen[h])
    return torch.tensor(first, dtype=torch.int64), torch.tensor(inverse, dtype=torch.int64)


DEGRADE_CHUNK = 128  # images degraded together, aligned on global image index: batch-size independent


def _is_random(scale, degrade_kw: Mapping[str, Any]) -> bool:
    if isinstance(scale, (list, tuple)):
        return True
    sigma = degrade_kw.get("blur_sigma", "default")
    if isinstance(sigma, str) and sigma == "default":
        sigma = get_degradation(degrade_kw.get("degradation", "paper")).blur_sigma
    return isinstance(sigma, (list, tuple))


def chunk_seed(seed: int, scale, chunk: int) -> int:
    """Seed of the generator that degrades chunk ``chunk`` (images ``chunk·DEGRADE_CHUNK ...``)."""
    skey = [round(float(v) * 1000) for v in (scale if isinstance(scale, (list, tuple)) else [scale])]
    return int(np.random.SeedSequence([int(seed), *skey, int(chunk)]).generate_state(1, np.uint64)[0] >> 1)


def degrade_eval(images: torch.Tensor, scale, *, seed: int = 0, indices=None, device=None,
                 degrade_kw: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Deterministic evaluation copies ``degrade(images, scale, **degrade_kw)[indices]``.

    Images are degraded in fixed chunks of ``DEGRADE_CHUNK`` aligned on the global image index (a
    chunk is always degraded whole, whichever of its images are asked for), the random draws of a
    chunk (σ ranges, scale lists) coming from a generator seeded by :func:`chunk_seed` (seed, scale,
    chunk). So image ``j``'s copy depends only on (pixels, scale, seed, j, device): identical across
    runs, batch sizes, subsets and modes. Returned on ``device`` (default: the images'), in
    ``indices`` order.
    """
    kw = dict(degrade_kw or {})
    kw.pop("generator", None)
    n = len(images)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"image indices out of range [0, {n})")
    dev = torch.device(device) if device is not None else images.device
    if not isinstance(scale, (list, tuple)) and float(scale) == 1.0:  # identity, whatever the degradation
        return images[torch.as_tensor(idx)].to(dev)
    random = _is_random(scale, kw)
    out = torch.empty((len(idx), *images.shape[1:]), dtype=images.dtype, device=dev)
    chunks = idx // DEGRADE_CHUNK
    for c in np.unique(chunks):
        lo = int(c) * DEGRADE_CHUNK
        g = torch.Generator().manual_seed(chunk_seed(seed, scale, int(c))) if random else None
        block = degrade(images[lo:lo + DEGRADE_CHUNK].to(dev), scale, generator=g, **kw)
        where = np.flatnonzero(chunks == c)
        out[torch.as_tensor(where, device=dev)] = block[torch.as_tensor(idx[where] - lo, device=dev)]
    return out
