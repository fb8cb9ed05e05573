"""Safe extraction of an uploaded run-folder archive (.zip, .tar.gz, .tgz, .tar).

An uploaded archive is untrusted. The whole archive is rejected (one-line :class:`UserError`)
when any entry has an absolute path, a ``..`` component, is a link or a device, or when the
archive holds too many entries or too many bytes: every uncompressed byte read counts, of kept
and skipped members alike, and reading stops the moment the limit is passed (so neither a lying
size header nor a huge skipped member helps a decompression bomb). Only ``.json``, ``.jsonl`` and ``.npz`` files are written out; every
other file (``train_state.pt`` included) is skipped, so nothing that could execute code is ever
unpacked. Snapshots are later read with ``allow_pickle=False``.

Pure Python; no Streamlit.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from analysis.errors import UserError
from analysis.limits import limit
from analysis.runfolder import RUN_JSON

#: File types read from an uploaded run folder.
ALLOWED_SUFFIXES = (".json", ".jsonl", ".npz")
#: Default limits: uncompressed bytes read from the archive (kept and skipped members alike;
#: ``BLOCKOUT_MAX_UPLOAD_BYTES`` raises it) and number of archive entries.
MAX_BYTES = limit("max_upload_bytes")
MAX_ENTRIES = 20_000
_CHUNK = 1 << 20


def safe_member_path(name: str) -> PurePosixPath:
    """Validate one archive entry name and return it as a relative POSIX path.

    Raises :class:`UserError` for absolute paths, drive letters, backslashes and ``..``.

    >>> str(safe_member_path("run/snapshots/index.json"))
    'run/snapshots/index.json'
    >>> safe_member_path("../etc/passwd")
    Traceback (most recent call last):
    ...
    analysis.errors.UserError: archive entry '../etc/passwd' escapes the archive ('..')
    """
    if "\\" in name or "\x00" in name:
        raise UserError(f"archive entry {name!r} has a backslash or NUL in its name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"archive entry {name!r} has an absolute path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise UserError(f"archive entry {name!r} escapes the archive ('..')")
    parts = [p for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _wanted(path: PurePosixPath) -> bool:
    # macOS resource forks and hidden files are never part of a run folder.
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return False
    return path.name.endswith(ALLOWED_SUFFIXES)


def _too_large(label: str, max_bytes: int) -> UserError:
    return UserError(f"archive {label} is too large once unpacked (more than {max_bytes} bytes; "
                     f"raise the limit with BLOCKOUT_MAX_UPLOAD_BYTES=...)")


def _copy_limited(src, dest: Path, budget: list[int], label: str, max_bytes: int) -> None:
    """Copy a stream into ``dest`` while spending ``budget[0]`` bytes; stop as soon as it is spent."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(min(_CHUNK, max(budget[0], 0) + 1))
            if not chunk:
                break
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise _too_large(label, max_bytes)
            out.write(chunk)


def _extract_zip(data: bytes, dest: Path, label: str, max_bytes: int, max_entries: int) -> None:
    from analysis.errors import RunFormatError
    from analysis.runfolder import _zip_entry_count

    fh = io.BytesIO(data)
    try:
        declared = _zip_entry_count(fh, label)
    except RunFormatError:
        raise UserError(f"{label} is not a readable .zip archive") from None
    if declared > max_entries:  # checked before zipfile builds one object per entry
        raise UserError(f"{label} has {declared} entries (limit {max_entries})")
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        raise UserError(f"{label} is not a readable .zip archive") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_entries:
            raise UserError(f"{label} has {len(infos)} entries (limit {max_entries})")
        plan = []
        for info in infos:
            rel = safe_member_path(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UserError(f"archive entry {info.filename!r} in {label} is a symbolic link")
            if info.is_dir() or not _wanted(rel):
                continue
            plan.append((info, rel))
        # declared sizes of every member, skipped ones included, must fit; the real bytes read
        # from the kept ones are counted again while copying (a header may lie)
        if sum(info.file_size for info in infos) > max_bytes:
            raise _too_large(label, max_bytes)
        budget = [max_bytes]
        for info, rel in plan:
            try:
                with zf.open(info) as src:
                    _copy_limited(src, dest / rel, budget, label, max_bytes)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error) as exc:
                raise UserError(f"{label}: cannot read entry {info.filename!r} ({exc})") from None


