"""Statistical comparison of a network's class hierarchy with reference hierarchies.

For each reference grouping (WordNet hypernyms at each depth, the dataset's coarse classes, the
levels of a user's hierarchy file) the network's dendrogram is cut into as many groups as the
reference has, and the agreement is scored with scikit-learn's adjusted Rand index, NMI
(arithmetic normalisation) and Fowlkes-Mallows index. The network's class distances are compared
with reference distances (WordNet ``1 - Wu-Palmer``; for coarse classes, 0 within and 1 across
groups) by Spearman rank correlation. Every statistic gets a null from the same dendrogram with
permuted class labels.

This module is the orchestration: which references a run gets (:func:`reference_set`), cutting
the dendrogram and running every statistic on one permutation set (:func:`compare_hierarchy`,
:func:`compare_run`). The statistics and the null model are in :mod:`analysis.stats`, the
records (``--json``) in :mod:`analysis.compare_records`, the text table in
:mod:`analysis.compare_report`; their names are re-exported here, so
``from analysis.compare import X`` keeps working for all of them.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from analysis.compare_records import (ComparisonReport, DistanceComparison, HierarchyComparison,
                                      PartitionComparison, best_partition)
from analysis.compare_report import degenerate_note, format_report
from analysis.errors import UserError
from analysis.stats import (CONSTANT_RTOL, PARTITION_METRICS, Statistic, coarse_distances, compare_partition,
                            degenerate_partition, holm, mantel_test, null_is_constant, null_statistic,
                            partition_scores, permuted_partition_scores, random_permutations, square_distances)

__all__ = [
    # orchestration (this module)
    "REFERENCES", "SOURCES", "compare_hierarchy", "compare_run", "reference_set",
    # records (analysis.compare_records)
    "ComparisonReport", "DistanceComparison", "HierarchyComparison", "PartitionComparison", "best_partition",
    # text (analysis.compare_report)
    "degenerate_note", "format_report",
    # statistics (analysis.stats)
    "CONSTANT_RTOL", "PARTITION_METRICS", "Statistic", "coarse_distances", "compare_partition",
    "degenerate_partition", "holm", "mantel_test", "null_is_constant", "null_statistic", "partition_scores",
    "permuted_partition_scores", "random_permutations", "square_distances",
]

REFERENCES = ("wordnet", "coarse", "all")
SOURCES = ("memberships", "weights", "both")


def _cut(linkage: np.ndarray, n_groups: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    n = linkage.shape[0] + 1
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    return fcluster(linkage, min(max(int(n_groups), 1), n), criterion="maxclust").astype(np.int64)


def compare_hierarchy(
    distances,
    linkage: np.ndarray,
    groupings: Sequence,
    reference_distances: Mapping[str, np.ndarray] | None = None,
    perms: np.ndarray | None = None,
    permutations: int = 999,
    seed: int = 0,
    source: str = "network",
    method: str = "custom",
) -> HierarchyComparison:
    """Compare one network hierarchy (class ``distances`` and its scipy ``linkage``) with references.

    ``groupings`` are :class:`analysis.wordnet.references.ReferenceGrouping` (or anything with
    ``name``, ``kind``, ``depth``, ``labels``, ``n_groups``); ``reference_distances`` maps a
    reference name to a square distance matrix. The same permutations (``perms``, or
    ``permutations`` seeded draws) give the null of every statistic.
    """
    D = square_distances(distances, "network distances")
    n = D.shape[0]
    if perms is None:
        perms = random_permutations(n, permutations, seed)
    parts = []
    for g in groupings:
        labels = np.asarray(g.labels)
        if labels.shape != (n,):
            raise UserError(f"reference {g.name!r} labels {labels.shape} classes, the network has {n}")
        net = _cut(np.asarray(linkage), g.n_groups)
        parts.append(PartitionComparison(g.name, g.kind, g.depth, int(g.n_groups), int(np.unique(net).size),
                                         compare_partition(labels, net, perms), degenerate_partition(labels)))
    for metric in PARTITION_METRICS:
        stats = [part.scores[metric] for part in parts]
        for stat, adjusted in zip(stats, holm([st.p for st in stats])):
            stat.p_holm = adjusted
    dists = [DistanceComparison(name, mantel_test(D, ref, perms=perms))
             for name, ref in (reference_distances or {}).items()]
    return HierarchyComparison(source, method, parts, dists)


def reference_set(class_names: Sequence[str], wnids=None, coarse_labels=None, coarse_names=None,
                  reference="all", snapshot=None, synsets=None) -> tuple[list, dict[str, np.ndarray], list[str]]:
    """Reference groupings and distances for a run's classes: ``(groupings, distances, notes)``.

    ``reference`` is ``wordnet``, ``coarse``, ``all`` (each that is available; one asked for
    explicitly and unavailable is a UserError), the path of a JSON hierarchy file (your own
    reference, :mod:`analysis.reference`), or a list of these. ``synsets`` overrides the WordNet
    synset of some classes: a ``{class name: synset name or wnid}`` mapping or the path of such
    a JSON file (:mod:`analysis.wordnet.resolve`). Synsets guessed from class names (most
    frequent sense) are listed in the notes.
    """
    from analysis.reference import file_reference
    from analysis.wordnet.nouns import load_wordnet
    from analysis.wordnet.references import (coarse_grouping, require_synsets, wordnet_depth_groupings,
                                             wordnet_distances)
    from analysis.wordnet.resolve import check_synset_map, guess_note, load_synset_map, resolve_class_synsets

    refs = [reference] if isinstance(reference, (str, os.PathLike)) else list(reference)
    if not refs:
        raise UserError(f"no reference given: use {', '.join(REFERENCES)} or a JSON hierarchy file")
    keys = {r for r in refs if isinstance(r, str) and r in REFERENCES}
    files = [r for r in refs if not (isinstance(r, str) and r in REFERENCES)]
    explicit = "all" not in keys
    groupings, distances, notes = [], {}, []
    if keys & {"wordnet", "all"}:
        snap = snapshot if snapshot is not None else load_wordnet()
        overrides = None
        if synsets is not None:
            overrides = (check_synset_map(synsets, class_names, snap) if isinstance(synsets, Mapping)
                         else load_synset_map(synsets, class_names, snap))
        resolved = resolve_class_synsets(class_names, wnids, overrides, snap)
        found = [r.synset for r in resolved]
        if None in found and not ("wordnet" in keys and explicit):
            missing = [r.class_name for r in resolved if r.synset is None]
            notes.append(f"WordNet reference skipped: {len(missing)} of {len(found)} classes have no synset "
                         f"(e.g. {', '.join(map(repr, missing[:3]))}; map them with --synsets FILE)")
        else:
            found = require_synsets(class_names, found)
            groupings += wordnet_depth_groupings(snap, found)
            distances["wordnet"] = wordnet_distances(snap, found)
            note = guess_note(resolved, snap)
            if note:
                notes.append(note)
    if keys & {"coarse", "all"}:
        if coarse_labels is None:
            if "coarse" in keys and explicit:
                raise UserError("the run's dataset has no coarse labels (reference 'coarse')")
            notes.append("coarse reference skipped: the run's dataset has no coarse labels")
        else:
            g = coarse_grouping(coarse_labels, coarse_names)
            groupings.append(g)
            distances["coarse"] = coarse_distances(g.labels)
    for f in files:
        if isinstance(f, (str, os.PathLike)) and not os.path.exists(f) and not str(f).lower().endswith(".json"):
            raise UserError(f"reference must be one of {', '.join(REFERENCES)} or a JSON hierarchy file; "
                            f"{str(f)!r} is neither")
        file_groups, name, tree = file_reference(f, class_names)
        if name in distances or name in REFERENCES:
            name = f"{name}_file"
            file_groups, name, tree = file_reference(f, class_names, name=name)
        if not file_groups:
            notes.append(f"{f}: every level of the file puts all classes in one group or each class alone; "
                         "only its tree distances are compared")
        groupings += file_groups
        distances[name] = tree
    if not groupings and not distances:
        raise UserError("no reference available: " + "; ".join(notes))
    return groupings, distances, notes


def compare_run(run, reference="all", threshold: float = 0.5, step: int | None = None,
                source: str = "both", method: str = "probability", permutations: int = 999,
                seed: int = 0, snapshot=None, synsets=None) -> ComparisonReport:
    """Compare a loaded run's class hierarchies (memberships and/or weights) with references.

    ``reference`` and ``synsets`` as for :func:`reference_set` (a keyword, a hierarchy file, or
    a list of these; WordNet synset overrides).

    ``method`` is the membership-based distance (``probability`` or ``connectivity``, see
    :mod:`analysis.hierarchy`); ``source`` picks the membership hierarchy, the one induced from
    the classifier weights, or both (weights only when the run saved weights).
    """
    from analysis.hierarchy import class_hierarchy

    if source not in SOURCES:
        raise UserError(f"source must be one of {SOURCES}, got {source!r}")
    if method not in ("probability", "connectivity"):
        raise UserError(f"method must be 'probability' or 'connectivity', got {method!r}")
    if permutations < 0:
        raise UserError(f"--permutations must be >= 0, got {permutations}")
    groupings, ref_d, notes = reference_set(run.class_names, run.wnids, run.coarse_labels,
                                            run.coarse_names, reference, snapshot, synsets)
    hierarchies = []
    if source in ("memberships", "both"):
        if run.class_set is None:
            if source == "memberships":
                raise UserError(f"{run.path}: the run has no class node set (no memberships); use --source weights")
            notes.append("membership hierarchy skipped: the run has no class node set")
        else:
            hierarchies.append(("memberships", class_hierarchy(run, method, threshold, step)))
    if source in ("weights", "both"):
        has_w = bool(run.weight_steps()) and run.classifier is not None
        if not has_w:
            if source == "weights":
                raise UserError(f"{run.path}: the run saved no classifier weights")
            notes.append("weight-induced hierarchy skipped: the run saved no weights")
        else:
            hierarchies.append(("weights", class_hierarchy(run, "weights", threshold, step)))
    n = len(run.class_names)
    perms = random_permutations(n, permutations, seed)
    results = []
    for name, h in hierarchies:
        hc = compare_hierarchy(h.distances, h.linkage, groupings, ref_d, perms=perms, source=name, method=h.method)
        hc.info = {k: (int(v) if isinstance(v, (np.integer,)) else v) for k, v in h.info.items()}
        results.append(hc)
    refs = [{"name": g.name, "kind": g.kind, "depth": g.depth, "depths": g.meta.get("depths"),
             "n_groups": int(g.n_groups), "degenerate": degenerate_partition(g.labels)} for g in groupings]
    for g in groupings:
        if degenerate_partition(g.labels):
            notes.append(degenerate_note(g, run.class_names))
    return ComparisonReport(str(run.path), n, int(permutations), int(seed), float(threshold),
                            None if step is None else int(step), refs, results, notes)
