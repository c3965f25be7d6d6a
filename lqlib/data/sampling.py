"""Training sets and their order: open the set a data spec names, class-balanced subsets, the sampler.

``build_dataset(spec, ...)`` opens the training side of a data spec (:mod:`lqlib.data.sources`) and
returns ``(dataset, num_classes, split)``; ``max_images`` keeps a deterministic class-balanced subset
(:func:`class_balanced_subset`). :class:`EpochSampler` gives a shuffled order that is a pure function of
(seed, epoch), sharded over DDP ranks and resumable mid-epoch.
"""
from __future__ import annotations

import sys

import torch
from torch.utils.data import Dataset, Sampler

from .sources import training_source


def build_dataset(spec: str, data_dir=None, *, max_images: int | None = None, synthetic: dict | None = None,
                  seed: int = 0, min_per_class: int = 1, max_per_class: int | None = None
                  ) -> tuple[Dataset, int, str]:
    """The training set named by ``spec``, its number of identities and its split name.

    ``min_per_class`` drops identities with fewer images (e.g. 2: no single-image identities);
    ``max_per_class`` keeps at most that many images of an identity (its first ones) — both before
    the ``max_images`` subset."""
    src = training_source(spec)
    if src.kind == "synthetic":
        from .synthetic import SyntheticFaces

        ds = SyntheticFaces(seed=seed, **(synthetic or {}))
        print("NOTICE: training on a SYNTHETIC identity set (no face data); numbers mean nothing about faces.",
              file=sys.stderr)
    elif src.kind == "rec":
        from .recordio import RecordDataset

        ds = RecordDataset(src.path)
    elif src.kind == "folder":
        from .folders import FolderDataset

        ds = FolderDataset(src.path)
    else:
        from .folders import FolderDataset
        from .splits import get_split

        split = get_split(src.split, data_dir)
        if str(split.stats.get("train_sources", "")).startswith("LFW alone"):
            print(f"NOTICE: {src.split}: training side from {split.stats['train_sources']}", file=sys.stderr)
        ds = FolderDataset.from_samples([(s.path, s.label) for s in split.train])
    n_cls = int(ds.num_classes)
    if min_per_class > 1 or max_per_class is not None:
        ds, n_cls = per_class_filter(ds, min_per_class, max_per_class)
    if max_images is not None and max_images < len(ds):
        ds, n_cls = class_balanced_subset(ds, max_images)
    return ds, n_cls, src.split


def per_class_filter(ds, min_per_class: int = 1, max_per_class: int | None = None):
    """Identities with at least ``min_per_class`` images, at most ``max_per_class`` of each (the first)."""
    labels = _dataset_labels(ds)
    counts = torch.bincount(labels)
    keep = {c for c in range(len(counts)) if counts[c] >= max(1, min_per_class)}
    if len(keep) < 2:
        raise ValueError(f"min_per_class={min_per_class}: fewer than 2 identities are left")
    seen: dict[int, int] = {}
    idx = []
    for i, lab in enumerate(labels.tolist()):
        if lab in keep and (max_per_class is None or seen.get(lab, 0) < max_per_class):
            seen[lab] = seen.get(lab, 0) + 1
            idx.append(i)
    mapping = {c: k for k, c in enumerate(sorted(keep))}
    return _Relabel(ds, torch.tensor(idx), mapping), len(mapping)


def data_key(spec: str, data_dir=None, max_images: int | None = None, min_per_class: int = 1,
             max_per_class: int | None = None) -> dict | None:
    """What identifies a training set's decoded pixels (the decode cache's key); None for synthetic data."""
    src = training_source(spec)
    if src.kind == "synthetic":
        return None
    key = {"kind": src.kind, "split": src.split, "max_images": max_images, "per_class": SUBSET_PER_CLASS,
           "min_per_class": min_per_class, "max_per_class": max_per_class}
    if src.kind == "rec":
        st = src.path.stat()
        key.update(path=str(src.path), bytes=st.st_size, mtime=st.st_mtime)
    elif src.kind == "folder":
        key.update(path=str(src.path))
    else:
        from .. import paths

        key.update(data_dir=str(paths.data_dir(data_dir)))
    return key


def _dataset_labels(ds) -> torch.Tensor:
    labels = getattr(ds, "labels", None)
    if labels is None:
        labels = [ds[i][1] for i in range(len(ds))]
    return torch.as_tensor(labels, dtype=torch.long)


class _Relabel(Dataset):
    def __init__(self, ds, idx, mapping):
        self.ds, self.idx, self.mapping = ds, idx, mapping
        self.labels = torch.tensor([mapping[int(l)] for l in _dataset_labels(ds)[idx]])
        self.num_classes = len(mapping)

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        img, lab = self.ds[int(self.idx[i])]
        return img, self.mapping[int(lab)]


SUBSET_PER_CLASS = 4


def class_balanced_subset(ds, n: int, per_class: int = SUBSET_PER_CLASS):
    """A deterministic, class-balanced subset of about ``n`` images: ``n // per_class`` identities
    with at least ``per_class`` images, spread evenly over the label range (not the largest first:
    one LFW identity alone can hold hundreds of images), ``per_class`` images each (the first ones).
    """
    labels = _dataset_labels(ds)
    counts = torch.bincount(labels)
    eligible = [c for c in range(len(counts)) if counts[c] >= per_class]
    want = max(2, n // per_class)
    if len(eligible) < 2:
        raise ValueError(f"max_images={n}: the training set has {len(eligible)} identities with >= {per_class} "
                         "images; a subset needs at least 2 classes")
    take = min(want, len(eligible))
    keep = [eligible[i * len(eligible) // take] for i in range(take)]
    keep_set, seen = set(keep), {}
    idx = []
    for i, l in enumerate(labels.tolist()):
        if l in keep_set and seen.get(l, 0) < per_class:
            seen[l] = seen.get(l, 0) + 1
            idx.append(i)
    mapping = {c: k for k, c in enumerate(sorted(keep_set))}
    return _Relabel(ds, torch.tensor(idx), mapping), len(mapping)


class EpochSampler(Sampler):
    """Shuffled order that is a pure function of (seed, epoch), sharded over ranks, resumable.

    ``start`` skips the first ``start`` samples of this rank's order (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        per = self.n // self.world
        return perm[self.rank * per:(self.rank + 1) * per]

    def __iter__(self):
        return iter(self._order()[self.start:])

    def __len__(self):
        return self.n // self.world - self.start


def step_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed of the generator of flips, face-content replacement and degradation for one epoch on one
    DDP rank: each rank draws its own stream (rank 0 is the single-process run)."""
    return seed * 7919 + epoch + 1 + 1_000_003 * rank
