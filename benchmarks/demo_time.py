"""How long the default demo trains, and how hard-learned compares with dropout on its data (issue 2).

Trains the packaged demo recipe (``blockout/configs/demo.json``: synthetic CIFAR-100-shaped data,
conv trunk + 2 x 512 FC, 10 epochs) once per method on two threads with the real trainer, into a
temporary folder, and reports per method the wall time and CPU time of training and the final and
best test accuracy. Target: the demo (hard-learned) trains in about 3 minutes on two cores.

The machine this runs on may be shared: CPU time is reported next to wall time, and the system
load average at the start and the end.

    python benchmarks/demo_time.py [--methods hard-learned,dropout] [--epochs N] [--seeds 0]

Writes ``benchmarks/results/demo_time.json`` (atomically).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from analysis.runfolder import atomic_write_json  # noqa: E402
from blockout.cmd_demo import demo_config  # noqa: E402
from blockout.config import TrainConfig  # noqa: E402
from blockout.train import train  # noqa: E402

TARGET_S = 180.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="hard-learned,dropout")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--seeds", default="0", help="comma list of seeds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo_time.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = demo_config()
    if args.epochs is not None:
        recipe["epochs"] = args.epochs
    results = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                cfg = TrainConfig.from_dict({**recipe, "method": method, "seed": seed, "device": "cpu",
                                             "out": str(Path(tmp) / f"{method}-s{seed}")})
                w0, c0 = time.perf_counter(), time.process_time()
                res = train(cfg)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                row = {"method": method, "seed": seed, "epochs": cfg.epochs, "wall_s": round(wall, 1),
                       "cpu_s": round(cpu, 1), "final_test_acc": res.final_test_acc,
                       "best_test_acc": res.best_test_acc}
                results.append(row)
                print(f"{method:>13} seed {seed}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, final test acc "
                      f"{res.final_test_acc:.4f}, best {res.best_test_acc:.4f}", flush=True)
    demo = next((r for r in results if r["method"] == recipe.get("method")), None)
    report = {
        "benchmark": "demo_time",
        "recipe": recipe,
        "threads": args.threads,
        "target_wall_s": TARGET_S,
        "demo_wall_s": demo["wall_s"] if demo else None,
        "demo_within_target": (demo["wall_s"] <= TARGET_S) if demo else None,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "runs": results,
    }
    atomic_write_json(args.out, report)
    print(f"demo ({recipe.get('method')}) wall time {report['demo_wall_s']} s (target {TARGET_S:.0f} s); "
          f"load average {report['loadavg_start']} -> {report['loadavg_end']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
