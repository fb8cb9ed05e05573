"""`blockout inspect` and `blockout compare` open with the verdict (issue 8), and inspect names the
dataset from the run's dataset record."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.summary import summarize_run
from analysis.summary_report import format_summary
from analysis.synthetic import make_synthetic_run
from analysis.verdict import QUESTIONS
from blockout.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    # the generator's config has no "dataset" key; its dataset record is named "synthetic"
    return make_synthetic_run(tmp_path_factory.mktemp("c") / "syn", classes=8, clusters=4, groups=2, n_snapshots=2)


def test_inspect_starts_with_verdict(capsys):
    assert main(["inspect", str(DEMO), "--permutations", "0"]) == 0  # both answers: test_verdict.py
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(QUESTIONS[0] + " Yes, at tau = 0.5: in h1, 20 branches (P settled at 0/1; "
                                              "0 dead and 0 full of 160 nodes)")
    assert lines[1].startswith(QUESTIONS[1] + " Not measured")
    assert lines[2] == "" and lines[3].startswith("run demo")
    assert "fell to 0" not in "\n".join(lines) and "switched off" not in "\n".join(lines)


def test_inspect_json_has_verdict(capsys):
    assert main(["inspect", str(DEMO), "--json", "--permutations", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    v = out["verdict"]
    assert v["branches_formed"] is True and v["memberships_agree"] is None and v["agreement"] is None
    h1 = next(b for b in v["branches"] if b["name"] == "h1")
    assert (h1["outcome"], h1["n_branches"], h1["n_dead"], h1["n_full"], h1["settled"]) == ("diverged", 20, 0, 0, True)
    assert len(v["sentences"]) == 2 and out["run"] == "demo"  # the summary keys are still there


def test_inspect_dataset_name_from_the_run_record(synthetic, capsys):
    """Regression: `dataset None` for runs whose config has no dataset name."""
    s = summarize_run(synthetic)
    assert s["config"].get("dataset") is None and s["dataset"]["name"] == "synthetic"
    assert "dataset synthetic (8 classes" in format_summary(s)
    assert main(["inspect", str(synthetic), "--permutations", "0"]) == 0
    assert "dataset None" not in capsys.readouterr().out


def test_compare_starts_with_verdict(capsys):
    argv = ["compare", str(DEMO), "--reference", "coarse", "--permutations", "49"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(QUESTIONS[0] + " Yes")
    # one reference: 49 permutations reach p = 0.02; memberships and weights side by side
    assert lines[1].startswith(QUESTIONS[1] + " Yes. Best-supported reference: the coarse classes (20 groups); "
                                              "memberships ARI ")
    assert "weight-induced hierarchy ARI" in lines[1]
    assert lines[2] == "" and lines[3].startswith("run ")
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"]["sentences"] == lines[:2]
    ag = out["verdict"]["agreement"]
    assert ag["reference"] == "coarse" and ag["memberships_p_holm"] == pytest.approx(0.02)
    assert out["verdict"]["memberships_agree"] is True


def test_inspect_into_a_closed_pipe_is_quiet():
    """`blockout inspect RUN | head -1`: the reader leaves early; no traceback, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "blockout.cli", "inspect", str(DEMO)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # no reader left: every write of the child fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
