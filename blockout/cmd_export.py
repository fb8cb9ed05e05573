"""``blockout export RUN --format F``: the branch tree, layer graph or class dendrogram as a file.

Formats and writers are :mod:`analysis.export`: GraphML, GEXF, node-link JSON, Graphviz DOT,
Newick (trees only) and a standalone interactive HTML page.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_export(sub) -> None:
    from analysis.export import FORMATS, WHATS

    p = sub.add_parser("export", help="export the branch tree, layer graph or class dendrogram",
                       description="Write the branch tree (tree), the layer graph (layers) or the class "
                                   "dendrogram (dendrogram) as GraphML, GEXF, node-link JSON, Graphviz DOT, "
                                   "Newick (trees only) or a standalone interactive HTML page.")
    p.add_argument("run", metavar="RUN", help="run folder (holds run.json)")
    p.add_argument("--format", choices=FORMATS, required=True, help="output format")
    p.add_argument("--what", choices=WHATS, default="tree", help="what to export (default: tree)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T", help="membership threshold (default: 0.5)")
    p.add_argument("--step", type=int, default=None, metavar="S", help="snapshot step (default: the last)")
    p.add_argument("--method", choices=("probability", "connectivity", "weights"), default="probability",
                   help="class distances of the dendrogram (default: probability)")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="output file (default: <run>_<what>.<ext> in the current folder)")
    p.add_argument("--synsets", default=None, metavar="FILE.json",
                   help='WordNet synsets for some classes, for the branch tree\'s WordNet labels: '
                        '{"class name": "synset.n.01" or "n01234567"} (as blockout compare --synsets)')
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from analysis.export import EXTENSIONS, export_run
    from analysis.run import load_run
    from analysis.runfolder import safe_name

    run = load_run(args.run)
    label_fn = None
    if args.synsets:
        from analysis.wordnet.references import class_lch_labeler
        from analysis.wordnet.resolve import load_synset_map

        label_fn = class_lch_labeler(run.class_names, run.wnids,
                                     overrides=load_synset_map(args.synsets, run.class_names))
    # the default name comes from run.json, which may be hostile: a plain name in the working folder
    output = args.output or Path.cwd() / f"{safe_name(run.name)}_{args.what}.{EXTENSIONS[args.format]}"
    path = export_run(run, what=args.what, fmt=args.format, path=output,
                      tau=args.threshold, step=args.step, method=args.method, label_fn=label_fn)
    print(path)
    return 0
