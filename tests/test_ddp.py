"""Many processes: the same `blockout train` under torchrun, two CPU processes with gloo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis import runfolder as rf
from analysis import runformat as fmt

ROOT = Path(__file__).resolve().parents[1]
HIERARCHY = {"a": ["lion", "tiger", "wolf"], "b": ["saw", "knife", "axe"]}


def _torchrun_train(tmp_path, out, *options: str) -> subprocess.CompletedProcess:
    """``blockout train`` on two gloo processes: 6 classes x 6 images = 36, two ranks of 18, batch 6
    -> 3 steps per epoch on each rank, 2 epochs; asserts it exited 0."""
    hier = tmp_path / "h.json"
    hier.write_text(json.dumps(HIERARCHY))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "blockout.cli", "train", "--hierarchy", str(hier), "--samples-per-class", "6",
           "--test-samples-per-class", "3", "--image-size", "8", "--nodes", "8", "--clusters", "2",
           "--batch-size", "6", "--epochs", "2", "--device", "cpu", "--out", str(out), *options]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch built without gloo")
class TestTorchrunGloo:
    def test_two_process_run_folder(self, tmp_path):
        out = tmp_path / "ddp"
        proc = _torchrun_train(tmp_path, out)
        meta = fmt.read_run(out).to_json()
        assert meta["runtime"]["world_size"] == 2 and meta["runtime"]["steps_per_epoch"] == 3
        recs = rf.read_jsonl(out / rf.METRICS)
        assert [(r["epoch"], r["step"]) for r in recs] == [(1, 3), (2, 6)]  # written once (rank 0)
        # test accuracy is all-reduced over both shards: a multiple of 1/18 (18 test images)
        for r in recs:
            assert abs(r["test_acc"] * 18 - round(r["test_acc"] * 18)) < 1e-9
        state = torch.load(out / rf.TRAIN_STATE, weights_only=True)
        assert state["world_size"] == 2 and len(state["rng"]["per_rank"]) == 2
        assert state["progress"]["finished"] is True
        assert proc.stderr.count("finished 2 epoch(s)") == 1  # rank 0 reports

    def test_a_recipe_that_freezes_parameters_mid_run(self, tmp_path):
        """Regression: hard-budgeted (memberships frozen after half the epochs) failed under torchrun
        with DDP's 'parameters that were not used in producing loss': DDP was built before the freeze."""
        out = tmp_path / "ddp"
        proc = _torchrun_train(tmp_path, out, "--method", "hard-budgeted")
        assert "memberships frozen after 1 epoch(s)" in proc.stderr
        assert [r["epoch"] for r in rf.read_jsonl(out / rf.METRICS)] == [1, 2]

    def test_confusion_grouping_under_torchrun(self, tmp_path):
        """The confusion-grouped co-clustering (hard-cocluster with linkage) sums each rank's confusion
        over both ranks (all-reduce) at the switch and trains on."""
        out = tmp_path / "ddp"
        proc = _torchrun_train(tmp_path, out, "--method", "hard-cocluster", "--cocluster-method", "linkage")
        assert proc.stderr.count("co-clustering of the confusion matrix and the weights after 1 epoch(s)") == 1
        switched = [r for r in rf.read_jsonl(out / rf.METRICS) if "cocluster_classes" in r]
        assert [r["epoch"] for r in switched] == [2] and len(switched[0]["cocluster_classes"]) == 6
