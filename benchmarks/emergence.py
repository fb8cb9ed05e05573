"""Does a hierarchy emerge? Sweep the paper's formulation against each of our options (issue 5).

Every configuration is trained with the real trainer (``blockout train``'s code path) on the
default synthetic data (CIFAR-100 names, 20 planted superclasses x 5 classes; the coarse labels are
never used in training), then read back from its run folder with the analysis package:

* ``acc``: final test accuracy;
* ``ari_p``: adjusted Rand index between the planted superclasses and the class groups of the
  *emerged* hierarchy (average-linkage clustering of the class node set's P rows, cut into as
  many groups as there are superclasses), with its permutation-null z-score ``z_p``;
* ``ari_t``: the same from the memberships at threshold 0.5 (connectivity hierarchy);
* ``ari_w``, ``z_w``: the same for the hierarchy *induced from the classifier weights*;
* per node set: share of P below 0.1 and above 0.9, dead nodes (no cluster at 0.5), distinct
  signatures; dead classes (classes in no cluster).

Round-5 rows (``r5 ...``, issue 12) add the chosen k, the permutation p of each seed, how many classes
theta moved after the switch, the agreement of the switch's partition with the final weights', and for
Fashion-MNIST the same statistics against WordNet depths 5 and 7 (``refs``), and the branch tree's depth;
their own table closes the ``.md``. The ``confusion`` rows group the classes by the warm-up network's soft
confusion matrix (``--cocluster-source confusion``) instead of its weight rows.

Writes ``benchmarks/results/emergence[_quick].json`` and ``.md`` (atomic writes). Modes:

``--quick``   three configurations (fc, the paper's hard-learned, our hard-budgeted), 1 seed, few
              epochs, 16-pixel images: a few minutes on two cores; a smoke test of the whole chain.
``(full)``    every option, ``--seeds`` seeds, the recipe's epochs: hours on two cores.

Run from the repository root: ``python benchmarks/emergence.py --quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.compare import compare_partition, random_permutations  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from analysis.hierarchy import class_hierarchy  # noqa: E402
from analysis.run import load_run  # noqa: E402
from analysis.runfolder import atomic_write_json, atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / ".bench" / "emergence"
THREADS = 2
#: planted hierarchy with unequal groups (round 5; usable as ``blockout train --hierarchy FILE``)
UNBALANCED = ROOT / "benchmarks" / "hierarchies" / "unbalanced_50.json"
#: two-level planted hierarchy (round 5, nested): 4 coarse groups, 10 fine groups of 2-5 classes, 30 classes
NESTED = ROOT / "benchmarks" / "hierarchies" / "nested_4x10.json"

#: Shared by every configuration: the capacity-pressure regime of the study (k = 20, 80 nodes, 4 per
#: branch), with the trainer's default optimiser (Adam, lr 1e-3).
BASE = {"dataset": "synthetic", "clusters": 20, "nodes": 80, "depth": 2, "batch_size": 128, "num_workers": 0,
        "device": "cpu"}


def sweep(full: bool) -> list[tuple[str, dict]]:
    """``(label, config overrides)`` of every configuration of the sweep."""
    rec = {"method": "hard-budgeted"}
    quick = [
        ("fc (plain, same width)", {"method": "fc"}),
        ("paper: hard-learned, count mask", {"method": "hard-learned"}),
        ("ours: hard-budgeted (recipe)", rec),
    ]
    if not full:
        return quick
    cc = {"method": "hard-cocluster"}
    cocluster = [
        ("ours: hard-cocluster (co-clustered warm start)", cc),
        ("hard-cocluster 160 nodes", {**cc, "nodes": 160}),
        ("hard-cocluster depth 1", {**cc, "depth": 1}),
        ("hard-cocluster depth 1 160 nodes", {**cc, "depth": 1, "nodes": 160}),
        ("fc depth 1", {"method": "fc", "depth": 1}),
        ("fc depth 1 160 nodes", {"method": "fc", "depth": 1, "nodes": 160}),
    ]
    # round 4: reducing the accuracy cost of the one-step switch (depth 1, 160 nodes, the demo recipe)
    d1 = {**cc, "depth": 1, "nodes": 160}
    # the round-3 recipe (class P 0.01, frozen at two thirds), now that the preset has changed
    r3 = {"cocluster_class_low": 0.01, "freeze_after": 20}
    cocluster += [
        ("round-3 recipe, depth 1, 160 nodes (class low 0.01, freeze 20)", {**d1, **r3}),
        ("round-3 recipe, depth 2, 80 nodes (class low 0.01, freeze 20)", {**cc, **r3}),
        ("r4 freeze 11", {**d1, **r3, "freeze_after": 11}),
        ("r4 class low 0.15 no freeze", {**d1, "cocluster_class_low": 0.15, "freeze_after": None}),
        ("r4 anneal 5", {**d1, **r3, "cocluster_anneal_epochs": 5}),
        ("r4 anneal 10", {**d1, **r3, "cocluster_anneal_epochs": 10, "freeze_after": 25}),
        ("r4 class low 0.1 no freeze", {**d1, "cocluster_class_low": 0.1, "freeze_after": None}),
        ("r4 class low 0.2 no freeze", {**d1, "cocluster_class_low": 0.2, "freeze_after": None}),
        ("r4 low 0.15 + anneal 5", {**d1, "cocluster_anneal_epochs": 5}),
        ("r4 low 0.15 + class high 0.99", {**d1, "cocluster_class_high": 0.99}),
        ("r4 low 0.15 + cocluster at 5", {**d1, "cocluster_at": 5}),
        ("r4 class low 0.15 theta lr x1 no freeze", {**d1, "cocluster_class_low": 0.15, "freeze_after": None,
                                                     "theta_lr_mult": 1.0}),
    ]
    # round 5 (issue 12): a planted hierarchy with unequal groups (sizes 1, 2, 3, 4, 5, 7, 8, 10, 10; 50
    # classes), k = the planted number of groups; depth 1, 160 nodes (the demo recipe's shape)
    unb = {"hierarchy": str(UNBALANCED.relative_to(ROOT)), "clusters": 9, "depth": 1, "nodes": 160}
    cocluster += [
        ("r5 unbalanced: fc", {**unb, "method": "fc"}),
        ("r5 unbalanced: hard-cocluster (signed, shipped)", {**unb, **cc}),
        ("r5 unbalanced: hard-cocluster --cocluster-method linkage", {**unb, **cc, "cocluster_method": "linkage",
                                                                      "cocluster_source": "weights"}),
    ]
    cocluster += r5_auto_rows(cc, unb)
    cocluster += nested_sweep()
    cocluster += r5_confusion_rows(cc, unb)
    return quick + [
        ("paper + union mask", {"method": "hard-learned", "mask": "union"}),
        ("paper + theta lr x1", {"method": "hard-learned", "theta_lr_mult": 1.0}),
        ("paper + theta lr x100", {"method": "hard-learned", "theta_lr_mult": 100.0}),
        ("recipe, budget off", {**rec, "budget_rho": None}),
        ("recipe, rho = 0.1", {**rec, "budget_rho": 0.1}),
        ("recipe, budget annealed 1 -> 1/k (20-60 %)", {**rec, "budget_anneal_start": 0.2, "budget_anneal_end": 0.6}),
        ("recipe, Bernoulli hidden", {**rec, "hidden_membership": "bernoulli"}),
        ("recipe, fixed towers hidden", {**rec, "hidden_membership": "towers"}),
        ("recipe, no usage balancing", {**rec, "usage_weight": 0.0}),
        ("recipe, no freeze/fine-tune", {**rec, "freeze_after": None}),
        ("recipe, no fan-in init", {**rec, "fanin_init": "off"}),
        ("recipe, 80 samples per class", {**rec, "samples_per_class": 80}),
        ("recipe, categorical classes (no budget)", {**rec, "class_membership": "categorical",
                                                     "class_usage_weight": 1.0, "temperature_end": 0.1,
                                                     "budget_rho": None}),
        ("recipe, 1 hidden layer", {**rec, "depth": 1}),
        ("recipe, k = 10", {**rec, "clusters": 10}),
        ("recipe, 160 nodes (8 per branch)", {**rec, "nodes": 160}),
        ("fc, 160 nodes", {"method": "fc", "nodes": 160}),
        ("soft co-clustering (all categorical, mask x k, 5 warm-up epochs)",
         {**rec, "mask": "count", "mask_scale": 20.0, "class_membership": "categorical", "class_usage_weight": 1.0,
          "membership_init_scale": 0.0, "membership_init_noise": 0.01, "class_init_noise": 0.01,
          "membership_warmup": 5, "soft_epochs": 1000, "budget_rho": None, "temperature_end": 0.05,
          "fanin_init": "off"}),
    ] + cocluster


# --- round 5: k chosen from the data, Fashion-MNIST (issue 12) ------------------------------------------
#: Fashion-MNIST rows: 600 training / 300 test images per class, the shape of blockout/configs/fashion_mnist.json
#: (2 hidden layers of 128), no augmentation (short runs), at most 6 clusters (the k-from-data rows choose)
FASHION = {"dataset": "fashion-mnist", "samples_per_class": 600, "test_samples_per_class": 300, "nodes": 128,
           "depth": 2, "clusters": 4, "augment": "none"}
#: References the Fashion-MNIST rows are scored against (analysis.compare.reference_set): WordNet at depth 5
#: (clothing / footwear / bag, = the dataset's coarse groups) and 7 (clothing / shoe / bag / boot)
FASHION_REFS = ("wordnet_d5", "wordnet_d7")


def r5_auto_rows(cc: dict, unb: dict) -> list[tuple[str, dict]]:
    """Round-5 rows of the k-from-data option and the Fashion-MNIST comparison (own block; labels without
    commas, which ``--only`` splits on)."""
    auto = {**cc, "cocluster_method": "linkage", "cocluster_k": "auto", "cocluster_source": "weights"}
    rows = [
        # --clusters is the capacity: 12 > the planted 9, the rule picks k
        ("r5 unbalanced: linkage k auto (capacity 12)", {**unb, **auto, "clusters": 12}),
        ("r5 unbalanced: linkage k gap (capacity 12)", {**unb, **auto, "clusters": 12,
                                                                        "cocluster_k": "gap"}),
        ("r5 unbalanced: linkage k auto switch at half", {**unb, **auto, "clusters": 12, "cocluster_at": 15}),
        # a theta reassignment phase: a soft start (own cluster P 0.6, others 0.3) that theta can overturn
        ("r5 unbalanced: linkage k auto theta phase (class P 0.6 / 0.3)",
         {**unb, **auto, "clusters": 12, "cocluster_class_high": 0.6, "cocluster_class_low": 0.3}),
    ]
    rows += [
        ("r5 fashion: fc", {**FASHION, "method": "fc"}),
        ("r5 fashion: hard-learned", {**FASHION, "method": "hard-learned"}),
        ("r5 fashion: hard-cocluster", {**FASHION, **cc}),
        ("r5 fashion: linkage k 4", {**FASHION, **cc, "cocluster_method": "linkage", "cocluster_source": "weights"}),
        ("r5 fashion: linkage k auto (capacity 6)", {**FASHION, **auto, "clusters": 6}),
    ]
    return rows


def r5_confusion_rows(cc: dict, unb: dict) -> list[tuple[str, dict]]:
    """Round-5 rows of ``--cocluster-source confusion``: the classes grouped by the soft confusion matrix of
    the last warm-up epoch instead of the warm-up weights, on the unbalanced, nested and Fashion-MNIST
    shapes of the rows above (labels without commas)."""
    conf = {**cc, "cocluster_method": "linkage", "cocluster_source": "confusion"}
    nest = {"hierarchy": str(NESTED.relative_to(ROOT)), "clusters": 10, "depth": 2, "nodes": 160}
    return [
        ("r5 unbalanced: confusion k 9", {**unb, **conf}),
        ("r5 unbalanced: confusion k auto (capacity 12)", {**unb, **conf, "clusters": 12, "cocluster_k": "auto"}),
        ("r5 nested: confusion nested", {**nest, **conf, "cocluster_method": "nested"}),
        ("r5 nested: confusion nested coarse 4", {**nest, **conf, "cocluster_method": "nested", "cocluster_coarse": 4}),
        # the fine count read off the confusion dendrogram too (capacity 12 > the planted 10), coarse given
        ("r5 nested: confusion nested k auto coarse 4 (capacity 12)",
         {**nest, **conf, "cocluster_method": "nested", "cocluster_coarse": 4, "clusters": 12, "cocluster_k": "auto"}),
        ("r5 fashion: confusion k 4", {**FASHION, **conf}),
        ("r5 fashion: confusion k auto (capacity 6)", {**FASHION, **conf, "clusters": 6, "cocluster_k": "auto"}),
    ]


def tree_stats(run_dir: Path) -> dict:
    """Depth of a Blockout run's branch tree at tau 0.5 (0 for the plain methods)."""
    from analysis.graphs import branch_tree
    from analysis.verdict import branch_depth

    run = load_run(run_dir)
    return {"tree_depth": 0 if run.class_set is None else branch_depth(branch_tree(run, 0.5))}


