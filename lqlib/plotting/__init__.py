"""House style, figure saving and the result plots of the workbench, one module per figure family.

* :mod:`~lqlib.plotting.style` — :func:`set_style` (seaborn ``whitegrid`` / ``paper`` context, colour-blind
  palette, TrueType (Type 42) fonts in PDF/PS so figures drop into LaTeX papers and stay editable) and
  :func:`save_figure` (PDF and PNG into ``figures/`` or any folder, each file atomically);
* :mod:`~lqlib.plotting.accuracy` — :func:`accuracy_vs_scale` (accuracy (%) against the degradation scale, mean ±
  sd over seeds, one line per method) and :func:`method_comparison` (the methods at one scale, the paper's
  Figs 8–9), both from *tidy* DataFrames (one row per method × seed × scale [× mode]);
* :mod:`~lqlib.plotting.curves` — :func:`training_curves` (loss terms, accuracy and learning rate per epoch of one
  run), :func:`teacher_curves` and :func:`student_curves` (a blocked study's students per block);
* :mod:`~lqlib.plotting.attention` — :func:`attention_similarity_curve` and :func:`attention_measure_curve`
  (teacher HR vs student LR attention, per block);
* :mod:`~lqlib.plotting.identification` — :func:`cmc_curves` and :func:`match_grid`.

Every name is importable from ``lqlib.plotting`` itself. Plots that draw into one Axes follow seaborn's
convention: they take ``ax=None`` and return the Axes; multi-panel plots return the Figure.
"""
from .accuracy import ACC_COLUMNS, accuracy_vs_scale, error_bar_note, method_comparison
from .attention import attention_measure_curve, attention_similarity_curve
from .curves import student_curves, teacher_curves, training_curves
from .identification import cmc_curves, match_grid
from .style import FONT_RC, NO_DATE, save_figure, set_style

__all__ = ["set_style", "save_figure", "accuracy_vs_scale", "method_comparison", "training_curves", "teacher_curves", "student_curves",
           "attention_similarity_curve", "attention_measure_curve", "cmc_curves", "match_grid", "FONT_RC",
           "ACC_COLUMNS", "NO_DATE", "error_bar_note"]
