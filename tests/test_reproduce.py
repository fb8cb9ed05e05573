"""``blockout reproduce``: presets, paired interval, epochs to target, emergence columns, resuming."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from analysis import runfolder as rf
from blockout.cli import main
from blockout.config import TrainConfig
from blockout.errors import UserError
from blockout.reproduce import (first_epoch_reaching, paired_t_interval, pick_wordnet_grouping, preset_rows,
                                reproduce, to_markdown, to_svg)
from blockout.train import train

torch.set_num_threads(1)

HIERARCHY = {"felines": ["lion", "tiger"], "canines": ["wolf", "fox"], "tools": ["saw", "knife"]}
TINY = {"samples_per_class": 4, "test_samples_per_class": 2, "image_size": 8, "nodes": 16, "clusters": 3,
        "batch_size": 8, "device": "cpu", "epochs": 2}


@pytest.fixture()
def options(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps(HIERARCHY))
    return {**TINY, "hierarchy": str(path)}


class TestPureParts:
    def test_paired_t_interval_matches_scipy(self):
        from scipy import stats

        a, b = np.array([0.81, 0.84, 0.80, 0.83]), np.array([0.80, 0.80, 0.79, 0.80])
        r = paired_t_interval(a, b)
        d = a - b
        lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert r["low"] == pytest.approx(lo) and r["high"] == pytest.approx(hi)
        assert r["interval"].startswith("paired t")

    def test_presets(self):
        assert [r.name for r in preset_rows("methods")] == ["baseline", "fc", "dropout", "soft-learned",
                                                           "hard-fixed", "hard-learned", "hard-cocluster"]
        assert [r.options for r in preset_rows("nodes")] == [{"method": "hard-learned", "nodes": n}
                                                            for n in (512, 1024, 2048)]
        with pytest.raises(UserError, match="distinct"):
            preset_rows("clusters", [2, 2])
        with pytest.raises(UserError, match="unknown preset"):
            preset_rows("layers")

    def test_epochs_to_target_and_wordnet_pick(self):
        assert first_epoch_reaching([0.1, 0.5, 0.4, 0.9], 0.45) == 2
        assert first_epoch_reaching([0.1], 0.45) is None
        parts = [{"reference": f"wordnet_d{g}", "kind": "wordnet", "depth": g, "n_groups": g} for g in (1, 3, 5, 10)]
        assert pick_wordnet_grouping(parts, 10, 3) == "wordnet_d3"
        assert pick_wordnet_grouping(parts, 10, 9) == "wordnet_d5"  # 10 groups = the classes themselves: skipped


class TestReproduce:
    def test_methods_table_paired_interval_and_emergence(self, options, tmp_path, capsys):
        root = tmp_path / "rep"
        rows = preset_rows("methods", methods=["dropout", "hard-learned", "hard-cocluster"])
        lines = []
        table = reproduce(options, root, rows, seeds=[0, 1], permutations=19, log=lines.append)
        assert [ln for ln in lines if ln.startswith("[reproduce 3/6]")] == [
            f"[reproduce 3/6] hard-learned seed 0 ({root / 'hard-learned-s0'}): training"]
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
            "dropout-s0", "dropout-s1", "hard-cocluster-s0", "hard-cocluster-s1", "hard-learned-s0", "hard-learned-s1"]
        by = {r["method"]: r for r in table["rows"]}
        hl, dr = by["hard-learned"], by["dropout"]
        diff = [a - b for a, b in zip(hl["final_test_acc"], dr["final_test_acc"])]
        assert table["paired"]["final"]["mean"] == pytest.approx(np.mean(diff))
        assert table["paired"]["seeds"] == [0, 1]
        assert by["hard-cocluster"]["block"] == "ours" and by["hard-cocluster"]["paper_cifar100"] is None
        assert hl["paper_cifar100"] == 65.66
        for r in table["rows"]:  # epochs to dropout's best: consistent with each curve
            for curve, ep in zip(r["curves"], r["epochs_to_target"]):
                reached = [i + 1 for i, a in enumerate(curve) if a >= table["target"]["best_mean"]]
                assert ep == (reached[0] if reached else None)
        # emergence: every learned node set classified, both hierarchies compared with the coarse reference
        em = hl["emergence"][0]
        assert set(em["outcomes"]) == {"h1", "h2", "classes"}
        assert set(em["agreement"]["partitions"]["coarse"]) == {"memberships", "weights"}
        assert "memberships" not in dr["emergence"][0]["agreement"]["partitions"]["coarse"]  # no node sets
        md = (root / "methods.md").read_text()
        assert "hard-learned − dropout" in md and "paired t interval" in md and "Ours (not in the paper)" in md
        assert "paper CIFAR-100 (theirs)" in md
        ET.fromstring((root / "methods.svg").read_text())  # well-formed, self-contained
        assert json.loads((root / "methods.json").read_text())["rows"][0]["method"] == "dropout"

    def test_resume_interrupted_and_skip_finished(self, options, tmp_path):
        root = tmp_path / "rep"
        rows = preset_rows("clusters", [2, 3])
        # a run of the table interrupted after 3 steps (as Ctrl-C would leave it)
        cfg = TrainConfig.from_dict({**options, "method": "hard-learned", "clusters": 3, "seed": 0,
                                     "out": str(root / "k3-s0")})

        def ctrl_c(step, model):
            if step == 3:
                raise KeyboardInterrupt

        assert train(cfg, on_step=ctrl_c).status == "interrupted"
        lines = []
        reproduce(options, root, rows, seeds=[0], preset="clusters", permutations=0, log=lines.append)
        assert any("k3 seed 0" in ln and ln.endswith("resuming") for ln in lines)
        assert len(rf.read_jsonl(root / "k3-s0" / rf.METRICS)) == 2
        before = {d: (root / d / rf.METRICS).read_bytes() for d in ("k2-s0", "k3-s0")}
        lines.clear()
        table = reproduce(options, root, rows, seeds=[0], preset="clusters", permutations=0, log=lines.append)
        assert sum(ln.endswith("finished, reused") for ln in lines) == 2
        assert {d: (root / d / rf.METRICS).read_bytes() for d in before} == before
        assert [r["method"] for r in table["rows"]] == ["k2", "k3"] and (root / "clusters.md").is_file()
        # changed shared options are refused, not silently mixed into the table
        with pytest.raises(UserError, match="differs"):
            reproduce({**options, "lr": 0.01}, root, rows, seeds=[0], preset="clusters", permutations=0,
                      log=lines.append)

    def test_identical_run_in_sibling_table_is_copied(self, options, tmp_path):
        ckpt = tmp_path / "checkpoints"
        reproduce(options, ckpt / "reproduce-synthetic-methods", preset_rows("methods", methods=["hard-learned"]),
                  seeds=[0], permutations=0, log=lambda m: None)
        lines = []
        reproduce(options, ckpt / "reproduce-synthetic-clusters", preset_rows("clusters", [3]), seeds=[0],
                  preset="clusters", permutations=0, log=lines.append)
        assert any("copied" in ln for ln in lines)
        a = (ckpt / "reproduce-synthetic-methods" / "hard-learned-s0" / rf.METRICS).read_bytes()
        b = (ckpt / "reproduce-synthetic-clusters" / "k3-s0" / rf.METRICS).read_bytes()
        assert a == b and not (ckpt / "reproduce-synthetic-clusters" / "k3-s0" / rf.TRAIN_STATE).exists()

    def test_cli_flags_and_errors(self, options, tmp_path, capsys):
        flags = ["--hierarchy", options["hierarchy"], "--samples-per-class", "4", "--test-samples-per-class", "2",
                 "--image-size", "8", "--nodes", "16", "--batch-size", "8", "--device", "cpu", "--epochs", "1"]
        root = tmp_path / "n"
        assert main(["reproduce", "--preset", "nodes", "--values", "8,16", "--seeds", "1", "--permutations", "0",
                     "--out", str(root), *flags]) == 0
        assert "| n8 |" in capsys.readouterr().out
        assert json.loads((root / "nodes.json").read_text())["rows"][1]["options"] == {"method": "hard-learned",
                                                                                       "nodes": 16}
        assert main(["reproduce", "--preset", "nodes", "--methods", "fc", *flags]) == 2
        assert "--methods applies to --preset methods" in capsys.readouterr().err


def test_markdown_and_svg_without_runs():
    table = {"seeds": [0], "rows": [{"method": "fc", "block": "paper", "runs": [], "mean": None, "std": None,
                                     "best_mean": None, "best_std": None, "paper_cifar100": 62.66,
                                     "paper_imagenet": 68.06, "emergence": []}]}
    assert "| fc | n/a | n/a | 0 |" in to_markdown(table)
    ET.fromstring(to_svg(table))
