"""The run-folder contract: typed records for every file of a run folder, one validation path.

A run folder holds::

    run.json                 RunRecord: format, name, created, versions, config, dataset, topology, runtime
    metrics.jsonl            one MetricsRecord per line (one per evaluation)
    snapshots/index.json     {"snapshots": [SnapshotEntry, ...]}
    snapshots/step_XXXXXXXX.npz   probs__<node set> (size, clusters), weight__<layer> (out, in),
                             bias__<layer> (out,), multiplier__<layer> (budget multipliers)
    train_state.pt           resume state of our trainer (torch; never read here)

This module is the only place that knows these shapes: :class:`blockout.RunLogger` (what our
trainer and users' loops write through) and its file writer :class:`blockout.runwriter.RunWriter`,
the synthetic runs of the
tests (:mod:`analysis.synthetic`) and every reader (:func:`analysis.run.load_run`, the summary, the
dashboard, the CLI) build and parse the files through the records below. Each record has
``to_json()`` and ``from_json(obj, where)``; ``from_json`` is the one validation path, used on
reading *and* before writing, so a writer cannot produce a folder the readers refuse.

Reading stays bounded and confined: files are read with :func:`analysis.runfolder.read_json` /
:func:`~analysis.runfolder.read_jsonl` (size, nesting, duplicate keys, NaN refused) inside the
run folder (:func:`~analysis.runfolder.confine`), and every size is checked against
:mod:`analysis.limits` before a reader allocates from it. Every error is one
:class:`~analysis.errors.RunFormatError` line naming the file. Writing is atomic.

The README's "The run folder" tables are rendered from the field metadata of these records
(:func:`markdown_tables`; ``python -m analysis.runformat`` prints them) and a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from analysis import runfolder as rf
from analysis.errors import RunFormatError
from analysis.limits import hint, limit

__all__ = [
    "FORMAT", "FORMAT_VERSION", "RUN_JSON", "METRICS", "SNAPSHOT_DIR", "SNAPSHOT_INDEX", "TRAIN_STATE",
    "PROBS_PREFIX", "WEIGHT_PREFIX", "BIAS_PREFIX", "MULTIPLIER_PREFIX", "CONFIG_SECTIONS",
    "NodeSet", "Layer", "Topology", "Dataset", "RunRecord", "MetricsRecord", "SnapshotEntry",
    "flat_config", "snapshot_filename", "snapshot_step", "snapshot_arrays", "split_snapshot", "snapshot_shapes",
    "locate_run", "read_run", "write_run", "read_metrics", "append_metrics", "write_metrics",
    "read_snapshot_index", "snapshot_entries", "write_snapshot_index", "check_metrics_line", "is_run_folder", "find_runs",
    "run_is_complete", "documented_fields", "markdown_tables", "readme_with_tables",
]

# ---------------------------------------------------------------------------------------------
# names

FORMAT = "blockout-run"
FORMAT_VERSION = 1
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_INDEX = "index.json"
TRAIN_STATE = "train_state.pt"

PROBS_PREFIX = "probs__"
WEIGHT_PREFIX = "weight__"
BIAS_PREFIX = "bias__"
MULTIPLIER_PREFIX = "multiplier__"

_STEP_RE = re.compile(r"^step_(\d+)\.npz$")


def snapshot_filename(step: int) -> str:
    """File name of the snapshot taken at ``step``.

    >>> snapshot_filename(42)
    'step_00000042.npz'
    """
    return f"step_{int(step):08d}.npz"


def snapshot_step(name: str) -> int | None:
    """The step a snapshot file name encodes, or None for any other name.

    >>> snapshot_step("step_00000042.npz"), snapshot_step("notes.txt")
    (42, None)
    """
    m = _STEP_RE.match(name)
    return int(m.group(1)) if m else None


_PREFIXES = (("probs", PROBS_PREFIX), ("weight", WEIGHT_PREFIX), ("bias", BIAS_PREFIX),
             ("multiplier", MULTIPLIER_PREFIX))


def split_snapshot(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Group snapshot arrays by kind.

    >>> out = split_snapshot({"probs__h1": np.zeros((2, 3)), "weight__fc1": np.zeros((2, 2))})
    >>> sorted(out["probs"]), sorted(out["weight"]), out["bias"]
    (['h1'], ['fc1'], {})
    """
    groups: dict[str, dict[str, np.ndarray]] = {kind: {} for kind, _ in _PREFIXES}
    for key, value in arrays.items():
        for kind, prefix in _PREFIXES:
            if key.startswith(prefix):
                groups[kind][key[len(prefix):]] = value
                break
    return groups


