"""Inference speed of the compiled (branched) FC stack against the dense masked stack, on CPU.

    nice .venv/bin/python benchmarks/compile_speed.py          # batch 256, 2 threads, 2048-wide, k = 2..16

The stack: four node sets of 2048 nodes (input, two hidden, output), three layers with ReLU
between them; every node is in exactly one cluster, so a layer's live density is
``sum_c n_c^2 / 2048^2`` (``1/k`` for equal branches). *Equal* branches put node ``i`` in cluster
``i mod k`` (interleaved, so the compiled stack must gather its input into block order and scatter
its output back: that cost is included); *unequal* branches draw cluster sizes proportional to
``1, 2, ..., k`` (random node order). The dense side is what a trained Blockout layer costs at
test time: ``F.linear`` with the cached effective weight ``W ⊙ s·E[M]``. The compiled side is
:class:`blockout.compile.CompiledHead` built from the thresholded plan, with batched products
(``bmm``) where the branches are equal, and the loop over blocks (``loop``) timed as well.

Both sides are timed alternately in one loop (so load from other processes hits both); the
ratio is the median over repeats of per-repeat ratios. A bare ``torch.bmm`` over ``k`` equal
blocks against one dense product of the same width calibrates what the machine gives. The load
average is recorded.

Also timed (``--imagenet``, on by default): ``blockout compile`` of a planted ImageNet-scale run
folder (:func:`analysis.synthetic.make_synthetic_run`: 2048 -> 4096 -> 4096 -> 1000, k = 15,
3 super-groups) — reading the run, planning, building, the exactness check on 512 random inputs,
saving and the ``torch.export`` program. Results: ``benchmarks/results/compile_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.compile_plan import plan_blocks  # noqa: E402
from analysis.runfolder import atomic_write_json  # noqa: E402
from analysis.threshold import signature_codes  # noqa: E402
from blockout.compile import build_compiled, effective_weights, masked_stack  # noqa: E402


def assignments(n: int, k: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Cluster of every node: ``i mod k`` (equal) or sizes proportional to 1..k, shuffled (unequal)."""
    if kind == "equal":
        return np.arange(n) % k
    w = np.arange(1, k + 1, dtype=float)
    sizes = np.floor(w / w.sum() * n).astype(int)
    sizes[-1] += n - sizes.sum()
    return rng.permutation(np.repeat(np.arange(k), sizes))


