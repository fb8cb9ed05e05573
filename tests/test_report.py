"""``blockout report``: one self-contained offline HTML page; bad input is one line and exit 2."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.synthetic import make_synthetic_run
from blockout.cli import main
from tests.test_app_pages import CIFAR, make_plain_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_runs")
    blockout = make_synthetic_run(root / "syn", classes=20, clusters=4, groups=2,
                                  class_names=CIFAR["fine_label_names"][:20], n_snapshots=3)
    plain = make_plain_run(root / "plain")
    return blockout, plain


def _external(html: str) -> list[str]:
    """src= / href= attributes and CSS url()/@import that point anywhere but this page."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""@import\s+(?:url\()?["']?([^"')\s;]+)""", html)
    return [r for r in refs if not r.startswith(("#", "data:", "javascript:"))]


def test_report_is_one_self_contained_page(runs, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(runs[0]), "-o", str(out), "--permutations", "49"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text()
    for section in ("Verdict", "Training", "Branch tree", "Weight blocks of the classifier",
                    "Agreement with WordNet", "Configuration and versions"):
        assert f"<h2>{section}" in html, section
    assert "Did branches form?</b> Yes" in html  # planted branches
    assert "Do the memberships group classes the way the reference does?" in html
    assert html.count("Plotly.newPlot") >= 5  # curves, tree, blocks, agreement, tanglegram
    # plotly.js inline exactly once, and nothing fetched by URL (no CDN, no web font). The bundle's
    # own text names URLs (map tiles, docs) it never loads for these charts; the page around it names none.
    assert html.count("* plotly.js v") == 1
    bundle = re.search(r'<script type="text/javascript">/\*\*\n\* plotly\.js v.*?</script>', html, flags=re.S)
    assert bundle is not None and bundle.start() < html.index("<body>")
    rest = html[:bundle.start()] + html[bundle.end():]
    assert re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", rest) is None
    assert _external(rest) == []
    assert "line crossings after untangling" in html
    assert not list(tmp_path.glob("*.tmp*"))  # atomic: no temporary file left


def test_report_of_a_plain_run(runs, tmp_path):
    out = tmp_path / "plain.html"
    assert main(["report", str(runs[1]), "-o", str(out), "--permutations", "19"]) == 0
    html = out.read_text()
    assert "no cluster memberships" in html and "<h2>Configuration and versions" in html


@pytest.mark.parametrize("args, message", [
    (["report", "/no/such/run"], "run folder not found"),
    (["report", "{run}", "-o", "/no/such/folder/r.html"], "does not exist"),
    (["report", "{run}", "--threshold", "1.5"], "--threshold"),
    (["report", "{run}", "--step", "12345"], "no snapshot at step 12345"),
])
def test_bad_input_is_one_line_exit_2(runs, tmp_path, args, message):
    args = [a.replace("{run}", str(runs[0])) for a in args]
    proc = subprocess.run([sys.executable, "-m", "blockout.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blockout: error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_failed_report_leaves_the_old_file(runs, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("old report")
    assert main(["report", str(runs[0]), "-o", str(out), "--step", "999999"]) == 2
    assert out.read_text() == "old report"
