"""Class hierarchies: class–class distances, average-linkage dendrograms, flat groups.

Three sources of class distances, all returned as the same :class:`ClassHierarchy` so that every
statistic (agreement with references, Mantel tests, dendrogram drawing, export) treats them alike:

``probability``  (:func:`probability_distances`)
    Cosine distance between the classes' membership rows ``P_c`` (``(k,)`` each) of the class node
    set. Two all-zero rows are at distance 0, an all-zero row and a non-zero one at distance 1.
``connectivity``  (:func:`connectivity_distances`)
    At threshold ``tau`` a class *reaches* a node of the last hidden set when their signatures
    intersect (a live connection); it reaches a node of the set before that when that node's
    signature intersects the clusters of the nodes reached after it, and so on back to the first
    hidden set (paths of live connections). The distance is the Jaccard distance of the reached
    node sets, averaged over the hidden node sets (trunk excluded: it is shared by construction).
    Two classes that reach nothing are at distance 0 in that set.
``weights``  (:func:`induced_hierarchy`)
    The hierarchy induced from the classifier's weight rows (NBDT-style), for any run, Blockout or
    not: rows are L2-normalised, distances are cosine distances, and the linkage is ``average``
    (or ``ward`` on the normalised rows, where Euclidean distance is a monotone function of
    cosine distance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.cluster import hierarchy as sch
from scipy.spatial.distance import squareform

from analysis.errors import UserError
from analysis.threshold import Thresholded, threshold_all

__all__ = [
    "ClassHierarchy",
    "probability_distances",
    "connectivity_distances",
    "weight_distances",
    "cosine_distances",
    "hierarchy_from_distances",
    "probability_hierarchy",
    "connectivity_hierarchy",
    "induced_hierarchy",
    "class_hierarchy",
    "METHODS",
]

METHODS = ("probability", "connectivity", "weights")
LINKAGES = ("average", "complete", "single", "weighted", "ward")


def cosine_distances(X: np.ndarray) -> np.ndarray:
    """``(n, n)`` cosine distances between the rows of ``X``, in ``[0, 2]``, zero diagonal.

    A zero row has no direction: it is at distance 1 from every non-zero row and 0 from another
    zero row.

    >>> cosine_distances(np.array([[1., 0.], [-2., 0.], [0., 0.]])).round(2).tolist()
    [[0.0, 2.0, 1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1)
    zero = norms == 0
    U = X / np.where(zero, 1.0, norms)[:, None]
    D = 1.0 - U @ U.T
    D[zero[:, None] ^ zero[None, :]] = 1.0  # one zero row, one not: unrelated
    D[zero[:, None] & zero[None, :]] = 0.0
    np.fill_diagonal(D, 0.0)
    return np.clip(D, 0.0, 2.0)


def probability_distances(P: np.ndarray) -> np.ndarray:
    """``(n, n)`` cosine distances between the rows of a class probability matrix ``(n, k)``.

    >>> probability_distances(np.array([[1., 0.], [2., 0.], [0., 1.]])).round(3).tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    return cosine_distances(P)


def weight_distances(W: np.ndarray) -> np.ndarray:
    """``(n, n)`` cosine distances between classifier weight rows ``W (classes, in)``."""
    return cosine_distances(W)


def _jaccard_from_codes(reach_codes: np.ndarray, node_codes: np.ndarray) -> np.ndarray:
    """Jaccard distance of reached node sets, computed per unique signature (cheap at any size).

    ``reach_codes[c]`` is the cluster mask that class ``c`` reaches in this set: a node is reached
    when its signature intersects it.
    """
    uc, inv = np.unique(reach_codes, return_inverse=True)
    us, counts = np.unique(node_codes, return_counts=True)
    R = ((uc[:, None] & us[None, :]) != 0).astype(np.float64)  # (unique classes, unique sigs)
    inter = (R * counts) @ R.T  # (uc, uc) nodes reached by both
    sizes = R @ counts
    union = sizes[:, None] + sizes[None, :] - inter
    D = np.where(union > 0, 1.0 - inter / np.where(union > 0, union, 1.0), 0.0)
    inv = inv.ravel()
    return D[np.ix_(inv, inv)]


def connectivity_distances(thresholded: Mapping[str, Thresholded], chain: Sequence[str], class_set: str) -> np.ndarray:
    """Jaccard distances of the hidden nodes each class reaches through live connections (module doc).

    Parameters
    ----------
    thresholded : ``{node set: Thresholded}``; chain : node sets in network order, ending with
        ``class_set``; class_set : the class node set.

    >>> from analysis.threshold import threshold
    >>> th = {"h": threshold(np.array([[1., 0.], [1., 0.], [0., 1.]]), .5, "h"),
    ...       "c": threshold(np.array([[1., 0.], [1., 0.], [1., 1.]]), .5, "c")}
    >>> connectivity_distances(th, ["h", "c"], "c").round(3).tolist()
    [[0.0, 0.0, 0.333], [0.0, 0.0, 0.333], [0.333, 0.333, 0.0]]
    """
    chain = list(chain)
    if class_set not in chain:
        raise UserError(f"class node set {class_set!r} is not in the chain {chain}")
    pos = chain.index(class_set)
    hidden = [n for n in chain[:pos] if n != chain[0] or pos == 1]
    if not hidden:
        raise UserError("connectivity distances need at least one node set before the classes")
    reach = thresholded[class_set].codes.astype(np.int64)  # cluster mask reached, per class
    total = np.zeros((len(reach), len(reach)))
    for name in reversed(hidden):
        node_codes = thresholded[name].codes
        total += _jaccard_from_codes(reach, node_codes)
        # clusters of the nodes reached in this set, per class: OR over reached signatures
        us = np.unique(node_codes)
        ur, inv = np.unique(reach, return_inverse=True)
        nxt = np.array([int(np.bitwise_or.reduce(us[(us & r) != 0])) if ((us & r) != 0).any() else 0 for r in ur],
                       dtype=np.int64)
        reach = nxt[inv.ravel()]
    D = total / len(hidden)
    np.fill_diagonal(D, 0.0)
    return D


@dataclass
class ClassHierarchy:
    """A class dendrogram with its distances. Same type for every method.

    Attributes
    ----------
    method : "probability" | "connectivity" | "weights" (or any name given).
    distances : ``(n, n)`` symmetric distances, zero diagonal.
    linkage : scipy linkage matrix ``(n - 1, 4)``.
    labels : class names.
    linkage_method : scipy method used.
    """

    method: str
    distances: np.ndarray
    linkage: np.ndarray
    labels: list[str]
    linkage_method: str = "average"
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def condensed(self) -> np.ndarray:
        """Condensed distance vector (scipy ``pdist`` layout)."""
        return squareform(self.distances, checks=False)

    def order(self) -> np.ndarray:
        """Dendrogram leaf order (left to right), as class indices."""
        if self.n < 2:
            return np.arange(self.n)
        return sch.leaves_list(self.linkage)

    def groups(self, n_groups: int | None = None, height: float | None = None) -> np.ndarray:
        """Flat groups ``(n,)`` (labels 0..): cut into ``n_groups`` (maxclust) or at ``height``.

        Labels are renumbered in dendrogram order so that group 0 is leftmost.
        """
        if (n_groups is None) == (height is None):
            raise UserError("give exactly one of n_groups and height")
        if self.n < 2:
            return np.zeros(self.n, dtype=np.int64)
        if n_groups is not None:
            if not (1 <= int(n_groups) <= self.n):
                raise UserError(f"n_groups must be within 1..{self.n}, got {n_groups}")
            raw = sch.fcluster(self.linkage, int(n_groups), criterion="maxclust")
        else:
            raw = sch.fcluster(self.linkage, float(height), criterion="distance")
        ids: dict[int, int] = {}
        for i in self.order():
            ids.setdefault(int(raw[i]), len(ids))
        return np.array([ids[int(r)] for r in raw], dtype=np.int64)

    def cophenetic(self) -> np.ndarray:
        """``(n, n)`` cophenetic distances of the dendrogram."""
        if self.n < 2:
            return np.zeros((self.n, self.n))
        return squareform(sch.cophenet(self.linkage))


def hierarchy_from_distances(
    D: np.ndarray, labels: Sequence[str] | None = None, method: str = "custom", linkage: str = "average",
    X: np.ndarray | None = None,
) -> ClassHierarchy:
    """Linkage over a square distance matrix (``ward`` needs the points ``X``).

    >>> h = hierarchy_from_distances(np.array([[0, .1, .9], [.1, 0, .8], [.9, .8, 0]]), list("abc"))
    >>> h.order().tolist(), h.groups(n_groups=2).tolist()
    ([2, 0, 1], [1, 1, 0])
    """
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise UserError(f"distances must be a square matrix, got shape {D.shape}")
    if linkage not in LINKAGES:
        raise UserError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    n = D.shape[0]
    labels = [str(x) for x in labels] if labels is not None else [f"class {i}" for i in range(n)]
    if len(labels) != n:
        raise UserError(f"{len(labels)} labels for {n} classes")
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    if n < 2:
        Z = np.zeros((0, 4))
    elif linkage == "ward":
        if X is None:
            raise UserError("ward linkage needs the points (class rows), not only distances")
        Z = sch.linkage(np.asarray(X, dtype=np.float64), method="ward")
    else:
        Z = sch.linkage(squareform(D, checks=False), method=linkage)
    return ClassHierarchy(method=method, distances=D, linkage=Z, labels=labels, linkage_method=linkage)


def probability_hierarchy(P: np.ndarray, labels=None, linkage: str = "average") -> ClassHierarchy:
    """Dendrogram of classes from their membership probabilities ``P (classes, k)``."""
    return hierarchy_from_distances(probability_distances(P), labels, "probability", linkage,
                                    X=_unit_rows(P) if linkage == "ward" else None)


def connectivity_hierarchy(thresholded, chain, class_set, labels=None, linkage: str = "average") -> ClassHierarchy:
    """Dendrogram of classes from the Jaccard distance of the hidden nodes they reach."""
    if linkage == "ward":
        raise UserError("ward linkage is not defined for Jaccard distances; use average")
    h = hierarchy_from_distances(connectivity_distances(thresholded, chain, class_set), labels, "connectivity", linkage)
    h.info["tau"] = float(thresholded[class_set].tau)
    return h


def _unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(n == 0, 1.0, n)


def induced_hierarchy(W: np.ndarray, labels=None, linkage: str = "average") -> ClassHierarchy:
    """Hierarchy induced from classifier weight rows ``W (classes, in)`` (NBDT-style).

    >>> W = np.array([[1., 0.1, 0], [1., 0, 0.1], [0, 1., 0], [0.1, 1., 0]])
    >>> g = induced_hierarchy(W).groups(n_groups=2)
    >>> bool(g[0] == g[1] and g[2] == g[3] and g[0] != g[2])
    True
    """
    W = np.asarray(W)
    if W.ndim != 2:
        raise UserError(f"classifier weights must be 2-D (classes, in), got shape {W.shape}")
    return hierarchy_from_distances(weight_distances(W), labels, "weights", linkage,
                                    X=_unit_rows(W) if linkage == "ward" else None)


def class_hierarchy(run, method: str = "probability", tau: float = 0.5, step: int | None = None,
                    linkage: str = "average") -> ClassHierarchy:
    """Class hierarchy of a loaded run by ``method`` (one of :data:`METHODS`).

    ``weights`` uses the classifier weights of the snapshot with weights nearest to ``step``
    (recorded in ``info["weights_step"]``) and works for any run, Blockout or not.
    """
    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}")
    names = run.class_names
    if method == "weights":
        clf = run.classifier
        if clf is None:
            raise UserError(f"{run.path}: the run has no classifier layer")
        ws = run.weights(step)
        if clf.name not in ws:
            raise UserError(f"{run.path}: snapshot at step {ws.step} has no weights for layer {clf.name!r}")
        h = induced_hierarchy(ws[clf.name][0], names, linkage)
        h.info["weights_step"] = ws.step
        return h
    cs = run.class_set
    if cs is None:
        raise UserError(f"{run.path}: the run has no class node set; use method 'weights'")
    probs = run.probs(step)
    if method == "probability":
        h = probability_hierarchy(probs[cs.name], names, linkage)
    else:
        th = threshold_all(probs, tau)
        h = connectivity_hierarchy(th, run.chain, cs.name, names, linkage)
    h.info["step"] = run.last_step if step is None else int(step)
    return h
