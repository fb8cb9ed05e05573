"""analysis.runformat: the one run-folder contract.

Records round-trip the bundled runs byte for byte, validation is one path with one-line errors on
both sides (reading and writing), configs nested by concern read like flat ones, the README's
tables are the records' fields, and no code outside the contract writes or parses ``run.json`` by hand.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.errors import RunFormatError
from analysis.run import load_run
from analysis.summary import summarize_run
from analysis.synthetic import make_synthetic_run

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p.parent for p in (ROOT / "checkpoints").glob("*/run.json"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("rf") / "run", trunk=6, hidden=(8,), classes=4, clusters=2,
                              groups=1, n_snapshots=3)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# ---------------------------------------------------------------------------------------------
# the bundled runs: unchanged through the records


@pytest.mark.skipif(not BUNDLED, reason="no bundled run under checkpoints/")
@pytest.mark.parametrize("run", BUNDLED, ids=lambda p: p.name)
class TestBundledRuns:
    def test_run_json_round_trips_byte_for_byte(self, run, tmp_path):
        raw = rf.read_json(run / fmt.RUN_JSON)  # raw run.json: the file as stored, to compare with
        record = fmt.read_run(run)
        assert record.to_json() == raw
        fmt.write_run(tmp_path, record)
        assert (tmp_path / fmt.RUN_JSON).read_bytes() == (run / fmt.RUN_JSON).read_bytes()

    def test_index_and_metrics_round_trip(self, run, tmp_path):
        entries = fmt.read_snapshot_index(run)
        assert entries and [e.file for e in entries] == [fmt.snapshot_filename(e.step) for e in entries]
        fmt.write_snapshot_index(tmp_path, entries)
        index = Path(fmt.SNAPSHOT_DIR) / fmt.SNAPSHOT_INDEX
        assert (tmp_path / index).read_bytes() == (run / index).read_bytes()
        lines = fmt.read_metrics(run)
        assert lines and [fmt.MetricsRecord.from_json(m).to_json() for m in lines] == lines
        fmt.write_metrics(tmp_path, lines)
        assert (tmp_path / fmt.METRICS).read_bytes() == (run / fmt.METRICS).read_bytes()

    def test_readers_agree_with_the_record(self, run):
        record, loaded = fmt.read_run(run), load_run(run)
        assert loaded.record == record and loaded.config == record.config  # stored flat
        assert loaded.node_sets == record.topology.node_sets and loaded.layers == record.topology.layers
        assert fmt.run_is_complete(run)  # bundled runs are trained to their configured epochs


# ---------------------------------------------------------------------------------------------
# records


class TestRecords:
    def test_unknown_keys_survive_a_read_write(self):
        d = {"name": "h1", "size": 4, "clusters": 2, "trainable": True, "role": "hidden",
             "membership": "bernoulli", "init": None, "future_field": [1, 2]}
        ns = fmt.NodeSet.from_json(d)
        assert ns.to_json() == d and ns.extra == {"future_field": [1, 2]}
        assert ns == fmt.NodeSet("h1", 4, 2, membership="bernoulli") and hash(ns)  # extra is not compared
        lay = fmt.Layer.from_json({"name": "fc", "in_set": None, "out_set": None, "in_features": 3,
                                   "out_features": 2, "dropout": 0.5, "role": "classifier"})
        assert lay.dropout == 0.5 and lay.to_json()["dropout"] == 0.5
        assert "dropout" not in dataclasses.replace(lay, dropout=None).to_json()  # left out when none

    def test_snapshot_entry_defaults_its_file(self):
        e = fmt.SnapshotEntry.from_json({"step": 7})
        assert e.file == "step_00000007.npz" and e.tags == [] and e.has_weights is None
        assert fmt.SnapshotEntry(step=3).to_json() == {"step": 3, "epoch": None, "file": "step_00000003.npz",
                                                       "has_weights": None, "tags": []}

    def test_metrics_keep_user_keys_and_explicit_nulls(self, tmp_path):
        fmt.append_metrics(tmp_path, {"step": 1, "test_loss": None, "val_f1": 0.7})
        fmt.append_metrics(tmp_path, fmt.MetricsRecord(step=2, epoch=1, test_acc=0.5))
        assert fmt.read_metrics(tmp_path) == [{"step": 1, "test_loss": None, "val_f1": 0.7},
                                              {"step": 2, "epoch": 1, "test_acc": 0.5}]

    def test_array_names(self):
        arrays = fmt.snapshot_arrays({"h": [[0.5]]}, {"fc": [[1.0]]}, {"fc": [0.0]}, {"fc": [1.0]})
        assert sorted(arrays) == ["bias__fc", "multiplier__fc", "probs__h", "weight__fc"]
        assert {k: sorted(v) for k, v in fmt.split_snapshot(arrays).items()} == {
            "probs": ["h"], "weight": ["fc"], "bias": ["fc"], "multiplier": ["fc"]}
        assert fmt.snapshot_step(fmt.snapshot_filename(12345)) == 12345

    def test_old_names_still_resolve_in_runfolder(self):
        assert rf.RUN_JSON is fmt.RUN_JSON and rf.snapshot_filename is fmt.snapshot_filename
        from analysis.runfolder import PROBS_PREFIX, is_run_folder  # noqa: F401 - the import is the test

        assert is_run_folder is fmt.is_run_folder
        with pytest.raises(AttributeError):
            rf.no_such_name  # noqa: B018


# ---------------------------------------------------------------------------------------------
# one validation path: the same checks on reading and before writing, one line each


def _meta(synth) -> dict:
    return fmt.read_run(synth).to_json()


BAD_RUN_JSON = [
    ("foreign format", lambda m: m.update(format="other"), "is not a Blockout run"),
    ("newer version", lambda m: m.update(format_version=99), "format_version 99"),
    ("config not an object", lambda m: m.update(config=[1]), "'config' should be an object"),
    ("runtime not an object", lambda m: m.update(runtime="gpu"), "'runtime' should be an object"),
    ("option given twice", lambda m: m.update(config={"optim": {"lr": 0.1}, "recipe": {"lr": 0.2}}),
     "config option 'lr' is given twice"),
    ("size as text", lambda m: m["topology"]["node_sets"][0].update(size="8"), "field 'size' should be int"),
    ("huge node set", lambda m: m["topology"]["node_sets"][0].update(size=10**12), "size = 1000000000000"),
    ("unknown node set", lambda m: m["topology"]["layers"][0].update(in_set="nope"), "unknown node set 'nope'"),
    ("features disagree", lambda m: m["topology"]["layers"][0].update(in_features=5), "has 5 features"),
    ("duplicate names", lambda m: m["topology"]["node_sets"][1].update(name="trunk"), "must be unique"),
    ("class names", lambda m: m["dataset"].update(class_names=["a"]), "1 class names but"),
    ("coarse labels", lambda m: m["dataset"].update(coarse_labels=["x"]), "'coarse_labels' should be a list"),
]


#: cases of BAD_RUN_JSON that a writer could only produce by editing a record's own fields
_TOP_LEVEL = {"foreign format": {"format": "other"}, "newer version": {"format_version": 99},
              "config not an object": {"config": [1]}}


@pytest.mark.parametrize("why,edit,match", BAD_RUN_JSON, ids=[c[0] for c in BAD_RUN_JSON])
def test_bad_run_json_is_one_line_on_reading_and_writing(synth, tmp_path, why, edit, match):
    meta = _meta(synth)
    edit(meta)
    with pytest.raises(RunFormatError, match=re.escape(match)) as exc:
        fmt.RunRecord.from_json(meta, "x/run.json")
    assert _one_line(exc).startswith("x/run.json")
    # the writer goes through the same path: nothing a reader would refuse is written
    with pytest.raises(RunFormatError, match=re.escape(match)) as exc:
        if why in _TOP_LEVEL:
            fmt.write_run(tmp_path, dataclasses.replace(fmt.read_run(synth), **_TOP_LEVEL[why]))
        else:
            fmt.write_run(tmp_path, fmt.RunRecord.new("x", meta["config"], meta["dataset"], meta["topology"],
                                                      extra={"runtime": meta.get("runtime")}))
    _one_line(exc)
    assert not (tmp_path / fmt.RUN_JSON).exists()


def test_run_writer_refuses_an_inconsistent_topology(synth, tmp_path):
    from blockout.runwriter import RunWriter

    topo = _meta(synth)["topology"]
    topo["layers"][0]["out_features"] = 99
    with pytest.raises(RunFormatError, match="has 99 features but node set 'h1' has 8"):
        RunWriter(tmp_path / "w").write_run_json({"epochs": 1}, {}, topo)
    assert not (tmp_path / "w" / fmt.RUN_JSON).exists()


def test_bad_metrics_and_index_are_refused_before_writing(tmp_path):
    with pytest.raises(RunFormatError, match="'step' should be a number"):
        fmt.append_metrics(tmp_path, {"step": "3"})
    with pytest.raises(RunFormatError, match="step 1 is listed twice|listed twice"):
        fmt.write_snapshot_index(tmp_path, [fmt.SnapshotEntry(step=1), {"step": 1}])
    with pytest.raises(RunFormatError, match="'tags' should be a list of strings"):
        fmt.write_snapshot_index(tmp_path, [{"step": 1, "tags": "best"}])
    assert list(tmp_path.iterdir()) == []


def test_index_file_outside_the_folder_is_refused(synth, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(synth, run)
    entries = [e.to_json() for e in fmt.read_snapshot_index(run)]
    entries[0]["file"] = "../../etc/passwd"
    fmt.write_snapshot_index(run, entries)  # the writer checks types; the reader confines the path
    with pytest.raises(RunFormatError, match="points outside the run folder") as exc:
        fmt.read_snapshot_index(run)
    _one_line(exc)


# ---------------------------------------------------------------------------------------------
# configs nested by concern read like flat ones


NESTED = {"data": {"dataset": "synthetic", "samples_per_class": 10}, "model": {"method": "hard-learned", "clusters": 2},
          "optim": {"lr": 0.01}, "run": {"epochs": 3, "seed": 0},
          "recipe": {"cocluster_at": 1, "freeze_after": 2}}


class TestFlatConfig:
    def test_shapes(self):
        flat = fmt.flat_config(NESTED)
        assert flat == {"dataset": "synthetic", "samples_per_class": 10, "method": "hard-learned", "clusters": 2,
                        "lr": 0.01, "epochs": 3, "seed": 0, "cocluster_at": 1, "freeze_after": 2}
        assert fmt.flat_config(flat) == flat and fmt.flat_config(flat) is not flat
        # a flat config whose option happens to share a section's name stays flat
        assert fmt.flat_config({"run": "x", "epochs": 1}) == {"run": "x", "epochs": 1}

    def test_an_option_given_twice_is_an_error(self):
        with pytest.raises(RunFormatError, match="'lr' is given twice") as exc:
            fmt.flat_config({"optim": {"lr": 0.1}, "recipe": {"lr": 0.2}})
        _one_line(exc)
        assert fmt.flat_config({"optim": {"lr": 0.1}, "recipe": {"lr": 0.1}}) == {"lr": 0.1}

    def test_every_reader_sees_the_same_options(self, synth, tmp_path):
        import shutil

        from app.figures.curves import training_phases

        runs = {}
        for shape, config in (("flat", fmt.flat_config(NESTED)), ("nested", NESTED)):
            run = tmp_path / shape
            shutil.copytree(synth, run)
            fmt.write_run(run, dataclasses.replace(fmt.read_run(run), config=config))
            runs[shape] = run
        flat, nested = (load_run(runs[s]) for s in ("flat", "nested"))
        assert nested.record.config == NESTED and nested.config == flat.config == fmt.flat_config(NESTED)
        sf, sn = summarize_run(runs["flat"]), summarize_run(runs["nested"])
        assert sn == {**sf, "run": sn["run"], "path": sn["path"]}
        assert sn["method"] == "hard-learned" and sn["progress"]["epochs"] == 3
        assert fmt.run_is_complete(runs["nested"]) is fmt.run_is_complete(runs["flat"]) is True
        phases = training_phases(nested.config, nested.metrics)
        assert phases == training_phases(flat.config, flat.metrics) and [p for _, p in phases] == [
            "co-clustering", "memberships frozen"]


def test_run_is_complete(synth, tmp_path):
    import shutil

    assert not fmt.run_is_complete(tmp_path)  # no run.json
    run = tmp_path / "run"
    shutil.copytree(synth, run)
    for epochs, done in ((3, True), (4, False), (None, False)):
        config = {} if epochs is None else {"epochs": epochs}
        fmt.write_run(run, dataclasses.replace(fmt.read_run(run), config=config))
        assert fmt.run_is_complete(run) is done
    from blockout.cli import run_is_complete  # the CLI's check is this one

    assert run_is_complete(run) is False


# ---------------------------------------------------------------------------------------------
# the documented format is the records


def test_readme_tables_are_rendered_from_the_records():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert fmt.readme_with_tables(text) == text, \
        "README's run-folder tables are stale: run  python -m analysis.runformat --update README.md"
    # and every field a table lists is a field of its record, in both directions
    section = text[text.index(fmt.README_BEGIN):text.index(fmt.README_END)]
    listed = [title for title in fmt.documented_fields() if f"**{title}**" in section]
    assert listed == list(fmt.documented_fields())
    for title, fields in fmt.documented_fields().items():
        table = section.split(f"**{title}**", 1)[1].split("\n\n**", 1)[0]
        assert re.findall(r"^\| `(\w+)` \|", table, re.M) == fields, title


def test_the_records_cover_what_the_writers_write(synth):
    """Every key our writers put into run.json is a documented field (nothing lands in ``extra``)."""
    record = fmt.read_run(ROOT / "checkpoints" / "demo") if BUNDLED else fmt.read_run(synth)
    for rec in [record, record.dataset, record.topology, *record.topology.node_sets, *record.topology.layers,
                fmt.read_run(synth)]:
        assert rec.extra == {}, type(rec).__name__


# ---------------------------------------------------------------------------------------------
# nothing writes or parses run.json by hand


_NAME = r"(?:\bRUN_JSON\b|[\"']run\.json[\"'])"
_IO = re.compile(r"\bread_json\(|\bjson\.loads?\(|\bjson\.dumps?\(|\batomic_write_(?:json|text|bytes)\(|"
                 r"\.(?:write|read)_(?:text|bytes)\(|\bopen\(|\bread_jsonl\(|\bappend_jsonl\(")
#: contract files other than run.json whose writing/reading belongs to the contract (source code only)
_OTHER = r"(?:\bMETRICS\b|\bSNAPSHOT_INDEX\b|[\"']metrics\.jsonl[\"']|[\"']index\.json[\"'])"
#: a line carrying this comment hand-crafts a file on purpose (a hostile or dummy run.json in a test)
MARKER = "# raw run.json:"
#: lines not yet routed through analysis.runformat, in files another change owns (exact text)
PENDING: dict[str, set[str]] = {}
CONTRACT = {"analysis/runformat.py"}


def hand_made(source: str, names: str = _NAME) -> list[int]:
    """Line numbers of ``source`` that read or write a file named by ``names`` by hand: the name
    and a JSON/file operation on one line, or an operation on a variable bound to that name within
    the eight lines before.

    >>> hand_made('meta = json.loads((run / "run.json").read_text())')
    [1]
    >>> hand_made('p = run_dir / RUN_JSON\\nif p.is_file():\\n    data = read_json(p)')
    [3]
    >>> hand_made('record = fmt.read_run(run)\\nok = (run / "run.json").is_file()')
    []
    """
    lines = source.splitlines()
    bound: dict[str, int] = {}
    hits = []
    for no, line in enumerate(lines, 1):
        code = line.split("#", 1)[0]
        m = re.match(r"\s*(\w+)\s*=[^=]", code)
        if m and re.search(names, code):
            bound[m.group(1)] = no
        if MARKER in line or not _IO.search(code):
            continue
        near = [v for v, at in bound.items() if no - at <= 8 and re.search(rf"\b{v}\b", code)]
        if re.search(names, code) or near:
            hits.append(no)
    return hits


def _sources() -> list[Path]:
    out = []
    for folder in ("blockout", "analysis", "app", "examples", "tests"):
        out += sorted((ROOT / folder).rglob("*.py"))
    return out


def test_nothing_writes_or_parses_run_json_by_hand():
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel in CONTRACT or rel == "tests/test_runformat.py":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        names = _NAME if rel.startswith("tests/") else f"(?:{_NAME}|{_OTHER})"
        for no in hand_made("\n".join(lines), names):
            if lines[no - 1].strip() not in PENDING.get(rel, ()):
                found.append(f"{rel}:{no}: {lines[no - 1].strip()[:100]}")
    assert not found, ("read and write run folders through analysis.runformat (read_run / write_run / "
                       "read_metrics / ...), or mark a deliberately hand-made test file with "
                       f"'{MARKER} <why>':\n" + "\n".join(found))


def test_the_checker_finds_what_it_should(tmp_path):
    # the check above must be able to fail: the old hand-written readers are caught
    old_cli = ('    run = rf.read_json(run_dir / rf.RUN_JSON, "run.json")\n'
               '    metrics = rf.read_jsonl(run_dir / rf.METRICS)\n')
    assert hand_made(old_cli) == [1]
    assert hand_made(old_cli, f"(?:{_NAME}|{_OTHER})") == [1, 2]
    old_meta = ('    run_json = rf.confine(path, rf.RUN_JSON, rf.RUN_JSON)\n'
                '    meta = rf.read_json(run_json, "run.json of run")\n')
    assert hand_made(old_meta) == [2]
    assert hand_made('(d / "run.json").write_text("{}")  ' + MARKER + " dummy") == []


def test_a_run_without_its_snapshot_index_reads_the_same_everywhere(tmp_path):
    """Regression: with snapshots/index.json gone, load_run scanned the .npz files while the
    summary (inspect's table, report, dashboard) read the index only and saw no snapshot."""
    import shutil

    from analysis.run import load_run
    from analysis.summary import summarize_run

    run = tmp_path / "demo"
    shutil.copytree(ROOT / "checkpoints" / "demo", run)
    (run / "snapshots" / "index.json").unlink()
    steps = [int(e["step"]) for e in fmt.snapshot_entries(run)]
    assert steps and steps == sorted(steps)
    assert load_run(run).last_step == steps[-1]
    summary = summarize_run(run)
    assert summary["snapshot"]["step"] == steps[-1]
    assert summary["snapshot_steps"] == steps


def test_a_folder_without_run_json_is_named_plainly(tmp_path):
    """Regression: the message read 'run.json of run not found: .../run.json'."""
    with pytest.raises(RunFormatError, match=r"^not a run folder \(no run.json in it\): "):
        fmt.read_run(tmp_path)
