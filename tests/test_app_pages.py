"""Every dashboard page through streamlit.testing.v1.AppTest: threshold, runs, steps, bad input."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.synthetic import make_synthetic_run

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
PAGES = ["views/overview.py", "views/branch_tree.py", "views/weight_blocks.py", "views/emergence.py",
         "views/wordnet.py", "views/compare.py", "views/export.py"]
CIFAR = json.loads((Path(__file__).resolve().parents[1] / "blockout" / "data" / "cifar_labels.json").read_text())


def make_plain_run(path: Path, classes=8, hidden=16, trunk=12, seed=0) -> Path:
    """A non-Blockout run (an `fc` network): no node sets, weights only."""
    rng = np.random.default_rng(seed)
    names = CIFAR["fine_label_names"][:classes]
    layers = [fmt.Layer("fc1", None, None, trunk, hidden, role="hidden"),
              fmt.Layer("fc2", None, None, hidden, classes, role="classifier")]
    fmt.write_run(path, fmt.RunRecord.new(path.name, {"method": "fc"}, fmt.Dataset(class_names=names),
                                          fmt.Topology(layers=layers), versions={}))
    entries, metrics = [], []
    for i, step in enumerate((10, 20)):
        w = {"fc1": rng.standard_normal((hidden, trunk)), "fc2": rng.standard_normal((classes, hidden))}
        rf.save_npz(path / fmt.SNAPSHOT_DIR / fmt.snapshot_filename(step), fmt.snapshot_arrays({}, w))
        entries.append(fmt.SnapshotEntry(step=step, epoch=i + 1, has_weights=True, tags=["last"] if i else []))
        metrics.append(fmt.MetricsRecord(step=step, epoch=i + 1, train_acc=0.3 + i / 10, test_acc=0.25 + i / 10,
                                         train_loss=2.0, test_loss=2.1))
    fmt.write_metrics(path, metrics)
    fmt.write_snapshot_index(path, entries)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    make_synthetic_run(root / "demo", classes=20, clusters=4, groups=2,
                       class_names=CIFAR["fine_label_names"][:20], n_snapshots=4)
    wide = make_synthetic_run(root / "wide", classes=12, clusters=6, groups=3, n_snapshots=3, seed=1)
    for i, e in enumerate(rf.iter_snapshot_entries(wide)):  # budget multipliers, as a budgeted run saves them
        f = wide / "snapshots" / e["file"]
        rf.save_npz(f, {**rf.load_npz(f), "multiplier__fc3": np.linspace(0, i, 12)})
    make_plain_run(root / "plain")
    return root


@pytest.fixture
def app(checkpoints, monkeypatch):
    monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("BLOCKOUT_RUN", raising=False)
    at = AppTest.from_file(HOME, default_timeout=60)
    at.run()
    return at


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def title(at: AppTest) -> str:
    """The page's own title (the sidebar has one too)."""
    return at.main.title[0].value


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


