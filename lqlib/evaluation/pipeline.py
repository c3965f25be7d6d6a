"""``evaluate``: a model on a pair set at several degradation scales → one DataFrame row per (mode, scale)."""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .embedding import _embed_on, degrade_eval, prepared_model, unique_images
from .protocols import Protocol, get_protocol
from .verification import _np, resolve_folds, verify_scores

EVAL_MODES = ("both", "cross")


def unpack_pairs(pairs):
    """(images uint8 [2N,3,H,W], issame bool [N], folds | None, name) from a PairSet-like object,
    a tuple ``(images, issame[, folds])``, or a ``.bin`` path / split name (via ``lqlib.data``)."""
    import os

    if isinstance(pairs, (str, os.PathLike)):
        from ..data import load_pairs  # lazy: lqlib.data is optional here

        pairs = load_pairs(pairs)
    if hasattr(pairs, "images") and hasattr(pairs, "issame"):
        images, issame = pairs.images, pairs.issame
        folds, name = getattr(pairs, "folds", None), str(getattr(pairs, "name", "pairs"))
    elif isinstance(pairs, (tuple, list)) and len(pairs) in (2, 3):
        images, issame = pairs[0], pairs[1]
        folds, name = (pairs[2] if len(pairs) == 3 else None), "pairs"
    else:
        raise TypeError("pairs must be a PairSet-like object (.images, .issame, .folds, .name), a tuple "
                        "(images, issame[, folds]) or a .bin path / split name")
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    issame = _np(issame, "issame").reshape(-1).astype(bool)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError("pair images must be a uint8 tensor [2N, 3, H, W]")
    if images.shape[0] != 2 * len(issame):
        raise ValueError(f"{images.shape[0]} images for {len(issame)} pairs (need 2 per pair)")
    return images, issame, folds, name


def _parse_eval_modes(eval_mode: str) -> list[str]:
    modes = [m.strip() for m in str(eval_mode).split("+")]
    bad = [m for m in modes if m not in EVAL_MODES]
    if bad or not modes:
        raise ValueError(f"eval_mode must be 'both', 'cross' or 'both+cross', got {eval_mode!r}")
    return list(dict.fromkeys(modes))


def evaluate(model: torch.nn.Module, pairs, scales: Sequence[float] = (1, 2, 4, 8), eval_mode: str = "both",
             protocol: str | Protocol = "insightface", degrade_kw: Mapping[str, Any] | None = None,
             seed: int = 0, batch_size: int = 256, device=None, *, nfolds: int = 10, thresholds=None,
             flip: bool | None = None, return_details: bool = False, compile="auto"):
    """Verification accuracy of ``model`` on ``pairs`` at each degradation scale.

    ``eval_mode``: ``both`` degrades both images of every pair (the paper's LR test), ``cross`` only the
    second (HR gallery vs LR probe), ``both+cross`` gives both. Degradation is
    :func:`degrade_eval` (deterministic: same result across runs and batch sizes). Each *distinct*
    image (pair sets repeat images across pairs) is degraded and embedded once per scale, the HR side
    of ``cross`` once for all scales; the model runs batched, with bf16 autocast where the hardware has
    it and ``torch.compile`` (``compile="auto"``, see :mod:`lqlib.runtime`).

    Returns a DataFrame, one row per (eval mode, scale): scale, eval_mode, protocol, acc_mean, acc_std (%),
    tar_far1e-3, tar_far1e-2 (%), auc, threshold_mean, n_pairs, dataset, seconds, degradation, seed. With
    ``return_details=True`` also a dict scale → per-pair correct bool array (keys ``(mode, scale)``
    when several modes are asked for). ``flip`` overrides the protocol's use of flipped copies
    (``False``: originals only, half the forward passes).
    """
    import pandas as pd

    images, issame, folds, name = unpack_pairs(pairs)
    proto = get_protocol(protocol)
    use_flip = proto.uses_flip if flip is None else bool(flip)
    modes = _parse_eval_modes(eval_mode)
    kw = dict(degrade_kw or {})
    n = len(issame)
    f = resolve_folds(n, folds, nfolds)
    first, inverse = unique_images(images)
    distinct, inv = images[first], inverse.numpy()
    cache: dict[float, tuple[torch.Tensor, torch.Tensor | None, np.ndarray]] = {}
    rows, details = [], {}

    with prepared_model(model, device) as dev:
        def emb_rows(scale, slots: np.ndarray):
            """Embeddings of every image slot (valid for ``slots``), computing missing distinct images."""
            key = float(scale)
            if key not in cache:
                cache[key] = (None, None, np.zeros(len(first), dtype=bool))
            e, ef, done = cache[key]
            need = np.unique(inv[slots])
            todo = need[~done[need]]
            if len(todo):
                x = degrade_eval(distinct, key, seed=seed, indices=todo, device=dev, degrade_kw=kw)
                ne, nf = _embed_on(model, x, dev, batch_size, use_flip, compile)
                if e is None:
                    e = torch.zeros(len(first), ne.shape[1])
                    ef = torch.zeros(len(first), ne.shape[1]) if nf is not None else None
                t = torch.as_tensor(todo)
                e[t] = ne
                if nf is not None:
                    ef[t] = nf
                done[todo] = True
                cache[key] = (e, ef, done)
            return e[inverse], (ef[inverse] if ef is not None else None)

        even, odd, every = np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2), np.arange(2 * n)
        for scale in scales:
            for m in modes:
                t0 = time.perf_counter()
                if m == "both":
                    e, ef = emb_rows(scale, every)
                    a, af = e[0::2], (ef[0::2] if ef is not None else None)
                else:
                    hr, hrf = emb_rows(1, even)
                    a, af = hr[0::2], (hrf[0::2] if hrf is not None else None)
                    e, ef = emb_rows(scale, odd)
                b, bf = e[1::2], (ef[1::2] if ef is not None else None)
                ps = proto.score(a, b, f, af, bf)
                res = verify_scores(ps, issame, f, thresholds=thresholds)
                rows.append({"scale": scale, "eval_mode": m, "protocol": proto.name, **res.summary(),
                             "dataset": name, "seconds": time.perf_counter() - t0,
                             "degradation": kw.get("degradation", "paper"), "seed": seed})
                details[(m, scale) if len(modes) > 1 else scale] = res.correct
            if float(scale) != 1.0:  # ×1 stays cached: it is the HR gallery of every cross row
                cache.pop(float(scale), None)
    df = pd.DataFrame(rows)
    return (df, details) if return_details else df
