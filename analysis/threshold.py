"""Thresholding membership probabilities: ``C = P >= tau`` and what it says about a node set.

A node's *signature* is the set of clusters it belongs to. It is stored as an integer bitmask
(bit ``l`` set when the node is in cluster ``l``; ``k <= 62`` clusters), so grouping 4096 nodes by
signature is one ``np.unique`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from analysis.errors import UserError

__all__ = [
    "binarize",
    "signature_codes",
    "code_clusters",
    "code_label",
    "Thresholded",
    "threshold",
    "threshold_all",
    "dead_branches",
]

MAX_CLUSTERS = 62


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not (0.0 <= tau <= 1.0) or tau != tau:
        raise UserError(f"threshold must be within [0, 1], got {tau}")
    return tau


def binarize(P: np.ndarray, tau: float) -> np.ndarray:
    """Binary memberships ``P >= tau`` as a bool ``(n, k)`` array.

    >>> binarize(np.array([[0.9, 0.2], [0.5, 0.5]]), 0.5).astype(int).tolist()
    [[1, 0], [1, 1]]
    """
    P = np.asarray(P)
    if P.ndim != 2:
        raise UserError(f"probabilities must be a 2-D (nodes, clusters) array, got shape {P.shape}")
    return P >= _check_tau(tau)


def signature_codes(C: np.ndarray) -> np.ndarray:
    """Bitmask signature per row of a bool ``(n, k)`` matrix: ``sum_l C[:, l] << l``.

    >>> signature_codes(np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], bool)).tolist()
    [5, 0, 2]
    """
    C = np.asarray(C, dtype=bool)
    k = C.shape[1]
    if k > MAX_CLUSTERS:
        raise UserError(f"at most {MAX_CLUSTERS} clusters are supported, got {k}")
    powers = np.left_shift(np.int64(1), np.arange(k, dtype=np.int64))  # (k,)
    # Integer matmul of a (n, k) 0/1 matrix with powers of two: exact, vectorised.
    return C.astype(np.int64) @ powers


def code_clusters(code: int) -> tuple[int, ...]:
    """Cluster indices of a bitmask signature.

    >>> code_clusters(0b1011)
    (0, 1, 3)
    """
    code = int(code)
    out = []
    bit = 0
    while code:
        if code & 1:
            out.append(bit)
        code >>= 1
        bit += 1
    return tuple(out)


def code_label(code: int) -> str:
    """Readable signature, e.g. ``{0,2}``; the empty signature is ``{}``.

    >>> code_label(5), code_label(0)
    ('{0,2}', '{}')
    """
    return "{" + ",".join(str(c) for c in code_clusters(code)) + "}"


@dataclass(frozen=True)
class Thresholded:
    """One node set thresholded at ``tau``.

    Attributes
    ----------
    name : node-set name.
    tau : the threshold.
    membership : bool ``(n, k)``, ``P >= tau``.
    codes : int64 ``(n,)`` signature bitmasks.
    """

    name: str
    tau: float
    membership: np.ndarray
    codes: np.ndarray

    @property
    def size(self) -> int:
        return int(self.membership.shape[0])

    @property
    def k(self) -> int:
        return int(self.membership.shape[1])

    @property
    def full_code(self) -> int:
        return (1 << self.k) - 1

    def signatures(self) -> list[frozenset[int]]:
        """Signature of every node as a frozenset of cluster indices."""
        uniq, inv = np.unique(self.codes, return_inverse=True)
        sets = [frozenset(code_clusters(c)) for c in uniq]
        return [sets[i] for i in inv]

    def nodes_per_cluster(self) -> np.ndarray:
        """``(k,)`` number of nodes in each cluster."""
        return self.membership.sum(axis=0).astype(np.int64)

    def signature_counts(self) -> dict[int, int]:
        """``{signature code: number of nodes}``, codes in increasing order."""
        uniq, counts = np.unique(self.codes, return_counts=True)
        return {int(c): int(n) for c, n in zip(uniq, counts)}

    def dead_nodes(self) -> np.ndarray:
        """Indices of nodes in no cluster (they are cut off from every path)."""
        return np.flatnonzero(self.codes == 0)

    def shared_nodes(self) -> np.ndarray:
        """Indices of nodes in every cluster (fully shared, trunk-like)."""
        return np.flatnonzero(self.codes == self.full_code)

    def empty_clusters(self) -> np.ndarray:
        """Clusters that no node of this set belongs to."""
        return np.flatnonzero(self.nodes_per_cluster() == 0)

    def summary(self) -> dict:
        """Plain-typed counts (for tables and JSON)."""
        return {
            "node_set": self.name,
            "tau": self.tau,
            "nodes": self.size,
            "clusters": self.k,
            "nodes_per_cluster": self.nodes_per_cluster().tolist(),
            "signatures": len(np.unique(self.codes)),
            "dead_nodes": int((self.codes == 0).sum()),
            "shared_nodes": int((self.codes == self.full_code).sum()),
            "empty_clusters": self.empty_clusters().tolist(),
        }


def check_tau(tau) -> float:
    """``tau`` as a float in (0, 1], or a one-line :class:`UserError` naming the bad value.

    >>> check_tau("0.5")
    0.5
    """
    try:
        tau = float(tau)
    except (TypeError, ValueError):
        raise UserError(f"threshold must be a number in (0, 1], got {tau!r}") from None
    if not 0.0 < tau <= 1.0:
        raise UserError(f"threshold must be in (0, 1], got {tau!r}")
    return tau


def threshold(P: np.ndarray, tau: float, name: str = "") -> Thresholded:
    """Threshold one ``(n, k)`` probability matrix.

    >>> t = threshold(np.array([[0.9, 0.9], [0.1, 0.8], [0.0, 0.1]]), 0.5)
    >>> t.codes.tolist(), t.nodes_per_cluster().tolist(), t.dead_nodes().tolist(), t.shared_nodes().tolist()
    ([3, 2, 0], [1, 2], [2], [0])
    """
    C = binarize(P, tau)
    return Thresholded(name=name, tau=float(tau), membership=C, codes=signature_codes(C))


def threshold_all(probs: Mapping[str, np.ndarray], tau: float) -> dict[str, Thresholded]:
    """Threshold every node set of ``{name: P}`` (e.g. ``run.probs(step)``)."""
    return {name: threshold(P, tau, name) for name, P in probs.items()}


def dead_branches(thresholded: Mapping[str, Thresholded], chain: list[str] | None = None) -> dict[int, list[str]]:
    """Clusters with no node in some node set (no path runs through them): ``{cluster: [sets]}``.

    >>> th = threshold_all({"a": np.array([[1.0, 1.0]]), "b": np.array([[1.0, 0.0]])}, 0.5)
    >>> dead_branches(th)
    {1: ['b']}
    """
    names = chain if chain is not None else list(thresholded)
    out: dict[int, list[str]] = {}
    for name in names:
        for c in thresholded[name].empty_clusters():
            out.setdefault(int(c), []).append(name)
    return dict(sorted(out.items()))
