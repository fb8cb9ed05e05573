"""The run folder: the one contract between training and everything that reads a run.

A run folder looks like this (see the README, "Run folder"):

``run.json``
    ``{"format": "blockout-run", "format_version": 1, "name", "created", "versions",
    "config", "dataset", "topology"}``. ``dataset`` holds ``class_names`` (list of str),
    ``wnids`` (list of str or null per class, or null), ``coarse_names`` and ``coarse_labels``
    (or null), ``hierarchy`` (nested groups, or null), ``input_shape``, ``train_size``,
    ``test_size``. ``topology`` holds ``node_sets`` (``name``, ``size``, ``clusters``,
    ``trainable``, ``role`` in {"trunk", "hidden", "classes"}, ``membership``) and
    ``layers`` (``name``, ``in_set``, ``out_set`` (node-set names or null for plain layers),
    ``in_features``, ``out_features``, ``mask``, ``mode``, ``role`` in {"hidden", "classifier"}).
``metrics.jsonl``
    One JSON object per evaluation (``step``, ``epoch``, ``train_loss``, ``train_acc``,
    ``test_loss``, ``test_acc``, ``lr``, ``seconds``, ``probs`` = per node set summary).
``snapshots/index.json`` and ``snapshots/step_00001234.npz``
    Each snapshot holds ``probs__<node set>`` arrays ``(size, clusters)`` and, at some steps
    (at least the best and the last), ``weight__<layer>`` ``(out, in)`` and ``bias__<layer>``
    ``(out,)``; optional ``multiplier__<layer>`` arrays (budget multipliers). The index lists
    ``{"step", "epoch", "file", "has_weights", "tags"}`` per snapshot, ``tags`` drawn from
    {"best", "last"}.
``train_state.pt``
    Everything to resume; loads with ``torch.load(weights_only=True)``. Not read here.

Everything is written atomically (temporary file in the same folder, then ``os.replace``), so
a killed run never leaves a half-written file. Snapshots are ``.npz`` read with
``allow_pickle=False``: loading never executes code and needs no torch.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from analysis.errors import RunFormatError

FORMAT = "blockout-run"
FORMAT_VERSION = 1
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_INDEX = "index.json"
TRAIN_STATE = "train_state.pt"

PROBS_PREFIX = "probs__"
WEIGHT_PREFIX = "weight__"
BIAS_PREFIX = "bias__"
MULTIPLIER_PREFIX = "multiplier__"


def snapshot_filename(step: int) -> str:
    """File name of the snapshot taken at ``step``.

    >>> snapshot_filename(42)
    'step_00000042.npz'
    """
    return f"step_{int(step):08d}.npz"


# ---------------------------------------------------------------------------------------------
# atomic writes


def _file_mode() -> int:
    # mkstemp creates files 0600; give finished files the mode a plain open() would (0666 & ~umask),
    # so a run folder can be shared or served. Reading the umask means setting it: set it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), _file_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic :func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN is refused: it is not JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False, ensure_ascii=False) + "\n")


def append_jsonl(path: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """Append one JSON line atomically (the whole file is rewritten through a temporary file).

    Metrics files stay small (one line per evaluation), so rewriting keeps the guarantee that
    a reader never sees half a line.
    """
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    line = json.dumps(obj, allow_nan=False, ensure_ascii=False).encode("utf-8") + b"\n"
    atomic_write_bytes(path, old + line)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically save plain numeric arrays as an uncompressed ``.npz``."""
    buf = io.BytesIO()
    clean = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"array {key!r} has dtype object; snapshots hold plain numbers only")
        clean[key] = arr
    np.savez(buf, **clean)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# reading


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file, turning every failure into a one-line :class:`RunFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise RunFormatError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFormatError(f"{path} is not valid JSON ({exc})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file; a missing file is an empty list, a bad line is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunFormatError(f"{path}, line {no}, is not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise RunFormatError(f"{path}, line {no}, is not a JSON object")
        out.append(obj)
    return out


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` without ever unpickling (``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise RunFormatError(f"snapshot not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise RunFormatError(f"{path} is not a readable snapshot ({exc})") from None


def split_snapshot(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Group snapshot arrays by kind.

    >>> out = split_snapshot({"probs__h1": np.zeros((2, 3)), "weight__fc1": np.zeros((2, 2))})
    >>> sorted(out["probs"]), sorted(out["weight"]), out["bias"]
    (['h1'], ['fc1'], {})
    """
    groups: dict[str, dict[str, np.ndarray]] = {"probs": {}, "weight": {}, "bias": {}, "multiplier": {}}
    for key, value in arrays.items():
        for kind, prefix in (
            ("probs", PROBS_PREFIX),
            ("weight", WEIGHT_PREFIX),
            ("bias", BIAS_PREFIX),
            ("multiplier", MULTIPLIER_PREFIX),
        ):
            if key.startswith(prefix):
                groups[kind][key[len(prefix):]] = value
                break
    return groups


def snapshot_arrays(
    probs: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None = None,
    biases: Mapping[str, np.ndarray] | None = None,
    multipliers: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Inverse of :func:`split_snapshot`: prefix the arrays for saving."""
    out: dict[str, np.ndarray] = {}
    for prefix, group in (
        (PROBS_PREFIX, probs),
        (WEIGHT_PREFIX, weights or {}),
        (BIAS_PREFIX, biases or {}),
        (MULTIPLIER_PREFIX, multipliers or {}),
    ):
        for name, arr in group.items():
            out[prefix + name] = np.asarray(arr)
    return out


def is_run_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a ``run.json``."""
    return (Path(path) / RUN_JSON).is_file()


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Run folders directly under ``root`` (or ``root`` itself), sorted by name."""
    root = Path(root)
    if is_run_folder(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if is_run_folder(p))


def iter_snapshot_entries(run_dir: str | os.PathLike) -> Iterable[dict]:
    """Entries of ``snapshots/index.json`` sorted by step (empty when there is none)."""
    index = Path(run_dir) / SNAPSHOT_DIR / SNAPSHOT_INDEX
    if not index.is_file():
        return []
    data = read_json(index, "snapshot index")
    entries = data.get("snapshots") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RunFormatError(f"{index} has no 'snapshots' list")
    return sorted(entries, key=lambda e: int(e["step"]))
