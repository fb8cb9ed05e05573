"""The dashboard's answers and rough edges (issue 8) through AppTest: the verdict first, nested
run folders in the picker, one colour per node set on every page, the report button, greyed-out
buttons that say why, depth order on the Compare page."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis.synthetic import make_synthetic_run
from app.figures import node_set_color
from tests.test_app_pages import CIFAR, HOME, PAGES, make_plain_run, ok

NAMES = CIFAR["fine_label_names"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A top-level run and two runs nested as `blockout reproduce` writes them (<name>/<method>-s<seed>/)."""
    root = tmp_path_factory.mktemp("nested")
    make_synthetic_run(root / "demo", classes=20, clusters=4, groups=2, class_names=NAMES[:20], n_snapshots=4)
    make_synthetic_run(root / "repro" / "hard-s0", classes=12, clusters=3, groups=3, class_names=NAMES[20:32],
                       n_snapshots=3, seed=2)
    make_plain_run(root / "repro" / "fc-s0")
    (root / "repro" / "methods.md").write_text("| method | acc |\n")  # what reproduce writes beside the runs
    (root / ".hidden" / "x").mkdir(parents=True)
    return root


@pytest.fixture
def app(checkpoints, monkeypatch):
    monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("BLOCKOUT_RUN", raising=False)
    at = AppTest.from_file(HOME, default_timeout=90)
    at.run()
    return ok(at)


def specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_verdict_first_on_the_overview(app, checkpoints):
    """The verdict's sentences (analysis.verdict) come before any chart or table, word for word."""
    from analysis.compare import compare_run
    from analysis.run import load_run
    from app.derive import verdict

    main = list(app.main)
    texts = [(i, el.value) for i, el in enumerate(main) if el.type == "markdown"]
    first_q = next(i for i, t in texts if t.startswith("**Did branches form?**"))
    second_q = next(i for i, t in texts if "Do the memberships group classes" in t)
    first_chart = next(i for i, el in enumerate(main) if el.type == "plotly_chart")
    first_table = next(i for i, el in enumerate(main) if el.type in ("arrow_data_frame", "dataframe"))
    assert first_q < second_q < first_chart < first_table
    run = load_run(checkpoints / "demo")
    expected = verdict(run, compare_run(run, "all", 0.5, run.steps[-1], "both", "probability", 999).to_dict(),
                       0.5, run.steps[-1]).sentences
    shown = [t.replace("**", "") for _, t in texts if t.startswith("**")][:2]
    assert shown == expected
    assert shown[0].startswith("Did branches form? Yes")  # a planted hierarchy: branches formed


def test_report_button_on_the_overview(app):
    buttons = [b for b in app.get("download_button") if "report" in b.proto.label.lower()]
    assert len(buttons) == 1 and not buttons[0].proto.disabled
    assert "offline" in buttons[0].proto.help


def test_nested_runs_are_listed_by_folder(app):
    group = app.selectbox(key="pick_group")
    assert group.options[0].endswith("/ (top level, 1 run)") and group.options[1:] == ["repro/ (2 runs)"]
    ok(group.set_value("repro").run())
    run = app.selectbox(key="pick")
    assert list(run.options) == ["fc-s0", "hard-s0"]  # shown by name, grouped under their folder
    ok(run.set_value("repro/hard-s0").run())
    assert app.main.title[0].value == "Overview · repro/hard-s0"
    assert any("Did branches form?" in m.value for m in app.main.markdown)
    ok(app.selectbox(key="pick").set_value("repro/fc-s0").run())  # a plain run: no branches, still a verdict
    assert any("Did branches form?" in m.value for m in app.main.markdown)


def test_discover_runs_skips_hidden_and_links(checkpoints, tmp_path):
    from app.state import discover_runs

    groups = discover_runs(checkpoints)
    assert {g: [p.name for p in r] for g, r in groups.items()} == {"": ["demo"], "repro": ["fc-s0", "hard-s0"]}
    (tmp_path / "link").symlink_to(checkpoints / "repro", target_is_directory=True)
    assert discover_runs(tmp_path) == {}  # a link could lead out of the folder: not followed


def test_one_colour_per_node_set_on_every_page(app):
    """Emergence (histograms, drift) and Branch tree (layer graph) draw each node set in its one colour."""
    seen: dict[str, set] = {}
    ok(app.switch_page(PAGES[3]).run())
    for spec in specs(app):
        for trace in spec["data"]:
            colour = (trace.get("marker") or {}).get("color") if trace.get("type") == "bar" else \
                (trace.get("line") or {}).get("color")
            if trace.get("name") in ("trunk", "h1", "h2", "classes") and isinstance(colour, str):
                seen.setdefault(trace["name"], set()).add(colour)
    ok(app.switch_page(PAGES[1]).run())
    sankey = next(s for s in specs(app) if s["data"][0].get("type") == "sankey")["data"][0]
    for label, colour in zip(sankey["node"]["label"], sankey["node"]["color"]):
        seen.setdefault(label.split()[0], set()).add(colour)
    assert {"h1", "h2", "classes"} <= set(seen)
    for name, colours in seen.items():
        assert colours == {node_set_color(name)}, name


def test_training_curves_explain_sampling(app):
    spec = specs(app)[0]
    assert spec["data"][0]["name"].endswith("accuracy")
    assert any("random masks" in c.value for c in app.main.caption)


def test_greyed_out_export_button_says_why(app):
    ok(app.switch_page(PAGES[6]).run())
    disabled = [b for b in app.button if b.proto.disabled]
    assert disabled and all(b.proto.help.startswith("Not available:") for b in disabled)


def test_compare_page_sorts_depths_numerically(app, checkpoints):
    ok(app.switch_page(PAGES[5]).run())
    picker = app.selectbox(key="cmp_pick")
    assert "repro/hard-s0" in picker.options  # nested runs are offered too, by their path
    ok(picker.set_value(str(checkpoints / "repro" / "hard-s0")).run())
    wide = next(d.value for d in app.dataframe if d.value.index.nlevels == 2)
    refs = [ix[0] if isinstance(ix, tuple) else ix for ix in wide.index]
    depths = [int(r.rsplit("_d", 1)[1]) for r in refs if "_d" in r]
    assert depths == sorted(depths) and len(depths) >= 2
