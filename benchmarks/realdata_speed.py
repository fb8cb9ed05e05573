"""Training speed on Fashion-MNIST: images per second of fc, dropout and hard-learned, and the data share.

    .venv/bin/python benchmarks/realdata_speed.py                 # one epoch's steps (60 000 images) per method
    .venv/bin/python benchmarks/realdata_speed.py --steps 100     # quicker: 100 steps per method
    .venv/bin/python benchmarks/realdata_speed.py --full-epoch    # also time `train()` itself for one epoch

Every variant uses the default model (conv trunk, 2 x 512 FC layers, k = 6) and the trainer's own
pieces: in-memory batches (``get_batch``), crop-flip augmentation on the batch, forward, loss,
backward and Adam step. The variants are timed **round-robin in blocks of 10 steps** in one
process, so load from other processes hits all of them alike; the ratios come from this one run.
``hard-learned (before)`` is the same model with the conv trunk as it was before the speed work
(NCHW tensors, ReLU before max-pool), to show the speed-up in the same run. The data share is the
time spent fetching, normalising and augmenting batches over the whole step time. Reported per
variant: median wall and CPU seconds per step, images per second (wall), and the epoch time
estimate for 60 000 images (469 steps of 128) plus one evaluation of the 10 000 test images.
Results go to ``benchmarks/results/realdata_speed.json``.
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
from blockout.config import TrainConfig  # noqa: E402
from blockout.data import load_dataset  # noqa: E402
from blockout.data.augment import augment_batch, batch_generator, crop_padding  # noqa: E402
from blockout.models import build_model  # noqa: E402
from blockout.train import make_optimizer  # noqa: E402

BATCH = 128


def old_trunk(model: nn.Module) -> nn.Module:
    """Rebuild the conv trunk as it was before the speed work: NCHW, ReLU before max-pool."""
    net = model.trunk.net
    layers = list(net)
    out = []
    i = 0
    while i < len(layers):
        if isinstance(layers[i], nn.MaxPool2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU):
            out += [layers[i + 1], layers[i]]
            i += 2
        else:
            out.append(layers[i])
            i += 1
    model.trunk.net = nn.Sequential(*out).to(memory_format=torch.contiguous_format)
    model.trunk.forward = lambda x: model.trunk.net(x)  # plain NCHW input
    return model


def make_variant(method: str, before: bool, num_classes: int):
    torch.manual_seed(0)
    cfg = TrainConfig(method=method, dataset="fashion-mnist")
    model = build_model(cfg, (1, 28, 28), num_classes)
    if before:
        old_trunk(model)
    model.train()
    return model, make_optimizer(model, cfg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=469, help="training steps timed per variant (469 = one epoch)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--full-epoch", action="store_true", help="also run train() for one epoch (hard-learned)")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "results" / "realdata_speed.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    train_ds, test_ds, info = load_dataset("fashion-mnist", data_dir=args.data_dir)
    load_s = time.perf_counter() - t0
    print(f"loaded Fashion-MNIST ({len(train_ds)} train, {len(test_ds)} test) in {load_s:.2f}s", flush=True)
    n = len(train_ds)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    pad = crop_padding(28)
    fill = train_ds._shift
    variants = {"fc": ("fc", False), "dropout": ("dropout", False), "hard-learned": ("hard-learned", False),
                "hard-learned (before)": ("hard-learned", True)}
    models = {name: make_variant(m, b, info.num_classes) for name, (m, b) in variants.items()}
    times = {name: {"wall": [], "cpu": [], "data_wall": []} for name in variants}
    step_of = {name: 0 for name in variants}

    def run_steps(name: str, count: int) -> None:
        model, opt = models[name]
        for _ in range(count):
            s = step_of[name] % (n // BATCH)
            idx = perm[s * BATCH:(s + 1) * BATCH]
            w0, c0 = time.perf_counter(), time.process_time()
            x, y = train_ds.get_batch(idx)
            x = augment_batch(x, batch_generator(0, 0, s), pad=pad, flip=True, fill=fill)
            w1 = time.perf_counter()
            loss = nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            times[name]["wall"].append(time.perf_counter() - w0)
            times[name]["cpu"].append(time.process_time() - c0)
            times[name]["data_wall"].append(w1 - w0)
            step_of[name] += 1

    for name in variants:  # warm-up
        run_steps(name, 3)
        for v in times[name].values():
            v.clear()
    block = 10
    done = 0
    while done < args.steps:
        todo = min(block, args.steps - done)
        for name in variants:
            run_steps(name, todo)
        done += todo
        if done % 100 == 0 or done == args.steps:
            print(f"  {done}/{args.steps} steps per variant", flush=True)

    # one evaluation pass over the test set per variant (eval mode, no grad)
    eval_s = {}
    for name, (model, _) in models.items():
        model.eval()
        w0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(test_ds), 2 * BATCH):
                x, _ = test_ds.get_batch(torch.arange(i, min(i + 2 * BATCH, len(test_ds))))
                model(x)
        eval_s[name] = time.perf_counter() - w0
        model.train()

    steps_per_epoch = 60000 // BATCH
    results = {}
    for name, t in times.items():
        wall, cpu, data = (statistics.median(t[k]) for k in ("wall", "cpu", "data_wall"))
        results[name] = {
            "median_step_wall_s": wall, "median_step_cpu_s": cpu, "images_per_s": BATCH / wall,
            "images_per_cpu_s": BATCH / cpu, "data_share": sum(t["data_wall"]) / sum(t["wall"]),
            "eval_10000_s": eval_s[name],
            "epoch_estimate_s": steps_per_epoch * wall + eval_s[name],
        }
    base = results["hard-learned (before)"]["median_step_wall_s"]
    results["hard-learned"]["speedup_vs_before"] = base / results["hard-learned"]["median_step_wall_s"]
    print(f"\n{'variant':<24}{'img/s':>8}{'img/cpu-s':>11}{'step ms':>9}{'data %':>8}{'epoch s (est.)':>16}")
    for name, r in results.items():
        print(f"{name:<24}{r['images_per_s']:>8.0f}{r['images_per_cpu_s']:>11.0f}{1000 * r['median_step_wall_s']:>9.1f}"
              f"{100 * r['data_share']:>8.1f}{r['epoch_estimate_s']:>16.1f}")
    print(f"hard-learned speed-up over the trunk before the speed work: "
          f"{results['hard-learned']['speedup_vs_before']:.2f}x (same run, interleaved)")

    full = None
    if args.full_epoch:
        import tempfile

        from blockout.train import train

        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(dataset="fashion-mnist", data_dir=args.data_dir, method="hard-learned", epochs=1,
                              device="cpu", out=str(Path(tmp) / "run"))
            w0 = time.perf_counter()
            res = train(cfg)
            full = {"wall_s": time.perf_counter() - w0, "status": res.status, "test_acc": res.final_test_acc}
        print(f"train(): one hard-learned epoch over 60 000 images (+ 10 000 test) in {full['wall_s']:.1f}s "
              f"(including the {load_s:.1f}s dataset load)")
    out = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "note": "shared 2-core machine; other jobs were running (see loadavg): compare ratios within this run",
        "batch_size": BATCH, "steps_per_variant": args.steps, "dataset_load_s": load_s,
        "variants": results, "full_epoch": full,
    }
    atomic_write_json(args.output, out)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
