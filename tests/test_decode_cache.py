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


def test_decoded_files_are_complete_or_absent(tmp_path, monkeypatch):
    """decoded_files: a loader that returns the wrong pixels is named and leaves no cache file; a damaged cache
    file is named and decoded again; a good one is read without decoding."""
    from lqlib.data.memory import decoded_files

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    files = []
    for i in range(5):
        files.append(tmp_path / f"f{i}.bin")
        files[-1].write_bytes(bytes([i]))
    calls = []

    def load(chunk):
        calls.append(len(chunk))
        return torch.stack([torch.full((3, 4, 4), int(p.read_bytes()[0]), dtype=torch.uint8) for p in chunk])

    with pytest.raises(ValueError, match=r"f0\.bin .* expected uint8 \[n, 3, 5, 5\]"):
        decoded_files(files, load, (3, 5, 5), {"k": 1}, chunk=2)
    assert not list((tmp_path / "cache" / "decoded").iterdir())               # nothing half-written
    arr = np.array(decoded_files(files, load, (3, 4, 4), {"k": 1}, chunk=2))  # a copy: the file is damaged below
    assert [int(a[0, 0, 0]) for a in arr] == [0, 1, 2, 3, 4] and calls[-3:] == [2, 2, 1]
    n = len(calls)
    assert np.array_equal(decoded_files(files, load, (3, 4, 4), {"k": 1}, chunk=2), arr) and len(calls) == n
    (path,) = (tmp_path / "cache" / "decoded").glob("*.npy")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(CacheInvalidWarning, match=str(path)):
        again = decoded_files(files, load, (3, 4, 4), {"k": 1}, chunk=2)
    assert np.array_equal(again, arr) and len(calls) == n + 3
