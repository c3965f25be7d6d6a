"""Cached outputs of a frozen own teacher: embedding, CBAM maps (channel and spatial, per block) and,
through its margin head at read time, its logits — per training image and per mirror image.

A frozen lqlib teacher (a finished run: backbone + margin head, eval mode) that sees unmodified
high-resolution training images, whose only augmentation is the horizontal flip, gives the same
outputs for image ``i`` at every step: one of two rows, original or mirror. So the KD terms that read
only the teacher's embedding, logits and attention maps (``logit``, ``logit_hinton``, ``dkd``,
``attention`` with any reduction, ``askd``) can read them from a table instead of running the teacher
every step. Terms that need its stage features (``at``, ``hierfeat``, ``angular`` with stages) or
steps that change the HR faces (face-content replacement) keep the live teacher.

What is stored, in one ``(2N, D)`` table (row ``2i`` image ``i``, row ``2i + 1`` its mirror image)
with a ``layout`` naming the columns:

* ``embedding`` — the backbone's (E,) output;
* ``channel.<b>`` (C_b,) and ``spatial.<b>`` (1, H_b, W_b) — the attention maps of block ``b``
  (``maps="post"``: after the sigmoid; ``"pre"``: before), where the block has them.

The **logits are not stored**: the ArcFace margin lands on the target class, so they depend on the
labels of the step (and a (N, classes) table would be large). :meth:`TeacherOutputCache.outputs`
runs the teacher's frozen margin head on the cached embedding (fp32, as the live step does), so the
margin and plain logits are the live ones.

Precision: the table holds the outputs in the dtype the teacher produced them in — bf16 under the
bf16 autocast that lqlib uses where the hardware has it (every output of an IResNet/CBAM teacher is
bf16 there, so bf16 storage loses nothing), float32 when autocast is off. The precision is part of the
key. Size: ``2 · N · D`` values — for ``ir_cbam_18`` (D = 512 + 2·960 + 2·4,165 = 10,762) on the
8,976-image ``lfw-half`` training set 386 MB in bf16; ``ir_cbam_tiny`` (D = 4,917) 177 MB.

:func:`load_or_build` computes the table once per (teacher checkpoint content, training set,
precision, layout) and keeps it in :class:`lqlib.store.ArrayStore` ``cache/teacher_outputs/``
(manifest, shapes and dtypes validated on load; an invalid file is named and rebuilt).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..images import normalize
from ..models.attention import AttentionMaps
from ..models.interface import ModelOutputs
from ..precision import autocast, full_precision
from ..store import ArrayStore

STORE = ArrayStore("teacher_outputs", what="teacher output cache")
SERVES = frozenset({"embedding", "logits", "attention"})  # what a term may need from the teacher to use the cache

Layout = list  # [[name, [shape...]], ...]


def _teacher_forward(teacher: nn.Module, x_uint8: torch.Tensor, amp_dtype, channels_last: bool = True):
    """(embedding, [AttentionMaps]) of the frozen teacher on uint8 HR images, as the live step runs it
    (:func:`lqlib.images.normalize`, channels_last, the step's autocast)."""
    x = normalize(x_uint8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(x.device.type, amp_dtype):
        emb, maps = teacher(x, return_attention=True)
    return emb, maps


def layout_of(emb: torch.Tensor, maps: Sequence[AttentionMaps]) -> Layout:
    """The column layout of one row: ``[["embedding", [E]], ["channel.0", [C]], ["spatial.0", [1, H, W]], ...]``."""
    out: Layout = [["embedding", list(emb.shape[1:])]]
    for b, m in enumerate(maps):
        if m.channel is not None:
            out.append([f"channel.{b}", list(m.channel.shape[1:])])
        if m.spatial is not None:
            out.append([f"spatial.{b}", list(m.spatial.shape[1:])])
    out.append(["blocks", [len(maps)]])  # a marker, no columns: blocks without maps still count
    return out


def _width(layout: Layout) -> int:
    return sum(math.prod(shape) for name, shape in layout if name != "blocks")


def _rows(emb: torch.Tensor, maps: Sequence[AttentionMaps], dtype: torch.dtype) -> torch.Tensor:
    parts = [emb.flatten(1)]
    for m in maps:
        parts += [t.flatten(1) for t in (m.channel, m.spatial) if t is not None]
    return torch.cat([p.to(dtype) for p in parts], dim=1)


def probe_layout(teacher: nn.Module, image_size: Sequence[int], device, amp_dtype) -> tuple[Layout, torch.dtype]:
    """Layout and output dtype of ``teacher`` from one forward of a blank image."""
    x = torch.zeros((1, 3, *image_size), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        emb, maps = _teacher_forward(teacher, x, amp_dtype)
    return layout_of(emb, maps), emb.dtype


def build_table(teacher: nn.Module, images: torch.Tensor, device, amp_dtype, batch_size: int = 32,
                log: Callable[[str], None] = lambda *_: None) -> tuple[torch.Tensor, Layout]:
    """``(table (2N, D), layout)``: the frozen teacher's outputs for every image and its mirror image
    (each chunk and its flip in one forward of 2·``batch_size``)."""
    n = len(images)
    table = layout = None
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            x = images[s:s + batch_size].to(device)
            emb, maps = _teacher_forward(teacher, torch.cat([x, x.flip(-1)]), amp_dtype)
            if table is None:
                layout = layout_of(emb, maps)
                table = torch.empty((2 * n, _width(layout)), dtype=emb.dtype)
            rows = _rows(emb, maps, emb.dtype).cpu()
            b = len(x)
            table[2 * s:2 * (s + b):2] = rows[:b]
            table[2 * s + 1:2 * (s + b):2] = rows[b:]
            if (s // batch_size) % 50 == 49:
                log(f"teacher output cache: {s + b:,}/{n:,} images")
    if table is None:
        raise ValueError("no training images to cache the teacher's outputs of")
    return table, layout


class TeacherOutputCache:
    """The teacher's outputs per training image and mirror image (see the module docstring)."""

    serves = SERVES

    def __init__(self, table: torch.Tensor, layout: Layout, manifest: Optional[dict] = None):
        if table.dim() != 2 or table.shape[0] % 2 or table.shape[1] != _width(layout):
            raise ValueError(f"teacher output table must be (2N, {_width(layout)}) for its layout, got {tuple(table.shape)}")
        self.table, self.layout = table.contiguous(), [[n, list(s)] for n, s in layout]
        self.manifest = dict(manifest or {})
        self._slices: dict[str, tuple[int, int, list]] = {}
        col = 0
        for name, shape in self.layout:
            if name == "blocks":
                self.num_blocks = int(shape[0])
                continue
            w = math.prod(shape)
            self._slices[name] = (col, w, shape)
            col += w

    def __len__(self) -> int:
        return self.table.shape[0] // 2

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    def lookup(self, index: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        """(B, D) rows of dataset images ``index``, the mirror image's row where ``flipped``."""
        if self.table.device != index.device:  # the table follows the batch (e.g. onto the GPU), once
            self.table = self.table.to(index.device)
        rows = 2 * index.to(torch.int64) + flipped.to(index.device, torch.int64)
        return self.table.index_select(0, rows)

    def _part(self, rows: torch.Tensor, name: str) -> Optional[torch.Tensor]:
        if name not in self._slices:
            return None
        col, w, shape = self._slices[name]
        return rows[:, col:col + w].reshape(len(rows), *shape)

    def outputs(self, index: torch.Tensor, flipped: torch.Tensor, labels: Optional[torch.Tensor] = None,
                head: Optional[nn.Module] = None) -> ModelOutputs:
        """The teacher's :class:`~lqlib.models.interface.ModelOutputs` for a batch: embedding and
        attention maps from the table; margin and plain logits from ``head`` (the teacher's frozen
        margin head) on the cached embedding when ``labels`` are given, in fp32 as the live step."""
        rows = self.lookup(index, flipped)
        emb = self._part(rows, "embedding")
        att = [AttentionMaps(self._part(rows, f"channel.{b}"), self._part(rows, f"spatial.{b}"))
               for b in range(self.num_blocks)]
        logits = plain = None
        if labels is not None and head is not None:
            with torch.no_grad(), full_precision(emb.device.type):
                logits, plain = head(emb, labels, return_plain=True)
        return ModelOutputs(emb, logits, plain, att, [])


def load_or_build(teacher: nn.Module, images: torch.Tensor, key: Optional[dict], device, amp_dtype,
                  log: Callable[[str], None] = print) -> TeacherOutputCache:
    """The cache for ``key`` (teacher content + training set + precision, JSON-able) from
    ``cache/teacher_outputs/`` when valid, else built (and stored; ``key=None``: in memory only)."""
    layout, dtype = probe_layout(teacher, images.shape[-2:], device, amp_dtype)
    n = len(images)
    if key is None:
        table, _ = build_table(teacher, images, device, amp_dtype, log=log)
        return TeacherOutputCache(table, layout)
    key = {**key, "n": n, "layout": layout, "dtype": str(dtype)}
    expect = {"table": ((2 * n, _width(layout)), dtype)}

    def build():
        log(f"teacher output cache: the teacher's outputs of {n:,} training images and their mirror images, once "
            f"({2 * n * _width(layout) * torch.empty((), dtype=dtype).element_size() / 2**20:.0f} MiB)")
        table, built = build_table(teacher, images, device, amp_dtype, log=log)
        if built != layout:
            raise ValueError(f"teacher output cache: the teacher's outputs changed shape while building ({built} vs {layout})")
        return {"table": table}

    arrays, manifest = STORE.load_or_build(key, build, expect, log=log, info={"n": n, "width": _width(layout)})
    return TeacherOutputCache(arrays["table"], layout, manifest)
