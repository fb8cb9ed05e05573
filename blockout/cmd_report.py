"""``blockout report RUN -o report.html``: one self-contained offline HTML page about a run.

The page (built by :mod:`app.report`) holds the verdict, training curves, branch tree, the
classifier's weight blocks, the agreement with WordNet per depth, the tanglegram, the configuration
and the versions; plotly.js is embedded inline once, so it opens from disk with no server and no
network. The file is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import argparse
import sys


def add_report(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a run (opens offline)",
                       description="Write one HTML page about RUN: the verdict (did branches form, do they match "
                                   "WordNet), training curves with their phases, the branch tree, the classifier's "
                                   "weight blocks, agreement with WordNet per depth, the tanglegram, the "
                                   "configuration and the library versions. plotly.js is embedded inline, so "
                                   "the page opens from disk with no server and no network. Takes a few "
                                   "seconds (permutation nulls, untangling).")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="output file (default: <run name>_report.html in the current folder)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T", help="membership threshold τ (default: 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="S", help="snapshot step (default: the last)")
    p.add_argument("--permutations", type=int, default=999, metavar="N",
                   help="permutations of the comparison's nulls (default: 999)")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:

    from analysis.run import read_run_meta

    run, *_ = read_run_meta(args.run)  # the one validated check: a clear line before any slow work
    out = args.output or f"{run.resolve().name}_report.html"
    from app.report import write_report

    def progress(msg: str) -> None:
        print(f"report: {msg} …", file=sys.stderr, flush=True)

    path = write_report(run, out, step=args.step, tau=args.threshold, permutations=args.permutations,
                        progress=progress)
    print(path)
    return 0
