import math

import pytest
import torch

from lqlib.degrade import PRESETS, degrade, high_frequency_energy


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
    a = degrade(x, [2, 4, 8], preset="askd", generator=torch.Generator().manual_seed(3))
    b = degrade(x, [2, 4, 8], preset="askd", generator=torch.Generator().manual_seed(3))
    c = degrade(x, [2, 4, 8], preset="askd", generator=torch.Generator().manual_seed(4))
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
    with pytest.raises(ValueError, match="mode"):
        degrade(_faces(1), 2, mode="lanczos")
    with pytest.raises(ValueError, match="preset"):
        degrade(_faces(1), 2, preset="nope")
    with pytest.raises(ValueError, match="blur_kernel"):
        degrade(_faces(1), 2, blur_kernel=4)


def test_presets_and_modes_differ():
    x = _faces(2)
    assert set(PRESETS) >= {"paper", "askd"}
    near = degrade(x, 4, mode="nearest", blur_sigma=None)
    bic = degrade(x, 4, mode="bicubic", blur_sigma=None)
    assert not torch.equal(near, bic)
    # blur strength: a larger sigma removes more energy
    assert (high_frequency_energy(degrade(x, 2, blur_sigma=2.0)) < high_frequency_energy(degrade(x, 2, blur_sigma=None))).all()


def test_non_integer_scale():
    y = degrade(_faces(1), 3.5)
    assert y.shape == (1, 3, 112, 112)
