"""Inference speed of the compiled (branched) FC stack against the dense masked stack, on CPU.

    nice .venv/bin/python benchmarks/compile_speed.py          # batch 256, 2 threads, 2048-wide, k = 2..16
    nice .venv/bin/python benchmarks/compile_speed.py --threads 1 --clock cpu --no-imagenet \
        --out benchmarks/results/compile_speed_cpu1.json        # load-robust: process CPU time, 1 thread
    nice .venv/bin/python benchmarks/compile_speed.py --variants --no-imagenet \
        --out benchmarks/results/compile_speed_variants.json    # one layer, the alternatives tried

The stack: four node sets of 2048 nodes (input, two hidden, output), three layers with ReLU
between them; every node is in exactly one cluster, so a layer's live density is
``sum_c n_c^2 / 2048^2`` (``1/k`` for equal branches). *Equal* branches put node ``i`` in cluster
``i mod k`` (interleaved, so the compiled stack must gather its input into block order and gather
its classes back: that cost is included); *unequal* branches draw cluster sizes proportional to
``1, 2, ..., k`` (random node order). The dense side is what a trained Blockout layer costs at
test time: ``F.linear`` with the cached effective weight ``W ⊙ s·E[M]`` (pre-masked, same
threads). The compiled side is :class:`blockout.compile.CompiledHead` built from the thresholded
plan, run under ``torch.no_grad`` (its inference path): ``bmm`` batches runs of equal blocks,
``loop`` does one matrix product per block. Its output is a transposed ``(B, classes)`` view;
``bmm+contiguous`` times ``.contiguous()`` on it as well.

Both sides are timed alternately in one loop (so load from other processes hits both); the
ratio is the median over repeats of per-repeat ratios (quartiles recorded as the spread). A bare
``torch.bmm`` over ``k`` equal blocks against one dense product of the same width calibrates what
the machine gives: ``bare_bmm`` as ``(k, B, d) @ (k, d, d)``, ``bare_bmm_t`` in the compiled
stack's own layout ``(k, d+1, d+1) @ (k, d+1, B)``; and, to check the dense baseline, oneDNN's prepacked linear
against ``torch.mm`` for the dense product (both sides of the ratio use MKL). ``--clock cpu`` times process CPU time
instead of wall time: with one thread it is insensitive to other processes taking the cores
(with two it would count OpenMP spin-waits). The load average is recorded.

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


CLOCK = time.perf_counter


def interleaved(fns: dict, repeats: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = CLOCK()
            f()
            times[k].append(CLOCK() - t)
    return times


def ratio(times: dict, base: str, other: str) -> float:
    return statistics.median(a / b for a, b in zip(times[base], times[other]))


def ratio_quartiles(times: dict, base: str, other: str) -> list[float]:
    q = statistics.quantiles([a / b for a, b in zip(times[base], times[other])], n=4)
    return [q[0], q[2]]


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


def _onednn_weight(w: torch.Tensor, batch: int):
    """``w`` prepacked for oneDNN's linear (None where this build has no oneDNN)."""
    try:
        return torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous(), batch)
    except (AttributeError, RuntimeError):
        return None


