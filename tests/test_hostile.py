"""The hostile-file suite: every case of ``tests/hostile_cases.py`` through the real entry points
(``blockout inspect --json``, ``blockout export``, the run loader the dashboard uses, upload
extraction, config / hierarchy / image / checkpoint readers).

Each case must end in a defined result or ONE line naming the file (CLI exit 2), never a
traceback; no file outside the run (or the working folder) is opened, listed or written; no
pickle payload runs; and the traced allocations stay under 200 MB. ``benchmarks/reliability.py``
runs the same cases one per process and reports resident-memory peaks and the counts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_cases as H  # noqa: E402

MAX_PEAK = 200 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def warm(tmp_path_factory):
    """Import everything once, so that a case's traced peak is its own allocations."""
    H.run_case("snapshot-symlink-inside", tmp_path_factory.mktemp("warm"), measure_memory=False)
    H.run_case("export-name-traversal", tmp_path_factory.mktemp("warm2"), measure_memory=False)
    H.run_case("state-without-model", tmp_path_factory.mktemp("warm3"), measure_memory=False)


def test_at_least_60_cases():
    assert len(H.CASES) >= 60


@pytest.mark.parametrize("case_id", list(H.CASES))
def test_hostile_case(case_id, tmp_path):
    r = H.run_case(case_id, tmp_path)
    assert r["outcome"] != "traceback", r.get("traceback")
    assert not r["code_executed"], "a pickle payload ran"
    assert r["outside_access"] == [], f"touched files outside the run: {r['outside_access'][:5]}"
    assert r["outcome"] == r["expect"], r["messages"]
    for msg in r["messages"]:
        assert "\n" not in msg and "Traceback" not in msg, msg
        if r["mention"]:
            assert r["mention"] in msg, f"message does not name {r['mention']!r}: {msg}"
    assert r["peak_traced_bytes"] <= MAX_PEAK, f"{r['peak_traced_bytes'] / 2**20:.0f} MiB"


def _message(case_id, base):
    msg = H.run_case(case_id, base, measure_memory=False)["messages"][0]
    return re.sub(r"'[^']*secret\.npz'", "'<path>'", msg.replace(str(base), "<base>"))


def test_outside_files_cannot_be_probed(tmp_path):
    # an index entry naming an existing outside file and one naming a missing file get the same
    # answer, so a hostile upload cannot learn what exists on the server
    a = _message("index-entry-absolute-existing", tmp_path / "a")
    b = _message("index-entry-absolute-missing", tmp_path / "b")
    assert a == b
    a = _message("snapshot-symlink-out", tmp_path / "c")
    b = _message("snapshot-symlink-dangling-out", tmp_path / "d")
    assert a == b


def test_export_of_a_traversal_name_stays_in_the_working_folder(tmp_path):
    r = H.run_case("export-name-traversal", tmp_path, measure_memory=False)
    assert r["outcome"] == "accepted"
    written = list((tmp_path / "work").iterdir())
    assert [p.name for p in written] == ["tmp_x_y_tree.json"]
    assert not Path("/tmp/x/y_tree.json").exists()


@pytest.mark.parametrize("case_id", ["npz-deflate-bomb-1.3GB", "image-400-megapixel-png"])
def test_resident_memory_of_the_worst_inputs(case_id, tmp_path):
    """Resident memory (not just traced allocations: Pillow and zlib allocate in C) of a fresh
    process grows by at most 200 MB while it rejects the input (every case: benchmarks/reliability.py)."""
    H.save_case(case_id, tmp_path)  # built here, so the child measures only the reading
    code = f"import json, hostile_cases as H; print(json.dumps(H.probe({case_id!r}, {str(tmp_path)!r})))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["outcome"] == "rejected"
    assert r["rss_growth_bytes"] <= MAX_PEAK, f"{r['rss_growth_bytes'] / 2**20:.0f} MiB"
