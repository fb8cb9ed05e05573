"""Balanced spectral co-clustering of weight matrices: the co-clustered warm start (ours, issue 5).

Not the paper's. After a warm-up in which the network is a plain FC net, the memberships are set
in one step from the weights: the class layer ``|W|`` (classes, h_last) is co-clustered
(Dhillon 2001: SVD of ``D_r^-1/2 |W| D_c^-1/2``, k-means on the stacked row and column
embeddings), then each assignment is balanced (capacity per cluster, Hungarian assignment on the
distances to the k-means centres, so no cluster is left empty); every earlier hidden node set is
assigned from ``|W_j|`` against the clusters of the node set after it (balanced the same way).
The capacity-free alternative (:func:`linkage_row_clusters`, issue 12) cuts the weight-induced
dendrogram into k groups of any sizes and shares the hidden nodes in proportion to them
(:func:`proportional_counts`, :func:`capacity_assign`): real hierarchies are unbalanced.
The nested variant (:func:`nested_cocluster`, issue 12) cuts the same dendrogram twice, into k fine
and fewer coarse groups: the last hidden node set gets one fine cluster per node, every earlier
hidden node set one *coarse group* per node, i.e. membership in all the fine clusters of that group
(m > 1), so that the branch tree reads stem -> coarse branches -> fine branches (depth 2).

Why it can work where gradient flow did not (docs/emergence.md): near the uniform saddle the
memberships' gradient flow grows along the top singular directions of the class-by-hidden
benefit matrix, but slowly enough that it commits to noise first; the co-clustering jumps to
those directions directly.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["balanced_assign", "capacity_assign", "proportional_counts", "spectral_cocluster", "signed_row_clusters",
           "linkage_row_clusters", "assign_inputs", "cosine_linkage", "gap_cluster_count", "nested_row_clusters",
           "group_memberships", "nested_cocluster", "NestedClusters", "K_RULES", "K_RULE_AUTO", "cosine_row_distances",
           "gap_k", "silhouette_k", "choose_k", "soft_confusion", "confusion_distances", "distance_linkage",
           "distance_class_groups", "K_RULE_AUTO_CONFUSION"]


def balanced_assign(cost: np.ndarray, capacity: int | None = None) -> np.ndarray:
    """Assign each of ``n`` items to one of ``k`` clusters minimising total ``cost`` (n, k).

    Every cluster receives at least ``n // k`` and at most ``capacity`` items (default
    ``ceil(n / k)``), so no cluster is empty when ``n >= k``.

    Returns
    -------
    ndarray of int (n,)
        Cluster of each item.

    >>> balanced_assign(np.array([[0., 1.], [0., 2.], [0., 3.], [5., 0.]])).tolist()
    [1, 0, 0, 1]
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or not np.isfinite(cost).all():
        raise ValueError(f"cost must be a finite (n, k) matrix, got shape {cost.shape}")
    n, k = cost.shape
    cap = math.ceil(n / k) if capacity is None else int(capacity)
    if cap * k < n:
        raise ValueError(f"capacity {cap} x {k} clusters cannot hold {n} items")
    floor = n // k
    big = np.repeat(cost, cap, axis=1)  # (n, k * cap): slot s of cluster s // cap
    # the first n // k slots of each cluster are mandatory: a bonus larger than any cost spread
    bonus = 1.0 + 2.0 * (np.abs(cost).max() + 1.0) * n
    slot = np.tile(np.arange(cap), k)
    big = big - bonus * (slot < floor)[None, :]
    rows, cols = linear_sum_assignment(big)
    out = np.empty(n, dtype=np.int64)
    out[rows] = cols // cap
    return out


