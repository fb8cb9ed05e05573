"""WordNet: class → synset table, agreement with WordNet (and coarse classes) with permutation nulls,
agreement per WordNet depth, and the network dendrogram beside the WordNet tree (tanglegram)."""

import pandas as pd
import streamlit as st

from analysis.errors import UserError
from app import cache, reference_input, state
from app.figures import agreement_by_depth, linkage_tree, paths_tree, tanglegram

ctx = state.require_context()
run = ctx.run
st.title("WordNet")
choice = reference_input.selector()  # your own reference file / synset map (app/reference_input.py)

table, paths = reference_input.synsets(ctx, choice)
with st.expander(f"Class → synset table ({sum(r['synset'] != '—' for r in table)} of {len(table)} classes mapped)",
                 expanded=False):
    st.dataframe(pd.DataFrame(table), hide_index=True)

methods = ["probability", "connectivity"] if ctx.has_memberships else ["probability"]
method = st.radio("Network class distances from the memberships", methods, horizontal=True, key="wn_method",
                  help="probability: cosine distance of the classes' P rows; connectivity: Jaccard distance "
                       "of the hidden nodes they reach at τ. The weight-induced hierarchy is always shown too.")
perms = st.select_slider("Permutations for the null", options=[99, 199, 499, 999], value=999, key="wn_perms")
try:
    report = reference_input.comparison(ctx, method, perms, choice)
except UserError as exc:
    st.error(str(exc))
    st.stop()
for note in report["notes"]:
    st.caption(f"Note: {note}")
if not ctx.has_memberships:
    st.info("This run has no cluster memberships (not a Blockout run): only the hierarchy induced from its "
            "class weights is compared.")

st.subheader("Agreement with the references")
st.caption("Each network dendrogram is cut into as many groups as the reference has. Null: class labels "
           f"permuted over the dendrogram's leaves ({report['permutations']} permutations, same shape). "
           "z = (observed − null mean) / null sd; p = share of null draws ≥ observed.")
rows, depth_rows = [], []
for h in report["hierarchies"]:
    for p in h["partitions"]:
        row = {"hierarchy": h["source"], "reference": p["reference"], "groups": p["n_groups"]}
        for m in ("ari", "nmi", "fmi"):
            s = p[m]
            row[m.upper()] = s["observed"]
            row[f"{m.upper()} null"] = s["null_mean"]
            row[f"{m.upper()} z"] = s["z"]
            row[f"{m.upper()} p"] = s["p"]
            if p["kind"] == "wordnet":
                depth_rows.append({"source": h["source"], "metric": m, "depth": p["depth"], "n_groups": p["n_groups"],
                                   **{k: s[k] for k in ("observed", "null_mean", "null_std", "p")}})
        rows.append(row)
    for d in h["distances"]:
        s = d["spearman"]
        rows.append({"hierarchy": h["source"], "reference": f"Spearman vs {d['reference']} distances (Mantel)",
                     "groups": None, "ARI": s["observed"], "ARI null": s["null_mean"], "ARI z": s["z"],
                     "ARI p": s["p"]})
if rows:
    fmt = {c: st.column_config.NumberColumn(format="%.3f") for c in rows[0] if c not in ("hierarchy", "reference", "groups")}
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=fmt)
    st.caption("Spearman rows show the rank correlation in the ARI columns.")

st.subheader("Agreement per WordNet depth")
st.plotly_chart(agreement_by_depth(depth_rows), key="wn_depth")

st.subheader("Network dendrogram beside the WordNet tree")
sources = {h["source"]: h for h in report["hierarchies"]}
if not sources:
    st.info("No network hierarchy to draw.")
    st.stop()
source = st.radio("Network hierarchy", list(sources), horizontal=True, key="wn_source",
                  format_func=lambda s: {"memberships": f"memberships ({method})",
                                         "weights": "induced from class weights"}.get(s, s))
try:
    h = cache.class_hierarchy(ctx, method if source == "memberships" else "weights")
except UserError as exc:
    st.error(str(exc))
    st.stop()
left = linkage_tree(h.linkage, h.labels)
if paths is not None:
    right, right_title = paths_tree(paths), "WordNet"
elif run.coarse_labels is not None:
    names = run.coarse_names or []
    right = paths_tree({c: [names[g] if g < len(names) else str(g)] for c, g in zip(run.class_names, run.coarse_labels)})
    right_title = "coarse classes (no WordNet synsets for these classes)"
else:
    st.info("The classes have no WordNet synsets and no coarse groups: nothing to draw beside the dendrogram.")
    st.stop()
st.caption("Lines join the same class; mostly horizontal lines mean the two hierarchies agree.")
st.plotly_chart(tanglegram(left, right, left_title=f"network ({h.method})", right_title=right_title), key="wn_tangle")
