"""Text form of a run's summary: the table ``blockout inspect`` (and ``blockout demo``) prints.

Formatting only: the summary dict comes from :func:`analysis.summary.summarize_run` (its keys are
documented in the README, "inspect --json") and the verdict from :func:`analysis.verdict.run_verdict`.
"""

from __future__ import annotations

from typing import Any


def format_inspect(summary: dict[str, Any], verdict) -> str:
    """The verdict sentences, a blank line, then the summary table."""
    return "\n".join(verdict.sentences) + "\n\n" + format_summary(summary)


def _pct(x) -> str:
    """A share as a percentage, ``-`` when unknown.

    >>> _pct(0.5), _pct(None)
    ('50.00%', '-')
    """
    return "-" if x is None else f"{100 * x:.2f}%"


def format_summary(s: dict[str, Any]) -> str:
    """The readable table of ``blockout inspect``."""
    cfg = s["config"]
    acc = s["accuracy"]
    prog = s["progress"]
    ds = s["dataset"]
    sizes = (f", {ds['train_size']} train / {ds['test_size']} test"
             if ds.get("train_size") is not None and ds.get("test_size") is not None else "")
    # runs written by RunLogger from a user's own loop may lack any of these: leave out what is unknown
    known = [f"{k}={cfg[k]}" for k in ("clusters", "nodes", "depth") if cfg.get(k) is not None]
    epochs = f"epochs {prog['epochs_done']}/{prog['epochs']}" if prog.get("epochs") is not None else \
        f"epochs {prog['epochs_done']}"
    known += [epochs, f"steps {prog['steps_done']}"]
    known += [f"{k}={cfg[k]}" for k in ("lr", "seed") if cfg.get(k) is not None]
    lines = [f"run {s['run']}  ({s['path']})",
             f"  method {s['method'] or 'not recorded'}, dataset {ds.get('name') or 'not named'} "
             f"({ds['num_classes']} classes{sizes})",
             "  " + " ".join(known).replace("clusters=", "k=")]
    if acc["final"]:
        b, f = acc["best"], acc["final"]
        lines.append(f"  test accuracy: final {_pct(f['test_acc'])} (epoch {f['epoch']}), "
                     f"best {_pct(b['test_acc'])} (epoch {b['epoch']})"
                     + (f"; train accuracy {_pct(f['train_acc'])}" if f.get("train_acc") is not None else ""))
    else:
        lines.append("  no evaluation yet")
    snap = s["snapshot"]
    if not s["node_sets"]:
        lines.append("  no node sets (a plain network: no cluster memberships)")
        return "\n".join(lines)
    lines.append(f"  node sets at step {snap['step'] if snap else '-'}, threshold {s['threshold']}:")
    w = max(10, *(len(str(ns["name"])) + 2 for ns in s["node_sets"]))  # a model's several heads prefix the names
    head = f"    {'node set':<{w}}{'role':<9}{'size':>6}{'k':>4}{'mean P':>8}{'P<0.1':>8}{'P>0.9':>8}{'dead':>6}  nodes per cluster"
    lines.append(head)
    for ns in s["node_sets"]:
        if "mean" not in ns:
            lines.append(f"    {ns['name']:<{w}}{ns['role']:<9}{ns['size']:>6}{ns['clusters']:>4}  (no snapshot)")
            continue
        per = ns["nodes_per_cluster"]
        per_s = " ".join(str(c) for c in per[:16]) + (" ..." if len(per) > 16 else "")
        lines.append(f"    {ns['name']:<{w}}{ns['role']:<9}{ns['size']:>6}{ns['clusters']:>4}{ns['mean']:>8.3f}"
                     f"{ns['frac_below_0.1']:>8.3f}{ns['frac_above_0.9']:>8.3f}{ns['dead_nodes']:>6}  {per_s}")
    live = [f"{l['name']} {l['live_fraction']:.2f}" for l in s["layers"] if l.get("live_fraction") is not None]
    if live:
        lines.append("  live connections: " + ", ".join(live))
    return "\n".join(lines)