def reference_groupings(run) -> dict[str, np.ndarray]:
    """``{name: labels}`` to score a run against: the planted/coarse groups, and for Fashion-MNIST WordNet."""
    refs = {"coarse": np.asarray(run.coarse_labels)} if run.coarse_labels is not None else {}
    if (run.config or {}).get("dataset") == "fashion-mnist":
        from analysis.compare import reference_set

        groupings, _, _ = reference_set(run.class_names, reference="wordnet")
        refs.update({g.name: np.asarray(g.labels) for g in groupings if g.name in FASHION_REFS})
    return refs


def _json_num(x):
    if x is None:
        return None
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def analyse(run_dir: Path, permutations: int = 199, seed: int = 0) -> dict:
    """Emergence statistics of one finished run folder (see the module docstring)."""
    run = load_run(run_dir)
    out: dict = {"acc": _json_num(run.metrics[-1]["test_acc"]) if run.metrics else None}
    coarse = np.asarray(run.coarse_labels)
    n_groups = int(np.unique(coarse).size)
    perms = random_permutations(len(coarse), permutations, seed)

    def agreement(method: str):
        h = class_hierarchy(run, method)
        stats = compare_partition(coarse, h.groups(n_groups=n_groups), perms)["ari"]
        if method == "weights":  # round 5 reports its permutation p too
            out["p_w"] = _json_num(stats.p)
        return _json_num(stats.observed), _json_num(stats.z)

    out["ari_w"], out["z_w"] = agreement("weights")
    cc = [m["cocluster_classes"] for m in run.metrics if "cocluster_classes" in m]
    if cc:  # hard-cocluster: the class groups right after the co-clustering, before any theta training
        stats = compare_partition(coarse, np.asarray(cc[0]), perms)["ari"]
        out["ari_cc"], out["z_cc"], out["p_cc"] = _json_num(stats.observed), _json_num(stats.z), _json_num(stats.p)
        out["k_chosen"] = int(np.unique(cc[0]).size)
        # re-running the clustering on the final weights (a reassignment phase at the end): how far would the
        # classes move? ARI between the switch's partition and the final weights' dendrogram cut at the same k
        final_w = class_hierarchy(run, "weights").groups(n_groups=out["k_chosen"])
        out["ari_cc_vs_final_w"] = _json_num(adjusted_rand_score(np.asarray(cc[0]), final_w))
    if run.class_set is not None:
        # round 5: did theta move a class? (argmax of the final class P rows against the switch's clusters)
        final = run.probs()[run.class_set.name].argmax(axis=1)
        if cc:
            out["classes_moved"] = int((final != np.asarray(cc[0])).sum())
    refs = reference_groupings(run)
    if set(refs) - {"coarse"}:  # Fashion-MNIST: every reference, memberships (P rows) and weights
        by_ref = {}
        for name, labels in refs.items():
            n_ref = int(np.unique(labels).size)
            item = {}
            for what, method in (("w", "weights"), ("p", "probability")):
                if method == "probability" and run.class_set is None:
                    continue
                st = compare_partition(labels, class_hierarchy(run, method).groups(n_groups=n_ref), perms)["ari"]
                item[f"ari_{what}"], item[f"z_{what}"], item[f"p_{what}"] = (
                    _json_num(st.observed), _json_num(st.z), _json_num(st.p))
            if cc:  # the co-clustering's own partition, at its own (possibly chosen) k
                st = compare_partition(labels, np.asarray(cc[0]), perms)["ari"]
                item["ari_cc"], item["z_cc"], item["p_cc"] = _json_num(st.observed), _json_num(st.z), _json_num(st.p)
            by_ref[name] = item
        out["refs"] = by_ref
    if run.class_set is None:
        return out
    out["ari_p"], out["z_p"] = agreement("probability")
    out["ari_t"], out["z_t"] = agreement("connectivity")
    probs = run.probs()
    sets = {}
    for ns in run.node_sets:
        P = probs[ns.name]
        member = P >= 0.5
        codes = {tuple(np.flatnonzero(r)) for r in member}
        sets[ns.name] = {
            "near0": _json_num((P < 0.1).mean()), "near1": _json_num((P > 0.9).mean()),
            "dead": int((~member.any(axis=1)).sum()), "signatures": len(codes),
            "clusters_per_node": _json_num(member.sum(axis=1).mean()),
        }
    out["node_sets"] = sets
    out["dead_classes"] = sets.get(run.class_set.name, {}).get("dead")
    return out


