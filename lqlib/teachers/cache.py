"""Cached teacher embeddings: a frozen teacher's output per training image (and its mirror image).

For a frozen teacher and unmodified high-resolution inputs, the teacher's embedding of training image
``i`` never changes — only the horizontal flip of the step decides which of two vectors it is. So the
embedding-level KD terms (``angular_emb``, ``relational``, ``labelfree``: anything that needs only
``teacher.embedding``) can read them from a table instead of running the teacher every step. For an
external teacher such as ``faceapi-resnet`` (a ResNet-34 at 150 px) that is most of the step.

:class:`TeacherEmbeddingCache` holds two ``(N, E)`` float32 tables — originals and flips — and
answers :meth:`~TeacherEmbeddingCache.lookup` by dataset index. :meth:`~TeacherEmbeddingCache.load_or_build`
computes the tables once per (teacher, training set) with the caller's embedding function and keeps
them under ``cache/teacher_embeddings/`` in an :class:`lqlib.store.ArrayStore` (a manifest with the
key, shapes and dtypes, validated on every load; an invalid file is named and rebuilt). The key rests
on content: the teacher's weights files (SHA-256) and the training images (their data key, or their
SHA-256 where there is none, e.g. synthetic sets) — :func:`lqlib.teacher_loading.teacher_fingerprint`.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..store import ArrayStore

STORE = ArrayStore("teacher_embeddings", what="teacher cache")
EmbedFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # uint8 images → (emb, emb of flips)


class TeacherEmbeddingCache:
    def __init__(self, emb: torch.Tensor, emb_flip: torch.Tensor, manifest: Optional[dict] = None):
        if emb.shape != emb_flip.shape or emb.dim() != 2:
            raise ValueError(f"cache tables must be (N, E) and alike, got {tuple(emb.shape)} / {tuple(emb_flip.shape)}")
        self.emb, self.emb_flip = emb.float().contiguous(), emb_flip.float().contiguous()
        self.manifest = dict(manifest or {})

    def __len__(self) -> int:
        return len(self.emb)

    mean: Optional[torch.Tensor] = None  # set by centered(): the training-set mean that was subtracted

    def centered(self) -> "TeacherEmbeddingCache":
        """The tables minus their training-set mean (over images and mirror images): a teacher whose
        unit descriptors all point one way (faceapi-resnet: ‖mean‖ ≈ 0.9) gives targets that differ in
        the part that tells people apart. ``mean`` is kept for live embeddings of changed faces."""
        mean = torch.cat([self.emb, self.emb_flip]).mean(0)
        out = TeacherEmbeddingCache(self.emb - mean, self.emb_flip - mean, {**self.manifest, "centered": True})
        out.mean = mean
        return out

    @property
    def embedding_size(self) -> int:
        return self.emb.shape[1]

    def lookup(self, index: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        """(B, E) teacher embeddings of dataset rows ``index``, mirrored where ``flipped``."""
        if self.emb.device != index.device:  # the tables follow the batch (e.g. onto the GPU), once
            self.emb, self.emb_flip = self.emb.to(index.device), self.emb_flip.to(index.device)
        index, flipped = index.to(torch.int64), flipped.to(index.device, torch.bool)
        return torch.where(flipped[:, None], self.emb_flip.index_select(0, index), self.emb.index_select(0, index))

    @classmethod
    def build(cls, embed_fn: EmbedFn, images: torch.Tensor, chunk: int = 1024, manifest: Optional[dict] = None):
        """Embed ``images`` (uint8 [N, 3, H, W]) and their flips with ``embed_fn``, chunk by chunk."""
        parts = [embed_fn(images[s:s + chunk]) for s in range(0, len(images), chunk)]
        return cls(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), manifest)

    @classmethod
    def load_or_build(cls, embed_fn: EmbedFn, images: torch.Tensor, key: Optional[dict],
                      log: Callable[[str], None] = print, embedding_size: Optional[int] = None
                      ) -> "TeacherEmbeddingCache":
        """The cache for ``key`` (teacher + data description, JSON-able) from disk, else built and saved.
        ``key=None`` builds in memory only (a teacher object without a stable identity). A stored file
        is used only when it passes :meth:`lqlib.store.ArrayStore.read` (readable, its manifest's key,
        shapes and dtypes; ``len(images)`` rows of ``embedding_size`` columns where that is known);
        otherwise a warning names it and it is built again."""
        if key is None:
            return cls.build(embed_fn, images)
        key = {**key, "n": len(images)}
        shape = (len(images), embedding_size)
        expect = {"emb": (shape, torch.float32), "emb_flip": (shape, torch.float32)}

        def build():
            log(f"teacher cache: embedding {len(images):,} training images and their flips once")
            c = cls.build(embed_fn, images)
            return {"emb": c.emb, "emb_flip": c.emb_flip}

        def alike(a):
            return None if a["emb"].shape == a["emb_flip"].shape else "the two tables differ in shape"

        arrays, manifest = STORE.load_or_build(key, build, expect, log=log, check=alike,
                                               info={"n": len(images), "embedding_size": embedding_size})
        manifest = {**manifest.get("key", key), **manifest, "embedding_size": arrays["emb"].shape[1]}
        return cls(arrays["emb"], arrays["emb_flip"], manifest)
