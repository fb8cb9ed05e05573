"""The network as a graph: the layer graph (what a Sankey draws) and the branch tree (docs/analysis.md).

Layer graph
    Vertices are ``(node set, signature)`` groups at threshold ``tau`` (id ``"<depth>:<code>"``),
    with their ``size``. An edge joins a group of node set ``j`` to a group of node set ``j+1``
    when their signatures intersect, i.e. every connection between the two groups is live under
    the thresholded mask ``M = C_out C_in^T``. Edge attributes: ``live`` (number of live
    connections, ``size_out * size_in``), ``shared`` (clusters the two signatures share, the
    value of the count mask on that block) and, when weights are given, ``mean_abs_w``: the mean of
    ``|W ⊙ M|`` over the block (``M`` = ``shared`` for the count mask, 1 for the union mask).

Branch tree
    For node set ``j``, clusters that co-occur in some node's signature are joined; the connected
    components form a partition ``Π_j`` of the ``k`` clusters. Refinement runs down the network,
    ``R_0 = Π_trunk``, ``R_j = R_{j-1} ∧ Π_j`` (blocks are the non-empty intersections). A tree vertex
    is a distinct block: a block that equals its parent block is the same vertex (no unary chains);
    ``split_at`` names the node set where it first appeared. The **root** is the block of all
    clusters: with an all-shared trunk ``R_0`` is that single block and the trunk *is* the root;
    otherwise the root is a virtual vertex above the blocks of ``R_0``. A cluster with no node in
    some node set ends up in its own block there and the vertex is flagged ``dead`` (no path runs
    through it). Each class hangs under the deepest vertex whose clusters hold all of the class's
    clusters; classes in no cluster hang under a ``dead`` vertex below the root.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import networkx as nx
import numpy as np

from analysis.threshold import Thresholded, code_clusters, code_label, threshold_all

__all__ = [
    "cluster_partition",
    "meet",
    "layer_graph",
    "build_layer_graph",
    "branch_tree",
    "build_branch_tree",
    "tree_class_groups",
    "tree_classes",
]

LabelFn = Callable[[list[int]], "str | None"]


def cluster_partition(codes: np.ndarray, k: int) -> np.ndarray:
    """Partition label per cluster: clusters co-occurring in a signature share a label.

    Labels are the smallest cluster index of each component; clusters in no signature stay
    singletons.

    >>> cluster_partition(np.array([0b011, 0b100, 0b110, 0]), 4).tolist()
    [0, 0, 0, 3]
    >>> cluster_partition(np.array([0b0011, 0b1100]), 4).tolist()
    [0, 0, 2, 2]
    """
    parent = list(range(k))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for code in np.unique(np.asarray(codes, dtype=np.int64)):
        cl = code_clusters(int(code))
        for other in cl[1:]:
            ra, rb = find(cl[0]), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(c) for c in range(k)], dtype=np.int64)


def meet(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Common refinement of two partitions given as label arrays (labels = smallest member).

    >>> meet(np.array([0, 0, 0, 0]), np.array([0, 0, 2, 2])).tolist()
    [0, 0, 2, 2]
    >>> meet(np.array([0, 0, 2, 2]), np.array([0, 1, 1, 1])).tolist()
    [0, 1, 2, 2]
    """
    a, b = np.asarray(a), np.asarray(b)
    pair = a * (len(a) + 1) + b
    out = np.empty(len(a), dtype=np.int64)
    for p in np.unique(pair):
        idx = np.flatnonzero(pair == p)
        out[idx] = idx.min()
    return out


def _popcount(x: int) -> int:
    return bin(int(x)).count("1")


