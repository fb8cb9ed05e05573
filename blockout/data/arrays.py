"""In-memory image datasets: uint8 images normalised on the fly.

Images are kept as ``uint8`` ``(N, C, H, W)`` (a quarter of the memory of float32) and turned into
normalised float32 when read. Per-channel statistics are computed exactly in integer arithmetic,
so they are bit-identical on every machine.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and standard deviation of ``uint8`` images, on the 0..1 scale.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, C, H, W)

    Examples
    --------
    >>> imgs = np.array([[[[0, 255]]], [[[0, 255]]]], dtype=np.uint8)  # (2, 1, 1, 2)
    >>> channel_stats(imgs)
    ((0.5,), (0.5,))
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {images.shape}")
    means, stds = [], []
    count = images.shape[0] * images.shape[2] * images.shape[3]
    values = np.arange(256, dtype=np.int64)
    for c in range(images.shape[1]):
        # a histogram of the 256 byte values gives the exact moments without an int64 copy of the images
        hist = np.bincount(np.ascontiguousarray(images[:, c]).reshape(-1), minlength=256).astype(np.int64)
        s1 = int((hist * values).sum())
        s2 = int((hist * values * values).sum())
        # Exact integer moments; only the final division and sqrt are floating point.
        mean = s1 / count
        var = max(s2 * count - s1 * s1, 0) / (count * count)
        means.append(mean / 255.0)
        stds.append(max(var ** 0.5, 1e-3) / 255.0)
    return tuple(means), tuple(stds)


class ArrayImageDataset(Dataset):
    """``(x, y)`` pairs from ``uint8`` images; ``x`` is float32 ``(C, H, W)``, normalised.

    Parameters
    ----------
    images : ndarray or tensor of uint8, shape (N, C, H, W)
    labels : sequence of int, length N
    mean, std : sequence of float, one per channel, on the 0..1 scale
        ``x = (images / 255 - mean) / std``.

    Attributes
    ----------
    images : torch.Tensor, uint8 (N, C, H, W)
    targets : torch.Tensor, int64 (N,)
    """

    def __init__(self, images, labels, mean: Sequence[float], std: Sequence[float]):
        images = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if targets.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(targets.shape)}")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean/std need {images.shape[1]} channels, got {len(mean)}/{len(std)}")
        self.images = images
        self.targets = targets
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # (C, 1, 1) so they broadcast over (..., C, H, W); x = u8 * scale + shift
        std_t = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1) / std_t

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        x = self.images[index].to(torch.float32) * self._scale + self._shift
        return x, int(self.targets[index])

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``(x (B, C, H, W) float32, y (B,) int64)`` for a batch of indices at once."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[idx].to(torch.float32) * self._scale + self._shift
        return x, self.targets[idx]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as normalised float32 images and int64 labels."""
        return self.get_batch(torch.arange(len(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, shape={tuple(self.images.shape[1:])})"
