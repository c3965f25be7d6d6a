"""An attention measure that can fail: per-block similarity of teacher (HR) and student (LR) maps,
per face, per model × seed, with intervals.

The first CPU study compared maps with the cosine (:func:`lqlib.viz.block_similarity`): two positive
sigmoid maps have a cosine near 1 whatever they show (≈ 1.0 at 3 of 4 blocks for every model,
BasicNet-LR included), so it could not tell a student that copies its teacher's maps from one that
does not. Here each map is centred on its own mean first (Pearson r, :func:`lqlib.models.maps.
pearson_per_sample`): r is near 1 only when the maps rise and fall together, 0 for unrelated maps.

* :func:`face_block_similarity` — from maps: ``[faces, blocks]`` similarities (r, or the cosine);
* :func:`model_block_similarity` — the same from a teacher and a student run on HR / LR faces (batched,
  so ≥ 200 faces fit);
* :func:`similarity_intervals` — one model's ``{seed: [faces, blocks]}`` → per block: the mean over
  seeds of the per-seed face means, the seeds' sd, and two intervals (module notes below);
* :func:`attention_measure` — every model × seed → one tidy DataFrame (what notebook 04 draws).

Intervals (95 % by default), per block:

1. *within a seed* (faces): a percentile bootstrap over faces of that seed's face mean (faces
   resampled with replacement, ``n_boot`` times, the same face draw for every block). It shows how
   much the number depends on which faces were measured; the per-seed intervals are averaged into
   ``face_ci_halfwidth``.
2. *across seeds* (the reported ``ci_low``/``ci_high``): a t-interval over the per-seed face means,
   mean ± t_{1−α/2, n−1} · sd/√n with n seeds, cut to [−1, 1] — the interval for "this training recipe",
   which is what a claim about a method needs. With one seed there is no across-seed interval: the face-bootstrap
   interval of that seed is reported and ``interval`` says ``faces (1 seed)``, so single-seed models
   are visibly marked.

The faces are the same for every model and seed (e.g. the first ``N`` distinct faces of the
validation pairs, :func:`distinct_faces`), so differences between models are not face sampling.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .evaluation import prepared_model
from .evaluation.embedding import unique_images
from .images import as_batch, normalize
from .models.interface import block_stage, stage_pairing
from .models.maps import paired_maps, pearson_per_sample

MEASURES = ("pearson", "cosine")
KINDS = ("spatial", "channel")


def _per_face(t: torch.Tensor, s: torch.Tensor, measure: str) -> torch.Tensor:
    if measure == "pearson":
        return pearson_per_sample(t, s)
    return torch.nn.functional.cosine_similarity(t.flatten(1).float(), s.flatten(1).float(), dim=1, eps=1e-8)


def face_block_similarity(teacher_maps: Sequence, student_maps: Sequence, kind: str = "spatial",
                          measure: str = "pearson", pairing: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """``[faces, pairs of blocks]`` float64: per face, the similarity of the teacher's and the student's
    ``kind`` map at each (teacher block, student block) of ``pairing`` (default: block i with block i).
    Spatial maps of different sizes are pooled to the smaller first (as in the KD terms)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if pairing is None:
        if len(teacher_maps) != len(student_maps):
            raise ValueError(f"teacher has {len(teacher_maps)} attention blocks and student {len(student_maps)}: "
                             "pass pairing= (see lqlib.models.interface.stage_pairing)")
        pairing = [(i, i) for i in range(len(student_maps))]
    cols = [_per_face(t, s, measure).double().numpy() for t, s in paired_maps(teacher_maps, student_maps, pairing, kind)]
    return np.stack(cols, axis=1)


def _maps(model: nn.Module, images: torch.Tensor, device) -> list:
    with prepared_model(model, device) as dev, torch.inference_mode():
        _, maps = model(normalize(images.to(dev)), return_attention=True)
    return maps


def model_block_similarity(teacher: nn.Module, student: nn.Module, hr_images, lr_images, kind: str = "spatial",
                           measure: str = "pearson", pairing: Sequence[tuple[int, int]] | None = None,
                           batch_size: int = 64, device=None) -> np.ndarray:
    """``[faces, blocks]``: teacher on ``hr_images``, student on ``lr_images`` (uint8 RGB, same faces in
    the same order), :func:`face_block_similarity` in batches of ``batch_size`` faces. ``pairing``
    defaults to block i ↔ block i, or :func:`stage_pairing` when the block counts differ."""
    hr, lr = as_batch(hr_images), as_batch(lr_images)
    if len(hr) != len(lr):
        raise ValueError(f"{len(hr)} HR faces but {len(lr)} LR faces: give the same faces at both resolutions")
    out = []
    for i in range(0, len(hr), batch_size):
        t_maps, s_maps = _maps(teacher, hr[i:i + batch_size], device), _maps(student, lr[i:i + batch_size], device)
        if pairing is None:
            pairing = ([(k, k) for k in range(len(s_maps))] if len(t_maps) == len(s_maps)
                       else stage_pairing(block_stage(teacher), block_stage(student)))
        out.append(face_block_similarity(t_maps, s_maps, kind, measure, pairing))
    return np.concatenate(out, axis=0)


