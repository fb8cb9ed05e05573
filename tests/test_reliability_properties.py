"""Property-based tests (hypothesis): odd but legal runs get a defined result, malformed run
folders get one :class:`UserError` line, never a crash inside numpy, scipy or networkx.

Example counts are small (the fast suite stays fast); the generators aim at the edges: k = 1,
one node, one class, empty clusters, all-zero and all-one P, duplicate class names, and
run.json / index.json / snapshot arrays with random values spliced into valid files.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from analysis import graphs, hierarchy, runfolder as rf, threshold  # noqa: E402
from analysis.errors import UserError  # noqa: E402
from analysis.run import load_run  # noqa: E402
from analysis.summary import probs_stats, summarize_run  # noqa: E402
from blockout.runwriter import RunWriter  # noqa: E402

SETTINGS = dict(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.integers(1, 5)
kinds = st.sampled_from(["random", "zeros", "ones", "half", "one-hot"])


def make_P(n: int, k: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "zeros":
        return np.zeros((n, k), np.float32)
    if kind == "ones":
        return np.ones((n, k), np.float32)
    if kind == "half":
        return np.full((n, k), 0.5, np.float32)
    if kind == "one-hot":  # every node in cluster 0: the other clusters are empty
        P = np.zeros((n, k), np.float32)
        P[:, 0] = 1
        return P
    return rng.random((n, k)).astype(np.float32)


def write_run(path: Path, n_trunk, n_hidden, n_classes, k, kind, seed, names=None) -> Path:
    """A run folder written by the real writer, with chosen shapes and P."""
    topo = {"node_sets": [
        {"name": "trunk", "size": n_trunk, "clusters": k, "trainable": False, "role": "trunk"},
        {"name": "h1", "size": n_hidden, "clusters": k, "trainable": True, "role": "hidden"},
        {"name": "classes", "size": n_classes, "clusters": k, "trainable": True, "role": "classes"}],
        "layers": [
        {"name": "fc1", "in_set": "trunk", "out_set": "h1", "in_features": n_trunk, "out_features": n_hidden,
         "mask": "count", "mode": "hard", "role": "hidden"},
        {"name": "classifier", "in_set": "h1", "out_set": "classes", "in_features": n_hidden,
         "out_features": n_classes, "mask": "count", "mode": "hard", "role": "classifier"}]}
    names = names or [f"c{i}" for i in range(n_classes)]
    w = RunWriter(path)
    w.write_run_json({"method": "hard-learned", "clusters": k, "epochs": 1}, {"class_names": names}, topo)
    rng = np.random.default_rng(seed)
    for step in (0, 1):
        probs = {"trunk": make_P(n_trunk, k, "ones", seed), "h1": make_P(n_hidden, k, kind, seed + step),
                 "classes": make_P(n_classes, k, kind, seed + 7 * step)}
        weights = {"fc1": rng.normal(size=(n_hidden, n_trunk)).astype(np.float32),
                   "classifier": rng.normal(size=(n_classes, n_hidden)).astype(np.float32)}
        w.snapshot(step, step, probs, weights, {"fc1": np.zeros(n_hidden, np.float32),
                                                 "classifier": np.zeros(n_classes, np.float32)},
                   tags=["last"] if step else ["best"])
    w.log_metrics({"step": 1, "epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5})
    return path


def analyse(path: Path) -> None:
    """Everything the CLI and dashboard compute from a run (defined result or UserError)."""
    run = load_run(path)
    json.dumps(summarize_run(path, threshold=0.5), allow_nan=False)
    for tau in (0.05, 0.5, 1.0):
        graphs.branch_tree(run, tau)
        graphs.layer_graph(run, tau)
    for method in ("probability", "connectivity", "weights"):
        hierarchy.class_hierarchy(run, method, 0.5)


@settings(**SETTINGS)
@given(sizes, sizes, sizes, st.integers(1, 4), kinds, st.integers(0, 9), st.booleans())
def test_odd_runs_give_a_defined_result(n_trunk, n_hidden, n_classes, k, kind, seed, dup_names):
    names = ["same"] * n_classes if dup_names else None  # duplicate class names are legal labels
    with tempfile.TemporaryDirectory() as d:
        path = write_run(Path(d) / "run", n_trunk, n_hidden, n_classes, k, kind, seed, names)
        try:
            analyse(path)
        except UserError as exc:  # allowed, if it is one line
            assert "\n" not in str(exc)


@settings(**SETTINGS)
@given(st.integers(0, 6), st.integers(1, 5), kinds, st.integers(0, 9), st.floats(0.01, 1.0))
def test_threshold_and_stats_on_any_P(n, k, kind, seed, tau):
    P = make_P(n, k, kind, seed)
    th = threshold.threshold(P, tau, "h")
    s = th.summary()
    json.dumps(s, default=str)
    stats = probs_stats(P, tau)
    assert sum(stats["nodes_per_cluster"]) == int((P >= tau).sum())
    assert stats["dead_nodes"] + (n - stats["dead_nodes"]) == n


@settings(**SETTINGS)
@given(st.integers(1, 6), st.integers(1, 5), kinds, st.integers(0, 9))
def test_probability_hierarchy_on_any_P(n, k, kind, seed):
    P = make_P(n, k, kind, seed)
    try:
        h = hierarchy.probability_hierarchy(P, labels=["x"] * n)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert h is not None


# ---- malformed files: random JSON spliced into a valid run

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**15, 10**15) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("base") / "run", 3, 4, 3, 2, "random", 0)


def _paths(obj, prefix=()):
    """Every path into a JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, prefix + (i,))


