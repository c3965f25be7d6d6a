"""Throughput of :func:`lqlib.evaluation.evaluate` (degrade → embed with flips → k-fold verification).

    python bench/eval_throughput.py --backbone ir_cbam_18 --pairs lfw-10fold --scales 1 2 4 8 \\
        [--device cpu|cuda] [--limit 150] [--out bench/results]

``--pairs`` is a split name (``lfw-10fold``, ``lfw-half``, via ``lqlib.data.load_pairs``) or a
``.bin`` path; if the protocol cannot be loaded it falls back to ``--bin`` (default
``data/packs/lfw.bin``). Weights are random (a timing run: accuracies are meaningless). ``--limit N``
times the first N pairs only and extrapolates the total to the full set (linear in images).

Where the time goes: the phases of :func:`~lqlib.evaluation.evaluate` are timed in the same run
(``decode``: loading the pair set; ``dedupe``: hashing images to embed each distinct one once;
``degrade``; ``model``: embedding with flips, incl. normalisation; ``scoring``: protocol scores and
k-fold verification; the rest is ``other``), reported as seconds and fractions.

``--variants`` times the model phase alone (:func:`lqlib.evaluation.embed` with flips, on the pair
set's first images) for each (batch size, compiled or eager) side by side in the same run, the
variants taking turns in rounds (median), so a default can be chosen from one measurement.

Writes ``<out>/eval_throughput_<backbone>_<device>_<stamp>.json`` and appends a row to
``<out>/eval_throughput.md`` (atomic writes via :mod:`lqlib.io`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import torch

from lqlib import io, paths
from lqlib.evaluation import evaluate, get_protocol, to_markdown
from lqlib.models import build_backbone

MD_HEADER = ("| date | backbone | device | torch | threads | pairs timed | scales | mode | protocol | batch | "
             "forwards | images/s | forwards/s | seconds | est. full set (s) |\n"
             "|---|---|---|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|\n")


def load(pairs: str, fallback_bin: str):
    """(PairSet-like, source string, load seconds)."""
    t0 = time.perf_counter()
    try:
        from lqlib.data import load_pairs

        src = str(paths.resolve(pairs)) if pairs.endswith(".bin") else pairs
        ps = load_pairs(src)
        return ps, pairs, time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - any failure → the .bin fallback, said out loud
        print(f"[bench] could not load {pairs!r} ({type(e).__name__}: {e}); falling back to {fallback_bin}",
              file=sys.stderr)
    from lqlib.data import load_pairs

    ps = load_pairs(str(paths.resolve(fallback_bin)))
    return ps, fallback_bin, time.perf_counter() - t0


def subset(ps, limit: int | None):
    """``limit`` pairs spread evenly over the set (same and different pairs of every fold), official folds."""
    import numpy as np
    from types import SimpleNamespace

    n = len(ps.issame)
    if not limit or limit >= n:
        return ps
    idx = torch.as_tensor(np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64)))
    img = torch.stack([2 * idx, 2 * idx + 1], 1).reshape(-1)
    folds = None if getattr(ps, "folds", None) is None else torch.as_tensor(ps.folds)[idx]
    return SimpleNamespace(images=ps.images[img], issame=torch.as_tensor(ps.issame)[idx], folds=folds,
                           name=f"{ps.name}[{len(idx)} of {n}]")


class PhaseTimer:
    """Wraps the functions :mod:`lqlib.evaluation.pipeline` calls, summing their seconds per phase."""

    def __init__(self):
        import lqlib.evaluation.pipeline as pl

        self.pl, self.seconds, self.saved = pl, {}, {}
        self.useful = 0  # forwards of real images (and their flips), padding of the last chunk not counted
        for fn, phase in (("unique_images", "dedupe"), ("degrade_eval", "degrade"), ("_embed_on", "model"),
                          ("verify_scores", "scoring")):
            self.saved[fn] = getattr(pl, fn)
            setattr(pl, fn, self._wrap(self.saved[fn], phase))

    def _wrap(self, fn, phase):
        def timed(*a, **k):
            if phase == "model":  # _embed_on(model, images, dev, batch_size, flip, compile)
                self.useful += len(a[1]) * (2 if a[4] else 1)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0
        return timed

    def wrap_protocol(self, proto):
        """Time a protocol's ``score`` (the flip fusion + cosine) as scoring too."""
        orig = proto.score
        proto.score = self._wrap(orig, "scoring")
        return orig

    def restore(self):
        for fn, f in self.saved.items():
            setattr(self.pl, fn, f)


