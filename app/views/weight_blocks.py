"""Weight blocks: W, the expected mask and W̃ of a layer, ordered by signature, with boundaries."""

import numpy as np
import streamlit as st

from analysis.errors import UserError
from app import cache, state
from app.figures import in_block_mass_figure
from app.figures.heatmaps import layer_blocks_figure

ctx = state.require_context()
run = ctx.run
st.title("Weight blocks")
if not run.layers or not run.steps:
    st.info("This run has no saved layers or snapshots yet.")
    st.stop()
try:
    has_weights = bool(run.weight_steps())
except UserError as exc:
    st.error(str(exc))
    st.stop()
if not has_weights:
    st.info("No snapshot of this run holds weights yet (weights are saved at least at the best and last steps).")
    st.stop()

names = [lay.name for lay in run.layers]
# The first layer leaves the all-shared trunk (no blocks to see); start one further in when there is one.
layer = st.selectbox("Layer", names, key="wb_layer", index=min(1, len(names) - 1),
                     format_func=lambda n: f"{n} ({run.layer(n).in_set or 'input'} → {run.layer(n).out_set or 'output'}, "
                                           f"{run.layer(n).out_features}×{run.layer(n).in_features})")


try:
    data = cache.heatmap(ctx, layer)
except UserError as exc:
    st.error(str(exc))
    st.stop()

fig, caption = layer_blocks_figure(data, ctx.tau)
st.caption(caption)
st.plotly_chart(fig, key="wb_heat" if data["blockout"] else "wb_plain")
if not data["blockout"]:
    st.stop()
st.metric("|W̃| mass inside the allowed blocks", f"{data['mass_inside']:.1%}" if np.isfinite(data["mass_inside"]) else "—")

st.subheader("In-block mass per layer")
st.caption("Share of |W̃| on live connections (output and input signatures share a cluster at τ), beside the "
           "share of connections that are live: weights that respect the branches sit well above it.")
summ = cache.summary(ctx)
live = {lay["name"]: lay.get("live_fraction") for lay in summ["layers"]}
bl = [lay.name for lay in run.layers if lay.in_set and lay.out_set]
inside = [cache.heatmap(ctx, n)["mass_inside"] for n in bl]
st.plotly_chart(in_block_mass_figure(bl, inside, [live.get(n) or 0.0 for n in bl]), key="wb_mass")
