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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis import runfolder as rf
from analysis.errors import RunFormatError
from analysis.limits import hint, limit

__all__ = ["NodeSet", "Layer", "Snapshot", "Weights", "Run", "load_run", "load_snapshot", "read_run_meta",
           "snapshot_shapes"]

_STEP_RE = re.compile(r"^step_(\d+)\.npz$")


@dataclass(frozen=True)
class NodeSet:
    """One set of nodes sharing a membership matrix ``P`` of shape ``(size, clusters)``."""

    name: str
    size: int
    clusters: int
    trainable: bool = True
    role: str = "hidden"  # "trunk" | "hidden" | "classes"
    membership: str | None = None


@dataclass(frozen=True)
class Layer:
    """A linear layer from node set ``in_set`` to ``out_set`` (``None`` for a plain layer)."""

    name: str
    in_set: str | None
    out_set: str | None
    in_features: int
    out_features: int
    mask: str | None = None  # "count" | "union" | None
    mode: str | None = None
    role: str = "hidden"  # "hidden" | "classifier"


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
            m = _STEP_RE.match(self.path.name)
            step = int(m.group(1)) if m else -1
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
            if key.startswith(rf.PROBS_PREFIX):
                rf.check_probs(arr, f"{self.path}: array {key!r}")
            self._cache[key] = arr
        return self._cache[key]

    def _group(self, prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: self.array(k) for k in self.keys() if k.startswith(prefix)}

    @property
    def probs(self) -> dict[str, np.ndarray]:
        """``{node set: (size, clusters)}`` membership probabilities."""
        return self._group(rf.PROBS_PREFIX)

    @property
    def has_weights(self) -> bool:
        return any(k.startswith(rf.WEIGHT_PREFIX) for k in self.keys())

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """``{layer: (out, in)}`` weight matrices (empty when not saved at this step)."""
        return self._group(rf.WEIGHT_PREFIX)

    @property
    def biases(self) -> dict[str, np.ndarray]:
        return self._group(rf.BIAS_PREFIX)

    @property
    def multipliers(self) -> dict[str, np.ndarray]:
        return self._group(rf.MULTIPLIER_PREFIX)

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
    config: dict
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
            key = rf.PROBS_PREFIX + name
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


def _req(obj: dict, key: str, typ, where: Path):
    if not isinstance(obj, dict) or key not in obj:
        raise RunFormatError(f"{where}: missing field {key!r}")
    val = obj[key]
    if typ is not None and (not isinstance(val, typ) or (typ is int and isinstance(val, bool))):
        raise RunFormatError(f"{where}: field {key!r} should be {typ.__name__}, got {type(val).__name__}")
    return val


def _opt_str(d: dict, key: str, where: Path, what: str) -> str | None:
    val = d.get(key)
    if val is not None and not isinstance(val, str):
        raise RunFormatError(f"{where}: {what} field {key!r} should be a string or null, got {val!r:.40}")
    return val


def _count(d: dict, key: str, where: Path, what: str, lo: int, cap: str) -> int:
    val = _req(d, key, int, where)
    if val < lo or val > limit(cap):
        raise RunFormatError(f"{where}: {what} has {key} = {val}; allowed {lo}..{limit(cap)} {hint(cap)}"
                             if val > limit(cap) else f"{where}: {what} has {key} = {val}, must be >= {lo}")
    return val


def _parse_node_set(d: Any, where: Path) -> NodeSet:
    if not isinstance(d, dict):
        raise RunFormatError(f"{where}: a node set entry is not an object: {d!r:.60}")
    name = _req(d, "name", str, where)
    what = f"node set {name!r}"
    size = _count(d, "size", where, what, 0, "max_nodes")
    k = _count(d, "clusters", where, what, 1, "max_clusters")
    if size * k * 8 > limit("max_array_bytes"):
        raise RunFormatError(f"{where}: {what} declares {size} x {k} memberships {hint('max_array_bytes')}")
    trainable = d.get("trainable", True)
    if not isinstance(trainable, bool):
        raise RunFormatError(f"{where}: {what} field 'trainable' should be true or false, got {trainable!r:.40}")
    return NodeSet(name=name, size=size, clusters=k, trainable=trainable,
                   role=_opt_str(d, "role", where, what) or "hidden",
                   membership=_opt_str(d, "membership", where, what))


