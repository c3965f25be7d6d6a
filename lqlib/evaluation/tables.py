"""Result tables in the paper's layout, markdown without ``tabulate``, and aggregation over seeds."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np


def scale_label(s) -> str:
    s = float(s)
    return f"×{int(s)}" if s.is_integer() else f"×{s:g}"


def _fmt(v, decimals: int) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{decimals}f}"


def results_table(frames: Mapping[str, Any], metric: str = "acc_mean", with_std: bool = True, *,
                  std_col: str | None = None, eval_mode: str | None = None, decimals: int = 2):
    """Paper layout: rows = methods (``frames`` keys, in order), columns ×1 ×2 ... (scales present).

    Cells are ``"90.97 ± 0.42"`` strings when ``with_std`` (std from ``std_col``; default
    ``<metric>_seeds_std`` when present — an :func:`aggregate_seeds` frame — else ``acc_std`` (over
    folds) for ``acc_mean``, else ``<metric>_std``; no ``±`` part when none exists or it is NaN),
    floats otherwise.
    Frames holding several eval modes give one row per (method, eval mode) unless ``eval_mode`` picks one.
    """
    import pandas as pd

    out: dict[str, dict[str, Any]] = {}
    all_scales: list[float] = []
    for method, df in frames.items():
        if eval_mode is not None and "eval_mode" in df:
            df = df[df["eval_mode"] == eval_mode]
        sc = std_col
        if sc is None:
            for c in (f"{metric}_seeds_std", "acc_std" if metric == "acc_mean" else None, f"{metric}_std"):
                if c is not None and c in df:
                    sc = c
                    break
        modes_here = list(dict.fromkeys(df["eval_mode"])) if "eval_mode" in df else [None]
        for m in modes_here:
            sub = df if m is None else df[df["eval_mode"] == m]
            label = method if len(modes_here) == 1 else f"{method} [{m}]"
            if sub["scale"].duplicated().any():
                raise ValueError(f"{method!r} has several rows per scale (protocols/datasets?): filter it first")
            row = {}
            for _, r in sub.iterrows():
                s = float(r["scale"])
                if s not in all_scales:
                    all_scales.append(s)
                v = float(r[metric])
                if with_std:
                    sd = float(r[sc]) if sc is not None and sc in sub else None
                    sd = None if sd is not None and math.isnan(sd) else sd  # e.g. one seed: no spread
                    row[s] = _fmt(v, decimals) + ("" if sd is None else f" ± {_fmt(sd, decimals)}")
                else:
                    row[s] = v
            out[label] = row
    all_scales.sort()
    table = pd.DataFrame([[r.get(s, "" if with_std else float("nan")) for s in all_scales]
                          for r in out.values()], index=list(out), columns=[scale_label(s) for s in all_scales])
    table.index.name = "method"
    return table


def to_markdown(df, *, index: bool = True, floatfmt: str = ".2f") -> str:
    """GitHub-markdown table of a DataFrame (no ``tabulate`` needed); numbers right-aligned."""
    import pandas as pd

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(float(v), floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    num = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    header, align = cols, ["---:" if k else "---" for k in num]
    body = [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    if index:
        header = [str(df.index.name or "")] + header
        align = ["---"] + align
        body = [[cell(i)] + r for i, r in zip(df.index, body)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


AGG_KEYS = ("scale", "eval_mode", "protocol", "dataset", "degradation")
_NO_STATS = {"seed", "n_pairs"}


def aggregate_seeds(frames: Sequence[Any]):
    """Mean and sample std (ddof=1; NaN for one seed) over seeds per (scale, eval_mode, ...) row.

    Numeric columns keep their names for the mean and gain a ``<col>_seeds_std`` twin; ``n_seeds``
    counts the frames; ``acc_std`` becomes the mean over seeds of the over-fold std.
    """
    import pandas as pd

    if not frames:
        raise ValueError("no frames to aggregate")
    df = pd.concat(list(frames), ignore_index=True)
    keys = [k for k in AGG_KEYS if k in df]
    num = [c for c in df.columns if c not in keys and c not in _NO_STATS and pd.api.types.is_numeric_dtype(df[c])]
    g = df.groupby(keys, sort=False, dropna=False)
    mean, std = g[num].mean(), g[num].std(ddof=1).add_suffix("_seeds_std")
    out = pd.concat([mean, std], axis=1)
    out["n_seeds"] = g.size()
    if "n_pairs" in df:
        out["n_pairs"] = g["n_pairs"].first()
    return out.reset_index()


BASELINE_ROWS = ("BasicNet-HR", "BasicNet-LR")


def table_order(models) -> list:
    """The rows of a results table: :data:`BASELINE_ROWS` first (those present), then every other model in the
    order it first appears in ``models``."""
    seen = list(dict.fromkeys(models))
    return [m for m in BASELINE_ROWS if m in seen] + [m for m in seen if m not in BASELINE_ROWS]


def paper_table(results, eval_mode: str = "both", decimals: int = 2):
    """The paper's layout for one eval mode: rows = models (BasicNet-HR and BasicNet-LR first),
    columns ×1 ×2 ×4 ×8 as ``mean ± sd`` where **± is the std over training seeds (ddof = 1)** (no ±
    for a single seed), then ``n seeds`` and ``fold sd`` (the mean over seeds of the k-fold std, per
    scale, slash-separated) — two different spreads, never mixed in one cell."""
    import pandas as pd

    from .seeds import seed_summary

    df = results[results["eval_mode"] == eval_mode]
    summ = seed_summary(df, keys=("model", "scale"))
    models = table_order(summ["model"])
    scales = sorted(summ["scale"].astype(float).unique())
    rows = []
    for m in models:
        sub = summ[summ["model"] == m].set_index(summ[summ["model"] == m]["scale"].astype(float))
        row = {}
        for s in scales:
            if s not in sub.index:
                row[scale_label(s)] = ""
                continue
            r = sub.loc[s]
            sd = "" if math.isnan(r["seeds_sd"]) else f" ± {_fmt(float(r['seeds_sd']), decimals)}"
            row[scale_label(s)] = _fmt(float(r["acc"]), decimals) + sd
        row["n seeds"] = int(sub["n_seeds"].max())
        row["fold sd"] = " / ".join(_fmt(float(sub.loc[s, "fold_sd"]), 1) if s in sub.index else "–" for s in scales)
        rows.append(row)
    table = pd.DataFrame(rows, index=models)
    table.index.name = "model"
    return table
