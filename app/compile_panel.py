"""Branch tree page: what compiling the hierarchy at τ gives (``blockout compile``), and a download.

The counting (parameters, multiply-adds, live density, branches) comes from
:mod:`analysis.compile_plan` (numpy, instant). Building the network, measuring the thresholded
and compiled models' accuracy and offering ``compiled.pt`` need torch and the run's data: they run
only when asked (a button), through :func:`blockout.cmd_compile.compile_run`, imported lazily so
the page itself never loads torch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from analysis import runfolder as rf
from analysis.compile_plan import macs_reduction, plan_run
from analysis.errors import UserError


def compile_summary(run, tau: float, step=None) -> dict:
    """The plan summary at ``tau`` plus what the run offers for building (pure; no torch).

    Adds ``has_weights`` (a snapshot holds weights) and ``trunk_note`` (None when the trunk's
    weights are available or the trunk is the identity; else why accuracy cannot be measured).
    """
    s = plan_run(run, tau, step).summary(run.class_names)
    s["has_weights"] = bool(run.weight_steps())
    meta = run.record.to_json()  # run.json as load_run validated it
    kind = ((meta.get("topology") or {}).get("trunk") or {}).get("kind")
    shape = (meta.get("dataset") or {}).get("input_shape") or []
    identity = kind == "identity" or (kind is None and len(shape) == 1)
    has_state = (Path(run.path) / rf.TRAIN_STATE).is_file()
    s["trunk_note"] = None if (identity or has_state) else (
        f"the {kind or 'unknown'} trunk's weights are not in the run folder (no {rf.TRAIN_STATE}): the download "
        "is the FC head alone and accuracy cannot be measured")
    return s


def layer_rows(summary: dict) -> list[dict]:
    """One table row per layer: live density, kept nodes, blocks, multiply-adds before/after."""
    return [{"layer": lay["layer"], "in → out": f"{lay['in_features']} → {lay['out_features']}",
             "live density": round(lay["live_density"], 4),
             "kept in → out": f"{lay['kept_in']} → {lay['kept_out']}", "blocks": lay["blocks"],
             "multiply-adds before": lay["macs_before"], "after": lay["macs_after"]}
            for lay in summary["layers"]]


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(key: str, stamp: tuple, step, tau: float) -> dict:
    from app.state import _load

    return compile_summary(_load(key, stamp), tau, step)


@st.cache_data(show_spinner="Compiling (and measuring accuracy when the run's data and trunk are at hand) ...",
               max_entries=4)
def _build(key: str, stamp: tuple, step, tau: float) -> tuple[dict, bytes]:
    from blockout.cmd_compile import compile_run  # torch, only when asked

    with tempfile.TemporaryDirectory() as d:
        report = compile_run(key, d, tau=tau, step=step, export=False, progress=lambda m: None)
        return report, (Path(d) / "compiled.pt").read_bytes()


def show_compile_panel(ctx) -> None:
    """The "Compiled network" section for the context's run, step and τ."""
    st.subheader("Compiled network")
    st.caption("What `blockout compile` builds at this τ: dead nodes and nodes with no live path to a class "
               "removed, every FC layer as dense blocks where connections live, the trunk unchanged.")
    try:
        s = _summary(ctx.key, ctx.stamp, ctx.step, ctx.tau)
    except UserError as exc:
        st.error(str(exc))
        return
    pb, pa, mb, ma = s["params_before"], s["params_after"], s["macs_before"], s["macs_after"]
    c = st.columns(3)
    c[0].metric("FC parameters", f"{pa:,}", delta=f"{pa - pb:+,} ({pa / max(1, pb):.0%} of {pb:,})",
                delta_color="inverse")
    c[1].metric("multiply-adds / example", f"{ma:,}", delta=macs_reduction(mb, ma), delta_color="off")
    c[2].metric("branches below the trunk", len(s["branches"]))
    st.dataframe(layer_rows(s), hide_index=True)
    if s["const_classes"]:
        names = ", ".join(map(str, s["const_classes"][:10])) + (" …" if len(s["const_classes"]) > 10 else "")
        st.caption(f"{len(s['const_classes'])} class(es) have no live path at τ = {ctx.tau:.2f} and predict from "
                   f"their bias alone: {names}")
    if not s["has_weights"]:
        st.info("No snapshot of this run holds weights, so there is nothing to build.")
        return
    if s["trunk_note"]:
        st.caption(s["trunk_note"])
    if st.button("Build the compiled network and measure accuracy", key="cp_build"):
        st.session_state["cp_built"] = (ctx.key, ctx.step, ctx.tau)
    if st.session_state.get("cp_built") != (ctx.key, ctx.step, ctx.tau):
        return
    try:
        report, data = _build(ctx.key, ctx.stamp, ctx.step, ctx.tau)
    except UserError as exc:
        st.error(str(exc))
        return
    acc = report["accuracy"]
    if acc:
        c = st.columns(3)
        c[0].metric("accuracy, expected mask", f"{acc['expected']:.4f}")
        c[1].metric("thresholded at τ", f"{acc['thresholded']:.4f}", delta=f"{acc['thresholded'] - acc['expected']:+.4f}")
        c[2].metric("compiled", f"{acc['compiled']:.4f}")
    else:
        st.caption(report["accuracy_note"])
    e = report["exactness"]
    st.caption(f"Largest |compiled − thresholded| output difference: {e['max_abs_diff']:.2g} on {e['inputs']}.")
    st.download_button("Download compiled.pt", data, file_name=f"{report['run']}-tau{ctx.tau:.2f}-compiled.pt",
                       mime="application/octet-stream", key="cp_download")
    st.caption("Load it with `blockout.compile.load_compiled(path)` (a state dict and a JSON structure read with "
               "`torch.load(..., weights_only=True)`); `blockout compile RUN -o OUT` also writes a `torch.export` "
               "program that runs without this project.")
