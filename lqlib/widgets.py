"""The degradation explorer: how attention and similarity change as a face loses resolution.

The logic is a plain class, :class:`DegradationExplorer`, testable without a browser:
``render(scale, blur_sigma, interpolation)`` degrades the face(s) with :func:`lqlib.degrade.degrade`, runs
the student on the degraded copy and returns an :class:`ExplorerState` (degraded image, teacher
maps on HR, student maps on LR, similarities, figure). Renders are cached per control setting.

:meth:`DegradationExplorer.build_widget` wraps it in ipywidgets (thin wiring only)::

    explorer = DegradationExplorer(teacher, student, faces[:2])
    explorer.build_widget()          # last expression of a JupyterLab cell shows it

Controls: a continuous scale slider (×1–×16, step 0.25, renders when released; it opens at
``build_widget(scale=...)``), buttons for the paper's ×2/×4/×8 (and ×1), a blur σ slider (0 = no blur … 3)
and the interpolation. After ``build_widget()`` the controls are attributes (``scale_slider``,
``blur_slider``, ``interpolation_dropdown``, ``scale_buttons``, ``output``, ``readout``) and ``state`` is the
shown render.

What the read-out says:

* for a pair, the student's score of the two degraded faces and — given ``thresholds`` (03's mean fold
  threshold per evaluated scale, :func:`lqlib.study_eval.verification_thresholds`) — the verdict of 03's rule
  (InsightFace protocol: flip-summed, L2-normalised embeddings, same person ⇔ squared distance < threshold) at
  the nearest scale 03 evaluated, next to the truth (``same_person``);
* ``cos(teacher HR, student LR)`` only with ``embedding_readout=True``: for students trained to match the
  teacher's embedding (:func:`lqlib.methods.matches_teacher_embedding`); for any other student the two
  embedding spaces are unrelated and the number means nothing.
"""
from __future__ import annotations

import base64
import io
import textwrap
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from .degrade import INTERPOLATIONS, degrade
from .evaluation import embed, get_protocol
from .evaluation.tables import scale_label
from .images import as_batch
from .models.interface import common_stages
from .viz import draw_attention, embed_with_maps

#: the paper's evaluation scales, offered as buttons (×1 = the HR face).
QUICK_SCALES = (1, 2, 4, 8)  # the scale buttons next to the slider


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float(), b.float(), dim=-1))


def _same(truth: bool) -> str:
    return "the same person" if truth else "two people"


@dataclass(frozen=True)
class PairVerdict:
    """03's decision rule applied to the explorer's pair: ``distance`` (squared L2 of the flip-summed, normalised
    embeddings, as 03 scores), ``threshold`` (03's mean fold threshold at ``threshold_scale``, the evaluated
    scale nearest the shown one), ``judged_same`` (distance < threshold) and ``same_person`` (the truth, None when
    unknown)."""

    distance: float
    threshold: float
    threshold_scale: float
    judged_same: bool
    same_person: bool | None

    def text(self) -> str:
        s = (f"judged {_same(self.judged_same)} (distance {self.distance:.3f} "
             f"{'<' if self.judged_same else '≥'} threshold {self.threshold:.3f}, 03's folds at "
             f"{scale_label(self.threshold_scale)})")
        if self.same_person is not None:
            s += f"; truth: {_same(self.same_person)} — {'right' if self.judged_same == self.same_person else 'wrong'}"
        return s


