"""Analysis speed at ImageNet scale (issue 3, Performance).

Builds (once, cached under ``.bench/``) a synthetic run folder with a planted hierarchy:
trunk 2048 -> 4096 -> 4096 -> 1000 classes, k = 15 clusters, ten snapshots, weights at the best and
last snapshots. Then times, on two threads:

chain (target <= 3 s)
    load the run and the last snapshot's P -> threshold every node set (summaries, dead branches)
    -> branch tree -> class hierarchy (probability distances, average linkage, 1000 classes)
    -> comparison with the planted coarse groups: ARI/NMI/FM and a Mantel test, 999 permutations
    (analysis.compare).
heatmap (target <= 0.5 s)
    block order + downsampled (256 x 256) |W|, E[M], |W~| and in-block mass for the 4096 x 4096
    layer ``fc2`` (weights already in memory; reading them is reported separately).

Each measurement is repeated (``--repeats``, default 3; the run is reloaded every time, so the
loader's caches do not help, but the OS file cache does) and the median wall time is compared with
the target; CPU times are reported too because the shared machine may be busy. Results are
printed and written to ``benchmarks/results/analysis_speed.json``.

    python benchmarks/analysis_speed.py [--repeats 3] [--rebuild]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from analysis.blocks import heatmap_data  # noqa: E402
from analysis.graphs import build_branch_tree, tree_class_groups  # noqa: E402
from analysis.hierarchy import probability_hierarchy  # noqa: E402
from analysis.run import load_run  # noqa: E402
from analysis.synthetic import make_synthetic_run  # noqa: E402
from analysis.threshold import dead_branches, threshold_all  # noqa: E402

SPEC = dict(trunk=2048, hidden=(4096, 4096), classes=1000, clusters=15, groups=5, n_snapshots=10, noise=0.05, seed=0)
TARGET_CHAIN_S = 3.0
TARGET_HEATMAP_S = 0.5
TAU = 0.5
PERMUTATIONS = 999


def build(path: Path, rebuild: bool) -> float:
    stamp = path / "bench_spec.json"
    spec = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in SPEC.items()}, sort_keys=True)
    if not rebuild and stamp.is_file() and stamp.read_text() == spec:
        return 0.0
    t = time.perf_counter()
    make_synthetic_run(path, **SPEC)
    stamp.write_text(spec)
    return time.perf_counter() - t


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def chain_once(path: Path, compare) -> dict:
    steps, cpu = {}, {}

    def timed(fn, name=None):  # records CPU time per step as well
        out, w, c = _timed(fn)
        if name:
            cpu[name] = cpu.get(name, 0.0) + c
        return out, w, c
    run, steps["load"], _ = timed(lambda: load_run(path), "load")
    c0, w0 = time.process_time(), time.perf_counter()
    probs, t, _ = timed(lambda: run.probs(), "load")
    steps["load"] += t
    th, steps["threshold"], _ = timed(lambda: (lambda th: (th, [x.summary() for x in th.values()],
                                                           dead_branches(th, run.chain)))(threshold_all(probs, TAU))[0], "threshold")
    cs = run.class_set.name
    tree, steps["branch_tree"], _ = timed(lambda: build_branch_tree(th, run.chain, cs, run.class_names), "branch_tree")
    h, steps["class_hierarchy"], _ = timed(lambda: probability_hierarchy(probs[cs], run.class_names), "class_hierarchy")
    if compare is not None:
        from analysis.wordnet.references import coarse_grouping

        def cmp():
            g = coarse_grouping(run.coarse_labels, run.coarse_names)
            return compare.compare_hierarchy(h.distances, h.linkage, [g], {"coarse": compare.coarse_distances(g.labels)},
                                             permutations=PERMUTATIONS, seed=0, source="memberships", method=h.method)
        report, steps["compare_999"], _ = timed(cmp, "compare_999")
    else:
        report = None
    total_wall = sum(steps.values())
    total_cpu = time.process_time() - c0
    return {"steps": steps, "cpu": cpu, "wall": total_wall, "cpu_after_load": total_cpu, "report": report, "tree": tree,
            "wall_after_load": time.perf_counter() - w0, "run": run}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached synthetic run")
    ap.add_argument("--cache", default=str(ROOT / ".bench" / "analysis_imagenet"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "analysis_speed.json"))
    args = ap.parse_args(argv)
    path = Path(args.cache)
    build_s = build(path, args.rebuild)
    try:
        from analysis import compare
    except ImportError:
        compare = None
        print("analysis.compare not available: the chain runs without the comparison step", file=sys.stderr)

    chains = [chain_once(path, compare) for _ in range(args.repeats)]
    last = chains[-1]
    run = last["run"]
    groups = tree_class_groups(last["tree"], depth=1)
    agree = float(np.mean(groups == np.asarray(run.coarse_labels)))

    probs = run.probs()
    (W, _), read_s, _ = _timed(lambda: run.weights()["fc2"])
    heat = []
    for _ in range(args.repeats):
        hd, w, c = _timed(lambda: heatmap_data(W, probs["h2"], probs["h1"], TAU, run.layer("fc2").mask, 256))
        heat.append((w, c))

    chain_walls = [c["wall"] for c in chains]
    res = {
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in SPEC.items()},
        "tau": TAU, "permutations": PERMUTATIONS if compare is not None else 0,
        "machine": {"cpus": os.cpu_count(), "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                    "loadavg_1min": os.getloadavg()[0], "python": platform.python_version(),
                    "numpy": np.__version__, "platform": platform.platform()},
        "build_s": round(build_s, 3),
        "chain": {
            "target_s": TARGET_CHAIN_S,
            "wall_median_s": round(statistics.median(chain_walls), 3),
            "wall_min_s": round(min(chain_walls), 3),
            "cpu_median_s_after_load": round(statistics.median(c["cpu_after_load"] for c in chains), 3),
            "steps_median_s": {k: round(statistics.median(c["steps"][k] for c in chains), 4) for k in chains[0]["steps"]},
            "steps_cpu_median_s": {k: round(statistics.median(c["cpu"][k] for c in chains), 4) for k in chains[0]["cpu"]},
            "cpu_median_s": round(statistics.median(sum(c["cpu"].values()) for c in chains), 3),
            "pass": statistics.median(chain_walls) <= TARGET_CHAIN_S,
        },
        "heatmap": {
            "target_s": TARGET_HEATMAP_S, "layer": "fc2", "shape": list(W.shape), "drawn": list(hd["abs_w"].shape),
            "wall_median_s": round(statistics.median(w for w, _ in heat), 3),
            "wall_min_s": round(min(w for w, _ in heat), 3),
            "cpu_median_s": round(statistics.median(c for _, c in heat), 3),
            "weight_read_s": round(read_s, 3),
            "mass_inside": round(float(hd["mass_inside"]), 4),
            "pass": statistics.median(w for w, _ in heat) <= TARGET_HEATMAP_S,
        },
        "sanity": {
            "tree_vertices": last["tree"].number_of_nodes(),
            "tree_top_groups_match_planted": agree,
            "row_boundaries": int(len(hd["row_boundaries"])),
        },
    }
    if last["report"] is not None:
        res["sanity"]["compare"] = last["report"].to_dict()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from analysis.runfolder import atomic_write_json
    atomic_write_json(out, res)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
