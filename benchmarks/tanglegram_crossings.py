"""Tanglegram line crossings on a run: the drawing before untangling against the untangled one.

For each network hierarchy the WordNet page can draw (memberships by probability and by
connectivity, and the one induced from the classifier weights), builds the tanglegram's two trees
exactly as the page does (network dendrogram on the left, the classes' WordNet hypernym tree on the
right) and counts the crossings of

* ``as_given``: both trees in their own order (scipy's linkage order, WordNet paths in class order);
* ``before``: the drawing before this change — the right tree ordered by the barycentre of its
  leaves on the left (:func:`app.figures.trees.barycentre_order`);
* ``stepwise``: :func:`analysis.untangle.untangle` without the look-ahead stage;
* ``after``: :func:`analysis.untangle.untangle` as the dashboard runs it (look-ahead on);
* ``optimum``: the fewest crossings any rotation of the two trees reaches, proven by integer
  programming (:func:`analysis.untangle.min_crossings_exact`) — the floor no drawing can beat.

Also times the untangling (wall seconds; the machine may be loaded). Results are printed and written
to ``benchmarks/results/tanglegram_crossings.json``.

    python benchmarks/tanglegram_crossings.py [RUN]      # default: checkpoints/demo
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from analysis.hierarchy import class_hierarchy
    from analysis.run import load_run
    from analysis.runfolder import atomic_write_json
    from app import wordnet_labels
    from analysis.untangle import min_crossings_exact
    from app.figures.trees import linkage_tree, paths_tree, tanglegram_orders, tree_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=str(ROOT / "checkpoints" / "demo"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tanglegram_crossings.json"))
    args = parser.parse_args(argv)
    run = load_run(args.run)
    paths = wordnet_labels.class_paths(run)
    if paths is None:
        print(f"{args.run}: some class has no WordNet synset; nothing to measure", file=sys.stderr)
        return 2
    right = paths_tree(paths)
    rows = []
    for method in ("probability", "connectivity", "weights"):
        h = class_hierarchy(run, method, 0.5, None)
        left = linkage_tree(h.linkage, h.labels)
        t0 = time.perf_counter()
        full = tanglegram_orders(left, right)
        seconds = time.perf_counter() - t0
        step = tanglegram_orders(left, right, lookahead=False)
        L = {v: list(left.successors(v)) for v in left.nodes}
        R = {v: list(right.successors(v)) for v in right.nodes}
        rkey = {v: str(right.nodes[v].get("label", v)) for v in right.nodes if right.out_degree(v) == 0}
        exact = min_crossings_exact(L, tree_root(left), R, tree_root(right), right_key=rkey, time_limit=120)
        row = {"hierarchy": "weights" if method == "weights" else f"memberships ({method})",
               "classes": len(run.class_names), "as_given": full["crossings_as_given"],
               "before": full["crossings_before"], "stepwise": step["crossings"], "after": full["crossings"],
               "optimum": exact["crossings"] if exact["optimal"] else None,
               "optimum_lower_bound": exact["lower_bound"],
               "after_over_before": round(full["crossings"] / max(full["crossings_before"], 1), 3),
               "optimum_over_before": round(exact["lower_bound"] / max(full["crossings_before"], 1), 3),
               "untangle_seconds": round(seconds, 2)}
        rows.append(row)
        print(f"{row['hierarchy']:<28} as given {row['as_given']:5d}  before {row['before']:5d}  "
              f"step-wise {row['stepwise']:5d}  after {row['after']:5d}  optimum {row['optimum']}  "
              f"({row['after_over_before']:.0%} of before, {seconds:.1f} s)")
    n = len(run.class_names)
    record = {"run": str(Path(args.run).resolve().relative_to(ROOT)) if Path(args.run).resolve().is_relative_to(ROOT)
              else args.run, "right_tree": "WordNet hypernym paths of the classes", "pairs": n * (n - 1) // 2,
              "rows": rows, "command": "python benchmarks/tanglegram_crossings.py " + " ".join(argv or sys.argv[1:]),
              "note": "single run on a shared 2-core machine (timings noisy; counts are exact)",
              "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