class TestPages:
    def test_opens_demo_by_default(self, app):
        ok(app)
        assert title(app) == "Overview · demo"
        assert app.selectbox(key="pick").value == "demo"
        assert charts(app) == 1

    @pytest.mark.parametrize("page,min_charts", [(PAGES[1], 2), (PAGES[2], 2), (PAGES[3], 4), (PAGES[4], 2),
                                                 (PAGES[5], 1), (PAGES[6], 0)])
    def test_every_page_renders(self, app, page, min_charts):
        ok(app.switch_page(page).run())
        assert not app.error, [e.value for e in app.error]
        assert charts(app) >= min_charts

    def test_overview_outcomes(self, app):
        table = app.dataframe[0].value
        assert list(table["node set"]) == ["trunk", "h1", "h2", "classes"]
        assert table.loc[0, "what happened to P"] == "fixed"
        assert any("What happened to P" in h.value for h in app.subheader)

    def test_threshold_moves_tree(self, app):
        app.switch_page(PAGES[1]).run()
        metric = lambda label: next(m.value for m in app.metric if m.label == label)  # noqa: E731
        assert metric("branches") == "6"  # 2 groups + 4 clusters (planted)
        assert metric("classes in no cluster") == "0"
        ok(app.slider(key="tau").set_value(0.95).run())  # above most of the planted P of 0.95 ± noise
        assert "τ = 0.95" in app.caption[0].value
        assert int(metric("classes in no cluster")) > 0
        ok(app.slider(key="tau").set_value(0.5).run())
        assert metric("classes in no cluster") == "0"

    def test_switch_runs_and_steps(self, app):
        app.switch_page(PAGES[3]).run()
        ok(app.selectbox(key="pick").set_value("wide").run())
        step = next(w for w in app.select_slider if w.label == "Snapshot step")
        assert step.options == ["100", "200", "300"] and step.value == 300
        ok(step.set_value(100).run())
        assert any("Branch tree at step 100" in h.value for h in app.subheader)
        assert any(h.value == "Budget multipliers" for h in app.subheader)
        ok(app.switch_page(PAGES[0]).run())  # the choice survives a page switch
        assert title(app) == "Overview · wide"

    def test_views_and_layers(self, app):
        app.switch_page(PAGES[1]).run()
        for view in ("Sunburst", "Icicle", "Tree"):
            ok(app.radio(key="bt_view").set_value(view).run())
        app.switch_page(PAGES[2]).run()
        for layer in app.selectbox(key="wb_layer").options:
            ok(app.selectbox(key="wb_layer").set_value(layer).run())
            assert charts(app) == 2

    def test_wordnet_tables(self, app):
        ok(app.switch_page(PAGES[4]).run())
        frames = [d.value for d in app.dataframe]
        synsets = next(f for f in frames if "synset" in f.columns)
        assert len(synsets) == 20 and (synsets["synset"] != "—").all()
        agreement = next(f for f in frames if "ARI p" in f.columns)
        assert {"memberships", "weights"} <= set(agreement["hierarchy"])
        assert agreement["ARI p"].dropna().between(0, 1).all()
        ok(app.radio(key="wn_source").set_value("weights").run())

    def test_wordnet_shows_before_it_lists(self, app):
        """The agreement chart comes first; the full table sits in a collapsed expander, its WordNet
        depths in numeric order (never wordnet_d10 before wordnet_d2)."""
        ok(app.switch_page(PAGES[4]).run())
        main = app.main
        first_chart = next(i for i, el in enumerate(main) if el.type == "plotly_chart")
        # the reference-file selector (an expander at the top) is a setting, not a listing
        first_expander = next(i for i, el in enumerate(main)
                              if el.type == "expander" and not el.label.startswith("Your own reference"))
        assert first_chart < first_expander
        assert app.main.subheader[0].value == "Agreement per WordNet depth"
        agreement = next(d.value for d in app.dataframe if "ARI p" in d.value.columns)
        for _, part in agreement.groupby("hierarchy", sort=False):
            depths = part["depth"].dropna().astype(int).tolist()
            assert depths == sorted(depths) and len(depths) >= 2
            coarse = part["reference"].eq("coarse")
            assert not coarse.any() or coarse.idxmax() == part.index[0]  # the coarse row first

    def test_wordnet_tanglegram_reports_crossings(self, app):
        ok(app.switch_page(PAGES[4]).run())
        metrics = {m.label: m.value for m in app.metric}
        after = int(metrics["line crossings"].replace(",", ""))
        before = int(metrics["before untangling"].replace(",", ""))
        assert after <= before
        fig = json.loads(app.get("plotly_chart")[-1].proto.spec)
        assert fig["layout"]["meta"] == {"crossings_before": before, "crossings": after}

    def test_compare_two_runs(self, app):
        ok(app.switch_page(PAGES[5]).run())
        ok(app.selectbox(key="cmp_pick").set_value(app.selectbox(key="cmp_pick").options[1]).run())
        assert charts(app) == 1
        assert len(app.dataframe) >= 3

    def test_compare_defaults_to_a_run_that_opens(self, checkpoints, monkeypatch):
        """Regression: a broken sibling sorted first was the default second run (only an error box)."""
        broken = checkpoints / "aaa-broken"
        broken.mkdir()
        (broken / "run.json").write_text("{ not json")  # raw run.json: a deliberately broken file
        try:
            monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(checkpoints))
            monkeypatch.setenv("BLOCKOUT_RUN", str(checkpoints / "demo"))
            at = AppTest.from_file(HOME, default_timeout=60)
            ok(at.run())
            ok(at.switch_page(PAGES[5]).run())
            picker = at.selectbox(key="cmp_pick")
            assert "aaa-broken" in picker.options[0] and "aaa-broken" not in picker.value
            assert not at.error and charts(at) == 1
        finally:
            (broken / "run.json").unlink()
            broken.rmdir()

    def test_export_buttons(self, app):
        ok(app.switch_page(PAGES[6]).run())
        buttons = app.get("download_button")
        assert len(buttons) == 3 * 6 - 1  # newick of the layer graph is disabled


