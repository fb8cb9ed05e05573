"""Runs survive being killed: SIGKILL at precise points (inside every kind of write, before the
first checkpoint, mid-epoch) and resume to the same metrics, snapshots and weights as an
uninterrupted run, with no temporary files left; one writer per run folder; a job restarted by
``torchrun --max-restarts`` continues its own run.

Kills are injected with ``BLOCKOUT_TEST_KILL_AT`` (:mod:`analysis.faults`) in a forked child, so
the process really dies with SIGKILL at that point and nothing of it is cleaned up.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import runfolder as rf
from blockout.checkpoint import load_train_state
from blockout.config import TrainConfig
from blockout.errors import UserError
from blockout.runwriter import LOCK_NAME, RunLock
from blockout.train import is_resumable, resume_config, train
from tiny_runs import tiny_options, write_hierarchy  # noqa: E402  (tests/ is on sys.path)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
HIERARCHY = {"animals": {"cats": ["lion", "tiger"], "dogs": ["wolf", "fox", "dog"]},
             "tools": ["saw", "knife", "hammer", "drill", "axe"]}

#: (kill point, what it interrupts). Writes of a run of ``tiny`` (2 epochs x 5 steps, a snapshot
#: every 2 steps), in order: run.json, step 0 .npz, index, [start], train_state, (npz, index) for
#: steps 2 and 4, metrics, npz 5 + index, train_state, (npz, index) for steps 6, 8, 10, metrics,
#: npz 10 again (the end-of-epoch weights merged in) + index, train_state.
KILL_POINTS = [
    ("write:run.json:1", "inside the write of run.json (nothing else exists yet)"),
    ("start:run:1", "after run.json and snapshot 0, before the first checkpoint"),
    ("write:train_state.pt:1", "inside the first checkpoint write"),
    ("step:3:1", "mid-epoch, after optimiser step 3"),
    ("write:step_*.npz:3", "inside a snapshot (.npz) write"),
    ("write:index.json:4", "inside a snapshot index write"),
    ("write:metrics.jsonl:1", "inside the first metrics append"),
    ("write:train_state.pt:2", "inside the end-of-epoch checkpoint write"),
    ("write:step_*.npz:7", "inside the rewrite that merges end-of-epoch weights into a snapshot"),
    ("write:index.json:7", "inside an index write of epoch 2"),
    ("write:metrics.jsonl:2", "inside the last metrics append"),
    ("write:train_state.pt:3", "inside the final checkpoint write"),
]


@pytest.fixture(scope="module")
def hierarchy_file(tmp_path_factory):
    return write_hierarchy(tmp_path_factory, HIERARCHY)


def tiny(hierarchy_file, out, **kw):
    return TrainConfig(**tiny_options(hierarchy_file, out, **{"nodes": 16, "epochs": 2, "method": "hard-learned",
                                                              "snapshot_every": 2, **kw}))


def _child(config: TrainConfig, spec: str) -> None:
    os.environ["BLOCKOUT_TEST_KILL_AT"] = spec
    sys.stderr = open(os.devnull, "w")
    train(config)
    os._exit(0)


def killed_run(config: TrainConfig, spec: str) -> int:
    """Train ``config`` in a forked child that SIGKILLs itself at ``spec``; the child's exit code."""
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(config, spec))
    proc.start()
    proc.join(120)
    return proc.exitcode


def run_fingerprint(run_dir: Path) -> dict:
    """Everything a run folder promises, minus wall-clock times: metrics, the index, every
    snapshot array, the final weights."""
    metrics = [{k: v for k, v in r.items() if k != "seconds"} for r in rf.read_jsonl(run_dir / rf.METRICS)]
    snaps = {}
    for p in sorted((run_dir / rf.SNAPSHOT_DIR).glob("*.npz")):
        snaps[p.name] = {k: v.tobytes() + str(v.shape).encode() for k, v in rf.load_npz(p).items()}
    index = rf.read_json(run_dir / rf.SNAPSHOT_DIR / rf.SNAPSHOT_INDEX)
    state = load_train_state(run_dir / rf.TRAIN_STATE)
    model = {k: v.numpy().tobytes() for k, v in state["model"].items()}
    return {"metrics": metrics, "snapshots": snaps, "index": index, "model": model,
            "progress": {k: v for k, v in state["progress"].items() if k != "elapsed"}}


