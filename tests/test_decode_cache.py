"""The decode cache (cache/decoded/*.npy): a damaged file is named and decoded again, never a traceback."""
import warnings

import numpy as np
import pytest
import torch

from lqlib import paths
from lqlib.data.memory import decoded
from lqlib.data.synthetic import SyntheticFaces
from lqlib.store import CacheInvalidWarning


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "other shape", "other dtype"])
def test_a_damaged_decode_cache_is_named_and_rebuilt(tmp_path, monkeypatch, how):
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    ds = SyntheticFaces(num_classes=2, images_per_class=2)
    good = decoded(ds, {"k": 1}).images.clone()
    (path,) = (tmp_path / "decoded").glob("*.npy")
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"garbage " * 50)
    elif how == "empty":
        path.write_bytes(b"")
    else:
        arr = good.numpy()
        np.save(path, arr[:3] if how == "other shape" else arr.astype(np.int16))
    with pytest.warns(UserWarning, match=str(path)):
        again = decoded(ds, {"k": 1})
    assert torch.equal(again.images, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheInvalidWarning)  # rewritten whole: read back without a warning
        assert torch.equal(decoded(ds, {"k": 1}).images, good)
