"""Uploads: unpacked archives do not outlive their use, and every byte read counts."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from analysis.errors import UserError
from analysis.synthetic import make_synthetic_run
from app import uploads
from app.archive import extract_run_archive

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    path = make_synthetic_run(tmp_path_factory.mktemp("src") / "myrun", classes=4, clusters=2, groups=1, n_snapshots=1)
    return {f"myrun/{p.relative_to(path)}": p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _tar(entries: dict, tail: bytes = b"") -> bytes:
    raw = io.BytesIO()
    for name, data in entries.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        raw.write(info.tobuf(format=tarfile.GNU_FORMAT) + data + bytes((512 - len(data) % 512) % 512))
    return gzip.compress(raw.getvalue() + tail + (bytes(1024) if not tail else b""))


def _member(name: str, declared: int, actual: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = declared
    return info.tobuf(format=tarfile.GNU_FORMAT) + bytes(actual)


def test_skipped_member_counts_and_is_refused_at_its_header(run_files, tmp_path):
    # a skipped member declaring 4 GiB: refused from its header (before, tarfile decompressed all
    # of it to skip it); how fast that is lives in benchmarks/reliability.py
    data = _tar(run_files, _member("myrun/huge.bin", 4 << 30, 1 << 16))
    with pytest.raises(UserError, match="too large once unpacked"):
        extract_run_archive(data, "r.tgz", tmp_path / "a")


def test_skipped_members_spend_the_budget(run_files, tmp_path):
    kept = sum(len(v) for v in run_files.values())
    # many skipped members, each small, together over the limit
    data = _tar({**run_files, **{f"myrun/junk{i}.bin": bytes(20_000) for i in range(10)}})
    with pytest.raises(UserError, match="too large"):
        extract_run_archive(data, "r.tgz", tmp_path / "a", max_bytes=kept + 100_000)
    assert extract_run_archive(data, "r.tgz", tmp_path / "b", max_bytes=kept + 300_000).name == "myrun"


def test_reading_stops_at_the_limit_inside_a_member(run_files, tmp_path):
    # a member whose real content runs past the limit: reading stops there, not at its end
    data = _tar({**run_files, "myrun/snapshots/big.npz": bytes(50 << 20)})
    with pytest.raises(UserError, match="too large"):
        extract_run_archive(data, "r.tgz", tmp_path / "a", max_bytes=1 << 20)
    written = sum(p.stat().st_size for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert written <= 1 << 20


def test_env_var_raises_the_limit(run_files, tmp_path, monkeypatch):
    data = _tar(run_files)
    monkeypatch.setenv("BLOCKOUT_MAX_UPLOAD_BYTES", "1000")
    with pytest.raises(UserError, match="BLOCKOUT_MAX_UPLOAD_BYTES"):
        extract_run_archive(data, "r.tgz", tmp_path / "a")
    monkeypatch.setenv("BLOCKOUT_MAX_UPLOAD_BYTES", str(50 << 20))
    assert extract_run_archive(data, "r.tgz", tmp_path / "b").name == "myrun"


def test_unpacked_uploads_are_evicted_and_removed(run_files, tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOADS", 2)
    monkeypatch.setattr(uploads, "_unpacked", type(uploads._unpacked)())
    runs = []
    for i in range(3):
        data = _tar({**run_files, f"myrun/extra{i}.json": b"{}"})
        runs.append(uploads.unpack(f"digest{i}", "r.tgz", data, root=tmp_path))
    assert not runs[0].exists()  # least recently used: deleted
    assert runs[1].is_dir() and runs[2].is_dir()
    assert uploads.unpack("digest2", "r.tgz", b"", root=tmp_path) == runs[2]  # cached: not unpacked again
    uploads.remove_all()
    assert list(tmp_path.iterdir()) == []


def test_failed_upload_leaves_nothing(tmp_path):
    with pytest.raises(UserError):
        uploads.unpack("bad", "r.zip", b"PK\x03\x04 not a zip", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_uploads_removed_at_exit_and_orphans_swept(run_files, tmp_path):
    data = _tar(run_files)
    (tmp_path / "a.tgz").write_bytes(data)
    code = ("import sys; from pathlib import Path; from app import uploads; "
            f"p = uploads.unpack('d', 'a.tgz', Path({str(tmp_path / 'a.tgz')!r}).read_bytes(), root={str(tmp_path)!r}); "
            "print(p)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not Path(out.stdout.strip()).exists()  # removed by the exit handler
    # a dashboard killed with SIGKILL cannot clean up: the next one sweeps its folders
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{uploads.PREFIX}{dead.stdout.strip()}-abc-x"
    (orphan / "run").mkdir(parents=True)
    mine = tmp_path / f"{uploads.PREFIX}{os.getpid()}-abc-y"
    mine.mkdir()
    assert uploads.sweep_orphans(tmp_path) == 1
    assert not orphan.exists() and mine.exists()


def test_dashboard_shows_hostile_runs_as_an_error_box(tmp_path, monkeypatch):
    """A run whose snapshot index points outside, and one whose snapshot holds NaN in P: every page
    shows one error box, never an exception."""
    import json
    import zipfile

    import numpy as np
    from streamlit.testing.v1 import AppTest

    from analysis import runfolder as rf

    root = tmp_path / "checkpoints"
    good = make_synthetic_run(root / "good", classes=4, clusters=2, groups=1, n_snapshots=2)
    nan = make_synthetic_run(root / "nan", classes=4, clusters=2, groups=1, n_snapshots=2)
    last = sorted((nan / "snapshots").glob("*.npz"))[-1]
    arrays = rf.load_npz(last)
    arrays["probs__h1"] = np.full_like(arrays["probs__h1"], np.nan)
    rf.save_npz(last, arrays)
    monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(root))
    monkeypatch.delenv("BLOCKOUT_RUN", raising=False)
    at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=60)
    at.run()
    at.selectbox(key="pick").set_value("nan").run()
    for page in ("views/overview.py", "views/branch_tree.py", "views/emergence.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("outside [0, 1]" in e.value for e in at.error), (page, [e.value for e in at.error])
    # an uploaded archive whose index points at a file outside the run
    index = json.loads((good / "snapshots" / "index.json").read_text())
    index["snapshots"][-1]["file"] = "../../../../etc/passwd"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in good.rglob("*"):
            if p.is_file():
                data = json.dumps(index).encode() if p.name == "index.json" else p.read_bytes()
                zf.writestr(f"good/{p.relative_to(good)}", data)
    at.switch_page("views/overview.py").run()
    at.radio(key="src").set_value("Upload archive").run()
    at.file_uploader[0].upload("good.zip", buf.getvalue(), "application/zip").run()
    assert not at.exception
    assert "points outside the run folder" in at.error[0].value
