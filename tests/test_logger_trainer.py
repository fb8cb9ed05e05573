"""RunLogger as the trainer's writer: the trainer writes only through it, and the options it
needs (a lock held by the caller, resuming at a checkpoint's step, the network's own topology,
run.json extras, per-snapshot multipliers, closing without a final snapshot)."""

import inspect
import json
import sys

import numpy as np
import pytest
import torch

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.run import load_run
from blockout import BlockoutHead, RunLogger
from blockout import train as train_module
from blockout.config import TrainConfig
from blockout.errors import UserError
from blockout.runwriter import LOCK_NAME, RunLock, RunWriter
from blockout.train import resume_config, train

torch.set_num_threads(1)

HIERARCHY = {"a": ["c0", "c1", "c2"], "b": ["c3", "c4", "c5"]}


def head() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), BlockoutHead(12, 6, hidden=(8,), clusters=2))


def steps(run_dir):
    return [r["step"] for r in fmt.read_metrics(run_dir)], [e.step for e in fmt.read_snapshot_index(run_dir)]


# ------------------------------------------------------------------------------------------
# the trainer


def test_train_module_names_no_runwriter():
    """The trainer's only writer of run folders is the public RunLogger."""
    src = inspect.getsource(train_module)
    assert "RunWriter" not in src and "write_run_json" not in src
    assert "RunLogger(" in src


def test_trainer_writes_through_runlogger_only(tmp_path, monkeypatch):
    hier = tmp_path / "h.json"
    hier.write_text(json.dumps(HIERARCHY))
    callers, opened = [], []
    real_init, real_open = RunWriter.__init__, RunLogger.open

    def spy_init(self, *args, **kwargs):
        callers.append(sys._getframe(1).f_globals["__name__"])
        real_init(self, *args, **kwargs)

    def spy_open(self):
        opened.append((self.resume_at_step, self._lock_option))
        return real_open(self)

    monkeypatch.setattr(RunWriter, "__init__", spy_init)
    monkeypatch.setattr(RunLogger, "open", spy_open)
    out = tmp_path / "run"
    cfg = TrainConfig.from_dict(dict(hierarchy=str(hier), samples_per_class=4, test_samples_per_class=2, image_size=8,
                                     nodes=12, clusters=2, epochs=1, batch_size=8, device="cpu", method="hard-budgeted",
                                     out=str(out)), source="test")  # the preset fills in the budget
    assert train(cfg).status == "finished"
    assert train(resume_config(out, {"epochs": 2}), resume=True).status == "finished"
    assert callers and set(callers) == {"blockout.logger"}, callers
    # a new run, then a resume at the checkpoint's step (3 steps per epoch), each under train()'s lock
    assert [step for step, _ in opened] == [None, 3]
    assert all(isinstance(lock, RunLock) for _, lock in opened)
    run = load_run(out)
    assert [r["epoch"] for r in run.metrics] == [1, 2]
    # the budget recipe's multipliers reach every snapshot through RunLogger(multipliers=...)
    for entry in fmt.read_snapshot_index(out):
        assert any(k.startswith(fmt.MULTIPLIER_PREFIX) for k in rf.load_npz(out / "snapshots" / entry.file))
    assert fmt.read_run(out).runtime["world_size"] == 1  # the trainer's runtime record, not RunLogger's default


# ------------------------------------------------------------------------------------------
# the options


