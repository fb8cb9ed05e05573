"""Training: run-folder contents, exact resume, Ctrl-C, NaN, config handling."""

import json

import numpy as np
import pytest
import torch

from analysis import runfolder as rf
from analysis import runformat as fmt
from blockout.checkpoint import load_train_state
from blockout.config import TrainConfig
from blockout.errors import UserError
from blockout.runwriter import RunWriter
from blockout.train import TrainingDiverged, lr_factor, resume_config, train
from tiny_runs import tiny_options, write_hierarchy  # noqa: E402  (tests/ is on sys.path)

torch.set_num_threads(1)

HIERARCHY = {"animals": {"cats": ["lion", "tiger"], "dogs": ["wolf", "fox", "dog"]},
             "tools": ["saw", "knife", "hammer", "drill", "axe"]}


@pytest.fixture(scope="module")
def hierarchy_file(tmp_path_factory):
    return write_hierarchy(tmp_path_factory, HIERARCHY)


def tiny(hierarchy_file, out, **kw):
    """10 classes x 4 images of 8x8: 5 steps per epoch at batch 8."""
    return TrainConfig(**tiny_options(hierarchy_file, out, **{"nodes": 16, "epochs": 2, "method": "hard-learned",
                                                              **kw}))


def final_state(run_dir):
    return load_train_state(run_dir / rf.TRAIN_STATE)


def metrics_without_time(run_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rf.read_jsonl(run_dir / rf.METRICS)]


def assert_same_model(a, b):
    sa, sb = final_state(a)["model"], final_state(b)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


class TestConfig:
    def test_json_round_trip_and_overrides(self, tmp_path):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"method": "dropout", "epochs": 3, "lr": 0.1}))
        cfg = TrainConfig.from_json_file(path, {"epochs": 5})
        assert (cfg.method, cfg.epochs, cfg.lr) == ("dropout", 5, 0.1)
        assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg

    @pytest.mark.parametrize("bad,match", [
        ({"epochs": 0}, "epochs must be at least 1, got 0"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\), got 1.5"),
        ({"device": "gpu"}, "device='gpu'"),
        ({"method": "magic"}, "method='magic' is not one of"),
        ({"nodes": "many"}, "nodes must be int, got 'many'"),
        ({"lr": float("nan")}, "lr must be a positive number"),
    ])
    def test_validation_names_value(self, bad, match):
        with pytest.raises(UserError, match=match):
            TrainConfig(**bad)

    def test_unknown_key_names_file(self, tmp_path):
        path = tmp_path / "c.json"
        path.write_text('{"epoch": 3}')
        with pytest.raises(UserError, match=r"c.json: unknown option\(s\) epoch"):
            TrainConfig.from_json_file(path)

    def test_lr_schedule(self):
        assert lr_factor(0, 10, "cosine") == 1.0
        assert lr_factor(10, 10, "cosine") == pytest.approx(0.0)
        assert lr_factor(3, 10, "constant") == 1.0
        assert lr_factor(0, 10, "cosine", warmup=4) == 0.25