def _block_abs_sums(W: np.ndarray, g_out: np.ndarray, n_out: int, g_in: np.ndarray, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` sums of ``|W|`` over row groups ``g_out`` and column groups ``g_in``."""
    A = np.abs(W, dtype=np.float32) if W.dtype != np.float64 else np.abs(W)
    ro = np.argsort(g_out, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(g_out[ro]) != 0])
    rows = np.add.reduceat(A[ro], starts, axis=0)  # (groups present, in)
    co = np.argsort(g_in, kind="stable")
    cstarts = np.flatnonzero(np.r_[True, np.diff(g_in[co]) != 0])
    blocks = np.add.reduceat(rows[:, co], cstarts, axis=1)
    out = np.zeros((n_out, n_in), dtype=np.float64)
    out[np.ix_(np.unique(g_out), np.unique(g_in))] = blocks
    return out


def build_layer_graph(
    thresholded: Mapping[str, Thresholded],
    chain: Sequence[str],
    weights: Mapping[tuple[str, str], np.ndarray] | None = None,
    masks: Mapping[tuple[str, str], str | None] | None = None,
) -> nx.DiGraph:
    """Layer graph from thresholded node sets in network order.

    Parameters
    ----------
    thresholded : ``{node set: Thresholded}``.
    chain : node-set names in network order.
    weights : optional ``{(in_set, out_set): W (out, in)}``.
    masks : optional ``{(in_set, out_set): "count" | "union"}`` (default count).

    >>> from analysis.threshold import threshold
    >>> th = {"a": threshold(np.array([[1., 1.], [1., 1.]]), .5, "a"),
    ...       "b": threshold(np.array([[1., 0.], [0., 1.], [0., 1.]]), .5, "b")}
    >>> g = build_layer_graph(th, ["a", "b"])
    >>> sorted((u, v, d["live"]) for u, v, d in g.edges(data=True))
    [('0:3', '1:1', 2), ('0:3', '1:2', 4)]
    """
    G = nx.DiGraph(kind="layer_graph", tau=float(next(iter(thresholded.values())).tau) if thresholded else 0.5)
    groups: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for j, name in enumerate(chain):
        th = thresholded[name]
        uniq, inv, counts = np.unique(th.codes, return_inverse=True, return_counts=True)
        groups[name] = (uniq, inv.ravel(), counts)
        for code, n in zip(uniq, counts):
            G.add_node(
                f"{j}:{int(code)}", node_set=name, depth=j, code=int(code), signature=code_label(code),
                clusters=code_clusters(code), size=int(n), label=f"{name} {code_label(code)}",
            )
    for j in range(len(chain) - 1):
        a, b = chain[j], chain[j + 1]
        ua, ia, ca = groups[a]
        ub, ib, cb = groups[b]
        W = None if weights is None else weights.get((a, b))
        mask = (masks or {}).get((a, b)) or "count"
        sums = None
        if W is not None:
            if W.shape != (len(ib), len(ia)):
                raise ValueError(f"weight of layer {a}->{b} has shape {W.shape}, expected {(len(ib), len(ia))}")
            sums = _block_abs_sums(W, ib, len(ub), ia, len(ua))  # (groups of b, groups of a)
        for x, code_a in enumerate(ua):
            for y, code_b in enumerate(ub):
                shared = _popcount(int(code_a) & int(code_b))
                if shared == 0:
                    continue
                live = int(ca[x]) * int(cb[y])
                attrs = {"live": live, "shared": shared, "weight": float(live)}
                if sums is not None:
                    factor = shared if mask == "count" else 1
                    attrs["mean_abs_w"] = float(sums[y, x] * factor / live)
                G.add_edge(f"{j}:{int(code_a)}", f"{j + 1}:{int(code_b)}", **attrs)
    return G


def layer_graph(run, tau: float = 0.5, step: int | None = None, with_weights: bool = True) -> nx.DiGraph:
    """Layer graph of a loaded :class:`~analysis.run.Run` at ``tau`` and snapshot ``step``.

    Weights come from the snapshot with weights nearest to ``step`` (graph attribute
    ``weights_step``); without any saved weights the edges carry no ``mean_abs_w``.
    """
    chain = run.chain
    th = threshold_all(run.probs(step), tau)
    weights, masks, wstep = None, {}, None
    if with_weights and run.weight_steps():
        ws = run.weights(step)
        wstep = ws.step
        weights = {}
        for lay in run.layers:
            if lay.in_set and lay.out_set and lay.name in ws:
                weights[(lay.in_set, lay.out_set)] = ws[lay.name][0]
                masks[(lay.in_set, lay.out_set)] = lay.mask
    G = build_layer_graph(th, chain, weights, masks)
    G.graph.update(step=run.last_step if step is None else int(step), weights_step=wstep, run=run.name)
    return G


def build_branch_tree(
    thresholded: Mapping[str, Thresholded],
    chain: Sequence[str],
    class_set: str | None = None,
    class_names: Sequence[str] | None = None,
    label_fn: LabelFn | None = None,
) -> nx.DiGraph:
    """The refinement tree (module docstring) from thresholded node sets in network order.

    Vertex attributes: ``kind`` (root | block | dead | class), ``depth`` (edges from the root),
    ``clusters`` (tuple), ``code`` (bitmask), ``split_at`` (node set where the block appeared),
    ``n_nodes`` (nodes of that set whose signature lies inside the block), ``size`` (classes below),
    ``classes`` (tuple of class indices below), ``dead`` (bool), ``label`` and ``hypernym`` (from
    ``label_fn(class indices)``, "" when unknown). Class leaves also carry ``class_index``.
    Graph attributes: ``root``, ``tau``, ``kind="branch_tree"``.

    >>> from analysis.threshold import threshold
    >>> I = np.eye(4)
    >>> th = {"t": threshold(np.ones((2, 4)), .5, "t"),
    ...       "h": threshold(np.array([[1, 1, 0, 0], [0, 0, 1, 1.]]), .5, "h"),
    ...       "c": threshold(I[[0, 1, 2, 3]], .5, "c")}
    >>> T = build_branch_tree(th, ["t", "h", "c"], "c", list("ABCD"))
    >>> sorted(T.nodes[v]["label"] for v in T.successors(T.graph["root"]))
    ['{0,1}', '{2,3}']
    """
    if not chain:
        raise ValueError("chain is empty")
    k = thresholded[chain[0]].k
    full = (1 << k) - 1
    G = nx.DiGraph(kind="branch_tree", tau=float(thresholded[chain[0]].tau))
    bit = 1 << np.arange(k, dtype=np.int64)

    def block_code(labels: np.ndarray, lab: int) -> int:
        return int(bit[labels == lab].sum())

    # Which clusters have at least one node in each set (a block is dead if none of its clusters
    # has a node in some set).
    touched = {name: int(np.bitwise_or.reduce(thresholded[name].codes)) if thresholded[name].size else 0
               for name in chain}

    def is_dead(code: int) -> bool:
        return any((touched[name] & code) == 0 for name in chain)

    def n_nodes(name: str, code: int) -> int:
        c = thresholded[name].codes
        return int(((c != 0) & ((c & ~code) == 0)).sum())

    root = "root"
    R = np.zeros(k, dtype=np.int64)  # the trivial partition: all clusters in one block
    vertex_of = {0: root}  # partition label -> vertex id
    G.add_node(root, kind="root", depth=0, clusters=tuple(range(k)), code=full, split_at=chain[0],
               n_nodes=n_nodes(chain[0], full), dead=is_dead(full))
    counter = 0
    for j, name in enumerate(chain):
        pi = cluster_partition(thresholded[name].codes, k)
        R_new = meet(R, pi)
        new_vertex_of = {}
        for lab in np.unique(R_new):
            code = block_code(R_new, lab)
            parent_lab = int(R[lab])
            parent = vertex_of[parent_lab]
            if code == G.nodes[parent]["code"]:
                new_vertex_of[int(lab)] = parent  # no split: same vertex
                continue
            vid = f"b{counter}"
            counter += 1
            G.add_node(vid, kind="block", depth=G.nodes[parent]["depth"] + 1, clusters=code_clusters(code),
                       code=code, split_at=name, n_nodes=n_nodes(name, code), dead=is_dead(code))
            G.add_edge(parent, vid)
            new_vertex_of[int(lab)] = vid
        R, vertex_of = R_new, new_vertex_of

    for v, d in G.nodes(data=True):
        d["label"] = code_label(d["code"]) if d["kind"] == "block" else "root"
        d["hypernym"] = ""

    if class_set is not None:
        codes = thresholded[class_set].codes
        names = list(class_names) if class_names is not None else [f"class {i}" for i in range(len(codes))]
        if len(names) != len(codes):
            raise ValueError(f"{len(names)} class names for {len(codes)} class nodes")
        home: dict[int, str] = {}
        for code in np.unique(codes):
            code = int(code)
            if code == 0:
                if "dead" not in G:
                    G.add_node("dead", kind="dead", depth=1, clusters=(), code=0, split_at=class_set,
                               n_nodes=0, dead=True, label="dead (no cluster)", hypernym="")
                    G.add_edge(root, "dead")
                home[code] = "dead"
                continue
            v = root
            while True:
                nxt = [c for c in G.successors(v) if G.nodes[c]["kind"] == "block" and (code & ~G.nodes[c]["code"]) == 0]
                if not nxt:
                    break
                v = nxt[0]
            home[code] = v
        for i, code in enumerate(codes):
            parent = home[int(code)]
            G.add_node(f"c{i}", kind="class", depth=G.nodes[parent]["depth"] + 1, clusters=code_clusters(code),
                       code=int(code), split_at=class_set, n_nodes=1, dead=int(code) == 0, label=str(names[i]),
                       hypernym="", class_index=i)
            G.add_edge(parent, f"c{i}")

    # classes below each vertex (post-order) and labels from label_fn
    for v in reversed(list(nx.topological_sort(G))):
        d = G.nodes[v]
        if d["kind"] == "class":
            d["classes"] = (d["class_index"],)
        else:
            d["classes"] = tuple(sorted(i for c in G.successors(v) for i in G.nodes[c]["classes"]))
        d["size"] = len(d["classes"])
        if d["kind"] in ("root", "block") and label_fn is not None and d["classes"]:
            name = label_fn(list(d["classes"]))
            if name:
                d["hypernym"] = str(name)
                d["label"] = f"{name} {code_label(d['code'])}"
    G.graph["root"] = root
    return G


def branch_tree(run, tau: float = 0.5, step: int | None = None, label_fn: LabelFn | None = None) -> nx.DiGraph:
    """Branch tree of a loaded run (classes = the ``classes`` node set, named by the dataset).

    ``label_fn(class indices) -> str | None`` labels inner vertices (e.g. the WordNet lowest
    common hypernym of their classes); see :func:`build_branch_tree`.
    """
    th = threshold_all(run.probs(step), tau)
    cs = run.class_set
    G = build_branch_tree(th, run.chain, cs.name if cs else None, run.class_names if cs else None, label_fn)
    G.graph.update(step=run.last_step if step is None else int(step), run=run.name)
    return G


def tree_classes(G: nx.DiGraph, v: str) -> tuple[int, ...]:
    """Class indices below vertex ``v`` of a branch tree."""
    return tuple(G.nodes[v]["classes"])


def tree_class_groups(G: nx.DiGraph, depth: int | None = None) -> np.ndarray:
    """Flat class groups from a branch tree: ``(n_classes,)`` integer labels.

    ``depth=None`` groups each class with its siblings (same parent vertex, the finest grouping);
    ``depth=d`` groups classes by their ancestor at tree depth ``d`` (classes shallower than ``d``
    keep their parent). Labels are numbered 0.. in order of first appearance.
    """
    classes = sorted((d["class_index"], v) for v, d in G.nodes(data=True) if d["kind"] == "class")
    out = np.empty(len(classes), dtype=np.int64)
    ids: dict[str, int] = {}
    for i, v in classes:
        path = []  # root .. parent, by walking up the (unique) predecessors
        u = v
        while True:
            preds = list(G.predecessors(u))
            if not preds:
                break
            u = preds[0]
            path.append(u)
        path.reverse()
        anc = path[-1] if depth is None else path[min(depth, len(path) - 1)]
        out[i] = ids.setdefault(anc, len(ids))
    return out


def wordnet_labeler(run) -> LabelFn | None:
    """``label_fn`` naming a vertex by the WordNet lowest common hypernym of its classes.

    Uses :func:`analysis.wordnet.references.class_lch_labeler` (the shipped WordNet 3.0 nouns, and
    the run's WordNet ids when it has them). ``None`` when no class maps to a synset.
    """
    from analysis.errors import UserError

    try:
        from analysis.wordnet.references import class_lch_labeler

        label = class_lch_labeler(run.class_names, run.wnids)
        if all(label([i]) is None for i in range(len(run.class_names))):
            return None
        return label
    except (ImportError, UserError, KeyError, ValueError):
        return None
