"""Image folders: one subfolder per class, images read lazily with Pillow (no torchvision).

Layouts::

    root/<class>/*.png|jpg|...                     one pool, split by a seeded per-class draw
    root/train/<class>/...  root/val|test/<class>/...   an explicit split

Class folders named like WordNet ids (``n02129604``) are reported as such (``wnids``). Images are
converted to RGB, resized so the shorter side is ``image_size``, centre-cropped to a square and
normalised with the usual ImageNet channel statistics.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from blockout.errors import UserError

WNID_RE = re.compile(r"^n\d{8}$")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})
# Channel statistics of ImageNet (0..1 scale): the usual convention for natural-image folders.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_NAMES = ("train",)
TEST_NAMES = ("val", "test")


def is_wnid(name: str) -> bool:
    """True for WordNet-id folder names.

    >>> is_wnid("n02129604"), is_wnid("tiger"), is_wnid("n0212960")
    (True, False, False)
    """
    return bool(WNID_RE.match(name))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")),
        key=lambda p: str(p.relative_to(folder)),
    )


def load_image(path: Path, image_size: int) -> torch.Tensor:
    """Read one image as uint8 ``(3, S, S)``: RGB, shorter side resized to S, centre crop."""
    from PIL import Image, UnidentifiedImageError

    from analysis.limits import hint, limit

    cap = limit("max_image_pixels")
    Image.MAX_IMAGE_PIXELS = cap  # Pillow's own bomb check, at our limit
    try:
        with warnings.catch_warnings():  # Pillow warns between 1x and 2x its limit: we refuse instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im_file = Image.open(path)
        with im_file as im:  # reads the header only: the size is known before decoding
            w, h = im.size
            if w * h > cap:
                raise UserError(f"imagefolder: image {path} has {w} x {h} pixels, too many "
                                f"{hint('max_image_pixels')}")
            im = im.convert("RGB")
            w, h = im.size
            scale = image_size / min(w, h)
            nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - image_size) // 2, (nh - image_size) // 2
            im = im.crop((left, top, left + image_size, top + image_size))
            arr = np.asarray(im, dtype=np.uint8)  # (S, S, 3)
    except Image.DecompressionBombError:
        raise UserError(f"imagefolder: image {path} is a decompression bomb (more than {cap} pixels) "
                        f"{hint('max_image_pixels')}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UserError(f"imagefolder: cannot read image {path} ({str(exc).splitlines()[0][:160]})") from None
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


class ImageFolderDataset(Dataset):
    """Lazy ``(x, y)`` pairs: ``x`` float32 ``(3, S, S)`` normalised, ``y`` int.

    Parameters
    ----------
    files : sequence of Path
    labels : sequence of int
    image_size : int
    mean, std : per-channel statistics on the 0..1 scale
    """

    def __init__(self, files: Sequence[Path], labels: Sequence[int], image_size: int = 32,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files = [Path(f) for f in files]
        self.targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        std_t = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1) / std_t

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        x = load_image(self.files[index], self.image_size).to(torch.float32) * self._scale + self._shift
        return x, int(self.targets[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, image_size={self.image_size})"


def _collect(folder: Path, class_names: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for i, name in enumerate(class_names):
        sub = folder / name
        imgs = _images_in(sub) if sub.is_dir() else []
        files += imgs
        labels += [i] * len(imgs)
    return files, labels


def scan_image_folder(root, *, test_fraction: float = 0.2, seed: int = 0):
    """Find classes and image files.

    Returns
    -------
    class_names, (train_files, train_labels), (test_files, test_labels)

    Raises
    ------
    UserError
        The folder is missing, has no class subfolders, or a class has no images.
    """
    expected = "imagefolder: expected one subfolder per class holding images (or train/ and val/ or test/ folders of them)"
    if root is None:
        raise UserError(f"{expected}; pass --data-dir")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{expected} in {root}, which is not a folder")
    train_dir = next((root / n for n in TRAIN_NAMES if (root / n).is_dir()), None)
    test_dir = next((root / n for n in TEST_NAMES if (root / n).is_dir()), None)
    if train_dir is not None and test_dir is not None:
        class_names = [p.name for p in _class_dirs(train_dir)]
        if not class_names:
            raise UserError(f"{expected}; {train_dir} has no class subfolders")
        extra = sorted({p.name for p in _class_dirs(test_dir)} - set(class_names))
        if extra:
            raise UserError(f"imagefolder: {test_dir} has classes missing from {train_dir}: {', '.join(extra[:5])}")
        train = _collect(train_dir, class_names)
        test = _collect(test_dir, class_names)
        empty = [c for i, c in enumerate(class_names) if i not in set(train[1])]
        if empty:
            raise UserError(f"imagefolder: no images for class {empty[0]!r} in {train_dir / empty[0]}")
        if not test[0]:
            raise UserError(f"imagefolder: no images in {test_dir}")
        return class_names, train, test
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"imagefolder: test_fraction must be between 0 and 1, got {test_fraction!r}")
    class_names = [p.name for p in _class_dirs(root)]
    if not class_names:
        raise UserError(f"{expected} in {root}, which has no subfolders")
    train_f, train_y, test_f, test_y = [], [], [], []
    rng = np.random.Generator(np.random.PCG64(seed))
    for i, name in enumerate(class_names):
        imgs = _images_in(root / name)
        if len(imgs) < 2:
            raise UserError(
                f"imagefolder: class folder {root / name} has {len(imgs)} image(s); need at least 2 to split "
                f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        order = rng.permutation(len(imgs))
        n_test = min(len(imgs) - 1, max(1, round(test_fraction * len(imgs))))
        test_f += [imgs[j] for j in sorted(order[:n_test])]
        test_y += [i] * n_test
        train_f += [imgs[j] for j in sorted(order[n_test:])]
        train_y += [i] * (len(imgs) - n_test)
    return class_names, (train_f, train_y), (test_f, test_y)


def wnids_for(class_names: Sequence[str]) -> list | None:
    """WordNet id per class where the folder name is one, else None; None when none is.

    >>> wnids_for(["n02129604", "cat"]), wnids_for(["cat"])
    (['n02129604', None], None)
    """
    ids = [c if is_wnid(c) else None for c in class_names]
    return ids if any(ids) else None
