"""One-screen summary of a run: what ``blockout inspect`` prints and the dashboard's overview reuses.

Pure numpy over the run folder (no torch): reads ``run.json``, ``metrics.jsonl`` and one snapshot
through the records of :mod:`analysis.runformat`. The keys of the returned dict are documented in the README
("inspect --json").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.errors import RunFormatError, UserError
from analysis.threshold import check_tau

LOW = 0.1
HIGH = 0.9


def probs_stats(P: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Summary of one node set's membership probabilities ``P`` of shape ``(nodes, clusters)``.

    >>> s = probs_stats(np.array([[0.95, 0.05], [0.6, 0.7], [0.2, 0.3]]))
    >>> s["nodes_per_cluster"], s["dead_nodes"], s["full_nodes"], s["frac_below_0.1"]
    ([2, 1], 1, 1, 0.16666666666666666)
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2:
        raise RunFormatError(f"probability matrix must be 2-D (nodes, clusters), got shape {P.shape}")
    C = P >= threshold  # (n, k) memberships at the threshold
    per_node = C.sum(axis=1)
    return {
        "mean": float(P.mean()) if P.size else 0.0,
        "frac_below_0.1": float((P < LOW).mean()) if P.size else 0.0,
        "frac_above_0.9": float((P > HIGH).mean()) if P.size else 0.0,
        "nodes_per_cluster": [int(c) for c in C.sum(axis=0)],
        "dead_nodes": int((per_node == 0).sum()),
        "full_nodes": int((per_node == P.shape[1]).sum()),
        "empty_clusters": int((C.sum(axis=0) == 0).sum()),
    }


def live_fraction(P_out: np.ndarray, P_in: np.ndarray, threshold: float = 0.5) -> float:
    """Share of a layer's connections whose two nodes share a cluster at ``threshold``.

    >>> live_fraction(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0]]))
    0.5
    """
    C_out = (np.asarray(P_out) >= threshold).astype(np.float32)  # (out, k)
    C_in = (np.asarray(P_in) >= threshold).astype(np.float32)  # (in, k)
    if C_out.size == 0 or C_in.size == 0:
        return 0.0
    return float(((C_out @ C_in.T) > 0).mean())


def _pick_entry(entries: list[dict], step: int | None, run_dir: Path) -> dict | None:
    if not entries:
        if step is not None:
            raise UserError(f"{run_dir} has no snapshots, so --step {step} cannot be shown")
        return None
    if step is None:
        return entries[-1]
    for e in entries:
        if int(e["step"]) == int(step):
            return e
    steps = [int(e["step"]) for e in entries]
    near = min(steps, key=lambda s: abs(s - step))
    raise UserError(f"no snapshot at step {step} in {run_dir} (snapshots at steps {steps[0]}..{steps[-1]}, "
                    f"nearest {near})")


def _acc_record(rec: Mapping[str, Any] | None) -> dict | None:
    if rec is None:
        return None
    keys = ("step", "epoch", "test_acc", "test_loss", "train_acc", "train_loss")
    return {k: rec.get(k) for k in keys}


def summarize_run(run_dir: str | Path, step: int | None = None, threshold: float = 0.5) -> dict[str, Any]:
    """Summarise a run folder at one snapshot (the last one by default).

    Parameters
    ----------
    run_dir : path
        A run folder (holds ``run.json``).
    step : int, optional
        Snapshot step to summarise; ``None`` is the last snapshot.
    threshold : float
        Membership threshold τ in (0, 1]: node i is in cluster l when ``P[i, l] >= τ``.

    Returns
    -------
    dict
        JSON-ready; keys documented in the README ("inspect --json").
    """
    run_dir = Path(run_dir)
    threshold = check_tau(threshold)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    run_dir = fmt.locate_run(run_dir)
    record = fmt.read_run(run_dir)  # validates run.json before any allocation
    config = record.flat_config
    dataset = record.dataset
    metrics = fmt.read_metrics(run_dir)
    entries = fmt.snapshot_entries(run_dir)  # the index, or a scan when it is missing (as load_run)
    entry = _pick_entry(entries, step, run_dir)

    probs: dict[str, np.ndarray] = {}
    if entry is not None:
        snap = rf.confine(run_dir / fmt.SNAPSHOT_DIR, entry["file"], f"snapshot file of step {entry['step']}")
        shapes = fmt.snapshot_shapes(record.topology.node_sets, record.topology.layers)
        with rf.NpzFile(snap) as npz:
            for key in npz.files:
                if key.startswith(fmt.PROBS_PREFIX):
                    probs[key[len(fmt.PROBS_PREFIX):]] = rf.check_probs(npz.array(key, shapes.get(key)),
                                                                        f"{snap}: array {key!r}")

    node_sets = []
    for ns in record.topology.node_sets:
        item = {"name": ns.name, "role": ns.role, "size": ns.size, "clusters": ns.clusters,
                "trainable": ns.trainable, "membership": ns.membership}
        if ns.name in probs:
            P = probs[ns.name]
            if P.shape != (ns.size, ns.clusters):
                raise RunFormatError(f"snapshot {entry['file']}: probs of {ns.name!r} have shape {P.shape}, "
                                     f"run.json says ({ns.size}, {ns.clusters})")
            item.update(probs_stats(P, threshold))
        node_sets.append(item)

    layers = []
    for layer in record.topology.layers:
        item = {"name": layer.name, "role": layer.role, "in_set": layer.in_set, "out_set": layer.out_set,
                "in_features": layer.in_features, "out_features": layer.out_features, "mode": layer.mode,
                "mask": layer.mask}
        a, b = layer.out_set, layer.in_set
        item["live_fraction"] = live_fraction(probs[a], probs[b], threshold) if a in probs and b in probs else None
        layers.append(item)

    def rank(r):
        acc = r.get("test_acc")
        return (float("-inf") if acc is None else acc, -(r.get("step") or 0))

    best = max(metrics, key=rank, default=None)
    final = metrics[-1] if metrics else None
    return {
        "run": record.name if record.name is not None else run_dir.name,
        "path": str(run_dir),
        "created": record.created,
        "method": config.get("method"),
        "config": config,
        "dataset": {
            # the run's dataset record names it; older configs may lack the name
            "name": dataset.name or config.get("dataset"),
            "num_classes": len(dataset.class_names or []),
            "train_size": dataset.train_size,
            "test_size": dataset.test_size,
            "input_shape": dataset.input_shape,
        },
        "progress": {
            "epochs_done": int(final.get("epoch") or 0) if final else 0,
            "epochs": config.get("epochs"),
            "steps_done": int(final.get("step") or 0) if final else 0,
            "evaluations": len(metrics),
            "seconds": final.get("seconds") if final else None,
        },
        "accuracy": {"best": _acc_record(best), "final": _acc_record(final)},
        "threshold": threshold,
        "snapshot": None if entry is None else {k: entry.get(k) for k in ("step", "epoch", "file", "has_weights", "tags")},
        "snapshot_steps": [int(e["step"]) for e in entries],
        "node_sets": node_sets,
        "layers": layers,
    }