def _parse_layer(d: Any, where: Path) -> Layer:
    if not isinstance(d, dict):
        raise RunFormatError(f"{where}: a layer entry is not an object: {d!r:.60}")
    name = _req(d, "name", str, where)
    what = f"layer {name!r}"
    fin = _count(d, "in_features", where, what, 0, "max_nodes")
    fout = _count(d, "out_features", where, what, 0, "max_nodes")
    if fin * fout * 4 > limit("max_array_bytes"):
        raise RunFormatError(f"{where}: {what} declares a {fout} x {fin} weight {hint('max_array_bytes')}")
    return Layer(name=name, in_set=_opt_str(d, "in_set", where, what), out_set=_opt_str(d, "out_set", where, what),
                 in_features=fin, out_features=fout, mask=_opt_str(d, "mask", where, what),
                 mode=_opt_str(d, "mode", where, what), role=_opt_str(d, "role", where, what) or "hidden")


def snapshot_shapes(node_sets: list[NodeSet], layers: list[Layer]) -> dict[str, tuple[int, ...]]:
    """The shape each snapshot array must have, from the topology.

    >>> snapshot_shapes([NodeSet("h", 4, 2)], [Layer("fc", None, "h", 3, 4)])
    {'probs__h': (4, 2), 'weight__fc': (4, 3), 'bias__fc': (4,)}
    """
    out: dict[str, tuple[int, ...]] = {}
    for ns in node_sets:
        out[rf.PROBS_PREFIX + ns.name] = (ns.size, ns.clusters)
    for lay in layers:
        out[rf.WEIGHT_PREFIX + lay.name] = (lay.out_features, lay.in_features)
        out[rf.BIAS_PREFIX + lay.name] = (lay.out_features,)
    return out


def _str_list(val: Any, where: Path, key: str, nullable_items: bool = False) -> list | None:
    if val is None:
        return None
    ok = isinstance(val, list) and all(isinstance(v, str) or (nullable_items and v is None) for v in val)
    if not ok:
        raise RunFormatError(f"{where}: dataset field {key!r} should be a list of strings, got {val!r:.60}")
    if len(val) > limit("max_classes"):
        raise RunFormatError(f"{where}: dataset field {key!r} lists {len(val)} entries {hint('max_classes')}")
    return list(val)


