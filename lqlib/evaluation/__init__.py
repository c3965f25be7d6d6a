"""Face-verification evaluation: k-fold accuracy, ROC/TAR@FAR, scoring protocols, LR test tables; 1:N
identification (CMC, mAP, DIR@FPIR: :mod:`.identification`, its protocols in :mod:`.id_pipeline`).

Pipeline (what :func:`evaluate` does)::

    pairs (uint8 RGB [2N,3,H,W]) ─► degrade_eval(scale, seed) ─► embed(model) ─► protocol.score ─► verify_scores
                                                                (orig + hflip)   (per-pair scores,   (k-fold acc,
                                                                                  per eval fold)      ROC, TAR)

Conventions
-----------
* Pair ``i`` is images ``2i`` and ``2i+1``; ``issame`` is a bool per pair; ``folds`` is an int per pair
  (the official contiguous folds) or, when absent, ``nfolds`` contiguous near-equal splits (as
  ``sklearn.model_selection.KFold(nfolds, shuffle=False)``, i.e. InsightFace's ``verification.py``).
* Accuracies and TARs are in **percent**; AUC is a fraction in [0, 1]; ``acc_std`` is the population
  standard deviation over folds (``np.std``, ddof=0, as InsightFace and SphereFace report it).
* **Threshold search** (per evaluation fold, on the other folds): exact, over the midpoints between
  consecutive distinct training scores plus one candidate just outside each end (half the mean spacing
  beyond the extreme score). *Tie rule*: among candidates with the same best training accuracy the one
  predicting the **fewest "same" pairs** wins (the smallest distance threshold / the largest similarity
  threshold) — what InsightFace's ``np.argmax`` over an ascending distance grid picks. Decisions are
  strict: same ⇔ distance < thr, or similarity > thr. Passing ``thresholds=`` searches that grid instead
  (same tie rule).
* **ROC / TAR@FAR** are computed once over all pairs from each pair's *out-of-fold* score (the score the
  accuracy used; for ``askd`` the score under its own evaluation fold's mean). TAR@FAR is read off the
  empirical ROC step function — the best TPR of a real threshold whose FPR ≤ FAR, no interpolation (pass
  ``interp="linear"`` to :func:`tar_at_far` for the interpolated value). With 3,000 pairs (1,500 impostor
  pairs, lfw-half) FAR=1e-3 allows 1.5 impostors, i.e. one; with 6,000 pairs three: such TARs are
  very noisy and mostly say how the few hardest impostors score.
"""
from __future__ import annotations

from .checks import DegenerateStudyError, check_study
from .identification import (FPIRS, NO_IDENTITY, RANKS, IdentificationResult, identify, identify_scores,
                             image_features, templates)
from .embedding import DEGRADE_CHUNK, chunk_seed, degrade_eval, embed, prepared_model
from .pipeline import EVAL_MODES, evaluate, unpack_pairs
from .protocols import PROTOCOLS, AskdProtocol, InsightFaceProtocol, Protocol, get_protocol
from .seeds import compare_to_baseline, holm, seed_summary, seed_test
from .significance import mcnemar, paired_bootstrap
from .tables import aggregate_seeds, paper_table, results_table, scale_label, to_markdown
from .verification import FARS, METRICS, PairScores, VerifyResult, resolve_folds, tar_at_far, verify, verify_scores

__all__ = ["DegenerateStudyError", "check_study", "DEGRADE_CHUNK", "FARS", "FPIRS", "IdentificationResult", "NO_IDENTITY", "RANKS", "identify",
           "identify_scores", "image_features", "templates", "METRICS", "EVAL_MODES", "PROTOCOLS", "AskdProtocol", "InsightFaceProtocol",
           "PairScores", "Protocol", "VerifyResult", "aggregate_seeds", "chunk_seed", "compare_to_baseline",
           "degrade_eval", "embed", "evaluate", "get_protocol", "holm", "mcnemar", "paired_bootstrap", "paper_table",
           "prepared_model", "resolve_folds", "results_table", "scale_label", "seed_summary", "seed_test",
           "tar_at_far", "to_markdown", "unpack_pairs", "verify", "verify_scores"]
