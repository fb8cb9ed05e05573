"""MNIST-family datasets from the standard IDX files (Fashion-MNIST, MNIST), read once into memory.

Layout of ``--data-dir`` (each file raw or gzip-compressed, ``NAME`` or ``NAME.gz``)::

    train-images-idx3-ubyte   train-labels-idx1-ubyte   (60 000 images)
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte    (10 000 images)

An IDX file is a 4-byte magic (two zero bytes, a type code -- 0x08 for unsigned bytes -- and the
number of dimensions), one big-endian uint32 per dimension, then the data. The declared size is
checked against the file (or, for ``.gz``, against what the stream delivers) before anything is
allocated, so a malformed or truncated file gives one line naming it, never a numpy error.

Fashion-MNIST's default folder is where Debian's ``dataset-fashion-mnist`` package installs it.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from blockout.errors import UserError

#: Where ``apt-get install dataset-fashion-mnist`` puts the files (``dpkg -L dataset-fashion-mnist``).
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

#: Zalando's class names, in label order.
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
#: Digit classes named by their words, so that they resolve to WordNet's number synsets.
MNIST_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

#: Coarse groups of Fashion-MNIST (ours, not Zalando's): garments, footwear, bags -- the three
#: WordNet branches the classes fall under (clothing, footwear, bag).
FASHION_MNIST_COARSE = {
    "clothing": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Shirt"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "bag": ["Bag"],
}

SPLITS = {"train": "train", "test": "t10k"}
#: Largest IDX payload accepted (well above ImageNet-sized MNIST variants; guards a corrupt header).
MAX_IDX_BYTES = 4 << 30

INSTALL_HINT = {
    "fashion-mnist": "install it with: apt-get update && apt-get install -y dataset-fashion-mnist "
                     f"(files go to {FASHION_MNIST_DEBIAN_DIR}), or pass --data-dir DIR holding the IDX files",
    "mnist": "pass --data-dir DIR holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
             "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]",
}


def default_data_dir(name: str) -> str | None:
    """The folder used when ``--data-dir`` is not given (Fashion-MNIST: Debian's package folder).

    >>> default_data_dir("fashion-mnist"), default_data_dir("mnist")
    ('/usr/share/datasets/fashion-mnist', None)
    """
    return FASHION_MNIST_DEBIAN_DIR if name == "fashion-mnist" else None


def _parse_header(head: bytes, source: str) -> tuple[int, ...]:
    """Dimensions from the magic + dimension words (``head`` holds at least the 4-byte magic)."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise UserError(f"{source}: not an IDX file (bad magic number {head[:4].hex() or 'empty'})")
    if head[2] != 0x08:
        raise UserError(f"{source}: IDX data type 0x{head[2]:02x} is not supported (expected 0x08, unsigned bytes)")
    ndim = head[3]
    if not 1 <= ndim <= 4:
        raise UserError(f"{source}: IDX file declares {ndim} dimensions (expected 1 to 4)")
    if len(head) < 4 + 4 * ndim:
        raise UserError(f"{source}: truncated IDX header ({len(head)} bytes, need {4 + 4 * ndim})")
    return tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (raw or ``.gz``) into a numpy ``uint8`` array.

    Raises
    ------
    UserError
        Missing or unreadable file, bad magic, unsupported type, or a size that does not match
        the header (truncated or trailing data) -- one line naming the file.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> _ = open(p, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    source = str(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                magic = f.read(4)
                head = magic + f.read(4 * magic[3]) if len(magic) == 4 else magic
                shape = _parse_header(head, source)
                size = math.prod(shape)  # Python ints: a corrupt header cannot overflow
                if size > MAX_IDX_BYTES:
                    raise UserError(f"{source}: IDX header declares {shape}, {size} bytes: too large to be real")
                data = f.read(size)
                extra = f.read(1)
        else:
            file_size = path.stat().st_size
            with open(path, "rb") as f:
                magic = f.read(4)
                head = magic + f.read(4 * magic[3]) if len(magic) == 4 else magic
                shape = _parse_header(head, source)
                size = math.prod(shape)  # Python ints: a corrupt header cannot overflow
                expected = len(head) + size
                if file_size != expected:
                    what = "truncated" if file_size < expected else "has trailing data"
                    raise UserError(f"{source}: IDX file {what}: the header declares {shape} "
                                    f"({expected} bytes with the header), the file has {file_size}")
                data = f.read(size)
                extra = b""
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{source}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip: truncated stream, bad CRC, not gzip
        raise UserError(f"{source}: cannot read ({type(exc).__name__}: {exc})") from None
    if len(data) != size:
        raise UserError(f"{source}: IDX file truncated: the header declares {shape} ({size} data bytes), "
                        f"the file holds {len(data)}")
    if extra:
        raise UserError(f"{source}: IDX file has trailing data after the {shape} the header declares")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz`` (the raw file wins), or None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx_dataset(name: str, data_dir: str | Path | None) -> dict:
    """Both splits of an IDX dataset: ``train_x`` uint8 (N, 1, H, W), ``train_y`` int64, ``test_x``, ``test_y``.

    Raises
    ------
    UserError
        A file is missing (the message says where the files were expected and how to get them)
        or malformed, or images and labels disagree.
    """
    folder = Path(data_dir) if data_dir is not None else None
    if folder is None:
        default = default_data_dir(name)
        if default is None:
            raise UserError(f"{name}: --data-dir is required; {INSTALL_HINT[name]}")
        folder = Path(default)
    if not folder.is_dir():
        raise UserError(f"{name}: data folder {folder} not found; {INSTALL_HINT[name]}")
    out = {}
    for split, prefix in SPLITS.items():
        files = {}
        for kind, idx in (("images", "idx3"), ("labels", "idx1")):
            stem = f"{prefix}-{kind}-{idx}-ubyte"
            found = find_idx_file(folder, stem)
            if found is None:
                raise UserError(f"{name}: {stem}[.gz] not found in {folder}; {INSTALL_HINT[name]}")
            files[kind] = found
        images, labels = read_idx(files["images"]), read_idx(files["labels"])
        if images.ndim != 3:
            raise UserError(f"{files['images']}: expected images (N, H, W), the header declares {images.shape}")
        if labels.ndim != 1:
            raise UserError(f"{files['labels']}: expected labels (N,), the header declares {labels.shape}")
        if len(images) != len(labels):
            raise UserError(f"{name} {split}: {len(images)} images ({files['images'].name}) but "
                            f"{len(labels)} labels ({files['labels'].name})")
        if len(labels) and int(labels.max()) > 9:
            raise UserError(f"{files['labels']}: label {int(labels.max())} out of range (10 classes, 0..9)")
        out[f"{split}_x"] = images[:, None]  # (N, 1, H, W), a view: no copy
        out[f"{split}_y"] = labels.astype(np.int64)
    if out["train_x"].shape[2:] != out["test_x"].shape[2:]:
        raise UserError(f"{name}: train images are {out['train_x'].shape[2:]} but test images "
                        f"{out['test_x'].shape[2:]}")
    return out
