"""Compare runs: two runs side by side — accuracy curves, cluster summaries, agreement metrics."""

import pandas as pd
import streamlit as st

from analysis.errors import UserError
from app import cache, derive, state
from app.figures import compare_curves

ctx = state.require_context()
st.title("Compare runs")
root = state.checkpoints_root()
others = [str(p) for p in state.all_runs(root) if str(p.resolve()) != ctx.key]
choice = st.selectbox("Second run", others + ["(type a path)"], key="cmp_pick", index=state.first_openable(others),
                      format_func=lambda s: s if s == "(type a path)" else state.run_label(s, root))
path = st.text_input("Run folder", key="cmp_path") if choice == "(type a path)" else choice
if not path:
    st.info("Pick a second run under checkpoints/ or type the path of a run folder.")
    st.stop()
try:
    run_b, key_b, stamp_b = state.open_run(path)
except UserError as exc:
    st.error(str(exc))
    st.stop()
other = state.Context(run=run_b, key=key_b, stamp=stamp_b, label=run_b.name,
                      step=run_b.steps[-1] if run_b.steps else None, tau=ctx.tau)
pair = [ctx, other]
st.caption(f"**{ctx.label}** at step {ctx.step} (the sidebar's step) and **{other.label}** at its last step "
           f"{other.step}; both at τ = {ctx.tau:.2f}.")

metric = st.radio("Curve", ["test_acc", "test_loss"], horizontal=True, key="cmp_metric",
                  format_func=lambda m: {"test_acc": "accuracy", "test_loss": "loss"}[m])
st.plotly_chart(compare_curves({c.label: c.run.metrics for c in pair}, key=metric), key="cmp_curves")

st.subheader("Cluster summaries")
cols = st.columns(2)
for col, c in zip(cols, pair):
    with col:
        st.markdown(f"**{c.label}** · method `{c.run.config.get('method', '—')}`")
        if not c.has_memberships:
            st.caption("No cluster memberships (not a Blockout run).")
            continue
        try:
            outs = cache.outcomes(c)
            rows = [{"node set": t["node_set"], "nodes": t["nodes"], "k": t["clusters"],
                     "per cluster": " ".join(map(str, t["nodes_per_cluster"])), "signatures": t["signatures"],
                     "dead": t["dead_nodes"], "P": outs[t["node_set"]].outcome.replace("_", " ")}
                    for t in cache.threshold_summaries(c)]
            st.dataframe(pd.DataFrame(rows), hide_index=True)
        except UserError as exc:
            st.error(str(exc))

st.subheader("Agreement with the references")
st.caption("Adjusted Rand index of each network hierarchy cut to the reference's number of groups, with its "
           "permutation z-score and p-value (199 permutations here; the WordNet page uses more).")
rows = []
for c in pair:
    try:
        rep = cache.comparison(c, "probability", 199)
    except UserError as exc:
        st.error(f"{c.label}: {exc}")
        continue
    for r in derive.agreement_rows(rep):  # sorted: coarse first, then WordNet depths numerically
        rows.append({"run": c.label, "hierarchy": r["hierarchy"], "reference": r["reference"],
                     "depth": r["depth"], "groups": r["groups"], "ARI": r["ARI"], "null mean": r["ARI null"],
                     "z": r["ARI z"], "p": r["ARI p"], "p (Holm)": r["ARI p (Holm)"],
                     "one class vs rest": r["degenerate"]})
if rows:
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index=["reference", "groups"], columns=["run", "hierarchy"], values="ARI", sort=False)
    order = (table.drop_duplicates("reference").assign(d=lambda t: t["depth"].fillna(-1))
             .sort_values("d", kind="stable")["reference"].tolist())
    wide = wide.reindex(sorted(wide.index, key=lambda ix: order.index(ix[0])))
    st.dataframe(wide, column_config=None)
    st.caption("Rows in WordNet depth order (the dataset's coarse classes first). A reference that puts one class "
               "against all the rest says nothing about a hierarchy; such rows are marked in the full table.")
    with st.expander("All numbers (with nulls)"):
        st.dataframe(table.drop(columns=["depth"]), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("ARI", "null mean", "z", "p", "p (Holm)")})
else:
    st.info("No reference grouping is available for these runs.")
