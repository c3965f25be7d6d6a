"""Accuracy figures: verification accuracy against the degradation scale and across models.

* :func:`accuracy_vs_scale` — accuracy (%) against the scale (×1 ×2 ×4 ×8 on a log2 axis), mean ± standard
  deviation over seeds, one line per method;
* :func:`method_comparison` — bar chart of the methods at one scale (the paper's Figs 8–9).

Both take *tidy* DataFrames (one row per method × seed × scale [× mode]); :func:`error_bar_note` says what
their error bars are.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..evaluation.tables import scale_label
from .style import filter_rows, house_palette, legend_outside_if_long, new_axes


#: accuracy columns looked for, in order, when ``y`` is not given.
ACC_COLUMNS = ("acc", "acc_mean")


def _scale_value(s) -> float:
    """``2``, ``2.0``, ``"2"``, ``"x2"`` and ``"×2"`` are all scale 2."""
    return float(str(s).strip().lstrip("x×X"))


def _std_column(df: pd.DataFrame, y: str) -> str | None:
    """The spread column of an already-aggregated ``y``: ``<y>_seeds_std`` (the spread over seeds, from
    :func:`lqlib.evaluation.aggregate_seeds`) first, else ``acc_std`` for ``acc_mean`` (over folds)."""
    for c in (f"{y}_seeds_std", f"{y.removesuffix('_mean')}_std"):
        if c != y and c in df.columns:
            return c
    return None


def error_bar_note(df: pd.DataFrame, y: str, keys: Sequence[str], single_seed: str = "none") -> str:
    """What a figure's error bars are, for its caption: the sd over n training seeds (the range of n where
    groups differ), or, where every group has one row with a spread column, that column's spread (``acc_std``:
    the k-fold sd of one seed; ``*_seeds_std``: the sd over seeds given with the rows). ``single_seed``: what
    a one-seed group shows instead of a bar."""
    n = df.groupby(list(keys), sort=False).size()
    std_col = _std_column(df, y)
    if std_col is not None and int(n.max()) == 1:
        return ("error bars: sd over seeds (pre-aggregated)" if std_col.endswith("_seeds_std")
                else "error bars: k-fold sd of one seed (no seed spread)")
    lo, hi = int(n.min()), int(n.max())
    return f"error bars: sd over {lo if lo == hi else f'{lo}–{hi}'} seeds" + (f" (1 seed: {single_seed})" if lo == 1 else "")


def _caption_error_bars(ax, data: pd.DataFrame, y: str, keys: Sequence[str], single_seed: str = "none") -> None:
    """:func:`error_bar_note` written small above the axes' top-left corner."""
    ax.annotate(error_bar_note(data, y, keys, single_seed), (0, 1), xycoords="axes fraction", xytext=(2, 2),
                textcoords="offset points", fontsize="x-small", va="bottom", color="0.3")


def _accuracy_frame(df: pd.DataFrame, y: str | None, percent: bool | None) -> tuple[pd.DataFrame, str]:
    """Copy of ``df`` with numeric ``scale`` and the accuracy (and its spread) in percent; returns (frame, y)."""
    if y is None:
        y = next((c for c in ACC_COLUMNS if c in df.columns), None)
        if y is None:
            raise ValueError(f"no accuracy column: pass y= or provide one of {ACC_COLUMNS}; got {list(df.columns)}")
    elif y not in df.columns:
        raise ValueError(f"column {y!r} not in the DataFrame ({list(df.columns)})")
    out = df.copy()
    if "scale" in out.columns:
        out["scale"] = out["scale"].map(_scale_value)
    vals = pd.to_numeric(out[y], errors="coerce")
    if percent is None:  # fractions in [0, 1] become percent
        percent = bool(vals.dropna().le(1.0).all())
    out[y] = vals * 100.0 if percent else vals
    std_col = _std_column(out, y)
    if percent and std_col is not None:
        out[std_col] = pd.to_numeric(out[std_col], errors="coerce") * 100.0
    return out, y


def _summary(df: pd.DataFrame, y: str, keys: Sequence[str]) -> tuple[pd.DataFrame, bool]:
    """Per-group ``mean`` and ``sd`` of ``y``; True when the sd was given (pre-aggregated rows).

    Per-seed frames (several rows per group) get the sample standard deviation over their rows;
    pre-aggregated frames (one row per group) the spread column of :func:`_std_column`, if any.
    """
    grouped = df.groupby(list(keys), sort=False)
    std_col = _std_column(df, y)
    if std_col is not None and not df.duplicated(list(keys)).any():
        return pd.DataFrame({"mean": grouped[y].first(), "sd": grouped[std_col].first()}), True
    return pd.DataFrame({"mean": grouped[y].mean(), "sd": grouped[y].std().fillna(0.0)}), False


