"""lqlib.store: validated, atomically written tensor caches keyed on content (the teacher caches' base)."""
import os

import pytest
import torch

from lqlib import store
from lqlib.store import ArrayStore, CacheInvalidWarning, InvalidCacheFile, file_digest, tensor_digest

KEY = {"teacher": {"sha256": "ab"}, "data": {"split": "x"}}


def _store(tmp_path):
    return ArrayStore(tmp_path / "s", what="test cache")


def test_round_trip_and_build_once(tmp_path):
    s, calls = _store(tmp_path), []

    def build():
        calls.append(1)
        return {"a": torch.arange(12.0).view(3, 4), "b": torch.ones(3, dtype=torch.int64)}

    expect = {"a": ((3, None), torch.float32)}
    a1, m1 = s.load_or_build(KEY, build, expect, info={"note": 1}, log=lambda *_: None)
    a2, m2 = s.load_or_build(KEY, build, expect, log=lambda *_: None)
    assert calls == [1] and torch.equal(a1["a"], a2["a"]) and torch.equal(a2["b"], torch.ones(3, dtype=torch.int64))
    assert m2["key"] == KEY and m2["note"] == 1 and m2["arrays"]["a"] == {"shape": [3, 4], "dtype": "float32"}
    assert s.path(KEY).with_suffix(".json").is_file()


@pytest.mark.parametrize("tamper, reason", [
    (lambda d: {**d, "manifest": {**d["manifest"], "key": {"other": 1}}}, "another key"),
    (lambda d: {**d, "arrays": {"a": torch.full((3, 4), float("nan"))}}, "NaN"),
    (lambda d: {**d, "arrays": {"a": torch.zeros(3, 4, dtype=torch.float64)}}, "float64"),
    (lambda d: {**d, "arrays": {}}, "do not match the manifest"),
    (lambda d: [1, 2], "not an lqlib cache file"),
])
def test_read_refuses_what_the_manifest_does_not_describe(tmp_path, tamper, reason):
    s = _store(tmp_path)
    s.save(KEY, {"a": torch.zeros(3, 4)})
    torch.save(tamper(torch.load(s.path(KEY), weights_only=True)), s.path(KEY))
    with pytest.raises(InvalidCacheFile, match=reason) as e:
        s.read(KEY)
    assert str(s.path(KEY)) in str(e.value)
    with pytest.warns(CacheInvalidWarning, match="rebuilding"):
        assert s.load(KEY) is None


def test_expectations_and_the_callers_check(tmp_path):
    s = _store(tmp_path)
    s.save(KEY, {"a": torch.zeros(3, 4), "b": torch.zeros(3, 5)})
    s.read(KEY, {"a": ((3, None), torch.float32)})
    with pytest.raises(InvalidCacheFile, match=r"expected \(3, 7\)"):
        s.read(KEY, {"a": ((3, 7), None)})
    with pytest.raises(InvalidCacheFile, match="differ"):
        s.read(KEY, check=lambda a: "tables differ" if a["a"].shape != a["b"].shape else None)
    with pytest.raises(ValueError, match="built 'a'"):  # a build that breaks the contract is an error
        ArrayStore(tmp_path / "t").load_or_build(KEY, lambda: {"a": torch.zeros(2, 4)}, {"a": ((3, None), None)},
                                                 log=lambda *_: None)


def test_a_crash_while_saving_leaves_no_file(tmp_path, monkeypatch):
    s = _store(tmp_path)

    def crash(obj, f, *a, **k):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        s.save(KEY, {"a": torch.zeros(2)})
    assert not s.path(KEY).exists() and not os.listdir(tmp_path / "s")


def test_file_digest_is_the_content_hash_computed_once(tmp_path, monkeypatch):
    import hashlib

    p = tmp_path / "w.bin"
    p.write_bytes(b"weights v1")
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    assert file_digest(p) == hashlib.sha256(b"weights v1").hexdigest()
    p.write_bytes(b"weights v2")  # same size, new content, at once: mtime may not have moved
    assert file_digest(p) == hashlib.sha256(b"weights v2").hexdigest()  # fresh files are not memoised
    assert len(opened) == 2
    os.utime(p, ns=(10**18, 10**18))  # settled (2001)
    file_digest(p)
    file_digest(p)
    assert len(opened) == 3  # memoised by (path, inode, size, mtime)
    p.write_bytes(b"weights v3")
    os.utime(p, ns=(15 * 10**17, 15 * 10**17))  # settled (2017)
    assert file_digest(p) == hashlib.sha256(b"weights v3").hexdigest()
    assert len(store._FILE_DIGESTS) >= 2


def test_tensor_digest_sees_content_shape_and_dtype():
    a = torch.arange(10, dtype=torch.uint8)
    assert tensor_digest(a) == tensor_digest(a.clone()) == tensor_digest(a, chunk=3)
    b = a.clone()
    b[7] = 0
    assert tensor_digest(b) != tensor_digest(a)
    assert tensor_digest(a.view(2, 5)) != tensor_digest(a)
    assert tensor_digest(a.float()) != tensor_digest(a)
