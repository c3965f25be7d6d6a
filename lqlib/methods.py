"""The ablation switches: a method name (``KD_MODE`` in the notebooks, ``method`` in the training
config) → which KD terms, with which weights and parameters, and any backbone/head change it implies.

``"none"`` is BasicNet-LR (a student trained on low-quality faces with ArcFace only); the paper's
BasicNet-HR is the teacher itself evaluated on low-quality faces. Modes can be combined with "+"
(``"logit+attention"``); a combined mode merges the terms of its parts.
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


METHODS: dict[str, Method] = {
    "none": Method(description="BasicNet-LR: ArcFace on low-quality faces, no distillation"),
    "logit": Method({"logit": 1.0}, {"logit": {"T": 4.0, "lam": 0.5}},
                    description="logit KD on the ArcFace logits: λ·CE + (1−λ)·T²·KL, T=4, λ=0.5"),
    "attention": Method({"attention": 5.0}, {"attention": {"reduction": "paper"}},
                        description="attention KD: Σ_blocks (ρ_c+ρ_s)/2 with ρ = 1 − cos, weight 5"),
    # --- seed methods (one module each in lqlib/losses; formulas and sources in their docstrings) ---
    "at": Method({"at": 1.0}, {"at": {"beta": 1000.0}},
                 description="AT (Zagoruyko & Komodakis 2017): β·Σ_stages mean (a_T − a_S)², "
                             "a = normalize(mean_c f²), β=1000 inside the term"),
    # A-SKD: the attention term with the A-SKD reduction; its nearest down/up degradation is the
    # `askd` preset of lqlib.degrade, chosen by the training config (not by the method).
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
    "angular_emb": Method({"angular": 1.0}, {"angular": {"stages": False}},
                          description="embedding-level angular KD: 1 − cos(e_T, h(e_S)), h a linear connector "
                                      "when the sizes differ"),
    "relational": Method({"relational": 10.0}, {"relational": {"kind": "cosine"}},
                         description="relational KD: mean off-diagonal (G_S − G_T)², G the batch cosine matrix, "
                                     "weight 10"),
    "ecacface": Method(backbone_attention="esca", head="curricularface",
                       description="ECACFace: ESCA attention blocks + CurricularFace head, no KD term"),
    "labelfree": Method({"labelfree": 1.0}, {"labelfree": {}},
                        description="label-free KD (Cheng & Deng 2022): 1 − cos(e_T, e_S), no labels, no CE"),
}


def get_method(name: str) -> Method:
    """Look up a method; ``"a+b"`` merges the terms of ``a`` and ``b``."""
    name = name.strip()
    if name in METHODS:
        return METHODS[name]
    parts = [p.strip() for p in name.split("+")]
    if len(parts) < 2 or any(p not in METHODS for p in parts):
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)} or join them with '+'")
    kd, params, bkw = {}, {}, {}
    att = head = None
    for p in parts:
        m = METHODS[p]
        kd.update(m.kd)
        params.update(m.params)
        bkw.update(m.backbone_kw)
        att = m.backbone_attention or att
        head = m.head or head
    return Method(kd, params, att, bkw, head, description=" + ".join(parts))


def list_methods() -> list[str]:
    return sorted(METHODS)
