"""Attention figures: per-block similarity of teacher (HR) and student (LR) attention maps, and the
attention measure with its intervals."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns

from .style import new_axes


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
    ax = new_axes(ax, figsize=(5.0, 3.0))
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
    ax = new_axes(ax, figsize=(7.5, 3.2))
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
