"""``blockout reproduce``: the paper's methods table, regenerated on any dataset.

Trains every method for every seed into ``<root>/<method>-s<seed>`` (a finished run is reused,
an unfinished one resumed), then tabulates the final test accuracy as mean ± std over seeds next
to the paper's CIFAR-100 numbers (DESIGN §1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from analysis import runfolder as rf
from blockout.config import METHODS, TrainConfig

#: Top-1 % on CIFAR-100 (512-node FC layers, 6 clusters), Murdock et al. 2016, Table 1.
PAPER_CIFAR100 = {
    "baseline": 61.56, "fc": 62.66, "dropout": 64.32,
    "soft-learned": 63.57, "hard-fixed": 65.62, "hard-learned": 65.66,
}
#: The same methods on ImageNet (top-1 %), for reference.
PAPER_IMAGENET = {
    "baseline": 73.43, "fc": 68.06, "dropout": 73.88,
    "soft-learned": 72.43, "hard-fixed": 74.44, "hard-learned": 74.83,
}


def run_name(method: str, seed: int) -> str:
    """Folder name of one run of the table.

    >>> run_name("hard-learned", 2)
    'hard-learned-s2'
    """
    return f"{method}-s{seed}"


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value, None for none).

    >>> m, s = mean_std([0.5, 0.7])
    >>> round(m, 6), round(s, 6), mean_std([0.3]), mean_std([])
    (0.6, 0.141421, (0.3, 0.0), (None, None))
    """
    vals = [float(v) for v in values]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def collect(root: Path, methods: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Read every run's final and best test accuracy into the table's JSON form."""
    rows = []
    for method in methods:
        finals, bests, runs = [], [], []
        for seed in seeds:
            metrics = rf.read_jsonl(root / run_name(method, seed) / rf.METRICS)
            if not metrics:
                continue
            finals.append(float(metrics[-1]["test_acc"]))
            bests.append(max(float(r["test_acc"]) for r in metrics))
            runs.append(run_name(method, seed))
        m, s = mean_std(finals)
        bm, bs = mean_std(bests)
        rows.append({"method": method, "runs": runs, "final_test_acc": finals, "mean": m, "std": s,
                     "best_mean": bm, "best_std": bs, "paper_cifar100": PAPER_CIFAR100.get(method)})
    return {"seeds": list(seeds), "rows": rows}


def to_markdown(table: dict[str, Any], title: str = "") -> str:
    """The table as Markdown (accuracies in %)."""

    def pct(m, s):
        return "n/a" if m is None else f"{100 * m:.2f} ± {100 * s:.2f}"

    lines = [f"# {title}" if title else "# Methods table", "",
             f"Final test accuracy (%), mean ± std over seeds {table['seeds']}; "
             "best-epoch accuracy alongside; the paper's CIFAR-100 top-1 for reference.", "",
             "| method | test acc (final) | test acc (best epoch) | runs | paper CIFAR-100 |",
             "|---|---|---|---|---|"]
    for r in table["rows"]:
        paper = "" if r["paper_cifar100"] is None else f"{r['paper_cifar100']:.2f}"
        lines.append(f"| {r['method']} | {pct(r['mean'], r['std'])} | {pct(r['best_mean'], r['best_std'])} | "
                     f"{len(r['runs'])} | {paper} |")
    return "\n".join(lines) + "\n"


def reproduce(base: TrainConfig, root: Path, methods: Sequence[str] = METHODS,
              seeds: Sequence[int] = (0,)) -> dict[str, Any] | None:
    """Train (or reuse) every method × seed under ``root`` and write ``methods.json`` and ``methods.md``.

    Returns the table, or None when a run was interrupted (Ctrl-C; rerun to continue).
    """
    from blockout.train import resume_config, train

    root = Path(root)
    for method in methods:
        for seed in seeds:
            out = root / run_name(method, seed)
            if (out / rf.TRAIN_STATE).is_file():
                cfg = resume_config(out, {"epochs": base.epochs, "device": base.device})
                result = train(cfg, resume=True)
            else:
                result = train(base.replace(method=method, seed=seed, out=str(out)))
            if result.status not in ("finished", "already-finished"):
                return None
    table = collect(root, methods, seeds)
    table["dataset"] = base.dataset
    table["config"] = {k: v for k, v in base.to_dict().items() if k not in ("method", "seed", "out")}
    rf.atomic_write_json(root / "methods.json", table)
    rf.atomic_write_text(root / "methods.md", to_markdown(table, f"Blockout methods on {base.dataset}"))
    return table
