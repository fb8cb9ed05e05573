"""Write a run folder from your own training loop (the public API).

:class:`RunLogger` finds the Blockout parts of any ``nn.Module`` — every :class:`BlockoutHead`
(its node sets and layers, plain ``nn.Linear`` layers included), and every
:class:`~blockout.BlockoutLinear` with its two :class:`~blockout.NodeClusters` elsewhere — works
out the topology (node sets ``trunk -> h1 -> ... -> classes`` and the layers between them) and
writes the run folder that ``blockout inspect``, ``blockout compare``, ``blockout export`` and the
dashboard read (README, "The run folder"). Every file goes through the atomic writers of
:class:`blockout.runwriter.RunWriter`, so a killed loop never leaves a half-written file; one
process writes a folder at a time (:class:`~blockout.runwriter.RunLock`). Our own trainer
(:mod:`blockout.train`) writes its run folders through :class:`RunLogger` too.

The pure part, :func:`find_blockout_parts` and :func:`topology`, is usable on its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from analysis import runformat as fmt
from blockout.clusters import NodeClusters
from blockout.errors import UserError
from blockout.head import BlockoutHead
from blockout.linear import BlockoutLinear
from blockout.models import BlockoutNet
from blockout.runwriter import WEIGHT_TAGS, RunLock, RunWriter

__all__ = ["RunLogger", "BlockoutParts", "find_blockout_parts", "topology"]

#: Snapshot tags a user may give (a tagged snapshot also keeps the weights).
TAGS = WEIGHT_TAGS


@dataclasses.dataclass
class BlockoutParts:
    """What :func:`find_blockout_parts` found: named node sets and layers, in network order.

    ``node_sets``: ``[(name, NodeClusters)]``; ``layers``: ``[(name, module, in_set, out_set,
    extra)]`` where the sets are node-set names (None for the plain layers of a head) and
    ``extra`` holds ``dropout`` for a layer fed through dropout; ``roles``: ``{node set: role}``.
    """

    node_sets: list[tuple[str, nn.Module]]
    layers: list[tuple[str, nn.Module, str | None, str | None, dict]]
    roles: dict[str, str]
    classifier: str
    method: str | None


def _heads(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every BlockoutHead / BlockoutNet in ``model`` that is not inside another one."""
    found: list[tuple[str, nn.Module]] = []
    for path, mod in model.named_modules():
        if isinstance(mod, (BlockoutHead, BlockoutNet)) and not any(
                p == "" or path.startswith(p + ".") for p, _ in found):
            found.append((path, mod))
    return found