def _t_quantile(q: float, df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def seed_t_interval(per_seed_means, level: float = 0.95):
    """``[seeds, blocks]`` per-seed means (≥ 2 seeds) → (mean, sd ddof 1, ci_low, ci_high) per block: the
    t-interval across seeds, cut to [−1, 1] (r and the cosine lie there, so does their mean; 2 seeds: t = 12.7)."""
    m = np.asarray(per_seed_means, dtype=np.float64)
    n = len(m)
    mean, sd = m.mean(axis=0), m.std(axis=0, ddof=1)
    half = _t_quantile(1 - (1 - level) / 2, n - 1) * sd / np.sqrt(n)
    return mean, sd, np.maximum(mean - half, -1.0), np.minimum(mean + half, 1.0)


def similarity_intervals(per_seed: Mapping[int, np.ndarray], level: float = 0.95, n_boot: int = 2000,
                         seed: int = 0):
    """One model's ``{seed: [faces, blocks]}`` → a DataFrame, one row per block: ``block``, ``mean`` (over
    seeds of the per-seed face means), ``seeds_sd`` (ddof 1; NaN for one seed), ``n_seeds``, ``n_faces``,
    ``ci_low``/``ci_high`` (the t-interval across seeds; the face bootstrap for one seed),
    ``interval`` (which one), ``face_ci_halfwidth`` (mean over seeds of the face-bootstrap half-width).
    See the module docstring."""
    import pandas as pd

    if not per_seed:
        raise ValueError("similarity_intervals: no seeds given")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arrays = {int(k): np.asarray(v, dtype=np.float64) for k, v in per_seed.items()}
    shapes = {a.shape[1] if a.ndim == 2 else None for a in arrays.values()}
    if len(shapes) != 1 or None in shapes:
        raise ValueError(f"every seed needs a [faces, blocks] array with the same blocks; got shapes "
                         f"{ {k: a.shape for k, a in arrays.items()} }")
    alpha = 1 - level
    rng = np.random.default_rng(seed)
    means, halfwidths, boot_ci = [], [], []
    for k in sorted(arrays):
        a = arrays[k]
        n = len(a)
        if n < 2:
            raise ValueError(f"seed {k}: {n} face(s); the face bootstrap needs at least 2")
        draws = rng.integers(0, n, size=(int(n_boot), n))
        boot = a[draws].mean(axis=1)                                  # [n_boot, blocks]
        lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        means.append(a.mean(axis=0))
        halfwidths.append((hi - lo) / 2)
        boot_ci.append((lo, hi))
    m = np.stack(means)                                               # [seeds, blocks]
    n_seeds = len(m)
    mean = m.mean(axis=0)
    if n_seeds >= 2:
        mean, sd, lo, hi = seed_t_interval(m, level)
        kind = f"t across {n_seeds} seeds"
    else:
        sd = np.full_like(mean, np.nan)
        lo, hi, kind = boot_ci[0][0], boot_ci[0][1], "faces (1 seed)"
    return pd.DataFrame({"block": np.arange(m.shape[1]), "mean": mean, "seeds_sd": sd, "n_seeds": n_seeds,
                         "n_faces": min(len(a) for a in arrays.values()), "ci_low": lo, "ci_high": hi,
                         "interval": kind, "face_ci_halfwidth": np.mean(halfwidths, axis=0)})


def attention_measure(teacher: nn.Module, students: Mapping[str, Mapping[int, nn.Module]], hr_images, lr_images,
                      kind: str = "spatial", measure: str = "pearson", level: float = 0.95, n_boot: int = 2000,
                      batch_size: int = 64, device=None):
    """Every model × seed (``{model name: {seed: student backbone, or a zero-argument loader}}``;
    BasicNet-LR included, and the teacher itself on the LR faces if wanted) against ``teacher`` on the HR faces → one tidy DataFrame:
    ``model``, ``kind``, ``measure``, ``stage`` (the student block's stage label when the backbone has
    one), and the columns of :func:`similarity_intervals`."""
    import pandas as pd

    frames = []
    for name, seeds in students.items():
        if not seeds:
            raise ValueError(f"model {name!r}: no seeds given")
        per_seed, stages = {}, None
        for s, m in seeds.items():
            m = m if isinstance(m, nn.Module) else m()   # a loader: one model in memory at a time
            per_seed[s] = model_block_similarity(teacher, m, hr_images, lr_images, kind, measure,
                                                 batch_size=batch_size, device=device)
            stages = block_stage(m)
            del m
        df = similarity_intervals(per_seed, level, n_boot)
        df.insert(0, "model", name)
        df.insert(1, "kind", kind)
        df.insert(2, "measure", measure)
        if stages is not None and len(stages) == len(df):
            df.insert(4, "stage", list(stages))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def distinct_faces(pairs, n: int) -> torch.Tensor:
    """The first ``n`` distinct faces (uint8 RGB ``[n, 3, H, W]``) of a pair set, in pair order (pair sets
    repeat faces); raises when the set has fewer."""
    first, _ = unique_images(pairs.images)
    if len(first) < n:
        raise ValueError(f"pair set {getattr(pairs, 'name', '')!r} has {len(first)} distinct faces, fewer than {n}")
    return pairs.images[first[:n]]


__all__ = ["face_block_similarity", "model_block_similarity", "similarity_intervals", "seed_t_interval", "attention_measure",
           "distinct_faces", "MEASURES", "KINDS"]
