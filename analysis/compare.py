"""Statistical comparison of a network's class hierarchy with reference hierarchies.

For each reference grouping (WordNet hypernyms at each depth, the dataset's coarse classes) the
network's dendrogram is cut into as many groups as the reference has, and the agreement is
scored with scikit-learn's adjusted Rand index, NMI (arithmetic normalisation) and
Fowlkes-Mallows index. The network's class distances are compared with reference distances
(WordNet ``1 - Wu-Palmer``; for coarse classes, 0 within and 1 across groups) by Spearman rank
correlation.

**Null model.** Random hierarchies of the same shape: the class labels are permuted over the
leaves of the network's dendrogram (which keeps its shape, hence its group sizes, exactly).
For one permutation ``perm``, class ``i`` takes the place of class ``perm[i]``: its group is
``groups[perm[i]]`` and its distance to class ``j`` is ``D[perm[i], perm[j]]``. The same
permutations serve every statistic, so the Spearman null is the Mantel test (rows and columns
permuted together). Each statistic reports the observed value, the null mean and standard
deviation, ``z = (observed - mean) / std`` and ``p = (1 + #{null >= observed}) / (1 + n)``.
Everything is seeded (``numpy.random.default_rng(seed)``).

Speed: observed values come from scikit-learn/scipy; the null values are computed vectorised
from the same formulas (all three partition scores depend on the permutation only through the
contingency table; ``tests/test_compare.py`` checks them against scikit-learn), and the Mantel
null uses ranks computed once and a gather of the permuted rank matrix per permutation
(float32, with any null value within 1e-6 of the observed one recomputed in float64 so that
``>=`` is exact).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.spatial.distance import squareform
from scipy.stats import entropy, rankdata
from sklearn.metrics import adjusted_rand_score, fowlkes_mallows_score, normalized_mutual_info_score

from analysis.errors import UserError

PARTITION_METRICS = ("ari", "nmi", "fmi")
REFERENCES = ("wordnet", "coarse", "all")
SOURCES = ("memberships", "weights", "both")


# ---------------------------------------------------------------------------------------------
# statistics with their null


@dataclass
class Statistic:
    """An observed statistic with its permutation null."""

    observed: float | None
    null_mean: float | None
    null_std: float | None
    z: float | None
    p: float | None
    n_null: int
    #: ``p`` after Holm's correction over the references a hierarchy was compared with (one family
    #: per hierarchy and metric): testing ~14 WordNet depths makes a few raw p <= 0.05 likely.
    p_holm: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Statistic":
        return cls(**{k: d[k] for k in ("observed", "null_mean", "null_std", "z", "p", "n_null")},
                   p_holm=d.get("p_holm"))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (``None`` entries are left out).

    >>> holm([0.01, 0.04, None, 0.03])
    [0.03, 0.06, None, 0.06]
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(pvalues[i])))
        out[i] = round(running, 12)
    return out


def _f(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


#: A null whose standard deviation is at most this share of the values' magnitude is constant up to
#: floating-point rounding (the vectorised scores differ from scikit-learn's in the last bits).
CONSTANT_RTOL = 1e-9


def null_is_constant(observed: float, null: np.ndarray, rtol: float = CONSTANT_RTOL) -> bool:
    """True when ``null`` (and ``observed``) do not vary beyond rounding: no z can be formed.

    The tolerance is relative to the magnitude of the values, ``rtol * max(|observed|, max |null|)``:
    a constant ARI of 0 computed as ±5e-15 has a ``std`` of ~1e-30, which is noise, not spread.

    >>> null_is_constant(0.0, np.array([4.98e-15, 4.98e-15, 4.98e-15 + 8e-31]))
    True
    >>> null_is_constant(0.99, np.array([0.99, 0.99 + 1.1e-16]))
    True
    >>> null_is_constant(0.5, np.array([0.1, 0.2]))
    False
    """
    null = np.asarray(null, dtype=np.float64)
    if null.size == 0:
        return True
    std = float(null.std())
    scale = max(abs(float(observed)), float(np.max(np.abs(null))))
    return not std > rtol * scale


def null_statistic(observed: float, null: np.ndarray, tol: float = 1e-12) -> Statistic:
    """Summarise ``observed`` against ``null`` draws; ``p = (1 + #{null >= observed - tol}) / (1 + n)``.

    ``z`` is ``None`` when the null is constant up to rounding (:func:`null_is_constant`).

    >>> s = null_statistic(1.0, np.array([0.0, 0.5, 1.0]))
    >>> s.p, round(s.z, 3)
    (0.5, 1.225)
    >>> null_statistic(0.0, np.array([4.98e-15, 4.98e-15 + 8e-31])).z is None
    True
    """
    null = np.asarray(null, dtype=np.float64)
    n = int(null.size)
    if observed is None or not math.isfinite(observed) or n == 0:
        return Statistic(_f(observed), None, None, None, None, n)
    mean, std = float(null.mean()), float(null.std())
    z = None if null_is_constant(observed, null) else (observed - mean) / std
    p = (1 + int(np.count_nonzero(null >= observed - tol))) / (1 + n)
    return Statistic(float(observed), mean, std, _f(z), p, n)


def random_permutations(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``(count, n)`` random permutations of ``range(n)``, seeded.

    >>> random_permutations(4, 2, seed=1).shape
    (2, 4)
    """
    if count < 0:
        raise UserError(f"number of permutations must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((count, n)), axis=1)


# ---------------------------------------------------------------------------------------------
# partition agreement


def partition_scores(reference: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """Adjusted Rand, NMI and Fowlkes-Mallows (scikit-learn) between two partitions.

    >>> partition_scores([0, 0, 1, 1], [1, 1, 0, 0])
    {'ari': 1.0, 'nmi': 1.0, 'fmi': 1.0}
    """
    return {
        "ari": float(adjusted_rand_score(reference, labels)),
        "nmi": float(normalized_mutual_info_score(reference, labels)),
        "fmi": float(fowlkes_mallows_score(reference, labels)),
    }


def _dense(labels) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(np.asarray(labels), return_inverse=True)
    return inv.astype(np.int64), np.bincount(inv).astype(np.int64)


def permuted_partition_scores(reference: Sequence[int], labels: Sequence[int], perms: np.ndarray) -> dict[str, np.ndarray]:
    """ARI, NMI and FMI of ``labels[perm]`` against ``reference`` for every row of ``perms``.

    Vectorised over permutations: under a permutation only the contingency table changes, and
    the scores are scikit-learn's formulas of it (sum of squared cells for ARI and FMI, mutual
    information for NMI; group sizes and entropies are fixed).
    """
    ref, b = _dense(reference)
    lab, a = _dense(labels)
    perms = np.asarray(perms, dtype=np.int64)
    B, n = perms.shape[0], ref.size
    if lab.size != n or (B and perms.shape[1] != n):
        raise UserError(f"reference has {n} classes, labels {lab.size}, permutations {perms.shape}")
    Ka, Kb = a.size, b.size
    out = {m: np.empty(B) for m in PARTITION_METRICS}
    if B == 0:
        return out
    # Degenerate partitions: scikit-learn's special cases are permutation invariant.
    if (Ka == Kb == 1) or (Ka == Kb == n):
        obs = partition_scores(ref, lab)
        return {m: np.full(B, obs[m]) for m in PARTITION_METRICS}
    cells = Ka * Kb
    codes = lab[perms] * Kb + ref[None, :]  # (B, n) contingency cell of each class
    if B * cells <= 20_000_000:
        counts = np.bincount((codes + (np.arange(B) * cells)[:, None]).ravel(), minlength=B * cells)
        nz = np.flatnonzero(counts)
        cnt = counts[nz].astype(np.float64)
        row, cell = nz // cells, nz % cells
    else:  # many groups: run lengths of the sorted codes instead of a dense table
        flat = np.sort((codes + (np.arange(B) * cells)[:, None]).ravel())
        starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        cnt = np.diff(np.r_[starts, flat.size]).astype(np.float64)
        vals = flat[starts]
        row, cell = vals // cells, vals % cells
    ai, bj = a[cell // Kb].astype(np.float64), b[cell % Kb].astype(np.float64)
    N = float(n)
    sum_sq = np.bincount(row, weights=cnt * cnt, minlength=B)
    # adjusted Rand (sklearn.metrics.pair_confusion_matrix)
    sa, sb = float((a.astype(np.float64) ** 2).sum()), float((b.astype(np.float64) ** 2).sum())
    tp = sum_sq - N
    fp = sb - sum_sq
    fn = sa - sum_sq
    tn = N * N - fp - fn - sum_sq
    denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    with np.errstate(divide="ignore", invalid="ignore"):
        ari = np.where((fn == 0) & (fp == 0), 1.0, 2.0 * (tp * tn - fn * fp) / denom)
    # NMI, arithmetic mean of entropies (sklearn.metrics.mutual_info_score)
    mi_terms = (cnt / N) * (np.log(cnt) - np.log(N)) + (cnt / N) * (-np.log(ai * bj) + 2 * np.log(N))
    mi = np.clip(np.bincount(row, weights=mi_terms, minlength=B), 0.0, None)
    h = (entropy(a) + entropy(b)) / 2
    nmi = mi / max(h, np.finfo(np.float64).eps)
    # Fowlkes-Mallows
    pk, qk = sa - N, sb - N
    with np.errstate(divide="ignore", invalid="ignore"):
        fmi = np.where(tp != 0, np.sqrt(tp / pk) * np.sqrt(tp / qk), 0.0)
    out["ari"], out["nmi"], out["fmi"] = ari, nmi, fmi
    return out


def compare_partition(reference: Sequence[int], labels: Sequence[int], perms: np.ndarray) -> dict[str, Statistic]:
    """Observed scores (scikit-learn) with their null over ``perms`` (permuted network labels)."""
    obs = partition_scores(reference, labels)
    null = permuted_partition_scores(reference, labels, perms)
    return {m: null_statistic(obs[m], null[m], tol=1e-9) for m in PARTITION_METRICS}


# ---------------------------------------------------------------------------------------------
# distance correlation (Mantel)


def _square(d, what: str) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if d.ndim == 1:
        d = squareform(d, checks=False)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise UserError(f"{what} must be a square or condensed distance matrix, got shape {d.shape}")
    return d


def mantel_test(x, y, permutations: int = 999, seed: int = 0, perms: np.ndarray | None = None) -> Statistic:
    """Spearman correlation of two distance matrices with a Mantel permutation null.

    Rows and columns of ``x`` are permuted together (``perms`` rows, or ``permutations``
    seeded draws). ``p = (1 + #{null >= observed}) / (1 + n)`` (one-sided: larger = more alike).

    >>> d = np.array([[0, 1, 4, 5], [1, 0, 3, 4], [4, 3, 0, 1], [5, 4, 1, 0.]])
    >>> s = mantel_test(d, d, permutations=99, seed=0)
    >>> s.observed, s.p <= 0.5
    (1.0, True)
    """
    X, Y = _square(x, "network distances"), _square(y, "reference distances")
    n = X.shape[0]
    if Y.shape != X.shape:
        raise UserError(f"distance matrices differ in shape: {X.shape} vs {Y.shape}")
    if perms is None:
        perms = random_permutations(n, permutations, seed)
    cx, cy = squareform(X, checks=False), squareform(Y, checks=False)
    if cx.size < 2 or np.ptp(cx) == 0 or np.ptp(cy) == 0 or not (np.isfinite(cx).all() and np.isfinite(cy).all()):
        return Statistic(None, None, None, None, None, int(len(perms)))
    rx, ry = rankdata(cx), rankdata(cy)  # average ranks for ties, as scipy.stats.spearmanr
    zx, zy = rx - rx.mean(), ry - ry.mean()
    norm = float(np.sqrt((zx @ zx) * (zy @ zy)))
    # Spearman = Pearson of the ranks (scipy's definition; equal to spearmanr, see the tests)
    observed = float(zx @ zy) / norm
    ZX = squareform(zx, checks=False).astype(np.float32)  # (n, n) centred ranks, zero diagonal
    ZY = squareform(zy, checks=False).astype(np.float32)
    null = np.empty(len(perms))
    for b, p in enumerate(perms):
        # sum over i < j of ZX[p_i, p_j] ZY[i, j] = half the full-matrix sum (zero diagonals)
        null[b] = float(np.vdot(np.take(ZX[p], p, axis=1), ZY)) / (2.0 * norm)
    # float32 error of r measured below 1e-8 at 1000 classes; recheck anything within 1e-6
    close = np.flatnonzero(np.abs(null - observed) < 1e-6)
    if close.size:  # settle near-ties exactly in float64
        ZX64, ZY64 = squareform(zx, checks=False), squareform(zy, checks=False)
        for b in close:
            p = perms[b]
            null[b] = float(np.vdot(ZX64[np.ix_(p, p)], ZY64)) / (2.0 * norm)
    return null_statistic(observed, null, tol=1e-9)


# ---------------------------------------------------------------------------------------------
# hierarchies against references


def degenerate_partition(labels: Sequence[int]) -> bool:
    """True for a reference of one class against all the rest (two groups, one of them a single class).

    Any dendrogram whose top split isolates one class scores ARI 1 against such a partition when
    it happens to be that class, so it says nothing about a hierarchy; it is kept in tables but
    never chosen as the headline (:func:`best_partition`).

    >>> degenerate_partition([0, 1, 1, 1]), degenerate_partition([0, 0, 1, 1]), degenerate_partition([0, 1, 2, 2])
    (True, False, False)
    """
    _, sizes = np.unique(np.asarray(labels), return_counts=True)
    return sizes.size == 2 and int(sizes.min()) == 1 and int(sizes.sum()) > 2


@dataclass
class PartitionComparison:
    reference: str
    kind: str
    depth: int | None
    n_groups: int
    n_groups_network: int
    scores: dict[str, Statistic]
    #: one class against all the rest (:func:`degenerate_partition`): shown, never the best row
    degenerate: bool = False

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("reference", "kind", "depth", "n_groups", "n_groups_network",
                                           "degenerate")}
        d.update({m: s.to_dict() for m, s in self.scores.items()})
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "PartitionComparison":
        return cls(d["reference"], d["kind"], d["depth"], d["n_groups"], d["n_groups_network"],
                   {m: Statistic.from_dict(d[m]) for m in PARTITION_METRICS}, bool(d.get("degenerate", False)))


@dataclass
class DistanceComparison:
    reference: str
    spearman: Statistic

    def to_dict(self) -> dict:
        return {"reference": self.reference, "spearman": self.spearman.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "DistanceComparison":
        return cls(d["reference"], Statistic.from_dict(d["spearman"]))


@dataclass
class HierarchyComparison:
    """One network hierarchy (memberships or weights) against every reference."""

    source: str
    method: str
    partitions: list[PartitionComparison]
    distances: list[DistanceComparison]
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.source, "method": self.method, "info": self.info,
                "partitions": [p.to_dict() for p in self.partitions],
                "distances": [d.to_dict() for d in self.distances]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "HierarchyComparison":
        return cls(d["source"], d["method"], [PartitionComparison.from_dict(p) for p in d["partitions"]],
                   [DistanceComparison.from_dict(x) for x in d["distances"]], dict(d.get("info", {})))


@dataclass
class ComparisonReport:
    """Everything ``blockout compare`` prints; ``to_dict`` is its ``--json`` object."""

    run: str | None
    n_classes: int
    permutations: int
    seed: int
    threshold: float | None
    step: int | None
    references: list[dict]
    hierarchies: list[HierarchyComparison]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"run": self.run, "n_classes": self.n_classes, "permutations": self.permutations,
                "seed": self.seed, "threshold": self.threshold, "step": self.step,
                "references": self.references, "hierarchies": [h.to_dict() for h in self.hierarchies],
                "notes": self.notes}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> "ComparisonReport":
        return cls(d["run"], d["n_classes"], d["permutations"], d["seed"], d["threshold"], d["step"],
                   list(d["references"]), [HierarchyComparison.from_dict(h) for h in d["hierarchies"]],
                   list(d.get("notes", [])))


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
    D = _square(distances, "network distances")
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


def best_partition(hierarchy: HierarchyComparison, metric: str = "ari") -> PartitionComparison | None:
    """The best-supported reference of one hierarchy: the headline row of a table.

    Among the non-degenerate references (:func:`degenerate_partition`) with an observed value,
    the one with the smallest Holm-adjusted p of ``metric`` (raw ``p`` when no Holm value),
    ties broken by the larger observed value, then by table order. ``None`` when no row qualifies.
    """
    if metric not in PARTITION_METRICS:
        raise UserError(f"metric must be one of {PARTITION_METRICS}, got {metric!r}")
    rows = [p for p in hierarchy.partitions if not p.degenerate and p.scores[metric].observed is not None]
    if not rows:
        return None

    def key(item):
        i, p = item
        s = p.scores[metric]
        pv = s.p_holm if s.p_holm is not None else s.p
        return (math.inf if pv is None else pv, -s.observed, i)

    return min(enumerate(rows), key=key)[1]


def coarse_distances(labels: Sequence[int]) -> np.ndarray:
    """0 between classes of the same group, 1 across groups.

    >>> coarse_distances([0, 0, 1]).tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    lab = np.asarray(labels)
    return (lab[:, None] != lab[None, :]).astype(np.float64)


def reference_set(class_names: Sequence[str], wnids=None, coarse_labels=None, coarse_names=None,
                  reference: str = "all", snapshot=None) -> tuple[list, dict[str, np.ndarray], list[str]]:
    """Reference groupings and distances for a run's classes: ``(groupings, distances, notes)``.

    ``reference`` is ``wordnet``, ``coarse`` or ``all`` (each that is available; one asked for
    explicitly and unavailable is a UserError).
    """
    from analysis.wordnet.references import (class_synsets, coarse_grouping, require_synsets,
                                             wordnet_depth_groupings, wordnet_distances)
    from analysis.wordnet.snapshot import bundled_snapshot

    if reference not in REFERENCES:
        raise UserError(f"reference must be one of {REFERENCES}, got {reference!r}")
    groupings, distances, notes = [], {}, []
    if reference in ("wordnet", "all"):
        snap = snapshot if snapshot is not None else bundled_snapshot()
        synsets = class_synsets(class_names, wnids, snap)
        if None in synsets and reference == "all":
            missing = sum(s is None for s in synsets)
            notes.append(f"WordNet reference skipped: {missing} of {len(synsets)} classes have no synset")
        else:
            synsets = require_synsets(class_names, synsets)
            groupings += wordnet_depth_groupings(snap, synsets)
            distances["wordnet"] = wordnet_distances(snap, synsets)
    if reference in ("coarse", "all"):
        if coarse_labels is None:
            if reference == "coarse":
                raise UserError("the run's dataset has no coarse labels (reference 'coarse')")
            notes.append("coarse reference skipped: the run's dataset has no coarse labels")
        else:
            g = coarse_grouping(coarse_labels, coarse_names)
            groupings.append(g)
            distances["coarse"] = coarse_distances(g.labels)
    if not groupings and not distances:
        raise UserError("no reference available: " + "; ".join(notes))
    return groupings, distances, notes


def degenerate_note(grouping, class_names: Sequence[str]) -> str:
    """The ``notes`` line saying why a one-against-the-rest reference is never the headline."""
    labels = np.asarray(grouping.labels)
    uniq, sizes = np.unique(labels, return_counts=True)
    alone = int(np.flatnonzero(labels == uniq[int(np.argmin(sizes))])[0])
    name = class_names[alone] if alone < len(class_names) else f"class {alone}"
    return (f"{grouping.name} is one class ({name}) against the other {labels.size - 1}: kept in the table "
            f"(marked 1-vs-rest) but never chosen as the best row, since any dendrogram whose top split "
            f"isolates that one class scores ARI 1 there")


def compare_run(run, reference: str = "all", threshold: float = 0.5, step: int | None = None,
                source: str = "both", method: str = "probability", permutations: int = 999,
                seed: int = 0, snapshot=None) -> ComparisonReport:
    """Compare a loaded run's class hierarchies (memberships and/or weights) with references.

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
                                            run.coarse_names, reference, snapshot)
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


def format_report(report: ComparisonReport) -> str:
    """A readable table: one line per (hierarchy, reference) with observed value, z and p."""

    def cell(s: Statistic) -> str:
        if s.observed is None:
            return f"{'n/a':>23}"
        z = f"{s.z:+6.1f}" if s.z is not None else "   n/a"
        p = f"{s.p:.3f}" if s.p is not None else "  n/a"
        star = "*" if s.p_holm is not None and s.p_holm <= 0.05 else " "
        return f"{s.observed:7.3f} z{z} p{p}{star}"

    lines = [f"run {report.run}: {report.n_classes} classes, {report.permutations} permutations "
             f"(labels permuted over the dendrogram's leaves), seed {report.seed}"]
    for h in report.hierarchies:
        extra = ", ".join(f"{k} {v}" for k, v in h.info.items())
        lines.append("")
        lines.append(f"{h.source} hierarchy ({h.method}{', ' + extra if extra else ''})")
        if h.partitions:
            lines.append(f"  {'reference':<14}{'groups':>7}  {'ARI':^23}  {'NMI':^23}  {'FMI':^23}")
            best = best_partition(h)
            for p in h.partitions:
                mark = "  1-vs-rest" if p.degenerate else ("  <- best-supported" if p is best else "")
                lines.append(f"  {p.reference:<14}{p.n_groups:>7}  {cell(p.scores['ari'])}  "
                             f"{cell(p.scores['nmi'])}  {cell(p.scores['fmi'])}{mark}")
        for d in h.distances:
            lines.append(f"  Spearman vs {d.reference + ' distances':<22} {cell(d.spearman)}  (Mantel)")
    lines.append("")
    lines.append("p: one-sided permutation p-value (smallest possible 1/(permutations+1)); "
                 "*: still <= 0.05 after Holm's correction over the references of that hierarchy. "
                 "z = (observed - null mean) / null SD (n/a: the null is constant); ARI nulls are "
                 "skewed, so read p, not z. best-supported: smallest Holm-adjusted ARI p (ties: larger ARI); "
                 "1-vs-rest: one class against all the others, never the best row.")
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
