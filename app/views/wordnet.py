"""WordNet: does the network group classes the way WordNet (or the coarse classes) does?

Shows before it lists: the agreement per WordNet depth with its permutation-null band first, then
the full table collapsed (coarse row and best rows highlighted, depths in numeric order), then the
network dendrogram beside the reference tree (an untangled tanglegram), then the class → synset
table. The comparison's settings sit together at the top (:func:`settings`) so further reference
options can join them there.
"""

import pandas as pd
import streamlit as st

from analysis.errors import UserError
from app import cache, derive, reference_input, state
from app.figures import agreement_by_depth, tanglegram

ctx = state.require_context()
run = ctx.run
st.title("WordNet")
choice = reference_input.selector()  # your own reference file / synset map (app/reference_input.py)


def settings() -> tuple[str, int]:
    """The comparison's settings: membership distances and permutations of the null."""
    methods = ["probability", "connectivity"] if ctx.has_memberships else ["probability"]
    cols = st.columns([3, 2])
    with cols[0]:
        method = st.radio("Network class distances from the memberships", methods, horizontal=True, key="wn_method",
                          help="probability: cosine distance of the classes' P rows; connectivity: Jaccard distance "
                               "of the hidden nodes they reach at τ. The weight-induced hierarchy is always shown too.")
    with cols[1]:
        perms = st.select_slider("Permutations for the null", options=[99, 199, 499, 999], value=999, key="wn_perms")
    return method, perms


method, perms = settings()
try:
    with st.spinner("Comparing with the references (permutation nulls) …"):
        report = reference_input.comparison(ctx, method, perms, choice)
except UserError as exc:
    st.error(str(exc))
    st.stop()
if not ctx.has_memberships:
    st.info("This run has no cluster memberships (not a Blockout run): only the hierarchy induced from its "
            "class weights is compared.")

rows = derive.agreement_rows(report)

# --- show: agreement per depth, with the null band -------------------------------------------
st.subheader("Agreement per WordNet depth")
st.caption("Each network dendrogram is cut into as many groups as WordNet has at that depth. Solid line: observed "
           "agreement; dotted line and band: the null's mean ± 2 sd (class labels permuted over the dendrogram's "
           f"leaves, {report['permutations']} permutations, same shape). A line above its band agrees with WordNet "
           "more than chance. Depths that put one class against the rest are left out.")
st.plotly_chart(agreement_by_depth(derive.depth_rows(report)), key="wn_depth")

best = [r for r in rows if r.get("best")]
if best:
    lines = []
    for r in best:
        where = "the dataset's coarse classes" if r["coarse"] else f"WordNet depth {r['depth']}"
        holm = r["ARI p (Holm)"]
        null = f", null mean {r['ARI null']:.3f}" if r["ARI null"] is not None else ""
        p_text = f", Holm-adjusted p {holm:.3g}" if holm is not None else ""
        lines.append(f"- **{r['hierarchy']}**: best-supported reference is {where} ({r['groups']} groups): "
                     f"ARI {r['ARI']:.3f}{null}{p_text}")
    st.markdown("\n".join(lines))
for note in report["notes"]:
    st.caption(f"Note: {note}")

# --- list: the full table, collapsed -----------------------------------------------------------
with st.expander(f"All agreement numbers ({len(rows)} rows: ARI, NMI, Fowlkes–Mallows with nulls, z and p)"):
    if rows:
        cols = ["hierarchy", "reference", "depth", "groups", "ARI", "ARI null", "ARI z", "ARI p", "ARI p (Holm)",
                "NMI", "NMI null", "NMI z", "NMI p", "FMI", "FMI null", "FMI z", "FMI p"]
        table = pd.DataFrame(rows)
        flags = table[["best", "coarse", "degenerate"]].fillna(False).astype(bool)
        table = table[cols].astype({"depth": "Int64"})

        def shade(row):
            f = flags.loc[row.name]
            colour = ("background-color: #d9f2e0; font-weight: 600" if f["best"] else
                      "background-color: #fff3cd" if f["coarse"] else "color: #999" if f["degenerate"] else "")
            return [colour] * len(row)

        numeric = [c for c in cols if c not in ("hierarchy", "reference", "depth", "groups")]
        fmt = {c: "{:.3f}" for c in numeric} | {"depth": lambda v: "—" if pd.isna(v) else f"{int(v)}"}
        st.dataframe(table.style.apply(shade, axis=1).format(fmt, na_rep="—"), hide_index=True)
        st.caption("Green: the best-supported reference of each hierarchy (smallest Holm-adjusted ARI p). Yellow: the "
                   "dataset's coarse classes. Grey: one class against all the rest (never the headline). z = "
                   "(observed − null mean) / null sd, empty when the null does not vary; p = share of null draws "
                   "≥ observed; ARI nulls are skewed, so read p, not z.")
    dist = [{"hierarchy": h["source"], "against": f"{d['reference']} distances", "Spearman": d["spearman"]["observed"],
             "null mean": d["spearman"]["null_mean"], "z": d["spearman"]["z"], "p": d["spearman"]["p"]}
            for h in report["hierarchies"] for d in h["distances"]]
    if dist:
        st.markdown("**Rank correlation of class distances (Mantel test)**")
        st.dataframe(pd.DataFrame(dist), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("Spearman", "null mean", "z", "p")})

# --- the tanglegram ---------------------------------------------------------------------------
st.subheader("Network dendrogram beside the WordNet tree")
sources = {h["source"]: h for h in report["hierarchies"]}
if not sources:
    st.info("No network hierarchy to draw.")
    st.stop()
source = st.radio("Network hierarchy", list(sources), horizontal=True, key="wn_source",
                  format_func=lambda s: {"memberships": f"memberships ({method})",
                                         "weights": "induced from class weights"}.get(s, s))
h_method = method if source == "memberships" else "weights"
try:
    h = cache.class_hierarchy(ctx, h_method)
    table, paths = reference_input.synsets(ctx, choice)
    inputs = derive.tanglegram_inputs(run, h, paths)
    if inputs is None:
        st.info("The classes have no WordNet synsets and no coarse groups: nothing to draw beside the dendrogram.")
        st.stop()
    with st.spinner("Untangling the two trees …"):
        orders = cache.tangle_orders(ctx, h_method)
except UserError as exc:
    st.error(str(exc))
    st.stop()
left, right, right_title, groups, group_title = inputs
c = st.columns(3)
c[0].metric("line crossings", f"{orders['crossings']:,}",
            delta=f"{orders['crossings'] - orders['crossings_before']:,} by untangling", delta_color="inverse",
            help="Pairs of lines that cross. Both trees' branches are rotated (which changes the drawing, not the "
                 "trees) to reduce them: step-wise, each side fitted exactly to the other, then single rotations "
                 "with a refit of the other side.")
c[1].metric("before untangling", f"{orders['crossings_before']:,}",
            help="The drawing without rotations of the network tree (the reference tree ordered to follow it).")
c[2].metric("classes", len(h.labels))
st.caption("A line joins the two places of each class, coloured by its " + group_title + " (legend on the right). "
           "Mostly horizontal, untangled lines mean the two hierarchies agree; lines that must cross show where they "
           "differ. Hover a vertex or a class for its name.")
st.plotly_chart(tanglegram(left, right, orders=orders, groups=groups, group_title=group_title,
                           left_title=f"network ({h.method})", right_title=right_title), key="wn_tangle")

with st.expander(f"Class → synset table ({sum(r['synset'] != '—' for r in table)} of {len(table)} classes mapped)",
                 expanded=False):
    st.dataframe(pd.DataFrame(table), hide_index=True)
