"""Tree drawings over networkx graphs: a cladogram, a sunburst, an icicle, a Sankey, a tanglegram.

The builders read two optional node attributes, ``label`` (short text drawn on the figure) and
``hover`` (HTML hover text); pages set them from the analysis results (sizes, classes, WordNet
labels). Any other attributes are ignored, so the builders work on any ``networkx.DiGraph``.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import networkx as nx
import numpy as np
import plotly.graph_objects as go

from app.figures.common import color, empty_figure, node_set_color


def tree_root(tree: nx.DiGraph) -> Hashable:
    """The unique vertex without a parent; raises ``ValueError`` when there is not exactly one.

    >>> tree_root(nx.DiGraph([("r", "a"), ("r", "b")]))
    'r'
    """
    roots = [n for n in tree.nodes if tree.in_degree(n) == 0]
    if len(roots) != 1:
        raise ValueError(f"a tree needs exactly one root; found {len(roots)}")
    return roots[0]


def _children(tree: nx.DiGraph, node, order: Mapping | None) -> list:
    kids = list(tree.successors(node))
    if order is not None:
        kids.sort(key=lambda k: order.get(k, 0.0))
    return kids


def tree_layout(tree: nx.DiGraph, root=None, order: Mapping | None = None) -> dict:
    """Cladogram positions: leaves at consecutive ``y`` in depth-first order, parents at the mean
    ``y`` of their children, ``x`` = depth.

    Parameters
    ----------
    order : mapping vertex -> sort key, optional
        Orders children (used by the tanglegram to untangle lines).

    Returns
    -------
    dict vertex -> (x, y)

    >>> pos = tree_layout(nx.DiGraph([("r", "a"), ("r", "b")]))
    >>> pos["r"], pos["a"], pos["b"]
    ((0, 0.5), (1, 0.0), (1, 1.0))
    """
    root = tree_root(tree) if root is None else root
    pos: dict = {}
    next_leaf = [0.0]
    # Iterative post-order (trees of 1000+ leaves exceed no recursion limit this way).
    stack = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        kids = _children(tree, node, order)
        if not kids:
            pos[node] = (depth, next_leaf[0])
            next_leaf[0] += 1.0
        elif done:
            pos[node] = (depth, float(np.mean([pos[k][1] for k in kids])))
        else:
            stack.append((node, depth, True))
            for k in reversed(kids):
                stack.append((k, depth + 1, False))
    return pos


def _edge_xy(tree: nx.DiGraph, pos: Mapping):
    """Elbow edges as one x/y list with ``None`` breaks (one trace however many edges)."""
    xs, ys = [], []
    for u, v in tree.edges:
        (xu, yu), (xv, yv) = pos[u], pos[v]
        xs += [xu, xu, xv, None]
        ys += [yu, yv, yv, None]
    return xs, ys


def _root_text(label) -> str:
    """The root's drawn label: without its cluster list when that makes it long.

    >>> _root_text("entity.n.01 {0,1,2,3,4,5,6,7,8,9,10,11}"), _root_text("root {0,1}")
    ('entity.n.01 (all clusters)', 'root {0,1}')
    """
    label = str(label)
    if len(label) > 24 and " {" in label:
        return label.split(" {", 1)[0] + " (all clusters)"
    return label


def tree_figure(tree: nx.DiGraph, *, root=None, height: int | None = None,
                title: str = "") -> go.Figure:
    """A left-to-right cladogram of ``tree`` (root on the left, leaves on the right)."""
    if tree.number_of_nodes() == 0:
        return empty_figure("empty tree")
    root = tree_root(tree) if root is None else root
    pos = tree_layout(tree, root)
    xs, ys = _edge_xy(tree, pos)
    leaves = [n for n in tree.nodes if tree.out_degree(n) == 0]
    inner = [n for n in tree.nodes if tree.out_degree(n) > 0]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#999", width=1),
                               hoverinfo="skip", showlegend=False))
    for group, size, textpos, name in ((inner, 10, "top center", "branches"),
                                       (leaves, 6, "middle right", "classes")):
        if not group:
            continue
        # The root sits on the left edge: its label starts there instead of centring on it (a
        # centred label is cut off by the plot's left border) and drops a long cluster list (the
        # hover has it). Other branch labels end at their vertex, above the edge that leads in,
        # so the vertical lines of the elbows never run through them.
        positions = ["top right" if n == root else ("top left" if name == "branches" else textpos) for n in group]
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in group], y=[pos[n][1] for n in group], mode="markers+text",
            text=[_root_text(tree.nodes[n].get("label", n)) if n == root else str(tree.nodes[n].get("label", n))
                  for n in group], textposition=positions,
            textfont=dict(size=9 if name == "classes" else 10),
            hovertext=[str(tree.nodes[n].get("hover", tree.nodes[n].get("label", n))) for n in group],
            hoverinfo="text", marker=dict(size=size, color=color(0 if name == "branches" else 2)),
            name=name, showlegend=True))
    n_leaves = max(len(leaves), 1)
    depth = max(p[0] for p in pos.values())
    fig.update_xaxes(visible=False, range=[-0.3, depth + 1.2])
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(title=title or None, height=height or int(min(2400, max(320, 14 * n_leaves))),
                      margin=dict(l=10, r=10, t=40 if title else 30, b=10),
                      legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom", font=dict(size=11)))
    return fig


def _hierarchy_lists(tree: nx.DiGraph, root) -> tuple[list, list, list, list, list]:
    """ids, labels, parents, values (leaf counts), hover for sunburst/icicle."""
    order = list(nx.dfs_preorder_nodes(tree, root))
    leaves_under: dict = {}
    for node in reversed(order):
        kids = list(tree.successors(node))
        leaves_under[node] = 1 if not kids else sum(leaves_under[k] for k in kids)
    ids = [str(n) for n in order]
    if len(set(ids)) != len(ids):  # str() collided: fall back to positional ids
        ids = [f"v{i}" for i in range(len(order))]
    index = dict(zip(order, ids))
    labels = [str(tree.nodes[n].get("label", n)) for n in order]
    parents = [index[next(iter(tree.predecessors(n)))] if tree.in_degree(n) else "" for n in order]
    values = [leaves_under[n] for n in order]
    hover = [str(tree.nodes[n].get("hover", tree.nodes[n].get("label", n))) for n in order]
    return ids, labels, parents, values, hover


def sunburst_figure(tree: nx.DiGraph, *, root=None, height: int = 560, icicle: bool = False) -> go.Figure:
    """Sunburst (or icicle with ``icicle=True``) of ``tree``; sector sizes are leaf counts."""
    if tree.number_of_nodes() == 0:
        return empty_figure("empty tree")
    root = tree_root(tree) if root is None else root
    ids, labels, parents, values, hover = _hierarchy_lists(tree, root)
    trace = go.Icicle if icicle else go.Sunburst
    fig = go.Figure(trace(ids=ids, labels=labels, parents=parents, values=values,
                          branchvalues="total", hovertext=hover, hoverinfo="text",
                          maxdepth=-1))
    fig.update_layout(height=height, margin=dict(l=5, r=5, t=5, b=5))
    return fig


def sankey_figure(graph: nx.DiGraph, *, weight: str = "weight", column: str = "layer",
                  height: int = 480, max_links: int = 300) -> go.Figure:
    """Sankey diagram of a layered DiGraph (vertices = groups, edge width = ``weight``).

    Vertices are placed in columns by their ``column`` attribute (layer / node-set index or name,
    in first-seen order along a topological sort) so every layer lines up vertically. Only the
    ``max_links`` heaviest links are drawn (a layer graph of barely split node sets has thousands,
    which the browser lays out slowly and nobody can read); the figure says how many were left out.
    """
    if graph.number_of_edges() == 0:
        return empty_figure("no live connections at this threshold")
    nodes = list(nx.topological_sort(graph)) if nx.is_directed_acyclic_graph(graph) else list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    cols: dict = {}
    for n in nodes:
        cols.setdefault(graph.nodes[n].get(column, 0), len(cols))
    ncol = max(len(cols) - 1, 1)
    x = [0.01 + 0.98 * cols[graph.nodes[n].get(column, 0)] / ncol for n in nodes]
    # Spread vertices of one column evenly in y (plotly needs both x and y to honour either).
    per_col: dict = {}
    for n in nodes:
        per_col.setdefault(cols[graph.nodes[n].get(column, 0)], []).append(n)
    y_of = {}
    for members in per_col.values():
        for j, n in enumerate(members):
            y_of[n] = 0.01 + 0.98 * (j + 0.5) / len(members)
    src, dst, val, hov = [], [], [], []
    for u, v, data in graph.edges(data=True):
        w = float(data.get(weight, 1.0))
        if not np.isfinite(w) or w <= 0:
            continue
        src.append(index[u]); dst.append(index[v]); val.append(w)
        hov.append(str(data.get("hover", f"{w:g}")))
    if not val:
        return empty_figure("no live connections at this threshold")
    hidden = 0
    if len(val) > max_links:
        keep = np.sort(np.argsort(np.asarray(val), kind="stable")[::-1][:max_links])
        hidden = len(val) - max_links
        src, dst, val, hov = ([seq[i] for i in keep] for seq in (src, dst, val, hov))
    fig = go.Figure(go.Sankey(
        arrangement="snap",
        node=dict(label=[str(graph.nodes[n].get("label", n)) for n in nodes],
                  customdata=[str(graph.nodes[n].get("hover", graph.nodes[n].get("label", n)))
                              for n in nodes],
                  hovertemplate="%{customdata}<extra></extra>",
                  x=x, y=[y_of[n] for n in nodes], pad=6, thickness=14,
                  color=[node_set_color(graph.nodes[n]["node_set"]) if "node_set" in graph.nodes[n]
                         else color(cols[graph.nodes[n].get(column, 0)]) for n in nodes]),
        link=dict(source=src, target=dst, value=val, customdata=hov,
                  hovertemplate="%{customdata}<extra></extra>"),
    ))
    fig.update_layout(height=height, margin=dict(l=5, r=5, t=30 if hidden else 10, b=10))
    if hidden:
        fig.update_layout(title=dict(text=f"the {max_links} heaviest links of {max_links + hidden} "
                                          f"({hidden} lighter ones not drawn)", font=dict(size=12)))
    return fig


def linkage_tree(Z: np.ndarray, labels: Sequence[str]) -> nx.DiGraph:
    """A scipy linkage matrix as a DiGraph: leaves are the ``labels``, inner vertices ``("m", i)``.

    >>> from scipy.cluster.hierarchy import linkage
    >>> t = linkage_tree(linkage([[0.0], [0.1], [5.0]], "average"), ["a", "b", "c"])
    >>> sorted(t.successors(("m", 1)), key=str)
    [('m', 0), 'c']
    """
    Z = np.asarray(Z)
    n = len(labels)
    if Z.shape != (n - 1, 4):
        raise ValueError(f"linkage of shape {Z.shape} does not fit {n} labels")
    tree = nx.DiGraph()
    name = lambda i: labels[int(i)] if i < n else ("m", int(i) - n)  # noqa: E731
    for lab in labels:
        tree.add_node(lab, label=str(lab))
    for i, (a, b, h, _) in enumerate(Z):
        node = ("m", i)
        tree.add_node(node, label="", height=float(h))
        tree.add_edge(node, name(a))
        tree.add_edge(node, name(b))
    return tree


def _leaf_label(tree: nx.DiGraph, n) -> str:
    return str(tree.nodes[n].get("label", n))


def _rank_order(children: Mapping) -> dict:
    """``vertex -> rank among its siblings`` from a ``vertex -> ordered children`` mapping."""
    return {k: i for kids in children.values() for i, k in enumerate(kids)}


def barycentre_order(left: nx.DiGraph, right: nx.DiGraph) -> dict:
    """The right tree's children ordered by the mean position of their leaves on the left (the left
    tree as given): the one-sided heuristic the tanglegram used before untangling, kept as the
    baseline its crossing count is reported against."""
    lroot, rroot = tree_root(left), tree_root(right)
    lpos = tree_layout(left, lroot)
    left_y = {_leaf_label(left, n): lpos[n][1] for n in left.nodes if left.out_degree(n) == 0}
    key: dict = {}
    for node in reversed(list(nx.dfs_preorder_nodes(right, rroot))):
        kids = list(right.successors(node))
        if not kids:
            key[node] = left_y.get(_leaf_label(right, node), float(len(left_y)))
        else:
            key[node] = float(np.mean([key[k] for k in kids]))
    return key


def tanglegram_orders(left: nx.DiGraph, right: nx.DiGraph, *, lookahead: bool = True) -> dict:
    """Untangle two trees for :func:`tanglegram` (leaves matched by their ``label``).

    Returns
    -------
    dict
        ``left_order`` / ``right_order`` (vertex -> rank among its siblings, for
        :func:`tree_layout`), ``crossings`` (after untangling), ``crossings_before`` (the
        barycentre drawing of :func:`barycentre_order`, i.e. the tanglegram before untangling)
        and ``crossings_as_given`` (both trees in their own order).
    """
    from analysis.untangle import count_crossings, leaf_order, untangle

    lroot, rroot = tree_root(left), tree_root(right)
    L = {n: list(left.successors(n)) for n in left.nodes}
    lkey = {n: _leaf_label(left, n) for n in left.nodes if left.out_degree(n) == 0}
    rkey = {n: _leaf_label(right, n) for n in right.nodes if right.out_degree(n) == 0}
    bary = barycentre_order(left, right)
    R_bary = {n: sorted(right.successors(n), key=lambda k: bary.get(k, 0.0)) for n in right.nodes}
    before = count_crossings([lkey[v] for v in leaf_order(L, lroot)], [rkey[v] for v in leaf_order(R_bary, rroot)])
    R = {n: list(right.successors(n)) for n in right.nodes}
    L2, R2, as_given, after = untangle(L, lroot, R, rroot, left_key=lkey, right_key=rkey, lookahead=lookahead)
    return {"left_order": _rank_order(L2), "right_order": _rank_order(R2), "crossings": int(after),
            "crossings_before": int(before), "crossings_as_given": int(as_given)}


def _first_split(tree: nx.DiGraph, root) -> dict:
    """``leaf label -> group``: the leaves under each child of the first vertex with 2+ children."""
    top = root
    while tree.out_degree(top) == 1:
        top = next(iter(tree.successors(top)))
    out = {}
    for child in tree.successors(top):
        name = str(tree.nodes[child].get("label", child))
        leaves = [child] if tree.out_degree(child) == 0 else [n for n in nx.descendants(tree, child)
                                                                 if tree.out_degree(n) == 0]
        for leaf in leaves:
            out[_leaf_label(tree, leaf)] = name
    return out


def tanglegram(left: nx.DiGraph, right: nx.DiGraph, *, left_title: str = "network",
               right_title: str = "WordNet", height: int | None = None, orders: Mapping | None = None,
               groups: Mapping[str, str] | None = None, group_title: str = "group") -> go.Figure:
    """Two trees facing each other, untangled, with a coloured line joining the labels of each leaf.

    Leaves are matched by their ``label`` attribute (or the vertex itself). Both trees' vertices
    are rotated to reduce crossings (:func:`tanglegram_orders`; pass its result as ``orders`` to
    reuse a cached one); the counts before and after are in the title and in
    ``fig.layout.meta``. Lines and labels are coloured by ``groups`` (leaf label -> reference
    group, e.g. the coarse class; default: the right tree's first split), with one legend entry
    per group.

    Layout along x: left root 0, left leaves 1, labels ending at 1.45, connectors 1.45–1.95,
    labels from 1.95, right leaves 2.4, right root 3.4; a faint leader joins each leaf to its label.
    """
    if left.number_of_nodes() == 0 or right.number_of_nodes() == 0:
        return empty_figure("nothing to compare")
    lroot, rroot = tree_root(left), tree_root(right)
    orders = orders if orders is not None else tanglegram_orders(left, right)
    lpos = tree_layout(left, lroot, order=orders["left_order"])
    rpos = tree_layout(right, rroot, order=orders["right_order"])
    left_leaves = sorted((n for n in left.nodes if left.out_degree(n) == 0), key=lambda n: lpos[n][1])
    right_leaves = sorted((n for n in right.nodes if right.out_degree(n) == 0), key=lambda n: rpos[n][1])
    # Same vertical extent on both sides even when the leaf counts differ.
    rscale = (len(left_leaves) - 1) / max(len(right_leaves) - 1, 1)
    ldepth = max(p[0] for p in lpos.values()) or 1
    rdepth = max(p[0] for p in rpos.values()) or 1
    XL, XA, XB, XR, XRR = 1.0, 1.45, 1.95, 2.4, 3.4
    lxy = {n: (min(x / ldepth, 1.0) if left.out_degree(n) else XL, y) for n, (x, y) in lpos.items()}
    rxy = {n: (XRR - (min(x / rdepth, 1.0) if right.out_degree(n) else 1.0), y * rscale)
           for n, (x, y) in rpos.items()}
    groups = dict(groups) if groups is not None else _first_split(right, rroot)
    names = list(dict.fromkeys(groups.get(_leaf_label(left, n), "") for n in left_leaves))
    gcolor = {g: color(i) if g else "#999" for i, g in enumerate(names)}
    fig = go.Figure()
    for tree, xy in ((left, lxy), (right, rxy)):
        xs, ys = [], []
        for u, v in tree.edges:
            (xu, yu), (xv, yv) = xy[u], xy[v]
            xs += [xu, xu, xv, None]
            ys += [yu, yv, yv, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#555", width=1),
                                 hoverinfo="skip", showlegend=False))
    lead_x, lead_y = [], []
    for n in left_leaves:
        lead_x += [XL, XA, None]
        lead_y += [lxy[n][1]] * 2 + [None]
    for n in right_leaves:
        lead_x += [XB, XR, None]
        lead_y += [rxy[n][1]] * 2 + [None]
    fig.add_trace(go.Scatter(x=lead_x, y=lead_y, mode="lines", line=dict(color="#e4e4e4", width=1, dash="dot"),
                             hoverinfo="skip", showlegend=False))
    right_by_label = {_leaf_label(right, n): n for n in right_leaves}
    for g in names:  # one connector trace per group: its colour and legend entry
        cx, cy = [], []
        for n in left_leaves:
            lab = _leaf_label(left, n)
            rn = right_by_label.get(lab)
            if rn is not None and groups.get(lab, "") == g:
                cx += [XA, XB, None]
                cy += [lxy[n][1], rxy[rn][1], None]
        if cx:
            fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", line=dict(color=gcolor[g], width=1.3),
                                     name=g or "(no group)", legendgroup=g, hoverinfo="skip"))
    text_color = lambda lab: gcolor.get(groups.get(lab, ""), "#333")  # noqa: E731
    fig.add_trace(go.Scatter(x=[XA] * len(left_leaves), y=[lxy[n][1] for n in left_leaves],
                             mode="text", text=[_leaf_label(left, n) + " " for n in left_leaves],
                             textposition="middle left",
                             textfont=dict(size=10, color=[text_color(_leaf_label(left, n)) for n in left_leaves]),
                             hovertext=[f"{_leaf_label(left, n)} ({groups.get(_leaf_label(left, n), '—')})"
                                        for n in left_leaves], hoverinfo="text", showlegend=False))
    fig.add_trace(go.Scatter(x=[XB] * len(right_leaves), y=[rxy[n][1] for n in right_leaves],
                             mode="text", text=[" " + _leaf_label(right, n) for n in right_leaves],
                             textposition="middle right",
                             textfont=dict(size=10, color=[text_color(_leaf_label(right, n)) for n in right_leaves]),
                             hovertext=[f"{_leaf_label(right, n)} ({groups.get(_leaf_label(right, n), '—')})"
                                        for n in right_leaves], hoverinfo="text", showlegend=False))
    for tree, xy in ((left, lxy), (right, rxy)):
        inner = [n for n in tree.nodes if tree.out_degree(n) > 0]
        fig.add_trace(go.Scatter(
            x=[xy[n][0] for n in inner], y=[xy[n][1] for n in inner], mode="markers",
            marker=dict(size=4, color="#555"),
            hovertext=[str(tree.nodes[n].get("hover", tree.nodes[n].get("label", ""))) or "(branch)"
                       for n in inner],
            hoverinfo="text", showlegend=False))
    fig.update_xaxes(visible=False, range=[-0.05, XRR + 0.05], fixedrange=True)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.add_annotation(text=f"<b>{left_title}</b>", x=0.0, y=1.0, xref="x", yref="paper",
                       showarrow=False, xanchor="left", yanchor="bottom")
    fig.add_annotation(text=f"<b>{right_title}</b>", x=XRR, y=1.0, xref="x", yref="paper",
                       showarrow=False, xanchor="right", yanchor="bottom")
    before, after = orders["crossings_before"], orders["crossings"]
    fig.update_layout(
        title=dict(text=f"{after} line crossings after untangling (the unrotated drawing had {before})",
                   font=dict(size=13), x=0.5, xanchor="center"),
        meta={"crossings_before": before, "crossings": after},
        height=height or int(min(4000, max(420, 14 * len(left_leaves) + 120))),
        legend=dict(title=dict(text=group_title), orientation="v", x=1.0, xanchor="left", y=1.0,
                    font=dict(size=10)),
        margin=dict(l=5, r=5, t=60, b=5))
    return fig


def paths_tree(paths: Mapping[str, Sequence[str]], *, compress: bool = True) -> nx.DiGraph:
    """A tree from one root-to-leaf path per leaf (e.g. each class's WordNet hypernym path).

    ``paths[leaf]`` lists the ancestors from the root down (the leaf itself not included). Vertices
    are path prefixes, so the result is a tree even when a synset is reached along different
    paths. With ``compress`` a chain of single-child vertices is merged into its lowest vertex
    (WordNet's ``entity → physical_entity → object → whole ...`` becomes one vertex). Inner
    vertices are labelled with their last synset; leaves with their key.

    >>> t = paths_tree({"cat": ["animal", "feline"], "lion": ["animal", "feline"], "oak": ["plant"]})
    >>> sorted(t.nodes[v]["label"] for v in t.successors(tree_root(t)))
    ['feline', 'plant']
    """
    tree = nx.DiGraph()
    root = ("__root__",)
    tree.add_node(root, label="root")
    for leaf, path in paths.items():
        parent = root
        for i in range(len(path)):
            node = root + tuple(path[: i + 1])
            if node not in tree:
                tree.add_node(node, label=str(path[i]), hover=str(path[i]))
                tree.add_edge(parent, node)
            parent = node
        tree.add_node(("__leaf__", leaf), label=str(leaf), hover=str(leaf))
        tree.add_edge(parent, ("__leaf__", leaf))
    if compress:
        # Merge every inner vertex with exactly one child into that child (bottom-up safe order).
        for node in list(nx.dfs_preorder_nodes(tree, root)):
            if node == root or node not in tree:
                continue
            kids = list(tree.successors(node))
            if len(kids) == 1 and tree.out_degree(kids[0]) > 0:
                parent = next(iter(tree.predecessors(node)))
                child = kids[0]
                tree.remove_node(node)
                tree.add_edge(parent, child)
        while tree.out_degree(root) == 1 and tree.out_degree(next(iter(tree.successors(root)))) > 0:
            only = next(iter(tree.successors(root)))
            label = tree.nodes[only]["label"]
            for k in list(tree.successors(only)):
                tree.add_edge(root, k)
            tree.remove_node(only)
            tree.nodes[root]["label"] = label
    return tree