def embed_variants(model, images: torch.Tensor, batches, compiles, rounds: int, device) -> list[dict]:
    """Forwards/s (flips count) of ``embed`` per (batch size, compile), alternating rounds, median."""
    from lqlib.evaluation import embed

    variants = [(b, c) for b in batches for c in compiles]
    rates: dict = {v: [] for v in variants}
    warm = {}
    for b, c in variants:  # warm-up: compile, oneDNN primitives
        t0 = time.perf_counter()
        embed(model, images[: 2 * b], batch_size=b, device=device, flip=True, compile=c)
        warm[(b, c)] = round(time.perf_counter() - t0, 1)
    for _ in range(rounds):
        for b, c in variants:
            t0 = time.perf_counter()
            embed(model, images, batch_size=b, device=device, flip=True, compile=c)
            rates[(b, c)].append(2 * len(images) / (time.perf_counter() - t0))
    return [{"batch": b, "compiled": c, "forwards_per_s": round(sorted(r)[len(r) // 2], 1),
             "rounds": [round(x, 1) for x in r], "warmup_s": warm[(b, c)]} for (b, c), r in rates.items()]


def _clean(v):
    return None if isinstance(v, float) and v != v else v


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="ir_cbam_18")
    ap.add_argument("--pairs", default="lfw-10fold", help="split name or .bin path")
    ap.add_argument("--bin", default="data/packs/lfw.bin", help="fallback .bin when --pairs cannot be loaded")
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--mode", default="both")
    ap.add_argument("--protocol", default="insightface")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None, help="time only the first N pairs, extrapolate")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="*", type=int, default=None, metavar="BATCH",
                    help="also time embed alone at these batch sizes, compiled and eager, side by side")
    ap.add_argument("--variant-images", type=int, default=512)
    ap.add_argument("--variant-rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args(argv)

    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scales = [int(s) if float(s).is_integer() else s for s in a.scales]
    full, source, load_s = load(a.pairs, a.bin)
    n_full = len(full.issame)
    ps = subset(full, a.limit)
    n = len(ps.issame)
    print(f"[bench] {source}: {n_full} pairs loaded in {load_s:.1f}s; timing {n} pairs on {device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)", flush=True)

    torch.manual_seed(a.seed)
    model = build_backbone(a.backbone).to(device)
    forwards = [0]
    model.register_forward_pre_hook(lambda m, args: forwards.__setitem__(0, forwards[0] + args[0].shape[0]))
    # warm-up outside the timed run: torch.compile of the padded batch shape, oneDNN / cuDNN set-up
    from lqlib.evaluation import embed

    t_w = time.perf_counter()
    embed(model, ps.images[:8], batch_size=a.batch_size, device=device, flip=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t_w
    forwards[0] = 0
    timer = PhaseTimer()
    proto = get_protocol(a.protocol)
    timer.wrap_protocol(proto)
    t0 = time.perf_counter()
    try:
        df = evaluate(model, ps, scales=scales, eval_mode=a.mode, protocol=proto, seed=a.seed,
                      batch_size=a.batch_size, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
    finally:
        timer.restore()
        del proto.score  # the class method again
    total = time.perf_counter() - t0
    phases = {"decode": load_s, **{k: round(v, 2) for k, v in timer.seconds.items()}}
    phases["other"] = round(total - sum(timer.seconds.values()), 2)
    whole = total + load_s
    phase_frac = {k: round(v / whole, 3) for k, v in phases.items()}
    n_img = 2 * n  # distinct pair images per scale; their flips are part of the cost
    images_embedded = forwards[0] // (2 if get_protocol(a.protocol).uses_flip else 1)  # flips cost a forward
    est_full = total * n_full / n
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = {
        "backbone": a.backbone, "pairs": source, "dataset": str(full.name), "pairs_total": n_full,
        "pairs_timed": n, "images_per_scale": n_img, "scales": scales, "mode": a.mode,
        "protocol": a.protocol, "batch_size": a.batch_size, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "load_seconds": load_s,
        "total_seconds": total, "forward_images": forwards[0], "images_embedded": images_embedded,
        "images_per_s": images_embedded / total, "forwards_per_s": forwards[0] / total,
        "model_forwards_per_s": forwards[0] / max(timer.seconds.get("model", 0.0), 1e-9),
        "useful_forwards": timer.useful, "useful_forwards_per_s": timer.useful / total,
        "padding_fraction": round(1 - timer.useful / max(forwards[0], 1), 3), "warmup_s": round(warmup_s, 1),
        "phases_s": phases, "phases_fraction_incl_decode": phase_frac,
        "estimated_full_seconds": est_full, "extrapolated": n < n_full, "stamp": stamp,
        "note": "random weights: accuracies are meaningless; time = degrade + embed (orig + flip) + verify",
        "rows": [{k: _clean(v) for k, v in r.items()} for r in df.to_dict(orient="records")],
    }
    if a.variants:
        result["embed_variants"] = embed_variants(model, full.images[: a.variant_images], a.variants, [True, False],
                                                  a.variant_rounds, device)
        for v in result["embed_variants"]:
            print(f"[bench] embed batch {v['batch']} {'compiled' if v['compiled'] else 'eager'}: "
                  f"{v['forwards_per_s']} forwards/s (flips count)", flush=True)
    out = paths.resolve(a.out)
    jpath = out / f"eval_throughput_{a.backbone}_{device.type}_{stamp}.json"
    io.write_json(jpath, result)
    md = out / "eval_throughput.md"
    old = md.read_text(encoding="utf-8") if md.is_file() else "# evaluate() throughput\n\n" + MD_HEADER
    row = (f"| {stamp} | {a.backbone} | {result['device_name'] if device.type == 'cuda' else 'cpu'} | "
           f"{torch.__version__} | {torch.get_num_threads()} | {n} of {n_full} | {' '.join(map(str, scales))} | "
           f"{a.mode} | {a.protocol} | {a.batch_size} | {forwards[0]} | {result['images_per_s']:.1f} | "
           f"{result['forwards_per_s']:.1f} | {total:.1f} | {est_full:.0f}{' (extrapolated)' if n < n_full else ''} |\n")
    io.write_text(md, old + row)
    print(to_markdown(df.drop(columns=["degradation", "seed"]).set_index("scale"), floatfmt=".3f"))
    print(f"[bench] phases (s): {phases}; fractions incl. decode: {phase_frac}", flush=True)
    print(f"[bench] useful forwards (flips count, padding not): {timer.useful / total:.1f}/s; padding "
          f"{result['padding_fraction']:.1%} of the forwards; warm-up (compile) {warmup_s:.1f} s", flush=True)
    print(f"[bench] {result['forward_images']} forward images in {total:.1f}s: {result['images_per_s']:.1f} images/s "
          f"({result['forwards_per_s']:.1f} forwards/s incl. flips); full set ≈ {est_full:.0f}s"
          f"{' (extrapolated)' if n < n_full else ''}\n[bench] wrote {jpath} and {md}", flush=True)
    return result


if __name__ == "__main__":
    main()
