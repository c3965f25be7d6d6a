"""House style, figure saving and the axes helpers every figure family shares.

* :func:`set_style` — seaborn ``whitegrid`` / ``paper`` context, colour-blind palette, TrueType
  (Type 42) fonts in PDF/PS so figures drop into LaTeX papers and stay editable.
* :func:`save_figure` — write a figure to ``figures/`` (or any folder) as PDF and PNG, each file
  atomically through :func:`lqlib.io.atomic_write`, fonts embedded as Type 42.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..io import atomic_write
from ..paths import figures_dir


#: rcParams that make PDF/PS output embed TrueType (Type 42) fonts instead of Type 3 bitmaps.
FONT_RC = {"pdf.fonttype": 42, "ps.fonttype": 42}
#: per format, the metadata that would date the file (None: not written), so a figure drawn again from the same
#: numbers is the same file (PNG records no date).
NO_DATE = {"pdf": {"CreationDate": None}}


def set_style(context: str = "paper", font_scale: float = 1.0) -> None:
    """Apply the house style: seaborn whitegrid, ``paper`` context, colour-blind palette, Type 42 fonts."""
    sns.set_theme(style="whitegrid", context=context, palette="colorblind", font_scale=font_scale)
    matplotlib.rcParams.update(FONT_RC)


def save_figure(fig, name: str, directory: str | os.PathLike | None = None,
                formats: Sequence[str] = ("pdf", "png"), dpi: int = 150, **savefig_kw) -> list[Path]:
    """Save ``fig`` as ``<directory>/<name>.<fmt>`` for every format; return the written paths.

    ``directory`` defaults to :func:`lqlib.paths.figures_dir`. Each file is written to a temporary
    file and renamed into place (:func:`lqlib.io.atomic_write`), with the format passed to
    ``savefig`` explicitly (the temporary name has no useful extension). PDF/PS fonts are embedded
    as TrueType (``pdf.fonttype = ps.fonttype = 42``) whatever the global rcParams say, and a PDF gets no creation
    date (:data:`NO_DATE`): the same figure saved again is the same PDF and PNG, byte for byte.
    ``fig`` may also be an Axes (its figure is saved).
    """
    fig = getattr(fig, "figure", fig)  # accept an Axes
    if isinstance(formats, str):
        formats = (formats,)
    out_dir = Path(directory) if directory is not None else figures_dir()
    supported = fig.canvas.get_supported_filetypes()
    for fmt in formats:
        if fmt not in supported:
            raise ValueError(f"unsupported figure format {fmt!r}; choose from {sorted(supported)}")
    stem = Path(name)
    if stem.suffix.lstrip(".") in formats:  # "fig8.pdf" → "fig8"
        stem = stem.with_suffix("")
    savefig_kw.setdefault("bbox_inches", "tight")
    paths = []
    with matplotlib.rc_context(FONT_RC):
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            meta = {**NO_DATE.get(fmt, {}), **(savefig_kw.get("metadata") or {})}
            kw = {**savefig_kw, "metadata": meta} if meta else savefig_kw
            with atomic_write(path, "wb") as f:
                fig.savefig(f, format=fmt, dpi=dpi, **kw)
            paths.append(path)
    return paths



def new_axes(ax=None, figsize=(4.0, 3.0)):
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def legend_outside_if_long(ax, labels, max_chars: int = 20):
    """Long method names (e.g. "angular_emb+relational ← faceapi-resnet") would cover the
    lines: move the legend right of the axes and widen the figure by the legend's width."""
    longest = max((len(str(lab)) for lab in labels), default=0)
    if longest <= max_chars or ax.get_legend() is None:
        return
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize="small")
    fig = ax.figure
    w, h = fig.get_size_inches()
    fig.set_size_inches(w + 0.065 * longest + 0.4, h)


def house_palette(values: pd.Series) -> dict:
    """Colour-blind house palette keyed by the values in order of appearance."""
    order = list(dict.fromkeys(values))
    return dict(zip(order, sns.color_palette("colorblind", n_colors=len(order))))


def filter_rows(df: pd.DataFrame, **eq) -> pd.DataFrame:
    for col, val in eq.items():
        if val is not None:
            if col not in df.columns:
                raise ValueError(f"cannot filter on {col!r}: no such column")
            df = df[df[col] == val]
    if df.empty:
        raise ValueError(f"no rows left after filtering on {eq}")
    return df


# ------------------------------------------------------------------------------------- the plots