def build(n: int, k: int, depth: int, kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = [f"s{i}" for i in range(depth + 1)]
    lnames = [f"fc{i}" for i in range(1, depth + 1)]
    C = [np.eye(k, dtype=bool)[assignments(n, k, kind, rng)] for _ in names]
    W = {l: ((rng.standard_normal((n, n)) / np.sqrt(n / k)).astype(np.float32),
             (0.1 * rng.standard_normal(n)).astype(np.float32)) for l in lnames}
    layers = effective_weights(W, {s: c.astype(np.float32) for s, c in zip(names, C)}, names, lnames,
                               {l: ("count", 1.0) for l in lnames}, expected=False)
    plan = plan_blocks([signature_codes(c) for c in C], k, names, lnames)
    spec = {"kind": "identity", "input_shape": [n]}
    nets = {"bmm": build_compiled(plan, layers, n, spec, prefer_bmm=True).head.eval(),
            "loop": build_compiled(plan, layers, n, spec, prefer_bmm=False).head.eval()}
    density = float(np.mean([lp.density for lp in plan.layer_plans]))
    return layers, nets, density, plan


def interleaved(fns: dict, repeats: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return times


def ratio(times: dict, base: str, other: str) -> float:
    return statistics.median(a / b for a, b in zip(times[base], times[other]))


def imagenet_compile_time(threads: int) -> dict:
    """Wall time of :func:`blockout.cmd_compile.compile_run` on a planted ImageNet-scale run."""
    import tempfile

    from analysis.synthetic import make_synthetic_run
    from blockout.cmd_compile import compile_run

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as d:
        run = make_synthetic_run(Path(d) / "imagenet", trunk=2048, hidden=(4096, 4096), classes=1000, clusters=15,
                                 groups=3, n_snapshots=2)
        t0, c0 = time.perf_counter(), time.process_time()
        r = compile_run(run, Path(d) / "out", tau=0.5, progress=lambda m: None)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"sizes": [2048, 4096, 4096, 1000], "clusters": 15, "seconds_total": wall, "cpu_seconds_total": cpu,
           "seconds": r["seconds"],
           "macs_before": r["macs"]["fc_before"], "macs_after": r["macs"]["fc_after"],
           "exact": r["exactness"], "export": r["files"].get("export_kind")}
    print(f"ImageNet-scale compile (2048 -> 4096 -> 4096 -> 1000, k = 15): {wall:.2f} s in all "
          f"(read + plan + build {r['seconds']['compile']:.2f} s, exactness check {r['seconds']['evaluate']:.2f} s, "
          f"save + torch.export {r['seconds']['save_export']:.2f} s; CPU time {cpu:.2f} s); multiply-adds "
          f"{r['macs']['fc_before']:,} -> {r['macs']['fc_after']:,}", flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3, help="layers in the stack")
    ap.add_argument("--clusters", default="2,4,8,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--no-imagenet", action="store_true", help="skip timing the ImageNet-scale compile")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compile_speed.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, B = args.features, args.batch
    load_before = os.getloadavg()
    x = torch.randn(B, n, generator=torch.Generator().manual_seed(0))
    rows = []
    with torch.no_grad():
        for k in [int(c) for c in args.clusters.split(",") if c.strip()]:
            # calibration: bare bmm over k equal blocks vs one dense product
            d = n // k
            wd, wb = torch.randn(n, n), torch.randn(k, d, d)
            xb = torch.randn(k, B, d)
            t = interleaved({"dense": lambda: torch.mm(x, wd), "bmm": lambda: torch.bmm(xb, wb)}, args.repeats)
            calib = ratio(t, "dense", "bmm")
            for kind in ("equal", "unequal"):
                layers, nets, density, plan = build(n, k, args.depth, kind)
                ref = masked_stack(x, layers)
                diff = {m: float((net(x) - ref).abs().max()) for m, net in nets.items()}
                fns = {"dense": lambda: masked_stack(x, layers)}
                fns.update({m: (lambda net=net: net(x)) for m, net in nets.items()})
                t = interleaved(fns, args.repeats)
                row = {"clusters": k, "branches": kind, "live_density": density,
                       "dense_ms": statistics.median(t["dense"]) * 1e3,
                       "kinds": {m: [lay["kind"] for lay in net.layers] for m, net in nets.items()},
                       "max_abs_diff": diff, "bare_bmm_speedup": calib}
                for m in nets:
                    row[f"{m}_ms"] = statistics.median(t[m]) * 1e3
                    row[f"{m}_speedup"] = ratio(t, "dense", m)
                best = max(nets, key=lambda m: row[f"{m}_speedup"])
                row["best"] = best
                row["speedup"] = row[f"{best}_speedup"]
                row["speedup_over_inverse_density"] = row["speedup"] * density
                row["target"] = 0.85 if kind == "equal" else 0.7
                row["meets_target"] = row["speedup_over_inverse_density"] >= row["target"]
                rows.append(row)
                print(f"k={k:2d} {kind:7s} density 1/{1 / density:5.2f}: dense {row['dense_ms']:6.2f} ms, "
                      f"bmm {row['bmm_speedup']:5.2f}x, loop {row['loop_speedup']:5.2f}x -> "
                      f"{row['speedup_over_inverse_density']:.2f} of 1/density (target {row['target']}) "
                      f"[bare bmm {calib:5.2f}x; max diff {max(diff.values()):.1e}]", flush=True)
    imagenet = None if args.no_imagenet else imagenet_compile_time(args.threads)
    result = {
        "benchmark": "compile_speed",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "features": n, "batch": B, "depth": args.depth, "repeats": args.repeats, "rows": rows,
        "imagenet_compile": imagenet,
    }
    atomic_write_json(args.out, result)
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs); wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
