"""Why does the linkage co-clustering miss on some seeds, and which rule reads k off the dendrogram? (issue 12)

Trains ``hard-cocluster --cocluster-method linkage`` on the unbalanced planted hierarchy
(``benchmarks/hierarchies/unbalanced_50.json``: 50 classes in 9 groups of 1-10; depth 1, 160 nodes,
k = 9, the switch after a third of the epochs) and keeps the classifier weights of *every* epoch
(through the trainer's ``on_step`` hook; the run folder keeps only the last and best). Then, per seed:

* ``metrics``: ARI against the planted groups of the class rows cut into 9 groups at the switch, for
  the distance the recipe uses (average linkage, cosine of the signed rows) and alternatives
  (Euclidean, rows centred on their mean, ``|W|``, complete linkage);
* ``trajectory``: the same (cosine) at every epoch, warm-up and after the switch, and the ARI of each
  epoch's partition against the switch's (1 = a re-clustering at that epoch would move no class);
* ``k_rules``: the number of groups each rule of :func:`blockout.cocluster.choose_k` reads off the
  warm-up weights of epochs 5 to the switch (capacity 12), and the ARI of the cut at that k;
* ``separation``: mean within-group and between-group cosine distance of the rows at the switch.

Writes ``benchmarks/results/emergence_r5_study.{json,md}``. Run from the repository root:
``python benchmarks/emergence_r5_study.py --seeds 3 --epochs 30 --image-size 16``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.runfolder import atomic_write_json, atomic_write_text  # noqa: E402
from blockout.cocluster import K_RULES, choose_k, cosine_row_distances, linkage_row_clusters  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
UNBALANCED = ROOT / "benchmarks" / "hierarchies" / "unbalanced_50.json"
K = 9


def _cut(D: np.ndarray, k: int, method: str = "average") -> np.ndarray:
    import scipy.cluster.hierarchy as sch
    from scipy.spatial.distance import squareform

    return sch.cut_tree(sch.linkage(squareform(D, checks=False), method=method), n_clusters=k).ravel()


def study_one(seed: int, epochs: int, image_size: int, threads: int) -> dict:
    """Train one seed, keep every epoch's classifier rows, and measure (module docstring)."""
    import torch
    from scipy.spatial.distance import pdist, squareform
    from sklearn.metrics import adjusted_rand_score as ari

    from analysis.run import load_run
    from blockout.config import TrainConfig
    from blockout.train import train

    torch.set_num_threads(threads)
    out_dir = Path(tempfile.mkdtemp(prefix="r5study-"))
    try:
        cfg = TrainConfig.from_dict({
            "dataset": "synthetic", "hierarchy": str(UNBALANCED), "clusters": K, "nodes": 160, "depth": 1,
            "batch_size": 128, "num_workers": 0, "device": "cpu", "epochs": epochs, "image_size": image_size,
            "seed": seed, "method": "hard-cocluster", "cocluster_method": "linkage",
            "cocluster_source": "weights", "out": str(out_dir / "run")},
            source="benchmark")
        by_step: dict[int, np.ndarray] = {}

        def grab(step: int, model) -> None:  # the classifier rows after every optimiser step
            by_step[step] = model.fc[model.layer_names[-1]].weight.detach().cpu().numpy().copy()

        train(cfg, on_step=grab)
        run = load_run(out_dir / "run")
        truth = np.asarray(run.coarse_labels)
        switch = int(cfg.cocluster_at)
        cc = np.asarray([m["cocluster_classes"] for m in run.metrics if "cocluster_classes" in m][0])
        weights = [by_step[int(m["step"])] for m in run.metrics]  # the rows at each epoch's end
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if len(weights) != epochs:
        raise RuntimeError(f"expected {epochs} epochs of weights, got {len(weights)}")
    W = weights[switch - 1]  # the rows the co-clustering saw (end of the last warm-up epoch)
    D = cosine_row_distances(W)
    if not np.array_equal(linkage_row_clusters(W, K), cc):
        raise RuntimeError("the captured switch weights do not reproduce the run's co-clustering")
    metrics = {
        "cosine (the recipe)": ari(truth, _cut(D, K)),
        "euclidean": ari(truth, _cut(squareform(pdist(W)), K)),
        "centred rows, cosine": ari(truth, _cut(cosine_row_distances(W - W.mean(0, keepdims=True)), K)),
        "abs(W), cosine": ari(truth, _cut(cosine_row_distances(np.abs(W)), K)),
        "cosine, complete linkage": ari(truth, _cut(D, K, "complete")),
    }
    trajectory = []
    for e, We in enumerate(weights, start=1):
        part = linkage_row_clusters(We, K)
        trajectory.append({"epoch": e, "ari": ari(truth, part), "vs_switch": ari(cc, part)})
    k_rules = {}
    for rule in K_RULES:
        per = []
        for e in range(min(5, switch), switch + 1):
            k = choose_k(weights[e - 1], 12, rule)
            per.append({"epoch": e, "k": k, "ari": ari(truth, linkage_row_clusters(weights[e - 1], k))})
        k_rules[rule] = per
    k_rules["given 9"] = [{"epoch": e, "k": K, "ari": ari(truth, linkage_row_clusters(weights[e - 1], K))}
                          for e in range(min(5, switch), switch + 1)]
    off = ~np.eye(len(truth), dtype=bool)
    same = (truth[:, None] == truth[None, :]) & off
    separation = {"within": float(D[same].mean()), "between": float(D[truth[:, None] != truth[None, :]].mean())}
    return {"seed": seed, "switch_epoch": switch, "metrics": metrics, "trajectory": trajectory,
            "k_rules": k_rules, "separation": separation, "acc": run.metrics[-1]["test_acc"]}


