"""Training-time augmentation on whole batches: random crop with padding and horizontal flip.

The paper's CIFAR baseline trains with random crops (zero-padding, then a crop of the original
size) and horizontal flips. Here both act on a normalised batch tensor ``(B, C, H, W)`` at once
(no per-image Python), and every draw comes from a generator seeded by ``(seed, epoch, batch)``:
an augmented batch is a pure function of the run's seed and its position, so a resumed run
sees exactly the batches an uninterrupted one would, and the global RNG (initialisation,
membership sampling) is not touched -- runs without augmentation are unchanged.

Per-dataset defaults (``--augment auto``): none for the synthetic data (its images are the
hierarchy's prototypes plus noise, where a shift changes nothing the noise does not), crop-flip
for CIFAR, Fashion-MNIST and image folders, crop (no flip: a mirrored 2 or 5 is not a digit)
for MNIST.
"""

from __future__ import annotations

import numpy as np
import torch

#: Accepted ``--augment`` values.
AUGMENTS = ("auto", "none", "crop", "crop-flip")
_DEFAULTS = {"synthetic": "none", "mnist": "crop"}


def resolve_augment(augment: str, dataset: str) -> str:
    """The augmentation a run uses: ``augment`` itself, or the dataset's default for ``auto``.

    >>> resolve_augment("auto", "fashion-mnist"), resolve_augment("auto", "mnist"), resolve_augment("none", "cifar10")
    ('crop-flip', 'crop', 'none')
    >>> resolve_augment("auto", "synthetic")
    'none'
    """
    if augment != "auto":
        return augment
    return _DEFAULTS.get(dataset, "crop-flip")


def crop_padding(side: int) -> int:
    """Padding of the random crop: 4 pixels for 32x32 and larger images, 2 for smaller ones (28x28).

    >>> crop_padding(32), crop_padding(28), crop_padding(8)
    (4, 2, 1)
    """
    if side >= 32:
        return 4
    return max(1, min(2, side // 8))


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, epoch, batch)``."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(batch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def augment_batch(x: torch.Tensor, generator: torch.Generator, *, pad: int, flip: bool,
                  fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Randomly crop (after padding by ``pad`` with ``fill``) and optionally mirror each image.

    Parameters
    ----------
    x : tensor (B, C, H, W)
        A normalised batch (any device).
    generator : torch.Generator
        CPU generator for the offsets and flips (see :func:`batch_generator`).
    pad : int
        Padding on every side; offsets are drawn uniformly from ``0 .. 2 * pad``. 0 = no crop.
    flip : bool
        Mirror each image left-right with probability 1/2.
    fill : float or tensor broadcastable to (C, 1, 1)
        Value of the padding, e.g. the normalised value of a black pixel.

    Returns
    -------
    tensor (B, C, H, W), a new tensor (``x`` is not modified).

    Examples
    --------
    >>> x = torch.arange(16.).view(1, 1, 4, 4)
    >>> torch.equal(augment_batch(x, torch.Generator().manual_seed(0), pad=0, flip=False), x)
    True
    >>> y = augment_batch(x, torch.Generator().manual_seed(1), pad=1, flip=True, fill=-1.0)
    >>> tuple(y.shape), bool(((y == -1) | torch.isin(y, x)).all())
    ((1, 1, 4, 4), True)
    """
    b, c, h, w = x.shape
    if pad <= 0 and not flip:
        return x.clone()
    dev = x.device
    # draws in a fixed order (offsets, then flips), so the batch depends on the generator alone
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator) if pad > 0 else torch.zeros(2, b, dtype=torch.long)
    mirror = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    hp, wp = h + 2 * pad, w + 2 * pad
    src = x
    if pad > 0:
        fill_t = torch.as_tensor(fill, dtype=x.dtype, device=dev)
        src = fill_t.expand(c, 1, 1).expand(b, c, hp, wp).clone()
        src[:, :, pad:pad + h, pad:pad + w] = x
    # crop and mirror in one gather over the flattened (padded) image
    j = torch.arange(w)
    cols = offsets[1][:, None] + torch.where(mirror[:, None], w - 1 - j, j)  # (B, W)
    rows = offsets[0][:, None] + torch.arange(h)  # (B, H)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).to(dev)
    out = torch.gather(src.reshape(b, c, hp * wp), 2, index.expand(b, c, h * w))
    return out.view(b, c, h, w)
