"""Atomic file writing: every file lqlib writes goes through :func:`atomic_write`.

A crash, a full disk or a bad input never leaves a half-written file behind: data goes to a
temporary file in the destination folder, is flushed and fsync'ed, then renamed over the target.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kw) -> Iterator[Any]:
    """Open a temp file next to ``path``; on clean exit rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any):
    """numpy / torch scalars → numbers, arrays and tensors → lists, paths → strings."""
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # arrays, tensors and their scalars (a 0-d tolist() is a number)
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def save_dataframe_csv(df, path: str | os.PathLike, **kw) -> Path:
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        df.to_csv(f, **kw)
    return Path(path)
