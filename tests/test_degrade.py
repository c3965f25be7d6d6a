import math

import pytest
import torch

from lqlib.degrade import DEGRADATIONS, degrade, high_frequency_energy


def _faces(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 112, 112, generator=g) * 255).to(torch.uint8)


def test_scale_one_is_identity():
    x = _faces()
    assert torch.equal(degrade(x, 1), x)
    xf = x.float() / 255
    assert torch.equal(degrade(xf, 1.0), xf)


def test_x8_removes_high_frequencies():
    x = _faces()
    e1 = high_frequency_energy(x)
    e8 = high_frequency_energy(degrade(x, 8))
    e2 = high_frequency_energy(degrade(x, 2))
    assert (e8 < 0.2 * e1).all(), (e1, e8)
    assert (e8 < e2).all() and (e2 < e1).all()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shape_dtype_range_preserved(dtype):
    x = _faces()
    x = x if dtype == torch.uint8 else x.float() / 255
    y = degrade(x, 4)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= float(x.min()) - 1e-6 and float(y.max()) <= float(x.max()) + 1e-6
    y3 = degrade(x[0], 4)
    assert y3.shape == x[0].shape


def test_generator_determinism_for_random_choices():
    x = _faces(8)
    a = degrade(x, [2, 4, 8], blur_sigma=(0.1, 2.0), generator=torch.Generator().manual_seed(3))
    b = degrade(x, [2, 4, 8], blur_sigma=(0.1, 2.0), generator=torch.Generator().manual_seed(3))
    c = degrade(x, [2, 4, 8], blur_sigma=(0.1, 2.0), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_per_sample_scales_match_fixed_scale():
    x = _faces(6)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(3, (6,), generator=torch.Generator().manual_seed(0))
    mixed = degrade(x, [2, 4, 8], generator=g)
    for i, k in enumerate(idx.tolist()):
        assert torch.equal(mixed[i], degrade(x[i:i + 1], [2, 4, 8][k])[0])


@pytest.mark.parametrize("bad", [0, 0.5, -2, float("nan"), float("inf"), "x", None])
def test_bad_scale_raises(bad):
    with pytest.raises(ValueError, match="scale"):
        degrade(_faces(1), bad)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="interpolation"):
        degrade(_faces(1), 2, interpolation="lanczos")
    with pytest.raises(ValueError, match="degradation"):
        degrade(_faces(1), 2, degradation="nope")
    with pytest.raises(ValueError, match="blur_kernel"):
        degrade(_faces(1), 2, blur_kernel=4)


def test_degradations_and_interpolations_differ():
    x = _faces(2)
    assert set(DEGRADATIONS) >= {"paper", "askd"}
    near = degrade(x, 4, interpolation="nearest", blur_sigma=None)
    bic = degrade(x, 4, interpolation="bicubic", blur_sigma=None)
    assert not torch.equal(near, bic)
    # blur strength: a larger sigma removes more energy
    assert (high_frequency_energy(degrade(x, 2, blur_sigma=2.0)) < high_frequency_energy(degrade(x, 2, blur_sigma=None))).all()


def test_non_integer_scale():
    y = degrade(_faces(1), 3.5)
    assert y.shape == (1, 3, 112, 112)


def _by_hand(x, size, interpolation, blur, blur_first):
    """Reference pipeline written out with torch/torchvision calls (floats, no rounding)."""
    import torch.nn.functional as F
    import torchvision.transforms.v2.functional as TF

    kw = {} if interpolation == "nearest" else {"align_corners": False}
    y = F.interpolate(x, size=size, mode=interpolation, antialias=interpolation != "nearest", **kw)
    if blur_first:
        y = TF.gaussian_blur(y, kernel_size=[5, 5], sigma=list(blur))
    y = F.interpolate(y, size=x.shape[-2:], mode=interpolation, **kw)
    if not blur_first:
        y = TF.gaussian_blur(y, kernel_size=[5, 5], sigma=list(blur))
    return y


def test_paper_order_is_down_blur_up():
    """The paper's degradation blurs at the LOW resolution: down → blur → up. Moving the blur after
    the upsampling changes the result a lot (a 5×5 σ=1 blur at 14 px spans ~half the face)."""
    x = _faces(2).float()
    got = degrade(x, 8)
    right = _by_hand(x, (14, 14), "bicubic", (1.0, 1.0), blur_first=True).clamp(0, 255)
    wrong = _by_hand(x, (14, 14), "bicubic", (1.0, 1.0), blur_first=False).clamp(0, 255)
    assert torch.allclose(got, right, atol=1e-3)
    assert (got - wrong).abs().mean() > 5 * (got - right).abs().mean() + 1.0


def test_askd_degradation_matches_its_code():
    """A-SKD's data code: nearest ↓, nearest ↑ to 112, then a fixed 5×5 Gaussian σx=0.1, σy=2.0
    (reflect padding) at 112 px — anisotropic and deterministic (no random σ)."""
    x = _faces(2).float()
    got = degrade(x, 4, degradation="askd")
    want = _by_hand(x, (28, 28), "nearest", (0.1, 2.0), blur_first=False).clamp(0, 255)
    assert torch.allclose(got, want, atol=1e-3)
    assert torch.equal(got, degrade(x, 4, degradation="askd", generator=torch.Generator().manual_seed(9)))
    # anisotropic: σy = 2 smooths along y, σx = 0.1 leaves x alone — stripes that vary along x
    # (constant columns) pass untouched, stripes that vary along y are smoothed
    bars = ((torch.arange(112) // 4) % 2 * 255.0).expand(1, 3, 112, 112)
    assert torch.allclose(degrade(bars, 4, degradation="askd"), bars, atol=1e-3)
    rows = bars.transpose(-1, -2)
    assert (degrade(rows, 4, degradation="askd") - rows).abs().mean() > 20


def test_scale_that_leaves_too_few_pixels_names_the_largest_valid_scale():
    # the paper preset blurs 5×5 at the low resolution: it needs round(112 / scale) >= 3, i.e. scale < 44.8
    with pytest.raises(ValueError, match=r"largest valid scale is 44\.79$"):
        degrade(_faces(1), 1e6)
    with pytest.raises(ValueError, match="largest valid scale"):
        degrade(_faces(2), [2, 64])
    for s in (37, 38, 44, 44.79):  # the old message said 37.33; every scale up to the bound works
        assert degrade(_faces(1), s).shape == (1, 3, 112, 112)
    with pytest.raises(ValueError, match=r"scale 44\.8 leaves 2×2 pixels.*largest valid scale is 44\.79"):
        degrade(_faces(1), 44.8)  # 112 / 44.8 = 2.5 rounds to 2
    assert degrade(_faces(1), 100, blur_sigma=None).shape == (1, 3, 112, 112)  # no blur: 1 px is enough