def train_one(config: dict, run_dir: Path) -> float:
    """Train ``config`` into ``run_dir`` (replaced); returns seconds."""
    import torch

    from blockout.config import TrainConfig
    from blockout.train import train

    torch.set_num_threads(THREADS)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    if config.get("hierarchy") and not Path(config["hierarchy"]).is_absolute():
        config = {**config, "hierarchy": str(ROOT / config["hierarchy"])}  # shipped files, from any cwd
    t0 = time.perf_counter()
    train(TrainConfig.from_dict({**config, "out": str(run_dir)}, source="benchmark"))
    return time.perf_counter() - t0


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every numeric statistic, per label."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    table = []
    for label, rs in by.items():
        item = {"label": label, "seeds": len(rs), "config": rs[0]["config"]}
        for key in ("acc", "ari_p", "z_p", "ari_t", "z_t", "ari_w", "z_w", "ari_cc", "z_cc", "dead_classes",
                    "seconds"):
            vals = [r["stats"].get(key) if key != "seconds" else r["seconds"] for r in rs]
            vals = [v for v in vals if v is not None]
            item[key] = _json_num(np.mean(vals)) if vals else None
            item[key + "_sd"] = _json_num(np.std(vals)) if len(vals) > 1 else None
        for key in ("p_w", "p_cc", "k_chosen", "classes_moved", "ari_cc_vs_final_w", "tree_depth"):  # round 5
            vals = [r["stats"].get(key) for r in rs if r["stats"].get(key) is not None]
            item[key] = _json_num(np.mean(vals)) if vals else None
            item[key + "_sd"] = _json_num(np.std(vals)) if len(vals) > 1 else None
            if key in ("p_w", "p_cc", "k_chosen"):
                item[key + "_each"] = vals
        refs = sorted({n for r in rs for n in r["stats"].get("refs", {})})
        if refs:
            item["refs"] = {}
            for n in refs:
                per = [r["stats"]["refs"][n] for r in rs if n in r["stats"].get("refs", {})]
                agg = {}
                for key in sorted({k for d in per for k in d}):
                    vals = [d[key] for d in per if d.get(key) is not None]
                    agg[key] = _json_num(np.mean(vals)) if vals else None
                    agg[key + "_sd"] = _json_num(np.std(vals)) if len(vals) > 1 else None
                    if key.startswith("p_") or key.startswith("ari_"):
                        agg[key + "_each"] = vals
                item["refs"][n] = agg
        hidden = [r["stats"].get("node_sets", {}) for r in rs]
        for name in sorted({n for h in hidden for n in h}):
            for key in ("near0", "near1", "dead", "signatures"):
                vals = [h[name][key] for h in hidden if name in h and h[name][key] is not None]
                item[f"{name}.{key}"] = _json_num(np.mean(vals)) if vals else None
        table.append(item)
    return table