def read_run_meta(path: str | Path) -> tuple[Path, dict, list[NodeSet], list[Layer]]:
    """``run.json`` of the run folder ``path``, validated: ``(folder, meta, node sets, layers)``.

    Checks the format, the types of every field the readers use, the topology's sizes against
    the limits of :mod:`analysis.limits` and the layers against their node sets, so that no
    later reader allocates from an unchecked number. ``meta["config"]`` and
    ``meta["dataset"]`` are always dicts afterwards.
    """
    path = Path(path)
    if path.name == rf.RUN_JSON and path.is_file():
        path = path.parent
    if not path.exists():
        raise RunFormatError(f"run folder not found: {path}")
    if not path.is_dir():
        raise RunFormatError(f"not a run folder (expected a folder with {rf.RUN_JSON}): {path}")
    run_json = rf.confine(path, rf.RUN_JSON, rf.RUN_JSON)
    meta = rf.read_json(run_json, f"{rf.RUN_JSON} of run")
    if not isinstance(meta, dict) or meta.get("format") != rf.FORMAT:
        raise RunFormatError(f"{run_json} is not a Blockout run (no \"format\": \"{rf.FORMAT}\")")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > rf.FORMAT_VERSION:
        raise RunFormatError(
            f"{run_json} has format_version {version!r:.20}; this version reads up to {rf.FORMAT_VERSION}"
        )
    for key in ("config", "dataset"):
        if meta.get(key) is None:
            meta[key] = {}
        elif not isinstance(meta[key], dict):
            raise RunFormatError(f"{run_json}: {key!r} should be an object, got {type(meta[key]).__name__}")
    if meta.get("name") is not None and not isinstance(meta["name"], str):
        raise RunFormatError(f"{run_json}: 'name' should be a string, got {meta['name']!r:.40}")
    topo = _req(meta, "topology", dict, run_json)
    node_sets = [_parse_node_set(d, run_json) for d in _req(topo, "node_sets", list, run_json)]
    layers = [_parse_layer(d, run_json) for d in _req(topo, "layers", list, run_json)]
    for kind, names in (("node set", [n.name for n in node_sets]), ("layer", [lay.name for lay in layers])):
        dup = sorted({n for n in names if names.count(n) > 1}) if len(names) < 10_000 else []
        if dup or len(names) >= 10_000:
            raise RunFormatError(f"{run_json}: {kind} names must be unique and fewer than 10000 "
                                 f"(repeated: {dup[:3]})")
    sizes = {n.name: n.size for n in node_sets}
    for lay in layers:
        for side, feat in ((lay.in_set, lay.in_features), (lay.out_set, lay.out_features)):
            if side is not None and side not in sizes:
                raise RunFormatError(f"{run_json}: layer {lay.name!r} names unknown node set {side!r}")
            if side is not None and sizes[side] != feat:
                raise RunFormatError(
                    f"{run_json}: layer {lay.name!r} has {feat} features but node set {side!r} has {sizes[side]}"
                )
    ds = meta["dataset"]
    where = run_json
    names = _str_list(ds.get("class_names"), where, "class_names") or []
    _str_list(ds.get("wnids"), where, "wnids", nullable_items=True)
    _str_list(ds.get("coarse_names"), where, "coarse_names")
    labels = ds.get("coarse_labels")
    if labels is not None and not (isinstance(labels, list) and all(rf._is_int(v) for v in labels)):
        raise RunFormatError(f"{where}: dataset field 'coarse_labels' should be a list of integers, got {labels!r:.60}")
    if ds.get("hierarchy") is not None and not isinstance(ds["hierarchy"], (dict, list)):
        raise RunFormatError(f"{where}: dataset field 'hierarchy' should be an object, a list or null")
    cs = next((n for n in node_sets if n.role == "classes"), None)
    if names and cs is not None and len(names) != cs.size:
        raise RunFormatError(f"{where}: {len(names)} class names but the class node set {cs.name!r} has "
                             f"{cs.size} nodes")
    if cs is not None and cs.size > limit("max_classes"):
        raise RunFormatError(f"{where}: the class node set {cs.name!r} has {cs.size} nodes {hint('max_classes')}")
    return path, meta, node_sets, layers


def _scan_snapshots(snap_dir: Path) -> list[dict]:
    """Entries for a snapshots folder without an index (has_weights decided lazily)."""
    out = []
    if snap_dir.is_dir():
        for p in snap_dir.iterdir():
            m = _STEP_RE.match(p.name)
            if m:
                out.append({"step": int(m.group(1)), "file": p.name, "has_weights": None, "tags": []})
                if len(out) > limit("max_snapshots"):
                    raise RunFormatError(f"{snap_dir} holds too many snapshots {hint('max_snapshots')}")
    return sorted(out, key=lambda e: e["step"])


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
    path, meta, node_sets, layers = read_run_meta(path)
    ds = meta["dataset"]
    class_names = list(ds.get("class_names") or [])
    if not class_names:
        cs = next((n for n in node_sets if n.role == "classes"), None)
        class_names = [f"class {i}" for i in range(cs.size if cs else 0)]

    snap_dir = rf.confine(path, rf.SNAPSHOT_DIR, "snapshots folder")
    index = snap_dir / rf.SNAPSHOT_INDEX
    if index.exists():
        entries = rf.iter_snapshot_entries(path)
    else:
        entries = _scan_snapshots(snap_dir)
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
        name=rf.safe_name(meta.get("name"), fallback=rf.safe_name(path.name)),
        config=meta["config"],
        dataset=ds,
        class_names=class_names,
        wnids=ds.get("wnids"),
        coarse_names=ds.get("coarse_names"),
        coarse_labels=ds.get("coarse_labels"),
        hierarchy=ds.get("hierarchy"),
        node_sets=node_sets,
        layers=layers,
        metrics=rf.read_jsonl(path / rf.METRICS, root=path),
        snapshot_entries=entries,
        steps=sorted(snapshots),
        meta={k: meta.get(k) for k in ("created", "versions", "format_version")},
        _snapshots=snapshots,
    )
