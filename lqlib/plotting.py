"""House style, figure saving and the result plots of the workbench.

* :func:`set_style` — seaborn ``whitegrid`` / ``paper`` context, colour-blind palette, TrueType
  (Type 42) fonts in PDF/PS so figures drop into LaTeX papers and stay editable.
* :func:`save_figure` — write a figure to ``figures/`` (or any folder) as PDF and PNG, each file
  atomically through :func:`lqlib.io.atomic_write`, fonts embedded as Type 42.
* Result plots, all taking *tidy* DataFrames (one row per method × seed × scale [× mode]):

  - :func:`accuracy_vs_scale` — verification accuracy (%) against the degradation scale
    (×1 ×2 ×4 ×8 on a log2 axis), mean ± standard deviation over seeds, one line per method;
  - :func:`method_comparison` — bar chart of the methods at one scale (the paper's Figs 8–9);
  - :func:`training_curves` — loss terms, accuracy and learning rate per epoch of one run;
  - :func:`attention_similarity_curve` — per-block cosine similarity of teacher (HR) and
    student (LR) attention maps, one line per method.

Plots that draw into one Axes follow seaborn's convention: they take ``ax=None`` and return the
Axes; multi-panel plots return the Figure.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.ticker
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .evaluation.tables import scale_label
from .io import atomic_write
from .paths import figures_dir

#: rcParams that make PDF/PS output embed TrueType (Type 42) fonts instead of Type 3 bitmaps.
FONT_RC = {"pdf.fonttype": 42, "ps.fonttype": 42}
#: per format, the metadata that would date the file (None: not written), so a figure drawn again from the same
#: numbers is the same file (PNG records no date).
NO_DATE = {"pdf": {"CreationDate": None}}
#: accuracy columns looked for, in order, when ``y`` is not given.
ACC_COLUMNS = ("acc", "acc_mean")


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


# --------------------------------------------------------------------------------------- helpers

def _new_axes(ax=None, figsize=(4.0, 3.0)):
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _legend_outside_if_long(ax, labels, max_chars: int = 20):
    """Long method names (e.g. "angular_emb+relational ← faceapi-resnet") would cover the
    lines: move the legend right of the axes and widen the figure by the legend's width."""
    longest = max((len(str(lab)) for lab in labels), default=0)
    if longest <= max_chars or ax.get_legend() is None:
        return
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize="small")
    fig = ax.figure
    w, h = fig.get_size_inches()
    fig.set_size_inches(w + 0.065 * longest + 0.4, h)


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


def _palette(values: pd.Series) -> dict:
    """Colour-blind house palette keyed by the values in order of appearance."""
    order = list(dict.fromkeys(values))
    return dict(zip(order, sns.color_palette("colorblind", n_colors=len(order))))


def _filter(df: pd.DataFrame, **eq) -> pd.DataFrame:
    for col, val in eq.items():
        if val is not None:
            if col not in df.columns:
                raise ValueError(f"cannot filter on {col!r}: no such column")
            df = df[df[col] == val]
    if df.empty:
        raise ValueError(f"no rows left after filtering on {eq}")
    return df


# ------------------------------------------------------------------------------------- the plots

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
    data = _filter(data, eval_mode=eval_mode)
    if style is None and eval_mode is None and "eval_mode" in data.columns and data["eval_mode"].nunique() > 1:
        style = "eval_mode"
    data["log2_scale"] = np.log2(data["scale"].astype(float))
    ax = _new_axes(ax)
    summary, given_sd = _summary(data, y, [c for c in (hue, style, "log2_scale") if c])
    palette = _palette(data[hue])
    line_kw.setdefault("marker", "o")
    sns.lineplot(data=data, x="log2_scale", y=y, hue=hue, hue_order=list(palette), palette=palette, style=style,
                 errorbar=None if given_sd else "sd", err_style="bars", err_kws={"capsize": 3}, ax=ax, **line_kw)
    if given_sd:  # pre-aggregated rows: draw the given sd in each line's colour
        for key, g in summary.reset_index().groupby(hue, sort=False):
            ax.errorbar(g["log2_scale"], g["mean"], yerr=g["sd"], fmt="none", capsize=3, color=palette[key])
    scales = sorted(data["scale"].unique())
    ax.set_xticks(np.log2(scales), [scale_label(s) for s in scales])
    _legend_outside_if_long(ax, palette)
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
    data = _filter(data, eval_mode=eval_mode)
    if order is None:
        order = list(dict.fromkeys(data[x]))
    summary, given_sd = _summary(data, y, [c for c in (x, hue) if c])
    ax = _new_axes(ax, figsize=(max(3.0, 0.6 * len(order) + 1.5), 3.0))
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


