"""Derived data for the pages, cached with ``st.cache_data``.

Every function takes the :class:`~app.state.Context` (not hashed: leading underscore) plus the
plain values that identify the result (run key, modification stamp, step, τ), gets the cached run
and calls one :mod:`analysis` function. Pages never compute anything themselves.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import dynamics, graphs, hierarchy, threshold
from analysis.summary import summarize_run
from app.figures.annotate import annotate_branch_tree, annotate_layer_graph
from app.state import Context, _load


def _run(key: str, stamp: tuple):
    return _load(key, stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _summary(key: str, stamp: tuple, step, tau: float) -> dict:
    return summarize_run(key, step, tau)


def summary(ctx: Context) -> dict:
    """:func:`analysis.summary.summarize_run` at the context's step and τ."""
    return _summary(ctx.key, ctx.stamp, ctx.step, ctx.tau)


@st.cache_data(show_spinner=False, max_entries=64)
def _threshold_summaries(key: str, stamp: tuple, step, tau: float) -> list[dict]:
    run = _run(key, stamp)
    th = threshold.threshold_all(run.probs(step), tau)
    return [th[name].summary() | {"dead_branches": [c for c, sets in threshold.dead_branches({name: th[name]}).items()]}
            for name in run.chain if name in th]


def threshold_summaries(ctx: Context) -> list[dict]:
    """Per node set: nodes per cluster, signatures, dead and shared nodes, empty clusters."""
    return _threshold_summaries(ctx.key, ctx.stamp, ctx.step, ctx.tau)


@st.cache_data(show_spinner=False, max_entries=32)
def _outcomes(key: str, stamp: tuple, step) -> dict[str, dynamics.Outcome]:
    run = _run(key, stamp)
    upto = run.steps.index(step) + 1 if step in run.steps else len(run.steps)
    return {ns.name: dynamics.classify_outcome(run.probs_history(ns.name)[:upto], trainable=ns.trainable)
            for ns in run.node_sets}


def outcomes(ctx: Context) -> dict[str, dynamics.Outcome]:
    """What happened to each node set's P up to the selected step."""
    return _outcomes(ctx.key, ctx.stamp, ctx.step)


@st.cache_data(show_spinner=False, max_entries=32)
def _drift(key: str, stamp: tuple) -> dict[str, dict[str, np.ndarray]]:
    run = _run(key, stamp)
    return {ns.name: dynamics.drift_series(run.probs_history(ns.name)) for ns in run.node_sets if ns.trainable}