def layer_variants(n: int, B: int, k: int, repeats: int) -> dict:
    """One 2048-wide layer (+ ReLU) at ``k`` equal blocks, done the ways tried, against ``F.linear``.

    Inputs already in block order (no gather): this isolates the layer itself. Returns
    ``{variant: median per-repeat speedup over dense}`` and the max difference to the dense result.
    """
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(k)
    d = n // k
    x = torch.randn(B, n, generator=g)
    wk = torch.randn(k, d, d, generator=g) / d ** 0.5
    bk = 0.1 * torch.randn(k, d, generator=g)
    wd = torch.block_diag(*wk)  # the dense masked weight: zeros off the blocks
    bd = bk.reshape(-1)
    ref = torch.relu(F.linear(x, wd, bd))
    xt = x.t().contiguous()  # (n, B): the compiled layout, one ones row after each block below
    h1 = torch.cat([xt.view(k, d, B), torch.ones(k, 1, B)], 1)  # (k, d+1, B)
    w1 = torch.zeros(k, d + 1, d + 1)
    w1[:, :d, :d], w1[:, :d, d], w1[:, d, d] = wk, bk, 1.0
    out1 = torch.empty(k, d + 1, B)
    xb = xt.view(k, d, B).transpose(1, 2).contiguous()  # (k, B, d)
    wt = wk.transpose(1, 2).contiguous()
    out_loop = torch.empty(n, B)
    v: dict = {
        "dense F.linear + relu": lambda: torch.relu(F.linear(x, wd, bd)),
        "bmm, [k, d+1, B], bias as a ones row, out=, relu_ (used)": lambda: torch.bmm(w1, h1, out=out1).relu_(),
        "baddbmm, [k, d, B], bias added by baddbmm":
            lambda: torch.baddbmm(bk.unsqueeze(2), wk, xt.view(k, d, B)).relu_().view(n, B).t(),
        "bmm + add_ bias, [k, d, B]":
            lambda: torch.bmm(wk, xt.view(k, d, B)).add_(bk.unsqueeze(2)).relu_().view(n, B).t(),
        "baddbmm, [k, B, d] layout":
            lambda: torch.baddbmm(bk.unsqueeze(1), xb, wt).relu_().transpose(0, 1).reshape(B, n),
        "loop of addmm into one output (out=)":
            lambda: [torch.addmm(bk[i].unsqueeze(1), wk[i], xt[i * d:(i + 1) * d], out=out_loop[i * d:(i + 1) * d])
                     for i in range(k)] and out_loop.relu_().t(),
        "loop of F.linear + cat": lambda: torch.relu(torch.cat(
            [F.linear(x[:, i * d:(i + 1) * d], wk[i], bk[i]) for i in range(k)], 1)),
        "einsum [B, k, d]": lambda: torch.relu(torch.einsum("bki,koi->bko", x.view(B, k, d), wk)
                                              .add_(bk)).reshape(B, n),
    }
    if k > 2:  # the same blocks inside 2 dense blocks of n/2 (zeros elsewhere): fewer, bigger products
        w2 = torch.stack([torch.block_diag(*wk[:k // 2]), torch.block_diag(*wk[k // 2:])])
        v["2 dense blocks of n/2 holding the k blocks (bmm)"] = lambda: torch.baddbmm(
            bd.view(2, 1, n // 2), x.view(B, 2, n // 2).transpose(0, 1), w2.transpose(1, 2)).relu_().transpose(0, 1) \
            .reshape(B, n)
    try:  # oneDNN linear with fused bias + ReLU and prepacked weights, one call per block
        packed = [torch.ops.mkldnn._reorder_linear_weight(wk[i].contiguous(), B) for i in range(k)]
        xs = [x[:, i * d:(i + 1) * d].contiguous() for i in range(k)]
        v["oneDNN linear+relu per block, prepacked"] = lambda: torch.cat(
            [torch.ops.mkldnn._linear_pointwise(xs[i], packed[i], bk[i], "relu", [], "") for i in range(k)], 1)
    except (AttributeError, RuntimeError):
        pass
    diffs = {}
    for name, f in v.items():
        y = f()
        if y.dim() == 3:  # the used layout keeps its ones rows: (k, d+1, B) -> (B, n)
            y = y[:, :d].reshape(n, B)
        y = y.t() if y.shape != ref.shape else y
        diffs[name] = float((y - ref).abs().max())
    t = interleaved(v, repeats)
    base = "dense F.linear + relu"
    return {"clusters": k, "dense_ms": statistics.median(t[base]) * 1e3,
            "speedup": {name: ratio(t, base, name) for name in v if name != base},
            "speedup_quartiles": {name: ratio_quartiles(t, base, name) for name in v if name != base},
            "max_abs_diff": diffs}


def main(argv=None) -> dict:
    global CLOCK
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3, help="layers in the stack")
    ap.add_argument("--clusters", default="2,4,8,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time (default) or process CPU time (use with --threads 1)")
    ap.add_argument("--variants", action="store_true", help="time one layer done the ways tried, instead of stacks")
    ap.add_argument("--no-imagenet", action="store_true", help="skip timing the ImageNet-scale compile")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compile_speed.json"))
    args = ap.parse_args(argv)
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    n, B = args.features, args.batch
    load_before = os.getloadavg()
    ks = [int(c) for c in args.clusters.split(",") if c.strip()]
    rows, variants = [], []
    x = torch.randn(B, n, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if args.variants:
            for k in ks:
                r = layer_variants(n, B, k, args.repeats)
                variants.append(r)
                print(f"k={k:2d}: one layer, dense {r['dense_ms']:.2f} ms; speedup (of 1/density):", flush=True)
                for name, sp in sorted(r["speedup"].items(), key=lambda kv: -kv[1]):
                    print(f"    {sp:6.2f}x ({sp / k:.2f})  {name}  [max diff {r['max_abs_diff'][name]:.1e}]")
        for k in ([] if args.variants else ks):
            # calibration: bare bmm over k equal blocks vs one dense product
            d = n // k
            wd, wb = torch.randn(n, n), torch.randn(k, d, d)
            xb = torch.randn(k, B, d)
            wt1, xt1 = torch.randn(k, d + 1, d + 1), torch.randn(k, d + 1, B)
            fns = {"dense": lambda: torch.mm(x, wd), "bmm": lambda: torch.bmm(xb, wb),
                   "bmm_t": lambda: torch.bmm(wt1, xt1)}
            packed = _onednn_weight(wd, B)
            if packed is not None:  # is the dense baseline's library the fastest dense product here?
                fns["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
            t = interleaved(fns, args.repeats)
            calib, calib_t = ratio(t, "dense", "bmm"), ratio(t, "dense", "bmm_t")
            onednn = ratio(t, "dense", "onednn") if packed is not None else None
            for kind in ("equal", "unequal"):
                layers, nets, density, plan = build(n, k, args.depth, kind)
                ref = masked_stack(x, layers)
                diff = {m: float((net(x) - ref).abs().max()) for m, net in nets.items()}
                fns = {"dense": lambda: masked_stack(x, layers)}
                fns.update({m: (lambda net=net: net(x)) for m, net in nets.items()})
                fns["bmm+contiguous"] = lambda net=nets["bmm"]: net(x).contiguous()
                t = interleaved(fns, args.repeats)
                row = {"clusters": k, "branches": kind, "live_density": density,
                       "dense_ms": statistics.median(t["dense"]) * 1e3,
                       "kinds": {m: [lay["kind"] for lay in net.layers] for m, net in nets.items()},
                       "ops": {m: [[op["kind"] + (f"x{op['groups']}" if op["kind"] == "bmm" else "")
                                    for op in ops] for ops, _ in net._fast_ops] for m, net in nets.items()},
                       "max_abs_diff": diff, "bare_bmm_speedup": calib, "bare_bmm_t_speedup": calib_t,
                       "onednn_dense_over_mkl_dense": onednn}
                for m in fns:
                    if m == "dense":
                        continue
                    row[f"{m}_ms"] = statistics.median(t[m]) * 1e3
                    row[f"{m}_speedup"] = ratio(t, "dense", m)
                    row[f"{m}_speedup_quartiles"] = ratio_quartiles(t, "dense", m)
                best = max(nets, key=lambda m: row[f"{m}_speedup"])
                row["best"] = best
                row["speedup"] = row[f"{best}_speedup"]
                row["speedup_over_inverse_density"] = row["speedup"] * density
                row["contiguous_speedup_over_inverse_density"] = row["bmm+contiguous_speedup"] * density
                row["target"] = 0.85 if kind == "equal" else 0.7
                row["meets_target"] = row["speedup_over_inverse_density"] >= row["target"]
                rows.append(row)
                print(f"k={k:2d} {kind:7s} density 1/{1 / density:5.2f}: dense {row['dense_ms']:6.2f} ms, "
                      f"bmm {row['bmm_speedup']:5.2f}x, loop {row['loop_speedup']:5.2f}x -> "
                      f"{row['speedup_over_inverse_density']:.2f} of 1/density (target {row['target']}; "
                      f"{row['contiguous_speedup_over_inverse_density']:.2f} with .contiguous()) "
                      f"[bare bmm {calib:5.2f}x / {calib_t:5.2f}x; max diff {max(diff.values()):.1e}"
                      + (f"; oneDNN dense {onednn:.2f}x F.linear" if onednn else "") + "]", flush=True)
    imagenet = None if args.no_imagenet else imagenet_compile_time(args.threads)
    result = {
        "benchmark": "compile_speed" + ("_variants" if args.variants else ""),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "clock": args.clock, "features": n, "batch": B, "depth": args.depth, "repeats": args.repeats,
        "rows": rows, "imagenet_compile": imagenet,
    }
    if args.variants:
        result["variants"] = variants
    atomic_write_json(args.out, result)
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs); wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
