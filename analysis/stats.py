"""Permutation statistics for comparing class partitions and class distances (arrays in, numbers out).

Pure functions behind :mod:`analysis.compare`: partition agreement (adjusted Rand index, NMI with
arithmetic normalisation, Fowlkes-Mallows index; scikit-learn's definitions), Spearman correlation
of two distance matrices, their permutation nulls and Holm's correction.

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

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.spatial.distance import squareform
from scipy.stats import entropy, rankdata
from sklearn.metrics import adjusted_rand_score, fowlkes_mallows_score, normalized_mutual_info_score

from analysis.errors import UserError

#: The partition agreement scores, in table order.
PARTITION_METRICS = ("ari", "nmi", "fmi")


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
    """Holm's step-down adjustment of a family of p-values.

    Parameters
    ----------
    pvalues : sequence of float or None
        The family; ``None`` entries (no test) are left out of it and stay ``None``.

    Returns
    -------
    list of float or None
        Adjusted p-values in the input order, capped at 1 and rounded to 12 decimals.

    Examples
    --------
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

    Parameters
    ----------
    observed : float
        The observed value of the statistic.
    null : numpy.ndarray
        Its null draws; an empty null counts as constant.
    rtol : float
        Relative tolerance (default :data:`CONSTANT_RTOL`).

    Returns
    -------
    bool

    Examples
    --------
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

    Parameters
    ----------
    observed : float or None
        The observed value; ``None`` or not finite gives a statistic without null summary.
    null : numpy.ndarray
        The null draws (``n`` values).
    tol : float
        Null values within ``tol`` below ``observed`` count as ties (``>=``).

    Returns
    -------
    Statistic
        ``z`` is ``None`` when the null is constant up to rounding (:func:`null_is_constant`).

    Examples
    --------
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
    """Seeded random permutations of ``range(n)``.

    Parameters
    ----------
    n : int
        Number of classes.
    count : int
        Number of permutations (``>= 0``; negative is a :class:`UserError`).
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        ``(count, n)`` integer array, one permutation per row.

    Examples
    --------
    >>> random_permutations(4, 2, seed=1).shape
    (2, 4)
    >>> sorted(random_permutations(5, 1, seed=3)[0].tolist())
    [0, 1, 2, 3, 4]
    """
    if count < 0:
        raise UserError(f"number of permutations must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((count, n)), axis=1)


# ---------------------------------------------------------------------------------------------
# partition agreement


def partition_scores(reference: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """Adjusted Rand, NMI and Fowlkes-Mallows (scikit-learn) between two partitions.

    Parameters
    ----------
    reference, labels : sequence of int
        Group label of each class in the two partitions (same length).

    Returns
    -------
    dict
        ``{"ari": float, "nmi": float, "fmi": float}``.

    Examples
    --------
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

    Parameters
    ----------
    reference, labels : sequence of int
        Group label of each of the ``n`` classes.
    perms : numpy.ndarray
        ``(B, n)`` permutations of ``range(n)``.

    Returns
    -------
    dict
        ``{"ari", "nmi", "fmi"}`` each a ``(B,)`` array.

    Examples
    --------
    >>> null = permuted_partition_scores([0, 0, 1, 1], [0, 0, 1, 1], np.array([[0, 1, 2, 3], [0, 2, 1, 3]]))
    >>> null["ari"].round(3).tolist(), null["fmi"].round(3).tolist()
    ([1.0, -0.5], [1.0, 0.0])
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
    """Observed scores (scikit-learn) with their null over ``perms`` (permuted network labels).

    Parameters
    ----------
    reference, labels : sequence of int
        Group label of each class: the reference partition and the network's.
    perms : numpy.ndarray
        ``(B, n)`` permutations shared by every statistic (:func:`random_permutations`).

    Returns
    -------
    dict
        ``{"ari", "nmi", "fmi"}`` each a :class:`Statistic`.

    Examples
    --------
    >>> s = compare_partition([0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], random_permutations(6, 99, seed=0))
    >>> s["ari"].observed, s["ari"].p < 0.2
    (1.0, True)
    """
    obs = partition_scores(reference, labels)
    null = permuted_partition_scores(reference, labels, perms)
    return {m: null_statistic(obs[m], null[m], tol=1e-9) for m in PARTITION_METRICS}


def degenerate_partition(labels: Sequence[int]) -> bool:
    """True for a partition of one class against all the rest (two groups, one of them a single class).

    Any dendrogram whose top split isolates one class scores ARI 1 against such a partition when
    it happens to be that class, so it says nothing about a hierarchy; it is kept in tables but
    never chosen as the headline (:func:`analysis.compare_records.best_partition`).

    Parameters
    ----------
    labels : sequence of int
        Group label of each class.

    Returns
    -------
    bool

    Examples
    --------
    >>> degenerate_partition([0, 1, 1, 1]), degenerate_partition([0, 0, 1, 1]), degenerate_partition([0, 1, 2, 2])
    (True, False, False)
    """
    _, sizes = np.unique(np.asarray(labels), return_counts=True)
    return sizes.size == 2 and int(sizes.min()) == 1 and int(sizes.sum()) > 2


def coarse_distances(labels: Sequence[int]) -> np.ndarray:
    """Class distances of a flat partition: 0 between classes of the same group, 1 across groups.

    Parameters
    ----------
    labels : sequence of int
        Group label of each class.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float64 distance matrix.

    Examples
    --------
    >>> coarse_distances([0, 0, 1]).tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    lab = np.asarray(labels)
    return (lab[:, None] != lab[None, :]).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# distance correlation (Mantel)


def square_distances(d, what: str) -> np.ndarray:
    """A square float64 distance matrix from a square or condensed one (scipy's ``squareform``).

    Parameters
    ----------
    d : array_like
        ``(n, n)`` matrix or condensed ``(n * (n - 1) / 2,)`` vector.
    what : str
        What the matrix is, for the error message.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float64.

    Examples
    --------
    >>> square_distances([1.0, 2.0, 3.0], "d").tolist()
    [[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]
    """
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

    Parameters
    ----------
    x, y : array_like
        Square or condensed distance matrices of the same classes (network, reference).
    permutations : int
        Number of seeded permutations when ``perms`` is not given.
    seed : int
        Seed of those permutations.
    perms : numpy.ndarray, optional
        ``(B, n)`` permutations to use instead (shared with other statistics).

    Returns
    -------
    Statistic
        All ``None`` (but ``n_null``) when either matrix is constant or not finite.

    Examples
    --------
    >>> d = np.array([[0, 1, 4, 5], [1, 0, 3, 4], [4, 3, 0, 1], [5, 4, 1, 0.]])
    >>> s = mantel_test(d, d, permutations=99, seed=0)
    >>> s.observed, s.p <= 0.5
    (1.0, True)
    """
    X, Y = square_distances(x, "network distances"), square_distances(y, "reference distances")
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
