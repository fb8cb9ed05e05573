"""``blockout inspect RUN``: the verdict, then a one-screen summary of a run folder.

:func:`inspect_run` computes both (``blockout demo`` prints the same); the text table is
:mod:`analysis.summary_report`, the ``--json`` keys are documented in the README.
"""

from __future__ import annotations

import argparse
import json
import sys

from analysis.summary_report import format_inspect
from blockout.errors import UserError


def add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="summarise a run folder",
                       description="First the verdict (did branches form: per learned node set its outcome, "
                                   "branches, dead and full nodes), then config, best and final accuracy, and per "
                                   "node set: size, k, mean P, share of P < 0.1 and > 0.9, nodes per cluster and "
                                   "dead nodes at a threshold.")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in the README)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="membership threshold: node in cluster when P >= T (default: 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="N", help="snapshot step (default: the last)")
    p.add_argument("--permutations", type=int, default=999, metavar="N",
                   help="permutations of the null behind the verdict's second question (memberships vs the "
                        "dataset's references, as blockout compare); 0 skips the comparison (default: 999)")
    p.set_defaults(handler=cmd_inspect)


def inspect_run(run_dir, threshold: float = 0.5, step: int | None = None, permutations: int = 999):
    """``(summary, verdict)`` of a run folder: what ``blockout inspect`` and ``blockout demo`` print.

    The verdict's second question needs the comparison with the dataset's references
    (``permutations`` 0 skips it); a run without usable references still gets its summary.
    """
    from analysis.run import load_run
    from analysis.summary import summarize_run
    from analysis.verdict import run_verdict

    if permutations < 0:
        raise UserError(f"--permutations must be >= 0, got {permutations}")
    summary = summarize_run(run_dir, step=step, threshold=threshold)
    run = load_run(run_dir)
    report = None
    if permutations:
        from analysis.compare import compare_run

        try:
            report = compare_run(run, reference=["all"], threshold=threshold, step=step, permutations=permutations)
        except UserError as exc:
            print(f"blockout: note: no comparison for the verdict: {exc}", file=sys.stderr)
    return summary, run_verdict(run, report, threshold=threshold, step=step)


def cmd_inspect(args: argparse.Namespace) -> int:
    summary, verdict = inspect_run(args.run, args.threshold, args.step, args.permutations)
    if args.json:
        print(json.dumps({**summary, "verdict": verdict.to_dict()}, allow_nan=False))
    else:
        print(format_inspect(summary, verdict))
    return 0
