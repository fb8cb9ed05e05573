"""Calibrate the synthetic default dataset: a small conv net with and without Dropout.

Trains a 3-conv + 2-FC(256) network (single thread) on the default synthetic data and prints
train/test accuracy per epoch, to check that the task is well above chance, not saturated, and
shows a train/test gap where regularisation matters. Not a test; takes a few CPU minutes.

    PYTHONPATH=. python benchmarks/synthetic_calibration.py --epochs 15 --seeds 0
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from blockout.data import load_dataset


def make_net(num_classes: int, dropout: float, hidden: int = 256) -> nn.Sequential:
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    fc = []
    for i in range(2):
        fc += [nn.Linear(64 * 4 * 4 if i == 0 else hidden, hidden), nn.ReLU()]
        if dropout:
            fc.append(nn.Dropout(dropout))
    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 64), nn.Flatten(), *fc, nn.Linear(hidden, num_classes))


def accuracy(net, x, y, bs=500):
    net.eval()
    with torch.no_grad():
        correct = sum((net(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item() for i in range(0, len(x), bs))
    return correct / len(x)


def run(args, seed, dropout):
    train, test, info = load_dataset("synthetic", seed=seed, samples_per_class=args.spc, **args.kw)
    xtr, ytr = train.tensors()
    xte, yte = test.tensors()
    torch.manual_seed(seed)
    net = make_net(info.num_classes, dropout, args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(seed)
    hist = []
    for ep in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(perm), args.bs):
            idx = perm[i:i + args.bs]
            loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        hist.append((accuracy(net, xtr, ytr), accuracy(net, xte, yte)))
        print(f"  seed {seed} dropout {dropout} epoch {ep + 1}: train {hist[-1][0]:.3f} test {hist[-1][1]:.3f}", flush=True)
    return hist


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--spc", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dropouts", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("--set", nargs="*", default=[], help="synthetic knobs, e.g. noise=1.5 within=0.4")
    args = p.parse_args()
    args.kw = {k: (float(v) if "." in v else int(v)) for k, v in (s.split("=") for s in args.set)}
    torch.set_num_threads(1)
    for seed in args.seeds:
        for d in args.dropouts:
            t = time.time()
            hist = run(args, seed, d)
            best = max(h[1] for h in hist)
            print(f"seed {seed} dropout {d}: final train {hist[-1][0]:.3f} test {hist[-1][1]:.3f} "
                  f"best test {best:.3f} ({time.time() - t:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
