"""Overview: the verdict first, then config, training curves, per-node-set cluster summary and what
happened to P; a button downloads the self-contained HTML report."""

import pandas as pd
import streamlit as st

from analysis.dynamics import DESCRIPTIONS
from analysis.errors import UserError
from app import cache, state
from app.figures import SAMPLING_CAPTION, training_curves, training_phases

ctx = state.require_context()
run = ctx.run
st.title(f"Overview · {ctx.label}")

try:
    summ = cache.summary(ctx)
except UserError as exc:
    st.error(str(exc))
    st.stop()

# The answer first: its place is at the top, but it needs the comparison with the references
# (permutation nulls, seconds on a large run), so the slot is filled after the rest of the page is
# drawn: the curves and tables do not wait for it.
verdict_slot = st.empty()
verdict_slot.info("Working out the verdict (comparing the class hierarchies with the references) …")

st.download_button(
    "Download report (HTML)", data=lambda: cache.report_html(ctx), file_name=f"{run.name}_report.html",
    mime="text/html", icon=":material/download:", key="ov_report", on_click="ignore",
    help="One self-contained page (verdict, curves, branch tree, classifier blocks, WordNet agreement, "
         "tanglegram, config): opens in any browser offline. Same as `blockout report RUN -o report.html`; "
         "takes a few seconds to build.")


def show_verdict() -> None:
    """One sentence per question, from measured numbers (analysis.verdict), in the slot at the top."""
    try:
        verdict = cache.verdict(ctx)
    except UserError as exc:
        verdict_slot.error(f"No verdict: {exc}")
        return
    with verdict_slot.container(border=True):
        flags = verdict.get("flags", [])  # e.g. memberships agreeing less than the run's own weights
        for sentence in verdict["sentences"]:
            for flag in flags:  # the text outputs end the sentence with it; here it gets its own box below
                sentence = sentence.removesuffix(" " + flag)
            q, sep, rest = sentence.partition("?")
            st.markdown(f"**{q}{sep}**{rest}" if sep else sentence)
        for flag in flags:
            st.warning(flag)
        st.caption(f"At step {ctx.step}, τ = {ctx.tau:.2f}; agreement from {cache.VERDICT_PERMUTATIONS} permutations "
                   "of the class labels (the WordNet page has the full tables).")


best = (summ["accuracy"] or {}).get("best") or {}
final = (summ["accuracy"] or {}).get("final") or {}
method = summ.get("method") or run.config.get("method") or "—"
st.markdown(f"Method **`{method}`** · dataset `{summ['dataset'].get('name') or run.dataset.get('name') or '—'}`")
cols = st.columns(4)
cols[0].metric("classes", len(run.class_names))
cols[1].metric("best test acc", f"{best['test_acc']:.3f}" if best.get("test_acc") is not None else "—",
               help=f"at step {best.get('step')}" if best else None)
cols[2].metric("final test acc", f"{final['test_acc']:.3f}" if final.get("test_acc") is not None else "—")
prog = summ["progress"]
cols[3].metric("epochs", f"{prog['epochs_done']}" + (f" / {prog['epochs']}" if prog.get("epochs") else ""))

st.plotly_chart(training_curves(run.metrics, phases=training_phases(run.config, run.metrics)), key="curves")
st.caption(SAMPLING_CAPTION)

with st.expander("Configuration (run.json)"):
    st.json(run.config, expanded=False)
    st.caption(f"Folder: `{ctx.key}` · created {summ.get('created') or '—'}")


def memberships_part() -> None:
    """The per-node-set table and what happened to P (Blockout runs only)."""
    if not ctx.has_memberships:
        st.info("This run has no cluster memberships (a plain network such as `fc` or `dropout`, or no "
                "snapshots yet): there is no branch tree, block order or emergence to show. The training "
                "curves above and the weight-induced class hierarchy (WordNet page) still apply.")
        return

    st.subheader(f"Clusters per node set at τ = {ctx.tau:.2f}, step {ctx.step}")
    outcomes = cache.outcomes(ctx)
    rows = []
    for th in cache.threshold_summaries(ctx):
        name = th["node_set"]
        out = outcomes.get(name)
        sizes = [int(x) for x in th["nodes_per_cluster"]]
        rows.append({
            "node set": name,
            "nodes": th["nodes"],
            "k": th["clusters"],
            "nodes per cluster": sizes,
            "min–max": f"{min(sizes)}–{max(sizes)}" if sizes else "—",
            "signatures": th["signatures"],
            "dead": th["dead_nodes"],
            "full": th["shared_nodes"],
            "empty k": len(th["empty_clusters"]),
            "what happened to P": out.outcome.replace("_", " ") if out else "—",
        })
    # Few, narrow columns so the table fits the page (nothing hidden behind a horizontal scroll): the
    # per-cluster sizes are a bar chart in one cell, the means of P are in "What happened to P" below.
    small = lambda label, helptext: st.column_config.NumberColumn(label, width="small", help=helptext)  # noqa: E731
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "node set": st.column_config.TextColumn(width="small"),
        "nodes": small("nodes", "nodes in the set"),
        "k": small("k", "clusters"),
        "nodes per cluster": st.column_config.BarChartColumn(
            "nodes per cluster", width="medium", y_min=0,
            help="nodes of each cluster at τ, cluster 0 on the left"),
        "min–max": st.column_config.TextColumn(width="small", help="fewest and most nodes in a cluster"),
        "signatures": small("signatures", "distinct sets of clusters a node belongs to"),
        "dead": small("dead", "nodes in no cluster at τ"),
        "full": small("full", "nodes in every cluster at τ (shared by all branches)"),
        "empty k": small("empty k", "clusters with no node"),
        "what happened to P": st.column_config.TextColumn(width="medium",
                                         help="outcome of P over the snapshots up to this step (see below)"),
    })

    st.subheader("What happened to P")
    lines = []
    for name, out in outcomes.items():
        lines.append(f"- **{name}**: {out.outcome.replace('_', ' ')} — {out.description} "
                     f"(mean P {out.mean_p:.2f}, {out.share_high:.0%} ≥ 0.9, {out.share_low:.0%} ≤ 0.1, "
                     f"mean change {out.change:.2f} since the first snapshot)")
    st.markdown("\n".join(lines))
    trained = [o for n, o in outcomes.items() if o.outcome != "fixed"]
    if trained and all(o.outcome == "rose_to_1" for o in trained):
        st.warning("Every trained node set drifted to P ≈ 1: every node is in every cluster, so no branches "
                   "formed (the drift-to-1 failure mode; see the Emergence page).")
    with st.expander("How the outcome is decided"):
        st.markdown("\n".join(f"- **{k.replace('_', ' ')}**: {v}" for k, v in DESCRIPTIONS.items())
                    + "\n\nAt 0/1 means ≤ 0.1 or ≥ 0.9; an outcome at 0/1 needs 90 % of the entries there; "
                      "'stayed' means a mean absolute change ≤ 0.02 since the first snapshot.")


memberships_part()
show_verdict()
