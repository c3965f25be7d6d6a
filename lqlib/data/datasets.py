"""Image decoding/encoding shared by every lqlib data source, and the labelled-dataset base class.

Colour order is **RGB** everywhere: every decoder here returns ``uint8`` tensors shaped ``[3, H, W]``
(CHW) in RGB order, and :func:`encode_jpeg` expects the same. JPEG/PNG files carry their own colour
model, so decoding them with :mod:`torchvision.io` (``ImageReadMode.RGB``) yields RGB directly —
the same as InsightFace's mxnet code (``mx.image.imdecode`` decodes to RGB), so no channel swap is
needed for InsightFace ``.rec``/``.bin`` files. Sources known to hold BGR pixels (for example
OpenCV-written raw arrays) are handled by the loaders' ``bgr=True`` option, which calls
:func:`bgr_to_rgb` once after decoding.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.io import encode_jpeg as _tv_encode_jpeg

from ..errors import LqlibError

Encoded = bytes | bytearray | memoryview | np.ndarray | torch.Tensor


class ImageDecodeError(LqlibError, ValueError):
    """An encoded image (JPEG/PNG) could not be decoded; the message names where it came from."""


def _as_byte_tensor(data: Encoded) -> torch.Tensor:
    """Encoded bytes → 1-D ``uint8`` tensor (a copy, so the result owns writable memory)."""
    if isinstance(data, torch.Tensor):
        return data.reshape(-1).to(torch.uint8)
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1).copy())
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_rgb(data: Encoded, *, where: str = "image", bgr: bool = False) -> torch.Tensor:
    """Decode one JPEG/PNG into a ``uint8`` RGB ``[3, H, W]`` tensor.

    ``where`` names the image in error messages (e.g. ``"record 12 of /x/train.rec"``).
    ``bgr=True`` swaps the channels afterwards, for sources whose pixels were stored as BGR.
    """
    if len(data if not isinstance(data, (np.ndarray, torch.Tensor)) else data.reshape(-1)) == 0:
        raise ImageDecodeError(f"cannot decode {where}: empty image data")  # (torch.frombuffer refuses b"")
    buf = _as_byte_tensor(data)
    try:
        img = decode_image(buf, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as e:
        raise ImageDecodeError(f"cannot decode {where}: {e}") from None
    return (bgr_to_rgb(img) if bgr else img).contiguous()  # the decoder returns a channels-last view


def read_image_rgb(path: str | os.PathLike, *, bgr: bool = False) -> torch.Tensor:
    """Read and decode an image file into a ``uint8`` RGB ``[3, H, W]`` tensor."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageDecodeError(f"cannot read image {path}: {e}") from None
    return decode_rgb(data, where=f"image file {path}", bgr=bgr)


def bgr_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Swap the channel order of ``[..., 3, H, W]`` images (BGR ↔ RGB; the operation is its own inverse)."""
    return images.flip(-3)


def encode_jpeg(images: torch.Tensor | Sequence[torch.Tensor], quality: int = 90) -> list[bytes]:
    """Encode ``uint8`` RGB images (``[N, 3, H, W]`` or a list of ``[3, H, W]``) to JPEG bytes."""
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        images = images.unsqueeze(0)
    items = [img.contiguous() for img in images]
    for img in items:
        if img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"expected uint8 RGB [3, H, W] images, got {img.dtype} {tuple(img.shape)}")
    if not items:
        return []
    return [t.numpy().tobytes() for t in _tv_encode_jpeg(items, quality=int(quality))]


def as_encoded(image: Encoded, quality: int = 90) -> bytes:
    """An image as encoded bytes: bytes-like inputs pass through, a ``uint8`` CHW tensor is JPEG-encoded."""
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.dim() == 3:
        return encode_jpeg(image, quality)[0]
    if isinstance(image, torch.Tensor):
        raise ValueError(f"expected a uint8 [3, H, W] tensor or encoded bytes, got {image.dtype} {tuple(image.shape)}")
    if isinstance(image, bytes):
        return image  # the same object, so repeated images stay shared (see write_bin)
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return bytes(image)


def reencode_jpeg(data: Encoded, quality: int, *, where: str = "image") -> bytes:
    """Decode an image and encode it again as JPEG at ``quality`` (RGB throughout)."""
    return encode_jpeg(decode_rgb(data, where=where), quality)[0]


@contextlib.contextmanager
def single_threaded_torch():
    """Run torch ops single-threaded inside the block (restoring the thread count after).

    Per-image ops on 112×112 images are too small for intra-op parallelism; on a busy machine the
    OpenMP pool makes them 10-30× slower, especially when several Python threads call them at once.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def parallel_map(fn: Callable, items: Iterable, threads: int | None = None) -> list:
    """``list(map(fn, items))`` on a thread pool (torchvision's codecs release the GIL), with torch
    single-threaded meanwhile (see :func:`single_threaded_torch`)."""
    threads = threads or min(4, os.cpu_count() or 1)
    items = list(items)
    with single_threaded_torch():
        if threads <= 1 or len(items) < 64:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(threads) as ex:
            return list(ex.map(fn, items))


def stack_images(images: Sequence[torch.Tensor], *, what: str) -> torch.Tensor:
    """Stack ``[3, H, W]`` images into ``[N, 3, H, W]``, naming the first image whose size differs."""
    if not images:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    shape = images[0].shape
    for i, img in enumerate(images):
        if img.shape != shape:
            raise ValueError(f"{what}: image {i} has shape {tuple(img.shape)}, image 0 has {tuple(shape)}")
    return torch.stack(list(images))


class LabeledImageDataset(Dataset):
    """Base class of the map-style datasets returning ``(uint8 RGB [3, H, W] tensor, int label)``.

    Subclasses implement ``__len__``, :meth:`load_sample` and the ``labels`` property (an int64 numpy
    array, available without decoding any image). ``transform`` (if given) is applied to the uint8
    image tensor.
    """

    transform: Callable | None = None

    @property
    def labels(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """``max(label) + 1`` (labels are expected to be contiguous ``0..K-1``)."""
        labels = self.labels
        return int(labels.max()) + 1 if len(labels) else 0

    def load_sample(self, index: int) -> tuple[torch.Tensor, int]:  # pragma: no cover - abstract
        """The decoded RGB image and label of sample ``index`` (already range-checked)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        img, label = self.load_sample(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(label)
