"""Training curves: loss terms, accuracy and learning rate per epoch of one run, and the teachers of a
blocked study side by side, and the students of each block."""
from __future__ import annotations

import os
import re
from typing import Mapping

import matplotlib
import matplotlib.ticker
import matplotlib.pyplot as plt
import pandas as pd

from .style import house_palette, new_axes


def accuracy_label(cols: list[str]) -> str:
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
    ``weights`` (``{term: weight}``: the run's plan, :attr:`lqlib.training_plan.TrainingPlan.kd_weights`, also in
    its ``plan.json``): the logged terms are unweighted, so
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
    panels = [("loss", loss_cols)] + ([(accuracy_label(acc_cols), acc_cols)] if acc_cols else []) \
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
    ax = new_axes(ax, figsize=(5.0, 3.0))
    palette = house_palette(metrics[hue])
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
    ax.set_ylabel(accuracy_label([y]))
    ax.legend(fontsize="x-small", title="★ best epoch, ■ last (kept)", title_fontsize="x-small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    return ax


def student_curves(metrics: pd.DataFrame, *, y: str = "val_acc_x8", hue: str = "model", col: str = "block",
                   title: str | None = None):
    """Validation accuracy per epoch of several students, one panel per ``col`` value (a blocked study's
    blocks: :func:`lqlib.verdict.pooled_student_metrics`) and one line per ``hue`` value; each line's last
    epoch (the model kept) is squared and the epochs where its learning rate was lowered are ringed, so where
    two curves meet — or do not — can be read off. Returns the Figure."""
    missing = {"epoch", y, hue, col} - set(metrics.columns)
    if missing:
        raise ValueError(f"student metrics lack columns {sorted(missing)}; got {list(metrics.columns)}")
    panels = list(dict.fromkeys(metrics[col]))
    if not panels:
        raise ValueError("no student metrics to draw")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.6, 3.2), layout="constrained",
                             squeeze=False, sharey=True)
    palette = house_palette(metrics[hue])
    labelled = set()
    for ax, panel in zip(axes[0], panels):
        part = metrics[metrics[col] == panel]
        for key, g in part.groupby(hue, sort=False):
            per = g.dropna(subset=[y]).groupby("epoch").agg({y: "mean", **({"lr": "last"} if "lr" in g else {})})
            if per.empty:
                continue
            c = palette[key]
            ax.plot(per.index, per[y], lw=1.3, color=c, label=None if key in labelled else key)
            labelled.add(key)
            ax.plot([per.index[-1]], [per[y].iloc[-1]], marker="s", ms=5, color=c, ls="none")
            if "lr" in per:
                drops = per.index[1:][per["lr"].to_numpy()[1:] < per["lr"].to_numpy()[:-1]]
                ax.plot(drops, per.loc[drops, y], marker="o", ms=7, mfc="none", color=c, ls="none")
        ax.set_title(f"{col} {panel}", fontsize="small")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0][0].set_ylabel(accuracy_label([y]))
    handles = {h.get_label(): h for a in axes[0] for h in a.lines if not h.get_label().startswith("_")}
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize="x-small", frameon=False,
                       title="■ last epoch (kept)\n○ first epoch at a lowered rate", title_fontsize="x-small",
                       loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title)
    return fig