class TestBadInput:
    def test_bad_path_shows_error(self, app):
        ok(app.radio(key="src").set_value("Folder path").run())
        ok(app.text_input(key="path").set_value("/no/such/run").run())
        assert "run folder not found" in app.error[0].value
        ok(app.switch_page(PAGES[1]).run())  # every page shows the error instead of a traceback
        assert "run folder not found" in app.error[0].value
        ok(app.radio(key="src").set_value("Run under checkpoints/").run())
        assert not app.error and title(app) == "Branch tree"

    def test_bad_upload_then_recovers(self, app):
        ok(app.radio(key="src").set_value("Upload archive").run())
        assert "Upload a .zip" in app.info[0].value
        ok(app.file_uploader[0].upload("run.zip", b"this is not a zip", "application/zip").run())
        assert "not a .zip or .tar.gz" in app.error[0].value or "not a readable" in app.error[0].value
        evil = io.BytesIO()
        with zipfile.ZipFile(evil, "w") as zf:
            zf.writestr("../../escape.json", "{}")
        ok(app.file_uploader[0].upload("evil.zip", evil.getvalue(), "application/zip").run())
        assert "escapes the archive" in app.error[0].value
        ok(app.radio(key="src").set_value("Run under checkpoints/").run())
        assert not app.error and charts(app) == 1

    def test_good_upload(self, app, checkpoints):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in (checkpoints / "wide").rglob("*"):
                if p.is_file():
                    zf.write(p, f"wide/{p.relative_to(checkpoints / 'wide')}")
        ok(app.radio(key="src").set_value("Upload archive").run())
        ok(app.file_uploader[0].upload("wide.zip", buf.getvalue(), "application/zip").run())
        assert title(app) == "Overview · wide.zip (uploaded)"

    def test_plain_run_shows_what_applies(self, app):
        ok(app.selectbox(key="pick").set_value("plain").run())
        assert "no cluster memberships" in app.info[0].value and charts(app) == 1
        for page in PAGES[1:]:
            ok(app.switch_page(page).run())
            assert not app.error, (page, [e.value for e in app.error])
        ok(app.switch_page(PAGES[2]).run())
        assert charts(app) == 1  # |W| of a plain layer
        ok(app.switch_page(PAGES[4]).run())
        assert set(app.dataframe[1].value["hierarchy"]) == {"weights"}

    def test_no_runs_message(self, tmp_path, monkeypatch):
        monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(tmp_path))
        monkeypatch.delenv("BLOCKOUT_RUN", raising=False)
        at = ok(AppTest.from_file(HOME, default_timeout=60).run())
        assert "No run found" in at.info[0].value and "blockout train" in at.info[0].value


class TestCli:
    def test_dashboard_bad_run_is_one_line(self, capsys):
        from blockout.cli import main

        assert main(["dashboard", "/no/such/run"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "run folder not found: /no/such/run" in err[0]

    def test_dashboard_hostile_run_is_refused_before_the_server_starts(self, tmp_path, capsys):
        from blockout.cli import main

        (tmp_path / "run.json").write_text('{"format": "something else"}')  # raw run.json: hostile on purpose
        assert main(["dashboard", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is not a Blockout run" in err[0]

    def test_dashboard_port_taken(self, checkpoints, capsys):
        import socket

        from blockout.cli import main

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            assert main(["dashboard", str(checkpoints / "demo"), "--port", str(port)]) == 2
        assert f"port {port} is not free" in capsys.readouterr().err

    def test_serve_command_line(self):
        from app.serve import streamlit_argv

        argv = streamlit_argv("checkpoints/x", 9999)
        assert argv[:2] == ["run", str(Path(HOME))] and argv[-2:] == ["--", "checkpoints/x"]
        assert argv[argv.index("--server.headless") + 1] == "true"
        assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
