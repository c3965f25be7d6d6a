"""A small synthetic identity set for tests and for the smoke preset when no real faces exist.

Each identity is a fixed random low-frequency colour pattern with a high-frequency texture; each
image of it is shifted, brightness-jittered and noised, so identities are learnable, degradation
removes real information, and every sample is a pure function of (seed, index).
Returns uint8 RGB CHW tensors and int labels, like the real datasets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class SyntheticFaces(Dataset):
    def __init__(self, num_classes: int = 20, images_per_class: int = 10, size: int = 112, seed: int = 0):
        if num_classes < 1 or images_per_class < 1:
            raise ValueError("num_classes and images_per_class must be >= 1")
        self.num_classes, self.images_per_class, self.size, self.seed = num_classes, images_per_class, size, seed
        self.labels = torch.arange(num_classes).repeat_interleave(images_per_class)

    def prototype(self, label: int) -> torch.Tensor:
        """The identity's pattern (3, size, size) in [0, 1]-ish, a pure function of (seed, label)."""
        g = torch.Generator().manual_seed(self.seed * 7_368_787 + label)
        s = self.size
        low = F.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(s, s), mode="bicubic", align_corners=False)
        tex = F.interpolate(torch.rand(1, 1, s // 4, s // 4, generator=g) - 0.5, size=(s, s), mode="nearest")
        return (low + 0.35 * tex)[0]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_images(self) -> int:
        return len(self)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        label = int(self.labels[i])
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        dy, dx = (torch.randint(-3, 4, (2,), generator=g)).tolist()
        img = torch.roll(self.prototype(label), shifts=(dy, dx), dims=(1, 2))
        img = img * (0.8 + 0.4 * torch.rand(1, generator=g)) + 0.05 * torch.randn(img.shape, generator=g)
        return (img.clamp(0, 1) * 255).round().to(torch.uint8), label

    def pairs(self, n_pairs: int = 100, seed: int = 1):
        """Verification pairs (images uint8 [2N,3,H,W], issame bool [N]), half same, half different."""
        g = torch.Generator().manual_seed(seed)
        imgs, same = [], []
        for k in range(n_pairs):
            c1 = int(torch.randint(self.num_classes, (1,), generator=g))
            is_same = k % 2 == 0
            c2 = c1 if is_same else int((c1 + 1 + torch.randint(self.num_classes - 1, (1,), generator=g)) % self.num_classes)
            i1, i2 = torch.randint(self.images_per_class, (2,), generator=g).tolist()
            if is_same and self.images_per_class > 1 and i1 == i2:
                i2 = (i1 + 1) % self.images_per_class
            imgs += [self[c1 * self.images_per_class + i1][0], self[c2 * self.images_per_class + i2][0]]
            same.append(is_same and c1 == c2)
        return torch.stack(imgs), torch.tensor(same)