def markdown(results: list[dict], meta: dict) -> str:
    seeds = [r["seed"] for r in results]
    lines = [f"# Round 5 study: linkage co-clustering on the unbalanced hierarchy ({meta['epochs']} epochs, "
             f"{meta['image_size']} px, seeds {seeds})", "",
             "## Distance at the switch (ARI against the planted 9 groups, cut into 9)", "",
             "| distance | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|" + "---|" * (len(seeds) + 1)]
    for name in results[0]["metrics"]:
        vals = [r["metrics"][name] for r in results]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {np.mean(vals):.2f} |")
    lines += ["", "## Separation of the rows at the switch (mean cosine distance)", "",
              "| seed | within planted groups | between |", "|---|---|---|"]
    lines += [f"| {r['seed']} | {r['separation']['within']:.2f} | {r['separation']['between']:.2f} |" for r in results]
    lines += ["", "## k read off the warm-up weights (epochs 5 to the switch, capacity 12)", "",
              "| rule | chosen k per epoch and seed | mean ARI at the chosen k | min |", "|---|---|---|---|"]
    for rule in results[0]["k_rules"]:
        ks = "; ".join(f"s{r['seed']}: " + ",".join(str(x["k"]) for x in r["k_rules"][rule]) for r in results)
        aris = [x["ari"] for r in results for x in r["k_rules"][rule]]
        lines.append(f"| {rule} | {ks} | {np.mean(aris):.3f} | {np.min(aris):.2f} |")
    lines += ["", "## Cosine cut into 9 at every epoch (ARI vs planted / vs the switch's partition)", "",
              "| epoch | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for i in range(len(results[0]["trajectory"])):
        cells = [f"{r['trajectory'][i]['ari']:.2f} / {r['trajectory'][i]['vs_switch']:.2f}" for r in results]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="emergence_r5_study")
    args = ap.parse_args(argv)
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        results.append(study_one(seed, args.epochs, args.image_size, args.threads))
        print(f"seed {seed}: metrics at the switch {results[-1]['metrics']}", flush=True)
    meta = {"epochs": args.epochs, "image_size": args.image_size, "k": K, "hierarchy": str(UNBALANCED.relative_to(ROOT))}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / f"{args.name}.json", {"meta": meta, "seeds": results})
    text = markdown(results, meta)
    atomic_write_text(RESULTS / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