def snapshot_arrays(
    probs: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None = None,
    biases: Mapping[str, np.ndarray] | None = None,
    multipliers: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Inverse of :func:`split_snapshot`: prefix the arrays for saving.

    >>> sorted(snapshot_arrays({"h": np.zeros((2, 2))}, {"fc": np.zeros((2, 2))}))
    ['probs__h', 'weight__fc']
    """
    out: dict[str, np.ndarray] = {}
    for prefix, group in ((PROBS_PREFIX, probs), (WEIGHT_PREFIX, weights or {}), (BIAS_PREFIX, biases or {}),
                          (MULTIPLIER_PREFIX, multipliers or {})):
        for name, arr in group.items():
            out[prefix + name] = np.asarray(arr)
    return out


# ---------------------------------------------------------------------------------------------
# field helpers: every record field carries its documentation (rendered into the README)


def _f(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Any = None, omit_none: bool = False,
       compare: bool = True) -> Any:
    """A dataclass field with ``doc`` (README text) and ``omit_none`` (left out of the JSON when None)."""
    meta = {"doc": doc, "omit_none": omit_none}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, compare=compare)
    return field(default=default, metadata=meta, compare=compare)


def _extra() -> Any:
    # keys a newer writer added: kept through a read -> write, never compared or hashed
    return field(default_factory=dict, compare=False, repr=False, metadata={"doc": None})


def _json_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("doc") is not None]


def _to_json(rec: Any, **override: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in _json_fields(type(rec)):
        value = override[f.name] if f.name in override else getattr(rec, f.name)
        if value is None and f.metadata.get("omit_none"):
            continue
        out[f.name] = value
    for key, value in rec.extra.items():
        out.setdefault(key, value)
    return out


def _extras(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in _json_fields(cls)}
    return {k: v for k, v in obj.items() if k not in known}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _req(obj: Any, key: str, typ, where: Any):
    if not isinstance(obj, dict) or key not in obj:
        raise RunFormatError(f"{where}: missing field {key!r}")
    val = obj[key]
    if typ is not None and (not isinstance(val, typ) or (typ is int and isinstance(val, bool))):
        raise RunFormatError(f"{where}: field {key!r} should be {typ.__name__}, got {type(val).__name__}")
    return val


def _opt_str(d: dict, key: str, where: Any, what: str) -> str | None:
    val = d.get(key)
    if val is not None and not isinstance(val, str):
        raise RunFormatError(f"{where}: {what} field {key!r} should be a string or null, got {val!r:.40}")
    return val


def _opt_number(d: dict, key: str, where: Any, what: str) -> float | int | None:
    val = d.get(key)
    if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
        raise RunFormatError(f"{where}: {what} field {key!r} should be a number or null, got {val!r:.40}")
    return val


def _count(d: dict, key: str, where: Any, what: str, lo: int, cap: str) -> int:
    val = _req(d, key, int, where)
    if val < lo or val > limit(cap):
        raise RunFormatError(f"{where}: {what} has {key} = {val}; allowed {lo}..{limit(cap)} {hint(cap)}"
                             if val > limit(cap) else f"{where}: {what} has {key} = {val}, must be >= {lo}")
    return val


# ---------------------------------------------------------------------------------------------
# run.json: topology


@dataclass(frozen=True)
class NodeSet:
    """One set of nodes sharing a membership matrix ``P`` of shape ``(size, clusters)``."""

    name: str = _f(doc="unique name (`trunk`, `h1`, ..., `classes`)")
    size: int = _f(doc="number of nodes")
    clusters: int = _f(doc="number of clusters k")
    trainable: bool = _f(True, "whether its memberships are learned")
    role: str = _f("hidden", "`trunk`, `hidden` or `classes`")  # "trunk" | "hidden" | "classes"
    membership: str | None = _f(None, "membership kind: `bernoulli` (the paper's) or `categorical`")
    init: str | None = _f(None, "how the memberships started (null when not recorded)")
    extra: dict = _extra()

    def to_json(self) -> dict[str, Any]:
        """The node-set object of ``run.json``."""
        return _to_json(self)

    @classmethod
    def from_json(cls, d: Any, where: Any = RUN_JSON) -> "NodeSet":
        """Validate one node-set object (sizes bounded by :mod:`analysis.limits`)."""
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
        return cls(name=name, size=size, clusters=k, trainable=trainable,
                   role=_opt_str(d, "role", where, what) or "hidden",
                   membership=_opt_str(d, "membership", where, what), init=_opt_str(d, "init", where, what),
                   extra=_extras(cls, d))


@dataclass(frozen=True)
class Layer:
    """A linear layer from node set ``in_set`` to ``out_set`` (``None`` for a plain layer)."""

    name: str = _f(doc="unique name (`fc1`, ..., `classifier`)")
    in_set: str | None = _f(doc="node set it reads (null for a plain layer)")
    out_set: str | None = _f(doc="node set it writes (null for a plain layer)")
    in_features: int = _f(doc="inputs (the size of `in_set`)")
    out_features: int = _f(doc="outputs (the size of `out_set`)")
    mask: str | None = _f(None, "Blockout mask: `count` or `union` (null: plain layer)")  # "count" | "union" | None
    mode: str | None = _f(None, "`hard` (sampled masks) or `soft` (their expectation); null: plain layer")
    mask_scale: float | None = _f(None, "constant multiplying the mask (null: the model's default)")
    role: str = _f("hidden", "`hidden` or `classifier`")  # "hidden" | "classifier"
    dropout: float | None = _f(None, "dropout p feeding a plain layer (left out when none)", omit_none=True)
    extra: dict = _extra()

    def to_json(self) -> dict[str, Any]:
        """The layer object of ``run.json``."""
        return _to_json(self)

    @classmethod
    def from_json(cls, d: Any, where: Any = RUN_JSON) -> "Layer":
        """Validate one layer object (its weight's size bounded by :mod:`analysis.limits`)."""
        if not isinstance(d, dict):
            raise RunFormatError(f"{where}: a layer entry is not an object: {d!r:.60}")
        name = _req(d, "name", str, where)
        what = f"layer {name!r}"
        fin = _count(d, "in_features", where, what, 0, "max_nodes")
        fout = _count(d, "out_features", where, what, 0, "max_nodes")
        if fin * fout * 4 > limit("max_array_bytes"):
            raise RunFormatError(f"{where}: {what} declares a {fout} x {fin} weight {hint('max_array_bytes')}")
        return cls(name=name, in_set=_opt_str(d, "in_set", where, what), out_set=_opt_str(d, "out_set", where, what),
                   in_features=fin, out_features=fout, mask=_opt_str(d, "mask", where, what),
                   mode=_opt_str(d, "mode", where, what), mask_scale=_opt_number(d, "mask_scale", where, what),
                   role=_opt_str(d, "role", where, what) or "hidden",
                   dropout=_opt_number(d, "dropout", where, what), extra=_extras(cls, d))


@dataclass
class Topology:
    """The network as the run folder describes it: node sets and the layers between them."""

    trunk: dict | None = _f(None, "the feature extractor: `kind` (`conv`, `mlp`, `identity`, a model's class "
                                  "name) and `out_features`", omit_none=True)
    node_sets: list[NodeSet] = _f(factory=list, doc="node sets in network order, `trunk -> h1 -> ... -> classes`")
    layers: list[Layer] = _f(factory=list, doc="layers `fc1 ... classifier` (plain networks: layers only)")
    extra: dict = _extra()

    def to_json(self) -> dict[str, Any]:
        """The ``topology`` object of ``run.json``."""
        return _to_json(self, node_sets=[n.to_json() for n in self.node_sets],
                        layers=[lay.to_json() for lay in self.layers])

    @classmethod
    def from_json(cls, topo: Any, where: Any = RUN_JSON) -> "Topology":
        """Validate the topology: every entry, unique names, layers consistent with their node sets."""
        if not isinstance(topo, dict):
            raise RunFormatError(f"{where}: field 'topology' should be dict, got {type(topo).__name__}")
        node_sets = [NodeSet.from_json(d, where) for d in _req(topo, "node_sets", list, where)]
        layers = [Layer.from_json(d, where) for d in _req(topo, "layers", list, where)]
        for kind, names in (("node set", [n.name for n in node_sets]), ("layer", [lay.name for lay in layers])):
            dup = sorted({n for n in names if names.count(n) > 1}) if len(names) < 10_000 else []
            if dup or len(names) >= 10_000:
                raise RunFormatError(f"{where}: {kind} names must be unique and fewer than 10000 "
                                     f"(repeated: {dup[:3]})")
        sizes = {n.name: n.size for n in node_sets}
        for lay in layers:
            for side, feat in ((lay.in_set, lay.in_features), (lay.out_set, lay.out_features)):
                if side is not None and side not in sizes:
                    raise RunFormatError(f"{where}: layer {lay.name!r} names unknown node set {side!r}")
                if side is not None and sizes[side] != feat:
                    raise RunFormatError(
                        f"{where}: layer {lay.name!r} has {feat} features but node set {side!r} has {sizes[side]}")
        trunk = topo.get("trunk")
        if trunk is not None and not isinstance(trunk, dict):
            raise RunFormatError(f"{where}: topology field 'trunk' should be an object or null, got {trunk!r:.40}")
        return cls(node_sets=node_sets, layers=layers, trunk=trunk, extra=_extras(cls, topo))

    @property
    def class_set(self) -> NodeSet | None:
        """The node set of role ``classes``, if any."""
        return next((n for n in self.node_sets if n.role == "classes"), None)


# ---------------------------------------------------------------------------------------------
# run.json: dataset


def _str_list(val: Any, where: Any, key: str, nullable_items: bool = False) -> list | None:
    if val is None:
        return None
    ok = isinstance(val, list) and all(isinstance(v, str) or (nullable_items and v is None) for v in val)
    if not ok:
        raise RunFormatError(f"{where}: dataset field {key!r} should be a list of strings, got {val!r:.60}")
    if len(val) > limit("max_classes"):
        raise RunFormatError(f"{where}: dataset field {key!r} lists {len(val)} entries {hint('max_classes')}")
    return list(val)


@dataclass
class Dataset:
    """What the run was trained on (``run.json``'s ``dataset``)."""

    name: str | None = _f(None, "dataset name (`synthetic`, `cifar100`, ...)")
    class_names: list[str] | None = _f(None, "one name per class, in label order")
    wnids: list[str | None] | None = _f(None, "WordNet id per class (`n02084071`; null entries allowed), or null")
    coarse_names: list[str] | None = _f(None, "superclass names, or null")
    coarse_labels: list[int] | None = _f(None, "superclass of each class, or null")
    hierarchy: Any = _f(None, "nested class groups (`{name, children}`), or null")
    input_shape: list[int] | None = _f(None, "shape of one input, e.g. `[3, 32, 32]`")
    train_size: int | None = _f(None, "training examples")
    test_size: int | None = _f(None, "test examples")
    extra: dict = _extra()

    def to_json(self) -> dict[str, Any]:
        """The ``dataset`` object of ``run.json``."""
        return _to_json(self)

    @classmethod
    def from_json(cls, ds: Any, where: Any = RUN_JSON) -> "Dataset":
        """Validate the dataset object (``None`` is an empty one)."""
        if ds is None:
            ds = {}
        if not isinstance(ds, dict):
            raise RunFormatError(f"{where}: 'dataset' should be an object, got {type(ds).__name__}")
        labels = ds.get("coarse_labels")
        if labels is not None and not (isinstance(labels, list) and all(_is_int(v) for v in labels)):
            raise RunFormatError(f"{where}: dataset field 'coarse_labels' should be a list of integers, "
                                 f"got {labels!r:.60}")
        if ds.get("hierarchy") is not None and not isinstance(ds["hierarchy"], (dict, list)):
            raise RunFormatError(f"{where}: dataset field 'hierarchy' should be an object, a list or null")
        name = ds.get("name")
        if name is not None and not isinstance(name, str):
            raise RunFormatError(f"{where}: dataset field 'name' should be a string or null, got {name!r:.40}")
        return cls(name=name, class_names=_str_list(ds.get("class_names"), where, "class_names"),
                   wnids=_str_list(ds.get("wnids"), where, "wnids", nullable_items=True),
                   coarse_names=_str_list(ds.get("coarse_names"), where, "coarse_names"),
                   coarse_labels=labels, hierarchy=ds.get("hierarchy"), input_shape=ds.get("input_shape"),
                   train_size=ds.get("train_size"), test_size=ds.get("test_size"), extra=_extras(cls, ds))


# ---------------------------------------------------------------------------------------------
# run.json

#: Sections of a config nested by concern; a flat config has none of them as an object.
CONFIG_SECTIONS = ("data", "model", "optim", "run", "recipe")


def flat_config(config_json: Any, where: Any = RUN_JSON) -> dict[str, Any]:
    """The run's config as one flat ``{option: value}`` dict, whichever shape ``run.json`` holds.

    Runs written so far store a flat dict (``{"method": ..., "epochs": ...}``); a config nested
    by concern (``{"data": {...}, "model": {...}, "optim": {...}, "run": {...}, "recipe":
    {...}}``) is flattened one level, sections in that order. Keys outside the sections are kept.
    An option given twice with different values is an error (the run's config would be
    ambiguous; :meth:`RunRecord.from_json` checks this, so a writer cannot store such a config).
    Every reader of config values goes through this function.

    >>> flat_config({"method": "fc", "epochs": 3})
    {'method': 'fc', 'epochs': 3}
    >>> flat_config({"model": {"method": "fc"}, "run": {"epochs": 3}, "name": "x"})
    {'name': 'x', 'method': 'fc', 'epochs': 3}
    >>> flat_config(None)
    {}
    """
    if config_json is None:
        return {}
    if not isinstance(config_json, Mapping):
        raise RunFormatError(f"{where}: 'config' should be an object, got {type(config_json).__name__}")
    sections = [s for s in CONFIG_SECTIONS if isinstance(config_json.get(s), Mapping)]
    if not sections:
        return dict(config_json)
    out = {k: v for k, v in config_json.items() if k not in sections}
    for s in sections:
        for key, value in config_json[s].items():
            if key in out and out[key] != value:
                raise RunFormatError(f"{where}: config option {key!r} is given twice with different values "
                                     f"({out[key]!r:.40} and {value!r:.40} in {s!r})")
            out[key] = value
    return out


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """``run.json``: what was trained, on what, with which network."""

    format: str = _f(FORMAT, f"always `{FORMAT}`")
    format_version: int = _f(FORMAT_VERSION, f"format version (readers take up to {FORMAT_VERSION})")
    name: str | None = _f(None, "the run's name (its folder's name when written)")
    created: str | None = _f(None, "when it was written (ISO 8601)")
    versions: dict | None = _f(None, "versions of the software that wrote it (`blockout`, `python`, `torch`, ...)")
    config: dict = _f(factory=dict, doc="the resolved configuration: flat `{option: value}` (every `TrainConfig` "
                                        "field, `snapshot_every` resolved) or nested by concern; read it "
                                        "through `flat_config`")
    dataset: Dataset = _f(factory=Dataset, doc="the Dataset object below")
    topology: Topology = _f(factory=Topology, doc="the Topology object below")
    runtime: dict | None = _f(None, "how it ran: our trainer writes `device`, `world_size`, `amp`, "
                                    "`steps_per_epoch`, `total_steps`; RunLogger `writer`, `model`", omit_none=True)
    extra: dict = _extra()

    def to_json(self) -> dict[str, Any]:
        """The whole ``run.json`` object."""
        config = dict(self.config) if isinstance(self.config, dict) else self.config  # from_json refuses others
        return _to_json(self, config=config, dataset=self.dataset.to_json(),
                        topology=self.topology.to_json())

    @classmethod
    def from_json(cls, meta: Any, where: Any = RUN_JSON) -> "RunRecord":
        """Validate a parsed ``run.json``: format, types of every field the readers use, sizes
        against :mod:`analysis.limits`, layers against their node sets, class names against the
        class node set. ``config`` and ``dataset`` may be null (empty)."""
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise RunFormatError(f"{where} is not a Blockout run (no \"format\": \"{FORMAT}\")")
        version = meta.get("format_version")
        if not _is_int(version) or version > FORMAT_VERSION:
            raise RunFormatError(f"{where} has format_version {version!r:.20}; this version reads up to {FORMAT_VERSION}")
        config = meta.get("config")
        if config is not None and not isinstance(config, dict):
            raise RunFormatError(f"{where}: 'config' should be an object, got {type(config).__name__}")
        flat_config(config, where)  # nested by concern: every option once
        if meta.get("dataset") is not None and not isinstance(meta["dataset"], dict):
            raise RunFormatError(f"{where}: 'dataset' should be an object, got {type(meta['dataset']).__name__}")
        name = meta.get("name")
        if name is not None and not isinstance(name, str):
            raise RunFormatError(f"{where}: 'name' should be a string, got {name!r:.40}")
        topology = Topology.from_json(_req(meta, "topology", dict, where), where)
        dataset = Dataset.from_json(meta.get("dataset"), where)
        for key in ("versions", "runtime"):
            if meta.get(key) is not None and not isinstance(meta[key], dict):
                raise RunFormatError(f"{where}: {key!r} should be an object or null, got {meta[key]!r:.40}")
        created = meta.get("created")
        if created is not None and not isinstance(created, str):
            raise RunFormatError(f"{where}: 'created' should be a string or null, got {created!r:.40}")
        cs = topology.class_set
        names = dataset.class_names or []
        if names and cs is not None and len(names) != cs.size:
            raise RunFormatError(f"{where}: {len(names)} class names but the class node set {cs.name!r} has "
                                 f"{cs.size} nodes")
        if cs is not None and cs.size > limit("max_classes"):
            raise RunFormatError(f"{where}: the class node set {cs.name!r} has {cs.size} nodes {hint('max_classes')}")
        return cls(format=FORMAT, format_version=version, name=name, created=created, versions=meta.get("versions"),
                   config=dict(config or {}), dataset=dataset, topology=topology, runtime=meta.get("runtime"),
                   extra=_extras(cls, meta))

    @classmethod
    def new(cls, name: str | None, config: Mapping[str, Any], dataset: Mapping[str, Any] | Dataset,
            topology: Mapping[str, Any] | Topology, *, versions: Mapping[str, Any] | None = None,
            extra: Mapping[str, Any] | None = None) -> "RunRecord":
        """A record for a new run, created now, validated exactly as a reader will validate it.

        ``config``, ``dataset`` and ``topology`` may be plain JSON-able objects (tuples and
        numpy-free values; they are passed through JSON first); ``extra`` adds top-level keys
        (``runtime``, or anything a newer writer records).
        """
        obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "created": _now(),
               "versions": dict(versions) if versions is not None else None, "config": dict(config),
               "dataset": dataset.to_json() if isinstance(dataset, Dataset) else dict(dataset),
               "topology": topology.to_json() if isinstance(topology, Topology) else dict(topology)}
        obj.update(extra or {})
        try:
            obj = json.loads(json.dumps(obj, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise RunFormatError(f"{RUN_JSON} of {name!r} cannot be written: {exc}") from None
        return cls.from_json(obj, f"{RUN_JSON} of {name!r}")

    @property
    def flat_config(self) -> dict[str, Any]:
        """:func:`flat_config` of this run's config."""
        return flat_config(self.config)


def locate_run(path: str | os.PathLike) -> Path:
    """The run folder ``path`` names (a folder, or its ``run.json``); one line when it is none."""
    path = Path(path)
    if path.name == RUN_JSON and path.is_file():
        path = path.parent
    if not path.exists():
        raise RunFormatError(f"run folder not found: {path}")
    if not path.is_dir():
        raise RunFormatError(f"not a run folder (expected a folder with {RUN_JSON}): {path}")
    return path


def read_run(path: str | os.PathLike) -> RunRecord:
    """Read and validate ``run.json`` of the run folder ``path`` (bounded, confined to the folder)."""
    folder = locate_run(path)
    run_json = rf.confine(folder, RUN_JSON, RUN_JSON)
    if not run_json.exists():
        raise RunFormatError(f"not a run folder (no {RUN_JSON} in it): {folder}")
    return RunRecord.from_json(rf.read_json(run_json, RUN_JSON), run_json)


def write_run(run_dir: str | os.PathLike, record: RunRecord) -> Path:
    """Atomically write ``record`` as ``run_dir/run.json`` (validated first); returns the path."""
    obj = record.to_json()
    RunRecord.from_json(json.loads(json.dumps(obj, allow_nan=False)), f"{RUN_JSON} of {record.name!r}")
    path = Path(run_dir) / RUN_JSON
    rf.atomic_write_json(path, obj)
    return path


# ---------------------------------------------------------------------------------------------
# metrics.jsonl


@dataclass
class MetricsRecord:
    """One line of ``metrics.jsonl``: one evaluation. Any other key (your own metrics) is kept."""

    step: int | None = _f(None, "optimiser steps so far", omit_none=True)
    epoch: int | None = _f(None, "epochs finished", omit_none=True)
    train_loss: float | None = _f(None, "training loss (running over the epoch, training mode)", omit_none=True)
    train_acc: float | None = _f(None, "training accuracy (same)", omit_none=True)
    test_loss: float | None = _f(None, "test loss", omit_none=True)
    test_acc: float | None = _f(None, "test accuracy", omit_none=True)
    lr: float | None = _f(None, "learning rate of the epoch's last step", omit_none=True)
    seconds: float | None = _f(None, "training time so far, across resumes", omit_none=True)
    probs: dict | None = _f(None, "per node set `{\"mean\", \"frac_below_0.1\", \"frac_above_0.9\"}` of P",
                            omit_none=True)
    extra: dict = _extra()

    #: fields that are whole numbers (the others are numbers), or null
    _INTS = ("step", "epoch")
    _NUMBERS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")

    def to_json(self) -> dict[str, Any]:
        """The line's object (null fields left out, other keys kept)."""
        return _to_json(self)

    @classmethod
    def from_json(cls, obj: Any, where: Any = METRICS) -> "MetricsRecord":
        """Validate one line: an object whose known fields are numbers (or null)."""
        if not isinstance(obj, dict):
            raise RunFormatError(f"{where} is not a JSON object")
        for key in cls._INTS + cls._NUMBERS:
            value = obj.get(key)
            ok = _is_int(value) if key in cls._INTS else isinstance(value, (int, float)) and not isinstance(value, bool)
            if value is not None and not ok:
                raise RunFormatError(f"{where}: {key!r} should be a number, got {value!r:.40}")
        if obj.get("probs") is not None and not isinstance(obj["probs"], dict):
            raise RunFormatError(f"{where}: 'probs' should be an object, got {obj['probs']!r:.40}")
        known = {f.name: obj.get(f.name) for f in _json_fields(cls)}
        return cls(**known, extra=_extras(cls, obj))


def check_metrics_line(obj: Any, where: str) -> dict:
    """Validate one parsed metrics line; returns it unchanged (a null field keeps its key)."""
    MetricsRecord.from_json(obj, where)
    return obj


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """Every line of ``run_dir/metrics.jsonl``, validated (``[]`` when there is no file yet)."""
    run_dir = Path(run_dir)
    return rf.read_jsonl(run_dir / METRICS, root=run_dir)


def _metrics_obj(record: MetricsRecord | Mapping[str, Any]) -> dict:
    if isinstance(record, MetricsRecord):
        return record.to_json()
    obj = dict(record)
    check_metrics_line(json.loads(json.dumps(obj, allow_nan=False)), METRICS)
    return obj


def append_metrics(run_dir: str | os.PathLike, record: MetricsRecord | Mapping[str, Any]) -> None:
    """Append one validated line to ``run_dir/metrics.jsonl`` (atomically)."""
    rf.append_jsonl(Path(run_dir) / METRICS, _metrics_obj(record))


def write_metrics(run_dir: str | os.PathLike, records: Iterable[MetricsRecord | Mapping[str, Any]]) -> None:
    """Atomically replace ``run_dir/metrics.jsonl`` with ``records``."""
    lines = [json.dumps(_metrics_obj(r), allow_nan=False, ensure_ascii=False) + "\n" for r in records]
    rf.atomic_write_text(Path(run_dir) / METRICS, "".join(lines))


# ---------------------------------------------------------------------------------------------
# snapshots/index.json


@dataclass
class SnapshotEntry:
    """One entry of ``snapshots/index.json``."""

    step: int = _f(doc="the training step")
    epoch: int | None = _f(None, "epochs finished at that step")
    file: str = _f("", "file under `snapshots/` (default `step_XXXXXXXX.npz`; never outside the folder)")
    has_weights: bool | None = _f(None, "whether it holds `weight__`/`bias__` arrays (null: look in the file)")
    tags: list[str] = _f(factory=list, doc="drawn from `best` (highest test accuracy) and `last`")
    extra: dict = _extra()

    def __post_init__(self) -> None:
        if not self.file:
            self.file = snapshot_filename(self.step)

    def to_json(self) -> dict[str, Any]:
        """The entry's object in ``index.json``."""
        return _to_json(self, tags=list(self.tags))

    @classmethod
    def from_json(cls, e: Any, where: Any = SNAPSHOT_INDEX, snap_dir: str | os.PathLike | None = None) -> "SnapshotEntry":
        """Validate one entry; with ``snap_dir``, ``file`` must stay inside it (checked whether or
        not the file exists)."""
        if not isinstance(e, dict):
            raise RunFormatError(f"{where}: a snapshot entry is not an object: {e!r:.60}")
        step = e.get("step")
        if not _is_int(step) or step < 0:
            raise RunFormatError(f"{where}: an entry's 'step' should be a whole number >= 0, got {step!r:.40}")
        epoch = e.get("epoch")
        if epoch is not None and (not _is_int(epoch) or epoch < 0):
            raise RunFormatError(f"{where}: step {step}: 'epoch' should be a whole number, got {epoch!r:.40}")
        name = e.get("file", snapshot_filename(step))
        if snap_dir is not None:
            rf.confine(snap_dir, name, f"{where}: step {step}: snapshot file")
        elif not isinstance(name, str):
            raise RunFormatError(f"{where}: step {step}: snapshot file {name!r} is not a file name")
        has_weights = e.get("has_weights")
        if has_weights is not None and not isinstance(has_weights, bool):
            raise RunFormatError(f"{where}: step {step}: 'has_weights' should be true or false, got {has_weights!r:.40}")
        tags = e.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RunFormatError(f"{where}: step {step}: 'tags' should be a list of strings, got {tags!r:.60}")
        return cls(step=step, epoch=epoch, file=name, has_weights=has_weights, tags=list(tags),
                   extra=_extras(cls, e))


def read_snapshot_index(run_dir: str | os.PathLike) -> list[SnapshotEntry]:
    """Validated entries of ``snapshots/index.json`` sorted by step (``[]`` when there is none).

    A step listed twice, more entries than ``BLOCKOUT_MAX_SNAPSHOTS`` or a file outside
    ``snapshots/`` is a one-line error.
    """
    run_dir = Path(run_dir)
    index = rf.confine(run_dir, f"{SNAPSHOT_DIR}/{SNAPSHOT_INDEX}", "snapshot index")
    if not index.exists():
        return []
    data = rf.read_json(index, "snapshot index")
    entries = data.get("snapshots") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RunFormatError(f"{index} has no 'snapshots' list")
    if len(entries) > limit("max_snapshots"):
        raise RunFormatError(f"{index} lists {len(entries)} snapshots {hint('max_snapshots')}")
    out, seen = [], set()
    for e in entries:
        out.append(SnapshotEntry.from_json(e, index, run_dir / SNAPSHOT_DIR))
        if out[-1].step in seen:
            raise RunFormatError(f"{index}: step {out[-1].step} is listed twice")
        seen.add(out[-1].step)
    return sorted(out, key=lambda e: e.step)


def snapshot_entries(run_dir: str | os.PathLike) -> list[dict]:
    """The run's snapshots as index entries (dicts), oldest first: ``snapshots/index.json`` when
    there is one, else a scan of the ``step_*.npz`` files (``has_weights`` None: decided when a
    file is opened). Every reader lists snapshots through this one function, so a folder without
    its index reads the same everywhere."""
    snap_dir = rf.confine(run_dir, SNAPSHOT_DIR, "snapshots folder")
    if (snap_dir / SNAPSHOT_INDEX).exists():
        return [e.to_json() for e in read_snapshot_index(run_dir)]
    out = []
    if snap_dir.is_dir():
        for p in snap_dir.iterdir():
            step = snapshot_step(p.name)
            if step is not None:
                out.append({"step": step, "file": p.name, "has_weights": None, "tags": []})
                if len(out) > limit("max_snapshots"):
                    raise RunFormatError(f"{snap_dir} holds too many snapshots {hint('max_snapshots')}")
    return sorted(out, key=lambda e: e["step"])


def write_snapshot_index(run_dir: str | os.PathLike, entries: Iterable[SnapshotEntry | Mapping[str, Any]]) -> None:
    """Atomically write ``snapshots/index.json`` (entries validated, sorted by step)."""
    where = f"{SNAPSHOT_DIR}/{SNAPSHOT_INDEX}"
    recs = [e if isinstance(e, SnapshotEntry) else SnapshotEntry.from_json(dict(e), where) for e in entries]
    steps = [e.step for e in recs]
    if len(set(steps)) != len(steps):
        raise RunFormatError(f"{where}: a step is listed twice ({sorted(steps)})")
    recs.sort(key=lambda e: e.step)
    rf.atomic_write_json(Path(run_dir) / SNAPSHOT_DIR / SNAPSHOT_INDEX, {"snapshots": [e.to_json() for e in recs]})


def snapshot_shapes(node_sets: Iterable[NodeSet], layers: Iterable[Layer]) -> dict[str, tuple[int, ...]]:
    """The shape each snapshot array must have, from the topology.

    >>> snapshot_shapes([NodeSet("h", 4, 2)], [Layer("fc", None, "h", 3, 4)])
    {'probs__h': (4, 2), 'weight__fc': (4, 3), 'bias__fc': (4,)}
    """
    out: dict[str, tuple[int, ...]] = {}
    for ns in node_sets:
        out[PROBS_PREFIX + ns.name] = (ns.size, ns.clusters)
    for lay in layers:
        out[WEIGHT_PREFIX + lay.name] = (lay.out_features, lay.in_features)
        out[BIAS_PREFIX + lay.name] = (lay.out_features,)
    return out


# ---------------------------------------------------------------------------------------------
# the folder as a whole


def is_run_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a ``run.json`` (its content is checked on reading)."""
    return (Path(path) / RUN_JSON).is_file()


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Run folders directly under ``root`` (or ``root`` itself), sorted by name."""
    root = Path(root)
    if is_run_folder(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if is_run_folder(p))


def run_is_complete(run_dir: str | os.PathLike) -> bool:
    """A run whose last evaluation reached its configured ``epochs`` (no torch needed).

    False when ``run_dir`` is no run folder, has no metrics yet or its config names no epochs;
    a run folder whose files are broken is a :class:`RunFormatError`.
    """
    if not is_run_folder(run_dir):
        return False
    epochs = read_run(run_dir).flat_config.get("epochs")
    metrics = read_metrics(run_dir)
    return bool(metrics) and epochs is not None and int(metrics[-1].get("epoch") or 0) >= int(epochs)


# ---------------------------------------------------------------------------------------------
# documentation: the README tables come from the records

_DOC_RECORDS = (("run.json", RunRecord), ("run.json `dataset`", Dataset), ("run.json `topology`", Topology),
                ("`topology.node_sets[]`", NodeSet), ("`topology.layers[]`", Layer),
                ("metrics.jsonl line", MetricsRecord), ("`snapshots/index.json` `snapshots[]`", SnapshotEntry))


def documented_fields() -> dict[str, list[str]]:
    """``{record title: [field, ...]}`` of the README tables, in order."""
    return {title: [f.name for f in _json_fields(cls)] for title, cls in _DOC_RECORDS}


def markdown_tables() -> str:
    """The README's field tables, rendered from the records' field metadata."""
    lines = []
    for title, cls in _DOC_RECORDS:
        lines += [f"**{title}** (`{cls.__name__}`)", "", "| field | meaning |", "|---|---|"]
        lines += [f"| `{f.name}` | {f.metadata['doc']} |" for f in _json_fields(cls)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


#: The README block :func:`markdown_tables` fills.
README_BEGIN = "<!-- runformat tables: begin (generated by python -m analysis.runformat) -->\n"
README_END = "<!-- runformat tables: end -->"


def readme_with_tables(text: str) -> str:
    """``text`` (the README) with the block between :data:`README_BEGIN` and :data:`README_END`
    replaced by :func:`markdown_tables`."""
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        raise ValueError("the README has no runformat tables block")
    return text[:i + len(README_BEGIN)] + markdown_tables() + text[j:]


if __name__ == "__main__":  # python -m analysis.runformat [--update README.md]
    import sys

    if sys.argv[1:2] == ["--update"] and len(sys.argv) == 3:
        readme = Path(sys.argv[2])
        rf.atomic_write_text(readme, readme_with_tables(readme.read_text(encoding="utf-8")))
        print(f"updated the run-folder tables in {readme}")
    else:
        print(markdown_tables(), end="")
