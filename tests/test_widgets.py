"""lqlib.widgets: the degradation explorer, driven without a browser."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402

import ipywidgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lqlib.models import build_backbone  # noqa: E402
from lqlib.widgets import DegradationExplorer, ExplorerState  # noqa: E402


@pytest.fixture(scope="module")
def pair(faces) -> torch.Tensor:
    """Two smooth synthetic "faces" (conftest): a low-frequency colour pattern plus a 4-px texture, 112×112."""
    return faces


@pytest.fixture(scope="module")
def explorer(tiny, pair) -> DegradationExplorer:
    # teacher == student (the same weights): a random tiny network need not lose similarity
    # monotonically with scale, but with identical networks the similarity of the HR face with its
    # ×1 "degradation" (the identity) is exactly 1, the maximum, so any real degradation must lower it.
    return DegradationExplorer(tiny, tiny, pair)


def test_render_is_plain_python(explorer, pair):
    s1 = explorer.render(scale=1)
    assert isinstance(s1, ExplorerState)
    assert torch.equal(s1.degraded, pair) and s1.degraded.dtype == torch.uint8
    assert s1.similarity == pytest.approx(1.0, abs=1e-5)
    assert s1.teacher_maps.shape == s1.student_maps.shape == (4, 2, 112, 112)
    np.testing.assert_allclose(s1.student_maps, s1.teacher_maps, atol=1e-5)
    assert s1.pair_similarity == pytest.approx(s1.teacher_pair_similarity, abs=1e-5)
    assert explorer.render(scale=1) is s1, "renders are cached per setting"
    s8 = explorer.render(scale=8, blur_sigma=0)
    assert s8 is not s1 and s8.similarity < s1.similarity
    assert s8.png.startswith(b"\x89PNG")


def test_widget_scale_slider(explorer, pair):
    box = explorer.build_widget()
    assert isinstance(box, ipywidgets.VBox)
    assert explorer.slider is explorer.scale_slider
    assert (explorer.scale_slider.min, explorer.scale_slider.max, explorer.scale_slider.step) == (1.0, 16.0, 0.25)
    hr_state = explorer.state
    assert hr_state.scale == 1.0 and hr_state.similarity == pytest.approx(1.0, abs=1e-5)
    assert len(explorer.output.outputs) == 1

    explorer.scale_slider.value = 8
    lr_state = explorer.state
    assert lr_state is not hr_state and lr_state.scale == 8.0
    assert not torch.equal(lr_state.degraded, hr_state.degraded)  # the shown face changed
    assert lr_state.similarity < hr_state.similarity             # and the similarity went down
    png = base64.b64decode(explorer.output.outputs[0]["data"]["image/png"])
    assert png == lr_state.png                                    # the output shows the new figure
    assert "×8" in explorer.readout.value

    explorer.scale_slider.value = 1
    assert explorer.state is hr_state, "going back reuses the cached render"


def test_widget_scale_buttons_blur_and_interpolation(explorer):
    explorer.build_widget()
    assert len(explorer.output.outputs) == 1, "a rebuilt widget draws its figure at once"
    assert sorted(explorer.scale_buttons) == [1, 2, 4, 8]
    explorer.scale_buttons[4].click()
    assert explorer.scale_slider.value == 4.0 and explorer.state.scale == 4.0
    bicubic = explorer.state

    assert list(explorer.interpolation_dropdown.options) == ["bicubic", "bilinear", "nearest"]
    explorer.interpolation_dropdown.value = "nearest"
    nearest = explorer.state
    assert nearest.interpolation == "nearest" and nearest.scale == 4.0
    assert not torch.equal(nearest.degraded, bicubic.degraded)

    explorer.blur_slider.value = 0.0
    assert explorer.state.blur_sigma == 0.0
    assert not torch.equal(explorer.state.degraded, nearest.degraded)

    explorer.scale_buttons[2].click()
    assert explorer.state.scale == 2.0 and explorer.state.interpolation == "nearest"


def test_one_face_and_validation(pair):
    torch.manual_seed(0)
    model = build_backbone("ir_cbam_tiny").eval()
    one = DegradationExplorer(model, model, pair[0])
    s = one.render(scale=4)
    assert s.degraded.shape == (1, 3, 112, 112) and s.pair_similarity is None
    assert "pair" not in s.summary()
    with pytest.raises(ValueError, match="pair"):
        DegradationExplorer(model, model, torch.cat([pair, pair]))


def _insightface_distance(model, pair) -> float:
    """03's score of a pair, computed here from scratch: l2n(e(img) + e(flip)) of each face, squared L2."""
    from lqlib.images import normalize

    with torch.no_grad():
        x = normalize(pair)
        e = torch.nn.functional.normalize(model.eval()(x) + model(x.flip(-1)), dim=1)
    return float(((e[0] - e[1]) ** 2).sum())


def test_the_widget_opens_at_the_given_scale(tiny, pair):
    ex = DegradationExplorer(tiny, tiny, pair)
    ex.build_widget(scale=8.0)
    assert ex.scale_slider.value == 8.0 and ex.state.scale == 8.0
    assert ex.readout.value.startswith("<code>×8 ")
    with pytest.raises(ValueError, match="1–16"):
        ex.build_widget(scale=32)


def test_cos_teacher_student_only_where_the_student_matches_the_teachers_embedding(tiny, pair):
    plain = DegradationExplorer(tiny, tiny, pair).render(scale=4)
    assert "cos(teacher HR" not in plain.summary() and "student pair score" in plain.summary()
    matched = DegradationExplorer(tiny, tiny, pair, embedding_readout=True).render(scale=4)
    assert f"cos(teacher HR, student LR) = {matched.similarity:.3f}" in matched.summary()


def test_the_pair_is_judged_by_03s_threshold_at_the_nearest_evaluated_scale(tiny, pair):
    from lqlib.degrade import degrade

    d1 = _insightface_distance(tiny, pair)
    d8 = _insightface_distance(tiny, degrade(pair, 8.0))
    # thresholds between which the verdict flips: same at ×1 (d1 < t1), different at ×8 (d8 ≥ t8)
    assert abs(d1 - d8) > 0.05
    thr = {1.0: d1 + 0.02, 8.0: d8 - 0.02}
    ex = DegradationExplorer(tiny, tiny, pair, same_person=False, thresholds=thr)
    v1 = ex.render(scale=1).verdict
    assert v1.distance == pytest.approx(d1, abs=2e-3)  # bf16 where the CPU has it, as 03
    assert v1.judged_same and v1.threshold_scale == 1.0
    assert "judged the same person" in ex.render(scale=1).summary() and "truth: two people — wrong" in v1.text()
    v8 = ex.render(scale=8).verdict
    assert v8.distance == pytest.approx(d8, abs=2e-3) and not v8.judged_same
    assert "two people" in v8.text() and "— right" in v8.text() and "03's folds at ×8" in v8.text()
    assert ex.render(scale=6).verdict.threshold_scale == 8.0  # the nearest scale 03 evaluated
    assert ex.render(scale=3).verdict.threshold_scale == 1.0
    ex.build_widget(scale=8)
    ex.scale_slider.value = 1.0
    assert "judged the same person" in ex.readout.value  # the read-out follows the slider


def test_without_thresholds_the_truth_is_still_said(tiny, pair):
    s = DegradationExplorer(tiny, tiny, pair, same_person=True).render(scale=2)
    assert s.verdict is None and "truth: the same person (no threshold" in s.summary()
    with pytest.raises(ValueError, match="pair"):
        DegradationExplorer(tiny, tiny, pair[:1], same_person=True)