def _accuracy_label(cols: list[str]) -> str:
    """The accuracy panel's axis label: what a single column measures (``val_acc_x1`` → "validation accuracy
    ×1 (%)"), else "accuracy (%)" with the columns in the legend."""
    if len(cols) != 1:
        return "accuracy (%)"
    m = re.fullmatch(r"(val_|train_)?acc(?:_x([\d.]+))?", cols[0])
    if not m:
        return f"{cols[0]} (%)"
    where = {"val_": "validation ", "train_": "training ", None: ""}[m.group(1)]
    return f"{where}accuracy{f' ×{m.group(2)}' if m.group(2) else ''} (%)"


def training_curves(metrics: str | os.PathLike | pd.DataFrame, *, x: str = "epoch", logy: bool = False,
                    weights: Mapping[str, float] | None = None, title: str | None = None):
    """Loss terms, accuracy and learning rate per epoch from a run's ``metrics.csv``.

    ``metrics`` is the path of the CSV or its DataFrame (columns ``epoch, step, loss,
    loss_<term>..., lr`` and maybe ``val_acc`` / other ``*acc*`` columns). Rows are averaged per
    ``x`` (losses; accuracy columns logged on a few rows only are averaged over the rows that have
    them; the learning rate is the last value). Panels: losses, accuracy (if any), lr (if any).
    ``weights`` (``{term: weight}``, :func:`lqlib.methods.term_weights`): the logged terms are unweighted, so
    each named term is drawn times its weight and labelled so ("50 × angular"); the drawn terms then add up
    to the total. Integer epochs get integer ticks. Returns the Figure.
    """
    df = pd.read_csv(metrics) if isinstance(metrics, (str, os.PathLike)) else metrics.copy()
    if x not in df.columns:
        if "step" not in df.columns:
            raise ValueError(f"metrics need an {x!r} or 'step' column; got {list(df.columns)}")
        x = "step"
    loss_cols = [c for c in df.columns if c == "loss" or c.startswith("loss_")]
    acc_cols = [c for c in df.columns if "acc" in c and pd.api.types.is_numeric_dtype(df[c])]
    panels = [("loss", loss_cols)] + ([(_accuracy_label(acc_cols), acc_cols)] if acc_cols else []) \
        + ([("learning rate", ["lr"])] if "lr" in df.columns else [])
    if not loss_cols:
        raise ValueError(f"no loss columns (loss, loss_<term>) in {list(df.columns)}")
    grouped = df.groupby(x)
    per_x = grouped[loss_cols + acc_cols].mean()
    if "lr" in df.columns:
        per_x["lr"] = grouped["lr"].last()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), layout="constrained", squeeze=False)
    weights = dict(weights or {})
    unknown = set(weights) - {c.removeprefix("loss_") for c in loss_cols}
    if unknown:
        raise ValueError(f"weights name terms the metrics do not log: {sorted(unknown)} (logged: {loss_cols})")
    for ax, (label, cols) in zip(axes[0], panels):
        for c in cols:
            s = per_x[c].dropna()
            term = c.removeprefix("loss_")
            w = weights.get(term) if c != "loss" else None
            name = "total" if c == "loss" else (f"{w:g} × {term}" if w is not None and w != 1.0 else term)
            ax.plot(s.index, s.values * (w if w is not None else 1.0), marker="o" if len(s) < 30 else None, ms=3,
                    lw=2.0 if c == "loss" else 1.2, label=name)
        if x == "epoch":
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel(x)
        ax.set_ylabel(label)
        if label == "loss" and logy:
            ax.set_yscale("log")
        if label == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if len(cols) > 1:   # beside the panel (constrained layout makes room): inside, it hid the total's curve
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if title:
        fig.suptitle(title)
    return fig