def find_blockout_parts(model: nn.Module, num_classes: int | None = None) -> BlockoutParts:
    """The node sets and layers of ``model``, ordered from the input to the classes.

    Parameters
    ----------
    model : nn.Module
        Any module holding :class:`BlockoutHead` / :class:`~blockout.models.BlockoutNet`
        modules or :class:`~blockout.BlockoutLinear` layers (with their node sets).
    num_classes : int, optional
        Picks the class node set when the network ends in more than one.

    Returns
    -------
    BlockoutParts
        Names: a head's own (``trunk``, ``h1``, ``fc1``, ``classifier``; prefixed with the head's
        module path when there are several heads); elsewhere a node set's ``name`` when it has one
        and the module path otherwise. Roles: a node set no layer feeds is ``trunk``, the one the
        last layer feeds is ``classes``, every other ``hidden``.

    Raises
    ------
    ValueError
        No Blockout part at all, or layers that do not form one chain of node sets.

    Examples
    --------
    >>> from blockout import BlockoutHead
    >>> net = nn.Sequential(nn.Flatten(), BlockoutHead(12, 3, hidden=(8,), clusters=2))
    >>> parts = find_blockout_parts(net)
    >>> [n for n, _ in parts.node_sets], [lay[0] for lay in parts.layers], parts.classifier
    (['trunk', 'h1', 'classes'], ['fc1', 'classifier'], 'classifier')
    >>> parts.roles
    {'trunk': 'trunk', 'h1': 'hidden', 'classes': 'classes'}
    """
    heads = _heads(model)
    loose = [(p, m) for p, m in model.named_modules() if isinstance(m, BlockoutLinear)
             and not any(p == hp or p.startswith(hp + ".") or hp == "" for hp, _ in heads)]
    if not heads and not loose:
        raise ValueError(f"{type(model).__name__} has no Blockout part: use a BlockoutHead (or BlockoutLinear "
                         "layers with NodeClusters) for the layers the run folder should show")
    prefix_heads = len(heads) + (1 if loose else 0) > 1
    sets: dict[int, str] = {}  # id(NodeClusters) -> name
    node_sets: list[tuple[str, nn.Module]] = []
    layers: list[tuple[str, nn.Module, str | None, str | None, dict]] = []
    plain_last: list[str] = []
    method = None
    for hpath, head in heads:
        pre = f"{hpath}." if prefix_heads and hpath else ""
        method = method or getattr(head, "method", None)
        for name, ns in head.node_sets.items():
            sets[id(ns)] = pre + name
            node_sets.append((pre + name, ns))
        for i, lname in enumerate(head.layer_names):
            layer = head.fc[lname]
            extra = {"dropout": head.dropout_p} if lname in head.drop else {}
            if head.is_blockout:
                layers.append((pre + lname, layer, sets[id(layer.in_clusters)], sets[id(layer.out_clusters)], extra))
            else:
                layers.append((pre + lname, layer, None, None, extra))
        if not head.is_blockout:
            plain_last.append(pre + head.layer_names[-1])
    paths = {id(m): p for p, m in model.named_modules()}
    used = {n for n, _ in node_sets}
    for lpath, layer in loose:
        names = []
        for ns in (layer.in_clusters, layer.out_clusters):
            if id(ns) not in sets:
                name = ns.name if isinstance(ns.name, str) and ns.name and ns.name not in used else paths[id(ns)]
                sets[id(ns)] = name
                used.add(name)
                node_sets.append((name, ns))
            names.append(sets[id(ns)])
        layers.append((lpath, layer, names[0], names[1], {}))

    # order node sets along the layers (Kahn's algorithm, ties in discovery order)
    edges = [(a, b) for _, _, a, b, _ in layers if a is not None]
    indeg = {n: 0 for n, _ in node_sets}
    for _, b in edges:
        indeg[b] += 1
    outs = {n: [b for a, b in edges if a == n] for n in indeg}
    order, ready = [], [n for n, _ in node_sets if indeg[n] == 0]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for b in outs[n]:
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    if len(order) != len(indeg):
        raise ValueError("the Blockout layers of the model form a cycle of node sets; a run folder needs a chain "
                         "trunk -> ... -> classes")
    rank = {n: i for i, n in enumerate(order)}
    node_sets.sort(key=lambda item: rank[item[0]])
    sinks = [n for n in order if not outs[n] and _fed(n, edges)]
    sources = [n for n in order if not any(b == n for _, b in edges)]
    size = {n: ns.num_nodes for n, ns in node_sets}
    if len(sinks) > 1:
        fit = [n for n in sinks if num_classes is not None and size[n] == num_classes]
        if len(fit) != 1:
            raise ValueError(f"the Blockout layers end in {len(sinks)} node sets ({', '.join(sinks)}), so the "
                             "class node set is ambiguous; pass class_names (their number picks it), or log one "
                             "head: RunLogger(run_dir, model.head, ...)")
        sinks = fit
    classes = sinks[0] if sinks else None
    roles = {n: ("classes" if n == classes else "trunk" if n in sources else "hidden") for n, _ in node_sets}
    # layers in network order: by the rank of their input set (plain heads keep their order)
    layers.sort(key=lambda item: rank.get(item[2], -1) if item[2] is not None else -1)
    if classes is not None:
        classifier = next(lay[0] for lay in layers if lay[3] == classes)
    else:
        classifier = plain_last[-1]
    return BlockoutParts(node_sets, layers, roles, classifier, method)


def _fed(name: str, edges: list[tuple[str, str]]) -> bool:
    """Whether some layer feeds node set ``name`` (a set no layer touches is no sink)."""
    return any(b == name for _, b in edges)


