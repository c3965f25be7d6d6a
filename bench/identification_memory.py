"""Memory and time of 1:N identification at scale: 4,000 probes against 160,000 random 512-d gallery embeddings.

    OMP_NUM_THREADS=2 python bench/identification_memory.py [--probes 4000] [--gallery 160000] [--dim 512]
        [--per-identity 4] [--nonmated 400] [--out bench/results]

The full similarity matrix would be 4k × 160k: 2.56 GB in float32, 5.1 GB in float64. :func:`lqlib.evaluation.identify`
scores it in probe × gallery blocks and keeps per-probe statistics only; the goal is a peak resident set within
2 GB on the 2-core machine. Gallery: ``--gallery`` random unit vectors, ``--per-identity`` images per identity;
probes: noisy copies of one gallery image of a random identity (mated) plus ``--nonmated`` noisy vectors with no
identity, so the metrics are not degenerate (their values only check that the run did real work).

Reports peak RSS (``resource.getrusage``: the process's maximum, imports included), the RSS before the search
(imports + embeddings) and the seconds of the search. Writes ``<out>/identification_memory_<stamp>.json`` and appends
a row to ``<out>/identification_memory.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from lqlib import io, paths
from lqlib.evaluation.identification import GALLERY_BLOCK, NO_IDENTITY, PROBE_BLOCK, identify

MD_HEADER = ("| date | probes (non-mated) | gallery | dim | threads | block | search s | RSS before search MB | "
             "peak RSS MB | within 2 GB | rank-1 % | mAP % | DIR@FPIR1% |\n"
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|\n")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def make_data(n_probes: int, n_gallery: int, dim: int, per_identity: int, n_nonmated: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gallery = np.empty((n_gallery, dim), np.float32)
    for s in range(0, n_gallery, 20000):  # float32 throughout: no float64 copy of the gallery
        g = rng.standard_normal((min(20000, n_gallery - s), dim), dtype=np.float32)
        gallery[s:s + len(g)] = g / np.linalg.norm(g, axis=1, keepdims=True)
    g_labels = np.arange(n_gallery) // per_identity
    n_mated = n_probes - n_nonmated
    src = rng.integers(0, n_gallery, n_mated)
    probes = np.concatenate([gallery[src] + 2.5 * rng.standard_normal((n_mated, dim), dtype=np.float32) / np.sqrt(dim),
                             rng.standard_normal((n_nonmated, dim), dtype=np.float32)])
    p_labels = np.concatenate([g_labels[src], np.full(n_nonmated, NO_IDENTITY)])
    return probes, p_labels, gallery, g_labels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probes", type=int, default=4000)
    ap.add_argument("--gallery", type=int, default=160000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--per-identity", type=int, default=4)
    ap.add_argument("--nonmated", type=int, default=400)
    ap.add_argument("--limit-mb", type=float, default=2048.0)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = make_data(a.probes, a.gallery, a.dim, a.per_identity, a.nonmated)
    t_data = time.perf_counter() - t0
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    res = identify(*data)
    t_search = time.perf_counter() - t0
    peak = _peak_mb()
    s = res.summary()
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    record = {"date": stamp, "probes": a.probes, "nonmated": a.nonmated, "gallery": a.gallery, "dim": a.dim,
              "per_identity": a.per_identity, "probe_block": PROBE_BLOCK, "gallery_block": GALLERY_BLOCK,
              "omp_threads": threads, "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "numpy": np.__version__, "data_seconds": t_data, "search_seconds": t_search,
              "rss_before_search_mb": rss_before, "peak_rss_mb": peak, "limit_mb": a.limit_mb,
              "within_limit": bool(peak <= a.limit_mb), "full_matrix_float32_mb": a.probes * a.gallery * 4 / 2**20,
              "metrics": s}
    out = paths.resolve(a.out)
    io.write_json(Path(out) / f"identification_memory_{stamp}.json", record)
    md = Path(out) / "identification_memory.md"
    head = md.read_text() if md.is_file() else "# identification memory (bench/identification_memory.py)\n\n" + MD_HEADER
    row = (f"| {stamp} | {a.probes} ({a.nonmated}) | {a.gallery} | {a.dim} | {threads} | {PROBE_BLOCK}×{GALLERY_BLOCK} | "
           f"{t_search:.1f} | {rss_before:.0f} | {peak:.0f} | {'yes' if peak <= a.limit_mb else 'NO'} | "
           f"{s['rank1']:.1f} | {s['mAP']:.1f} | {s['dir_fpir0.01']:.1f} |\n")
    io.write_text(md, head + row)
    print(row.strip())
    print(f"data {t_data:.1f} s; search {t_search:.1f} s; peak RSS {peak:.0f} MB (limit {a.limit_mb:.0f} MB); "
          f"the full float32 matrix alone would be {record['full_matrix_float32_mb']:.0f} MB")
    return 0 if record["within_limit"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
