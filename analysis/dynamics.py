"""What happened to the cluster probabilities P of a node set during training.

The paper lists three outcomes for learned memberships: P *diverges* to 0/1 (a fixed clustering,
i.e. a chosen architecture), P *stays* where it started (uninformative gradients), or P *rises to 1*
everywhere (a fully distributed representation: every node in every cluster, no branches).
Studies in this project also saw the opposite collapse (every node *falls to 0*, in no cluster,
e.g. under a strong L1 penalty). :func:`classify_outcome` names the outcome from the history of one
node set's P; :func:`drift_series` gives the per-step numbers the dashboard plots so the drift-to-1
failure mode is visible.

The outcome is judged by what matters for branches: nodes in no cluster (dead), nodes in every
cluster (full), and whether P settled at 0/1 -- not by the share of small entries alone. A
categorical node set (each node in exactly ``m`` clusters, rows of P summing to ``m``) has most of
its entries near 0 by construction and can never be switched off: its nodes always sit in ``m``
clusters.

Pure numpy; no torch, no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.errors import UserError

#: Outcome names, in the order the dashboard explains them.
OUTCOMES = ("diverged", "rose_to_1", "fell_to_0", "stayed", "drifting", "fixed")

#: One sentence per outcome, for tables and captions.
DESCRIPTIONS = {
    "diverged": "P went to 0/1: a fixed clustering (a chosen architecture)",
    "rose_to_1": "P rose to 1 everywhere: fully distributed, no branches",
    "fell_to_0": "P fell to 0 for (nearly) every node: nodes in no cluster, the node set was switched off",
    "stayed": "P stayed where it started: uninformative gradients",
    "drifting": "P moved but has not settled at 0/1 yet",
    "fixed": "P is not trained (fixed memberships)",
}


@dataclass(frozen=True)
class Outcome:
    """The classified outcome of one node set's P history.

    Attributes
    ----------
    outcome : str
        One of :data:`OUTCOMES`.
    share_high, share_low : float
        Share of the final P entries ``>= high`` and ``<= low``.
    mean_p : float
        Mean of the final P.
    change : float
        Mean absolute change of P between the first and the last snapshot.
    nodes, dead_nodes, full_nodes : int
        Nodes of the set; nodes in no cluster / in every cluster at ``P >= tau`` (final snapshot).
    settled : bool
        Whether at least the ``settled`` share of the final entries is at 0/1 (for a categorical
        set: of the nodes' ``m`` cluster slots at 1).
    categorical : bool
        Whether every node's P sums to the same whole number ``m`` (each node in exactly ``m``
        clusters), given or detected from the final P.
    tau : float
        Membership threshold of ``dead_nodes`` / ``full_nodes``.
    """

    outcome: str
    share_high: float
    share_low: float
    mean_p: float
    change: float
    nodes: int = 0
    dead_nodes: int = 0
    full_nodes: int = 0
    settled: bool = False
    categorical: bool = False
    tau: float = 0.5

    @property
    def description(self) -> str:
        """One sentence saying what the outcome means."""
        return DESCRIPTIONS[self.outcome]


def _as_history(history) -> np.ndarray:
    arr = np.asarray(history, dtype=float)
    if arr.ndim == 2:  # a single snapshot (n, k)
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.size == 0:
        raise UserError(f"P history must have shape (steps, nodes, clusters); got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise UserError("P history contains NaN or infinite values")
    return arr


def is_categorical(P, atol: float = 1e-3) -> bool:
    """True when every row of ``P`` sums to the same whole number ``m`` with ``1 <= m < k``.

    >>> is_categorical(np.array([[0.9, 0.05, 0.05], [0.2, 0.3, 0.5]]))
    True
    >>> is_categorical(np.array([[0.9, 0.05, 0.0], [0.2, 0.3, 0.5]])), is_categorical(np.zeros((2, 3)))
    (False, False)
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.size == 0:
        return False
    rows = P.sum(axis=1)
    m = float(np.round(rows[0]))
    return 1 <= m < P.shape[1] and bool(np.all(np.abs(rows - m) <= atol * max(1.0, m)))


