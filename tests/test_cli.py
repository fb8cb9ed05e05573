"""The command line: end-to-end train + inspect --json, one-line errors with exit 2, Ctrl-C, reproduce."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis import runfolder as rf
from analysis.summary import probs_stats, summarize_run
from blockout.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
HIERARCHY = {"animals": ["lion", "tiger", "wolf", "fox", "dog"], "tools": ["saw", "knife", "hammer", "drill", "axe"]}
TINY = ["--samples-per-class", "4", "--test-samples-per-class", "2", "--image-size", "8", "--nodes", "16",
        "--clusters", "3", "--batch-size", "8", "--device", "cpu"]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "blockout.cli", *args], capture_output=True, text=True,
                          env=env(), cwd=kw.get("cwd", ROOT), timeout=kw.get("timeout", 240))


@pytest.fixture(scope="module")
def hierarchy_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("h") / "h.json"
    path.write_text(json.dumps(HIERARCHY))
    return str(path)


@pytest.fixture(scope="module")
def trained(hierarchy_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "e2e"
    proc = cli("train", "--hierarchy", hierarchy_file, *TINY, "--epochs", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blockout: error: "), err
    assert match in lines[0], lines[0]


class TestEndToEnd:
    def test_train_writes_run_and_logs_epochs(self, trained):
        out, proc = trained
        assert rf.is_run_folder(out)
        assert "epoch 1/2" in proc.stderr and "epoch 2/2" in proc.stderr and "finished 2 epoch(s)" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_inspect_json(self, trained, capsys):
        out, _ = trained
        assert main(["inspect", str(out), "--json"]) == 0
        stdout = capsys.readouterr().out
        assert len(stdout.strip().splitlines()) == 1  # one JSON object on one line
        s = json.loads(stdout)
        assert s["method"] == "hard-learned" and s["dataset"]["num_classes"] == 10
        assert s["accuracy"]["final"]["epoch"] == 2
        assert s["accuracy"]["best"]["test_acc"] >= s["accuracy"]["final"]["test_acc"]
        assert s["snapshot"]["step"] == 10 and s["threshold"] == 0.5
        h1 = next(ns for ns in s["node_sets"] if ns["name"] == "h1")
        assert h1["size"] == 16 and h1["clusters"] == 3 and len(h1["nodes_per_cluster"]) == 3
        assert {"mean", "frac_below_0.1", "frac_above_0.9", "dead_nodes", "full_nodes"} <= set(h1)
        assert [l["name"] for l in s["layers"]] == ["fc1", "fc2", "classifier"]

    def test_inspect_table(self, trained, capsys):
        out, _ = trained
        assert main(["inspect", str(out), "--threshold", "0.7"]) == 0
        text = capsys.readouterr().out
        assert "method hard-learned" in text and "threshold 0.7" in text and "classes" in text

    def test_summary_step_and_threshold(self, trained):
        out, _ = trained
        s0 = summarize_run(out, step=0, threshold=0.99)
        assert s0["snapshot"]["step"] == 0
        h1 = next(ns for ns in s0["node_sets"] if ns["name"] == "h1")
        # initial P ~ U(0.5, 0.9): nothing reaches 0.99, every node is dead at that threshold
        assert h1["dead_nodes"] == 16 and h1["nodes_per_cluster"] == [0, 0, 0]

    def test_resume_finished_is_noop(self, trained, capsys):
        out, _ = trained
        assert main(["train", "--resume", str(out)]) == 0
        assert "nothing to do" in capsys.readouterr().err


class TestErrors:
    def test_existing_out(self, trained, capsys, hierarchy_file):
        out, _ = trained
        one_line_error(capsys, ["train", "--hierarchy", hierarchy_file, *TINY, "--out", str(out)],
                       "--resume")

    @pytest.mark.parametrize("argv,match", [
        (["train", "--epochs", "0"], "epochs must be at least 1, got 0"),
        (["train", "--dropout", "2"], "dropout must be in [0, 1), got 2.0"),
        (["train", "--config", "/nonexistent/c.json"], "config file not found: /nonexistent/c.json"),
        (["inspect", "/nonexistent/run"], "run folder not found: /nonexistent/run"),
        (["train", "--resume", "/nonexistent/run"], "no such run folder"),
    ])
    def test_user_errors_one_line(self, capsys, argv, match):
        one_line_error(capsys, argv, match)

    def test_bad_config_file(self, tmp_path, capsys):
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        one_line_error(capsys, ["train", "--config", str(bad)], "is not valid JSON")
        bad.write_text('{"epochz": 1}')
        one_line_error(capsys, ["train", "--config", str(bad)], "unknown option(s) epochz")

    def test_bad_threshold_and_step(self, trained, capsys):
        out, _ = trained
        one_line_error(capsys, ["inspect", str(out), "--threshold", "1.5"], "threshold must be in (0, 1]")
        one_line_error(capsys, ["inspect", str(out), "--step", "70"], "no snapshot at step 70")

    def test_argparse_errors_are_one_line_exit_2(self, capsys):
        with pytest.raises(SystemExit) as exc:
            main(["train", "--method", "magic"])
        err = capsys.readouterr().err
        assert exc.value.code == 2
        assert len(err.strip().splitlines()) == 1 and "invalid choice" in err

    def test_help_on_every_command(self, capsys):
        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == "command")
        for name in sub.choices:
            with pytest.raises(SystemExit) as exc:
                main([name, "--help"])
            assert exc.value.code == 0
            assert "usage: blockout " + name in capsys.readouterr().out


class TestCtrlC:
    def test_sigint_saves_resumable_checkpoint(self, hierarchy_file, tmp_path):
        out = tmp_path / "r"
        proc = subprocess.Popen([sys.executable, "-m", "blockout.cli", "train", "--hierarchy", hierarchy_file, *TINY,
                                 "--epochs", "400", "--out", str(out)], cwd=ROOT, env=env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not (out / rf.METRICS).exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and f"blockout train --resume {out}" in err
        state = rf.read_jsonl(out / rf.METRICS)
        assert 1 <= len(state) < 400
        entries = list(rf.iter_snapshot_entries(out))
        assert "last" in entries[-1]["tags"] and entries[-1]["has_weights"]


class TestReproduce:
    def test_methods_table(self, hierarchy_file, tmp_path, capsys):
        root = tmp_path / "rep"
        code = main(["reproduce", "--hierarchy", hierarchy_file, *TINY, "--epochs", "1", "--seeds", "2",
                     "--methods", "fc,hard-learned", "--out", str(root)])
        assert code == 0
        table = json.loads((root / "methods.json").read_text())
        assert [r["method"] for r in table["rows"]] == ["fc", "hard-learned"]
        assert [len(r["final_test_acc"]) for r in table["rows"]] == [2, 2]
        assert table["rows"][1]["paper_cifar100"] == 65.66
        md = (root / "methods.md").read_text()
        assert "| hard-learned |" in md and "65.66" in md
        assert "| fc |" in capsys.readouterr().out
        # a second call reuses the finished runs
        before = (root / "fc-s0" / rf.METRICS).read_bytes()
        assert main(["reproduce", "--hierarchy", hierarchy_file, *TINY, "--epochs", "1", "--seeds", "2",
                     "--methods", "fc,hard-learned", "--out", str(root)]) == 0
        assert (root / "fc-s0" / rf.METRICS).read_bytes() == before


class TestSummaryMath:
    def test_probs_stats(self):
        import numpy as np

        s = probs_stats(np.array([[1.0, 0.0, 0.0], [0.95, 0.95, 0.95], [0.2, 0.4, 0.05]]), threshold=0.5)
        assert s["nodes_per_cluster"] == [2, 1, 1]
        assert s["dead_nodes"] == 1 and s["full_nodes"] == 1 and s["empty_clusters"] == 0
        assert s["frac_above_0.9"] == pytest.approx(4 / 9) and s["frac_below_0.1"] == pytest.approx(3 / 9)


class TestDemo:
    def test_packaged_recipe_is_valid(self):
        from blockout.cmd_demo import demo_config
        from blockout.config import TrainConfig

        cfg = TrainConfig.from_dict(demo_config())
        assert cfg.dataset == "synthetic" and cfg.method == "hard-cocluster" and cfg.nodes == 160 and cfg.depth == 1

    def test_trains_once_then_reuses(self, hierarchy_file, tmp_path, capsys, monkeypatch):
        import blockout.cmd_demo as bdemo

        recipe = {"hierarchy": hierarchy_file, "samples_per_class": 4, "test_samples_per_class": 2, "image_size": 8,
                  "nodes": 16, "clusters": 3, "batch_size": 8, "epochs": 1, "device": "cpu"}
        monkeypatch.setattr(bdemo, "demo_config", lambda: dict(recipe))
        out = tmp_path / "demo"
        assert main(["demo", "--out", str(out)]) == 0
        captured = capsys.readouterr()
        assert "epoch 1/1" in captured.err and "node sets at step" in captured.out
        assert captured.out.startswith("Did branches form?")  # the verdict first, as inspect prints it
        before = (out / rf.METRICS).read_bytes()
        assert main(["demo", "--out", str(out)]) == 0
        captured = capsys.readouterr()
        assert "already trained" in captured.err and "epoch 1/1" not in captured.err
        assert (out / rf.METRICS).read_bytes() == before
        # asking for more epochs resumes the same run
        assert main(["demo", "--out", str(out), "--epochs", "2"]) == 0
        assert [r["epoch"] for r in rf.read_jsonl(out / rf.METRICS)] == [1, 2]


class TestLimitFlag:
    """`blockout --limit NAME=N` sets a reader limit for the command (as its BLOCKOUT_MAX_* variable)."""

    def test_limit_applies_and_is_named_in_the_error(self, capsys, monkeypatch):
        monkeypatch.delenv("BLOCKOUT_MAX_NODES", raising=False)
        demo = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
        try:
            assert main(["--limit", "max_nodes=5", "inspect", str(demo), "--permutations", "0"]) == 2
        finally:
            import os

            os.environ.pop("BLOCKOUT_MAX_NODES", None)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--limit max_nodes=" in err and "size = 256" in err

    @pytest.mark.parametrize("bad", ["foo=3", "max_nodes=-1", "max_nodes", "max_nodes=x"])
    def test_bad_limit_is_one_line(self, capsys, bad):
        with pytest.raises(SystemExit) as exc:
            main(["--limit", bad, "inspect", "x"])
        assert exc.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
