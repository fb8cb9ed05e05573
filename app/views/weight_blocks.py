"""Weight blocks: W, the expected mask and W̃ of a layer, ordered by signature, with boundaries."""

import numpy as np
import streamlit as st

from analysis.errors import UserError
from app import cache, state
from app.figures import block_heatmaps, in_block_mass_figure

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


def _bounds(boundaries, edges) -> list[float]:
    # Boundaries are in node positions; the drawn matrix has one cell per bin of `edges`.
    f = float(edges[1]) if len(edges) > 1 else 1.0
    b = np.asarray(boundaries, dtype=float) / f
    return b.tolist() if len(b) <= 150 else []  # too many signatures: lines would hide the picture


try:
    data = cache.heatmap(ctx, layer)
except UserError as exc:
    st.error(str(exc))
    st.stop()

rows, cols = data["shape"]
re, ce = data["row_edges"], data["col_edges"]
scale_r = float(re[1]) if len(re) > 1 else 1.0
scale_c = float(ce[1]) if len(ce) > 1 else 1.0
note = f"weights from step {data['weights_step']} (the nearest snapshot with weights)"
if scale_r > 1 or scale_c > 1:
    note += f"; {rows}×{cols} drawn as {len(re)}×{len(ce)} block means ({scale_r:g}×{scale_c:g} per cell)"
if not data["blockout"]:
    st.caption(note + ". A plain layer (no node sets): |W| in its own order; there is no mask or block order.")
    st.plotly_chart(block_heatmaps([("|W|", data["abs_w"], False)], row_scale=scale_r, col_scale=scale_c),
                    key="wb_plain")
    st.stop()

st.caption(note + f". Rows (outputs) and columns (inputs) sorted by signature at τ = {ctx.tau:.2f}; "
           "lines mark where the signature changes. Cells show block means of |W|, of the expected mask "
           "E[M] and of |W̃| = |W ⊙ E[M]|.")
nb = len(data["row_boundaries"]) + len(data["col_boundaries"])
if nb > 300:
    st.caption(f"{nb} signature boundaries: lines not drawn.")
fig = block_heatmaps(
    [("|W|", data["abs_w"], False), ("expected mask E[M]", data["mask"], False), ("|W̃|", data["abs_w_tilde"], False)],
    row_bounds=_bounds(data["row_boundaries"], re), col_bounds=_bounds(data["col_boundaries"], ce),
    row_scale=scale_r, col_scale=scale_c)
st.plotly_chart(fig, key="wb_heat")
st.metric("|W̃| mass inside the allowed blocks", f"{data['mass_inside']:.1%}" if np.isfinite(data["mass_inside"]) else "—")

st.subheader("In-block mass per layer")
st.caption("Share of |W̃| on live connections (output and input signatures share a cluster at τ), beside the "
           "share of connections that are live: weights that respect the branches sit well above it.")
summ = cache.summary(ctx)
live = {lay["name"]: lay.get("live_fraction") for lay in summ["layers"]}
bl = [lay.name for lay in run.layers if lay.in_set and lay.out_set]
inside = [cache.heatmap(ctx, n)["mass_inside"] for n in bl]
st.plotly_chart(in_block_mass_figure(bl, inside, [live.get(n) or 0.0 for n in bl]), key="wb_mass")
