"""Identification figures: CMC curves and a probe's top gallery matches."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .style import legend_outside_if_long, new_axes


def cmc_curves(curves: Mapping[str, np.ndarray], *, ax=None, title: str | None = None, max_rank: int | None = None):
    """Cumulative match characteristic: identification rate (%) at rank 1..R, one line per model.

    ``curves``: label → CMC values for ranks 1..R (``(R,)``), or ``(n_seeds, R)`` for a mean ± sd band."""
    ax = new_axes(ax, figsize=(4.5, 3.0))
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # ranks are whole numbers
    ax.set_ylabel("identification rate (%)")
    ax.legend(frameon=False, fontsize="small")
    legend_outside_if_long(ax, list(curves))
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
