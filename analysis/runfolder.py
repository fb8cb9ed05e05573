"""Safe I/O for run folders: atomic writes, and confined, bounded reads.

The contract itself (what ``run.json``, ``metrics.jsonl`` and ``snapshots/`` hold, file and array
names, validation) lives in :mod:`analysis.runformat`; this module is the layer below it. Its old
names (``RUN_JSON``, ``snapshot_filename``, ``iter_snapshot_entries``, ...) still resolve here,
from :mod:`analysis.runformat`.

Everything is written atomically (temporary file in the same folder, then ``os.replace``), so
a killed run never leaves a half-written file. Snapshots are ``.npz`` read with
``allow_pickle=False``: loading never executes code and needs no torch.

Everything is read through one confined, bounded reader: :func:`confine` keeps every path inside
the run folder (no ``..``, absolute paths or links out; the same message whether or not an
outside file exists), :func:`read_json` / :func:`read_jsonl` bound size and nesting and refuse
duplicate keys and NaN, and :class:`NpzFile` checks each array's ``.npy`` header (dtype, shape,
stored size) against :mod:`analysis.limits` and the run's topology before inflating it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat as statmod
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

import numpy as np

from analysis import faults
from analysis.errors import RunFormatError
from analysis.limits import hint, limit

#: Names of the contract that :mod:`analysis.runformat` defines; they resolve here for old callers.
_CONTRACT_NAMES = frozenset({
    "FORMAT", "FORMAT_VERSION", "RUN_JSON", "METRICS", "SNAPSHOT_DIR", "SNAPSHOT_INDEX", "TRAIN_STATE",
    "PROBS_PREFIX", "WEIGHT_PREFIX", "BIAS_PREFIX", "MULTIPLIER_PREFIX", "snapshot_filename",
    "split_snapshot", "snapshot_arrays", "is_run_folder", "find_runs"})


def __getattr__(name: str) -> Any:
    # runformat imports this module, so its names are looked up lazily (PEP 562), not imported here
    if name in _CONTRACT_NAMES:
        from analysis import runformat

        return getattr(runformat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        faults.point("write", path.name)  # tests kill here: the new file is written, not yet in place
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
# reading: confined to the run folder, bounded before anything is allocated


def confine(root: str | os.PathLike, rel: Any, what: str = "path") -> Path:
    """``root / rel`` resolved, required to stay inside ``root`` (no ``..``, absolute paths or links out).

    The message does not depend on whether the target exists, so a hostile run folder cannot
    probe the reader's file system.

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> confine(d, "snapshots/step_00000001.npz").name
    'step_00000001.npz'
    >>> confine(d, "../etc/passwd", "snapshot file")
    Traceback (most recent call last):
    ...
    analysis.errors.RunFormatError: snapshot file '../etc/passwd' points outside the run folder
    """
    text = rel if isinstance(rel, str) else None
    bad = RunFormatError(f"{what} {rel!r} points outside the run folder")
    if text is None:
        raise RunFormatError(f"{what} {rel!r} is not a file name")
    if not text or "\x00" in text or "\\" in text or len(text) > 4096:
        raise bad
    pure = PurePosixPath(text)
    if pure.is_absolute() or ".." in pure.parts:
        raise bad
    base = Path(os.path.realpath(root))
    real = Path(os.path.realpath(base / pure))
    if real != base and base not in real.parents:
        raise bad
    return real


def _read_bounded(path: Path, limit_name: str, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit(limit_name)`` bytes.

    Opened non-blocking so that a FIFO planted in a run folder cannot hang the reader; devices,
    folders and sockets are refused before a byte is read.
    """
    cap = limit(limit_name)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise RunFormatError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise RunFormatError(f"{what} {path} cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not statmod.S_ISREG(st.st_mode):
            raise RunFormatError(f"{what} {path} is not a regular file")
        if st.st_size > cap:
            raise RunFormatError(f"{what} {path} has {st.st_size} bytes, too large {hint(limit_name)}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(min(cap, st.st_size) + 1)  # read(n) allocates n bytes up front
    finally:
        os.close(fd)
    if len(data) > cap:  # grew while we read
        raise RunFormatError(f"{what} {path} is too large {hint(limit_name)}")
    return data


class _JsonRefused(ValueError):
    """A JSON document that is well-formed text but not something a run folder may hold."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:  # json would keep the last silently: a hierarchy group would vanish
            raise _JsonRefused(f"duplicate key {key!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise _JsonRefused(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonRefused(f"number {text[:20]!r} overflows to infinity")
    return value


def _depth(obj: Any, cap: int) -> int:
    """Nesting depth of a parsed document, walked without recursion; stops past ``cap``."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if deepest > cap:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def parse_json(text: str | bytes, source: str) -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity, bounded nesting; errors are one line.

    >>> parse_json('{"a": [1, 2]}', "x.json")
    {'a': [1, 2]}
    >>> parse_json('{"a": 1, "a": 2}', "x.json")
    Traceback (most recent call last):
    ...
    analysis.errors.RunFormatError: x.json is not valid JSON (duplicate key 'a')
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise RunFormatError(f"{source} is nested too deeply {hint('max_json_depth')}") from None
    except UnicodeDecodeError as exc:
        raise RunFormatError(f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RunFormatError(f"{source} is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # our refusals, and ints longer than Python converts
        raise RunFormatError(f"{source} is not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    if _depth(obj, limit("max_json_depth")) > limit("max_json_depth"):
        raise RunFormatError(f"{source} is nested too deeply {hint('max_json_depth')}")
    return obj


def read_json(path: str | os.PathLike, what: str = "file", root: str | os.PathLike | None = None) -> Any:
    """Read a JSON file, turning every failure into a one-line :class:`RunFormatError`.

    ``root``: the folder the file must stay inside (a run folder); the size is bounded by
    ``BLOCKOUT_MAX_JSON_BYTES`` and the nesting by ``BLOCKOUT_MAX_JSON_DEPTH``.
    """
    path = Path(path)
    if root is not None:
        path = confine(root, os.path.relpath(path, root), what)
    return parse_json(_read_bounded(path, "max_json_bytes", what), str(path))


def read_jsonl(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[dict]:
    """Read a JSON-lines file; a missing file is an empty list, a bad line is an error.

    Every line is checked by :class:`analysis.runformat.MetricsRecord` (``step``, ``epoch``,
    losses, accuracies, ``lr``, ``seconds`` are numbers or null); NaN and Infinity are refused
    (they are not JSON).
    """
    from analysis.runformat import check_metrics_line

    path = Path(path)
    if root is not None:
        path = confine(root, os.path.relpath(path, root), "metrics file")
    if not path.exists():
        return []
    data = _read_bounded(path, "max_jsonl_bytes", "metrics file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunFormatError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        obj = parse_json(line, f"{path}, line {no},")
        if not isinstance(obj, dict):
            raise RunFormatError(f"{path}, line {no}, is not a JSON object")
        out.append(check_metrics_line(obj, f"{path}, line {no}"))
    return out


# ---- snapshots (.npz): headers parsed and checked before any array is read


def _zip_entry_count(fh, label: str) -> int:
    """Entries a zip's end record declares, read before :class:`zipfile.ZipFile` builds one
    object per entry (a few MB of central directory could otherwise cost gigabytes)."""
    try:
        end = zipfile._EndRecData(fh)  # noqa: SLF001 - the stdlib's own end-record parser
    except (OSError, EOFError, struct.error) as exc:
        raise RunFormatError(f"{label} is not a readable zip file ({exc})") from None
    if end is None:
        raise RunFormatError(f"{label} is not a readable zip file (no end-of-archive record)")
    fh.seek(0)
    return int(end[zipfile._ECD_ENTRIES_TOTAL])  # noqa: SLF001


_NUMERIC_KINDS = "biuf"


class NpzFile:
    """A ``.npz`` read safely: headers first, arrays only after their declared shape passed.

    Every member must be a ``.npy`` of a plain numeric dtype (no object arrays: nothing is ever
    unpickled), stored or deflated, whose header agrees with its uncompressed size and stays
    under ``BLOCKOUT_MAX_ARRAY_BYTES``; ``shape_of(key)`` may demand an exact shape (from
    ``run.json``'s topology) before the array is inflated.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = None
        self._zf: zipfile.ZipFile | None = None
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self._headers: dict[str, tuple[tuple[int, ...], np.dtype, bool, int]] = {}

    def _fail(self, why: str) -> RunFormatError:
        return RunFormatError(f"{self.path} is not a readable snapshot ({why})")

    def open(self) -> "NpzFile":
        if self._zf is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise RunFormatError(f"snapshot not found: {self.path}") from None
        except OSError as exc:
            raise self._fail(exc.strerror) from None
        if not statmod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._fail("not a regular file")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
        try:
            count = _zip_entry_count(fh, str(self.path))
            if count > limit("max_npz_members"):
                raise self._fail(f"{count} arrays {hint('max_npz_members')}")
            zf = zipfile.ZipFile(fh)
            infos = {}
            for info in zf.infolist()[: limit("max_npz_members") + 1]:
                if not info.filename.endswith(".npy") or info.filename.count("/"):
                    raise self._fail(f"member {info.filename[:80]!r} is not an array")
                infos[info.filename[:-4]] = info
            if len(infos) > limit("max_npz_members"):
                raise self._fail(f"too many arrays {hint('max_npz_members')}")
        except RunFormatError:
            fh.close()
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error) as exc:
            fh.close()
            raise self._fail(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__) from None
        self._fh, self._zf, self._infos = fh, zf, infos
        return self

    @property
    def files(self) -> list[str]:
        """Array names (``probs__h1``, ...)."""
        self.open()
        return list(self._infos)

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """``(shape, dtype)`` as the member's ``.npy`` header declares them, checked for sanity.

        Only the header is inflated (a few hundred bytes), never the data.
        """
        self.open()
        if key not in self._headers:
            info = self._infos.get(key)
            if info is None:
                raise RunFormatError(f"{self.path} has no array {key!r}")
            where = f"{self.path}: array {key!r}"
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise RunFormatError(f"{where} uses an unsupported compression ({info.compress_type})")
            cap = limit("max_array_bytes")
            if info.file_size > cap + 65536:
                raise RunFormatError(f"{where} inflates to {info.file_size} bytes {hint('max_array_bytes')}")
            try:
                with self._zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10000)
                    elif version in ((2, 0), (3, 0)):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10000)
                    else:
                        raise ValueError(f"unknown .npy version {version}")
                    offset = fh.tell()
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, SyntaxError, TypeError,
                    struct.error, zlib.error) as exc:
                raise RunFormatError(f"{where} has an unreadable header ({str(exc).splitlines()[0][:160]})") from None
            if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
                raise RunFormatError(f"{where} is not numeric ({dtype}); snapshots hold plain numbers only")
            if any((not isinstance(d, int)) or d < 0 for d in shape):
                raise RunFormatError(f"{where} declares a bad shape {shape}")
            nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
            if nbytes > cap:
                raise RunFormatError(f"{where} declares shape {shape} ({nbytes} bytes) {hint('max_array_bytes')}")
            if offset + nbytes != info.file_size:
                raise RunFormatError(f"{where} declares shape {shape} but stores {info.file_size - offset} bytes "
                                     f"of data, not {nbytes}")
            self._headers[key] = (tuple(shape), dtype, fortran, nbytes)
        shape, dtype, _, _ = self._headers[key]
        return shape, dtype

    def array(self, key: str, shape: tuple[int, ...] | None = None, max_elements: int | None = None) -> np.ndarray:
        """Read one array; ``shape``, when given, must match the header before the data is read;
        else ``max_elements`` bounds its size."""
        got, _ = self.header(key)
        if shape is not None and got != tuple(shape):
            raise RunFormatError(f"{self.path}: array {key!r} has shape {got}, expected {tuple(shape)} (run.json)")
        if shape is None and max_elements is not None and math.prod(got) > max_elements:
            raise RunFormatError(f"{self.path}: array {key!r} has shape {got}, larger than any array of this "
                                 f"run's topology")
        try:
            with self._zf.open(self._infos[key]) as fh:
                arr = np.lib.format.read_array(fh, allow_pickle=False, max_header_size=10000)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
            raise RunFormatError(f"{self.path}: array {key!r} is unreadable ({str(exc).splitlines()[0][:160]})") from None
        return arr

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
            self._zf = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "NpzFile":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def load_npz(path: str | os.PathLike, shapes: Mapping[str, tuple] | None = None) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` safely (see :class:`NpzFile`); ``shapes`` pins expected shapes."""
    with NpzFile(path) as npz:
        keys = npz.files
        for key in keys:  # every header checked before the first array is read
            npz.header(key)
            if shapes and key in shapes and npz.header(key)[0] != tuple(shapes[key]):
                raise RunFormatError(f"{path}: array {key!r} has shape {npz.header(key)[0]}, "
                                     f"expected {tuple(shapes[key])} (run.json)")
        return {key: npz.array(key) for key in keys}


def check_probs(P: np.ndarray, where: str) -> np.ndarray:
    """Membership probabilities must be finite and in [0, 1]; returns ``P`` unchanged.

    >>> check_probs(np.array([[0.5, float("nan")]]), "s.npz: probs__h")
    Traceback (most recent call last):
    ...
    analysis.errors.RunFormatError: s.npz: probs__h holds values outside [0, 1] (NaN, inf or out of range)
    """
    if P.size and not (np.isfinite(P).all() and P.min() >= 0 and P.max() <= 1):
        raise RunFormatError(f"{where} holds values outside [0, 1] (NaN, inf or out of range)")
    return P


def iter_snapshot_entries(run_dir: str | os.PathLike) -> list[dict]:
    """Validated entries of ``snapshots/index.json`` as dicts, sorted by step (empty when there
    is none): :func:`analysis.runformat.read_snapshot_index` for callers that want plain dicts
    (``{"step", "epoch", "file", "has_weights", "tags", ...}``)."""
    from analysis.runformat import read_snapshot_index

    return [e.to_json() for e in read_snapshot_index(run_dir)]


# ---------------------------------------------------------------------------------------------
# names and leftovers

_UNSAFE = re.compile(r"[^\w.+-]+")


def safe_name(name: Any, fallback: str = "run") -> str:
    """A run name made safe to use as a file name in the working folder: no separators, no
    leading dots, no control characters, at most 100 characters.

    >>> safe_name("../../../../tmp/x/y")
    'tmp_x_y'
    >>> safe_name("cifar100-hard-learned-s0"), safe_name(".."), safe_name(None)
    ('cifar100-hard-learned-s0', 'run', 'run')
    """
    text = _UNSAFE.sub("_", str(name) if isinstance(name, str) else "")
    text = text.strip("._-")[:100].strip("._-")
    return text or fallback


def stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Temporary files a killed atomic write left in the run folder or its ``snapshots/``."""
    from analysis.runformat import SNAPSHOT_DIR

    run_dir = Path(run_dir)
    out = []
    for folder in (run_dir, run_dir / SNAPSHOT_DIR):
        if folder.is_dir() and not folder.is_symlink():
            out += [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")
                    and p.is_file() and not p.is_symlink()]
    return sorted(out)


def remove_stale_temporaries(run_dir: str | os.PathLike) -> int:
    """Delete :func:`stale_temporaries` (call only while holding the run's lock); returns how many."""
    found = stale_temporaries(run_dir)
    for p in found:
        p.unlink(missing_ok=True)
    return len(found)
