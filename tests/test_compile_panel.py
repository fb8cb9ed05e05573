"""The Branch tree page's "Compiled network" section: counting without torch, building on demand."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis.run import load_run
from analysis.synthetic import make_synthetic_run
from analysis.compile_plan import macs_reduction
from app.compile_panel import compile_summary, layer_rows

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("cp") / "planted", trunk=16, hidden=(24, 24), classes=12,
                              clusters=6, groups=2, n_snapshots=2)


def test_summary_counts_and_rows(planted):
    s = compile_summary(load_run(planted), 0.5)
    assert s["macs_before"] == 16 * 24 + 24 * 24 + 24 * 12
    assert s["macs_after"] == 16 * 24 + 24 * 24 // 2 + 24 * 12 // 6
    assert s["has_weights"] and s["trunk_note"] is None  # identity trunk: nothing missing
    rows = layer_rows(s)
    assert [r["blocks"] for r in rows] == [1, 2, 6] and rows[2]["live density"] == pytest.approx(1 / 6, abs=1e-4)
    # a higher τ than every P: every node dead, every class predicts from its bias
    s = compile_summary(load_run(planted), 1.0)
    assert s["macs_after"] == 0 and len(s["const_classes"]) == 12


def test_page_shows_and_builds(planted, monkeypatch):
    monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(planted.parent))
    monkeypatch.setenv("BLOCKOUT_RUN", str(planted))
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("views/branch_tree.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label == "multiply-adds / example" for m in at.metric)
    # regression: the page's depth counted the class leaves (3 here) where Overview and inspect say 2
    from analysis.graphs import branch_tree
    from analysis.verdict import branch_depth

    depth = branch_depth(branch_tree(load_run(planted), 0.5))
    assert depth == 2 and next(m.value for m in at.metric if m.label == "tree depth") == str(depth)
    at.button(key="cp_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert "accuracy not measured" in captions and "Largest |compiled − thresholded|" in captions


def test_macs_reduction_without_live_connections():
    assert macs_reduction(1000, 250) == "4.00× fewer"
    assert macs_reduction(1000, 0) == "no live connection left"  # regression: "1000000000000.00× fewer"
