"""Hostile inputs: run folders, snapshots, configs, hierarchies, images and uploads built to break
the readers, and the harness that feeds each one to the real entry points.

Used by ``tests/test_hostile.py`` (every case, in process) and ``benchmarks/reliability.py``
(every case in a fresh process, for peak memory). Each case builds its input under
``<base>/in`` next to canaries under ``<base>/outside``; :func:`run_case` then records

* the outcome: ``rejected`` (a one-line :class:`UserError`), ``accepted`` (a defined result), or
  ``traceback`` (any other exception: a bug);
* every file opened, listed, created, renamed or removed (Python audit hooks) that lies under
  ``<base>`` but outside ``<base>/in`` and ``<base>/work``, or is a system secret;
* whether a pickle payload ran (it would create ``<base>/PWNED``);
* the peak of traced allocations (``tracemalloc``; numpy's buffers are traced too).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import sys
import tarfile
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis import runfolder as rf  # noqa: E402
from analysis.errors import UserError  # noqa: E402
from analysis.synthetic import make_synthetic_run  # noqa: E402

SECRETS = ("/etc/passwd", "/etc/shadow", "/root/.ssh/id_rsa")


@dataclass
class Case:
    kind: str  # run | export | archive | config | hierarchy | train_state | image
    target: Path | None = None
    data: bytes | None = None
    filename: str = ""
    env: dict = field(default_factory=dict)
    expect: str = "rejected"  # or "accepted" (a defined result is the right answer)
    mention: str | None = None  # text the one-line message must contain (the file at fault)


# ---------------------------------------------------------------------------------------------
# building blocks


class _Evil:
    """Unpickling this creates the canary file: proof that code ran."""

    marker = "PWNED"

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _template(cache: dict = {}) -> Path:  # noqa: B006 - a per-process cache on purpose
    if "run" not in cache:
        import tempfile

        import atexit

        folder = Path(tempfile.mkdtemp(prefix="hostile-template-"))
        atexit.register(shutil.rmtree, folder, True)
        cache["run"] = make_synthetic_run(folder / "run", classes=6, clusters=2, groups=1, n_snapshots=2)
    return cache["run"]


def _run(base: Path) -> Path:
    dst = base / "in" / "run"
    shutil.copytree(_template(), dst)
    return dst


def _meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())  # raw run.json: hostile on purpose


def _put_meta(run: Path, meta) -> None:
    (run / "run.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))  # raw run.json: hostile on purpose


def _topo_edit(fn: Callable[[dict], None]) -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        meta = _meta(run)
        fn(meta)
        _put_meta(run, meta)
        return Case("run", run, mention="run.json")
    return build


def _index_edit(entries, mention="index.json") -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        value = entries(base, run) if callable(entries) else entries
        text = value if isinstance(value, str) else json.dumps({"snapshots": value} if isinstance(value, list) else value)
        (run / "snapshots" / "index.json").write_text(text)
        return Case("run", run, mention=mention)
    return build


def _outside_npz(base: Path) -> Path:
    out = base / "outside"
    out.mkdir(parents=True, exist_ok=True)
    secret = out / "secret.npz"
    shutil.copy(_template() / "snapshots" / "step_00000100.npz", secret)
    (out / "secret.json").write_text(json.dumps({"format": "blockout-run"}))
    return secret


def _snapshot_arrays() -> dict:
    return rf.load_npz(_template() / "snapshots" / "step_00000200.npz")


def _npz_edit(fn: Callable[[dict], dict], mention="step_00000200.npz") -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        arrays = fn(_snapshot_arrays())
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        (run / "snapshots" / "step_00000200.npz").write_bytes(buf.getvalue())
        return Case("run", run, mention=mention)
    return build


def _npy_bytes(header: dict | str, payload: bytes = b"", version=(1, 0)) -> bytes:
    text = header if isinstance(header, str) else repr(header)
    text = text + " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    head = np.lib.format.magic(*version)
    head += struct.pack("<H", len(text)) if version == (1, 0) else struct.pack("<I", len(text))
    return head + text.encode("latin1") + payload


def _raw_npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _raw_snapshot(members_fn, mention="step_00000200.npz") -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        (run / "snapshots" / "step_00000200.npz").write_bytes(members_fn())
        return Case("run", run, mention=mention)
    return build


def _deflated_zeros(npy_head: bytes, total: int) -> tuple[bytes, int, int]:
    """``(deflate stream, crc, size)`` of ``npy_head`` followed by ``total`` zero bytes.

    Built from one compressed 4 MiB block of zeros repeated (each ends in a full flush, so
    copies chain into one valid deflate stream): seconds, not the minutes of compressing it all.
    """
    def deflate(data: bytes) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)

    piece = 1 << 22
    n, rem = divmod(total, piece)
    zeros = bytes(piece)
    body = deflate(npy_head) + deflate(zeros) * n + deflate(bytes(rem)) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = zlib.crc32(npy_head)
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rem), crc)
    return body, crc, len(npy_head) + total


def _raw_zip(members: list[tuple[str, int, int, bytes, int]]) -> bytes:
    """A zip from ``(name, method, crc, stored bytes, uncompressed size)`` entries, written by hand
    (zipfile cannot store a stream it did not compress itself)."""
    out, central = io.BytesIO(), []
    for name, method, crc, body, size in members:
        fname = name.encode()
        offset = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(body), size,
                              len(fname), 0) + fname + body)
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                                   len(body), size, len(fname), 0, 0, 0, 0, 0, offset) + fname)
    cd = b"".join(central)
    cd_off = out.tell()
    out.write(cd + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd), cd_off, 0))
    return out.getvalue()


def _deflate_bomb(name: str, header: dict, total: int, keep_template: bool = False) -> bytes:
    """A zip whose ``name`` member inflates to ``total`` bytes of zeros (about 1 MB on disk);
    ``keep_template``: next to the template snapshot's own (valid) arrays."""
    members = []
    if keep_template:
        with zipfile.ZipFile(_template() / "snapshots" / "step_00000200.npz") as zf:
            for info in zf.infolist():
                data = zf.read(info)
                members.append((info.filename, 0, zlib.crc32(data), data, len(data)))
    body, crc, size = _deflated_zeros(_npy_bytes(header), total)
    return _raw_zip(members + [(name, 8, crc, body, size)])


