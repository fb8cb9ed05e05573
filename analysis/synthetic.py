"""Synthetic run folders with a planted two-level hierarchy (for tests, benchmarks, the dashboard).

The plant, for ``k`` clusters split into ``groups`` super-groups (contiguous cluster ranges):

* trunk: every node in every cluster (the shared stem);
* first hidden set: node ``i`` belongs to all clusters of super-group ``i mod groups`` — so the
  first refinement of the branch tree splits the clusters into the super-groups;
* later hidden sets: node ``i`` belongs to cluster ``i mod k`` only — the second refinement splits
  every super-group into its clusters;
* classes: class ``c`` belongs to cluster ``c * k // classes`` (contiguous runs of classes), and its
  coarse label is that cluster's super-group.

The branch tree of the last snapshot at ``tau = 0.5`` is therefore root -> super-groups ->
clusters -> classes. Probabilities sharpen over the snapshots: ``P_t = 0.5 + (T - 0.5) a_t + noise``
with ``a_t`` rising linearly from 0.1 to 0.9 (``T`` the 0/1 plant), clipped to ``[0.001, 0.999]``.
Weights follow the live mask (entries outside it are scaled by ``leak``); classifier rows of classes
in the same cluster share a template, so the weight-induced hierarchy recovers the clusters.
Weights are stored at the last snapshot and at a middle one tagged ``best``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.errors import UserError

__all__ = ["planted_structure", "make_synthetic_run"]


def planted_structure(trunk: int, hidden: Sequence[int], classes: int, clusters: int, groups: int) -> dict:
    """The 0/1 plant ``{node set: (n, k) float32}`` plus ``cluster_of_class`` and ``group_of_cluster``.

    >>> s = planted_structure(2, [4, 4], 4, 4, 2)
    >>> s["probs"]["h1"].astype(int).tolist()
    [[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]]
    >>> s["cluster_of_class"].tolist(), s["group_of_cluster"].tolist()
    ([0, 1, 2, 3], [0, 0, 1, 1])
    """
    k = clusters
    group_of_cluster = np.repeat(np.arange(groups), [len(a) for a in np.array_split(np.arange(k), groups)])
    probs = {"trunk": np.ones((trunk, k), np.float32)}
    for j, n in enumerate(hidden):
        T = np.zeros((n, k), np.float32)
        idx = np.arange(n)
        if j == 0 and len(hidden) > 1:
            T[:] = group_of_cluster[None, :] == (idx % groups)[:, None]
        else:
            T[idx, idx % k] = 1.0
        probs[f"h{j + 1}"] = T
    cluster_of_class = (np.arange(classes) * k) // classes
    T = np.zeros((classes, k), np.float32)
    T[np.arange(classes), cluster_of_class] = 1.0
    probs["classes"] = T
    return {"probs": probs, "cluster_of_class": cluster_of_class, "group_of_cluster": group_of_cluster}


def make_synthetic_run(
    path: str | Path,
    *,
    trunk: int = 32,
    hidden: Sequence[int] = (32, 32),
    classes: int = 20,
    clusters: int = 4,
    groups: int = 2,
    n_snapshots: int = 5,
    noise: float = 0.05,
    leak: float = 0.1,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    wnids: Sequence[str | None] | None = None,
    steps_per_snapshot: int = 100,
    mask: str = "count",
    dtype=np.float32,
) -> Path:
    """Write a complete run folder (no ``train_state.pt``) with a planted hierarchy; return its path.

    Parameters
    ----------
    path : folder to create (its parent is created too; existing files are overwritten).
    trunk, hidden, classes : node-set sizes; ``hidden`` needs at least one entry.
    clusters : ``k``; groups : number of super-groups (``1 <= groups <= k``).
    n_snapshots : snapshots written (>= 1); noise : std of the Gaussian noise on ``P``.
    leak : scale of weights outside the planted live mask.
    class_names, wnids : optional per-class names / WordNet ids (default ``class_000``...).
    """
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1 or trunk < 1 or classes < 1:
        raise UserError(f"sizes must be positive with at least one hidden set: trunk={trunk}, hidden={hidden}, classes={classes}")
    if not (1 <= clusters <= 62):
        raise UserError(f"clusters must be within 1..62, got {clusters}")
    if not (1 <= groups <= clusters):
        raise UserError(f"groups must be within 1..clusters={clusters}, got {groups}")
    if n_snapshots < 1:
        raise UserError(f"n_snapshots must be >= 1, got {n_snapshots}")
    if class_names is not None and len(class_names) != classes:
        raise UserError(f"class_names has {len(class_names)} entries for {classes} classes")
    if mask not in ("count", "union"):
        raise UserError(f"mask must be 'count' or 'union', got {mask!r}")
    rng = np.random.default_rng(seed)
    path = Path(path)
    (path / fmt.SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
    plant = planted_structure(trunk, hidden, classes, clusters, groups)
    T = plant["probs"]
    chain = list(T)
    k = clusters
    names = list(class_names) if class_names is not None else [f"class_{i:03d}" for i in range(classes)]
    coarse_labels = plant["group_of_cluster"][plant["cluster_of_class"]].tolist()

    node_sets = [
        fmt.NodeSet(name=n, size=int(T[n].shape[0]), clusters=k, trainable=n != "trunk",
                    role="trunk" if n == "trunk" else ("classes" if n == "classes" else "hidden"),
                    membership="shared" if n == "trunk" else "bernoulli")
        for n in chain
    ]
    layers = [
        fmt.Layer(name=f"fc{j + 1}", in_set=a, out_set=b, in_features=int(T[a].shape[0]),
                  out_features=int(T[b].shape[0]), mask=mask, mode="hard",
                  role="classifier" if b == "classes" else "hidden")
        for j, (a, b) in enumerate(zip(chain[:-1], chain[1:]))
    ]
    dataset = fmt.Dataset(
        name="synthetic", class_names=names, wnids=list(wnids) if wnids is not None else None,
        coarse_names=[f"group_{g}" for g in range(groups)], coarse_labels=coarse_labels,
        hierarchy=[{"name": f"group_{g}", "children": [names[c] for c in range(classes) if coarse_labels[c] == g]}
                   for g in range(groups)],
        input_shape=[trunk], train_size=0, test_size=0)
    config = {"synthetic": True, "seed": seed, "clusters": k, "groups": groups, "noise": noise,
              "hidden": hidden, "trunk": trunk, "mask": mask}
    record = fmt.RunRecord.new(path.name, config, dataset, fmt.Topology(node_sets=node_sets, layers=layers),
                               versions={"synthetic": 1})
    fmt.write_run(path, record)

    # Weights (out, in): Gaussian, damped outside the planted live mask. Classifier rows share a
    # per-cluster template so that clustering the class rows finds the planted clusters.
    weights, biases = {}, {}
    for lay in layers:
        a, b = lay.in_set, lay.out_set
        n_out, n_in = lay.out_features, lay.in_features
        live = (T[b] @ T[a].T) > 0  # (out, in)
        if b == "classes":
            templates = rng.standard_normal((k, n_in)).astype(np.float32)
            W = templates[plant["cluster_of_class"]] + 0.5 * rng.standard_normal((n_out, n_in)).astype(np.float32)
        else:
            W = rng.standard_normal((n_out, n_in), dtype=np.float32)
        W *= np.where(live, np.float32(1.0), np.float32(leak))
        W *= np.float32(1.0 / np.sqrt(n_in))
        weights[lay.name] = W.astype(dtype, copy=False)
        biases[lay.name] = np.zeros(n_out, dtype)

    best = (n_snapshots - 1) // 2 if n_snapshots > 1 else 0
    entries = []
    metric_lines = []
    for t in range(n_snapshots):
        a_t = 0.1 + 0.8 * (t / (n_snapshots - 1) if n_snapshots > 1 else 1.0)
        probs = {}
        for n in chain:
            P = 0.5 + (T[n] - 0.5) * a_t + noise * rng.standard_normal(T[n].shape).astype(np.float32)
            probs[n] = np.clip(P, 0.001, 0.999).astype(np.float32)
        step = (t + 1) * steps_per_snapshot
        with_w = t in (best, n_snapshots - 1)
        arrays = fmt.snapshot_arrays(probs, weights if with_w else None, biases if with_w else None)
        fname = fmt.snapshot_filename(step)
        rf.save_npz(path / fmt.SNAPSHOT_DIR / fname, arrays)
        tags = (["best"] if t == best else []) + (["last"] if t == n_snapshots - 1 else [])
        entries.append(fmt.SnapshotEntry(step=step, epoch=t + 1, file=fname, has_weights=with_w, tags=tags))
        metric_lines.append(fmt.MetricsRecord(**{
            "step": step, "epoch": t + 1, "train_loss": float(2.0 / (t + 1)), "train_acc": float(a_t),
            "test_loss": float(2.2 / (t + 1)), "test_acc": float(0.9 * a_t), "lr": 0.1, "seconds": float(t),
            "probs": {n: {"mean": float(p.mean()), "min": float(p.min()), "max": float(p.max())} for n, p in probs.items()},
        }))
    fmt.write_metrics(path, metric_lines)
    fmt.write_snapshot_index(path, entries)
    return path