def _g(item: dict, key: str, digits: int) -> str:
    v = item.get(key)
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(table: list[dict], meta: dict) -> str:
    def f(item, key, digits=2):
        v, sd = item.get(key), item.get(key + "_sd")
        if v is None:
            return "–"
        return f"{v:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd else "")

    head = ("| configuration | test acc | ARI P rows (z) | ARI thr 0.5 | ARI at co-clustering | ARI weights (z) | "
            "dead classes | classes P<0.1 / P>0.9 | h2 P>0.9 | h2 dead | h2 signatures |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for it in table:
        z_p = f" ({it['z_p']:.0f})" if it.get("z_p") is not None else ""
        z_w = f" ({it['z_w']:.0f})" if it.get("z_w") is not None else ""
        c0, c1 = it.get("classes.near0"), it.get("classes.near1")
        lines.append(
            f"| {it['label']} | {f(it, 'acc', 3)} | {f(it, 'ari_p')}{z_p} | {f(it, 'ari_t')} | {f(it, 'ari_cc')} | "
            f"{f(it, 'ari_w')}{z_w} | "
            f"{f(it, 'dead_classes', 1)} | {'–' if c0 is None else f'{c0:.2f} / {c1:.2f}'} | "
            f"{_g(it, 'h2.near1', 2)} | {_g(it, 'h2.dead', 1)} | {_g(it, 'h2.signatures', 0)} |")
    note = (f"\n{meta['mode']} mode, seeds {meta['seeds']}, epochs {meta['epochs']}, image size "
            f"{meta['image_size']}, k = {BASE['clusters']}, {BASE['nodes']} nodes per hidden layer unless stated; "
            f"z = (ARI − null mean) / null sd over {meta['permutations']} label permutations.\n")
    if any(it["label"].startswith("r5 ") and ("k_chosen" in it or "refs" in it) for it in table):
        note += r5_markdown(table)
    if any(it["label"].startswith("r5 unbalanced") for it in table):
        note += (f"r5 rows: the planted hierarchy {UNBALANCED.relative_to(ROOT)} (50 classes in 9 groups of 1-10), "
                 "k = 9, depth 1, 160 nodes; 'ARI at co-clustering' = the class clusters set at the switch.\n")
    return head + "\n".join(lines) + "\n" + note

# ---------------------------------------------------------------------------------------------
# round 5, nested (issue 12): a two-level planted hierarchy; membership and weight ARI per level


def nested_sweep() -> list[tuple[str, dict]]:
    """The ``r5 nested`` rows: fc, the shipped ``hard-cocluster`` and ``--cocluster-method nested``.

    k = 10 (the planted number of fine groups), depth 2 (one hidden layer per level of branches),
    160 nodes; the number of coarse groups of the nested option is chosen from the data (the widest
    gap of the class dendrogram's merge heights), or given (the planted 4); the switch after a third
    of the epochs (the preset) or at epoch 15.
    """
    nest = {"hierarchy": str(NESTED.relative_to(ROOT)), "clusters": 10, "depth": 2, "nodes": 160}
    cc = {"method": "hard-cocluster", "cocluster_source": "weights"}  # the preset's nested now uses the confusion
    return [
        ("r5 nested: fc", {**nest, "method": "fc"}),
        ("r5 nested: hard-cocluster (signed, shipped)", {**nest, **cc}),
        ("r5 nested: hard-cocluster --cocluster-method nested", {**nest, **cc, "cocluster_method": "nested"}),
        # the planted number of coarse groups given instead of chosen; and a later switch (better warm-up weights)
        ("r5 nested: hard-cocluster --cocluster-method nested --cocluster-coarse 4",
         {**nest, **cc, "cocluster_method": "nested", "cocluster_coarse": 4}),
        ("r5 nested: hard-cocluster --cocluster-method nested --cocluster-at 15",
         {**nest, **cc, "cocluster_method": "nested", "cocluster_at": 15}),
    ]


def planted_levels(run) -> dict[str, np.ndarray]:
    """``{"coarse": labels, "fine": labels}`` of the run's classes in the nested planted file."""
    from analysis.reference import load_hierarchy

    h = load_hierarchy(NESTED)
    path = dict(zip(h.class_names, h.paths))
    out = {}
    for name, depth in (("coarse", 1), ("fine", 2)):
        keys = [path[c][:depth] for c in run.class_names]
        ids: dict = {}
        out[name] = np.array([ids.setdefault(k, len(ids)) for k in keys])
    return out


def analyse_nested(run_dir: Path, permutations: int = 199, seed: int = 0) -> dict:
    """Per planted level: ARI (and permutation z) of the branch tree's groups at that depth
    (memberships at tau 0.5), of the class P rows cut into as many groups, and of the weight-induced
    hierarchy; the branch tree's depth, the clusters the classes use, the coarse branches."""
    from analysis.graphs import branch_tree, tree_class_groups
    from analysis.verdict import branch_depth, clusters_used

    run = load_run(run_dir)
    levels = planted_levels(run)
    perms = random_permutations(len(run.class_names), permutations, seed)
    out: dict = {}

    def score(truth, groups):
        stats = compare_partition(truth, groups, perms)["ari"]
        return _json_num(stats.observed), _json_num(stats.z), _json_num(stats.p)

    hw = class_hierarchy(run, "weights")
    hp = class_hierarchy(run, "probability") if run.class_set is not None else None
    G = branch_tree(run, 0.5) if run.class_set is not None else None
    for d, (name, truth) in enumerate(levels.items(), start=1):
        n = int(np.unique(truth).size)
        out[f"w_{name}"], out[f"zw_{name}"], out[f"pw_{name}"] = score(truth, hw.groups(n_groups=n))
        if G is not None:
            out[f"m_{name}"], out[f"zm_{name}"], out[f"pm_{name}"] = score(truth, tree_class_groups(G, depth=d))
            out[f"p_{name}"], out[f"zp_{name}"], _ = score(truth, hp.groups(n_groups=n))
    if G is not None:
        out["tree_depth"] = branch_depth(G)
        out["k_used"] = clusters_used(run.probs()[run.class_set.name], 0.5)
        out["coarse_branches"] = sum(1 for v in G.successors(G.graph["root"])
                                     if G.nodes[v]["kind"] == "block" and not G.nodes[v]["dead"])
    return out


NESTED_KEYS = ("acc", "m_coarse", "zm_coarse", "pm_coarse", "m_fine", "zm_fine", "pm_fine", "p_coarse", "p_fine",
               "w_coarse", "zw_coarse", "pw_coarse", "w_fine", "zw_fine", "pw_fine", "tree_depth", "k_used",
               "k_chosen", "coarse_branches")


def nested_markdown(rows: list[dict]) -> str:
    """The ``r5 nested`` table (mean ± sd over seeds, then per seed); empty without such rows."""
    rows = [r for r in rows if r["label"].startswith("r5 nested")]
    if not rows:
        return ""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)

    def f(rs, key, digits=2):
        vals = [r["stats"].get(key) for r in rs]
        vals = [v for v in vals if v is not None]
        if not vals:
            return "–"
        sd = f" ± {np.std(vals):.{digits}f}" if len(vals) > 1 else ""
        return f"{np.mean(vals):.{digits}f}{sd}"

    def fz(rs, key, zkey):
        z = f(rs, zkey, 0).split(" ")[0]
        return f(rs, key) + ("" if z == "–" else f" ({z})")

    head = ("\n### r5 nested: two-level planted hierarchy\n\n"
            "| configuration | seeds | test acc | membership ARI coarse (z) | membership ARI fine (z) | "
            "P rows coarse / fine | weights ARI coarse (z) | weights ARI fine (z) | tree depth | k used | "
            "coarse branches |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines, per_seed = [], []
    for label, rs in by.items():
        lines.append(f"| {label} | {len(rs)} | {f(rs, 'acc', 3)} | {fz(rs, 'm_coarse', 'zm_coarse')} | "
                     f"{fz(rs, 'm_fine', 'zm_fine')} | {f(rs, 'p_coarse')} / {f(rs, 'p_fine')} | "
                     f"{fz(rs, 'w_coarse', 'zw_coarse')} | {fz(rs, 'w_fine', 'zw_fine')} | "
                     f"{f(rs, 'tree_depth', 1)} | {f(rs, 'k_used', 1)} | {f(rs, 'coarse_branches', 1)} |")
        for r in rs:
            st = r["stats"]
            per_seed.append(f"{label}, seed {r['seed']}: " + ", ".join(
                f"{k} {st[k]}" for k in NESTED_KEYS if st.get(k) is not None))
    note = (f"\nPlanted hierarchy {NESTED.relative_to(ROOT)} (4 coarse groups of 2-3 fine groups, 10 fine groups "
            "of 2-5 classes, 30 classes); k = 10, depth 2, 160 nodes. Membership ARI = the branch tree's class "
            "groups (tau 0.5) at depth 1 (coarse) and depth 2 (fine); P rows = the class P rows' average-linkage "
            "hierarchy cut into 4 / 10 groups; weights = the weight-induced hierarchy cut into 4 / 10 groups; "
            "z over the permutation null.\n\n" + "\n".join(f"- {p}" for p in per_seed) + "\n")
    return head + "\n".join(lines) + "\n" + note


def r5_markdown(table: list[dict]) -> str:
    """Round-5 table: membership and weight ARI with permutation p, accuracy against the fc row of the same
    family (``r5 unbalanced`` / ``r5 fashion``), chosen k, classes moved by theta."""
    def pm(v, sd, d=2):
        return "–" if v is None else f"{v:.{d}f}" + (f" ± {sd:.{d}f}" if sd else "")

    def ps(vals):
        return "–" if not vals else "/".join(f"{v:.3f}" for v in vals)

    fc = {it["label"].split(":")[0]: it["acc"] for it in table if it["label"].endswith(": fc")}
    out = ["", "Round 5 (reference: planted groups, or for Fashion-MNIST each WordNet depth): membership = the classes' "
           "clusters at the switch (cc, at the chosen k) and the class P rows' dendrogram cut at the reference's number "
           "of groups (P); weights = the final classifier rows' dendrogram cut the same way; p = permutation p of each "
           "seed; acc − fc = against the fc row of the same family.", "",
           "| configuration | reference | test acc (− fc) | membership ARI cc (p) | membership ARI P (p) | "
           "weights ARI (p) | chosen k | classes moved by θ | switch vs final weights | tree depth |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for it in table:
        if not it["label"].startswith("r5 "):
            continue
        fam = it["label"].split(":")[0]
        acc = pm(it.get("acc"), it.get("acc_sd"), 3)
        if it.get("acc") is not None and fc.get(fam) is not None and not it["label"].endswith(": fc"):
            acc += f" ({it['acc'] - fc[fam]:+.3f})"
        k = "–" if not it.get("k_chosen_each") else "/".join(str(int(v)) for v in it["k_chosen_each"])
        moved = pm(it.get("classes_moved"), it.get("classes_moved_sd"), 1)
        sw = pm(it.get("ari_cc_vs_final_w"), it.get("ari_cc_vs_final_w_sd"))
        rows = [("planted", {"ari_cc": it.get("ari_cc"), "ari_cc_sd": it.get("ari_cc_sd"),
                             "p_cc_each": it.get("p_cc_each"), "ari_p": it.get("ari_p"), "ari_p_sd": it.get("ari_p_sd"),
                             "ari_w": it.get("ari_w"), "ari_w_sd": it.get("ari_w_sd"),
                             "p_w_each": it.get("p_w_each")})]
        if it.get("refs"):
            rows = [(n, d) for n, d in it["refs"].items() if n != "coarse"]
        for ref, d in rows:
            out.append(f"| {it['label']} | {ref} | {acc} | {pm(d.get('ari_cc'), d.get('ari_cc_sd'))} "
                       f"({ps(d.get('p_cc_each'))}) | {pm(d.get('ari_p'), d.get('ari_p_sd'))}"
                       f"{'' if not d.get('p_p_each') else ' (' + ps(d.get('p_p_each')) + ')'} | "
                       f"{pm(d.get('ari_w'), d.get('ari_w_sd'))} ({ps(d.get('p_w_each'))}) | {k} | {moved} | {sw} | "
                       f"{pm(it.get('tree_depth'), it.get('tree_depth_sd'), 1)} |")
    return "\n".join(out) + "\n"


def _finished(run_dir: Path, epochs: int) -> bool:
    """Whether ``run_dir`` holds a run whose metrics reached ``epochs`` (for ``--reuse``)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return False
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    return bool(lines) and json.loads(lines[-1]).get("epoch") == epochs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 configurations, 1 seed, few epochs, 16 px images")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per configuration (full: 3, quick: 1)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epochs of every configuration")
    ap.add_argument("--image-size", type=int, default=None, help="override the image size (full: 32, quick: 16)")
    ap.add_argument("--samples-per-class", type=int, default=None, help="override the training images per class")
    ap.add_argument("--only", default=None, help="comma list of substrings: run only matching labels")
    ap.add_argument("--permutations", type=int, default=199)
    ap.add_argument("--keep", action="store_true", help="keep the run folders under .bench/emergence")
    ap.add_argument("--name", default=None, help="result file stem (default: emergence or emergence_quick)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per training run (default: 2)")
    ap.add_argument("--first-seed", type=int, default=0, help="first seed (seeds run in parallel processes)")
    ap.add_argument("--reuse", action="store_true", help="with --keep: analyse a kept run folder that finished "
                    "all its epochs instead of training it again (e.g. after an interrupted sweep)")
    ap.add_argument("--merge", default=None, help="comma list of result stems: pool their runs into --name "
                    "(no training; e.g. one process per seed)")
    args = ap.parse_args(argv)
    if args.merge:
        if not args.name:
            raise SystemExit("--merge needs --name (the pooled result file stem)")
        parts = [json.loads((RESULTS / f"{stem.strip()}.json").read_text()) for stem in args.merge.split(",")]
        rows = [r for p in parts for r in p["runs"]]
        meta = {**parts[0]["meta"], "seeds": len({r["seed"] for r in rows}), "merged_from": args.merge}
        table = summarise(rows)
        atomic_write_json(RESULTS / f"{args.name}.json", {"meta": meta, "table": table, "runs": rows})
        atomic_write_text(RESULTS / f"{args.name}.md", markdown(table, meta) + nested_markdown(rows))
        print(markdown(table, meta) + nested_markdown(rows))
        return 0

    full = not args.quick
    seeds = args.seeds or (3 if full else 1)
    epochs = args.epochs or (30 if full else 10)
    image_size = args.image_size or (32 if full else 16)
    configs = sweep(full)
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",") if k.strip()]
        configs = [(lab, c) for lab, c in configs if any(k in lab.lower() for k in keys)]
    name = args.name or ("emergence" if full else "emergence_quick")
    global THREADS
    THREADS = args.threads
    rows = []
    for label, over in configs:
        for seed in range(args.first_seed, args.first_seed + seeds):
            cfg = {**BASE, "epochs": epochs, "image_size": image_size, "seed": seed, **over}
            if args.samples_per_class:
                cfg["samples_per_class"] = args.samples_per_class
            slug = "".join(ch if ch.isalnum() else "_" for ch in label)
            run_dir = WORK / f"{name}-{slug}-s{seed}"
            seconds = None if args.reuse and _finished(run_dir, epochs) else train_one(cfg, run_dir)
            stats = analyse(run_dir, args.permutations, seed)
            if label.startswith("r5 nested"):
                stats.update(analyse_nested(run_dir, args.permutations, seed))
            elif label.startswith("r5 "):
                stats.update(tree_stats(run_dir))
            rows.append({"label": label, "seed": seed, "config": cfg,
                         "seconds": None if seconds is None else round(seconds, 1), "stats": stats})
            print(json.dumps({"label": label, "seed": seed, **{k: v for k, v in stats.items() if k != "node_sets"}}),
                  flush=True)
            if not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
    meta = {"mode": "full" if full else "quick", "seeds": seeds, "epochs": epochs, "image_size": image_size,
            "permutations": args.permutations, "samples_per_class": args.samples_per_class}
    table = summarise(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / f"{name}.json", {"meta": meta, "table": table, "runs": rows})
    atomic_write_text(RESULTS / f"{name}.md", markdown(table, meta) + nested_markdown(rows))
    print(markdown(table, meta) + nested_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
