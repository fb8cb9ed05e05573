"""What happened to the cluster probabilities P of a node set during training.

The paper lists three outcomes for learned memberships: P *diverges* to 0/1 (a fixed clustering,
i.e. a chosen architecture), P *stays* where it started (uninformative gradients), or P *rises to 1*
everywhere (a fully distributed representation: every node in every cluster, no branches).
Studies in this project also saw the opposite collapse (everything *falls to 0*, e.g. under a
strong L1 penalty). :func:`classify_outcome` names the outcome from the history of one node set's
P; :func:`drift_series` gives the per-step numbers the dashboard plots so the drift-to-1 failure
mode is visible.

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
    "fell_to_0": "P fell to 0 everywhere: the node set was switched off",
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
    """

    outcome: str
    share_high: float
    share_low: float
    mean_p: float
    change: float

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


def classify_outcome(
    history,
    *,
    trainable: bool = True,
    low: float = 0.1,
    high: float = 0.9,
    settled: float = 0.9,
    still: float = 0.02,
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
        ``rose_to_1`` and ``fell_to_0``.
    still : float
        Largest mean absolute change (first to last snapshot) still counted as ``stayed``.

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
    """
    if not 0.0 <= low < high <= 1.0:
        raise UserError(f"need 0 <= low < high <= 1; got low={low}, high={high}")
    arr = _as_history(history)
    first, last = arr[0], arr[-1]
    share_high = float(np.mean(last >= high))
    share_low = float(np.mean(last <= low))
    mean_p = float(last.mean())
    change = float(np.mean(np.abs(last - first)))
    if not trainable:
        outcome = "fixed"
    elif share_high >= settled:
        outcome = "rose_to_1"
    elif share_low >= settled:
        outcome = "fell_to_0"
    elif share_high + share_low >= settled:
        # A mix of 0s and 1s; if it started there and never moved it is still a clustering
        # (e.g. towers initialised one-hot), which is what "diverged" names.
        outcome = "diverged"
    elif change <= still:
        outcome = "stayed"
    else:
        outcome = "drifting"
    return Outcome(outcome, share_high, share_low, mean_p, change)


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