@pytest.fixture(scope="module")
def run(hierarchy_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    result = train(tiny(hierarchy_file, out, snapshot_every=2))
    return out, result


class TestRunFolder:
    def test_files_and_run_json(self, run):
        out, result = run
        assert result.status == "finished" and result.epochs_done == 2 and result.step == 10
        meta = fmt.read_run(out).to_json()
        assert meta["format"] == rf.FORMAT and meta["config"]["method"] == "hard-learned"
        assert meta["config"]["snapshot_every"] == 2
        assert len(meta["dataset"]["class_names"]) == 10
        assert [s["name"] for s in meta["topology"]["node_sets"]] == ["trunk", "h1", "h2", "classes"]
        assert {"torch", "python", "blockout"} <= set(meta["versions"])
        assert meta["runtime"]["device"] == "cpu" and meta["runtime"]["steps_per_epoch"] == 5

    def test_metrics_per_epoch(self, run):
        out, _ = run
        recs = rf.read_jsonl(out / rf.METRICS)
        assert [(r["epoch"], r["step"]) for r in recs] == [(1, 5), (2, 10)]
        for r in recs:
            assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"} <= set(r)
            assert 0 <= r["test_acc"] <= 1 and np.isfinite(r["train_loss"])
            assert set(r["probs"]) == {"trunk", "h1", "h2", "classes"}
            assert set(r["probs"]["h1"]) == {"mean", "frac_below_0.1", "frac_above_0.9"}
        # the lr of the epoch's last step (cosine over all 10 steps)
        assert recs[-1]["lr"] == pytest.approx(1e-3 * lr_factor(9, 10, "cosine"))

    def test_snapshots_probs_every_n_steps_weights_at_best_and_last(self, run):
        out, _ = run
        entries = list(rf.iter_snapshot_entries(out))
        assert [e["step"] for e in entries] == [0, 2, 4, 5, 6, 8, 10]
        with_weights = [e for e in entries if e["has_weights"]]
        tags = {t: e["step"] for e in entries for t in e["tags"]}
        assert tags["last"] == 10 and tags["best"] in (5, 10)
        assert {e["step"] for e in with_weights} == {tags["last"], tags["best"]}
        for e in entries:
            arrays = rf.load_npz(out / rf.SNAPSHOT_DIR / e["file"])  # allow_pickle=False
            groups = rf.split_snapshot(arrays)
            assert groups["probs"]["h1"].shape == (16, 3)
            assert bool(groups["weight"]) == e["has_weights"]
        last = rf.split_snapshot(rf.load_npz(out / rf.SNAPSHOT_DIR / rf.snapshot_filename(10)))
        assert last["weight"]["fc2"].shape == (16, 16) and last["bias"]["classifier"].shape == (10,)

    def test_train_state_loads_weights_only(self, run):
        out, _ = run
        state = torch.load(out / rf.TRAIN_STATE, weights_only=True)
        assert state["progress"]["step"] == 10 and state["progress"]["finished"] is True

    def test_existing_out_is_user_error(self, run, hierarchy_file):
        out, _ = run
        with pytest.raises(UserError, match=r"already exists and is not empty.*--resume"):
            train(tiny(hierarchy_file, out))


class TestResume:
    def test_interrupt_mid_epoch_then_resume_is_bit_identical(self, hierarchy_file, tmp_path):
        ref = tmp_path / "ref"
        train(tiny(hierarchy_file, ref))

        def ctrl_c(step, model):
            if step == 3:
                raise KeyboardInterrupt

        part = tmp_path / "part"
        result = train(tiny(hierarchy_file, part), on_step=ctrl_c)
        assert result.status == "interrupted" and result.step == 3
        assert "--resume" in result.message and str(part) in result.message
        assert final_state(part)["progress"]["batch_in_epoch"] == 3
        result = train(resume_config(part), resume=True)
        assert result.status == "finished" and result.step == 10
        assert_same_model(ref, part)
        assert metrics_without_time(ref) == metrics_without_time(part)

    def test_train_one_epoch_then_extend_to_two(self, hierarchy_file, tmp_path):
        # a schedule that does not depend on the total length, so 1 + 1 epochs equals 2
        ref, part = tmp_path / "ref", tmp_path / "part"
        train(tiny(hierarchy_file, ref, method="dropout", lr_schedule="constant"))
        train(tiny(hierarchy_file, part, method="dropout", lr_schedule="constant", epochs=1))
        result = train(resume_config(part, {"epochs": 2}), resume=True)
        assert result.status == "finished" and result.epochs_done == 2
        assert_same_model(ref, part)
        assert metrics_without_time(ref) == metrics_without_time(part)

    def test_finished_run_is_a_noop(self, hierarchy_file, tmp_path):
        out = tmp_path / "r"
        train(tiny(hierarchy_file, out, epochs=1, method="fc"))
        before = (out / rf.METRICS).read_bytes(), (out / rf.TRAIN_STATE).read_bytes()
        result = train(resume_config(out), resume=True)
        assert result.status == "already-finished" and "nothing to do" in result.message
        assert ((out / rf.METRICS).read_bytes(), (out / rf.TRAIN_STATE).read_bytes()) == before

    def test_resume_rejects_changed_options(self, hierarchy_file, tmp_path):
        out = tmp_path / "r"
        train(tiny(hierarchy_file, out, epochs=1, method="fc"))
        with pytest.raises(UserError, match=r"lr=0.5 differs from the run's lr=0.001"):
            resume_config(out, {"lr": 0.5})
        with pytest.raises(UserError, match="no such run folder"):
            resume_config(tmp_path / "missing")


class TestNaN:
    def test_nan_stops_and_keeps_last_good_checkpoint(self, hierarchy_file, tmp_path):
        out = tmp_path / "r"

        def poison(step, model):
            if step == 7:  # in epoch 2: the epoch-1 checkpoint (step 5) is the last good one
                with torch.no_grad():
                    model.fc["classifier"].weight.fill_(float("nan"))

        with pytest.raises(TrainingDiverged, match=r"became nan at step 8.*last good checkpoint \(step 5\)"):
            train(tiny(hierarchy_file, out), on_step=poison)
        state = final_state(out)
        assert state["progress"]["step"] == 5 and state["progress"]["epochs_done"] == 1
        assert all(torch.isfinite(v).all() for k, v in state["model"].items() if "theta" not in k)
        # the run can be resumed from there (and, without the poison, finishes)
        result = train(resume_config(out), resume=True)
        assert result.status == "finished" and result.step == 10
        assert [r["step"] for r in rf.read_jsonl(out / rf.METRICS)] == [5, 10]


class TestRunWriter:
    def test_weights_kept_only_at_best_and_last(self, tmp_path):
        w = RunWriter(tmp_path)
        probs = {"h": np.full((2, 2), 0.5, np.float32)}
        weights, biases = {"fc": np.ones((2, 3), np.float32)}, {"fc": np.zeros(2, np.float32)}
        w.snapshot(1, 1, probs, weights, biases, tags=["last", "best"])
        w.snapshot(2, 2, probs, weights, biases, tags=["last"])
        w.snapshot(3, 3, probs, weights, biases, tags=["last", "best"])
        entries = {e["step"]: e for e in rf.iter_snapshot_entries(tmp_path)}
        assert [entries[s]["has_weights"] for s in (1, 2, 3)] == [False, False, True]
        assert entries[3]["tags"] == ["best", "last"] and entries[1]["tags"] == []
        assert set(rf.load_npz(tmp_path / "snapshots" / entries[1]["file"])) == {"probs__h"}

    def test_truncate_after(self, tmp_path):
        w = RunWriter(tmp_path)
        for step in (1, 2, 3):
            w.log_metrics({"step": step})
            w.snapshot(step, 0, {"h": np.zeros((1, 1))})
        w.truncate_after(2)
        assert [r["step"] for r in rf.read_jsonl(tmp_path / rf.METRICS)] == [1, 2]
        assert [e["step"] for e in rf.iter_snapshot_entries(tmp_path)] == [1, 2]
        assert not (tmp_path / "snapshots" / rf.snapshot_filename(3)).exists()
        assert [e["step"] for e in RunWriter(tmp_path).entries] == [1, 2]
