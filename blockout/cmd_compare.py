"""``blockout compare RUN``: the verdict, then the run's class hierarchies against reference hierarchies.

The statistics are :mod:`analysis.compare` (orchestration) and :mod:`analysis.stats`; the text
table is :mod:`analysis.compare_report`; the ``--json`` keys are documented in ``docs/compare.md``.
"""

from __future__ import annotations

import argparse
import json


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="compare a run's class hierarchy with WordNet / coarse classes",
                       description="First the verdict (did branches form; do the memberships group classes like "
                                   "the best-supported reference, side by side with the weights), then the "
                                   "agreement (ARI, NMI, Fowlkes-Mallows) of the network's class groups with "
                                   "WordNet hypernyms at each depth and with the dataset's coarse classes, and "
                                   "Spearman correlation of class distances with a Mantel test; every statistic "
                                   "with a null from the same dendrogram with permuted class labels (z, p).")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("--reference", action="append", default=None, metavar="wordnet|coarse|all|FILE.json",
                   help="reference hierarchy: WordNet hypernyms, the dataset's coarse classes, all that the "
                        "run's classes allow (the default), or your own nested {group: [classes]} JSON file "
                        "(the --hierarchy format, any depth: every level is a reference partition, its tree "
                        "distances go to the Mantel test); repeat to combine, e.g. --reference all "
                        "--reference mine.json")
    p.add_argument("--synsets", default=None, metavar="FILE.json",
                   help='WordNet synsets for some classes, overriding wnids, the curated table and guesses: '
                        '{"class name": "synset.n.01" or "n01234567"}. Class names that are WordNet nouns '
                        "otherwise take their most frequent sense, listed in the notes as guesses")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="membership threshold for connectivity distances (default: 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="S", help="snapshot step (default: the last)")
    p.add_argument("--source", choices=("memberships", "weights", "both"), default="both",
                   help="membership hierarchy, weight-induced hierarchy, or both (default)")
    p.add_argument("--method", choices=("probability", "connectivity"), default="probability",
                   help="membership distances (default: probability)")
    p.add_argument("--permutations", type=int, default=999, metavar="N", help="null permutations (default: 999)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the permutations (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in docs/compare.md)")
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import compare_run, format_report
    from analysis.run import load_run
    from analysis.verdict import run_verdict

    run = load_run(args.run)
    report = compare_run(run, reference=args.reference or ["all"], threshold=args.threshold,
                         step=args.step, source=args.source, method=args.method,
                         permutations=args.permutations, seed=args.seed, synsets=args.synsets)
    verdict = run_verdict(run, report, threshold=args.threshold, step=args.step)
    if args.json:
        print(json.dumps({**report.to_dict(), "verdict": verdict.to_dict()}, allow_nan=False,
                         ensure_ascii=False))
    else:
        print("\n".join(verdict.sentences))
        print()
        print(format_report(report))
    return 0
