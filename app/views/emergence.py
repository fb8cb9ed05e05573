"""Emergence: how P and the branch tree evolve over the snapshots; drift to 1; budget multipliers."""

import streamlit as st

from analysis.errors import UserError
from app import cache, state
from app.figures import (cluster_sizes_over_time, drift_figure, multipliers_figure, prob_animation,
                         tree_figure)

ctx = state.require_context()
run = ctx.run
st.title("Emergence")
if not ctx.has_memberships:
    st.info("This run has no cluster memberships (not a Blockout run): nothing emerges to show.")
    st.stop()

try:
    st.subheader("P per node set over training")
    st.caption("Press ▶ to play the snapshots, or drag the slider under the chart. "
               "Bars: share of the entries of P in each bin.")
    history = {ns.name: run.probs_history(ns.name) for ns in run.node_sets}
    st.plotly_chart(prob_animation(run.steps, history), key="em_hist")

    st.subheader("Drift to 1")
    st.caption("The failure mode of the paper's formulation: P of every node set drifts to 1, every node "
               "joins every cluster and no branches form. Rising curves that reach 1 mean exactly that.")
    st.plotly_chart(drift_figure(run.steps, cache.drift(ctx)), key="em_drift")

    mult = cache.multipliers(ctx)
    if mult:
        st.subheader("Budget multipliers")
        st.caption("Lagrange multipliers of the connection budget per layer: they grow while a class row "
                   "uses more connections than the budget allows.")
        st.plotly_chart(multipliers_figure(run.steps, mult), key="em_mult")

    st.subheader(f"Nodes per cluster over time (τ = {ctx.tau:.2f})")
    names = [ns.name for ns in run.node_sets if ns.trainable] or [ns.name for ns in run.node_sets]
    name = st.selectbox("Node set", names, key="em_set")
    st.plotly_chart(cluster_sizes_over_time(run.steps, cache.cluster_sizes(ctx, name)), key="em_sizes")

    st.subheader(f"Branch tree at step {ctx.step}")
    st.caption("Move the snapshot step in the sidebar to see the tree at another step.")
    st.plotly_chart(tree_figure(cache.branch_tree(ctx)), key="em_tree")
except UserError as exc:
    st.error(str(exc))
