"""Face-verification evaluation — the public entry point (implementation in :mod:`lqlib.evaluation`).

``verify`` / ``verify_scores`` (k-fold accuracy with exact threshold search, ROC, TAR@FAR, AUC),
``PROTOCOLS`` (``insightface``: flip-summed embeddings, squared L2; ``askd``: concatenated flip
features with fold-mean subtraction, cosine), ``embed`` (batched, normalised at the model boundary),
``evaluate`` (a model on a pair set at degradation scales ×1 ×2 ×4 ×8, ``both`` / ``cross`` modes →
DataFrame), ``results_table`` / ``to_markdown`` / ``aggregate_seeds`` (paper-layout tables) and
``paired_bootstrap`` / ``mcnemar`` (paired significance). Conventions (percent units, the threshold
tie rule, TAR@FAR reading) are in :mod:`lqlib.evaluation`'s docstring.
"""
from __future__ import annotations

from .evaluation import *  # noqa: F401,F403
from .evaluation import __all__  # noqa: F401