def topology(parts: BlockoutParts, trunk_kind: str = "custom") -> dict[str, Any]:
    """The ``topology`` object of ``run.json`` for ``parts`` (an :class:`analysis.runformat.Topology`)."""
    node_sets = [fmt.NodeSet(
        name=name, size=int(ns.num_nodes), clusters=int(ns.num_clusters),
        trainable=bool(getattr(ns, "trainable", any(p.requires_grad for p in ns.parameters()))),
        role=parts.roles[name], membership=getattr(ns, "membership", "bernoulli"), init=getattr(ns, "init", None),
    ) for name, ns in parts.node_sets]
    layers = []
    for name, layer, a, b, extra in parts.layers:
        blockout = isinstance(layer, BlockoutLinear)
        layers.append(fmt.Layer(
            name=name, in_set=a, out_set=b, in_features=int(layer.in_features), out_features=int(layer.out_features),
            mask=layer.mask if blockout else None, mode=layer.mode if blockout else None,
            mask_scale=float(layer.scale) if blockout else None,
            role="classifier" if name == parts.classifier else "hidden", dropout=extra.get("dropout"),
        ))
    first = parts.layers[0][1].in_features if parts.layers else 0
    return fmt.Topology(node_sets=node_sets, layers=layers,
                        trunk={"kind": trunk_kind, "out_features": int(first)}).to_json()


_topology = topology  # RunLogger's ``topology`` option shadows the function's name