_BOMB_CACHE: dict = {}


def _bomb(header: dict, total: int, name: str = "probs__h1.npy", keep_template: bool = False) -> bytes:
    key = (repr(header), total, name, keep_template)
    if key not in _BOMB_CACHE:
        _BOMB_CACHE[key] = _deflate_bomb(name, header, total, keep_template)
    return _BOMB_CACHE[key]


def _metrics_edit(text: str) -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        (run / "metrics.jsonl").write_text(text)
        return Case("run", run, mention="metrics.jsonl")
    return build


def _state(obj_fn, raw: bytes | None = None) -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        import torch

        run = _run(base)
        path = run / "train_state.pt"
        if raw is not None:
            path.write_bytes(raw)
        else:
            torch.save(obj_fn(base), path)
        return Case("train_state", run, mention="train_state.pt")
    return build


def _good_state(**changes) -> Callable:
    def make(base: Path) -> dict:
        state = {"state_version": 1, "config": json.dumps({"epochs": 1}), "model": {}, "optimizer": {},
                 "progress": {}, "rng": {}}
        state.update(changes)
        return {k: v for k, v in state.items() if v is not _DROP}
    return make


_DROP = object()


def _file_case(kind: str, name: str, content, mention: str | None = None, env=None) -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        folder = base / "in"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        data = content(base) if callable(content) else content
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return Case(kind, path, mention=mention or name, env=env or {})
    return build


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries a few bytes of pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _hier_classes(n: int) -> str:
    return json.dumps({"g": [f"c{i}" for i in range(n)]})


def _run_files() -> dict[str, bytes]:
    t = _template()
    return {f"run/{p.relative_to(t)}": p.read_bytes() for p in t.rglob("*") if p.is_file()}