def leftovers(run_dir: Path) -> list[str]:
    return [p.name for p in rf.stale_temporaries(run_dir)]


@pytest.fixture(scope="module")
def reference(hierarchy_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    train(tiny(hierarchy_file, out))
    return run_fingerprint(out)


@pytest.mark.parametrize("spec,what", KILL_POINTS, ids=[k for k, _ in KILL_POINTS])
def test_sigkill_then_resume_matches_uninterrupted(spec, what, hierarchy_file, reference, tmp_path):
    out = tmp_path / "run"
    code = killed_run(tiny(hierarchy_file, out), spec)
    assert code == -signal.SIGKILL, f"the run was not killed {what} (exit {code})"
    # what `blockout train --resume-if-exists` does: continue when there is a run, else start it
    config = tiny(hierarchy_file, out)
    result = train(resume_config(out), resume=True) if is_resumable(out) else train(config)
    assert result.status == "finished"
    assert leftovers(out) == []
    got = run_fingerprint(out)
    for key in reference:
        assert got[key] == reference[key], f"{key} differs after a kill {what}"


def test_new_train_after_kill_before_first_checkpoint_points_to_resume(hierarchy_file, tmp_path):
    out = tmp_path / "run"
    assert killed_run(tiny(hierarchy_file, out), "start:run:1") == -signal.SIGKILL
    assert (out / rf.RUN_JSON).is_file() and not (out / rf.TRAIN_STATE).exists()
    with pytest.raises(UserError, match="--resume"):
        train(tiny(hierarchy_file, out))


def test_stale_temporaries_removed_on_next_start(hierarchy_file, tmp_path):
    out = tmp_path / "run"
    assert killed_run(tiny(hierarchy_file, out), "write:train_state.pt:2") == -signal.SIGKILL
    assert any(n.startswith(".train_state.pt.") for n in leftovers(out))  # the kill left one
    train(resume_config(out), resume=True)
    assert leftovers(out) == []


def test_repair_strips_weights_the_index_already_dropped(tmp_path):
    # a kill between the index write and the weight-stripping rewrite leaves a file with weights
    # that the index says has none: the resume finishes the strip
    from blockout.runwriter import RunWriter

    w = RunWriter(tmp_path)
    P = {"h": np.full((4, 2), 0.5, dtype=np.float32)}
    w.snapshot(1, 0, P, weights={"fc": np.ones((4, 3), np.float32)}, tags=["best"])
    index = rf.read_json(tmp_path / rf.SNAPSHOT_DIR / rf.SNAPSHOT_INDEX)
    index["snapshots"][0].update(has_weights=False, tags=[])
    rf.atomic_write_json(tmp_path / rf.SNAPSHOT_DIR / rf.SNAPSHOT_INDEX, index)
    rf.save_npz(tmp_path / rf.SNAPSHOT_DIR / "step_00000009.npz", rf.snapshot_arrays(P))  # never indexed
    RunWriter(tmp_path).repair()
    assert sorted(rf.load_npz(tmp_path / rf.SNAPSHOT_DIR / "step_00000001.npz")) == ["probs__h"]
    assert not (tmp_path / rf.SNAPSHOT_DIR / "step_00000009.npz").exists()


class TestOneWriter:
    def test_second_writer_is_refused_with_the_holder_named(self, hierarchy_file, tmp_path):
        out = tmp_path / "run"
        with RunLock(out):  # another process's lock: flock conflicts across open file descriptions
            with pytest.raises(UserError, match=rf"being written by another blockout process \(pid {os.getpid()}\)"):
                train(tiny(hierarchy_file, out))
        assert not (out / rf.RUN_JSON).exists()  # refused before writing anything
        train(tiny(hierarchy_file, out, epochs=1))  # free again
        assert (out / LOCK_NAME).is_file()

    def test_cli_exit_2_while_another_process_trains(self, hierarchy_file, tmp_path):
        out = tmp_path / "run"
        with RunLock(out):
            proc = subprocess.run([sys.executable, "-m", "blockout.cli", "train", "--resume", str(out)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1

    def test_lock_dies_with_its_process(self, hierarchy_file, tmp_path):
        out = tmp_path / "run"
        assert killed_run(tiny(hierarchy_file, out), "step:3:1") == -signal.SIGKILL
        assert train(resume_config(out), resume=True).status == "finished"  # no stale lock


def _torchrun(tmp_path, out, extra_env=None, restarts=0):
    hier = tmp_path / "h.json"
    hier.write_text(json.dumps({"a": ["lion", "tiger", "wolf"], "b": ["saw", "knife", "axe"]}))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", **(extra_env or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "--max-restarts", str(restarts), "-m", "blockout.cli", "train", "--resume-if-exists",
           "--hierarchy", str(hier), "--samples-per-class", "6", "--test-samples-per-class", "3",
           "--image-size", "8", "--nodes", "8", "--clusters", "2", "--batch-size", "6", "--epochs", "3",
           "--device", "cpu", "--out", str(out)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch built without gloo")
def test_torchrun_elastic_restart_after_a_killed_rank_matches_uninterrupted(tmp_path):
    ref, part = tmp_path / "ref", tmp_path / "part"
    proc = _torchrun(tmp_path, ref)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 1 is SIGKILLed after step 4 (epoch 2); torchrun restarts both ranks once
    proc = _torchrun(tmp_path, part, {"BLOCKOUT_TEST_KILL_AT": "step:4:1", "BLOCKOUT_TEST_KILL_RANK": "1"},
                     restarts=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stderr and "exitcode  : -9" not in proc.stdout
    assert leftovers(part) == []
    a, b = run_fingerprint(ref), run_fingerprint(part)
    for key in a:
        assert a[key] == b[key], key


def test_relative_run_paths_read_every_file(tmp_path, monkeypatch):
    # regression: the confined reader joined a relative file path to a relative root twice, so
    # `blockout inspect checkpoints/x` silently saw no metrics
    from analysis.run import load_run
    from analysis.summary import summarize_run
    from analysis.synthetic import make_synthetic_run

    make_synthetic_run(tmp_path / "runs" / "r", classes=4, clusters=2, groups=1, n_snapshots=2)
    monkeypatch.chdir(tmp_path)
    run = load_run("runs/r")
    assert len(run.metrics) == 2 and len(run.steps) == 2
    assert summarize_run("runs/r")["progress"]["evaluations"] == 2


def test_ctrl_c_before_the_loop_is_one_line_and_restartable(hierarchy_file, tmp_path, monkeypatch, capsys):
    # regression: Ctrl-C while the data loads (before the loop's own handler) printed a traceback
    import blockout.data
    from blockout.cli import main

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    args = ["train", "--hierarchy", hierarchy_file, "--samples-per-class", "4", "--test-samples-per-class", "2",
            "--image-size", "8", "--nodes", "16", "--clusters", "3", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu", "--out", str(out)]
    monkeypatch.setattr(blockout.data, "load_dataset", interrupted)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err.strip() == "blockout: interrupted"
    monkeypatch.undo()
    assert main(args) == 0  # the same command again: the lock file alone does not block it


@pytest.mark.parametrize("err", ["ENOSPC", "EROFS"])
def test_disk_errors_mid_run_are_one_line_and_resumable(err, hierarchy_file, tmp_path, monkeypatch):
    # regression: a full disk or a read-only folder mid-run ended in an OSError traceback
    import errno

    out = tmp_path / "run"
    real = rf.atomic_write_bytes

    def failing(path, data):
        if Path(path).name == rf.TRAIN_STATE and (out / rf.TRAIN_STATE).exists():  # the end-of-epoch one
            raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)), str(path))
        real(path, data)

    import blockout.checkpoint

    monkeypatch.setattr(blockout.checkpoint, "atomic_write_bytes", failing)
    with pytest.raises(UserError, match=rf"{os.strerror(getattr(__import__('errno'), err))}.*--resume {out}"):
        train(tiny(hierarchy_file, out, epochs=1))
    monkeypatch.undo()
    assert leftovers(out) == []  # the failed write cleaned up after itself
    assert train(resume_config(out), resume=True).status == "finished"
