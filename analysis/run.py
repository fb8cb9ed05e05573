"""Loading a run folder (or one snapshot file) into plain numpy arrays.

:func:`load_run` reads ``run.json``, ``metrics.jsonl`` and ``snapshots/index.json`` eagerly (they
are small) and every ``.npz`` snapshot lazily: an array is read the first time it is asked for and
kept in a per-file cache, so opening an ImageNet-scale run costs milliseconds and a weight matrix is
read only when a page needs it. Snapshots are opened with ``allow_pickle=False``: loading never
executes code and needs no torch.

Every problem with the files (missing, truncated, foreign, inconsistent shapes) raises
:class:`~analysis.errors.RunFormatError`, a :class:`~analysis.errors.UserError` whose one-line
message names the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.errors import RunFormatError
from analysis.runformat import Layer, NodeSet, flat_config, snapshot_shapes

__all__ = ["NodeSet", "Layer", "Snapshot", "Weights", "Run", "load_run", "load_snapshot", "read_run_meta",
           "snapshot_shapes", "flat_config"]


class Snapshot:
    """One snapshot file, read lazily with a per-array cache.

    Parameters
    ----------
    path : path of a ``step_XXXXXXXX.npz`` file.
    step : the training step; parsed from the file name when ``None``.
    shapes : ``{array name: shape}`` that the run's topology demands; an array whose ``.npy``
        header disagrees is refused before its data is read.
    """

    def __init__(self, path: str | Path, step: int | None = None, shapes: dict | None = None):
        self.path = Path(path)
        if step is None:
            step = fmt.snapshot_step(self.path.name)
            step = -1 if step is None else step
        self.step = int(step)
        self.shapes = dict(shapes or {})
        self._npz: rf.NpzFile | None = None
        self._cache: dict[str, np.ndarray] = {}

    def _open(self) -> rf.NpzFile:
        if self._npz is None:
            self._npz = rf.NpzFile(self.path).open()
        return self._npz

    def keys(self) -> list[str]:
        """Names of the arrays stored in the file (``probs__h1``, ``weight__fc1``, ...)."""
        return self._open().files

    def array(self, key: str) -> np.ndarray:
        """The array stored under ``key`` (read once, then cached)."""
        if key not in self._cache:
            # arrays the topology does not describe (budget multipliers) are bounded by its largest
            bound = max((int(np.prod(s)) for s in self.shapes.values()), default=0) if self.shapes else None
            arr = self._open().array(key, self.shapes.get(key), bound)
            if key.startswith(fmt.PROBS_PREFIX):
                rf.check_probs(arr, f"{self.path}: array {key!r}")
            self._cache[key] = arr
        return self._cache[key]

    def _group(self, prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: self.array(k) for k in self.keys() if k.startswith(prefix)}

    @property
    def probs(self) -> dict[str, np.ndarray]:
        """``{node set: (size, clusters)}`` membership probabilities."""
        return self._group(fmt.PROBS_PREFIX)

    @property
    def has_weights(self) -> bool:
        return any(k.startswith(fmt.WEIGHT_PREFIX) for k in self.keys())

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """``{layer: (out, in)}`` weight matrices (empty when not saved at this step)."""
        return self._group(fmt.WEIGHT_PREFIX)

    @property
    def biases(self) -> dict[str, np.ndarray]:
        return self._group(fmt.BIAS_PREFIX)

    @property
    def multipliers(self) -> dict[str, np.ndarray]:
        return self._group(fmt.MULTIPLIER_PREFIX)

    def close(self) -> None:
        if self._npz is not None:
            self._npz.close()
            self._npz = None

    def __repr__(self) -> str:
        return f"Snapshot(step={self.step}, path={str(self.path)!r})"


def load_snapshot(path: str | Path) -> Snapshot:
    """Open one snapshot file on its own (no run folder needed).

    Raises :class:`RunFormatError` when the file is missing or is not a readable ``.npz``.
    """
    snap = Snapshot(path)
    snap.keys()  # open now so that a bad file fails here, naming the file
    return snap


class Weights(dict):
    """``{layer: (W, b)}`` with ``.step``: the snapshot step the weights come from.

    ``b`` is ``None`` when the snapshot holds no bias for that layer.
    """

    def __init__(self, data: dict, step: int):
        super().__init__(data)
        self.step = int(step)


@dataclass
class Run:
    """A loaded run folder. Build with :func:`load_run`."""

    path: Path
    name: str
    config: dict  # flat {option: value} (analysis.runformat.flat_config), whatever shape run.json holds
    dataset: dict
    class_names: list[str]
    wnids: list[str | None] | None
    coarse_names: list[str] | None
    coarse_labels: list[int] | None
    hierarchy: Any
    node_sets: list[NodeSet]
    layers: list[Layer]
    metrics: list[dict]
    snapshot_entries: list[dict]
    steps: list[int]
    meta: dict = field(default_factory=dict)
    record: fmt.RunRecord | None = field(default=None, repr=False)  # run.json as validated
    _snapshots: dict[int, Snapshot] = field(default_factory=dict, repr=False)
    _history: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    # -- topology helpers --------------------------------------------------------------------
    def node_set(self, name: str) -> NodeSet:
        for ns in self.node_sets:
            if ns.name == name:
                return ns
        raise RunFormatError(f"{self.path}: no node set {name!r} (have {[n.name for n in self.node_sets]})")

    def layer(self, name: str) -> Layer:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise RunFormatError(f"{self.path}: no layer {name!r} (have {[lay.name for lay in self.layers]})")

    @property
    def chain(self) -> list[str]:
        """Node-set names in network order (trunk first), following the Blockout layers."""
        return node_set_chain(self.node_sets, self.layers)

    @property
    def class_set(self) -> NodeSet | None:
        """The node set of role ``classes`` (the classifier's output nodes), if any."""
        for ns in self.node_sets:
            if ns.role == "classes":
                return ns
        return None

    @property
    def classifier(self) -> Layer | None:
        """The classifier layer (role ``classifier``, or else the last layer)."""
        for lay in self.layers:
            if lay.role == "classifier":
                return lay
        return self.layers[-1] if self.layers else None

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot(self, step: int | None = None) -> Snapshot:
        """The snapshot at ``step`` (``None``: the last one). Unknown steps are an error."""
        if not self.steps:
            raise RunFormatError(f"{self.path} has no snapshots")
        if step is None:
            step = self.steps[-1]
        step = int(step)
        if step not in self._snapshots:
            raise RunFormatError(
                f"{self.path}: no snapshot at step {step} (have {self.steps[0]}..{self.steps[-1]})"
            )
        return self._snapshots[step]

    def probs(self, step: int | None = None) -> dict[str, np.ndarray]:
        """``{node set: (n, k)}`` probabilities at ``step`` (``None``: last snapshot).

        Shapes are checked against the topology; a mismatch names the snapshot file."""
        snap = self.snapshot(step)
        out = snap.probs
        for name, arr in out.items():
            ns = next((n for n in self.node_sets if n.name == name), None)
            if ns is not None and arr.shape != (ns.size, ns.clusters):
                raise RunFormatError(
                    f"{snap.path}: probs of {name!r} have shape {arr.shape}, expected {(ns.size, ns.clusters)}"
                )
        return out

    def weight_steps(self) -> list[int]:
        """Snapshot steps that hold weights."""
        return [e["step"] for e in self.snapshot_entries if e.get("has_weights")]

    def weights(self, step: int | None = None) -> Weights:
        """``{layer: (W (out, in), b (out,) or None)}`` from the snapshot with weights nearest to
        ``step`` (``None``: the last one with weights; ties go to the earlier step). The step
        actually used is ``result.step``."""
        ws = self.weight_steps()
        if not ws:
            raise RunFormatError(f"{self.path}: no snapshot holds weights")
        if step is None:
            used = ws[-1]
        else:
            used = min(ws, key=lambda s: (abs(s - int(step)), s))
        snap = self.snapshot(used)
        w, b = snap.weights, snap.biases
        return Weights({name: (w[name], b.get(name)) for name in w}, used)

    def multipliers(self, step: int | None = None) -> dict[str, np.ndarray]:
        """Budget multipliers saved at ``step`` (empty dict when none)."""
        return self.snapshot(step).multipliers

    def probs_history(self, name: str) -> np.ndarray:
        """``(len(steps), n, k)`` probabilities of node set ``name`` over all snapshots (cached)."""
        if name not in self._history:
            self.node_set(name)
            key = fmt.PROBS_PREFIX + name
            self._history[name] = np.stack([self._snapshots[s].array(key) for s in self.steps])
        return self._history[name]

    @property
    def last_step(self) -> int | None:
        return self.steps[-1] if self.steps else None


def node_set_chain(node_sets: list[NodeSet], layers: list[Layer]) -> list[str]:
    """Order node sets along the Blockout layers (``in_set -> out_set``), trunk first.

    >>> ns = [NodeSet("h", 4, 2), NodeSet("t", 3, 2, role="trunk"), NodeSet("c", 2, 2, role="classes")]
    >>> ls = [Layer("fc2", "h", "c", 4, 2), Layer("fc1", "t", "h", 3, 4)]
    >>> node_set_chain(ns, ls)
    ['t', 'h', 'c']
    """
    nxt = {lay.in_set: lay.out_set for lay in layers if lay.in_set and lay.out_set}
    targets = set(nxt.values())
    starts = [n.name for n in node_sets if n.name in nxt and n.name not in targets]
    if not starts:
        return [n.name for n in node_sets]
    chain = [starts[0]]
    while chain[-1] in nxt and nxt[chain[-1]] not in chain:
        chain.append(nxt[chain[-1]])
    return chain


# ---------------------------------------------------------------------------------------------
# loading


def read_run_meta(path: str | Path) -> tuple[Path, dict, list[NodeSet], list[Layer]]:
    """``run.json`` of the run folder ``path``, validated: ``(folder, meta, node sets, layers)``.

    The validation is :meth:`analysis.runformat.RunRecord.from_json` (format, field types,
    topology sizes against :mod:`analysis.limits`, layers against their node sets), so no later
    reader allocates from an unchecked number. ``meta`` is the record as JSON: ``meta["config"]``
    (as stored: read values through :func:`flat_config`) and ``meta["dataset"]`` are always dicts.
    """
    folder = fmt.locate_run(path)
    record = fmt.read_run(folder)
    return folder, record.to_json(), list(record.topology.node_sets), list(record.topology.layers)


def load_run(path: str | Path) -> Run:
    """Open a run folder.

    Parameters
    ----------
    path : the run folder (holding ``run.json``), or its ``run.json``.

    Returns
    -------
    Run
        Topology and metrics parsed; snapshots indexed and opened lazily.

    Raises
    ------
    RunFormatError
        One line naming the file for anything wrong: ``run.json`` missing, not JSON, not a
        Blockout run or of the wrong types; sizes over the limits of :mod:`analysis.limits`; an
        index entry that is malformed, names a file outside the run folder or a missing one; a
        node set's size that disagrees with a layer.
    """
    path = fmt.locate_run(path)
    record = fmt.read_run(path)
    node_sets, layers = list(record.topology.node_sets), list(record.topology.layers)
    ds = record.dataset.to_json()
    class_names = list(record.dataset.class_names or [])
    if not class_names:
        cs = record.topology.class_set
        class_names = [f"class {i}" for i in range(cs.size if cs else 0)]

    snap_dir = rf.confine(path, fmt.SNAPSHOT_DIR, "snapshots folder")
    index = snap_dir / fmt.SNAPSHOT_INDEX
    entries = fmt.snapshot_entries(path)
    shapes = snapshot_shapes(node_sets, layers)
    snapshots: dict[int, Snapshot] = {}
    for e in entries:
        f = rf.confine(snap_dir, e["file"], f"snapshot file of step {e['step']}")
        if not f.is_file():
            raise RunFormatError(f"snapshot listed in {index} not found: {e['file']}")
        snapshots[e["step"]] = Snapshot(f, e["step"], shapes)
    for e in entries:
        if e.get("has_weights") is None:
            e["has_weights"] = snapshots[e["step"]].has_weights

    return Run(
        path=path,
        name=rf.safe_name(record.name, fallback=rf.safe_name(path.name)),
        config=flat_config(record.config),
        dataset=ds,
        class_names=class_names,
        wnids=record.dataset.wnids,
        coarse_names=record.dataset.coarse_names,
        coarse_labels=record.dataset.coarse_labels,
        hierarchy=record.dataset.hierarchy,
        node_sets=node_sets,
        layers=layers,
        metrics=fmt.read_metrics(path),
        snapshot_entries=entries,
        steps=sorted(snapshots),
        meta={"created": record.created, "versions": record.versions, "format_version": record.format_version},
        record=record,
        _snapshots=snapshots,
    )