def _json_value(key: str, value: Any) -> Any:
    """A metrics value as JSON: tensors and numpy scalars become numbers, NaN/inf become null."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"log_metrics({key}=...) got a tensor of shape {tuple(value.shape)}; give one number")
        value = value.detach().cpu().item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: the record keeps the key, with null
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise TypeError(f"log_metrics({key}=...) got {type(value).__name__}; give a number, a string, or "
                        "JSON lists/objects") from None
    return value


def _config_json(config: Any) -> dict[str, Any]:
    """``config`` (mapping, dataclass, argparse namespace or None) as a JSON-ready dict."""
    from blockout.config import TrainConfig

    if config is None:
        return {}
    if isinstance(config, TrainConfig):  # our trainer's options, flat as the trainer writes them
        config = config.to_dict()
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif not isinstance(config, Mapping) and hasattr(config, "__dict__"):
        config = vars(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, a dataclass or a namespace, got {type(config).__name__}")
    return json.loads(json.dumps({str(k): v for k, v in config.items()}, default=str, allow_nan=False))


def _check_step(step: Any, what: str, name: str = "step") -> int:
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"{what}: {name} must be a whole number >= 0, got {step!r}")
    return int(step)


def _probs_summary(probs: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: {"mean": float(P.mean()), "frac_below_0.1": float((P < 0.1).mean()),
                   "frac_above_0.9": float((P > 0.9).mean())} for name, P in probs.items()}


class RunLogger:
    """Write a Blockout run folder from any training loop.

    Parameters
    ----------
    run_dir : path
        The run folder to create (missing or empty), or to continue with ``resume=True``.
    model : nn.Module
        The network; its Blockout parts are found by :func:`find_blockout_parts`.
    class_names : sequence of str, optional
        One name per class, in label order (default ``class 0``, ``class 1``, ...). Names of the
        bundled CIFAR / Fashion-MNIST classes, or ``wnids``, let ``compare`` use WordNet.
    wnids : sequence of str or None, optional
        WordNet ids (``n02084071``) per class, for ImageNet-style labels.
    config : mapping, dataclass or namespace, optional
        Your hyper-parameters, stored as ``run.json``'s ``config`` (non-JSON values as text);
        ``method`` and ``clusters`` are filled in from a :class:`BlockoutHead` when absent.
    dataset : mapping, optional
        More ``run.json`` dataset fields: ``name``, ``coarse_names`` and ``coarse_labels`` (lets
        ``compare --reference coarse`` score against superclasses), ``hierarchy``,
        ``input_shape``, ``train_size``, ``test_size``.
    resume : bool
        Continue the run in ``run_dir`` (its topology must match). Writing a step at or before
        the last one recorded replaces what was recorded from that step on (a loop restarted
        from an older checkpoint).
    enabled : bool, optional
        Whether this process writes; default: rank 0 under ``torch.distributed``, else True.
    topology : mapping, optional
        ``run.json``'s topology as your network describes itself (an
        :class:`analysis.runformat.Topology` object); default: worked out by :func:`topology`
        from the parts :func:`find_blockout_parts` finds. Snapshots always use those parts' names,
        so the names must agree (our trainer passes ``BlockoutNet.topology()``).
    extra : mapping, optional
        More top-level ``run.json`` keys; ``runtime`` (how it ran: device, world size, ...)
        replaces the default ``{"writer": "blockout.RunLogger", "model": <class name>}``.
    lock : bool or RunLock
        ``True`` (default): take the folder's :class:`~blockout.runwriter.RunLock` on opening and
        release it on closing. A :class:`~blockout.runwriter.RunLock` you already hold: use it
        (acquired if it is not) and leave releasing it to you, e.g. when you check or clear the
        folder before the model exists. ``False``: no lock (you make sure only one process writes).
    resume_at_step : int, optional
        Continue the run from a checkpoint of step ``resume_at_step`` (implies ``resume``): on
        opening, every metrics record and snapshot after that step is removed at once (they
        were written after the checkpoint, by a process that was killed before the next one)
        and what a killed write left half done is repaired, so the folder matches the checkpoint
        before the first new write. With ``resume=True`` alone, old records are cut only when a
        write lands at or before them.
    multipliers : callable, optional
        ``multipliers()`` returns ``{layer: array}`` to save with every snapshot (the step-0 one
        included) as ``multiplier__<layer>``: e.g. the per-row multipliers of a connection
        budget (``blockout train --method hard-budgeted`` saves them), which the dashboard shows.
        Default: a :class:`BlockoutHead`'s recipe arrays (:meth:`BlockoutHead.snapshot_arrays`).

    Notes
    -----
    Opening writes ``run.json`` and a snapshot of every node set's P at step 0. Closing
    (leaving the ``with`` block, also on Ctrl-C) adds a snapshot tagged ``last`` with the weights
    at the last step logged, unless that step already has one (``close(last=False)`` skips it).
    A snapshot costs a few milliseconds (``benchmarks/logger_speed.py``); take about 30 per run,
    as our trainer does. Our trainer (:func:`blockout.train.train`) writes its run folders
    through this class.

    Examples
    --------
    >>> import tempfile, torch
    >>> from blockout import BlockoutHead, RunLogger
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), BlockoutHead(12, 3, hidden=(8,), clusters=2))
    >>> run = tempfile.mkdtemp() + "/run"
    >>> with RunLogger(run, model, class_names=["cat", "dog", "fox"]) as log:
    ...     log.snapshot(10)
    ...     log.log_metrics(10, epoch=1, train_loss=1.1, test_acc=0.4)
    >>> from analysis.run import load_run
    >>> r = load_run(run)
    >>> r.chain, r.steps, r.weight_steps(), r.metrics[0]["test_acc"]
    (['trunk', 'h1', 'classes'], [0, 10], [10], 0.4)
    """

    def __init__(self, run_dir: str | Path, model: nn.Module, class_names: Iterable[str] | None = None,
                 wnids: Iterable[str | None] | None = None, config: Any = None, *,
                 dataset: Mapping[str, Any] | None = None, resume: bool = False, enabled: bool | None = None,
                 topology: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
                 lock: bool | RunLock = True, resume_at_step: int | None = None,
                 multipliers: Callable[[], Mapping[str, np.ndarray] | None] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(lock, (bool, RunLock)):
            raise TypeError(f"lock must be True, False or a RunLock, got {type(lock).__name__}")
        if multipliers is not None and not callable(multipliers):
            raise TypeError("multipliers must be a function returning {layer: array}")
        self.run_dir = Path(run_dir)
        self.model = model
        self.resume_at_step = (None if resume_at_step is None
                               else _check_step(resume_at_step, "RunLogger", "resume_at_step"))
        self.resume = bool(resume) or self.resume_at_step is not None
        self._lock_option = lock
        self._multipliers = multipliers
        if enabled is None:
            dist = torch.distributed
            enabled = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        self.enabled = bool(enabled)
        names = None if class_names is None else [str(c) for c in class_names]
        self.parts = find_blockout_parts(model, num_classes=len(names) if names else None)
        n_classes = self._num_classes()
        if names is None:
            names = [f"class {i}" for i in range(n_classes)]
        if len(names) != n_classes:
            raise ValueError(f"class_names has {len(names)} names but the network's classifier "
                             f"{self.parts.classifier!r} has {n_classes} outputs")
        wn = None if wnids is None else [None if w is None else str(w) for w in wnids]
        if wn is not None and len(wn) != n_classes:
            raise ValueError(f"wnids has {len(wn)} entries for {n_classes} classes")
        self.class_names, self.wnids = names, wn
        self.config = _config_json(config)
        head = next((m for _, m in _heads(model)), None)
        recipe_heads = [m for _, m in _heads(model) if isinstance(m, BlockoutHead) and len(m.recipes)]
        if recipe_heads:
            # the recipe's resolved options (its phases show on the dashboard's curves) and its arrays
            for key, value in recipe_heads[0].recipe_config().items():
                self.config.setdefault(key, value)
            if self._multipliers is None:
                self._multipliers = _head_arrays(recipe_heads, self.parts)
        if head is not None:
            hidden = list(head.hidden) if isinstance(head, BlockoutHead) else [head.nodes] * head.depth
            self.config.setdefault("method", head.method)
            self.config.setdefault("clusters", head.clusters)
            self.config.setdefault("depth", len(hidden))
            if hidden and len(set(hidden)) == 1:
                self.config.setdefault("nodes", hidden[0])
        self.dataset = {**fmt.Dataset(class_names=names, wnids=wn).to_json(), **_config_json(dataset)}
        if topology is None:
            self.topology = _topology(self.parts, trunk_kind=type(model).__name__)
        else:
            self.topology = _config_json(topology)
            fmt.Topology.from_json(self.topology, "RunLogger(topology=...)")
        self.extra = {"runtime": {"writer": "blockout.RunLogger", "model": type(model).__name__},
                      **_config_json(extra)}
        self._writer: RunWriter | None = None
        self._lock: RunLock | None = None
        self._last_step = 0
        self._epoch = 0
        self._last_seen: int | None = None  # last step recorded in the folder (resume)
        self._seconds0 = 0.0
        self._t0 = time.perf_counter()

    def _num_classes(self) -> int:
        for name, layer, _, _, _ in self.parts.layers:
            if name == self.parts.classifier:
                return int(layer.out_features)
        raise AssertionError("no classifier layer")  # find_blockout_parts always names one

    # ------------------------------------------------------------------ open / close
    def open(self) -> "RunLogger":
        """Create (or, with ``resume``, reopen) the run folder; ``with RunLogger(...)`` calls this."""
        if self._writer is not None:
            return self
        if not self.enabled:
            self._writer = RunWriter(self.run_dir, enabled=False)
            return self
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"run folder {self.run_dir} exists and is not a folder")
        own = self._lock_option is True
        lock = RunLock(self.run_dir) if own else self._lock_option or None
        if lock is not None:
            lock.acquire()
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            has_run = fmt.is_run_folder(self.run_dir)
            if self.resume_at_step is not None:
                self._reopen(has_run)
            elif self.resume and has_run:
                self._reopen(True)
            elif self.resume and any(not _ignorable(p) for p in self.run_dir.iterdir()):
                raise UserError(f"cannot resume {self.run_dir}: it holds no {fmt.RUN_JSON}")
            else:
                if any(not _ignorable(p) for p in self.run_dir.iterdir()):
                    raise UserError(f"run folder {self.run_dir} already exists and is not empty; pass resume=True "
                                    "to continue that run, or choose a new folder")
                self._writer = RunWriter(self.run_dir)
                self._writer.write_run_json(self.config, self.dataset, self.topology, extra=self.extra)
                if self.parts.node_sets:
                    self._writer.snapshot(0, 0, self._probs(), multipliers=self._multiplier_arrays())
        except BaseException:
            if own:
                lock.release()
            self._writer = None
            raise
        self._lock = lock if own else None  # a lock handed in stays with its owner
        self._t0 = time.perf_counter()
        return self

    def _reopen(self, has_run: bool) -> None:
        if has_run:
            old = fmt.read_run(self.run_dir).topology.to_json()
            for key in ("node_sets", "layers"):
                if _structure(key, old.get(key)) != _structure(key, self.topology[key]):
                    raise UserError(
                        f"cannot resume {self.run_dir}: its {key.replace('_', ' ')} differ from this model's "
                        f"({fmt.RUN_JSON} lists {[d.get('name') for d in old.get(key) or []]}, the model has "
                        f"{[d['name'] for d in self.topology[key]]})")
        self._writer = RunWriter(self.run_dir)
        if self.resume_at_step is not None:
            # the folder must match the checkpoint before anything new is written: records after
            # it came from a process killed before its next checkpoint
            self._writer.truncate_after(self.resume_at_step)
        self._writer.repair()
        metrics = fmt.read_metrics(self.run_dir)
        steps = [int(r.get("step") or 0) for r in metrics] + [e["step"] for e in self._writer.entries]
        self._last_seen = max(steps, default=0)
        self._last_step = self._last_seen
        if metrics:
            self._epoch = int(metrics[-1].get("epoch") or 0)
            self._seconds0 = float(metrics[-1].get("seconds") or 0.0)
        if self.resume_at_step is not None:  # already cut: nothing later to replace
            self._last_seen = None
            self._last_step = self.resume_at_step

    def _before_write(self, step: int) -> None:
        """After a resume, the first write at or before the recorded end replaces what followed."""
        if self._last_seen is not None:
            if 0 < step <= self._last_seen:
                self._writer.truncate_after(step - 1)
                self._last_step = step
            self._last_seen = None
        self._last_step = max(self._last_step, step)

    def close(self, last: bool = True) -> None:
        """Write the final ``last`` snapshot (weights at the last step) and release the folder.

        ``last=False`` releases it without that snapshot: for a loop that saves its own (our
        trainer does at every epoch end and on Ctrl-C), or one stopped in the middle of a step.
        """
        if self._writer is None:
            return
        try:
            if self.enabled and last:
                entry = next((e for e in self._writer.entries if e["step"] == self._last_step), None)
                if entry is None or "last" not in entry["tags"] or not entry.get("has_weights"):
                    self.snapshot(self._last_step, tag="last")
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:  # a failed step: keep what was written, add nothing from a half-updated model
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._writer = None

    # ------------------------------------------------------------------ records
    def _require_open(self, what: str) -> RunWriter:
        if self._writer is None:
            raise RuntimeError(f"RunLogger.{what}: the logger is not open; use `with RunLogger(...) as log:` "
                               "or call open() first")
        return self._writer

    @torch.no_grad()
    def _probs(self) -> dict[str, np.ndarray]:
        return {name: ns.probs.detach().float().cpu().numpy() for name, ns in self.parts.node_sets}

    def _multiplier_arrays(self) -> Mapping[str, np.ndarray] | None:
        return None if self._multipliers is None else self._multipliers() or None

    def probs_summary(self) -> dict[str, dict[str, float]]:
        """The ``probs`` value :meth:`log_metrics` adds: per node set, the mean of P and the
        shares of entries below 0.1 and above 0.9 (``{}`` for a network without node sets)."""
        return _probs_summary(self._probs())

    @torch.no_grad()
    def _weights(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        weights, biases = {}, {}
        for name, layer, _, _, _ in self.parts.layers:
            weights[name] = layer.weight.detach().float().cpu().numpy()
            if getattr(layer, "bias", None) is not None:
                biases[name] = layer.bias.detach().float().cpu().numpy()
        return weights, biases

    def log_metrics(self, step: int, **values: Any) -> None:
        """Append one record to ``metrics.jsonl``.

        The dashboard plots ``train_loss``, ``train_acc``, ``test_loss`` and ``test_acc``; give
        ``epoch`` too (the summary counts epochs from it). Tensors and numpy numbers are turned
        into numbers; NaN and infinity into null (JSON has neither). ``seconds`` (time since
        the logger opened, across resumes) and ``probs`` (a summary of every node set's P) are
        added unless given.
        """
        writer = self._require_open("log_metrics")
        step = _check_step(step, "log_metrics")
        record: dict[str, Any] = {"step": step}
        for key, value in values.items():
            record[key] = _json_value(key, value)
        if record.get("epoch") is not None:
            self._epoch = _check_step(record["epoch"], "log_metrics", "epoch")
        record.setdefault("seconds", round(self._seconds0 + time.perf_counter() - self._t0, 3))
        if self.parts.node_sets and "probs" not in record:
            record["probs"] = self.probs_summary()
        if self.enabled:
            self._before_write(step)
        writer.log_metrics(record)

    def snapshot(self, step: int, tag: str | Iterable[str] | None = None, *, epoch: int | None = None,
                 weights: bool | None = None) -> None:
        """Save every node set's P at ``step`` (and, with a tag, the weights).

        Parameters
        ----------
        step : int
            Training step (optimiser steps so far).
        tag : {"best", "last"} or a list of them, optional
            ``best`` marks the snapshot to analyse by default (the best test accuracy), ``last``
            the final one; a tag moves to this step from wherever it was. Tagged snapshots keep
            the weights (``weight__<layer>``, ``bias__<layer>``); others drop them once untagged.
        epoch : int, optional
            Default: the last ``epoch`` given to :meth:`log_metrics` (0 before any).
        weights : bool, optional
            Save the weights; default: when tagged. Untagged weights are dropped again at once.
        """
        writer = self._require_open("snapshot")
        step = _check_step(step, "snapshot")
        tags = [] if tag is None else [tag] if isinstance(tag, str) else list(tag)
        bad = [t for t in tags if t not in TAGS]
        if bad:
            raise ValueError(f"snapshot tags must be among {', '.join(TAGS)}, got {bad[0]!r}")
        with_weights = bool(tags) if weights is None else bool(weights)
        if not self.parts.node_sets and not with_weights:
            return  # a plain head has no P: only weight snapshots mean anything
        if not self.enabled:
            return
        self._before_write(step)
        w, b = self._weights() if with_weights else (None, None)
        writer.snapshot(step, self._epoch if epoch is None else _check_step(epoch, "snapshot", "epoch"),
                        self._probs(), w, b, multipliers=self._multiplier_arrays(), tags=tags)


def _head_arrays(heads: list[BlockoutHead], parts: BlockoutParts) -> Callable[[], dict[str, np.ndarray]]:
    """The recipe arrays of every head, under the layer names of ``parts`` (prefixed with the
    head's path when the model has several heads, as the snapshots' other arrays are)."""
    names = {id(layer): name for name, layer, _, _, _ in parts.layers}

    def arrays() -> dict[str, np.ndarray]:
        return {names[id(h.fc[layer])]: a for h in heads for layer, a in h.snapshot_arrays().items()}

    return arrays


def _structure(key: str, items: Any) -> list[tuple]:
    """What must agree for a resume: node sets' names and sizes, layers' names and wiring (not
    what may change while training, such as whether memberships still train)."""
    fields = {"node_sets": ("name", "size", "clusters"),
              "layers": ("name", "in_set", "out_set", "in_features", "out_features")}[key]
    return [tuple(d.get(f) for f in fields) if isinstance(d, Mapping) else (d,) for d in items or []]


def _ignorable(p: Path) -> bool:
    """The lock file and leftovers of killed atomic writes do not make a folder a run."""
    from blockout.runwriter import LOCK_NAME

    return p.name == LOCK_NAME or (p.name.startswith(".") and p.name.endswith(".tmp"))
