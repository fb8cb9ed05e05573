"""CIFAR-10 / CIFAR-100 from the official "python version" folders, without running pickle code.

The files are Python 2 pickles of dicts holding byte strings, ints, lists and numpy arrays.
They are read with a restricted unpickler whose ``find_class`` resolves exactly the globals that
rebuild a numpy array (``numpy.core.multiarray._reconstruct`` — or its numpy 2 spelling
``numpy._core.multiarray._reconstruct`` — ``numpy.ndarray`` and ``numpy.dtype``) and refuses
everything else, so a tampered file cannot execute code. Layouts::

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from blockout.errors import UserError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
DOWNLOAD_HINT = "download the python version from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it there"


def _allowed_globals() -> dict[tuple[str, str], object]:
    # Resolve the objects here, ourselves: the unpickler never imports by a name from the file.
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, nothing else."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key in self._allowed:
            return self._allowed[key]
        raise UserError(
            f"{self._source}: refusing to load: the file asks for {module}.{name}, which a CIFAR "
            "file never contains (it may have been tampered with)"
        )

    def persistent_load(self, pid):
        raise UserError(f"{self._source}: refusing to load: the file uses persistent ids")


def safe_unpickle(path: str | Path) -> object:
    """Unpickle a CIFAR file allowing only numpy-array globals.

    Raises
    ------
    UserError
        The file asks for any other global, or is not a readable pickle.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except UserError:
        raise
    except Exception as exc:  # truncated or garbage file: any unpickling failure
        raise UserError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None


def _key(d: dict, name: str, path: Path):
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise UserError(f"{path}: malformed CIFAR file: no {name!r} entry (has {sorted(map(_text, d))[:6]})")


def _text(v) -> str:
    return v.decode("latin1") if isinstance(v, bytes) else str(v)


def _load_dict(path: Path) -> dict:
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: malformed CIFAR file: expected a dict, got {type(obj).__name__}")
    return obj


def _images(d: dict, path: Path) -> np.ndarray:
    data = _key(d, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: malformed CIFAR file: 'data' should be uint8 (N, 3072), got {desc}")
    return np.ascontiguousarray(data).reshape(-1, 3, 32, 32)  # rows are R, G, B planes of 32x32


def _labels(d: dict, name: str, path: Path, n: int, num_classes: int) -> np.ndarray:
    raw = _key(d, name, path)
    try:
        labels = np.asarray(raw, dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: malformed CIFAR file: {name!r} is not a list of integers") from None
    if labels.shape != (n,):
        raise UserError(f"{path}: malformed CIFAR file: {n} images but {name!r} has shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path}: malformed CIFAR file: {name!r} outside 0..{num_classes - 1}")
    return labels


def _names(d: dict, name: str, path: Path) -> list[str]:
    raw = _key(d, name, path)
    if not isinstance(raw, list) or not all(isinstance(v, (bytes, str)) for v in raw):
        raise UserError(f"{path}: malformed CIFAR meta file: {name!r} is not a list of names")
    return [_text(v) for v in raw]


def _folder(data_dir, dirname: str, files: tuple[str, ...], dataset: str) -> Path:
    expected = f"{dataset}: expected the {dirname!r} folder (files {', '.join(files)})"
    if data_dir is None:
        raise UserError(f"{expected}; pass --data-dir pointing at the folder that contains it; {DOWNLOAD_HINT}")
    root = Path(data_dir).expanduser()
    folder = root if root.name == dirname else root / dirname
    if not folder.is_dir():
        raise UserError(f"{expected} in {root}; {DOWNLOAD_HINT}")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{expected} in {root}; missing {', '.join(missing)} in {folder}")
    return folder


def read_cifar10(data_dir) -> dict:
    """Read CIFAR-10.

    Returns
    -------
    dict
        ``train_x``, ``test_x`` uint8 ``(N, 3, 32, 32)``; ``train_y``, ``test_y`` int64; ``class_names``.
    """
    folder = _folder(data_dir, CIFAR10_DIR, CIFAR10_FILES, "cifar10")
    meta_path = folder / "batches.meta"
    names = _names(_load_dict(meta_path), "label_names", meta_path)
    if len(names) != 10:
        raise UserError(f"{meta_path}: malformed CIFAR-10 meta file: {len(names)} label names, expected 10")

    def split(files):
        xs, ys = [], []
        for f in files:
            p = folder / f
            d = _load_dict(p)
            x = _images(d, p)
            xs.append(x)
            ys.append(_labels(d, "labels", p, len(x), 10))
        return np.concatenate(xs), np.concatenate(ys)

    train_x, train_y = split(CIFAR10_FILES[:5])
    test_x, test_y = split(("test_batch",))
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "class_names": names}


def read_cifar100(data_dir) -> dict:
    """Read CIFAR-100 with its coarse labels.

    Returns
    -------
    dict
        ``train_x``, ``test_x`` uint8 ``(N, 3, 32, 32)``; ``train_y``, ``test_y`` int64 fine labels;
        ``class_names`` (100), ``coarse_names`` (20), ``fine_to_coarse`` (100 ints).
    """
    folder = _folder(data_dir, CIFAR100_DIR, CIFAR100_FILES, "cifar100")
    meta_path = folder / "meta"
    meta = _load_dict(meta_path)
    fine = _names(meta, "fine_label_names", meta_path)
    coarse = _names(meta, "coarse_label_names", meta_path)
    if len(fine) != 100 or len(coarse) != 20:
        raise UserError(
            f"{meta_path}: malformed CIFAR-100 meta file: {len(fine)} fine and {len(coarse)} coarse names, "
            "expected 100 and 20"
        )
    out: dict = {"class_names": fine, "coarse_names": coarse}
    fine_to_coarse = np.full(100, -1, dtype=np.int64)
    for split in ("train", "test"):
        p = folder / split
        d = _load_dict(p)
        x = _images(d, p)
        y = _labels(d, "fine_labels", p, len(x), 100)
        yc = _labels(d, "coarse_labels", p, len(x), 20)
        for f, c in zip(y.tolist(), yc.tolist()):
            if fine_to_coarse[f] == -1:
                fine_to_coarse[f] = c
            elif fine_to_coarse[f] != c:
                raise UserError(f"{p}: malformed CIFAR-100 file: class {fine[f]!r} has two coarse labels")
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    if (fine_to_coarse < 0).any():
        # Classes absent from both splits (only in tiny test files): fall back on the shipped table.
        from blockout.data.hierarchy import cifar_labels

        table = cifar_labels()
        known = dict(zip(table["fine_label_names"], table["fine_to_coarse"]))
        for i in np.nonzero(fine_to_coarse < 0)[0]:
            if fine[i] not in known:
                raise UserError(f"{meta_path}: class {fine[i]!r} has no coarse label in the data")
            fine_to_coarse[i] = known[fine[i]]
    out["fine_to_coarse"] = fine_to_coarse.tolist()
    return out
