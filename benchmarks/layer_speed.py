"""Speed of BlockoutLinear against nn.Linear (+ Dropout), training step and eval, on CPU.

    .venv/bin/python benchmarks/layer_speed.py            # 4096 -> 4096, batch 128, k = 6, 2 threads

Training step = forward + backward (gradients set to None first, as ``zero_grad()`` does), with
``BlockoutLinear`` in hard-learned mode (both node sets learned, memberships sampled once per
step inside ``shared_sampling``) against ``nn.Linear`` + ``nn.Dropout(0.5)``. Eval = forward under
``torch.no_grad()`` in eval mode against ``nn.Linear``. The two sides are timed alternately in the
same loop, so load from other processes hits both; the best-of-N and the median are reported,
and the ratios are taken from this one run. Results go to ``benchmarks/results/layer_speed.json``.
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

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.runfolder import atomic_write_json  # noqa: E402
from blockout import BlockoutLinear, NodeClusters, shared_sampling  # noqa: E402
from blockout.functional import masked_linear_reference  # noqa: E402


def _time(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds summed over threads) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Time each function ``repeats`` times, round-robin; (wall, cpu) seconds per call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_time(fn))
    return times


def _summary(ts: list[tuple[float, float]]) -> dict:
    wall = [t[0] for t in ts]
    cpu = [t[1] for t in ts]
    return {
        "best_ms": min(wall) * 1e3,
        "median_ms": statistics.median(wall) * 1e3,
        "cpu_median_ms": statistics.median(cpu) * 1e3,
        "n": len(ts),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--mask", choices=["count", "union"], default="count")
    ap.add_argument("--naive", action="store_true", help="also time the plain autograd masked layer")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "layer_speed.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, b, k = args.features, args.batch, args.clusters
    x = torch.randn(b, n)
    g = torch.randn(b, n)  # upstream gradient (out = n features)

    lin = nn.Linear(n, n)
    drop = nn.Dropout(0.5)
    inp, out = NodeClusters(n, k, name="in"), NodeClusters(n, k, name="out")
    layer = BlockoutLinear(inp, out, mode="hard", mask=args.mask)

    def base_train():
        lin.weight.grad = lin.bias.grad = None
        lin(drop(x)).backward(g)

    def blockout_train():
        layer.zero_grad(set_to_none=True)
        with shared_sampling(layer):
            layer(x).backward(g)

    def naive_train():
        layer.zero_grad(set_to_none=True)
        y = masked_linear_reference(x, layer.weight, layer.bias, out.sample(), inp.sample(), 1.0, args.mask)
        y.backward(g)

    train_fns = {"linear_dropout": base_train, "blockout": blockout_train}
    if args.naive:
        train_fns["naive_masked"] = naive_train
    lin.train(), drop.train(), layer.train()
    train = _interleaved(train_fns, args.repeats)

    lin.eval(), layer.eval()

    def base_eval():
        with torch.no_grad():
            lin(x)

    def blockout_eval():
        with torch.no_grad():
            layer(x)

    evals = _interleaved({"linear": base_eval, "blockout": blockout_eval}, args.repeats * 2)

    tr = {name: _summary(ts) for name, ts in train.items()}
    ev = {name: _summary(ts) for name, ts in evals.items()}
    result = {
        "benchmark": "layer_speed",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "features": n,
            "batch": b,
            "clusters": k,
            "threads": args.threads,
            "repeats": args.repeats,
            "mask": args.mask,
            "mode": "hard-learned",
        },
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__},
        "train": tr,
        "eval": ev,
        "ratios": {
            "train_best": tr["blockout"]["best_ms"] / tr["linear_dropout"]["best_ms"],
            "train_median": tr["blockout"]["median_ms"] / tr["linear_dropout"]["median_ms"],
            "eval_best": ev["blockout"]["best_ms"] / ev["linear"]["best_ms"],
            "eval_median": ev["blockout"]["median_ms"] / ev["linear"]["median_ms"],
            # process CPU time (all threads): less sensitive to other processes' load with one
            # thread, but includes OpenMP spin-waiting with several
            "train_cpu_median": tr["blockout"]["cpu_median_ms"] / tr["linear_dropout"]["cpu_median_ms"],
        },
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "targets": {"train": 1.5, "eval": 1.05},
    }
    if args.naive:
        result["ratios"]["naive_train_best"] = tr["naive_masked"]["best_ms"] / tr["linear_dropout"]["best_ms"]
        result["ratios"]["naive_train_median"] = tr["naive_masked"]["median_ms"] / tr["linear_dropout"]["median_ms"]

    print(f"load average {result['load_average']}")
    print(f"{n}->{n}, batch {b}, k={k}, {args.threads} threads, {args.repeats} repeats (mask={args.mask})")
    for name, s in tr.items():
        print(f"  train {name:15s} best {s['best_ms']:8.2f} ms   median {s['median_ms']:8.2f} ms   cpu median {s['cpu_median_ms']:8.2f} ms")
    for name, s in ev.items():
        print(f"  eval  {name:15s} best {s['best_ms']:8.2f} ms   median {s['median_ms']:8.2f} ms")
    for name, r in result["ratios"].items():
        print(f"  ratio {name:20s} {r:6.3f}")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
