"""Safe extraction of uploaded run-folder archives (app.archive)."""

import io
import tarfile

import pytest

from analysis.errors import UserError
from analysis.run import load_run
from analysis.synthetic import make_synthetic_run
from app.archive import extract_run_archive, find_run_root, safe_member_path
from hostile_cases import zip_bytes as _zip  # tests/ is on sys.path


def _tar(entries: dict, link: tuple[str, str] | None = None, mode="w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tf.addfile(info)
    return buf.getvalue()


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    path = make_synthetic_run(tmp_path_factory.mktemp("src") / "myrun", classes=6, clusters=2, groups=1, n_snapshots=2)
    return {f"myrun/{p.relative_to(path)}": p.read_bytes() for p in path.rglob("*") if p.is_file()}


class TestSafeMemberPath:
    @pytest.mark.parametrize("name", ["/etc/passwd", "a/../../x", "..", "C:/x", "a\\b"])
    def test_rejects(self, name):
        with pytest.raises(UserError):
            safe_member_path(name)

    def test_normalises(self):
        assert str(safe_member_path("./a//b/c.json")) == "a/b/c.json"


class TestExtract:
    @pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
    def test_round_trip_loads(self, run_files, tmp_path, kind):
        extra = {"myrun/train_state.pt": b"\x80\x04 pickle!", "myrun/evil.py": b"import os"}
        data = (_zip({**run_files, **extra}) if kind == "zip"
                else _tar({**run_files, **extra}, mode="w:gz" if kind == "tar.gz" else "w"))
        root = extract_run_archive(data, f"run.{kind}", tmp_path / "out")
        assert root.name == "myrun"
        assert not (root / "train_state.pt").exists() and not (root / "evil.py").exists()
        run = load_run(root)
        assert len(run.steps) == 2 and len(run.class_names) == 6

    def test_run_at_top_level(self, run_files, tmp_path):
        flat = {k.split("/", 1)[1]: v for k, v in run_files.items()}
        assert extract_run_archive(_zip(flat), "r.zip", tmp_path / "o") == tmp_path / "o"

    def test_rejects_traversal_and_absolute(self, run_files, tmp_path):
        for bad in ("../evil.json", "/abs.json"):
            with pytest.raises(UserError, match="archive entry"):
                extract_run_archive(_zip({**run_files, bad: b"{}"}), "r.zip", tmp_path / "a")
            with pytest.raises(UserError, match="archive entry"):
                extract_run_archive(_tar({**run_files, bad: b"{}"}), "r.tgz", tmp_path / "b")
        assert not (tmp_path / "evil.json").exists()

    def test_rejects_links(self, run_files, tmp_path):
        with pytest.raises(UserError, match="symbolic link"):
            extract_run_archive(_zip(run_files, symlink="myrun/link.json"), "r.zip", tmp_path / "a")
        with pytest.raises(UserError, match="is a link"):
            extract_run_archive(_tar(run_files, link=("myrun/l.json", "/etc/passwd")), "r.tgz", tmp_path / "b")

    def test_rejects_oversized(self, run_files, tmp_path):
        big = {**run_files, "myrun/big.json": b" " * 5000}
        with pytest.raises(UserError, match="too large"):
            extract_run_archive(_zip(big), "r.zip", tmp_path / "a", max_bytes=4000)
        with pytest.raises(UserError, match="too large"):
            extract_run_archive(_tar(big), "r.tgz", tmp_path / "b", max_bytes=4000)
        with pytest.raises(UserError, match="entries"):
            extract_run_archive(_zip(run_files), "r.zip", tmp_path / "c", max_entries=2)

    def test_rejects_garbage_and_foreign(self, tmp_path):
        with pytest.raises(UserError, match="not a .zip or .tar.gz"):
            extract_run_archive(b"hello world", "notes.txt", tmp_path / "a")
        with pytest.raises(UserError, match="not a readable .zip"):
            extract_run_archive(b"PK\x03\x04garbage", "r.zip", tmp_path / "b")
        with pytest.raises(UserError, match="no run.json"):
            extract_run_archive(_zip({"x/data.json": b"{}"}), "r.zip", tmp_path / "c")
        with pytest.raises(UserError, match="empty"):
            extract_run_archive(b"", "r.zip", tmp_path / "d")

    def test_two_runs_refused(self, tmp_path):
        for n in ("a", "b"):
            (tmp_path / n).mkdir()
            (tmp_path / n / "run.json").write_text("{}")  # raw run.json: only its presence matters
        with pytest.raises(UserError, match="several run folders"):
            find_run_root(tmp_path)