class _BoundedReader(io.RawIOBase):
    """Counts every decompressed byte the tar reader pulls (headers, kept and skipped members)
    and stops the extraction the moment the total passes the limit."""

    def __init__(self, raw, max_bytes: int, label: str):
        self.raw, self.left, self.max_bytes, self.label = raw, max_bytes, max_bytes, label

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.left < 0:
            raise _too_large(self.label, self.max_bytes)
        data = self.raw.read(min(len(buf), self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise _too_large(self.label, self.max_bytes)
        buf[: len(data)] = data
        return len(data)


def _decompressed(data: bytes):
    import bz2
    import gzip
    import lzma

    if data[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=io.BytesIO(data))
    if data[:3] == b"BZh":
        return bz2.BZ2File(io.BytesIO(data))
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(io.BytesIO(data))
    return io.BytesIO(data)


def _extract_tar(data: bytes, dest: Path, label: str, max_bytes: int, max_entries: int) -> None:
    # tar blocks and headers cost bytes too: allow for them on top of the members' contents
    reader = io.BufferedReader(_BoundedReader(_decompressed(data), max_bytes + 512 * (max_entries + 2) * 2, label))
    try:
        tf = tarfile.open(fileobj=reader, mode="r|")  # a stream: nothing is seeked or held
    except UserError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError):
        raise UserError(f"{label} is not a readable .tar.gz / .tar archive") from None
    with tf:
        budget = [max_bytes]
        count = 0
        try:
            for member in tf:
                count += 1
                if count > max_entries:
                    raise UserError(f"{label} has more than {max_entries} entries")
                rel = safe_member_path(member.name)
                if member.issym() or member.islnk():
                    raise UserError(f"archive entry {member.name!r} in {label} is a link")
                if member.isdev() or member.isfifo():
                    raise UserError(f"archive entry {member.name!r} in {label} is a device")
                if member.size > budget[0]:  # skipped members are decompressed too: they count
                    raise _too_large(label, max_bytes)
                if not member.isfile() or not _wanted(rel):
                    budget[0] -= member.size
                    continue
                src = tf.extractfile(member)
                if src is None:
                    continue
                with src:
                    _copy_limited(src, dest / rel, budget, label, max_bytes)
        except UserError:
            raise
        except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
            raise UserError(f"{label} is a damaged archive ({str(exc).splitlines()[0][:160]})") from None


def archive_kind(filename: str, data: bytes) -> str:
    """``"zip"`` or ``"tar"`` from the file's magic bytes (the name only breaks ties).

    >>> archive_kind("run.zip", b"PK\\x03\\x04...")
    'zip'
    >>> archive_kind("run.tar.gz", b"\\x1f\\x8b...")
    'tar'
    """
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "zip"
    if data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        return "tar"
    lower = filename.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    raise UserError(f"{filename!r} is not a .zip or .tar.gz archive")


def find_run_root(folder: str | os.PathLike, max_depth: int = 3) -> Path:
    """The shallowest folder under ``folder`` holding a ``run.json`` (breadth first).

    Raises :class:`UserError` when there is none, or when two run folders tie for shallowest.
    """
    folder = Path(folder)
    level = [folder]
    for _ in range(max_depth + 1):
        hits = sorted(p for p in level if (p / RUN_JSON).is_file())
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            names = ", ".join(p.name for p in hits[:3])
            raise UserError(f"archive holds several run folders ({names}); upload one at a time")
        level = sorted(c for p in level for c in p.iterdir() if c.is_dir() and not c.is_symlink())
        if not level:
            break
    raise UserError(f"archive holds no {RUN_JSON}: it is not a Blockout run folder")


def extract_run_archive(
    data: bytes,
    filename: str,
    dest: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_entries: int = MAX_ENTRIES,
) -> Path:
    """Unpack an uploaded run-folder archive into ``dest`` and return the run folder inside it.

    Parameters
    ----------
    data : bytes
        The archive's content.
    filename : str
        Its name as uploaded (used in messages, and to tell the format when magic bytes do not).
    dest : path
        An empty folder to unpack into (a fresh temporary folder).
    max_bytes, max_entries : int
        Limits on the uncompressed bytes read (kept and skipped members; default
        ``BLOCKOUT_MAX_UPLOAD_BYTES``, 512 MiB) and on the number of entries.

    Returns
    -------
    Path
        The folder under ``dest`` that holds ``run.json``.

    Raises
    ------
    UserError
        For anything unsafe or unreadable; ``dest`` may then hold a partial extraction, which the
        caller throws away.
    """
    if not data:
        raise UserError(f"{filename!r} is empty")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if max_bytes is None:
        max_bytes = limit("max_upload_bytes")
    kind = archive_kind(filename, data)
    label = repr(filename)
    if kind == "zip":
        _extract_zip(data, dest, label, max_bytes, max_entries)
    else:
        _extract_tar(data, dest, label, max_bytes, max_entries)
    return find_run_root(dest)
