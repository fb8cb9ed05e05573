"""Writing a run folder (the contract lives in :mod:`analysis.runformat`).

:class:`RunWriter` owns ``run.json``, ``metrics.jsonl`` and ``snapshots/`` of one run. Every
file is built from the records of :mod:`analysis.runformat` (validated as the readers validate
them) and written through its atomic writers. Snapshots always hold every
node set's P; weights and biases are kept only in the snapshots tagged ``best`` or ``last`` (they
are stripped from a snapshot when it loses its last such tag), so a run folder stays small.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from analysis import runfolder as rf
from analysis import runformat as fmt

#: Tags that keep a snapshot's weights.
WEIGHT_TAGS = ("best", "last")


def versions() -> dict[str, str]:
    """Versions of the software that wrote a run."""
    import torch

    import blockout

    return {
        "blockout": blockout.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": sys.platform,
    }


class RunWriter:
    """Writes one run folder. ``enabled=False`` (ranks other than 0) makes every method a no-op.

    Parameters
    ----------
    run_dir : path
        The run folder (created when missing).
    enabled : bool
        Whether this process writes (rank 0 under torchrun).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._entries: list[dict] = []
        if enabled and (self.run_dir / fmt.SNAPSHOT_DIR / fmt.SNAPSHOT_INDEX).is_file():
            self._entries = [e.to_json() for e in fmt.read_snapshot_index(self.run_dir)]

    # ------------------------------------------------------------------ paths
    @property
    def snapshot_dir(self) -> Path:
        return self.run_dir / fmt.SNAPSHOT_DIR

    @property
    def train_state_path(self) -> Path:
        return self.run_dir / fmt.TRAIN_STATE

    # ------------------------------------------------------------------ run.json / metrics
    def write_run_json(self, config: Mapping[str, Any], dataset: Mapping[str, Any],
                       topology: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> None:
        """Write ``run.json`` (resolved config, dataset description, topology, versions, time).

        Built as a :class:`analysis.runformat.RunRecord` and validated exactly as readers validate
        it; ``extra`` adds top-level keys (``runtime``)."""
        if not self.enabled:
            return
        record = fmt.RunRecord.new(self.run_dir.name, config, dataset, topology, versions=versions(), extra=extra)
        fmt.write_run(self.run_dir, record)

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one evaluation record to ``metrics.jsonl`` (validated as a metrics line)."""
        if self.enabled:
            fmt.append_metrics(self.run_dir, record)

    # ------------------------------------------------------------------ snapshots
    @property
    def entries(self) -> list[dict]:
        """The snapshot index entries, sorted by step (a copy)."""
        return [dict(e) for e in self._entries]

    def _entry(self, step: int) -> dict | None:
        return next((e for e in self._entries if int(e["step"]) == int(step)), None)

    def _write_index(self) -> None:
        self._entries.sort(key=lambda e: int(e["step"]))
        fmt.write_snapshot_index(self.run_dir, self._entries)

    def snapshot(self, step: int, epoch: int, probs: Mapping[str, np.ndarray],
                 weights: Mapping[str, np.ndarray] | None = None,
                 biases: Mapping[str, np.ndarray] | None = None,
                 multipliers: Mapping[str, np.ndarray] | None = None,
                 tags: Iterable[str] = ()) -> None:
        """Save the snapshot of ``step`` (merged into an existing one at the same step).

        Tags move: giving ``best`` here removes it from every other snapshot; a snapshot left
        without a weight tag loses its weights.
        """
        if not self.enabled:
            return
        tags = list(tags)
        old = self._entry(step)
        arrays = {}
        if old is not None and old.get("has_weights") and not weights:
            # keep weights already saved at this step
            arrays = rf.load_npz(self.snapshot_dir / old["file"])
        arrays.update(fmt.snapshot_arrays(probs, weights, biases, multipliers))
        fname = fmt.snapshot_filename(step)
        rf.save_npz(self.snapshot_dir / fname, arrays)
        has_weights = any(k.startswith(fmt.WEIGHT_PREFIX) for k in arrays)
        entry = fmt.SnapshotEntry(step=int(step), epoch=int(epoch), file=fname, has_weights=has_weights,
                                  tags=sorted(set(tags) | set(old["tags"] if old else []))).to_json()
        if old is not None:
            self._entries.remove(old)
        self._entries.append(entry)
        for tag in tags:
            for other in self._entries:
                if other is not entry and tag in other["tags"]:
                    other["tags"] = [t for t in other["tags"] if t != tag]
        self._write_index()
        self._strip_untagged_weights()

    def _strip_untagged_weights(self) -> None:
        """Drop weights from snapshots that no longer carry a weight tag (index first, then file)."""
        stale = [e for e in self._entries
                 if e.get("has_weights") and not set(e["tags"]) & set(WEIGHT_TAGS)]
        if not stale:
            return
        for e in stale:
            e["has_weights"] = False
        self._write_index()
        for e in stale:
            path = self.snapshot_dir / e["file"]
            arrays = rf.load_npz(path)
            rf.save_npz(path, {k: v for k, v in arrays.items()
                               if not k.startswith((fmt.WEIGHT_PREFIX, fmt.BIAS_PREFIX))})

    def repair(self) -> None:
        """Finish what a killed write left half done: a snapshot still holding weights after the
        index dropped them (the index is written first), and snapshot files on disk that the
        index never listed (written just before a kill) are removed."""
        if not self.enabled:
            return
        listed = {e["file"] for e in self._entries}
        for e in self._entries:
            path = self.snapshot_dir / e["file"]
            if not e.get("has_weights") and path.is_file():
                with rf.NpzFile(path) as npz:
                    stale = any(k.startswith((fmt.WEIGHT_PREFIX, fmt.BIAS_PREFIX)) for k in npz.files)
                if stale:
                    arrays = rf.load_npz(path)
                    rf.save_npz(path, {k: v for k, v in arrays.items()
                                       if not k.startswith((fmt.WEIGHT_PREFIX, fmt.BIAS_PREFIX))})
        if (self.snapshot_dir / fmt.SNAPSHOT_INDEX).is_file():
            for path in self.snapshot_dir.glob("step_*.npz"):
                if path.name not in listed:
                    path.unlink()

    def truncate_after(self, step: int) -> None:
        """Forget metrics and snapshots written after ``step`` (resuming from an earlier checkpoint)."""
        if not self.enabled:
            return
        records = fmt.read_metrics(self.run_dir)
        kept = [r for r in records if int(r.get("step", 0)) <= step]
        if len(kept) != len(records):
            fmt.write_metrics(self.run_dir, kept)
        late = [e for e in self._entries if int(e["step"]) > step]
        if late:
            self._entries = [e for e in self._entries if int(e["step"]) <= step]
            self._write_index()
            for e in late:
                (self.snapshot_dir / e["file"]).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# one writer per run folder

#: The lock file in a run folder (hidden: readers and uploads ignore it).
LOCK_NAME = ".lock"


class RunLock:
    """An advisory lock (``fcntl.flock``) on ``<run>/.lock``: one writing process per run folder.

    The lock is the operating system's, so it vanishes with the process that holds it: a run
    killed with SIGKILL never leaves a stale lock behind. The file keeps the holder's pid, only
    to name it in the message another process gets.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl
        import os

        from blockout.errors import UserError

        if self._fd is not None:
            return self
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"--out {self.run_dir} exists and is not a folder")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"run folder {self.run_dir} is being written by another blockout process "
                            f"(pid {holder}); wait for it to finish, or stop it, then try again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl
        import os

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def clear_unfinished_run(run_dir: str | Path) -> None:
    """Remove what a run killed before its first checkpoint wrote (``run.json``, metrics,
    snapshots), so it can start again from the beginning. Call only while holding the lock."""
    import shutil

    run_dir = Path(run_dir)
    for name in (fmt.RUN_JSON, fmt.METRICS):
        (run_dir / name).unlink(missing_ok=True)
    snaps = run_dir / fmt.SNAPSHOT_DIR
    if snaps.is_symlink():
        snaps.unlink()
    elif snaps.is_dir():
        shutil.rmtree(snaps)
