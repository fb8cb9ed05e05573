"""Where uploaded run archives are unpacked, and for how long.

Each upload is unpacked once (keyed by the SHA-256 of its bytes) into its own temporary folder
``blockout-upload-<pid>-<digest>-*``. At most :data:`MAX_UPLOADS` stay unpacked: the least
recently used one is deleted when another arrives, all of them when the process exits, and on
start the folders of dashboard processes that no longer exist (killed, so their exit handler
never ran) are swept away. Pure Python; no Streamlit.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from app.archive import extract_run_archive

#: Unpacked uploads kept at once (each up to BLOCKOUT_MAX_UPLOAD_BYTES).
MAX_UPLOADS = 4
PREFIX = "blockout-upload-"
_NAME_RE = re.compile(rf"^{PREFIX}(\d+)-")

_lock = threading.Lock()
_unpacked: "OrderedDict[str, tuple[Path, Path]]" = OrderedDict()  # digest -> (temp folder, run folder)


def unpack(digest: str, filename: str, data: bytes, root: str | os.PathLike | None = None) -> Path:
    """The run folder of an uploaded archive, unpacking it when it is not unpacked already.

    ``root``: where temporary folders go (default: the system's temporary folder).
    """
    with _lock:
        hit = _unpacked.get(digest)
        if hit is not None and hit[1].is_dir():
            _unpacked.move_to_end(digest)
            return hit[1]
        dest = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{digest[:12]}-", dir=root))
        try:
            run = extract_run_archive(data, filename, dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        _unpacked[digest] = (dest, run)
        while len(_unpacked) > MAX_UPLOADS:
            _, (old, _run) = _unpacked.popitem(last=False)
            shutil.rmtree(old, ignore_errors=True)
        return run


def unpacked_folders() -> list[Path]:
    """Temporary folders currently holding unpacked uploads (oldest first)."""
    with _lock:
        return [dest for dest, _ in _unpacked.values()]


def remove_all() -> None:
    """Delete every unpacked upload of this process (registered to run at exit)."""
    with _lock:
        while _unpacked:
            _, (dest, _run) = _unpacked.popitem()
            shutil.rmtree(dest, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(root: str | os.PathLike | None = None) -> int:
    """Delete upload folders whose dashboard process is gone; returns how many."""
    base = Path(root or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(base.iterdir())
    except OSError:
        return 0
    for p in entries:
        m = _NAME_RE.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))) and p.is_dir() \
                and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


atexit.register(remove_all)
