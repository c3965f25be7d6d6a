"""Tiny synthetic face data for the lqlib.data tests (helpers imported by the other test_data_* files).

Images are smooth random RGB patterns (low-resolution noise upsampled bilinearly) so that JPEG keeps
them close to the originals; nothing here touches real face data.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.io import encode_jpeg

SIZE = 24

# torchvision 0.29 deprecates its image codecs (in favour of TorchCodec) and warns on every call
IGNORE_CODEC_DEPRECATION = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")
pytestmark = IGNORE_CODEC_DEPRECATION

# a 2-fold pairs.txt (2 same + 2 different pairs per fold); fold 0 is the "first half" of the folds
PAIRS_TXT = """2\t2
Alice\t1\t2
Bob\t1\t2
Carol\t1\tDave\t1
Alice\t3\tEve\t1
Frank\t1\t2
Carol\t1\t2
Gina\t1\tDave\t2
Frank\t1\tBob\t2
"""
LFW_COUNTS = {"Alice": 3, "Bob": 2, "Carol": 2, "Dave": 2, "Eve": 1, "Frank": 2, "Gina": 1, "Hank": 2}
CELEBA_COUNTS = {"00001": 2, "00002": 2, "00003": 1}
# fold 0 names Alice, Bob, Carol, Dave, Eve → training LFW identities: Frank, Gina, Hank
EXPECTED_TRAIN_IDENTITIES = 3 + 3
EXPECTED_TRAIN_IMAGES = 5 + 2 + 1 + 2


def smooth_images(n: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 RGB ``[3, size, size]`` images that survive JPEG with small error."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 255
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=True).round().to(torch.uint8)


def jpeg_bytes(images: torch.Tensor, quality: int = 95) -> list[bytes]:
    return [encode_jpeg(img, quality=quality).numpy().tobytes() for img in images]


def write_jpeg(path: Path, image: torch.Tensor) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(image[None])[0])
    return path


def make_data_dir(root: Path, pairs_txt: str = PAIRS_TXT) -> Path:
    """An LFW/CelebA-like data directory under ``root`` (layout of the shared data README)."""
    images = smooth_images(sum(LFW_COUNTS.values()) + sum(CELEBA_COUNTS.values()))
    k = 0
    for name, count in LFW_COUNTS.items():
        for i in range(1, count + 1):
            write_jpeg(root / "lfw" / "images" / name / f"{name}_{i:04d}.jpg", images[k])
            k += 1
    for ident, count in CELEBA_COUNTS.items():
        for i in range(count):
            write_jpeg(root / "celeba299" / "images" / ident / f"{100 + i:06d}.jpg", images[k])
            k += 1
    (root / "lfw" / "pairs.txt").write_text(pairs_txt)
    return root


def test_make_data_dir(tmp_path):
    root = make_data_dir(tmp_path)
    assert len(list((root / "lfw" / "images").rglob("*.jpg"))) == sum(LFW_COUNTS.values())
    assert len(list((root / "celeba299" / "images").rglob("*.jpg"))) == sum(CELEBA_COUNTS.values())