def accuracy_vs_scale(df: pd.DataFrame, hue: str = "model", *, y: str | None = None, style: str | None = None,
                      eval_mode: str | None = None, percent: bool | None = None, ax=None, title: str | None = None,
                      **line_kw):
    """Accuracy (%) against degradation scale, mean ± sd over seeds, one line per ``hue`` value.

    Args:
        df: tidy frame with columns ``scale`` and ``acc`` or ``acc_mean`` (one row per seed, e.g.
            concatenated :func:`lqlib.evaluation.evaluate` frames with ``model`` and ``seed`` added;
            or one row per group with a spread column, ``acc_mean_seeds_std`` from
            :func:`lqlib.evaluation.aggregate_seeds` or ``acc_std``), plus ``hue`` (default
            ``model``) and optionally ``eval_mode`` (``both`` / ``cross``).
        y: accuracy column (default: ``acc``, else ``acc_mean``). Fractions are shown as percent.
        style: column for the line style; defaults to ``eval_mode`` when that column has several
            values and no ``eval_mode`` filter is given.
        eval_mode: keep only rows with this ``eval_mode``.
        percent: force (True) or forbid (False) the ×100 conversion; None detects fractions.

    The x axis is log2(scale), labelled ×1 ×2 ×4 ×8 (any scales present are used). Returns the Axes.
    """
    data, y = _accuracy_frame(df, y, percent)
    data = filter_rows(data, eval_mode=eval_mode)
    if style is None and eval_mode is None and "eval_mode" in data.columns and data["eval_mode"].nunique() > 1:
        style = "eval_mode"
    data["log2_scale"] = np.log2(data["scale"].astype(float))
    ax = new_axes(ax)
    summary, given_sd = _summary(data, y, [c for c in (hue, style, "log2_scale") if c])
    palette = house_palette(data[hue])
    line_kw.setdefault("marker", "o")
    sns.lineplot(data=data, x="log2_scale", y=y, hue=hue, hue_order=list(palette), palette=palette, style=style,
                 errorbar=None if given_sd else "sd", err_style="bars", err_kws={"capsize": 3}, ax=ax, **line_kw)
    if given_sd:  # pre-aggregated rows: draw the given sd in each line's colour
        for key, g in summary.reset_index().groupby(hue, sort=False):
            ax.errorbar(g["log2_scale"], g["mean"], yerr=g["sd"], fmt="none", capsize=3, color=palette[key])
    scales = sorted(data["scale"].unique())
    ax.set_xticks(np.log2(scales), [scale_label(s) for s in scales])
    legend_outside_if_long(ax, palette)
    ax.set_xlabel("degradation scale")
    ax.set_ylabel("accuracy (%)")
    _caption_error_bars(ax, data, y, [c for c in (hue, style, "log2_scale") if c])
    if title:
        ax.set_title(title, pad=14)  # above the error-bar caption
    return ax


def method_comparison(df: pd.DataFrame, scale, *, y: str | None = None, x: str = "model", hue: str | None = None,
                      eval_mode: str | None = None, order: Sequence[str] | None = None, percent: bool | None = None,
                      ylim: tuple[float, float] | None = None, annotate: bool = True, ax=None,
                      title: str | None = None):
    """Bar chart of the methods at one degradation ``scale`` with sd error bars (paper's Figs 8–9).

    Same frame as :func:`accuracy_vs_scale`. ``ylim`` defaults to a window around the bars (the
    accuracies of face-verification methods differ by a few points, which a zero baseline hides);
    ``annotate`` writes each bar's mean inside its top. Returns the Axes.
    """
    data, y = _accuracy_frame(df, y, percent)
    data = data[np.isclose(data["scale"].astype(float), _scale_value(scale))]
    if data.empty:
        present = sorted(df["scale"].map(_scale_value).unique())
        raise ValueError(f"no rows at scale {scale!r}; scales present: {present}")
    data = filter_rows(data, eval_mode=eval_mode)
    if order is None:
        order = list(dict.fromkeys(data[x]))
    summary, given_sd = _summary(data, y, [c for c in (x, hue) if c])
    ax = new_axes(ax, figsize=(max(3.0, 0.6 * len(order) + 1.5), 3.0))
    colour = {} if hue else {"color": sns.color_palette("colorblind")[0]}
    sns.barplot(data=data, x=x, y=y, hue=hue, order=order, errorbar=None if given_sd else "sd", capsize=0.2,
                ax=ax, **colour)
    if given_sd and not hue:  # pre-aggregated rows: draw the given sd
        g = summary.loc[order]
        ax.errorbar(np.arange(len(order)), g["mean"], yerr=g["sd"], fmt="none", capsize=4, color="0.2")
    if annotate:
        for cont in ax.containers:
            if isinstance(cont, matplotlib.container.BarContainer):
                ax.bar_label(cont, fmt="%.1f", label_type="edge", padding=-14, fontsize="small", color="white")
    if not (given_sd or hue):
        _mark_seed_counts(ax, data.groupby(x, sort=False).size().reindex(order))
    if ylim is None:
        lo = float((summary["mean"] - summary["sd"]).min())
        hi = float((summary["mean"] + summary["sd"]).max())
        ylim = (max(0.0, 5.0 * math.floor((lo - 2.0) / 5.0)), min(100.0, hi + 2.0))
    ax.set_ylim(*ylim)
    ax.set_xlabel("")
    ax.set_ylabel(f"accuracy (%) at {scale_label(_scale_value(scale))}")
    _caption_error_bars(ax, data, y, [c for c in (x, hue) if c], "none" if given_sd or hue else "no bar, hatched")
    if len(order) > 4:  # slanted names end under their bar instead of running into the next one's
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
    if title:
        ax.set_title(title, pad=14)  # above the error-bar caption
    return ax


def _mark_seed_counts(ax, n: pd.Series) -> None:
    """Per-seed bars: each bar's number of seeds in its name (``model (n=5)``), and a bar of one seed (no
    spread to draw) hatched, so that it cannot pass for a mean with a tiny error bar."""
    counts = n.fillna(0).astype(int)
    ax.set_xticks(range(len(counts)), [f"{name} (n={k})" for name, k in counts.items()])
    for bar, k in zip(ax.patches, counts):
        if k == 1:
            bar.set_hatch("///")
            bar.set_edgecolor("white")
