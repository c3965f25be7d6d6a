"""Identity folders (``<root>/<identity>/<image>.jpg``, the ``ImageFolder`` layout) as datasets.

Images decode to **RGB** ``uint8 [3, H, W]`` tensors (``bgr=True`` swaps channels for folders known to
hold BGR pixels). Scans are sorted by identity name, then file name, so labels and sample order are
deterministic across machines.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import LabeledImageDataset, read_image_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _is_image(name: str, extensions: Sequence[str]) -> bool:
    return not name.startswith(".") and name.lower().endswith(tuple(extensions))


def scan_identity_folders(root: str | os.PathLike,
                          extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[tuple[Path, str]]:
    """``[(image path, identity name)]`` for every image in ``root/<identity>/``, sorted by (identity, file).

    Hidden entries and files directly under ``root`` are ignored. Raises ``FileNotFoundError`` if
    ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"identity-folder root not found: {root}")
    out = []
    with os.scandir(root) as it:
        identities = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    for name in identities:
        with os.scandir(root / name) as it:
            files = sorted(e.name for e in it if e.is_file() and _is_image(e.name, extensions))
        out.extend((root / name / f, name) for f in files)
    return out


class FolderDataset(LabeledImageDataset):
    """``(uint8 RGB [3, H, W], int label)`` from identity folders or an explicit sample list.

    ``FolderDataset(root)`` scans ``root`` with :func:`scan_identity_folders`; labels are the indices
    of the sorted identity names (:attr:`classes`). :meth:`from_samples` takes ``(path, label)``
    pairs where ``label`` is an int (kept) or an identity name (mapped like a scan).
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None, *, bgr: bool = False,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS):
        samples = scan_identity_folders(root, extensions)
        if not samples:
            raise FileNotFoundError(f"no images ({', '.join(extensions)}) in identity folders under {root}")
        self._init(samples, transform, bgr)
        self.root = Path(root)

    @classmethod
    def from_samples(cls, samples: Sequence[tuple[str | os.PathLike, int | str]],
                     transform: Callable | None = None, *, bgr: bool = False) -> "FolderDataset":
        self = cls.__new__(cls)
        self._init(list(samples), transform, bgr)
        self.root = None
        return self

    def _init(self, samples, transform, bgr) -> None:
        self.transform = transform
        self.bgr = bgr
        self.paths = [Path(p) for p, _ in samples]
        raw = [lab for _, lab in samples]
        if all(isinstance(lab, (int, np.integer)) for lab in raw):
            self.classes = None
            self._labels = np.asarray(raw, dtype=np.int64)
        else:
            names = [str(lab) for lab in raw]
            self.classes = sorted(set(names))
            index = {c: i for i, c in enumerate(self.classes)}
            self._labels = np.asarray([index[n] for n in names], dtype=np.int64)

    @property
    def class_to_idx(self) -> dict[str, int] | None:
        return None if self.classes is None else {c: i for i, c in enumerate(self.classes)}

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __len__(self) -> int:
        return len(self.paths)

    def load_sample(self, index: int) -> tuple[torch.Tensor, int]:
        return read_image_rgb(self.paths[index], bgr=self.bgr), int(self._labels[index])


class UnlabeledFolderDataset(Dataset):
    """Images only (for label-free distillation): every image file under ``root`` at any depth, sorted.

    Accepts a root directory or an explicit sequence of paths; returns ``uint8 RGB [3, H, W]``
    (after ``transform`` if given).
    """

    def __init__(self, root: str | os.PathLike | Sequence[str | os.PathLike], transform: Callable | None = None,
                 *, bgr: bool = False, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        if isinstance(root, (str, os.PathLike)):
            root = Path(root)
            if not root.is_dir():
                raise FileNotFoundError(f"image folder not found: {root}")
            paths = sorted(Path(dp) / f for dp, dns, fns in os.walk(root)
                           for f in fns if _is_image(f, extensions)
                           if not any(part.startswith(".") for part in Path(dp).relative_to(root).parts))
            if not paths:
                raise FileNotFoundError(f"no images ({', '.join(extensions)}) under {root}")
        else:
            paths = [Path(p) for p in root]
        self.paths = paths
        self.transform = transform
        self.bgr = bgr

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        img = read_image_rgb(self.paths[index], bgr=self.bgr)
        return self.transform(img) if self.transform is not None else img