def classify_outcome(
    history,
    *,
    trainable: bool = True,
    low: float = 0.1,
    high: float = 0.9,
    settled: float = 0.9,
    still: float = 0.02,
    tau: float = 0.5,
    membership: str | None = None,
) -> Outcome:
    """Name what happened to one node set's P over training.

    Parameters
    ----------
    history : array_like, shape (steps, nodes, clusters)
        P at each snapshot step, in step order (a single ``(nodes, clusters)`` matrix is allowed).
    trainable : bool
        False for node sets whose P is never trained (outcome ``"fixed"``).
    low, high : float
        An entry counts as 0 when ``<= low`` and as 1 when ``>= high``.
    settled : float
        Share of the final entries that must be at 0/1 for the outcomes ``diverged``,
        ``rose_to_1`` and ``fell_to_0``; ``fell_to_0`` also needs this share of the nodes dead
        (in no cluster at ``tau``), and never applies to a categorical set.
    still : float
        Largest mean absolute change (first to last snapshot) still counted as ``stayed``.
    tau : float
        Membership threshold for counting dead and full nodes.
    membership : str, optional
        The node set's membership kind from ``run.json`` (``"categorical"`` marks a set whose
        nodes are each in exactly ``m`` clusters); ``None`` detects it from the rows of P.

    Returns
    -------
    Outcome

    Examples
    --------
    >>> start = np.full((1, 4, 2), 0.5)
    >>> classify_outcome(np.concatenate([start, np.full((1, 4, 2), 0.97)])).outcome
    'rose_to_1'
    >>> split = np.array([[[0.99, 0.01], [0.02, 0.98], [0.97, 0.03], [0.0, 1.0]]])
    >>> classify_outcome(np.concatenate([start, split])).outcome
    'diverged'
    >>> classify_outcome(np.concatenate([start, start + 0.01])).outcome
    'stayed'

    One cluster per node out of 20 (a categorical set: 95 % of P near 0) is a clustering, not a
    switched-off set:

    >>> one_hot = np.eye(20)[np.arange(40) % 20][None]
    >>> classify_outcome(np.concatenate([np.full((1, 40, 20), 0.05), one_hot])).outcome
    'diverged'
    """
    if not 0.0 <= low < high <= 1.0:
        raise UserError(f"need 0 <= low < high <= 1; got low={low}, high={high}")
    if not 0.0 <= float(tau) <= 1.0:
        raise UserError(f"threshold must be within [0, 1], got {tau}")
    arr = _as_history(history)
    first, last = arr[0], arr[-1]
    share_high = float(np.mean(last >= high))
    share_low = float(np.mean(last <= low))
    mean_p = float(last.mean())
    change = float(np.mean(np.abs(last - first)))
    per_node = (last >= float(tau)).sum(axis=1)
    n, k = last.shape
    dead, full = int((per_node == 0).sum()), int((per_node == k).sum())
    categorical = membership == "categorical" if membership is not None else is_categorical(last)
    if categorical:
        # each node holds m clusters: settled when its m slots are at 1 (its other entries are
        # then near 0 by construction, so near-0 entries prove nothing)
        m = max(1, int(round(float(last.sum(axis=1).mean()))))
        is_settled = float((last >= high).sum()) / (n * m) >= settled
    else:
        is_settled = share_high + share_low >= settled
    if not trainable:
        outcome = "fixed"
    elif share_high >= settled:
        outcome = "rose_to_1"
    elif share_low >= settled and dead >= settled * n and not categorical:
        # Switched off means nodes in no cluster: most entries near 0 is also what a set of
        # one-cluster nodes looks like, which is a working branch layer ("diverged").
        outcome = "fell_to_0"
    elif is_settled:
        # A mix of 0s and 1s; if it started there and never moved it is still a clustering
        # (e.g. towers initialised one-hot), which is what "diverged" names.
        outcome = "diverged"
    elif change <= still:
        outcome = "stayed"
    else:
        outcome = "drifting"
    return Outcome(outcome, share_high, share_low, mean_p, change, int(n), dead, full, bool(is_settled),
                   bool(categorical), float(tau))


def drift_series(history, *, high: float = 0.9, low: float = 0.1) -> dict[str, np.ndarray]:
    """Per-step summary of one node set's P: the drift-to-1 failure mode made plottable.

    Parameters
    ----------
    history : array_like, shape (steps, nodes, clusters)
    high, low : float
        Thresholds for the shares of entries near 1 and near 0.

    Returns
    -------
    dict
        ``mean`` (steps,), ``share_high`` (steps,), ``share_low`` (steps,) and
        ``clusters_per_node`` (steps,): mean number of clusters per node at P >= 0.5.

    Examples
    --------
    >>> h = np.array([[[0.5, 0.5]], [[0.95, 0.2]]])
    >>> s = drift_series(h)
    >>> s["mean"].round(3).tolist(), s["share_high"].tolist(), s["clusters_per_node"].tolist()
    ([0.5, 0.575], [0.0, 0.5], [2.0, 1.0])
    """
    arr = _as_history(history)
    flat = arr.reshape(arr.shape[0], -1)
    return {
        "mean": flat.mean(axis=1),
        "share_high": (flat >= high).mean(axis=1),
        "share_low": (flat <= low).mean(axis=1),
        "clusters_per_node": (arr >= 0.5).sum(axis=2).mean(axis=1),
    }


def cluster_sizes(history, tau: float = 0.5) -> np.ndarray:
    """Nodes per cluster at threshold ``tau`` at every snapshot: ``(steps, clusters)`` ints.

    >>> cluster_sizes(np.array([[[0.9, 0.1], [0.6, 0.7]], [[0.2, 0.8], [0.1, 0.9]]]), 0.5).tolist()
    [[2, 1], [0, 2]]
    """
    if not 0.0 <= float(tau) <= 1.0:
        raise UserError(f"threshold must be within [0, 1], got {tau}")
    arr = _as_history(history)
    return (arr >= float(tau)).sum(axis=1).astype(np.int64)


def multiplier_history(run) -> dict[str, np.ndarray]:
    """Budget multipliers of every layer over all snapshots of a loaded run.

    Parameters
    ----------
    run : :class:`analysis.run.Run`

    Returns
    -------
    dict
        ``{layer: (steps, m)}`` float arrays, NaN at steps whose snapshot has no multiplier for
        that layer; empty when the run never saved ``multiplier__<layer>`` arrays.
    """
    per_step = [run.multipliers(s) for s in run.steps]
    names = sorted({name for m in per_step for name in m})
    out: dict[str, np.ndarray] = {}
    for name in names:
        sizes = {np.asarray(m[name]).size for m in per_step if name in m}
        if len(sizes) != 1:
            raise UserError(f"{run.path}: multiplier__{name} changes size across snapshots ({sorted(sizes)})")
        width = sizes.pop()
        arr = np.full((len(per_step), width), np.nan)
        for i, m in enumerate(per_step):
            if name in m:
                arr[i] = np.asarray(m[name], dtype=float).ravel()
        out[name] = arr
    return out
