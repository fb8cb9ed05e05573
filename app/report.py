"""One self-contained, offline HTML page about a run: the shareable report.

``blockout report RUN -o report.html`` and the Overview's "Download report" button write it. The
page holds the verdict, the training curves, the branch tree, the classifier's weight blocks, the
agreement with WordNet per depth, the tanglegram, the configuration and the library versions. It
opens in a browser from disk: plotly.js is embedded once, inline; no script, style sheet, font or
image is fetched from anywhere (system fonts only).

The figures are the dashboard's own builders (:mod:`app.figures`) over the same derived data
(:mod:`app.derive`), so the report shows what the pages show.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Callable

from analysis.errors import UserError

#: The comparison the report's verdict and WordNet sections read (as the dashboard's default view).
METHOD, PERMUTATIONS = "probability", 999

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 1.5rem 2rem 4rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { font-size: 1.3rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta, .caption { color: #555; font-size: .9rem; } .caption { margin: .3rem 0 .8rem; }
.verdict { background: #f3f7fb; border-left: 4px solid #1f77b4; padding: .6rem 1rem; margin: 1rem 0; }
.verdict p { margin: .4rem 0; } .note { color: #8a6d3b; background: #fcf8e3; padding: .4rem .8rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; }
th { background: #f5f5f5; } td.l, th.l { text-align: left; }
tr.coarse td { background: #fff8e1; } tr.degenerate td { color: #999; }
tr.best td { background: #e6f4ea; font-weight: 600; }
pre { background: #f7f7f7; padding: .8rem; overflow-x: auto; font-size: .8rem; }
"""


def _esc(x) -> str:
    return html.escape(str(x))


def _md_bold(text: str) -> str:
    """Escaped text with the question (up to its '?') in bold."""
    q, sep, rest = str(text).partition("?")
    return f"<b>{_esc(q + sep)}</b>{_esc(rest)}" if sep else _esc(text)


