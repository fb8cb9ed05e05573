"""The WordNet page's own-reference selector (app/reference_input.py) through streamlit's AppTest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis.synthetic import make_synthetic_run

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
PAGE = "views/wordnet.py"
CLASSES = ["tiger", "lion", "wolf", "fox", "car", "truck", "crane", "sneaker"]
TREE = {"animals": {"cats": ["tiger", "lion"], "dogs": ["wolf", "fox"], "birds": ["crane"]},
        "things": {"vehicles": ["car", "truck"], "shoes": ["sneaker"]}}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    make_synthetic_run(root / "named", classes=8, clusters=4, groups=2, hidden=(16, 16), trunk=8, n_snapshots=2,
                       class_names=CLASSES, seed=3)
    (root.parent / "mine.json").write_text(json.dumps(TREE))
    (root.parent / "syn.json").write_text(json.dumps({"crane": "crane.n.05"}))
    (root.parent / "bad.json").write_text(json.dumps({"cats": ["tiger", "puma"]}))
    return root


@pytest.fixture
def page(checkpoints, monkeypatch):
    monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("BLOCKOUT_RUN", raising=False)
    at = AppTest.from_file(HOME, default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    at.select_slider(key="wn_perms").set_value(99).run()
    return at


def agreement(at: AppTest):
    return next(d.value for d in at.dataframe if "hierarchy" in d.value.columns)


def classes(at: AppTest):
    return next(d.value for d in at.dataframe if "chosen by" in d.value.columns)


def test_guesses_flagged_and_noted(page):
    table = classes(page).set_index("class")
    assert table.loc["tiger", "chosen by"] == "curated table"
    assert table.loc["crane", "chosen by"].startswith("GUESS") and table.loc["crane", "synset"] == "crane.n.01"
    assert any("WordNet synset guessed" in c.value for c in page.caption)


def test_reference_path_and_synset_map(page, checkpoints):
    page.radio(key="ref_src").set_value("path").run()
    page.text_input(key="ref_path").set_value(str(checkpoints.parent / "mine.json")).run()
    assert not page.exception and not page.error, [e.value for e in page.error]
    refs = set(agreement(page)["reference"])
    assert {"mine_d1", "mine_d2", "coarse"} <= refs and any(r.startswith("wordnet_d") for r in refs)
    page.radio(key="syn_src").set_value("path").run()
    page.text_input(key="syn_path").set_value(str(checkpoints.parent / "syn.json")).run()
    table = classes(page).set_index("class")
    assert table.loc["crane", "synset"] == "crane.n.05" and table.loc["crane", "chosen by"].startswith("your map")


def test_bad_reference_file_is_an_error_box(page, checkpoints):
    page.radio(key="ref_src").set_value("path").run()
    page.text_input(key="ref_path").set_value(str(checkpoints.parent / "bad.json")).run()
    assert not page.exception
    assert any("puma" in e.value and "missing from the file" in e.value for e in page.error)


def test_save_upload_is_private_and_named(tmp_path, monkeypatch):
    from app import reference_input

    monkeypatch.setattr(reference_input.tempfile, "gettempdir", lambda: str(tmp_path))
    p = Path(reference_input.save_upload("../My Tree!.json", b'{"a": ["x"]}'))
    assert p.name == "My_Tree.json" and p.read_bytes() == b'{"a": ["x"]}' and tmp_path in p.parents
    assert (p.parent.parent.stat().st_mode & 0o077) == 0
    again = reference_input.save_upload("other.json", b'{"a": ["y"]}')
    assert Path(again).parent != p.parent