def test_resume_at_step_cuts_later_records_and_repairs_at_open(tmp_path):
    model = head()
    with RunLogger(tmp_path / "r", model) as log:
        for step in (5, 10, 15):
            log.snapshot(step)
            log.log_metrics(step, epoch=step // 5, test_acc=0.1)
    stray = tmp_path / "r" / "snapshots" / "step_00000099.npz"  # written just before a kill, never listed
    stray.write_bytes((tmp_path / "r" / "snapshots" / "step_00000005.npz").read_bytes())
    # resume=True alone cuts nothing until a write lands at or before the recorded end
    log = RunLogger(tmp_path / "r", model, resume=True).open()
    assert steps(tmp_path / "r") == ([5, 10, 15], [0, 5, 10, 15])
    log.close(last=False)
    # resume_at_step cuts at once: a reader sees the folder as the checkpoint left it
    log = RunLogger(tmp_path / "r", model, resume_at_step=5).open()
    assert steps(tmp_path / "r") == ([5], [0, 5])
    assert not stray.exists() and not (tmp_path / "r" / "snapshots" / "step_00000010.npz").exists()
    log.log_metrics(8, epoch=2, test_acc=0.2)  # continuing after the checkpoint cuts nothing more
    log.close()
    assert steps(tmp_path / "r") == ([5, 8], [0, 5, 8])
    with pytest.raises(ValueError, match="whole number"):
        RunLogger(tmp_path / "r", model, resume_at_step=-1)


def test_a_lock_handed_in_stays_with_its_owner(tmp_path):
    model = head()
    lock = RunLock(tmp_path / "r").acquire()
    try:
        with RunLogger(tmp_path / "r", model, lock=lock) as log:
            log.snapshot(1)
        with pytest.raises(UserError, match="being written by another"):  # still held after closing
            RunLock(tmp_path / "r").acquire()
        with pytest.raises(UserError, match="being written by another"):  # and RunLogger's own lock waits for it
            RunLogger(tmp_path / "r", model, resume=True).open()
    finally:
        lock.release()
    with RunLogger(tmp_path / "r", model, resume=True):  # released by its owner: free again
        pass
    with pytest.raises(TypeError, match="lock must be"):
        RunLogger(tmp_path / "x", model, lock="yes")


def test_no_lock(tmp_path):
    with RunLogger(tmp_path / "r", head(), lock=False) as log:
        log.snapshot(2)
    assert not (tmp_path / "r" / LOCK_NAME).exists()
    assert load_run(tmp_path / "r").steps == [0, 2]


def test_topology_extra_and_multipliers(tmp_path):
    model = head()
    own = RunLogger(tmp_path / "x", model).topology
    topo = {**own, "trunk": {"kind": "MyBackbone", "out_features": 12}}
    calls = []

    def multipliers():
        calls.append(1)
        return {"classifier": np.arange(6, dtype=np.float32)}

    with RunLogger(tmp_path / "r", model, topology=topo, extra={"runtime": {"device": "abacus"}, "note": "hi"},
                   multipliers=multipliers) as log:
        log.snapshot(3)
    meta = fmt.read_run(tmp_path / "r").to_json()
    assert meta["topology"]["trunk"] == {"kind": "MyBackbone", "out_features": 12}
    assert meta["runtime"] == {"device": "abacus"} and meta["note"] == "hi"
    assert len(calls) == 3  # step 0, step 3 and the closing `last` snapshot
    for entry in fmt.read_snapshot_index(tmp_path / "r"):
        arrays = rf.load_npz(tmp_path / "r" / "snapshots" / entry.file)
        np.testing.assert_array_equal(arrays["multiplier__classifier"], np.arange(6))
    with pytest.raises(fmt.RunFormatError):
        RunLogger(tmp_path / "y", model, topology={"node_sets": "none", "layers": []})
    with pytest.raises(TypeError, match="multipliers"):
        RunLogger(tmp_path / "y", model, multipliers={"classifier": np.zeros(6)})
    # the default runtime names the writer
    with RunLogger(tmp_path / "d", model):
        pass
    assert fmt.read_run(tmp_path / "d").runtime == {"writer": "blockout.RunLogger", "model": "Sequential"}


def test_close_without_the_last_snapshot(tmp_path):
    model = head()
    log = RunLogger(tmp_path / "r", model).open()
    log.snapshot(4)
    log.close(last=False)
    assert load_run(tmp_path / "r").weight_steps() == []
    with RunLogger(tmp_path / "s", model) as log:
        log.snapshot(4)
    assert load_run(tmp_path / "s").weight_steps() == [4]


def test_probs_summary_is_what_log_metrics_adds(tmp_path):
    model = head()
    with RunLogger(tmp_path / "r", model) as log:
        summary = log.probs_summary()
        log.log_metrics(1, epoch=1)
    assert fmt.read_metrics(tmp_path / "r")[0]["probs"] == summary
    assert set(summary) == {"trunk", "h1", "classes"}
    assert set(summary["h1"]) == {"mean", "frac_below_0.1", "frac_above_0.9"}


def test_resume_checks_the_structure_not_what_training_changes(tmp_path):
    model = head()
    with RunLogger(tmp_path / "r", model) as log:
        log.snapshot(2)
    for ns in model[1].node_sets.values():  # memberships frozen since: the same network
        ns.trainable = False
    with RunLogger(tmp_path / "r", model, resume=True) as log:
        log.snapshot(3)
    torch.manual_seed(0)
    wider = torch.nn.Sequential(torch.nn.Flatten(), BlockoutHead(12, 6, hidden=(9,), clusters=2))
    with pytest.raises(UserError, match="cannot resume .* differ"):
        RunLogger(tmp_path / "r", wider, resume_at_step=2).open()


@pytest.mark.parametrize("config", [None, {"steps": 30, "lr": 0.01}])
def test_train_resume_refuses_a_run_of_a_users_own_loop_and_leaves_it(tmp_path, capsys, config):
    """Regression: ``blockout train --resume RUN`` on a folder written by RunLogger in a user's loop
    took it for a run killed before its first checkpoint, deleted it and trained a default run there
    (no config), or failed on the user's config keys (``unknown option(s) steps``)."""
    from blockout import BlockoutHead, RunLogger
    from blockout.cli import main

    head = BlockoutHead(8, 4, hidden=(16,), clusters=3)
    run = tmp_path / "mine"
    with RunLogger(run, head, class_names=list("abcd"), config=config) as log:
        log.log_metrics(1, train_loss=1.0)
        log.snapshot(1)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "written by blockout.RunLogger" in err and "Traceback" not in err
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before
