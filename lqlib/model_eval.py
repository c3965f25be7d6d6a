"""One model's evaluation as soon as it is trained, published per model (notebook 02's ``TEST_EVAL`` and
``ATTENTION_EVAL``).

A study block that spans several working days (a registered study on a slow CPU) cannot keep a student's
weights until the block's test step: only teachers' weights are committed. So each student is evaluated
right after training with exactly the settings of the block's test step (notebook 03), and its rows and
per-pair correctness are published under ``<publish_dir>/eval/<set>/`` (:func:`lqlib.study.evaluate_study`,
:func:`lqlib.id_study.identify_study`). The test step later reads a published model whose run folder is gone
from there, and its per-pair tests are the same as if it had been evaluated then: evaluation is deterministic.
Likewise its attention measure on the validation faces (notebook 04's settings) is merged into the block's
published table, whose rows 04 keeps for students it no longer has.

Nothing is decided on these numbers: the student's training has ended by its registered rule before its
test pairs are read, and the hypotheses are tested once, on all blocks pooled.
"""
from __future__ import annotations

from typing import Optional

from . import id_study as IS
from . import study as S
from .errors import LqlibError

# notebook 03's parameters that decide what its evaluation computes, with 03's defaults: the cache key of a
# model's evaluation is built from these, so the same settings here and there share one result
SETTINGS = {"PAIRS": "lfw-half", "DATA_DIR": "", "MAX_PAIRS": 0, "EVAL_SCALES": [1, 2, 4, 8],
            "EVAL_MODES": ["both", "cross"], "PROTOCOL": "insightface", "DEVICE": "auto", "BATCH_SIZE": 256,
            "ALLOW_LEAKAGE": False, "ID_SET": "lfw-half-id", "ID_EVAL_MODES": ["cross", "both"],
            "ID_MAX_PROBES": 0, "ID_TEMPLATES": False, "TINYFACE_DIR": ""}


# notebook 04's parameters of its attention measure, with 04's defaults
ATTENTION_SETTINGS = {"PAIRS": "lfw-half", "DATA_DIR": "", "N_MEASURE_FACES": 200, "SCALE": 8.0, "DEVICE": "cpu"}


class EvalSettingsError(LqlibError, ValueError):
    pass


def _settings(given: dict, defaults: dict, name: str, notebook: str) -> dict:
    """``given`` over ``defaults``; an unknown name is refused, naming the parameter and the known names."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise EvalSettingsError(f"{name}: unknown setting(s) {unknown}; known (notebook {notebook}'s parameters): "
                                f"{', '.join(defaults)}")
    return {**defaults, **given}


def test_settings(test_eval: dict) -> dict:
    """``test_eval`` (03's parameter names) over 03's defaults."""
    return _settings(test_eval, SETTINGS, "TEST_EVAL", "03")


def attention_settings(attention_eval: dict) -> dict:
    """``attention_eval`` (04's parameter names) over 04's defaults."""
    return _settings(attention_eval, ATTENTION_SETTINGS, "ATTENTION_EVAL", "04")


def _trained(study: S.Study, key, seed: int):
    key = S.ModelKey.parse(key)
    model = next((m for m in study.models() if m.key == key and m.seed == int(seed)), None)
    if model is None:
        raise FileNotFoundError(f"{study.root}: no finished model {key} with seed {seed} to evaluate")
    return model


def _needs_publish_dir(name: str, publish_dir: str):
    if not publish_dir:
        raise EvalSettingsError(f"{name} needs PUBLISH_DIR: the result is published per model so the block's "
                                "later steps can read it after this run folder is gone")


def evaluate_trained(study: S.Study, key, seed: int, test_eval: dict, publish_dir: str, log=print) -> dict:
    """Evaluate the trained model ``key`` × ``seed`` of ``study`` with 03's settings ``test_eval`` (verification
    on ``PAIRS``, identification on ``ID_SET`` when given) and publish its files under ``<publish_dir>/eval/``.
    Returns ``{"verification": DataFrame, "identification": DataFrame or None}``."""
    _needs_publish_dir("TEST_EVAL", publish_dir)
    cfg = test_settings(test_eval)
    model = _trained(study, key, seed)
    device = None if cfg["DEVICE"] == "auto" else cfg["DEVICE"]
    pairs = S.load_eval_pairs(cfg["PAIRS"], cfg["DATA_DIR"], cfg["MAX_PAIRS"])
    ver = S.evaluate_study(study, pairs, cfg["EVAL_SCALES"], cfg["EVAL_MODES"], cfg["PROTOCOL"], device=device,
                           batch_size=cfg["BATCH_SIZE"], allow_leakage=cfg["ALLOW_LEAKAGE"], models=[model],
                           publish_dir=publish_dir)
    log(f"{model.name} (seed {seed}) on {pairs.name}: published under {S.published_eval_dir(publish_dir, pairs.name)}")
    ident: Optional[object] = None
    if cfg["ID_SET"]:
        ident = IS.identify_study(study, cfg["ID_SET"], cfg["EVAL_SCALES"], cfg["ID_EVAL_MODES"],
                                  data_dir=cfg["DATA_DIR"], tinyface=cfg["TINYFACE_DIR"],
                                  max_probes=cfg["ID_MAX_PROBES"], use_templates=cfg["ID_TEMPLATES"], device=device,
                                  batch_size=cfg["BATCH_SIZE"], allow_leakage=cfg["ALLOW_LEAKAGE"], models=[model],
                                  publish_dir=publish_dir)
    return {"verification": ver, "identification": ident}


def measure_trained(study: S.Study, key, seed: int, attention_eval: dict, publish_dir: str):
    """The attention measure (:func:`lqlib.verdict.attention_measure_study`) of the trained student ``key`` ×
    ``seed`` with 04's settings ``attention_eval``, merged into the block's published table (04 keeps these
    rows when it later measures the students still on disk). Returns the student's rows."""
    from . import verdict as V

    _needs_publish_dir("ATTENTION_EVAL", publish_dir)
    cfg = attention_settings(attention_eval)
    model = _trained(study, key, seed)
    if model.external_teacher:
        print(f"{model.name}: a student of an external teacher has no teacher attention maps to compare; not measured")
        return None
    pairs = S.load_eval_pairs(cfg["PAIRS"], cfg["DATA_DIR"], max_pairs=2 * cfg["N_MEASURE_FACES"])
    measure = V.attention_measure_study(study, pairs, n_faces=cfg["N_MEASURE_FACES"], scale=cfg["SCALE"],
                                        device=cfg["DEVICE"], include_teacher=False, models=[model])
    V.save_attention_measure(study, measure, publish_dir)
    return measure


__all__ = ["SETTINGS", "ATTENTION_SETTINGS", "EvalSettingsError", "test_settings", "attention_settings",
           "evaluate_trained", "measure_trained"]
