"""Fault injection for the reliability tests: SIGKILL at a precise point of a run.

Only tests set ``BLOCKOUT_TEST_KILL_AT``; without it :func:`point` returns at once. The value is
a comma list of ``KIND:NAME:N``: the process kills itself (SIGKILL, so nothing is cleaned up)
the N-th time it reaches point ``KIND`` with a name matching the glob ``NAME``. Points:

``write:<file name>``
    inside an atomic write, after the temporary file is complete and before it replaces the
    file (``write:train_state.pt:2``, ``write:step_*.npz:3``, ``write:index.json:1``).
``step:<step>``
    after optimiser step ``step`` (``step:7:1``).
``start:run``
    after ``run.json`` and before the first checkpoint.

``BLOCKOUT_TEST_KILL_RANK`` limits the kill to one torchrun rank; a process restarted by
torchrun (``TORCHELASTIC_RESTART_COUNT`` > 0) never kills itself, so an elastic restart can
finish.
"""

from __future__ import annotations

import fnmatch
import os
import signal

ENV = "BLOCKOUT_TEST_KILL_AT"
ENV_RANK = "BLOCKOUT_TEST_KILL_RANK"
_counts: dict[str, int] = {}


def point(kind: str, name: str = "") -> None:
    """Kill this process when ``BLOCKOUT_TEST_KILL_AT`` asks for this point (tests only)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0"):
        return
    rank = os.environ.get(ENV_RANK)
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return
    for item in spec.split(","):
        parts = item.strip().split(":")
        if len(parts) != 3 or parts[0] != kind or not fnmatch.fnmatchcase(name, parts[1]):
            continue
        _counts[item] = _counts.get(item, 0) + 1
        if str(_counts[item]) == parts[2]:
            os.kill(os.getpid(), signal.SIGKILL)
