"""What compiling a thresholded Blockout stack into a branched network keeps (numpy only).

At threshold ``tau`` node ``i`` of a node set belongs to cluster ``l`` when ``P[i, l] >= tau``; its
*signature* is that set of clusters (an integer bitmask, :mod:`analysis.threshold`). A connection
between two nodes of consecutive sets is *live* when their signatures intersect: the thresholded
mask (``C_out C_in^T``, count or union) is nonzero exactly there. Compiling keeps only what can
reach a class through live connections:

* **varying** nodes (forward): every trunk node is an input; a later node varies with the input
  when it has a live connection to a varying node of the set before. A node that does not vary
  (no cluster, or only live inputs from constant nodes) outputs a constant, ``act(b + ...)``, which
  the compiler folds into the biases of the next layer. A class that does not vary predicts from
  its bias alone (plus folded constants).
* **kept** nodes (backward): every varying class; a varying hidden node with a live connection to
  a kept node of the next set; the trunk nodes with a live connection to a kept node of the first
  hidden set. Everything else (dead nodes: no cluster, or no live path to a class) is removed.

Kept nodes are grouped by signature, groups ordered so that a nested (tree-like) family of
signatures comes out in depth-first order (lowest cluster first, wider signatures before the
narrower ones they contain). Each layer then becomes *blocks*: a run of output groups and the
input ranges (in the previous set's kept order) whose signatures intersect theirs; output groups
with the same inputs share a block. Every entry of a block is live, so the block's dense matrix
product does exactly the work of the live connections. A node in several clusters simply takes
part in several blocks' inputs.

:func:`plan_blocks` is the pure computation (signature codes in, plan out); :func:`plan_run`
thresholds a run's memberships first. Counting (parameters, multiply-adds, live density, the
branch structure) needs nothing else, so the dashboard shows it without torch; the training core
(``blockout.compile``) builds the torch modules from the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from analysis.errors import UserError
from analysis.threshold import code_clusters, signature_codes, binarize

__all__ = ["Block", "LayerPlan", "CompilePlan", "plan_blocks", "plan_run", "group_order", "live_connections",
           "macs_reduction"]


@dataclass(frozen=True)
class Block:
    """Output rows ``[out_start, out_stop)`` (kept order of the layer's output set) computed from
    the input columns ``in_ranges`` (``[start, stop)`` pairs in the kept order of the input set)."""

    out_start: int
    out_stop: int
    in_ranges: tuple[tuple[int, int], ...]

    @property
    def out_size(self) -> int:
        return self.out_stop - self.out_start

    @property
    def in_size(self) -> int:
        return sum(b - a for a, b in self.in_ranges)

    def to_json(self) -> dict:
        return {"out": [self.out_start, self.out_stop], "in": [list(r) for r in self.in_ranges]}


@dataclass(frozen=True)
class LayerPlan:
    """One FC layer of the compiled network.

    Attributes
    ----------
    name, in_set, out_set : layer and node-set names.
    in_nodes, out_nodes : int64 original indices of the kept input / output nodes, in block order.
    blocks : the dense blocks (see :class:`Block`).
    in_features, out_features : sizes of the original dense layer.
    live : live connections of the thresholded layer (all nodes, before removal).
    """

    name: str
    in_set: str
    out_set: str
    in_nodes: np.ndarray
    out_nodes: np.ndarray
    blocks: tuple[Block, ...]
    in_features: int
    out_features: int
    live: int

    @property
    def density(self) -> float:
        """Share of the dense layer's connections that are live at ``tau``."""
        return self.live / max(1, self.in_features * self.out_features)

    @property
    def macs_before(self) -> int:
        return self.in_features * self.out_features

    @property
    def macs_after(self) -> int:
        return sum(b.out_size * b.in_size for b in self.blocks)

    @property
    def params_before(self) -> int:
        return self.in_features * self.out_features + self.out_features

    @property
    def params_after(self) -> int:
        return self.macs_after + len(self.out_nodes)

    def equal_blocks(self) -> bool:
        """True when the blocks are a block diagonal of equal squares-or-rectangles tiling both sides
        in order (one contiguous input range each): a single batched matrix product computes it."""
        if len(self.blocks) < 2:
            return False
        first = self.blocks[0]
        pos_in = pos_out = 0
        for b in self.blocks:
            if len(b.in_ranges) != 1 or b.out_size != first.out_size or b.in_size != first.in_size:
                return False
            (a, e), = b.in_ranges
            if a != pos_in or b.out_start != pos_out:
                return False
            pos_in, pos_out = e, b.out_stop
        return pos_in == len(self.in_nodes) and pos_out == len(self.out_nodes)

    def summary(self) -> dict:
        return {
            "layer": self.name, "in_set": self.in_set, "out_set": self.out_set,
            "in_features": self.in_features, "out_features": self.out_features,
            "live_connections": self.live, "live_density": self.density,
            "kept_in": int(len(self.in_nodes)), "kept_out": int(len(self.out_nodes)),
            "blocks": len(self.blocks), "equal_blocks": self.equal_blocks(),
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "params_before": self.params_before, "params_after": self.params_after,
        }


@dataclass(frozen=True)
class CompilePlan:
    """The compiled structure of a whole FC stack (build with :func:`plan_blocks`).

    Attributes
    ----------
    chain : node-set names, trunk first, classes last.
    layers : names of the layers between consecutive sets.
    codes : ``{set: int64 (n,)}`` signature bitmasks.
    varying, kept : ``{set: bool (n,)}``.
    layer_plans : one :class:`LayerPlan` per layer.
    const_classes : int64 indices of the classes with no live path from the input.
    groups : per set after the trunk, ``[{code, clusters, nodes, classes}]`` in block order, where
        ``classes`` are the class indices the group serves (reaches through live connections).
    branches : connected components of the groups below the trunk (joined by live connections):
        ``[{sets: {set: [codes]}, nodes, classes}]``.
    """

    tau: float | None
    k: int
    chain: tuple[str, ...]
    layers: tuple[str, ...]
    codes: dict
    varying: dict
    kept: dict
    layer_plans: tuple[LayerPlan, ...]
    const_classes: np.ndarray
    groups: dict = field(default_factory=dict)
    branches: list = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return int(len(self.codes[self.chain[-1]]))

    @property
    def macs_before(self) -> int:
        return sum(lp.macs_before for lp in self.layer_plans)

    @property
    def macs_after(self) -> int:
        return sum(lp.macs_after for lp in self.layer_plans)

    @property
    def params_before(self) -> int:
        return sum(lp.params_before for lp in self.layer_plans)

    @property
    def params_after(self) -> int:
        # the constant classes keep one number each (their logit)
        return sum(lp.params_after for lp in self.layer_plans) + int(len(self.const_classes))

    def removed(self) -> dict:
        """``{set: nodes removed}`` (dead or unable to reach a class; constants folded)."""
        return {s: int(len(self.kept[s]) - self.kept[s].sum()) for s in self.chain}

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """Plain-typed numbers for tables and JSON."""
        name = (lambda c: class_names[c]) if class_names is not None else (lambda c: int(c))
        return {
            "tau": self.tau, "clusters": self.k,
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "macs_ratio": self.macs_after / max(1, self.macs_before),
            "layers": [lp.summary() for lp in self.layer_plans],
            "removed_nodes": self.removed(),
            "kept_nodes": {s: int(self.kept[s].sum()) for s in self.chain},
            "const_classes": [name(c) for c in self.const_classes],
            "branches": [{"sets": b["sets"], "nodes": b["nodes"], "classes": [name(c) for c in b["classes"]]}
                         for b in self.branches],
        }


def macs_reduction(before: int, after: int, times: str = "×") -> str:
    """How many times fewer multiply-adds, as text; with nothing live left (a τ above every P, a run
    stopped before its memberships formed) there is no ratio to give.

    >>> macs_reduction(1000, 250), macs_reduction(1000, 250, "x"), macs_reduction(1000, 0)
    ('4.00× fewer', '4.00x fewer', 'no live connection left')
    """
    return f"{before / after:.2f}{times} fewer" if after > 0 else "no live connection left"


def _low_bit(code: int) -> int:
    code = int(code)
    return (code & -code).bit_length() - 1 if code else 10 ** 6


def group_order(codes: np.ndarray) -> list[int]:
    """Distinct signature codes in block order: lowest cluster first, then wider signatures first.

    For a nested family of signatures (a tree) this is depth-first order, so the inputs of every
    narrower signature downstream form one contiguous range.

    >>> group_order(np.array([0b001, 0b110, 0b100, 0b111, 0b010]))
    [7, 1, 6, 2, 4]
    """
    uniq = [int(c) for c in np.unique(np.asarray(codes, dtype=np.int64))]
    return sorted(uniq, key=lambda c: (_low_bit(c), -bin(c).count("1"), c))


def live_connections(codes_out: np.ndarray, codes_in: np.ndarray) -> int:
    """Number of (out, in) pairs whose signatures intersect, counted per distinct signature pair.

    >>> live_connections(np.array([1, 2, 3]), np.array([1, 1, 2, 0]))
    6
    """
    uo, co = np.unique(np.asarray(codes_out, np.int64), return_counts=True)
    ui, ci = np.unique(np.asarray(codes_in, np.int64), return_counts=True)
    inter = (uo[:, None] & ui[None, :]) != 0
    return int((co[:, None] * ci[None, :] * inter).sum())


def _ordered(codes: np.ndarray, mask: np.ndarray, keep_natural: bool = False) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Kept nodes (``mask``) in block order and their groups ``(code, start, stop)``."""
    idx = np.flatnonzero(mask)
    sub = codes[idx]
    if keep_natural and len(np.unique(sub)) <= 1:
        return idx, ([(int(sub[0]), 0, len(idx))] if len(idx) else [])
    order_codes = group_order(sub)
    rank = {c: r for r, c in enumerate(order_codes)}
    keys = np.array([rank[int(c)] for c in sub], dtype=np.int64)
    perm = np.argsort(keys, kind="stable")
    idx = idx[perm]
    sorted_keys = keys[perm]
    groups = []
    for r, c in enumerate(order_codes):
        lo, hi = np.searchsorted(sorted_keys, [r, r + 1])
        groups.append((c, int(lo), int(hi)))
    return idx, groups


def _merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def plan_blocks(codes: Sequence[np.ndarray], k: int, set_names: Sequence[str] | None = None,
                layer_names: Sequence[str] | None = None, tau: float | None = None) -> CompilePlan:
    """Plan the compiled network of a thresholded FC stack.

    Parameters
    ----------
    codes : sequence of int64 arrays
        Signature bitmasks of every node set in network order (trunk first, classes last).
    k : int
        Number of clusters.
    set_names, layer_names : optional names (default ``s0, s1, ...`` and ``fc1, fc2, ...``).
    tau : the threshold the codes came from (recorded only).

    Returns
    -------
    CompilePlan

    Examples
    --------
    Two branches of two hidden nodes each, one class per branch, a dead hidden node (code 0):

    >>> p = plan_blocks([np.array([3, 3]), np.array([1, 1, 2, 2, 0]), np.array([1, 2])], 2)
    >>> [b.to_json() for b in p.layer_plans[1].blocks]
    [{'out': [0, 1], 'in': [[0, 2]]}, {'out': [1, 2], 'in': [[2, 4]]}]
    >>> p.macs_before, p.macs_after, p.kept["s1"].tolist()
    (20, 12, [True, True, True, True, False])
    """
    codes = [np.asarray(c, dtype=np.int64).reshape(-1) for c in codes]
    if len(codes) < 2:
        raise UserError("a compiled stack needs at least two node sets (trunk and classes)")
    names = list(set_names) if set_names is not None else [f"s{i}" for i in range(len(codes))]
    lnames = list(layer_names) if layer_names is not None else [f"fc{i}" for i in range(1, len(codes))]
    if len(names) != len(codes) or len(lnames) != len(codes) - 1:
        raise UserError(f"{len(codes)} node sets need {len(codes)} set names and {len(codes) - 1} layer names")
    L = len(codes) - 1

    def union(c: np.ndarray, m: np.ndarray) -> int:
        return int(np.bitwise_or.reduce(c[m])) if m.any() else 0

    # forward: which nodes vary with the input
    varying = [np.ones(len(codes[0]), bool)]
    for j in range(1, L + 1):
        u = union(codes[j - 1], varying[j - 1])
        varying.append((codes[j] & u) != 0)
    # backward: which nodes reach a class
    kept = [None] * (L + 1)
    kept[L] = varying[L].copy()
    for j in range(L - 1, -1, -1):
        u = union(codes[j + 1], kept[j + 1])
        kept[j] = varying[j] & ((codes[j] & u) != 0)

    orders, groups = [], []
    for j in range(L + 1):
        idx, grp = _ordered(codes[j], kept[j], keep_natural=(j == 0))
        orders.append(idx)
        groups.append(grp)

    layer_plans = []
    for j in range(1, L + 1):
        blocks: list[Block] = []
        in_groups = groups[j - 1]
        for code, s, e in groups[j]:
            rngs = _merge_ranges([(a, b) for c2, a, b in in_groups if c2 & code])
            if blocks and blocks[-1].in_ranges == rngs and blocks[-1].out_stop == s:
                blocks[-1] = Block(blocks[-1].out_start, e, rngs)
            else:
                blocks.append(Block(s, e, rngs))
        layer_plans.append(LayerPlan(
            name=lnames[j - 1], in_set=names[j - 1], out_set=names[j], in_nodes=orders[j - 1],
            out_nodes=orders[j], blocks=tuple(blocks), in_features=len(codes[j - 1]),
            out_features=len(codes[j]), live=live_connections(codes[j], codes[j - 1])))

    # classes each group serves, backward over group adjacency
    n_cls = len(codes[L])
    served = [None] * (L + 1)
    cls_order = orders[L]
    served[L] = np.zeros((len(groups[L]), n_cls), bool)
    for g, (_, s, e) in enumerate(groups[L]):
        served[L][g, cls_order[s:e]] = True
    for j in range(L - 1, 0, -1):
        adj = np.array([[bool(c1 & c2) for c2, _, _ in groups[j + 1]] for c1, _, _ in groups[j]], bool)
        adj = adj.reshape(len(groups[j]), len(groups[j + 1]))
        served[j] = (adj.astype(np.int64) @ served[j + 1].astype(np.int64)) > 0
    group_info = {}
    for j in range(1, L + 1):
        group_info[names[j]] = [
            {"code": int(c), "clusters": list(code_clusters(c)), "nodes": int(e - s),
             "classes": np.flatnonzero(served[j][g]).tolist()}
            for g, (c, s, e) in enumerate(groups[j])]

    # branches: connected components of the group graph below the trunk
    verts = [(j, g) for j in range(1, L + 1) for g in range(len(groups[j]))]
    vid = {v: i for i, v in enumerate(verts)}
    parent = list(range(len(verts)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for j in range(1, L):
        for g1, (c1, _, _) in enumerate(groups[j]):
            for g2, (c2, _, _) in enumerate(groups[j + 1]):
                if c1 & c2:
                    parent[find(vid[(j, g1)])] = find(vid[(j + 1, g2)])
    comps: dict[int, list[tuple[int, int]]] = {}
    for v in verts:
        comps.setdefault(find(vid[v]), []).append(v)
    branches = []
    for members in comps.values():
        sets: dict[str, list[int]] = {}
        nodes = 0
        cls = np.zeros(n_cls, bool)
        for j, g in members:
            c, s, e = groups[j][g]
            sets.setdefault(names[j], []).append(int(c))
            nodes += e - s if j < L else 0
            cls |= served[j][g]
        branches.append({"sets": sets, "nodes": int(nodes), "classes": np.flatnonzero(cls).tolist()})
    branches.sort(key=lambda b: (b["classes"][:1] or [n_cls], -b["nodes"]))

    return CompilePlan(
        tau=None if tau is None else float(tau), k=int(k), chain=tuple(names), layers=tuple(lnames),
        codes=dict(zip(names, codes)), varying=dict(zip(names, varying)), kept=dict(zip(names, kept)),
        layer_plans=tuple(layer_plans), const_classes=np.flatnonzero(~varying[L]).astype(np.int64),
        groups=group_info, branches=branches)


def plan_run(run, tau: float = 0.5, step: int | None = None) -> CompilePlan:
    """:func:`plan_blocks` for a loaded run (:func:`analysis.run.load_run`) at threshold ``tau``.

    Raises :class:`UserError` for a run without memberships (a plain network has nothing to compile).
    """
    chain = run.chain
    probs = run.probs(step)
    missing = [s for s in chain if s not in probs]
    if not probs or missing:
        raise UserError(f"{run.path}: run has no cluster memberships for {missing or chain} "
                        f"(method {run.config.get('method', '?')!r} is not a Blockout run): nothing to compile")
    by_out = {lay.out_set: lay.name for lay in run.layers if lay.out_set}
    layer_names = [by_out[s] for s in chain[1:]]
    codes = [signature_codes(binarize(probs[s], tau)) for s in chain]
    k = int(probs[chain[0]].shape[1])
    return plan_blocks(codes, k, chain, layer_names, tau=tau)