def zip_bytes(entries: dict, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _tar_bytes(entries: dict, extra: list[tarfile.TarInfo] = (), mode="w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return buf.getvalue()


def _tar_huge_skipped_member() -> bytes:
    """A tar.gz whose unwanted member's header declares 4 GiB (the data itself is cut short)."""
    head = tarfile.TarInfo("run/huge.bin")
    head.size = 4 << 30
    raw = io.BytesIO()
    for name, data in _run_files().items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        raw.write(info.tobuf(format=tarfile.GNU_FORMAT) + data + b"\0" * ((512 - len(data) % 512) % 512))
    raw.write(head.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * (1 << 20))
    import gzip

    return gzip.compress(raw.getvalue())


def _archive(data_fn, name: str, env=None, expect="rejected", mention=None) -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        return Case("archive", None, data=data_fn(base), filename=name, env=env or {}, expect=expect,
                    mention=mention or name)
    return build


def _symlink_case(where: str, to) -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        _outside_npz(base)
        target = to(base) if callable(to) else Path(to)
        link = run / where
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink(missing_ok=True)
        link.symlink_to(target)
        return Case("run", run, mention=None)
    return build


def _fifo_index(base: Path) -> Case:
    run = _run(base)
    idx = run / "snapshots" / "index.json"
    idx.unlink()
    os.mkfifo(idx)
    return Case("run", run, mention="index.json")


def _dir_as_runjson(base: Path) -> Case:
    run = _run(base)
    (run / "run.json").unlink()
    (run / "run.json").mkdir()
    return Case("run", run, mention="run")


def _sparse(name: str, size: int, kind="run") -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        path = run / name
        with open(path, "wb") as fh:
            fh.truncate(size)
        return Case(kind, run, mention=Path(name).name)
    return build


def _export_name(base: Path) -> Case:
    run = _run(base)
    meta = _meta(run)
    meta["name"] = "../../../../tmp/x/y"
    _put_meta(run, meta)
    return Case("export", run, expect="accepted")


def _inside_symlink(base: Path) -> Case:
    # a link that stays inside the run is fine: a defined result
    run = _run(base)
    snaps = run / "snapshots"
    (snaps / "real.npz").write_bytes((snaps / "step_00000200.npz").read_bytes())
    (snaps / "step_00000200.npz").unlink()
    (snaps / "step_00000200.npz").symlink_to("real.npz")
    return Case("run", run, expect="accepted")


def _evil_object_npz(base: Path) -> Case:
    run = _run(base)
    arrays = _snapshot_arrays()
    buf = io.BytesIO()
    arrays["probs__h1"] = np.array([_Evil(str(base / "PWNED"))], dtype=object)
    np.savez(buf, **arrays)
    (run / "snapshots" / "step_00000200.npz").write_bytes(buf.getvalue())
    return Case("run", run, mention="step_00000200.npz")


def _evil_pickle_member(base: Path) -> bytes:
    import pickle

    return zip_bytes({**_run_files(), "run/train_state.pt": pickle.dumps(_Evil(str(base / "PWNED"))),
                       "run/snapshots/evil.pkl": pickle.dumps(_Evil(str(base / "PWNED")))})


def _evil_npz_in_archive(base: Path) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, probs__h1=np.array([_Evil(str(base / "PWNED"))], dtype=object))
    files = _run_files()
    files["run/snapshots/step_00000200.npz"] = buf.getvalue()
    return zip_bytes(files)


def _many_members() -> bytes:
    return _raw_npz({f"a{i}.npy": b"" for i in range(12_000)})


def _zip_many_entries(base: Path) -> bytes:
    return zip_bytes({**_run_files(), **{f"run/x{i}.txt": b"" for i in range(21_000)}})


def _tar_member(name: str, kind) -> Callable[[Path], bytes]:
    def make(base: Path) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            info.linkname = "/etc/passwd"
        return _tar_bytes(_run_files(), [info])
    return make


def _evil_state(base: Path):
    return {"state_version": 1, "config": "{}", "model": _Evil(str(base / "PWNED")), "optimizer": {},
            "progress": {}, "rng": {}}


def _huge_class_names(meta: dict) -> None:
    meta["dataset"]["class_names"] = [f"c{i}" for i in range(300_000)]


def _set(path: str, value) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        node = meta
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if value is _DROP:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


def _index_entries(fn) -> Callable:
    def make(base: Path, run: Path):
        entries = json.loads((run / "snapshots" / "index.json").read_text())["snapshots"]
        return fn(base, entries)
    return make


def _entry_file(value) -> Callable:
    def fn(base, entries):
        _outside_npz(base)
        entries[-1]["file"] = value(base) if callable(value) else value
        return entries
    return fn


def _entry_set(key, value) -> Callable:
    def fn(base, entries):
        if value is _DROP:
            del entries[-1][key]
        else:
            entries[-1][key] = value
        return entries
    return fn


# ---------------------------------------------------------------------------------------------
# the cases

C = {}

# run.json: not JSON, not an object, bounded size / depth, strict JSON
def _runjson_text(text: str | bytes) -> Callable[[Path], Case]:
    def build(base: Path) -> Case:
        run = _run(base)
        (run / "run.json").write_bytes(text if isinstance(text, bytes) else text.encode())  # raw run.json: hostile on purpose
        return Case("run", run, mention="run.json")
    return build


for _id, _text in {
    "runjson-truncated": '{"format": "blockout-run", "topo',
    "runjson-array": "[]",
    "runjson-nested-100k-lists": "[" * 100_000 + "]" * 100_000,
    "runjson-nested-50k-objects": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "runjson-nested-500-in-a-run": '{"format": "blockout-run", "x": ' + "[" * 500 + "]" * 500 + "}",
    "runjson-nan": '{"format": "blockout-run", "format_version": NaN}',
    "runjson-1e999-overflows": '{"format": "blockout-run", "format_version": 1e999}',
    "runjson-5000-digit-int": '{"format": "blockout-run", "format_version": ' + "9" * 5000 + "}",
    "runjson-not-utf8": b"\xff\xfe\x00{",
}.items():
    C[_id] = _runjson_text(_text)


def _dup_key(base: Path) -> Case:
    run = _run(base)
    text = (run / "run.json").read_text()  # raw run.json: hostile on purpose
    dup = text.replace('"topology":', '"topology": {"node_sets": [], "layers": []}, "topology":', 1)
    (run / "run.json").write_text(dup)  # raw run.json: hostile on purpose
    return Case("run", run, mention="run.json")


C["runjson-duplicate-key"] = _dup_key
C["runjson-1GiB-sparse"] = _sparse("run.json", 1 << 30)
C["runjson-is-a-folder"] = _dir_as_runjson
C["runjson-format-missing"] = _topo_edit(_set("format", _DROP))
C["runjson-format-version-99"] = _topo_edit(_set("format_version", 99))
C["runjson-format-version-true"] = _topo_edit(_set("format_version", True))
C["runjson-config-a-list"] = _topo_edit(_set("config", [1, 2]))
C["runjson-dataset-a-string"] = _topo_edit(_set("dataset", "cifar"))
C["runjson-name-an-object"] = _topo_edit(_set("name", {"a": 1}))
C["runjson-topology-missing"] = _topo_edit(_set("topology", _DROP))
C["runjson-node-sets-a-string"] = _topo_edit(_set("topology.node_sets", "h1"))
C["runjson-node-set-without-name"] = _topo_edit(_set("topology.node_sets.1.name", _DROP))
C["runjson-node-set-name-int"] = _topo_edit(_set("topology.node_sets.1.name", 7))
C["runjson-class-nodes-1e12"] = _topo_edit(lambda m: (_set("topology.node_sets.3.size", 10**12)(m),
                                                       _set("topology.layers.2.out_features", 10**12)(m)))
C["runjson-clusters-1e9"] = _topo_edit(_set("topology.node_sets.1.clusters", 10**9))
C["runjson-size-negative"] = _topo_edit(_set("topology.node_sets.1.size", -5))
C["runjson-size-true"] = _topo_edit(_set("topology.node_sets.1.size", True))
C["runjson-size-float"] = _topo_edit(_set("topology.node_sets.1.size", 3.5))
C["runjson-clusters-zero"] = _topo_edit(_set("topology.node_sets.1.clusters", 0))
C["runjson-trainable-string"] = _topo_edit(_set("topology.node_sets.1.trainable", "yes"))
C["runjson-duplicate-node-set"] = _topo_edit(lambda m: m["topology"]["node_sets"].append(m["topology"]["node_sets"][1]))
C["runjson-layers-an-object"] = _topo_edit(_set("topology.layers", {"fc1": 1}))
C["runjson-layer-unknown-node-set"] = _topo_edit(_set("topology.layers.0.in_set", "ghost"))
C["runjson-layer-features-disagree"] = _topo_edit(_set("topology.layers.0.in_features", 31))
C["runjson-plain-layer-1e12-features"] = _topo_edit(lambda m: m["topology"]["layers"].append(
    {"name": "big", "in_set": None, "out_set": None, "in_features": 10**6, "out_features": 10**6}))
C["runjson-class-names-an-object"] = _topo_edit(_set("dataset.class_names", {"a": "b"}))
C["runjson-class-names-numbers"] = _topo_edit(_set("dataset.class_names", [1, 2, 3, 4, 5, 6]))
C["runjson-class-names-count-disagrees"] = _topo_edit(_set("dataset.class_names", ["a", "b"]))
C["runjson-300k-class-names"] = _topo_edit(_huge_class_names)
C["runjson-wnids-an-object"] = _topo_edit(_set("dataset.wnids", {"n0": 1}))
C["runjson-coarse-labels-strings"] = _topo_edit(_set("dataset.coarse_labels", ["a"]))
C["runjson-hierarchy-a-number"] = _topo_edit(_set("dataset.hierarchy", 5))

# paths that leave the run folder (and must not reveal what exists outside)
C["index-entry-dotdot"] = _index_edit(_index_entries(_entry_file("../../outside/secret.npz")))
C["index-entry-absolute-existing"] = _index_edit(_index_entries(_entry_file(lambda b: str(b / "outside" / "secret.npz"))))
C["index-entry-absolute-missing"] = _index_edit(_index_entries(_entry_file("/nonexistent/secret.npz")))
C["index-entry-etc-passwd"] = _index_edit(_index_entries(_entry_file("/etc/passwd")))
C["index-entry-nul-byte"] = _index_edit(_index_entries(_entry_file("step\u0000.npz")))
C["index-entry-backslash"] = _index_edit(_index_entries(_entry_file("..\\..\\secret.npz")))
C["index-entry-file-int"] = _index_edit(_index_entries(_entry_file(123)))
C["snapshot-symlink-out"] = _symlink_case("snapshots/step_00000200.npz", lambda b: b / "outside" / "secret.npz")
C["snapshot-symlink-dangling-out"] = _symlink_case("snapshots/step_00000200.npz", "/nonexistent/x.npz")
C["snapshots-folder-symlink-out"] = _symlink_case("snapshots", lambda b: b / "outside")
C["runjson-symlink-out"] = _symlink_case("run.json", lambda b: b / "outside" / "secret.json")
C["metrics-symlink-etc-passwd"] = _symlink_case("metrics.jsonl", "/etc/passwd")
C["index-symlink-dev-zero"] = _symlink_case("snapshots/index.json", "/dev/zero")
C["snapshot-symlink-inside"] = _inside_symlink

# index.json: wrong types
C["index-entries-strings"] = _index_edit(["step_00000100.npz", "step_00000200.npz"])
C["index-entry-without-step"] = _index_edit(_index_entries(_entry_set("step", _DROP)))
C["index-step-abc"] = _index_edit(_index_entries(_entry_set("step", "abc")))
C["index-step-negative"] = _index_edit(_index_entries(_entry_set("step", -1)))
C["index-step-float"] = _index_edit(_index_entries(_entry_set("step", 1.5)))
C["index-step-duplicate"] = _index_edit(_index_entries(_entry_set("step", 100)))
C["index-tags-a-string"] = _index_edit(_index_entries(_entry_set("tags", "best")))
C["index-has-weights-string"] = _index_edit(_index_entries(_entry_set("has_weights", "yes")))
C["index-snapshots-an-object"] = _index_edit({"snapshots": {"a": 1}})
C["index-nested-100k"] = _index_edit("[" * 100_000 + "]" * 100_000)
C["index-is-a-fifo"] = _fifo_index

# snapshots (.npz)
C["npz-probs-strings"] = _npz_edit(lambda a: {**a, "probs__h1": a["probs__h1"].astype(str)})
C["npz-probs-nan"] = _npz_edit(lambda a: {**a, "probs__h1": np.full_like(a["probs__h1"], np.nan)})
C["npz-probs-inf"] = _npz_edit(lambda a: {**a, "probs__h1": np.full_like(a["probs__h1"], np.inf)})
C["npz-probs-above-one"] = _npz_edit(lambda a: {**a, "probs__h1": a["probs__h1"] + 5})
C["npz-probs-complex"] = _npz_edit(lambda a: {**a, "probs__h1": a["probs__h1"].astype(np.complex64)})
C["npz-probs-structured"] = _npz_edit(lambda a: {**a, "probs__h1": np.zeros(32, dtype=[("a", "f4"), ("b", "f4")])})
C["npz-weight-shape-disagrees"] = _npz_edit(lambda a: {**a, "weight__fc1": np.zeros((3, 3), np.float32)})
C["npz-probs-transposed"] = _npz_edit(lambda a: {**a, "probs__h1": a["probs__h1"].T.copy()})
C["npz-object-array-pickle"] = _evil_object_npz
C["npz-header-claims-1e12-elements"] = _raw_snapshot(lambda: _raw_npz({"probs__h1.npy": _npy_bytes(
    {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}, b"\0" * 64)}))
C["npz-header-code-in-dict"] = _raw_snapshot(lambda: _raw_npz({"probs__h1.npy": _npy_bytes(
    "{'descr': __import__('os').system('touch PWNED'), 'fortran_order': False, 'shape': (2,)}")}))
C["npz-header-version-9"] = _raw_snapshot(lambda: _raw_npz({"probs__h1.npy": b"\x93NUMPY\x09\x00" + b"\0" * 64}))
C["npz-header-huge-length"] = _raw_snapshot(lambda: _raw_npz({"probs__h1.npy": _npy_bytes(
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}" + " " * 200_000, version=(2, 0))}))
C["npz-header-size-lies"] = _raw_snapshot(lambda: _raw_npz({"probs__h1.npy": _npy_bytes(
    {"descr": "<f4", "fortran_order": False, "shape": (32, 2)}, b"\0" * 8)}))
C["npz-deflate-bomb-1.3GB"] = _raw_snapshot(lambda: _bomb(
    {"descr": "<f4", "fortran_order": False, "shape": (18_000, 18_000)}, 18_000 * 18_000 * 4))
C["npz-deflate-bomb-lying-header"] = _raw_snapshot(lambda: _bomb(
    {"descr": "<f4", "fortran_order": False, "shape": (32, 32)}, 300 << 20))
C["npz-multiplier-bomb-1.3GB"] = _raw_snapshot(lambda: _bomb(
    {"descr": "<f4", "fortran_order": False, "shape": (18_000 * 18_000,)}, 18_000 * 18_000 * 4, "multiplier__fc1.npy",
    keep_template=True))
C["npz-12000-members"] = _raw_snapshot(_many_members)
C["npz-member-path"] = _raw_snapshot(lambda: _raw_npz({"../probs__h1.npy": _npy_bytes(
    {"descr": "<f4", "fortran_order": False, "shape": (0,)})}))
C["npz-member-not-npy"] = _raw_snapshot(lambda: _raw_npz({"probs__h1.pkl": b"\x80\x04N."}))
C["npz-bzip2-member"] = _raw_snapshot(lambda: _raw_npz({"probs__h1.npy": _npy_bytes(
    {"descr": "<f4", "fortran_order": False, "shape": (0,)})}, zipfile.ZIP_BZIP2))
C["npz-truncated"] = _raw_snapshot(lambda: (_template() / "snapshots" / "step_00000200.npz").read_bytes()[:700])
C["npz-not-a-zip"] = _raw_snapshot(lambda: b"this is not a zip file at all" * 10)
C["npz-empty-file"] = _raw_snapshot(lambda: b"")

# metrics.jsonl
C["metrics-test-acc-string"] = _metrics_edit('{"step": 1, "epoch": 1, "test_acc": "0.9"}\n')
C["metrics-test-acc-nan"] = _metrics_edit('{"step": 1, "epoch": 1, "test_acc": NaN}\n')
C["metrics-step-abc"] = _metrics_edit('{"step": "abc", "epoch": 1, "test_acc": 0.5}\n')
C["metrics-line-a-list"] = _metrics_edit('[1, 2, 3]\n')
C["metrics-not-utf8"] = lambda base: (lambda run: ((run / "metrics.jsonl").write_bytes(b"\xff\xfe{}\n"),
                                                    Case("run", run, mention="metrics.jsonl"))[1])(_run(base))
C["metrics-300MB-sparse"] = _sparse("metrics.jsonl", 300 << 20)
C["metrics-nested-100k"] = _metrics_edit("[" * 100_000 + "]" * 100_000 + "\n")

# train_state.pt (resume)
C["state-without-model"] = _state(_good_state(model=_DROP))
C["state-config-not-json"] = _state(_good_state(config="{not json"))
C["state-config-a-list"] = _state(_good_state(config="[1, 2]"))
C["state-not-a-dict"] = _state(lambda b: [1, 2, 3])
C["state-version-missing"] = _state(_good_state(state_version=_DROP))
C["state-pickle-payload"] = _state(_evil_state)
C["state-garbage"] = _state(None, raw=b"\x80\x02garbage that is not a torch file")

# config files (blockout train --config)
C["config-a-list"] = _file_case("config", "cfg.json", "[1, 2]")
C["config-nodes-1e12"] = _file_case("config", "cfg.json", json.dumps({"nodes": 10**12}), mention="nodes")
C["config-clusters-1e9"] = _file_case("config", "cfg.json", json.dumps({"clusters": 10**9}), mention="clusters")
C["config-nodes-times-clusters"] = _file_case("config", "cfg.json", json.dumps({"nodes": 10**6, "clusters": 10**5}),
                                              mention="nodes")
C["config-nested-100k"] = _file_case("config", "cfg.json", "[" * 100_000 + "]" * 100_000)
C["config-duplicate-key"] = _file_case("config", "cfg.json", '{"lr": 0.1, "lr": 100}')
C["config-nan"] = _file_case("config", "cfg.json", '{"lr": NaN}')

# hierarchy files (--hierarchy)
C["hierarchy-duplicate-group"] = _file_case("hierarchy", "h.json", '{"a": ["x", "y"], "b": ["z"], "a": ["w"]}')
C["hierarchy-1e6-classes"] = _file_case("hierarchy", "h.json", lambda b: _hier_classes(1_000_000))
C["hierarchy-nested-100k"] = _file_case("hierarchy", "h.json", '{"a":' * 100_000 + '["x"]' + "}" * 100_000)
C["hierarchy-a-list"] = _file_case("hierarchy", "h.json", '["a", "b"]')

# images in an image folder
C["image-400-megapixel-png"] = _file_case("image", "bomb.png", _png_header(20_000, 20_000))
C["image-100-megapixel-png"] = _file_case("image", "big.png", _png_header(10_000, 10_000))
C["image-garbage"] = _file_case("image", "x.png", b"\x89PNG\r\n\x1a\n garbage")

# uploaded archives
C["archive-dotdot-entry"] = _archive(lambda b: zip_bytes({**_run_files(), "../../evil.json": b"{}"}), "a.zip",
                                    mention="../../evil.json")
C["archive-absolute-entry"] = _archive(lambda b: _tar_bytes({**_run_files(), "/tmp/evil.json": b"{}"}), "a.tgz",
                                       mention="/tmp/evil.json")
C["archive-zip-symlink"] = _archive(lambda b: zip_bytes(_run_files(), symlink="run/link.json"), "a.zip")
C["archive-tar-symlink"] = _archive(_tar_member("run/l.json", tarfile.SYMTYPE), "a.tgz")
C["archive-tar-hardlink"] = _archive(_tar_member("run/l.json", tarfile.LNKTYPE), "a.tgz")
C["archive-tar-device"] = _archive(_tar_member("run/dev", tarfile.CHRTYPE), "a.tgz")
C["archive-tar-skipped-4GiB-member"] = _archive(lambda b: _tar_huge_skipped_member(), "a.tar.gz")
C["archive-zip-21000-entries"] = _archive(_zip_many_entries, "a.zip")
C["archive-garbage"] = _archive(lambda b: b"PK\x03\x04 not really", "a.zip")
C["archive-pickles-skipped"] = _archive(_evil_pickle_member, "a.zip", expect="accepted")
C["archive-object-npz"] = _archive(_evil_npz_in_archive, "a.zip", mention="step_00000200.npz")
C["archive-over-limit"] = _archive(lambda b: zip_bytes(_run_files()), "a.zip", env={"BLOCKOUT_MAX_UPLOAD_BYTES": "2000"})

# writes: a hostile run name must not steer `blockout export` out of the working folder
C["export-name-traversal"] = _export_name

CASES: dict[str, Callable[[Path], Case]] = C


# ---------------------------------------------------------------------------------------------
# the harness


class _Monitor:
    """Audit-hook recorder of file-system access (installed once per process; off by default)."""

    EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.replace", "os.remove",
              "os.rmdir", "os.symlink", "os.truncate", "shutil.rmtree", "shutil.copyfile", "os.chmod"}

    def __init__(self) -> None:
        self.active = False
        self.seen: list[tuple[str, str]] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if not self.active or event not in self.EVENTS:
            return
        for a in args[:2]:
            if isinstance(a, (str, bytes, os.PathLike)):
                try:
                    self.seen.append((event, os.fsdecode(a)))
                except (TypeError, ValueError):
                    pass


_MONITOR: _Monitor | None = None


def _monitor() -> _Monitor:
    global _MONITOR
    if _MONITOR is None:
        _MONITOR = _Monitor()
    return _MONITOR


def _exercise_run(path: Path) -> None:
    """Everything the CLI and dashboard read from a run folder."""
    from analysis.run import load_run
    from analysis.summary import summarize_run

    run = load_run(path)
    for step in run.steps:
        run.probs(step)
    for ns in run.node_sets:
        if run.steps:
            run.probs_history(ns.name)
    if run.weight_steps():
        run.weights()
    for step in run.steps:
        run.multipliers(step)
    summarize_run(path)


def _cli(args: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    from blockout.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} in output")
    return json.loads(text, parse_constant=refuse)


def _execute(case: Case, base: Path) -> list[str]:
    """Feed ``case`` to its entry points; returns the one-line messages of the rejections."""
    messages: list[str] = []

    def lib(fn, *a):
        try:
            fn(*a)
        except UserError as exc:
            messages.append(str(exc))

    if case.kind == "run":
        code, out, err = _cli(["inspect", "--json", str(case.target)])
        if code == 0:
            _strict_json(out)  # valid JSON, no NaN
        else:
            assert code == 2 and err.count("\n") == 1 and err.startswith("blockout: error:"), (code, err[-500:])
            messages.append(err.strip())
        lib(_exercise_run, case.target)
    elif case.kind == "export":
        work = base / "work"
        work.mkdir(exist_ok=True)
        code, out, err = _cli(["export", str(case.target), "--format", "json"], cwd=work)
        if code != 0:
            messages.append(err.strip())
        else:
            written = Path(out.strip())
            assert written.resolve().parent == work.resolve(), f"export wrote {written}"
    elif case.kind == "archive":
        from app.archive import extract_run_archive

        dest = base / "in" / "unpacked"

        def unpack_and_read():
            _exercise_run(extract_run_archive(case.data, case.filename, dest))
        lib(unpack_and_read)
    elif case.kind == "config":
        from blockout.config import TrainConfig

        lib(TrainConfig.from_json_file, case.target)
    elif case.kind == "hierarchy":
        from blockout.data.hierarchy import load_hierarchy

        lib(load_hierarchy, case.target)
    elif case.kind == "train_state":
        from blockout.train import resume_config

        lib(resume_config, case.target)
    elif case.kind == "image":
        from blockout.data.imagefolder import load_image

        lib(load_image, case.target, 8)
    else:
        raise ValueError(case.kind)
    return messages


def run_case(case_id: str, base: Path, measure_memory: bool = True, case: Case | None = None) -> dict:
    """Build (unless ``case`` is given, built earlier) and run one case under ``base``; return what happened."""
    base = Path(base)
    if case is None:
        case = CASES[case_id](base)
    mon = _monitor()
    inside = [str((base / "in").resolve()), str((base / "work").resolve())]
    old_env = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    result = {"case": case_id, "kind": case.kind}
    try:
        if measure_memory:
            tracemalloc.start()
        mon.seen, mon.active = [], True
        try:
            messages = _execute(case, base)
            result["outcome"] = "rejected" if messages else "accepted"
            result["messages"] = messages
        except Exception as exc:  # noqa: BLE001 - a traceback is what we are counting
            import traceback

            result["outcome"] = "traceback"
            result["messages"] = [f"{type(exc).__name__}: {exc}"[:500]]
            result["traceback"] = traceback.format_exc()[-3000:]
        finally:
            mon.active = False
            if measure_memory:
                result["peak_traced_bytes"] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    base_r = str(base.resolve())
    outside = []
    for event, p in mon.seen:
        real = os.path.realpath(p if os.path.isabs(p) else os.path.join(os.getcwd(), p))
        if real in SECRETS or (real.startswith(base_r + os.sep)
                               and not any(real == r or real.startswith(r + os.sep) for r in inside)):
            outside.append(f"{event} {real}")
    result["outside_access"] = outside
    result["code_executed"] = (base / "PWNED").exists() or (ROOT / "PWNED").exists()
    result["expect"] = case.expect
    result["mention"] = case.mention
    return result


# ---------------------------------------------------------------------------------------------
# resident memory, one case per process


def save_case(case_id: str, base: Path) -> None:
    """Build ``case_id`` under ``base`` and describe it in ``base/case.json`` (for another process)."""
    base = Path(base)
    case = CASES[case_id](base)
    if case.data is not None:
        (base / "archive.bin").write_bytes(case.data)
    (base / "case.json").write_text(json.dumps({
        "kind": case.kind, "target": None if case.target is None else str(case.target),
        "filename": case.filename, "env": case.env, "expect": case.expect, "mention": case.mention}))


def load_case(base: Path) -> Case:
    d = json.loads((Path(base) / "case.json").read_text())
    data = (Path(base) / "archive.bin").read_bytes() if d["kind"] == "archive" else None
    return Case(d["kind"], None if d["target"] is None else Path(d["target"]), data, d["filename"], d["env"],
                d["expect"], d["mention"])


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's resident high-water mark (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def probe(case_id: str, base: str) -> dict:
    """In a fresh process: warm up, then run the case saved under ``base`` (built by another
    process, so building it costs nothing here) and report how much resident memory grew."""
    import gc
    import resource
    import tempfile

    warm = Path(tempfile.mkdtemp(prefix="hostile-warm-"))
    for i, cid in enumerate(("snapshot-symlink-inside", "state-without-model")):
        run_case(cid, warm / str(i), measure_memory=False)
    shutil.rmtree(warm, ignore_errors=True)
    case = load_case(Path(base))
    gc.collect()
    exact = _reset_peak()
    before = _status_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = run_case(case_id, Path(base), measure_memory=False, case=case)
    after = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r.pop("traceback", None)
    r["rss_growth_bytes"] = max(0, (after or 0) - (before or 0)) * 1024
    r["rss_method"] = "VmHWM after clear_refs" if exact else "ru_maxrss (lower bound)"
    return r