def drift(ctx: Context) -> dict[str, dict[str, np.ndarray]]:
    """Mean P and shares near 0/1 per step for each trainable node set."""
    return _drift(ctx.key, ctx.stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _cluster_sizes(key: str, stamp: tuple, name: str, tau: float) -> np.ndarray:
    return dynamics.cluster_sizes(_run(key, stamp).probs_history(name), tau)


def cluster_sizes(ctx: Context, name: str) -> np.ndarray:
    """``(steps, k)`` nodes per cluster of node set ``name`` at τ over all snapshots."""
    return _cluster_sizes(ctx.key, ctx.stamp, name, ctx.tau)


@st.cache_data(show_spinner=False, max_entries=16)
def _multipliers(key: str, stamp: tuple) -> dict[str, np.ndarray]:
    return dynamics.multiplier_history(_run(key, stamp))


def multipliers(ctx: Context) -> dict[str, np.ndarray]:
    """``{layer: (steps, m)}`` budget multipliers over all snapshots (NaN where missing)."""
    return _multipliers(ctx.key, ctx.stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _branch_tree(key: str, stamp: tuple, step, tau: float):
    run = _run(key, stamp)
    from app import wordnet_labels

    label_fn, syn_names = wordnet_labels.for_run(run)
    tree = graphs.branch_tree(run, tau, step, label_fn=label_fn)
    return annotate_branch_tree(tree, run.class_names, syn_names)


def branch_tree(ctx: Context, step=None):
    """The annotated branch tree at τ and the context's step (or ``step``)."""
    return _branch_tree(ctx.key, ctx.stamp, ctx.step if step is None else step, ctx.tau)


@st.cache_data(show_spinner=False, max_entries=64)
def _layer_graph(key: str, stamp: tuple, step, tau: float):
    return annotate_layer_graph(graphs.layer_graph(_run(key, stamp), tau, step))


def layer_graph(ctx: Context):
    """The annotated layer graph at τ and step."""
    return _layer_graph(ctx.key, ctx.stamp, ctx.step, ctx.tau)


@st.cache_data(show_spinner=False, max_entries=32)
def _class_hierarchy(key: str, stamp: tuple, method: str, step, tau: float):
    return hierarchy.class_hierarchy(_run(key, stamp), method, tau, step)


def class_hierarchy(ctx: Context, method: str):
    """:func:`analysis.hierarchy.class_hierarchy` (``probability``, ``connectivity``, ``weights``)."""
    tau = ctx.tau if method == "connectivity" else 0.5  # τ only matters for connectivity
    return _class_hierarchy(ctx.key, ctx.stamp, method, ctx.step, tau)


@st.cache_data(show_spinner=False, max_entries=64)
def _heatmap(key: str, stamp: tuple, layer: str, step, tau: float, max_size: int) -> dict:
    from app.derive import layer_heatmap

    return layer_heatmap(_run(key, stamp), layer, step, tau, max_size)


def heatmap(ctx: Context, layer: str, max_size: int = 192) -> dict:
    """:func:`analysis.blocks.heatmap_data` of ``layer`` (weights nearest the step), reduced to ``max_size``."""
    return _heatmap(ctx.key, ctx.stamp, layer, ctx.step, ctx.tau, max_size)


@st.cache_data(show_spinner=False, max_entries=32)
def _comparison(key: str, stamp: tuple, step, tau: float, method: str, permutations: int) -> dict:
    from analysis.compare import compare_run

    return compare_run(_run(key, stamp), "all", tau, step, "both", method, permutations).to_dict()


def comparison(ctx: Context, method: str = "probability", permutations: int = 999) -> dict:
    """:func:`analysis.compare.compare_run` against every reference, as its JSON-ready dict."""
    tau = ctx.tau if method == "connectivity" else 0.5
    return _comparison(ctx.key, ctx.stamp, ctx.step, tau, method, permutations)


#: The comparison behind the verdict and the report (the WordNet page's default view, so one cache entry serves all).
VERDICT_METHOD, VERDICT_PERMUTATIONS = "probability", 999


@st.cache_data(show_spinner=False, max_entries=32)
def _verdict(key: str, stamp: tuple, step, tau: float) -> dict:
    from app.derive import verdict

    report = _comparison(key, stamp, step, 0.5, VERDICT_METHOD, VERDICT_PERMUTATIONS)
    return verdict(_run(key, stamp), report, tau, step).to_dict()


def verdict(ctx: Context) -> dict:
    """:func:`analysis.verdict.run_verdict` (as a dict: ``sentences`` first) at the context's step and τ,
    from the cached comparison with every reference."""
    return _verdict(ctx.key, ctx.stamp, ctx.step, ctx.tau)


@st.cache_data(show_spinner=False, max_entries=16)
def _tangle_orders(key: str, stamp: tuple, step, tau: float, method: str) -> dict | None:
    from app.derive import tanglegram_inputs
    from app.figures.trees import tanglegram_orders

    run = _run(key, stamp)
    h = hierarchy.class_hierarchy(run, method, tau, step)
    _, paths = _synsets(key, stamp)
    inputs = tanglegram_inputs(run, h, paths)
    if inputs is None:
        return None
    return tanglegram_orders(inputs[0], inputs[1])


def tangle_orders(ctx: Context, method: str) -> dict | None:
    """:func:`app.figures.trees.tanglegram_orders` for the class hierarchy by ``method`` (untangling
    takes seconds at 100 classes, so it is cached); None when there is nothing to draw beside it."""
    tau = ctx.tau if method == "connectivity" else 0.5
    return _tangle_orders(ctx.key, ctx.stamp, ctx.step, tau, method)


@st.cache_data(show_spinner=False, max_entries=8)
def _report(key: str, stamp: tuple, step, tau: float) -> bytes:
    from app.report import build_report

    return build_report(_run(key, stamp), step=step, tau=tau).encode("utf-8")


def report_html(ctx: Context) -> bytes:
    """The self-contained HTML report (:func:`app.report.build_report`) at the context's step and τ."""
    return _report(ctx.key, ctx.stamp, ctx.step, ctx.tau)


@st.cache_data(show_spinner=False, max_entries=16)
def _synsets(key: str, stamp: tuple) -> tuple[list[dict], dict | None]:
    from app import wordnet_labels

    run = _run(key, stamp)
    return wordnet_labels.synset_table(run), wordnet_labels.class_paths(run)


def synsets(ctx: Context) -> tuple[list[dict], dict | None]:
    """The class → synset table and each class's hypernym path (None when a class has no synset)."""
    return _synsets(ctx.key, ctx.stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _export(key: str, stamp: tuple, step, tau: float, what: str, fmt: str, method: str) -> bytes:
    from analysis import export

    run = _run(key, stamp)
    if what == "tree":
        obj = graphs.branch_tree(run, tau, step, graphs.wordnet_labeler(run))
    elif what == "layers":
        obj = graphs.layer_graph(run, tau, step)
    else:
        obj = hierarchy.class_hierarchy(run, method, tau, step)
    return export.render(obj, fmt, title=f"{run.name}: {what}")


def export_bytes(ctx: Context, what: str, fmt: str, method: str = "probability") -> bytes:
    """:func:`analysis.export.render` of the branch tree, layer graph or class dendrogram."""
    return _export(ctx.key, ctx.stamp, ctx.step, ctx.tau, what, fmt, method)
