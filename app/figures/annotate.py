"""Hover text for the analysis graphs (sizes, classes, WordNet labels), set as node attributes.

The builders in :mod:`app.figures.trees` draw the ``label`` and ``hover`` attributes; these
functions fill ``hover`` from what :mod:`analysis.graphs` stores on each vertex. They return a
copy, so cached graphs are never modified.
"""

from __future__ import annotations

from typing import Sequence

import networkx as nx

from app.figures.common import short_list, wrap_hover


def annotate_branch_tree(tree: nx.DiGraph, class_names: Sequence[str],
                         wordnet_names: Sequence[str | None] | None = None) -> nx.DiGraph:
    """Copy of a branch tree with ``hover`` on every vertex.

    Parameters
    ----------
    tree : DiGraph from :func:`analysis.graphs.branch_tree`
    class_names : names of the classes (indexed by ``class_index``)
    wordnet_names : optional synset name per class (shown on class leaves)
    """
    out = tree.copy()
    for v, d in out.nodes(data=True):
        kind = d.get("kind", "")
        classes = [class_names[i] for i in d.get("classes", ()) if 0 <= i < len(class_names)]
        if kind == "class":
            i = d.get("class_index", -1)
            syn = wordnet_names[i] if wordnet_names is not None and 0 <= i < len(wordnet_names) else None
            clusters = d.get("clusters", ())
            d["hover"] = wrap_hover([
                f"<b>{d.get('label', v)}</b>",
                f"WordNet: {syn}" if syn else "",
                f"clusters: {{{','.join(map(str, clusters))}}}" if clusters else "in no cluster (dead)",
            ])
        else:
            hyper = d.get("hypernym") or ""
            d["hover"] = wrap_hover([
                f"<b>{d.get('label', v)}</b>" if kind != "root" else "<b>root (all clusters)</b>",
                f"WordNet: {hyper}" if hyper else "",
                f"clusters: {{{','.join(map(str, d.get('clusters', ())))}}}",
                f"split at node set {d['split_at']}" if d.get("split_at") and kind == "block" else "",
                f"{d.get('n_nodes', 0)} nodes · {len(classes)} classes",
                "dead branch (no path through it)" if d.get("dead") else "",
                short_list(classes, 15),
            ])
    return out


def annotate_layer_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """Copy of a layer graph with ``hover`` on vertices and edges (sizes, live connections, |W̃|)."""
    out = graph.copy()
    for v, d in out.nodes(data=True):
        d["hover"] = wrap_hover([
            f"<b>{d.get('node_set', '')} {d.get('signature', '')}</b>",
            f"{d.get('size', 0)} nodes",
            "in no cluster (dead)" if d.get("code", 1) == 0 else "",
        ])
    for u, v, d in out.edges(data=True):
        w = d.get("mean_abs_w")
        d["hover"] = wrap_hover([
            f"{out.nodes[u].get('label', u)} → {out.nodes[v].get('label', v)}",
            f"{d.get('live', 0)} live connections, {d.get('shared', 0)} shared clusters",
            f"mean |W̃| {w:.3g}" if w is not None else "",
        ])
    return out