@dataclass
class ExplorerState:
    """One render of the explorer.

    ``degraded``: uint8 (N, 3, H, W) faces after degradation; ``teacher_maps`` / ``student_maps``:
    (S, N, H, W) spatial attention per stage (teacher on HR, student on the degraded faces), for the
    stages both models have (``DegradationExplorer.stages``);
    ``face_similarities``: per face cos(teacher(HR), student(degraded)); ``similarity``: their mean;
    ``pair_similarity``: for a pair, cos(student(degraded A), student(degraded B)) (both probes at
    the chosen quality), and ``teacher_pair_similarity`` the teacher's HR score of the same pair;
    ``verdict``: 03's rule on the pair (None without thresholds or for one face); ``embedding_readout``: whether
    :meth:`summary` shows ``similarity`` (students trained to match the teacher's embedding only).
    """

    scale: float
    blur_sigma: float
    interpolation: str
    degraded: torch.Tensor
    teacher_maps: np.ndarray
    student_maps: np.ndarray
    face_similarities: tuple[float, ...]
    similarity: float
    pair_similarity: float | None
    teacher_pair_similarity: float | None
    figure: Figure = field(repr=False)
    verdict: PairVerdict | None = None
    embedding_readout: bool = False
    same_person: bool | None = None

    def summary(self) -> str:
        """One line: the setting, the pair's scores and 03's verdict on it (the teacher–student cosine only
        where it means something)."""
        parts = []
        if self.embedding_readout:
            parts.append(f"cos(teacher HR, student LR) = {self.similarity:.3f}")
        if self.pair_similarity is not None:
            parts.append(f"student pair score = {self.pair_similarity:.3f}"
                         f" (teacher HR pair: {self.teacher_pair_similarity:.3f})")
        if self.verdict is not None:
            parts.append(self.verdict.text())
        elif self.same_person is not None:
            parts.append(f"truth: {_same(self.same_person)} (no threshold: 03 has not evaluated this student)")
        return f"{scale_label(self.scale)} {self.interpolation}, blur σ={self.blur_sigma:g}: " + " · ".join(parts)

    @cached_property
    def png(self) -> bytes:
        """The figure as PNG bytes (rendered once)."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


class DegradationExplorer:
    """Teacher on the HR face(s) vs student on a degraded copy, for any scale / blur / interpolation.

    Args:
        teacher, student: backbones with spatial attention (moved to ``device``; may be the same
            model, which makes the similarity exactly 1 at ×1).
        images_uint8: one face (3, H, W) / (1, 3, H, W) or a pair (2, 3, H, W), uint8 RGB.
        degradation: the named degradation (:func:`lqlib.degrade.degrade`) supplying the blur kernel size.
        cache_size: how many renders (figure included) are kept.
        same_person: for a pair, whether the two faces are one person (the pair list's label).
        thresholds: ``{scale: threshold}`` of the student from 03 (squared distances, InsightFace protocol), for
            the verdict on the pair; empty/None: no verdict.
        embedding_readout: show ``cos(teacher HR, student LR)`` (only meaningful for students trained to match
            the teacher's embedding).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, images_uint8, device: str | torch.device = "cpu",
                 degradation: str = "paper", cache_size: int = 16, *, same_person: bool | None = None,
                 thresholds: dict[float, float] | None = None, embedding_readout: bool = False):
        self.hr = as_batch(images_uint8).to(torch.uint8)
        if self.hr.shape[0] not in (1, 2):
            raise ValueError(f"give one face or a pair of faces, got {self.hr.shape[0]}")
        if (same_person is not None or thresholds) and self.hr.shape[0] != 2:
            raise ValueError("same_person and thresholds are about a pair: give two faces")
        self.same_person = None if same_person is None else bool(same_person)
        self.thresholds = {float(k): float(v) for k, v in (thresholds or {}).items()}
        self.embedding_readout = bool(embedding_readout)
        self.device = torch.device(device)
        self.teacher = teacher.to(self.device)
        self.student = student.to(self.device)
        self.degradation = degradation
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, ExplorerState] = OrderedDict()
        self.stages, t_rows, self._student_rows = common_stages(self.teacher, self.student)
        # the teacher only ever sees the HR faces: one forward pass for the explorer's lifetime
        self._teacher_emb, t_maps = embed_with_maps(self.teacher, self.hr)
        self._teacher_maps = t_maps[t_rows]
        self.state: ExplorerState | None = None

    @property
    def is_pair(self) -> bool:
        return self.hr.shape[0] == 2

    def pair_verdict(self, lq: torch.Tensor, scale: float) -> PairVerdict | None:
        """03's rule on the degraded pair ``lq``: the student's flip-summed embeddings scored as 03 scores them,
        against 03's threshold at the evaluated scale nearest ``scale``; None without thresholds."""
        if not self.thresholds or not self.is_pair:
            return None
        t_scale = min(self.thresholds, key=lambda s: (abs(s - scale), s))
        e, ef = embed(self.student, lq, batch_size=2, flip=True, compile=False)
        proto = get_protocol("insightface")
        dist = float(proto.score(e[:1], e[1:], np.zeros(1), ef[:1], ef[1:]).scores[0])
        thr = self.thresholds[t_scale]
        return PairVerdict(dist, thr, t_scale, dist < thr, self.same_person)

    def render(self, scale: float = 1.0, blur_sigma: float = 1.0, interpolation: str = "bicubic") -> ExplorerState:
        """Degrade (``blur_sigma`` ≤ 0: no blur), run the student, build the figure (cached per setting)."""
        key = (float(scale), max(0.0, float(blur_sigma)), str(interpolation))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        scale, sigma, interpolation = key
        lq = degrade(self.hr, scale, degradation=self.degradation, interpolation=interpolation, blur_sigma=sigma if sigma > 0 else None)
        s_emb, s_maps = embed_with_maps(self.student, lq)
        s_maps = s_maps[self._student_rows]
        per_face = tuple(_cos(t, s) for t, s in zip(self._teacher_emb, s_emb))
        state = ExplorerState(
            scale=scale, blur_sigma=sigma, interpolation=interpolation, degraded=lq, teacher_maps=self._teacher_maps,
            student_maps=s_maps, face_similarities=per_face, similarity=float(np.mean(per_face)),
            pair_similarity=_cos(s_emb[0], s_emb[1]) if self.is_pair else None,
            teacher_pair_similarity=_cos(self._teacher_emb[0], self._teacher_emb[1]) if self.is_pair else None,
            figure=draw_attention(self.hr, lq, self._teacher_maps, s_maps, self.stages, pyplot=False),
            verdict=self.pair_verdict(lq, scale), embedding_readout=self.embedding_readout,
            same_person=self.same_person,
        )
        state.figure.suptitle("\n".join(textwrap.wrap(state.summary(), 160)), fontsize="small")
        self._cache[key] = state
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return state

    # ------------------------------------------------------------------------- ipywidgets wiring

    def build_widget(self, scale: float = 1.0):
        """The explorer as an ``ipywidgets.VBox`` (controls, readout, figure), opening at ``scale``."""
        import ipywidgets as w

        if not 1.0 <= float(scale) <= 16.0:
            raise ValueError(f"the explorer's scale is 1–16, got {scale!r}")
        self.scale_slider = w.FloatSlider(value=float(scale), min=1.0, max=16.0, step=0.25, description="scale ×",
                                          continuous_update=False, readout_format=".2f")
        self.scale_buttons = {s: w.Button(description=f"HR {scale_label(s)}" if s == 1 else scale_label(s),
                                           layout=w.Layout(width="70px"))
                               for s in QUICK_SCALES}
        self.blur_slider = w.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.1, description="blur σ",
                                         continuous_update=False, readout_format=".1f")
        self.interpolation_dropdown = w.Dropdown(options=list(INTERPOLATIONS), value="bicubic",
                                                description="interpolation")
        self.readout = w.HTML()
        self.output = w.Output()
        for s, button in self.scale_buttons.items():
            button.on_click(lambda _b, s=s: setattr(self.scale_slider, "value", float(s)))
        for control in (self.scale_slider, self.blur_slider, self.interpolation_dropdown):
            control.observe(self._update, names="value")
        self.state = None  # a fresh Output: draw even if the setting was rendered before
        self._update()
        return w.VBox([
            w.HBox([self.scale_slider, *self.scale_buttons.values()]),
            w.HBox([self.blur_slider, self.interpolation_dropdown]),
            self.readout,
            self.output,
        ])

    @property
    def slider(self):
        """Alias of ``scale_slider``."""
        return self.scale_slider

    def _update(self, _change=None) -> None:
        state = self.render(self.scale_slider.value, self.blur_slider.value, self.interpolation_dropdown.value)
        if state is self.state:
            return
        self.state = state
        self.readout.value = f"<code>{state.summary()}</code>"
        # one assignment of the output list: no flicker, and no kernel needed (works in tests)
        self.output.outputs = ({
            "output_type": "display_data",
            "data": {"image/png": base64.b64encode(state.png).decode("ascii"), "text/plain": state.summary()},
            "metadata": {},
        },)


__all__ = ["DegradationExplorer", "ExplorerState", "PairVerdict", "QUICK_SCALES"]
