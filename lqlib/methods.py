"""The ablation switches: a method name (``METHOD`` in the notebooks, ``method`` in the training
config) → which KD terms, with which weights and parameters, and any backbone/head change it implies.

``"none"`` is BasicNet-LR (a student trained on low-quality faces with ArcFace only); the paper's
BasicNet-HR is the teacher itself evaluated on low-quality faces. Methods can be combined with "+"
(``"logit+attention"``); a combined method merges the terms of its parts.

Every method keeps the ArcFace CE at weight 1 (the paper's Eq. 12: L = L_ArcFace + L_logit + L_att)
unless its name says otherwise: ``logit_hinton`` replaces the CE by λ·CE + (1−λ)·T²·KL, and the
label-free methods use no labels at all. :func:`effective_ce_weight` computes the total hard-label
CE weight of a method from its terms; :func:`methods_table` lists it for every method.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Method:
    kd: dict = field(default_factory=dict)          # term name → weight
    params: dict = field(default_factory=dict)      # term name → keyword arguments
    backbone_attention: str | None = None           # student/teacher attention block override
    backbone_kw: dict = field(default_factory=dict)  # e.g. A-SKD's pre-sigmoid maps
    head: str | None = None                         # margin head override
    description: str = ""
    face_content_replacement: float = 0.0           # probability per image, applied to the HR batch
    degradation: str | None = None                  # a named degradation of lqlib.degrade (none sets one today)
    teacher_center: bool = False                    # targets: teacher embeddings minus their training-set mean


METHODS: dict[str, Method] = {
    "none": Method(description="BasicNet-LR: ArcFace on low-quality faces, no distillation"),
    "logit": Method({"logit": 1.0}, {"logit": {"T": 4.0, "lam": 0.5}},
                    description="logit KD on the ArcFace logits, added to the ArcFace CE (Eq. 12): "
                                "λ·CE + (1−λ)·T²·KL, T=4, λ=0.5"),
    "logit_hinton": Method({"logit": 1.0}, {"logit": {"T": 4.0, "lam": 0.5, "replace_ce": True}},
                           description="Hinton's form: λ·CE + (1−λ)·T²·KL REPLACES the ArcFace CE (CE weight λ)"),
    "attention": Method({"attention": 5.0}, {"attention": {"reduction": "paper"}},
                        description="attention KD: Σ_blocks (ρ_c+ρ_s)/2 with ρ = 1 − cos, weight 5"),
    # centred attention KD (issue 27): the paper's cosine of two positive sigmoid maps is ≈ 1 whatever
    # they show; Pearson r is not. ρ ∈ [0, 2] is larger than the paper's ρ for the same maps, so the
    # weight (5, as `attention`) is a starting point for a choice on the validation split.
    "attention_c": Method({"attention_c": 5.0}, {"attention_c": {"reduction": "paper"}},
                          description="centred attention KD: Σ_blocks (ρ_c+ρ_s)/2 with ρ = 1 − Pearson r "
                                      "(each map centred per sample before the cosine), weight 5"),
    # --- seed methods (one module each in lqlib/losses; formulas and sources in their docstrings) ---
    "at": Method({"at": 1.0}, {"at": {"beta": 1000.0}},
                 description="AT (Zagoruyko & Komodakis 2017): β·Σ_stages mean (a_T − a_S)², "
                             "a = normalize(mean_c f²), β=1000 inside the term"),
    # A-SKD: the attention term with the A-SKD reduction. Its code's nearest down/up degradation is the
    # `askd` degradation of lqlib.degrade; the method leaves the degradation unset (the study's A-SKD
    # students used the paper's), so `degradation: askd` in the config asks for it (lqlib.config.resolve).
    "askd": Method({"attention": 5.0}, {"attention": {"reduction": "askd"}},
                   description="A-SKD (Shin et al. 2022): Σ_blocks (ρ_c+ρ_s), ρ = 1 − cos, weight 5"),
    "askd_pre": Method({"attention": 5.0}, {"attention": {"reduction": "askd"}},
                       backbone_kw={"attention_kw": {"maps": "pre"}},
                       description="A-SKD on pre-sigmoid attention maps (CBAM maps='pre'), as in its code"),
    "dkd": Method({"dkd": 1.0}, {"dkd": {"alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup_epochs": 5.0,
                                         "source": "margin"}},
                  description="DKD (Zhao et al. 2022): w·T²·(α·TCKD + β·NCKD), α=1, β=8, T=4, "
                              "linear warm-up over 5 epochs; CE from the composer"),
    "hierfeat": Method({"hierfeat": 1.0}, {"hierfeat": {}},
                       description="hierarchical feature KD: Σ_stages ‖n(conn(f_S)) − n(f_T)‖², per-sample L2 n"),
    "hkdd": Method({"dkd": 1.0, "hierfeat": 1.0},
                   {"dkd": {"alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup_epochs": 5.0, "source": "margin"},
                    "hierfeat": {}},
                   description="HKDD: DKD (weight 1) + hierarchical feature KD (weight 1)"),
    "angular": Method({"angular": 1.0}, {"angular": {"stages": True}},
                      description="angular KD (ShrinkTeaNet): Σ_stages (1 − cos) + (1 − cos) of embeddings"),
    # --- cross-architecture methods (external teachers, lqlib.teachers): embeddings only, no teacher logits ---
    # weight 5: the calibration probe's (issue 14); a student of another weight gets its own key
    "angular_emb": Method({"angular": 5.0}, {"angular": {"stages": False}},
                          description="embedding-level angular KD: 1 − cos(e_T, h(e_S)), h a linear connector "
                                      "when the sizes differ"),
    "angular_emb_c": Method({"angular": 5.0}, {"angular": {"stages": False}}, teacher_center=True,
                            description="embedding-level angular KD to CENTRED teacher targets: "
                                        "1 − cos(e_T − mean_train(e_T), h(e_S)) (cached teacher embeddings)"),
    "relational": Method({"relational": 10.0}, {"relational": {"kind": "cosine"}},
                         description="relational KD: mean off-diagonal (G_S − G_T)², G the batch cosine matrix, "
                                     "weight 10"),
    "ecacface": Method(backbone_attention="esca", head="curricularface",
                       description="ECACFace: ESCA attention blocks + CurricularFace head, no KD term"),
    # label-free KD with face-content replacement (seed 003): half of the HR faces of a batch get one
    # facial region (eyes / nose / mouth) of another face before the teacher/student split. The ratio
    # 0.5 is our choice (the paper describes the augmentation, not its rate).
    "labelfree": Method({"labelfree": 1.0}, {"labelfree": {}}, face_content_replacement=0.5,
                        description="label-free KD (Cheng & Deng 2022): 1 − cos(e_T, e_S), no labels, no CE, "
                                    "face-content replacement p=0.5"),
    "labelfree_nofcr": Method({"labelfree": 1.0}, {"labelfree": {}},
                              description="label-free embedding KD WITHOUT face-content replacement"),
}


def get_method(name: str) -> Method:
    """Look up a method; ``"a+b"`` merges the terms of ``a`` and ``b``."""
    name = name.strip()
    if name in METHODS:
        return METHODS[name]
    parts = [p.strip() for p in name.split("+")]
    if len(parts) < 2 or any(p not in METHODS for p in parts):
        near = near_methods(name)
        hint = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
        raise ValueError(f"unknown method {name!r}; {hint}choose from {sorted(METHODS)} or join them with '+'")
    kd, params, bkw = {}, {}, {}
    att = head = None
    fcr = 0.0
    for p in parts:
        m = METHODS[p]
        kd.update(m.kd)
        params.update(m.params)
        bkw.update(m.backbone_kw)
        att = m.backbone_attention or att
        head = m.head or head
        fcr = max(fcr, m.face_content_replacement)
    return Method(kd, params, att, bkw, head, description=" + ".join(parts), face_content_replacement=fcr,
                  teacher_center=any(METHODS[p].teacher_center for p in parts))


def near_methods(name: str, n: int = 3) -> list[str]:
    """Registered methods (and "+" combinations of two) spelled like ``name`` — only ever suggested in an
    error: ``logit-attention`` / ``logit_attention`` / ``logit attention`` never resolve to ``logit+attention``."""
    import difflib

    names = list(METHODS) + [f"{a}+{b}" for a in METHODS for b in METHODS if a != b]
    return difflib.get_close_matches(name.strip(), names, n=n, cutoff=0.75)


def matches_teacher_embedding(method: Method | str) -> bool:
    """Whether a student of ``method`` is trained to match its teacher's embedding itself (a KD term with
    ``matches_embedding``: angular, angular_emb, labelfree), so that cos(teacher, student) is a meaningful number;
    False for the rest, and for centred targets (``teacher_center``: the student matches e_T minus a mean)."""
    from .losses import KD_TERMS

    method = get_method(method) if isinstance(method, str) else method
    return not method.teacher_center and any(KD_TERMS[t].matches_embedding for t in method.kd)


def list_methods() -> list[str]:
    return sorted(METHODS)


def build_composer(method: Method, student=None, teacher=None, kd_weights: dict | None = None,
                   kd_params: dict | None = None):
    """The :class:`~lqlib.losses.LossComposer` of a method: its terms with the method's parameters
    (overridden by ``kd_params``) and weights (overridden by ``kd_weights``)."""
    from .losses import LossComposer, build_kd_term

    kd_params = dict(kd_params or {})
    weights = term_weights(method, kd_weights)
    terms = {name: build_kd_term(name, student=student, teacher=teacher,
                                 **{**method.params.get(name, {}), **kd_params.get(name, {})})
             for name in method.kd}
    return LossComposer(terms, weights)


def term_weights(method: Method | str, kd_weights: dict | None = None) -> dict[str, float]:
    """``{term: weight}`` of a method's KD terms: the registry's weights overridden by ``kd_weights`` (a run's
    ``KD_WEIGHTS``); the total loss is the ArcFace CE (weight 1) plus these weights times the logged terms."""
    method = get_method(method) if isinstance(method, str) else method
    kd_weights = dict(kd_weights or {})
    extra = set(kd_weights) - set(method.kd)
    if extra:
        raise ValueError(f"kd_weights names terms the method does not use: {sorted(extra)} (it uses {sorted(method.kd)})")
    return {name: float(kd_weights.get(name, w)) for name, w in method.kd.items()}


def effective_ce_weight(name: str, kd_weights: dict | None = None, kd_params: dict | None = None) -> float:
    """Total hard-label CE weight of a method (base ArcFace CE + the CE inside its terms)."""
    from .models import build_backbone

    tiny = build_backbone("ir_cbam_tiny")  # shapes for connector-owning terms; values do not matter
    return build_composer(get_method(name), tiny, tiny, kd_weights, kd_params).effective_ce_weight


def methods_table() -> str:
    """Markdown table of every method: its KD terms with weights, effective CE weight, description."""
    lines = ["| method | KD terms (weight) | CE weight | what |", "|---|---|---:|---|"]
    for name in METHODS:
        m = METHODS[name]
        terms = ", ".join(f"{t} ({w:g})" for t, w in m.kd.items()) or "—"
        lines.append(f"| `{name}` | {terms} | {effective_ce_weight(name):g} | {m.description} |")
    return "\n".join(lines) + "\n"
