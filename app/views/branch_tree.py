"""Branch tree: the hierarchy of branches at τ as a tree, a sunburst or icicle, and the layer graph."""

import streamlit as st

from analysis.errors import UserError
from analysis.verdict import branch_depth
from app import cache, state
from app.figures import sankey_figure, sunburst_figure, tree_figure

ctx = state.require_context()
st.title("Branch tree")
if not ctx.has_memberships:
    st.info("This run has no cluster memberships (not a Blockout run), so it has no branch tree. "
            "The WordNet page shows the hierarchy induced from its class weights instead.")
    st.stop()

st.caption(f"τ = {ctx.tau:.2f} · step {ctx.step}. Clusters that share a node are joined per node set; "
           "each node set refines the partition of the one before (trunk first). Classes hang under the "
           "deepest branch holding all their clusters. Hover a vertex for its clusters, sizes, classes "
           "and WordNet label.")
try:
    tree = cache.branch_tree(ctx)
    graph = cache.layer_graph(ctx)
except UserError as exc:
    st.error(str(exc))
    st.stop()

blocks = [v for v, d in tree.nodes(data=True) if d.get("kind") == "block"]
leaves_dead = [v for v, d in tree.nodes(data=True) if d.get("kind") == "class" and d.get("dead")]
c = st.columns(3)
c[0].metric("branches", len(blocks))
# the verdict's depth (Overview, inspect): live branch levels below the stem, class leaves not counted
c[1].metric("tree depth", branch_depth(tree))
c[2].metric("classes in no cluster", len(leaves_dead))

if not blocks:
    st.info(f"No branches at τ = {ctx.tau:.2f}: in every node set the clusters share nodes, so nothing splits and "
            "every class hangs under the root. Try a higher τ, a later step, or see the Emergence page for why "
            "(e.g. P drifting to 1).")
view = st.radio("View", ("Tree", "Sunburst", "Icicle"), horizontal=True, key="bt_view")
if view == "Tree":
    st.plotly_chart(tree_figure(tree, root=tree.graph.get("root")), key="bt_tree")
else:
    st.plotly_chart(sunburst_figure(tree, root=tree.graph.get("root"), icicle=view == "Icicle"), key="bt_sun")

st.subheader("Layer graph")
st.caption("Groups of nodes with the same signature, per node set (left to right); a band joins two groups "
           "whose signatures share a cluster, its width the number of live connections.")
st.plotly_chart(sankey_figure(graph, weight="live", column="depth"), key="bt_sankey")

from app.compile_panel import show_compile_panel  # noqa: E402 (what compiling at τ gives)
show_compile_panel(ctx)
