"""Cost of ``RunLogger.snapshot`` against a training step of a 2 x 4096 Blockout head, on CPU.

    .venv/bin/python benchmarks/logger_speed.py            # head 512 -> 4096 -> 4096 -> 100, k = 6, batch 128

The step is forward + backward + Adam on the head alone (hard-learned, memberships sampled); a
real step also runs a backbone, so the shares below are upper bounds. Two kinds of snapshot:

* **P snapshot** (``log.snapshot(step)``): every node set's P, about 30 per run at the default
  rate (our trainer's ``snapshot_every = total_steps / 30``). Amortised share of training time
  = ``t_snapshot / (snapshot_every * t_step)``, reported for several run lengths.
* **weight snapshot** (``log.snapshot(step, tag="last")``): P and all weights (76 MB here), and the
  previous ``last`` snapshot's weights stripped, as the trainer does once per epoch. Amortised
  per epoch for several epoch lengths.

Steps and snapshots are timed alternately in one loop, so load from other processes hits both;
medians are reported and the ratios come from this one run. Results:
``benchmarks/results/logger_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.runfolder import atomic_write_json  # noqa: E402
from blockout import BlockoutHead, RunLogger  # noqa: E402

TARGET_SNAPSHOTS = 30  # the trainer's default: about 30 P snapshots per run
RUN_STEPS = (300, 1200, 3000, 30000)  # run lengths for the amortised P-snapshot share (the demo: 1200)
EPOCH_STEPS = (40, 390, 1000)  # steps per epoch for the weight snapshot (demo 40; CIFAR at batch 128: 390)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-features", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=6)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=8, help="timed rounds (step + P snapshot each)")
    parser.add_argument("--weight-repeats", type=int, default=3, help="timed weight snapshots")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "logger_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    head = BlockoutHead(args.in_features, args.classes, hidden=(args.hidden, args.hidden), clusters=args.clusters)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    x, y = torch.randn(args.batch, args.in_features), torch.randint(0, args.classes, (args.batch,))

    def step() -> None:
        loss = nn.functional.cross_entropy(head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    tmp = Path(tempfile.mkdtemp(prefix="logger_speed_"))
    steps, snaps, wsnaps = [], [], []
    try:
        with RunLogger(tmp / "run", head) as log:
            n = 0
            for _ in range(2):  # warm-up
                step()
                n += 1
                log.snapshot(n)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                step()
                t1 = time.perf_counter()
                n += 1
                log.snapshot(n)
                t2 = time.perf_counter()
                steps.append(t1 - t0)
                snaps.append(t2 - t1)
            for _ in range(args.weight_repeats):  # each moves "last" and strips the previous weights
                step()
                n += 1
                t0 = time.perf_counter()
                log.snapshot(n, tag="last")
                wsnaps.append(time.perf_counter() - t0)
            weight_bytes = sum(p.numel() * 4 for name, p in head.named_parameters() if name.startswith("fc."))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    t_step, t_snap, t_wsnap = (statistics.median(v) for v in (steps, snaps, wsnaps))
    per_run = {str(s): {"snapshot_every": max(1, round(s / TARGET_SNAPSHOTS)),
                        "share": t_snap / (max(1, round(s / TARGET_SNAPSHOTS)) * t_step)} for s in RUN_STEPS}
    per_epoch = {str(s): t_wsnap / (s * t_step) for s in EPOCH_STEPS}
    result = {
        "what": "RunLogger.snapshot vs one training step of a BlockoutHead (forward + backward + Adam)",
        "head": {"in_features": args.in_features, "hidden": [args.hidden, args.hidden], "classes": args.classes,
                 "clusters": args.clusters, "method": "hard-learned", "batch": args.batch,
                 "weight_megabytes": round(weight_bytes / 2**20, 1)},
        "step_ms": t_step * 1e3,
        "p_snapshot_ms": t_snap * 1e3,
        "weight_snapshot_ms": t_wsnap * 1e3,
        "p_snapshot_over_one_step": t_snap / t_step,
        "p_snapshot_amortised_share_by_run_steps": per_run,
        "weight_snapshot_amortised_share_by_epoch_steps": per_epoch,
        "target_share": 0.05,
        "meets_target_at_default_rate": {s: v["share"] <= 0.05 for s, v in per_run.items()},
        "repeats": {"steps": len(steps), "p_snapshots": len(snaps), "weight_snapshots": len(wsnaps)},
        "note": "machine shared with other jobs (load average given): quote ratios from one run, not absolute times",
        "load_average": list(os.getloadavg()),
        "threads": args.threads,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"head {args.in_features} -> {args.hidden} -> {args.hidden} -> {args.classes}, k = {args.clusters}, "
          f"batch {args.batch}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"  training step        {t_step * 1e3:9.1f} ms (median of {len(steps)})")
    print(f"  P snapshot           {t_snap * 1e3:9.1f} ms = {t_snap / t_step:.1%} of one step")
    for s, v in per_run.items():
        print(f"    run of {int(s):>6} steps: every {v['snapshot_every']:>4} steps -> {v['share']:.2%} of training time")
    print(f"  weight snapshot      {t_wsnap * 1e3:9.1f} ms ({result['head']['weight_megabytes']} MB of weights)")
    for s, v in per_epoch.items():
        print(f"    once per epoch of {int(s):>5} steps -> {v:.2%} of training time")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main()