class _Page:
    """Sections of HTML; the first figure carries plotly.js inline, the others refer to it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def add(self, s: str) -> None:
        self.parts.append(s)

    def figure(self, fig) -> None:
        import plotly.graph_objects as go
        import plotly.io as pio

        self.figures += 1
        # The dashboard's figures use thin margins (Streamlit pads the chart); a bare page needs
        # room on the left for the tick labels or they are cut ("0.2" drawn as ".2").
        fig = go.Figure(fig)
        fig.update_layout(margin=dict(l=max(fig.layout.margin.l or 0, 50)))
        self.add(pio.to_html(fig, full_html=False, include_plotlyjs=False, include_mathjax=False,
                             div_id=f"fig{self.figures}",
                             config={"displaylogo": False, "responsive": True}))

    def note(self, msg: str) -> None:
        self.add(f'<p class="note">{_esc(msg)}</p>')


def _fmt(x, spec: str = ".3f") -> str:
    if x is None:
        return "—"
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return _esc(x)


def _table(rows: list[dict], cols: list[str], *, row_class: Callable[[dict], str] | None = None,
           fmt: dict | None = None) -> str:
    fmt = fmt or {}
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{_esc(c)}</th>' for i, c in enumerate(cols))
    body = []
    for r in rows:
        cls = row_class(r) if row_class else ""
        cells = []
        for i, c in enumerate(cols):
            v = r.get(c)
            text = fmt[c](v) if c in fmt else (_fmt(v) if isinstance(v, float) else _esc("—" if v is None else v))
            cells.append(f'<td class="{"l" if i == 0 or isinstance(v, str) else ""}">{text}</td>')
        body.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def build_report(run, *, step: int | None = None, tau: float = 0.5, permutations: int = PERMUTATIONS,
                 progress: Callable[[str], None] | None = None) -> str:
    """The report of a loaded run as one HTML string (see the module docstring).

    Parameters
    ----------
    run : :class:`analysis.run.Run`
    step : snapshot step (default: the last)
    tau : membership threshold τ
    permutations : permutations of the comparison's nulls
    progress : called with a short message before each slow part (the command line prints them)
    """
    import plotly.offline

    from analysis import graphs, hierarchy
    from analysis.compare import compare_run
    from analysis.summary import summarize_run
    from app import derive, wordnet_labels
    from app.figures import agreement_by_depth, tanglegram, training_curves, training_phases, tree_figure
    from app.figures.annotate import annotate_branch_tree
    from app.figures.curves import SAMPLING_CAPTION
    from app.figures.heatmaps import layer_blocks_figure
    from app.figures.trees import tanglegram_orders

    say = progress or (lambda msg: None)
    if step is None and run.steps:
        step = run.steps[-1]
    page = _Page()
    summ = summarize_run(run.path, step, tau)
    acc = summ.get("accuracy") or {}
    best, final = acc.get("best") or {}, acc.get("final") or {}
    method = summ.get("method") or run.config.get("method") or "—"
    dataset = (summ.get("dataset") or {}).get("name") or run.dataset.get("name") or "—"
    page.add(f"<h1>Blockout run · {_esc(run.name)}</h1>")
    page.add(f'<p class="meta">method <b>{_esc(method)}</b> · dataset {_esc(dataset)} · '
             f"{len(run.class_names)} classes · {len(run.node_sets)} node sets · snapshot step {_esc(step)} · "
             f"τ = {tau:.2f} · best test accuracy {_fmt(best.get('test_acc'))} (step {_esc(best.get('step', '—'))}), "
             f"final {_fmt(final.get('test_acc'))} · report written {time.strftime('%Y-%m-%d %H:%M')}</p>")

    # -- verdict (needs the comparison; degrade to the branch question alone without references)
    say("comparing the class hierarchies with the references (permutation nulls)")
    report = None
    try:
        report = compare_run(run, "all", 0.5, step, "both", METHOD, permutations).to_dict()
    except UserError as exc:
        report_error = str(exc)
    else:
        report_error = None
    page.add("<h2>Verdict</h2>")
    try:
        v = derive.verdict(run, report, tau, step)
        page.add('<div class="verdict">' + "".join(f"<p>{_md_bold(s)}</p>" for s in v.sentences) + "</div>")
    except UserError as exc:
        page.note(f"no verdict: {exc}")

    # -- training
    say("drawing the training curves")
    page.add("<h2>Training</h2>")
    page.figure(training_curves(run.metrics, phases=training_phases(run.config, run.metrics)))
    page.add(f'<p class="caption">{_esc(SAMPLING_CAPTION.replace("*", ""))}</p>')

    # -- node sets and branch tree
    has_memberships = bool(run.node_sets) and bool(run.steps)
    page.add("<h2>Branch tree</h2>")
    if not has_memberships:
        page.note("This run has no cluster memberships (not a Blockout run): no branch tree.")
    else:
        say("building the branch tree")
        try:
            from analysis.threshold import threshold_all

            th = threshold_all(run.probs(step), tau)
            rows = [th[n].summary() for n in run.chain if n in th]
            table = [{"node set": r["node_set"], "nodes": r["nodes"], "clusters": r["clusters"],
                      "nodes per cluster": " ".join(map(str, r["nodes_per_cluster"])),
                      "signatures": r["signatures"], "dead nodes": r["dead_nodes"],
                      "in every cluster": r["shared_nodes"]} for r in rows]
            page.add(_table(table, list(table[0]) if table else []))
            label_fn, syn = wordnet_labels.for_run(run)
            tree = annotate_branch_tree(graphs.branch_tree(run, tau, step, label_fn=label_fn), run.class_names, syn)
            page.add(f'<p class="caption">τ = {tau:.2f} · step {_esc(step)}. Clusters that share a node are joined '
                     "per node set; classes hang under the deepest branch holding all their clusters.</p>")
            page.figure(tree_figure(tree, root=tree.graph.get("root")))
        except UserError as exc:
            page.note(str(exc))

    # -- classifier weight blocks
    page.add("<h2>Weight blocks of the classifier</h2>")
    clf = run.classifier
    try:
        if clf is None or not run.weight_steps():
            page.note("The run saved no classifier weights.")
        else:
            say("ordering the classifier's weights into blocks")
            data = derive.layer_heatmap(run, clf.name, step, tau)
            fig, caption = layer_blocks_figure(data, tau)
            page.add(f'<p class="caption">Layer {_esc(clf.name)} '
                     f"({_esc(clf.in_set or 'input')} → {_esc(clf.out_set or 'output')}): {_esc(caption)}</p>")
            page.figure(fig)
    except UserError as exc:
        page.note(str(exc))

    # -- WordNet
    page.add("<h2>Agreement with WordNet and the coarse classes</h2>")
    if report is None:
        page.note(f"No comparison: {report_error}")
    else:
        page.add(f'<p class="caption">Each network dendrogram is cut into as many groups as the reference has. '
                 f"Null: class labels permuted over the dendrogram's leaves ({report['permutations']} "
                 "permutations); the band is the null mean ± 2 sd. p: one-sided permutation p-value; Holm: "
                 "adjusted over the references of that hierarchy.</p>")
        page.figure(agreement_by_depth(derive.depth_rows(report)))
        rows = derive.agreement_rows(report)
        for r in rows:
            r["reference"] = r["reference"] + (" (coarse classes)" if r["coarse"] else "") + \
                (" (one class vs rest)" if r["degenerate"] else "") + (" ← best" if r.get("best") else "")
        page.add(_table(rows, ["hierarchy", "reference", "groups", "ARI", "ARI null", "ARI p", "ARI p (Holm)",
                               "NMI", "FMI"],
                        row_class=lambda r: " ".join(c for c in ("best", "coarse", "degenerate") if r.get(c)),
                        fmt={"groups": lambda v: _esc(v)}))
        page.add('<p class="caption">Green: the best-supported reference of each hierarchy (smallest Holm-adjusted '
                 "ARI p). Yellow: the dataset's coarse classes. Grey: one class against all the rest (never the "
                 "headline).</p>")
        for n in report.get("notes", []):
            page.add(f'<p class="caption">Note: {_esc(n)}</p>')
        say("untangling the tanglegram")
        try:
            h = hierarchy.class_hierarchy(run, METHOD if run.class_set is not None else "weights", 0.5, step)
            inputs = derive.tanglegram_inputs(run, h, wordnet_labels.class_paths(run))
            if inputs is None:
                page.note("The classes have no WordNet synsets and no coarse groups: no tanglegram.")
            else:
                left, right, right_title, groups, group_title = inputs
                orders = tanglegram_orders(left, right)
                page.add('<p class="caption">The network dendrogram (left) beside the reference tree (right); a '
                         "line joins the two places of each class, coloured by its group. Both trees are rotated "
                         f"to reduce crossings: {orders['crossings']} left of {orders['crossings_before']} in "
                         "the unrotated drawing.</p>")
                page.figure(tanglegram(left, right, orders=orders, groups=groups, group_title=group_title,
                                       left_title=f"network ({h.method})", right_title=right_title))
        except UserError as exc:
            page.note(str(exc))

    # -- config and versions
    page.add("<h2>Configuration and versions</h2>")
    versions = (run.meta or {}).get("versions") or {}
    if versions:
        page.add(_table([{"library": k, "version": v} for k, v in versions.items()], ["library", "version"]))
    page.add(f'<p class="meta">Run folder: {_esc(run.path)} · created {_esc((run.meta or {}).get("created", "—"))}</p>')
    page.add(f"<pre>{_esc(json.dumps(run.config, indent=1, sort_keys=True, default=str))}</pre>")

    say("writing the page")
    plotly_js = plotly.offline.get_plotlyjs()
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Blockout report · {_esc(run.name)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_CSS}</style>"
            # plotly.js inline, once (no CDN): the page works from disk with no network.
            f'<script type="text/javascript">{plotly_js}</script></head><body>'
            + "\n".join(page.parts) + "</body></html>\n")


def write_report(run_path: str | os.PathLike, out: str | os.PathLike, *, step: int | None = None,
                 tau: float = 0.5, permutations: int = PERMUTATIONS,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Load the run at ``run_path``, build its report and write it atomically to ``out``."""
    from analysis.run import load_run
    from analysis.runfolder import atomic_write_text

    if not 0.0 < tau < 1.0:
        raise UserError(f"--threshold must be between 0 and 1, got {tau}")
    if permutations < 0:
        raise UserError(f"--permutations must be >= 0, got {permutations}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; give the report's file name (e.g. {out / 'report.html'})")
    if not out.parent.exists():
        raise UserError(f"folder {out.parent} does not exist")
    run = load_run(run_path)
    if step is not None and run.steps and step not in run.steps:
        raise UserError(f"{run.path}: no snapshot at step {step} (steps: {run.steps[0]} … {run.steps[-1]})")
    text = build_report(run, step=step, tau=tau, permutations=permutations, progress=progress)
    atomic_write_text(out, text)
    return out
