"""analysis.runfolder: the run-folder contract (atomic writes, safe snapshot loading)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from analysis import runfolder as rf
from analysis.errors import RunFormatError


class TestAtomicWrites:
    def test_written_file_has_plain_open_mode(self, tmp_path):
        # regression: mkstemp's 0600 leaked into run folders, so a shared or served run was unreadable
        path = tmp_path / "doc.json"
        rf.atomic_write_json(path, {"a": 1})
        mask = os.umask(0o022)
        os.umask(mask)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask

    def test_failed_write_keeps_old_file_and_leaves_no_temp(self, tmp_path):
        path = tmp_path / "doc.json"
        rf.atomic_write_json(path, {"ok": True})
        with pytest.raises(ValueError):
            rf.atomic_write_json(path, {"bad": float("nan")})  # NaN is not JSON: refused before writing
        with pytest.raises(TypeError):
            rf.save_npz(tmp_path / "x.npz", {"obj": np.array([object()], dtype=object)})
        assert rf.read_json(path) == {"ok": True}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]

    def test_append_jsonl_round_trip(self, tmp_path):
        path = tmp_path / "metrics.jsonl"
        for i in range(3):
            rf.append_jsonl(path, {"step": i})
        assert [r["step"] for r in rf.read_jsonl(path)] == [0, 1, 2]


class TestReading:
    def test_bad_jsonl_line_names_file_and_line(self, tmp_path):
        path = tmp_path / "metrics.jsonl"
        path.write_text('{"step": 1}\n{"step": \n')
        with pytest.raises(RunFormatError, match=r"metrics.jsonl, line 2"):
            rf.read_jsonl(path)

    def test_npz_round_trip_and_pickled_arrays_refused(self, tmp_path):
        path = tmp_path / rf.snapshot_filename(3)
        arrays = rf.snapshot_arrays({"h1": np.eye(3, dtype=np.float32)}, weights={"fc1": np.ones((2, 3))})
        rf.save_npz(path, arrays)
        back = rf.split_snapshot(rf.load_npz(path))
        np.testing.assert_array_equal(back["probs"]["h1"], np.eye(3))
        # an object array inside an npz needs pickle: loading must refuse it, not run it
        evil = tmp_path / "evil.npz"
        np.savez(evil, x=np.array([{"a": 1}], dtype=object))
        with pytest.raises(RunFormatError, match="evil.npz"):
            rf.load_npz(evil)

    def test_truncated_snapshot_is_a_format_error(self, tmp_path):
        path = tmp_path / "s.npz"
        rf.save_npz(path, {"probs__h": np.zeros((4, 2))})
        path.write_bytes(path.read_bytes()[:40])
        with pytest.raises(RunFormatError, match="s.npz"):
            rf.load_npz(path)