def capacity_assign(cost: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Assign each of ``n`` items to one of ``k`` clusters minimising total ``cost`` (n, k), cluster
    ``c`` receiving exactly ``counts[c]`` items (``counts`` sums to ``n``).

    The unequal-capacity sibling of :func:`balanced_assign` (one Hungarian assignment onto
    ``counts[c]`` slots per cluster).

    >>> capacity_assign(np.array([[0., 1.], [0., 2.], [0., 3.], [5., 0.]]), np.array([3, 1])).tolist()
    [0, 0, 0, 1]
    """
    cost = np.asarray(cost, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if cost.ndim != 2 or not np.isfinite(cost).all():
        raise ValueError(f"cost must be a finite (n, k) matrix, got shape {cost.shape}")
    n, k = cost.shape
    if counts.shape != (k,) or (counts < 0).any() or int(counts.sum()) != n:
        raise ValueError(f"counts must be {k} non-negative integers summing to {n}, got {counts.tolist()}")
    slot_cluster = np.repeat(np.arange(k), counts)  # (n,): cluster of each slot
    rows, cols = linear_sum_assignment(cost[:, slot_cluster])
    out = np.empty(n, dtype=np.int64)
    out[rows] = slot_cluster[cols]
    return out


def proportional_counts(sizes: np.ndarray, n: int, minimum: int = 1) -> np.ndarray:
    """Split ``n`` items over clusters: ``minimum`` each (less when ``n < minimum * k``), the rest in
    proportion to ``sizes`` (largest remainder). A cluster of size 0 gets nothing (not even the
    minimum): with k chosen from the data the unused clusters die.

    Used to give each class cluster a share of a hidden node set proportional to its number of
    classes, so that unequal class groups do not get equal branches.

    >>> proportional_counts(np.array([1, 2, 7]), 20).tolist()
    [3, 4, 13]
    >>> proportional_counts(np.array([1, 9]), 10, minimum=2).tolist()
    [3, 7]
    >>> proportional_counts(np.array([1, 0, 3]), 8).tolist()
    [3, 0, 5]
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    k = sizes.size
    if k < 1 or (sizes < 0).any() or sizes.sum() <= 0 or n < 0:
        raise ValueError(f"sizes must be non-negative with a positive sum, got {sizes.tolist()} for n = {n}")
    used = sizes > 0
    minimum = min(int(minimum), n // int(used.sum()))
    rest = n - minimum * int(used.sum())
    share = rest * sizes / sizes.sum()
    counts = np.floor(share).astype(np.int64)
    left = rest - int(counts.sum())
    order = np.argsort(-(share - counts), kind="stable")  # largest remainders first (never an unused cluster)
    counts[order[:left]] += 1
    return counts + minimum * used


def spectral_cocluster(A: np.ndarray, k: int, seed: int = 0, n_vectors: int | None = None,
                       row_capacity: int | None = None,
                       col_capacity: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Balanced spectral co-clustering (Dhillon 2001) of a non-negative matrix ``A`` (rows, cols).

    Parameters
    ----------
    A : ndarray (r, c)
        Affinities, e.g. ``|W|`` of a class layer (classes, hidden); absolute values are taken.
    k : int
        Number of co-clusters.
    seed : int
        k-means seed (the result is a deterministic function of ``A``, ``k`` and ``seed``).
    n_vectors : int, optional
        Singular vectors after the first (trivial) one; default ``k - 1``
        (Dhillon uses ``ceil(log2 k)``, which separates 20 groups less well).
    row_capacity, col_capacity : int, optional
        Most rows / columns per cluster (default ``ceil(n / k)``; every cluster gets at least
        ``n // k``).

    Returns
    -------
    (row_assign (r,), col_assign (c,)) : ndarrays of int in ``[0, k)``

    >>> A = np.kron(np.eye(3), np.ones((2, 4))) + 0.01
    >>> r, c = spectral_cocluster(A, 3)
    >>> len(set(r.tolist())), all(r[i] == c[2 * i] for i in range(0, 6, 2))
    (3, True)
    """
    from sklearn.cluster import KMeans

    A = np.abs(np.asarray(A, dtype=np.float64))
    if A.ndim != 2 or min(A.shape) < 1 or not np.isfinite(A).all():
        raise ValueError(f"A must be a finite 2-d matrix, got shape {A.shape}")
    r, c = A.shape
    if not 1 <= k <= min(r, c):
        raise ValueError(f"k must be in [1, min(rows, cols) = {min(r, c)}], got {k}")
    d_r = np.sqrt(np.maximum(A.sum(axis=1), 1e-12))  # (r,)
    d_c = np.sqrt(np.maximum(A.sum(axis=0), 1e-12))  # (c,)
    An = A / d_r[:, None] / d_c[None, :]
    U, _, Vt = np.linalg.svd(An, full_matrices=False)
    l = (k - 1) if n_vectors is None else int(n_vectors)
    l = max(1, min(l, U.shape[1] - 1)) if U.shape[1] > 1 else 0
    Z_r = U[:, 1:1 + l] / d_r[:, None] if l else np.zeros((r, 1))  # (r, l)
    Z_c = Vt[1:1 + l].T / d_c[:, None] if l else np.zeros((c, 1))  # (c, l)
    Z = np.vstack([Z_r, Z_c])
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(Z)
    dist = ((Z[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)  # (r + c, k)
    return balanced_assign(dist[:r], row_capacity), balanced_assign(dist[r:], col_capacity)


def signed_row_clusters(W: np.ndarray, k: int, seed: int = 0, capacity: int | None = None) -> np.ndarray:
    """Balanced k-means of the L2-normalised *signed* rows of ``W`` (rows, in); cluster per row.

    The weight-induced hierarchy compares classes by the cosine of their signed weight rows;
    ``|W|`` (what :func:`spectral_cocluster` sees) drops the signs, and with them most of the
    superclass signal (measured: ARI 0.09 vs 0.66 on the same warm-up weights,
    docs/emergence.md). k-means on the unit rows, then :func:`balanced_assign` on the squared
    distances to the centres. Deterministic given ``seed``.

    >>> W = np.array([[1., 0.1], [2., -0.1], [-1., 0.], [-3., 0.2]])
    >>> a = signed_row_clusters(W, 2)
    >>> bool(a[0] == a[1] and a[2] == a[3] and a[0] != a[2])
    True
    """
    from sklearn.cluster import KMeans

    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or not 1 <= k <= W.shape[0] or not np.isfinite(W).all():
        raise ValueError(f"W must be a finite (rows, in) matrix with at least k={k} rows, got shape {W.shape}")
    U = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)  # (rows, in), unit rows
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(U)
    dist = ((U[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)  # (rows, k)
    return balanced_assign(dist, capacity)


def cosine_linkage(W: np.ndarray) -> np.ndarray:
    """Average-linkage dendrogram of the *signed* rows of ``W`` (rows, in) by cosine distance.

    The dendrogram of the weight-induced hierarchy of the analysis package (L2-normalised rows,
    cosine distance, average linkage; a zero row is at distance 1 from every other row and at 0
    from another zero row). Returns scipy's linkage matrix ``(rows - 1, 4)``; merge heights
    (column 2) never decrease.

    >>> Z = cosine_linkage(np.array([[1., 0.], [2., 0.1], [0., 1.]]))
    >>> Z.shape, bool(Z[0, 2] < 0.01 < Z[1, 2])
    ((2, 4), True)
    """
    import scipy.cluster.hierarchy as sch
    from scipy.spatial.distance import squareform

    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] < 2 or not np.isfinite(W).all():
        raise ValueError(f"W must be a finite (rows, in) matrix with at least 2 rows, got shape {W.shape}")
    D = cosine_row_distances(W)
    return sch.linkage(squareform(D, checks=False), method="average")


def _cut(Z: np.ndarray, k: int) -> np.ndarray:
    """Exactly ``k`` groups of a dendrogram (fcluster's maxclust may give fewer), numbered by first
    appearance in row order."""
    import scipy.cluster.hierarchy as sch

    raw = sch.cut_tree(Z, n_clusters=k).ravel()
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(int(r), len(ids)) for r in raw], dtype=np.int64)


def linkage_row_clusters(W: np.ndarray, k: int) -> np.ndarray:
    """Average-linkage clusters of the *signed* rows of ``W`` (rows, in) by cosine distance, cut into
    exactly ``k`` groups of any sizes; cluster per row.

    The same dendrogram as the weight-induced hierarchy of the analysis package
    (:func:`cosine_linkage`), so the memberships start from the groups that the weights show,
    without the equal-size pull of :func:`signed_row_clusters` (capacity ⌈n/k⌉ and k-means's
    preference for equal spread). Deterministic. Cluster labels are numbered by first appearance
    in row order.

    >>> W = np.array([[1., 0.1], [2., -0.1], [3., 0.], [-1., 0.], [0.1, 1.]])
    >>> linkage_row_clusters(W, 3).tolist()
    [0, 0, 0, 1, 2]
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or not 1 <= k <= W.shape[0] or not np.isfinite(W).all():
        raise ValueError(f"W must be a finite (rows, in) matrix with at least k={k} rows, got shape {W.shape}")
    n = W.shape[0]
    if k == 1 or n == 1:
        return np.zeros(n, dtype=np.int64)
    return _cut(cosine_linkage(W), k)


def gap_cluster_count(Z: np.ndarray, k_min: int = 2, k_max: int | None = None) -> int:
    """Number of groups at the largest gap between consecutive merge heights of a dendrogram.

    Cutting between merges ``i`` and ``i + 1`` (0-based, heights ascending) of ``n`` leaves gives
    ``n - i - 1`` groups; the cut with the widest height gap whose group count lies in
    ``[k_min, k_max]`` (default ``k_max = n - 1``) wins, the fewer groups on a tie. The classic
    "cut where the tree is tallest" rule: a planted level of a hierarchy shows as a jump in the
    merge heights.

    >>> Z = np.array([[0, 1, .1, 2], [2, 3, .12, 2], [4, 5, .9, 4]])  # 4 leaves, two tight pairs
    >>> gap_cluster_count(Z)
    2
    """
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0] + 1
    k_max = n - 1 if k_max is None else int(k_max)
    if not 2 <= k_min <= k_max <= n:
        raise ValueError(f"need 2 <= k_min <= k_max <= {n} leaves, got k_min={k_min}, k_max={k_max}")
    return gap_k(Z[:, 2], k_max, k_min)


def nested_row_clusters(W: np.ndarray, k_fine: int, k_coarse: int | None = None,
                        Z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two nested cuts of the rows' cosine dendrogram (:func:`cosine_linkage`): fine and coarse groups.

    Parameters
    ----------
    W : ndarray (rows, in)
        E.g. the class layer's weights (classes, h_last).
    k_fine : int
        Fine groups (the number of clusters).
    k_coarse : int, optional
        Coarse groups, ``1 <= k_coarse <= k_fine``; default: chosen from the dendrogram
        (:func:`gap_cluster_count` between 2 and ``k_fine - 1`` groups).
    Z : ndarray (rows - 1, 4), optional
        The dendrogram to cut instead of the rows' own (e.g. :func:`distance_linkage` of
        :func:`confusion_distances`); ``W`` then only gives the number of rows.

    Returns
    -------
    fine : ndarray of int (rows,)
        Fine group of each row (numbered by first appearance).
    coarse_of_fine : ndarray of int (k_fine,)
        Coarse group of each fine group. Both cuts come from the same dendrogram, so every fine
        group lies inside one coarse group.

    >>> W = np.array([[1., .1, 0.], [1., -.1, 0.], [1., 0., .5], [1., 0., .6], [-1., 0., 0.], [-1., .2, 0.]])
    >>> fine, cof = nested_row_clusters(W, 3, 2)
    >>> fine.tolist(), cof.tolist()
    ([0, 0, 1, 1, 2, 2], [0, 0, 1])
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or not 1 <= k_fine <= W.shape[0] or not np.isfinite(W).all():
        raise ValueError(f"W must be a finite (rows, in) matrix with at least k={k_fine} rows, got shape {W.shape}")
    if W.shape[0] < 2:
        return np.zeros(W.shape[0], dtype=np.int64), np.zeros(k_fine, dtype=np.int64)
    if Z is None:
        Z = cosine_linkage(W)
    elif np.shape(Z) != (W.shape[0] - 1, 4):
        raise ValueError(f"Z must be the linkage matrix of the {W.shape[0]} rows, got shape {np.shape(Z)}")
    if k_coarse is None:
        k_coarse = gap_cluster_count(Z, 2, k_fine - 1) if k_fine > 2 else 1
    if not 1 <= k_coarse <= k_fine:
        raise ValueError(f"k_coarse must be in [1, k_fine = {k_fine}], got {k_coarse}")
    fine = _cut(Z, k_fine)
    coarse = _cut(Z, k_coarse)
    coarse_of_fine = np.zeros(k_fine, dtype=np.int64)
    coarse_of_fine[fine] = coarse  # consistent: a fine group never straddles two coarse groups
    return fine, coarse_of_fine


def group_memberships(node_group: np.ndarray, cluster_group: np.ndarray) -> np.ndarray:
    """Boolean memberships ``(n, k)``: node ``i`` is in every cluster of its group.

    ``node_group`` (n,) is each node's coarse group, ``cluster_group`` (k,) each cluster's coarse
    group. With one cluster per group this is the one-hot matrix.

    >>> group_memberships(np.array([1, 0]), np.array([0, 0, 1])).astype(int).tolist()
    [[0, 0, 1], [1, 1, 0]]
    """
    node_group = np.asarray(node_group)
    cluster_group = np.asarray(cluster_group)
    return node_group[:, None] == cluster_group[None, :]


class NestedClusters(NamedTuple):
    """Result of :func:`nested_cocluster` (node sets in network order: hidden sets, then classes).

    Attributes
    ----------
    members : list of ndarray of bool (n_j, k)
        Memberships of every node set.
    assign : list of ndarray of int (n_j,)
        Fine cluster of each class and each node of the last hidden set; coarse group of each
        node of the earlier hidden sets.
    coarse_of_fine : ndarray of int (k,)
        Coarse group of each fine cluster.
    k_coarse : int
        Number of coarse groups (given or chosen).
    """

    members: list
    assign: list
    coarse_of_fine: np.ndarray
    k_coarse: int


def nested_cocluster(weights: Sequence[np.ndarray], k: int, k_coarse: int | None = None,
                     class_linkage: np.ndarray | None = None) -> NestedClusters:
    """Nested memberships of the hidden node sets and the classes from the weights.

    Parameters
    ----------
    weights : sequence of ndarray
        The weights of the layers that *read* the hidden node sets, in network order:
        ``W(h_1 -> h_2), ..., W(h_L -> classes)`` (each ``(out, in)``), ``L >= 1``.
    k : int
        Fine clusters (the network's k).
    k_coarse : int, optional
        Coarse groups; default chosen from the class dendrogram (:func:`nested_row_clusters`).
    class_linkage : ndarray, optional
        The class dendrogram to cut (e.g. from the soft confusion matrix, :func:`distance_linkage`);
        default: the class weight rows' own (:func:`cosine_linkage`). The hidden nodes are always
        assigned from the weights.

    Returns
    -------
    NestedClusters
        The classes are cut into ``k`` fine groups (:func:`nested_row_clusters`); the last hidden
        set gives each fine cluster a share of its nodes proportional to its classes, one cluster
        per node (as the ``linkage`` method does); each earlier hidden set gives each coarse group a
        share proportional to its classes, assigned from the weights into the set after it
        (:func:`assign_inputs` against that set's coarse groups), and a node joins *every* fine
        cluster of its coarse group (:func:`group_memberships`).

    >>> rng = np.random.default_rng(0)
    >>> W1 = rng.random((4, 6)); W2 = np.kron(np.eye(2), np.ones((3, 2))) + 0.01
    >>> r = nested_cocluster([W1, W2], 2, 1)
    >>> [m.sum(axis=1).tolist() for m in r.members]
    [[2, 2, 2, 2, 2, 2], [1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    """
    if len(weights) < 1:
        raise ValueError("nested_cocluster needs the weights of at least one layer")
    W_cls = np.asarray(weights[-1], dtype=np.float64)
    fine, coarse_of_fine = nested_row_clusters(W_cls, k, k_coarse, Z=class_linkage)
    kc = int(coarse_of_fine.max()) + 1
    sizes = np.bincount(fine, minlength=k)
    coarse_sizes = np.bincount(coarse_of_fine, weights=sizes, minlength=kc)
    last = assign_inputs(W_cls, fine, k, counts=proportional_counts(sizes, W_cls.shape[1]))
    assign = [last, fine]
    members = [group_memberships(last, np.arange(k)), group_memberships(fine, np.arange(k))]
    out_coarse = coarse_of_fine[last]  # coarse group of the nodes of the set after the current one
    for W in reversed(list(weights[:-1])):
        W = np.asarray(W, dtype=np.float64)  # (out, in): in = the earlier hidden set
        a = assign_inputs(W, out_coarse, kc, counts=proportional_counts(coarse_sizes, W.shape[1]))
        assign.insert(0, a)
        members.insert(0, group_memberships(a, coarse_of_fine))
        out_coarse = a
    return NestedClusters(members, assign, coarse_of_fine, kc)


def assign_inputs(W: np.ndarray, out_assign: np.ndarray, k: int, capacity: int | None = None,
                  counts: np.ndarray | None = None) -> np.ndarray:
    """Clusters of a layer's input nodes from ``|W|`` (out, in) and the clusters of its outputs.

    Input node ``j`` prefers the cluster whose output nodes it feeds most strongly
    (mean ``|W_ij|`` over the cluster's outputs, relative to ``j``'s total); the choice is
    balanced by :func:`balanced_assign`, or with ``counts`` (k,) cluster ``c`` gets exactly
    ``counts[c]`` inputs (:func:`capacity_assign`). Clusters with no output nodes score 0.

    >>> W = np.array([[1., 1., 0., 0.], [0., 0., 1., 1.]])
    >>> assign_inputs(W, np.array([1, 0]), 2).tolist()
    [1, 1, 0, 0]
    """
    A = np.abs(np.asarray(W, dtype=np.float64))  # (out, in)
    out_assign = np.asarray(out_assign)
    if A.ndim != 2 or out_assign.shape != (A.shape[0],):
        raise ValueError(f"W (out, in) {A.shape} and out_assign {out_assign.shape} do not match")
    onehot = np.zeros((A.shape[0], k))
    onehot[np.arange(A.shape[0]), out_assign] = 1.0
    sizes = np.maximum(onehot.sum(axis=0), 1.0)  # (k,)
    score = (A.T @ onehot) / sizes[None, :]  # (in, k): mean weight into each cluster
    score = score / np.maximum(score.sum(axis=1, keepdims=True), 1e-12)
    if counts is not None:
        return capacity_assign(-score, counts)
    return balanced_assign(-score, capacity)


# --- k chosen from the data (issue 12, round 5) -----------------------------------------------------
# The number of class groups is read off the weight dendrogram instead of being given: the cut at
# the largest gap between successive merge heights (``gap``), or the cut with the best mean
# silhouette (``silhouette``). ``--clusters`` stays the capacity (the most groups); clusters left
# without classes get no hidden nodes either (they die). Measured on planted rows and on warm-up
# weights in docs/emergence.md (Round 5).

#: Rules :func:`choose_k` knows.
K_RULES = ("gap", "silhouette")
#: The rule ``--cocluster-k auto`` uses (the one that measured best, docs/emergence.md Round 5).
K_RULE_AUTO = "silhouette"


def cosine_row_distances(W: np.ndarray) -> np.ndarray:
    """``(n, n)`` cosine distances of the *signed* rows of ``W`` (rows, in), in ``[0, 2]``.

    A zero row is at distance 1 from every non-zero row and 0 from other zero rows (no direction
    to compare), so the result is always a valid symmetric distance matrix with a zero diagonal.

    >>> cosine_row_distances(np.array([[1., 0.], [2., 0.], [-1., 0.], [0., 0.]])).round(2).tolist()
    [[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 2.0, 1.0], [2.0, 2.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]
    """
    from analysis.hierarchy import cosine_distances

    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or not np.isfinite(W).all():
        raise ValueError(f"W must be a finite (rows, in) matrix, got shape {W.shape}")
    D = cosine_distances(W)  # the analysis package's weight distances, so both cut the same tree
    return (D + D.T) / 2  # exactly symmetric for scipy's squareform


def gap_k(heights: np.ndarray, k_max: int, k_min: int = 2) -> int:
    """Number of groups at the largest gap between successive merge heights of a dendrogram.

    Cutting ``n`` leaves into ``k`` groups undoes the last ``k - 1`` merges; the cut then lies
    between merge heights ``h[n - k - 1]`` and ``h[n - k]`` (ascending), and the larger that gap,
    the more clearly the tree says "k groups". ``k`` is searched in ``[k_min, min(k_max, n)]``
    (for ``k = n`` the gap is ``h[0] - 0``); ties go to the smaller ``k``.

    Parameters
    ----------
    heights : ndarray (n - 1,)
        Merge heights, e.g. ``Z[:, 2]`` of :func:`cosine_linkage` (sorted here).
    k_max, k_min : int
        Search range (``k_min >= 1``; ``k = 1`` scores the gap above the root as 0).

    >>> gap_k(np.array([0.1, 0.1, 0.2, 0.9, 1.0]), k_max=5)
    3
    >>> gap_k(np.array([0.1, 0.1, 0.2, 0.9, 1.0]), k_max=2)
    2
    """
    h = np.sort(np.asarray(heights, dtype=np.float64).ravel())
    n = h.size + 1
    k_min, k_max = max(1, int(k_min)), min(int(k_max), n)
    if k_min > k_max or not np.isfinite(h).all():
        raise ValueError(f"need finite heights and 1 <= k_min <= k_max, got k in [{k_min}, {k_max}] for {n} leaves")
    padded = np.concatenate([[0.0], h, [h[-1] if h.size else 0.0]])  # padded[i] = h[i - 1]; root gap 0
    ks = np.arange(k_min, k_max + 1)
    gaps = padded[n - ks + 1] - padded[n - ks]  # h[n - k] - h[n - k - 1]
    return int(ks[int(np.argmax(gaps))])


def silhouette_k(D: np.ndarray, Z: np.ndarray, k_max: int, k_min: int = 2) -> int:
    """Number of groups whose cut of the dendrogram ``Z`` has the best mean silhouette on distances ``D``.

    Silhouettes are measured on ``D`` (n, n) (scikit-learn, precomputed; a singleton group's
    classes score 0); ``k`` in ``[max(2, k_min), min(k_max, n - 1)]``, ties to the smaller ``k``.

    >>> W = np.array([[1., 0.], [1., .1], [-1., 0.], [-1., .1], [0., 1.]])
    >>> silhouette_k(cosine_row_distances(W), cosine_linkage(W), k_max=4)
    3
    """
    import scipy.cluster.hierarchy as sch
    from sklearn.metrics import silhouette_score

    D = np.asarray(D, dtype=np.float64)
    n = D.shape[0]
    lo, hi = max(2, int(k_min)), min(int(k_max), n - 1)
    if lo > hi:
        raise ValueError(f"silhouettes need 2 <= k <= n - 1 = {n - 1} and k_min <= k_max, got [{lo}, {hi}]")
    cuts = sch.cut_tree(Z, n_clusters=list(range(lo, hi + 1)))  # (n, hi - lo + 1)
    scores = [silhouette_score(D, cuts[:, i], metric="precomputed") for i in range(cuts.shape[1])]
    return lo + int(np.argmax(scores))


def choose_k(W: np.ndarray, k_max: int, rule: str = "gap", k_min: int = 2) -> int:
    """Number of class groups read off the signed-row dendrogram of ``W`` (rows, in): at most ``k_max``.

    ``rule`` is one of :data:`K_RULES` (:func:`gap_k` on the merge heights of :func:`cosine_linkage`,
    or :func:`silhouette_k` on :func:`cosine_row_distances`). Deterministic. ``k_max`` is capped
    at the number of rows; with fewer than 3 rows every row is its own group.

    >>> rng = np.random.default_rng(0)
    >>> centres = rng.standard_normal((4, 30))
    >>> W = np.repeat(centres, [1, 2, 5, 8], axis=0) + 0.3 * rng.standard_normal((16, 30))
    >>> choose_k(W, 10), choose_k(W, 10, "silhouette")
    (4, 4)
    """
    W = np.asarray(W, dtype=np.float64)
    if rule not in K_RULES:
        raise ValueError(f"rule must be one of {', '.join(K_RULES)}, got {rule!r}")
    if W.ndim != 2 or W.shape[0] < 1 or int(k_max) < 1:
        raise ValueError(f"W must be (rows, in) with rows >= 1 and k_max >= 1, got shape {W.shape}, k_max {k_max}")
    n = W.shape[0]
    k_max = min(int(k_max), n)
    if n < 3 or k_max <= max(1, int(k_min)):
        return max(1, min(k_max, n if n < 3 else k_max))
    Z = cosine_linkage(W)
    if rule == "gap":
        return gap_k(Z[:, 2], k_max, k_min)
    return silhouette_k(cosine_row_distances(W), Z, min(k_max, n - 1), k_min)


# --- a data-driven class affinity (issue 12, round 5) ----------------------------------------------
# Every rule above clusters the classifier's weight rows, and a cut of the weights cannot beat the
# weights: where the rows separate the groups weakly, so do the memberships. The soft confusion
# matrix of the warm-up network (HD-CNN, Yan et al. 2015, builds its coarse categories from it) asks
# the data instead: classes the network mixes up share features, whatever the rows look like.

#: The rule ``--cocluster-k auto`` uses on the confusion dendrogram (the one that measured best there,
#: docs/emergence.md Round 5; on the weight dendrogram it is :data:`K_RULE_AUTO`).
K_RULE_AUTO_CONFUSION = "gap"


def soft_confusion(prob_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Soft confusion matrix ``C[i, j]`` = mean predicted probability of class ``j`` over the samples of class ``i``.

    Parameters
    ----------
    prob_sums : ndarray (classes, classes)
        Row ``i``: the sum of the softmax outputs over the samples whose label is ``i``.
    counts : ndarray (classes,)
        Samples per label. A class with no sample gets a zero row (no evidence either way).

    >>> soft_confusion(np.array([[1.5, 0.5], [0., 0.]]), np.array([2, 0])).tolist()
    [[0.75, 0.25], [0.0, 0.0]]
    """
    S = np.asarray(prob_sums, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or n.shape != (S.shape[0],):
        raise ValueError(f"prob_sums must be (classes, classes) and counts (classes,), got {S.shape} and {n.shape}")
    return S / np.maximum(n, 1.0)[:, None]


def confusion_distances(C: np.ndarray) -> np.ndarray:
    """``(n, n)`` class distances from a soft confusion matrix: ``1 - A / max(A)``, ``A`` its symmetric
    off-diagonal part.

    ``A[i, j] = (C[i, j] + C[j, i]) / 2``: how much the two classes are mixed up, either way. The
    most confused pair is at distance 0, classes never confused at 1; the diagonal is 0. Without any
    confusion every pair is at 1 (no evidence of groups).

    >>> C = np.array([[.8, .2, 0.], [.1, .9, 0.], [0., 0., 1.]])
    >>> confusion_distances(C).round(2).tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or not np.isfinite(C).all() or (C < 0).any():
        raise ValueError(f"C must be a finite non-negative (classes, classes) matrix, got shape {C.shape}")
    A = (C + C.T) / 2
    np.fill_diagonal(A, 0.0)
    top = A.max() if A.size else 0.0
    D = np.ones_like(A) if top <= 0 else 1.0 - A / top
    np.fill_diagonal(D, 0.0)
    return D


def distance_linkage(D: np.ndarray) -> np.ndarray:
    """Average-linkage dendrogram of ``n`` items from their ``(n, n)`` distances (scipy's linkage matrix).

    >>> distance_linkage(np.array([[0., .1, 1.], [.1, 0., .9], [1., .9, 0.]]))[:, 2].round(2).tolist()
    [0.1, 0.95]
    """
    import scipy.cluster.hierarchy as sch
    from scipy.spatial.distance import squareform

    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 2 or not np.isfinite(D).all():
        raise ValueError(f"D must be a finite (n, n) distance matrix with n >= 2, got shape {D.shape}")
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    return sch.linkage(squareform(D, checks=False), method="average")


def distance_class_groups(D: np.ndarray, k_max: int, rule: str = "given", k_min: int = 2) -> np.ndarray:
    """Class groups of the average-linkage dendrogram of distances ``D`` (n, n), e.g. :func:`confusion_distances`.

    ``rule`` ``"given"`` cuts into exactly ``k_max`` groups; ``"gap"`` / ``"silhouette"`` read the
    number off the dendrogram (:func:`gap_k`, :func:`silhouette_k`; between ``k_min`` and ``k_max``),
    ``"auto"`` is :data:`K_RULE_AUTO_CONFUSION`. Groups are numbered by first appearance in row order,
    so the clusters beyond the chosen number stay empty. Deterministic.

    >>> C = np.kron(np.eye(3), np.full((2, 2), .3)) + .4 * np.eye(6)  # 3 pairs confused within
    >>> distance_class_groups(confusion_distances(C), 5, "gap").tolist()
    [0, 0, 1, 1, 2, 2]
    """
    D = np.asarray(D, dtype=np.float64)
    rule = K_RULE_AUTO_CONFUSION if rule == "auto" else rule
    if rule not in ("given",) + K_RULES:
        raise ValueError(f"rule must be given, auto or one of {', '.join(K_RULES)}, got {rule!r}")
    n = D.shape[0] if D.ndim == 2 else 0
    if n < 1 or int(k_max) < 1:
        raise ValueError(f"need at least one class and k_max >= 1, got shape {D.shape}, k_max {k_max}")
    k_max = min(int(k_max), n)
    if n < 3 or k_max == 1:
        return np.zeros(n, dtype=np.int64) if k_max == 1 else np.arange(n, dtype=np.int64)
    Z = distance_linkage(D)
    k_min = max(2, int(k_min))
    if rule == "given" or k_min >= k_max:
        k = k_max
    elif rule == "gap":
        k = gap_k(Z[:, 2], k_max, k_min)
    else:
        k = silhouette_k(D, Z, min(k_max, n - 1), k_min) if k_min <= min(k_max, n - 1) else k_max
    return _cut(Z, k)
