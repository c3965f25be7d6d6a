"""Cached teacher embeddings: a frozen teacher's output per training image (and its mirror image).

For a frozen teacher and unmodified high-resolution inputs, the teacher's embedding of training image
``i`` never changes — only the horizontal flip of the step decides which of two vectors it is. So the
embedding-level KD terms (``angular_emb``, ``relational``, ``labelfree``: anything that needs only
``teacher.embedding``) can read them from a table instead of running the teacher every step. For an
external teacher such as ``faceapi-resnet`` (a ResNet-34 at 150 px) that is most of the step.

:class:`TeacherEmbeddingCache` holds two ``(N, E)`` float32 tables — originals and flips — and
answers :meth:`~TeacherEmbeddingCache.lookup` by dataset index. :meth:`~TeacherEmbeddingCache.load_or_build`
computes the tables once per (teacher, training set) with the caller's embedding function and keeps
them under ``cache/teacher_embeddings/`` with a manifest (teacher, its spec or run, the data key,
sizes, seconds); a different teacher, spec or training set gives a different file.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Callable, Optional

import torch

from .. import paths
from ..io import torch_save, write_json

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
                      log: Callable[[str], None] = print) -> "TeacherEmbeddingCache":
        """The cache for ``key`` (teacher + data description, JSON-able) from disk, else built and saved.
        ``key=None`` builds in memory only (a teacher object without a stable identity)."""
        if key is None:
            return cls.build(embed_fn, images)
        digest = hashlib.sha256(json.dumps({**key, "n": len(images)}, sort_keys=True, default=str).encode()).hexdigest()[:20]
        path = paths.cache_dir() / "teacher_embeddings" / f"{digest}.pt"
        if path.is_file():
            d = torch.load(path, map_location="cpu", weights_only=True)
            if d["emb"].shape[0] == len(images):
                return cls(d["emb"], d["emb_flip"], d.get("manifest"))
        t0 = time.perf_counter()
        log(f"teacher cache: embedding {len(images):,} training images and their flips once → {path}")
        cache = cls.build(embed_fn, images)
        cache.manifest = {**key, "n": len(images), "embedding_size": cache.embedding_size,
                          "seconds": round(time.perf_counter() - t0, 1), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        torch_save({"emb": cache.emb, "emb_flip": cache.emb_flip, "manifest": cache.manifest}, path)
        write_json(path.with_suffix(".json"), cache.manifest)
        log(f"teacher cache: done in {cache.manifest['seconds']} s")
        return cache
