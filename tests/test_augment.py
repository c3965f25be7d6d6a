"""Face-content replacement: region geometry, copying, determinism, feathering."""
from __future__ import annotations

import pytest
import torch

from lqlib.augment import REGIONS, face_content_replacement, region_boxes, region_masks, template_regions


def batch(b=5, size=112, seed=0, dtype=torch.uint8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype)


def test_template_boxes_hand_computed():
    # d = 73.5318 − 38.2946 = 35.2372; eye line y_e = (51.6963 + 51.5014)/2 = 51.59885
    # eyes : y ∈ [y_e − .35d, y_e + .25d] = [39.266, 60.408], x ∈ [38.2946 − 17.6186, 73.5318 + 17.6186]
    #        = [20.676, 91.150] → rounded (39, 60, 21, 91)
    # nose : y ∈ [60.408, 71.7366 + 7.0474 = 78.784], x ∈ [56.0252 ∓ 10.5712] = [45.454, 66.596] → (60, 79, 45, 67)
    # mouth: y_m = 92.2848; y ∈ [92.2848 ∓ 10.5712] = [81.714, 102.856],
    #        x ∈ [41.5493 − 8.8093, 70.7299 + 8.8093] = [32.740, 79.539] → (82, 103, 33, 80)
    t = template_regions()
    assert t["eyes"][0] == pytest.approx(39.266, abs=1e-3) and t["nose"][1] == pytest.approx(78.784, abs=1e-3)
    assert region_boxes() == {"eyes": (39, 60, 21, 91), "nose": (60, 79, 45, 67), "mouth": (82, 103, 33, 80)}
    # scaled for other sizes: 224 doubles the template coordinates
    assert region_boxes(224, 224)["eyes"] == (79, 121, 41, 182)
    m = region_masks(112, 112)
    assert m.shape == (3, 1, 112, 112)
    assert m[0].sum() == (60 - 39) * (91 - 21)
    assert (m.sum(0) <= 1).all()  # regions do not overlap


def test_region_pixels_come_from_partner_rest_unchanged():
    x = batch()
    g = torch.Generator().manual_seed(3)
    y, ch = face_content_replacement(x, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype
    boxes = region_boxes()
    choices = ch.tolist()
    assert all(c is not None for c in choices)  # p = 1
    for i, (j, r) in enumerate(choices):
        assert j != i and r in REGIONS
        y0, y1, x0, x1 = boxes[r]
        assert torch.equal(y[i, :, y0:y1, x0:x1], x[j, :, y0:y1, x0:x1])
        inside = torch.zeros(112, 112, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(y[i][:, ~inside], x[i][:, ~inside])
    assert not torch.equal(y, x)


def test_deterministic_with_generator_and_input_untouched():
    x = batch()
    x0 = x.clone()
    a, ca = face_content_replacement(x, generator=torch.Generator().manual_seed(7), p=0.6)
    b, cb = face_content_replacement(x, generator=torch.Generator().manual_seed(7), p=0.6)
    assert torch.equal(a, b) and ca.tolist() == cb.tolist()
    assert torch.equal(x, x0)
    c, cc = face_content_replacement(x, generator=torch.Generator().manual_seed(8), p=0.6)
    assert cc.tolist() != ca.tolist() and not torch.equal(a, c)  # another seed, other choices


def test_probability_and_trivial_batches():
    x = batch()
    y, ch = face_content_replacement(x, generator=torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(y, x) and ch.tolist() == [None] * 5
    one = batch(1)
    y1, c1 = face_content_replacement(one, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y1, one) and c1.tolist() == [None]
    # p=0.5 over many images: some replaced, some not
    xs = batch(64, size=32)
    _, cs = face_content_replacement(xs, generator=torch.Generator().manual_seed(1), p=0.5)
    n = sum(c is not None for c in cs.tolist())
    assert 16 < n < 48
    with pytest.raises(ValueError):
        face_content_replacement(x, p=1.5)
    with pytest.raises(ValueError):
        face_content_replacement(x, regions=("ears",))


def test_region_subset_and_float_input_and_small_size():
    x = batch(4, size=56, dtype=torch.float32)
    y, ch = face_content_replacement(x, generator=torch.Generator().manual_seed(2), regions=("mouth",))
    assert y.dtype == torch.float32
    y0, y1, x0, x1 = region_boxes(56, 56)["mouth"]
    for i, (j, r) in enumerate(ch.tolist()):
        assert r == "mouth"
        assert torch.equal(y[i, :, y0:y1, x0:x1], x[j, :, y0:y1, x0:x1])


def test_feathered_edges():
    # two constant faces: 0 and 200; feather 4 px → the border row of the box is blended, the
    # centre is the partner's value, outside is untouched; dtype stays uint8.
    x = torch.stack([torch.zeros(3, 112, 112), torch.full((3, 112, 112), 200.0)]).to(torch.uint8)
    y, ch = face_content_replacement(x, generator=torch.Generator().manual_seed(0), regions=("eyes",), feather=4)
    assert y.dtype == torch.uint8 and ch.tolist() == [(1, "eyes"), (0, "eyes")]
    y0, y1, x0, x1 = region_boxes()["eyes"]
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    assert int(y[0, 0, cy, cx]) == 200
    # first row of the box: pixel-centre distance 0.5 to the edge → weight 0.5/4 → 200·0.125 = 25
    assert int(y[0, 0, y0, cx]) == 25
    assert int(y[0, 0, y0 - 1, cx]) == 0 and int(y[1, 0, y0 - 1, cx]) == 200