def _splice(obj, path, value):
    if not path:
        return value
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return obj


def _reject_or_load(path: Path) -> None:
    try:
        analyse(path)
    except UserError as exc:
        assert "\n" not in str(exc), str(exc)


@settings(**SETTINGS)
@given(st.data())
def test_malformed_run_json(base_run, data):
    meta = json.loads((base_run / "run.json").read_text())  # raw run.json: hostile on purpose
    where = data.draw(st.sampled_from(list(_paths(meta))))
    value = data.draw(json_values)
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(base_run, run)
        (run / "run.json").write_text(json.dumps(_splice(meta, where, value)))  # raw run.json: hostile on purpose
        _reject_or_load(run)


@settings(**SETTINGS)
@given(st.data())
def test_malformed_index_json(base_run, data):
    index = json.loads((base_run / "snapshots" / "index.json").read_text())
    where = data.draw(st.sampled_from(list(_paths(index))))
    value = data.draw(json_values)
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(base_run, run)
        (run / "snapshots" / "index.json").write_text(json.dumps(_splice(index, where, value)))
        _reject_or_load(run)


dtypes = st.sampled_from(["<f4", "<f8", "<f2", "<i4", "|u1", "|b1", "<U3", "<c8", "|S2", "<m8[s]"])


@settings(**SETTINGS)
@given(st.sampled_from(["probs__h1", "probs__classes", "weight__fc1", "bias__classifier", "multiplier__fc1",
                        "probs__ghost"]),
       dtypes, st.lists(st.integers(0, 5), min_size=0, max_size=3),
       st.sampled_from([0.0, 0.5, 1.0, np.nan, np.inf, -1.0, 2.0]))
def test_malformed_snapshot_arrays(base_run, key, dtype, shape, fill):
    arrays = rf.load_npz(base_run / "snapshots" / "step_00000001.npz")
    try:
        arrays[key] = np.full(shape, fill).astype(dtype)
    except (ValueError, TypeError, OverflowError):
        arrays[key] = np.zeros(shape, dtype=dtype)
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(base_run, run)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        (run / "snapshots" / "step_00000001.npz").write_bytes(buf.getvalue())
        _reject_or_load(run)


@settings(**SETTINGS)
@given(st.lists(json_values | st.text(max_size=20), max_size=4))
def test_malformed_metrics_lines(base_run, lines):
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(base_run, run)
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(v) if not isinstance(v, str) else v for v in lines))
        _reject_or_load(run)
        try:
            out = summarize_run(run)
            json.dumps(out, allow_nan=False)  # inspect --json stays valid JSON
        except UserError:
            pass
