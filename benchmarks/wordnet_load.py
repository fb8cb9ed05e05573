"""WordNet load time and size (issue 9: "WordNet loading <= 1 s", "a few MB at most").

Each measurement runs in a fresh interpreter (``--repeats`` times, median reported), because
:func:`analysis.wordnet.load_wordnet` is cached per process:

load (target <= 1 s)
    ``load_wordnet()``: read the shipped ``analysis/data/wordnet_nouns.npz`` (82 115 noun synsets)
    and build the name tables; numpy is imported before the clock starts (every caller has it).
first word lookup
    the first ``senses(word)`` call (reads the word index on demand).
first definition
    the first ``definition(name)`` call (reads the glosses on demand).
import + load
    ``import analysis.wordnet`` (with numpy) plus ``load_wordnet()``: what a cold command pays.
ImageNet-1k references
    WordNet depth groupings and the Wu-Palmer distance matrix of 1000 classes (500 leaf synsets
    under ``animal.n.01`` and 500 under ``artifact.n.01``, as in ``tests/test_imagenet_compare.py``).

Also reports the file size on disk. Printed and written to ``benchmarks/results/wordnet_load.json``.
The machine is shared (two cores, several users): the load average is recorded beside the timings.

    python benchmarks/wordnet_load.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.runfolder import atomic_write_text  # noqa: E402
from analysis.wordnet.nouns import BUNDLED_PATH  # noqa: E402

TARGET_LOAD_S = 1.0

PROBE = r"""
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
from analysis.wordnet import load_wordnet
t2 = time.perf_counter()
wn = load_wordnet()
t3 = time.perf_counter()
wn.senses("tiger")
t4 = time.perf_counter()
wn.definition("tiger.n.02")
t5 = time.perf_counter()
out = {{"numpy_import_s": t1 - t0, "wordnet_import_s": t2 - t1, "load_s": t3 - t2, "first_lookup_s": t4 - t3,
        "first_definition_s": t5 - t4, "import_and_load_s": t3 - t0, "n_synsets": len(wn)}}
if {imagenet}:
    from analysis.wordnet.references import wordnet_depth_groupings, wordnet_distances
    names = []
    for top in ("animal.n.01", "artifact.n.01"):
        leaves = wn.leaves(top)
        names += [leaves[i] for i in np.linspace(0, len(leaves) - 1, 500).round().astype(int)]
    t6 = time.perf_counter()
    groups = wordnet_depth_groupings(wn, names)
    t7 = time.perf_counter()
    D = wordnet_distances(wn, names)
    t8 = time.perf_counter()
    out.update(imagenet_groupings_s=t7 - t6, imagenet_wup_matrix_s=t8 - t7, imagenet_levels=len(groups))
print(json.dumps(out))
"""


def probe(imagenet: bool) -> dict:
    code = PROBE.format(root=str(ROOT), imagenet=imagenet)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "2"})
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    runs = [probe(imagenet=(i == 0)) for i in range(args.repeats)]
    keys = ["load_s", "first_lookup_s", "first_definition_s", "import_and_load_s", "numpy_import_s"]
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    result = {
        "benchmark": "wordnet_load",
        "file": str(BUNDLED_PATH.relative_to(ROOT)),
        "file_bytes": BUNDLED_PATH.stat().st_size,
        "n_synsets": runs[0]["n_synsets"],
        "repeats": args.repeats,
        "median": med,
        "all": {k: [r[k] for r in runs] for k in keys},
        "imagenet_1k": {k: runs[0][k] for k in ("imagenet_groupings_s", "imagenet_wup_matrix_s", "imagenet_levels")},
        "target_load_s": TARGET_LOAD_S,
        "load_within_target": med["load_s"] <= TARGET_LOAD_S,
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"WordNet file: {result['file']} {result['file_bytes'] / 1e6:.2f} MB, {result['n_synsets']} noun synsets")
    for k in keys:
        print(f"  {k:<22} median {med[k]:.3f} s  (runs: {', '.join(f'{r[k]:.3f}' for r in runs)})")
    im = result["imagenet_1k"]
    print(f"  ImageNet-1k: {im['imagenet_levels']} WordNet levels in {im['imagenet_groupings_s']:.2f} s, "
          f"Wu-Palmer 1000x1000 in {im['imagenet_wup_matrix_s']:.2f} s")
    print(f"load {'within' if result['load_within_target'] else 'OVER'} the {TARGET_LOAD_S} s target "
          f"(load average {result['load_average'][0]:.1f} on {result['cpu_count']} CPUs)")
    out = ROOT / "benchmarks" / "results" / "wordnet_load.json"
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