def teacher_curves(metrics: pd.DataFrame, *, y: str = "val_acc_x1", hue: str = "block", ax=None,
                   title: str | None = None):
    """Validation accuracy per epoch of several teachers, one line per ``hue`` value (a blocked study's teacher
    seeds: :func:`lqlib.verdict.pooled_teacher_metrics`); each line's best epoch is starred and its last epoch
    (the checkpoint kept) squared, with the number of epochs trained in the legend. Returns the Axes."""
    missing = {"epoch", y, hue} - set(metrics.columns)
    if missing:
        raise ValueError(f"teacher metrics lack columns {sorted(missing)}; got {list(metrics.columns)}")
    ax = _new_axes(ax, figsize=(5.0, 3.0))
    palette = _palette(metrics[hue])
    for key, g in metrics.groupby(hue, sort=False):
        g = g.dropna(subset=[y]).groupby("epoch")[y].mean()
        if g.empty:
            continue
        c = palette[key]
        ax.plot(g.index, g.values, lw=1.3, color=c, label=f"{hue} {key}: {int(g.index.max())} epochs, "
                                                          f"best {g.max():.2f} @ {int(g.idxmax())}")
        ax.plot([g.idxmax()], [g.max()], marker="*", ms=10, color=c, ls="none")
        ax.plot([g.index[-1]], [g.iloc[-1]], marker="s", ms=5, color=c, ls="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel(_accuracy_label([y]))
    ax.legend(fontsize="x-small", title="★ best epoch, ■ last (kept)", title_fontsize="x-small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    return ax


def attention_similarity_curve(data: pd.DataFrame | Mapping[str, Sequence[float]], hue: str = "model", *,
                               block_stage: Sequence[int] | None = None, ax=None, title: str | None = None):
    """Per-block cosine similarity of teacher (HR) and student (LR) attention maps, one line per model.

    ``data``: a tidy frame with columns ``block``, ``similarity`` and ``hue`` (default ``model``;
    rows from several seeds give a mean ± sd band), or a mapping ``{model: per-block similarities}``
    such as ``{"hr→lr": lqlib.viz.block_similarity(teacher, student, hr, lr)}``. ``block_stage``
    (``model.block_stage``, or a ``stage`` column) draws the stage boundaries. Returns the Axes.
    """
    if isinstance(data, Mapping):
        data = pd.DataFrame([{hue: k, "block": i, "similarity": float(v)}
                             for k, vals in data.items() for i, v in enumerate(np.asarray(vals).ravel())])
    missing = {"block", "similarity", hue} - set(data.columns)
    if missing:
        raise ValueError(f"attention similarity frame lacks columns {sorted(missing)}")
    ax = _new_axes(ax, figsize=(5.0, 3.0))
    sns.lineplot(data=data, x="block", y="similarity", hue=hue, errorbar="sd", marker="o", ms=4, ax=ax)
    if block_stage is None and "stage" in data.columns:
        block_stage = data.drop_duplicates("block").sort_values("block")["stage"].tolist()
    if block_stage is not None:
        for i in range(1, len(block_stage)):
            if block_stage[i] != block_stage[i - 1]:
                ax.axvline(i - 0.5, color="0.6", ls=":", lw=1)
    blocks = sorted(data["block"].unique())
    ax.set_xticks(blocks)  # blocks are whole numbers: no 0.5 ticks
    ax.set_xlabel("block (dotted: stage boundary)" if block_stage is not None else "block")
    ax.set_ylabel("cosine similarity (teacher HR vs student LR)")
    if title:
        ax.set_title(title)
    return ax


def attention_measure_curve(measure: pd.DataFrame, *, ax=None, title: str | None = None):
    """The attention measure that can fail (:func:`lqlib.verdict.attention_measure_study`): per block the
    mean Pearson r of teacher-HR and student-LR maps per model, with its interval as error bars — the
    t-interval across seeds, labelled with n; single-seed models (face-bootstrap interval only) are drawn
    dashed and marked "1 seed". Stage boundaries dotted when the frame has a ``stage`` column."""
    need = {"model", "block", "mean", "ci_low", "ci_high", "n_seeds"}
    missing = need - set(measure.columns)
    if missing:
        raise ValueError(f"attention measure frame lacks columns {sorted(missing)}")
    ax = _new_axes(ax, figsize=(7.5, 3.2))
    models = list(dict.fromkeys(measure["model"]))
    palette = dict(zip(models, sns.color_palette("colorblind", n_colors=max(len(models), 1))))
    k = len(models)
    for j, m in enumerate(models):
        d = measure[measure["model"] == m].sort_values("block")
        n = int(d["n_seeds"].iloc[0])
        x = d["block"].to_numpy() + (j - (k - 1) / 2) * 0.08            # dodge the bars
        y = d["mean"].to_numpy()
        err = np.vstack([y - d["ci_low"].to_numpy(), d["ci_high"].to_numpy() - y])
        label = f"{m} (1 seed: faces only)" if n < 2 else f"{m} (n={n} seeds)"
        ax.errorbar(x, y, yerr=err, marker="o", ms=3.5, capsize=2, lw=1.2, color=palette[m], label=label,
                    ls="--" if n < 2 else "-")
    if "stage" in measure.columns:
        stages = measure.drop_duplicates("block").sort_values("block")["stage"].tolist()
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax.axvline(i - 0.5, color="0.6", ls=":", lw=1)
    ax.axhline(0.0, color="0.3", lw=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(sorted(measure["block"].unique()))
    ax.set_xlabel("block" + (" (dotted: stage boundary)" if "stage" in measure.columns else ""))
    kind = measure["kind"].iloc[0] if "kind" in measure.columns else "spatial"
    ax.set_ylabel(f"Pearson r, {kind} maps\n(teacher HR vs model LR)")
    single = measure.groupby("model", sort=False)["n_seeds"].first() < 2
    bars = ("95 % face bootstrap (1 seed each)" if single.all() else "95 % t-interval over seeds" if not single.any()
            else "95 % t-interval over seeds;\ndashed: 1 seed, face bootstrap")
    ax.legend(fontsize="x-small", title=f"error bars: {bars}", title_fontsize="x-small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    return ax


def cmc_curves(curves: Mapping[str, np.ndarray], *, ax=None, title: str | None = None, max_rank: int | None = None):
    """Cumulative match characteristic: identification rate (%) at rank 1..R, one line per model.

    ``curves``: label → CMC values for ranks 1..R (``(R,)``), or ``(n_seeds, R)`` for a mean ± sd band."""
    ax = _new_axes(ax, figsize=(4.5, 3.0))
    palette = dict(zip(curves, sns.color_palette("colorblind", n_colors=max(len(curves), 1))))
    for label, c in curves.items():
        c = np.atleast_2d(np.asarray(c, dtype=float))
        c = c[:, :max_rank] if max_rank else c
        r = np.arange(1, c.shape[1] + 1)
        mean = c.mean(0)
        ax.plot(r, mean, marker="o", ms=3, label=label, color=palette[label])
        if len(c) > 1:
            sd = c.std(0, ddof=1)
            ax.fill_between(r, mean - sd, mean + sd, alpha=0.2, color=palette[label], lw=0)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.legend(frameon=False, fontsize="small")
    _legend_outside_if_long(ax, list(curves))
    if title:
        ax.set_title(title)
    return ax


def match_grid(rows: Sequence[Mapping], *, title: str | None = None):
    """Probe and its top-k gallery matches, one row per model: each row a mapping with ``label``, ``probe``
    (uint8 [3, H, W]), ``matches`` (uint8 [k, 3, H, W]), ``correct`` (k bools: green / red frame) and ``scores``.
    Returns the Figure."""
    k = max(len(r["matches"]) for r in rows)
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.25 * (k + 1), 1.55 * len(rows)), squeeze=False,
                             layout="constrained")
    for i, r in enumerate(rows):
        cells = [(r["probe"], "probe", None)] + [(m, f"#{j + 1} {s:.2f}", bool(c)) for j, (m, s, c) in
                                                 enumerate(zip(r["matches"], r["scores"], r["correct"]))]
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(cells):
                ax.axis("off")
                continue
            img, text, ok = cells[j]
            ax.imshow(np.asarray(img).transpose(1, 2, 0))
            ax.set_title(text, fontsize="x-small")
            if ok is not None:
                for sp in ax.spines.values():
                    sp.set_color("#009E73" if ok else "#D55E00")
                    sp.set_linewidth(3)
        axes[i][0].set_ylabel(r["label"], fontsize="x-small")
    if title:
        fig.suptitle(title, fontsize="small")
    return fig


__all__ = ["set_style", "save_figure", "accuracy_vs_scale", "method_comparison", "training_curves", "teacher_curves",
           "attention_similarity_curve", "attention_measure_curve", "cmc_curves", "match_grid", "FONT_RC"]
