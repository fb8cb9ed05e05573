"""Plain derived data shared by the dashboard's cache (:mod:`app.cache`) and the HTML report
(:mod:`app.report`): each function takes a loaded run (or a comparison report's dict) and calls
:mod:`analysis`. No Streamlit here, so the command line and the tests can call them too.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from analysis.errors import UserError


def layer_heatmap(run, layer: str, step, tau: float, max_size: int = 192) -> dict:
    """:func:`analysis.blocks.heatmap_data` of ``layer`` (weights nearest ``step``), reduced to ``max_size``.

    Plain layers (no node sets) get ``abs_w`` only and ``blockout=False``.
    """
    from analysis import blocks

    lay = run.layer(layer)
    ws = run.weights(step)
    if layer not in ws:
        raise UserError(f"{run.path}: no weights for layer {layer!r} at step {ws.step}")
    W = ws[layer][0]
    if lay.in_set is None or lay.out_set is None:
        small, re, ce = blocks.block_average(np.abs(W), max_size)
        return {"abs_w": small, "row_edges": re, "col_edges": ce, "shape": W.shape, "weights_step": ws.step,
                "blockout": False}
    probs = run.probs(ws.step)  # P at the weights' step so W and the mask belong together
    out = blocks.heatmap_data(W, probs[lay.out_set], probs[lay.in_set], tau, lay.mask, max_size)
    out.update(weights_step=ws.step, blockout=True)
    return out


def _sort_key(row: Mapping):
    # References sorted: coarse first, then WordNet depths numerically (never "10" before "9").
    depth = row.get("depth")
    return (0 if depth is None else 1, depth if depth is not None else 0, str(row.get("reference", "")))


def agreement_rows(report: Mapping) -> list[dict]:
    """One row per (hierarchy, reference) of a comparison report's dict: ARI/NMI/FMI with null, z, p.

    Rows are sorted per hierarchy by reference kind and then WordNet depth *numerically*; each
    carries ``depth`` (None for non-WordNet references), ``degenerate`` (one class against the
    rest) and ``best`` (the headline row of that hierarchy, :func:`analysis.compare.best_partition`:
    smallest Holm-adjusted ARI p among the non-degenerate rows).
    """
    from analysis.compare import HierarchyComparison, best_partition

    rows = []
    for h in report.get("hierarchies", []):
        top = best_partition(HierarchyComparison.from_dict(h))
        part = []
        for p in h["partitions"]:
            row = {"hierarchy": h["source"], "reference": p["reference"], "depth": p.get("depth"),
                   "groups": p["n_groups"], "degenerate": bool(p.get("degenerate", False)),
                   "coarse": p.get("kind") == "coarse"}
            for m in ("ari", "nmi", "fmi"):
                s = p[m]
                row[m.upper()] = s["observed"]
                row[f"{m.upper()} null"] = s["null_mean"]
                row[f"{m.upper()} z"] = s["z"]
                row[f"{m.upper()} p"] = s["p"]
            row["ARI p (Holm)"] = p["ari"].get("p_holm")
            row["best"] = top is not None and p["reference"] == top.reference
            part.append(row)
        part.sort(key=_sort_key)
        rows += part
    return rows


def depth_rows(report: Mapping) -> list[dict]:
    """Per hierarchy, metric and WordNet depth: observed agreement and its null (for the chart),
    sorted by depth numerically. Degenerate references (one class against the rest) are left out."""
    out = []
    for h in report.get("hierarchies", []):
        for p in h["partitions"]:
            if p.get("kind") != "wordnet" or p.get("depth") is None or p.get("degenerate"):
                continue
            for m in ("ari", "nmi", "fmi"):
                s = p[m]
                out.append({"source": h["source"], "metric": m, "depth": int(p["depth"]), "n_groups": p["n_groups"],
                            **{k: s.get(k) for k in ("observed", "null_mean", "null_std", "p")}})
    out.sort(key=lambda r: (r["source"], r["metric"], r["depth"]))
    return out


def tanglegram_inputs(run, h, paths: Mapping | None):
    """The two trees of the WordNet page's tanglegram and the colouring of its lines.

    Returns ``(left, right, right_title, groups, group_title)``, or None when the classes have
    neither WordNet synsets nor coarse groups. Lines are coloured by the dataset's coarse class
    when it has them (else by the right tree's first split).
    """
    from app.figures.trees import linkage_tree, paths_tree

    left = linkage_tree(h.linkage, h.labels)
    coarse = None
    if run.coarse_labels is not None:
        names = run.coarse_names or []
        coarse = {c: (names[g] if 0 <= g < len(names) else str(g)) for c, g in zip(run.class_names, run.coarse_labels)}
    if paths is not None:
        right, right_title = paths_tree(paths), "WordNet"
    elif coarse is not None:
        right = paths_tree({c: [g] for c, g in coarse.items()})
        right_title = "coarse classes (no WordNet synsets for these classes)"
    else:
        return None
    if coarse is not None:
        return left, right, right_title, coarse, "coarse class"
    return left, right, right_title, None, "WordNet group"


def verdict(run, report: Mapping | None, tau: float, step):
    """:func:`analysis.verdict.run_verdict` from a comparison report's dict (or None)."""
    from analysis.compare import ComparisonReport
    from analysis.verdict import run_verdict

    rep = ComparisonReport.from_dict(report) if report is not None else None
    return run_verdict(run, rep, threshold=tau, step=step)
