"""Export: download the branch tree, the layer graph or the class dendrogram in every format."""

import streamlit as st

from analysis.errors import UserError
from analysis.export import EXTENSIONS, FORMATS
from app import cache, state

ctx = state.require_context()
run = ctx.run
st.title("Export")
st.caption(f"Files of the run **{ctx.label}** at step {ctx.step}, τ = {ctx.tau:.2f}. GraphML, GEXF and JSON open in "
           "networkx, Gephi and Cytoscape; DOT in Graphviz; Newick in any tree viewer; HTML is a standalone "
           "interactive page. The same files come from `blockout export RUN --format F --what W`.")

WHAT = {"tree": "Branch tree", "layers": "Layer graph", "dendrogram": "Class dendrogram"}
MIME = {"graphml": "application/xml", "gexf": "application/xml", "json": "application/json",
        "dot": "text/vnd.graphviz", "newick": "text/plain", "html": "text/html"}
FORMAT_NAMES = {"graphml": "GraphML", "gexf": "GEXF", "json": "node-link JSON", "dot": "DOT (Graphviz)",
                "newick": "Newick", "html": "interactive HTML"}

whats = list(WHAT) if ctx.has_memberships else ["dendrogram"]
if not ctx.has_memberships:
    st.info("This run has no cluster memberships: only the dendrogram induced from its class weights can be exported.")
method = "weights" if not ctx.has_memberships else "probability"
for what in whats:
    st.subheader(WHAT[what])
    if what == "dendrogram" and ctx.has_memberships:
        method = st.radio("Class distances", ["probability", "connectivity", "weights"], horizontal=True,
                          key="ex_method", help="weights: the hierarchy induced from the classifier's weight rows")
    cols = st.columns(len(FORMATS))
    for col, fmt in zip(cols, FORMATS):
        if fmt == "newick" and what == "layers":
            col.button("Newick", disabled=True, key=f"ex_{what}_{fmt}",
                       help="Not available: Newick writes trees only, and the layer graph is not a tree (a group "
                            "of nodes can feed several groups of the next node set). Use GraphML, GEXF, JSON or DOT.")
            continue
        try:
            data = cache.export_bytes(ctx, what, fmt, method)
        except UserError as exc:
            # Greyed out, saying why (instead of an error box that pushes the other buttons around).
            col.button(FORMAT_NAMES[fmt], disabled=True, key=f"ex_{what}_{fmt}", help=f"Not available: {exc}")
            continue
        col.download_button(FORMAT_NAMES[fmt], data=data, mime=MIME[fmt], key=f"ex_{what}_{fmt}",
                            file_name=f"{run.name}_{what}.{EXTENSIONS[fmt]}", on_click="ignore",
                            help=f"{len(data):,} bytes")
