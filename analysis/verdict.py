"""The run's answer, first: one plain sentence per question the tool exists to answer.

1. **Did branches form?** Per learned node set (trainable memberships): the outcome of its P
   (:func:`analysis.dynamics.classify_outcome`), the number of branches at the threshold tau, and its
   dead (no cluster) and full (every cluster) nodes. A node set's *branches* are the groups of
   clusters its nodes tie together: clusters that share a node are one branch, so a set whose
   nodes each sit in one cluster has as many branches as populated clusters, and a set whose
   nodes are all in every cluster has one (:func:`node_set_branches`). Branches *formed* when a
   learned set ends with at least two of them and its P moved (outcome ``diverged`` or
   ``drifting``; ``stayed``, ``rose_to_1`` and ``fell_to_0`` are the paper's failure modes).
2. **Do the memberships group classes the way the reference does?** From a
   :class:`analysis.compare.ComparisonReport`: the best-supported reference (smallest Holm-adjusted
   ARI p, never a one-class-against-the-rest reference; :func:`analysis.compare.best_partition`),
   with the ARI and Holm-adjusted p of the membership hierarchy and of the weight-induced hierarchy
   at that same reference, side by side, and whether the memberships add anything over the plain
   weights (significant, and either higher than the weights' ARI or the weights not significant).

The first sentence ends with the branch tree's shape at tau: its depth (:func:`branch_depth`; 2 or
more when branches split again) and the clusters the classes actually use ("9 of 20",
:func:`clusters_used`). When the memberships agree with the best-supported reference *less* than
the run's own weight-induced hierarchy does (and the weights agree beyond chance), the second
sentence ends with a flag (also in ``Verdict.flags``): the memberships then lose structure the
weights carry.

Every sentence is built from the measured numbers only and says "No" when the evidence does.
Pure numpy over a loaded run (no torch, no Streamlit); without a report nothing expensive is
computed and the second question is answered "Not measured".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.dynamics import classify_outcome
from analysis.errors import UserError
from analysis.graphs import cluster_partition
from analysis.threshold import check_tau
from analysis.threshold import threshold as threshold_set

__all__ = ["QUESTIONS", "ALPHA", "NodeSetVerdict", "AgreementVerdict", "Verdict", "node_set_branches",
           "branch_depth", "clusters_used", "tree_phrase", "below_weights_flag", "run_verdict"]

#: The two questions, in the order the sentences answer them.
QUESTIONS = ("Did branches form?", "Do the memberships group classes the way the reference does?")
#: Significance level of the Holm-adjusted p-values.
ALPHA = 0.05

#: Outcomes of a learned node set whose branches count as formed (P moved and is not collapsed).
_FORMING = ("diverged", "drifting")
_PHRASE = {
    "diverged": "P settled at 0/1",
    "drifting": "P not settled yet",
    "rose_to_1": "P rose to 1, every node in every cluster",
    "fell_to_0": "P fell to 0, nodes in no cluster: switched off",
    "stayed": "P stayed where it started",
    "fixed": "P fixed by the method",
}


def node_set_branches(P, tau: float = 0.5) -> int:
    """Number of branches of one node set at ``tau``: connected groups of the populated clusters.

    Two clusters are in the same branch when some node of the set is in both; clusters without a
    node do not count, and a set with every node dead has 0 branches.

    >>> node_set_branches(np.eye(4)[[0, 1, 2, 3, 0]])
    4
    >>> node_set_branches(np.array([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1.]]))
    2
    >>> node_set_branches(np.ones((3, 4))), node_set_branches(np.zeros((3, 4)))
    (1, 0)
    """
    th = threshold_set(np.asarray(P, dtype=np.float64), tau)
    populated = th.nodes_per_cluster() > 0
    if not populated.any():
        return 0
    labels = cluster_partition(th.codes, th.k)
    return int(np.unique(labels[populated]).size)


def branch_depth(G) -> int:
    """Depth of a branch tree (:func:`analysis.graphs.build_branch_tree`): the most edges from the root
    to a live block vertex. 0: no split at all; 1: one level of branches (a flat recipe); 2: branches
    that split again. Class leaves and dead blocks do not count.

    >>> from analysis.graphs import build_branch_tree
    >>> from analysis.threshold import threshold
    >>> th = {"t": threshold(np.ones((2, 4)), .5, "t"),
    ...       "h1": threshold(np.array([[1, 1, 0, 0], [0, 0, 1, 1.]]), .5, "h1"),
    ...       "h2": threshold(np.eye(4), .5, "h2"), "c": threshold(np.eye(4), .5, "c")}
    >>> branch_depth(build_branch_tree(th, ["t", "h1", "h2", "c"], "c")), branch_depth(build_branch_tree(th, ["t", "h2", "c"], "c"))
    (2, 1)
    """
    return max((int(d["depth"]) for _, d in G.nodes(data=True) if d["kind"] == "block" and not d["dead"]),
               default=0)


def clusters_used(P, tau: float = 0.5) -> int:
    """Clusters holding at least one node of a node set at ``tau`` (of the class set: the k in use).

    >>> clusters_used(np.array([[.9, .1, .2], [.8, .1, .6]]), 0.5), clusters_used(np.zeros((2, 3)))
    (2, 0)
    """
    th = threshold_set(np.asarray(P, dtype=np.float64), tau)
    return int((th.nodes_per_cluster() > 0).sum())


@dataclass
class NodeSetVerdict:
    """What happened to one learned node set."""

    name: str
    role: str
    membership: str | None
    outcome: str
    nodes: int
    clusters: int
    n_branches: int
    n_dead: int
    n_full: int
    settled: bool
    formed: bool

    def phrase(self) -> str:
        """``h1, 20 branches (P settled at 0/1; 0 dead and 0 full of 160 nodes)``."""
        br = f"{self.n_branches} branch{'es' if self.n_branches != 1 else ''}"
        return (f"{self.name}, {br} ({_PHRASE.get(self.outcome, self.outcome)}; "
                f"{self.n_dead} dead and {self.n_full} full of {self.nodes} nodes)")


@dataclass
class AgreementVerdict:
    """The best-supported reference, with memberships and weights side by side at it."""

    reference: str
    kind: str
    depth: int | None
    depths: list[int] | None
    n_groups: int
    #: the hierarchy the reference was chosen on: ``memberships`` when compared, else ``weights``
    chosen_by: str
    memberships_ari: float | None
    memberships_p_holm: float | None
    weights_ari: float | None
    weights_p_holm: float | None
    memberships_agree: bool | None
    weights_agree: bool | None
    #: memberships significant and above the weights (or the weights not significant); None
    #: when either hierarchy was not compared
    memberships_add: bool | None
    alpha: float = ALPHA
    #: references left out of the choice (one class against all the rest)
    excluded: list[str] = field(default_factory=list)
    #: raw permutation p of the ARI (before Holm's correction)
    memberships_p: float | None = None
    weights_p: float | None = None
    #: permutations of the null, and the size of the Holm family (references compared)
    permutations: int = 0
    family: int = 0
    #: the chooser's raw p is the smallest the permutations allow, yet Holm's correction leaves it
    #: above ``alpha``: too few permutations to decide, not evidence of no agreement
    resolution_limited: bool = False
    #: the memberships' ARI is below the weight-induced hierarchy's at this reference while the weights
    #: agree beyond chance (None: not both compared)
    memberships_below_weights: bool | None = None

    def reference_label(self) -> str:
        """``coarse classes (20 groups)`` or ``WordNet depth 9 (52 groups)``."""
        if self.kind == "coarse":
            what = "the coarse classes"
        elif self.depth is not None:
            ds = self.depths or [self.depth]
            what = f"WordNet depth {ds[0]}" if len(ds) == 1 else f"WordNet depths {ds[0]}-{ds[-1]}"
        else:
            what = self.reference
        return f"{what} ({self.n_groups} groups)"


@dataclass
class Verdict:
    """Answers to :data:`QUESTIONS` for one run; ``sentences`` are what a reader sees first."""

    branches: list[NodeSetVerdict]
    agreement: AgreementVerdict | None
    sentences: list[str]
    threshold: float
    step: int | None
    #: True / False, or None when not measurable (no snapshot, or memberships fixed by the method)
    branches_formed: bool | None
    #: True / False, or None when not measured (no comparison, or no membership hierarchy)
    memberships_agree: bool | None
    #: depth of the branch tree at the threshold (:func:`branch_depth`), None without memberships
    tree_depth: int | None = None
    #: clusters holding at least one class at the threshold ("k used"), and the run's k
    k_used: int | None = None
    k: int | None = None
    #: warnings a reader must not miss (e.g. memberships agreeing less than the run's own weights)
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the ``verdict`` key of ``inspect --json`` and ``compare --json``)."""
        return {
            "sentences": list(self.sentences),
            "threshold": self.threshold,
            "step": self.step,
            "branches_formed": self.branches_formed,
            "memberships_agree": self.memberships_agree,
            "branches": [asdict(b) for b in self.branches],
            "agreement": None if self.agreement is None else asdict(self.agreement),
            "tree_depth": self.tree_depth,
            "k_used": self.k_used,
            "k": self.k,
            "flags": list(self.flags),
        }


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _fmt_ari(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ---------------------------------------------------------------------------------------------
# question 1


def _branch_verdicts(run, threshold: float, step: int | None) -> list[NodeSetVerdict]:
    steps = list(run.steps)
    upto = len(steps) if step is None else steps.index(int(step)) + 1
    out = []
    for ns in run.node_sets:
        if not ns.trainable:
            continue
        hist = run.probs_history(ns.name)[:upto]
        o = classify_outcome(hist, trainable=True, tau=threshold, membership=ns.membership)
        n_br = node_set_branches(hist[-1], threshold)
        out.append(NodeSetVerdict(ns.name, ns.role, ns.membership, o.outcome, o.nodes, int(hist.shape[2]), n_br,
                                  o.dead_nodes, o.full_nodes, o.settled,
                                  o.outcome in _FORMING and n_br >= 2))
    return out


def _branches_sentence(run, sets: list[NodeSetVerdict], threshold: float,
                       step: int | None) -> tuple[str, bool | None]:
    q = QUESTIONS[0]
    method = (run.config or {}).get("method")
    if not run.node_sets:
        how = f" (method {method})" if method else ""
        return f"{q} No: a plain network{how} has no cluster memberships, so no branches.", False
    if not run.steps:
        return f"{q} Not measured: the run has no snapshot yet.", None
    if not sets:
        fixed = [ns.name for ns in run.node_sets if ns.role != "trunk"] or [ns.name for ns in run.node_sets]
        probs = run.probs(step)
        counts = [f"{name} {node_set_branches(probs[name], threshold)}" for name in fixed if name in probs]
        how = f" ({method})" if method else ""
        return (f"{q} Not learned: every membership is fixed by the method{how}; branches at tau = "
                f"{threshold:g}: {', '.join(counts)}."), None
    formed = [s for s in sets if s.formed]
    rest = [s for s in sets if not s.formed]
    at = f"at tau = {threshold:g}"
    if formed:
        text = f"{q} Yes, {at}: in " + "; in ".join(s.phrase() for s in formed)
        if rest:
            text += "; but not in " + "; nor in ".join(s.phrase() for s in rest)
        return text + ".", True
    return f"{q} No, {at}: in " + "; in ".join(s.phrase() for s in rest) + ".", False


# ---------------------------------------------------------------------------------------------
# question 2


def _row(hierarchy, reference: str):
    if hierarchy is None:
        return None
    return next((p for p in hierarchy.partitions if p.reference == reference), None)


def _agreement(report) -> AgreementVerdict | None:
    from analysis.compare import best_partition

    by_source = {h.source: h for h in report.hierarchies}
    mem, wts = by_source.get("memberships"), by_source.get("weights")
    chosen_by = "memberships" if mem is not None else "weights"
    chooser = mem if mem is not None else wts
    if chooser is None:
        return None
    best = best_partition(chooser, "ari")
    if best is None:
        return None
    ref = next((r for r in report.references if r.get("name") == best.reference), {})

    def stats(h):
        row = _row(h, best.reference)
        if row is None:
            return None, None, None, None
        s = row.scores["ari"]
        p = s.p_holm if s.p_holm is not None else s.p
        return s.observed, p, (p is not None and p <= ALPHA), s.p

    m_ari, m_p, m_ok, m_raw = stats(mem)
    w_ari, w_p, w_ok, w_raw = stats(wts)
    add = None
    if mem is not None and wts is not None and m_ok is not None and w_ok is not None:
        add = bool(m_ok and (not w_ok or (m_ari is not None and w_ari is not None and m_ari > w_ari)))
    excluded = sorted({p.reference for h in report.hierarchies for p in h.partitions if p.degenerate})
    n_null = int(best.scores["ari"].n_null)
    family = sum(p.scores["ari"].p is not None for p in chooser.partitions)
    raw, adj = (m_raw, m_p) if chosen_by == "memberships" else (w_raw, w_p)
    limited = bool(raw is not None and adj is not None and adj > ALPHA and raw <= 1.0 / (n_null + 1) + 1e-12)
    # only a weight hierarchy that itself agrees beyond chance makes "less than the weights" news
    below = None if m_ari is None or w_ari is None or w_ok is None else bool(w_ok and m_ari < w_ari)
    return AgreementVerdict(best.reference, best.kind, best.depth, ref.get("depths"), int(best.n_groups), chosen_by,
                            m_ari, m_p, w_ari, w_p, m_ok, w_ok, add, ALPHA, excluded, m_raw, w_raw, n_null,
                            family, limited, below)


def _agreement_sentence(run, report, ag: AgreementVerdict | None) -> tuple[str, bool | None]:
    q = QUESTIONS[1]
    if report is None:
        return (f"{q} Not measured: the comparison with reference hierarchies was not run "
                f"(blockout compare RUN).", None)
    if ag is None:
        why = "; ".join(report.notes) if report.notes else "no reference with more than one class apart"
        return f"{q} Not measured: no usable reference ({why}).", None
    where = ag.reference_label()
    w_part = ("" if ag.weights_ari is None and ag.weights_p_holm is None else
              f"weight-induced hierarchy ARI {_fmt_ari(ag.weights_ari)} (Holm p {_fmt_p(ag.weights_p_holm)})")
    if ag.chosen_by == "weights":
        no_mem = ("the run has no class memberships (a plain network)" if run.class_set is None
                  else "the membership hierarchy was not compared")
        return (f"{q} Not measured: {no_mem}; the weights' best-supported reference is {where}: "
                f"{w_part}.", None)
    m_part = f"memberships ARI {_fmt_ari(ag.memberships_ari)} (Holm p {_fmt_p(ag.memberships_p_holm)})"
    side = f"{m_part}, {w_part}" if w_part else m_part
    if ag.resolution_limited:
        need = int(np.ceil(ag.family / ag.alpha))  # smallest p 1/(N+1) times the family size <= alpha
        return (f"{q} Undecided, too few permutations. Best-supported reference: {where}; {side}; the raw "
                f"p {_fmt_p(ag.memberships_p)} is the smallest {ag.permutations} permutations allow, which "
                f"Holm's correction over {ag.family} references cannot bring to {ag.alpha:g} (use at least "
                f"{need - 1} permutations).", None)
    if ag.memberships_agree:
        head = f"{q} Yes. Best-supported reference: {where}; {side}"
        if ag.memberships_add is True:
            tail = ("; the memberships agree more than the plain weights do" if ag.weights_agree
                    else "; the plain weights alone do not agree beyond chance")
        elif ag.memberships_add is False:
            # below the weights, the flag that follows says more than "nothing added" (run_verdict)
            tail = "" if ag.memberships_below_weights else "; the memberships add nothing over the plain weights"
        else:
            tail = "; the weight-induced hierarchy was not compared"
        return head + tail + ".", True
    head = (f"{q} No: no reference agrees beyond chance after Holm's correction (p <= {ALPHA:g}). "
            f"Best-supported reference: {where}; {side}")
    if ag.weights_agree:
        head += "; the plain weights do group the classes like it"
    return head + ".", False


# ---------------------------------------------------------------------------------------------
# the branch tree's shape and the flag


def _tree_shape(run, threshold: float, step: int | None) -> tuple[int | None, int | None, int | None]:
    """``(tree depth, clusters used by the classes, k)`` at ``threshold``; Nones without memberships."""
    from analysis.graphs import branch_tree

    if not run.node_sets or not run.steps or run.class_set is None:
        return None, None, None
    probs = run.probs(step)
    P = probs[run.class_set.name]
    return branch_depth(branch_tree(run, threshold, step)), clusters_used(P, threshold), int(P.shape[1])


def tree_phrase(depth: int | None, k_used: int | None, k: int | None) -> str:
    """`` Branch tree depth 2 (branches that split again); the classes use 9 of 20 clusters.``

    >>> tree_phrase(1, 9, 20)
    ' Branch tree depth 1 (one level of branches); the classes use 9 of 20 clusters.'
    >>> tree_phrase(None, None, None)
    ''
    """
    if depth is None:
        return ""
    shape = {0: "no split", 1: "one level of branches"}.get(depth, "branches that split again")
    return f" Branch tree depth {depth} ({shape}); the classes use {k_used} of {k} clusters."


def warmup_flag(config, metrics, step: int | None) -> str | None:
    """The flag sentence when the snapshot at ``step`` lies in a co-clustered start's plain warm-up.

    During the first ``cocluster_at`` epochs the memberships are unused and still at their random
    start, so branches, trees and agreement computed from them describe nothing the run chose.
    ``metrics`` are the run's ``metrics.jsonl`` records (the last epoch recorded at or before
    ``step`` decides); None when the run has no co-clustered start or nothing tells.

    >>> warmup_flag({"method": "hard-cocluster", "cocluster_at": 10}, [{"step": 40, "epoch": 1}], 40)
    'Flag: at this step the run is still in its plain warm-up (1 of 10 epochs): the memberships are not set yet (the co-clustering comes at the start of epoch 11).'
    >>> warmup_flag({"method": "hard-cocluster", "cocluster_at": 1}, [{"step": 40, "epoch": 1}], 50) is None
    True
    """
    at = (config or {}).get("cocluster_at")
    if isinstance(at, bool) or not isinstance(at, int) or step is None:
        return None
    recs = [(r["step"], r["epoch"]) for r in metrics or []
            if all(isinstance(r.get(k), int) and not isinstance(r.get(k), bool) for k in ("step", "epoch"))]
    end = next((st for st, ep in recs if ep == at), None)  # the last step of the warm-up, once recorded
    if (step > end) if end is not None else max((ep for _, ep in recs), default=0) > at:
        return None
    done = max((ep for st, ep in recs if st <= step), default=0)  # epochs finished at the snapshot
    return (f"Flag: at this step the run is still in its plain warm-up ({done} of {at} epochs): the memberships "
            f"are not set yet (the co-clustering comes at the start of epoch {at + 1}).")


def below_weights_flag(ag: AgreementVerdict | None) -> str | None:
    """The flag sentence when the memberships agree with the reference less than the weights do.

    >>> ag = AgreementVerdict("coarse", "coarse", None, None, 9, "memberships", 0.49, 0.01, 0.83, 0.01,
    ...                       True, True, False, memberships_below_weights=True)
    >>> below_weights_flag(ag)
    "Flag: the memberships agree with the coarse classes (9 groups) less than the run's own weights do (ARI 0.490 < 0.830)."
    """
    if ag is None or not ag.memberships_below_weights:
        return None
    return (f"Flag: the memberships agree with {ag.reference_label()} less than the run's own weights do "
            f"(ARI {_fmt_ari(ag.memberships_ari)} < {_fmt_ari(ag.weights_ari)}).")


# ---------------------------------------------------------------------------------------------


def run_verdict(run, report=None, threshold: float = 0.5, step: int | None = None) -> Verdict:
    """Answer :data:`QUESTIONS` for a loaded run (:func:`analysis.run.load_run`).

    Parameters
    ----------
    run : :class:`analysis.run.Run`
    report : :class:`analysis.compare.ComparisonReport`, optional
        The comparison with reference hierarchies (memberships and weights side by side when it
        holds both); ``None`` answers the second question "Not measured" and computes nothing
        expensive.
    threshold : float
        Membership threshold tau in (0, 1] for branches, dead and full nodes.
    step : int, optional
        Snapshot step for the branches (default: the report's step, else the last snapshot).

    Returns
    -------
    Verdict
    """
    threshold = check_tau(threshold)
    if step is None and report is not None and report.step is not None:
        step = int(report.step)
    if step is not None and int(step) not in run.steps:
        raise UserError(f"{run.path}: no snapshot at step {step}")
    sets = _branch_verdicts(run, threshold, step) if run.steps else []
    s1, formed = _branches_sentence(run, sets, threshold, step)
    ag = _agreement(report) if report is not None else None
    s2, agree = _agreement_sentence(run, report, ag)
    used = None if not run.steps else (int(step) if step is not None else int(run.steps[-1]))
    depth, k_used, k = _tree_shape(run, threshold, step)
    s1 += tree_phrase(depth, k_used, k)
    warm = warmup_flag(run.config, run.metrics, used) if run.node_sets else None
    # memberships not set yet lose nothing to the weights: the warm-up flag says why they are empty
    flag = None if warm else below_weights_flag(ag)
    flags = [f for f in (warm, flag) if f]
    if warm:
        s1 += " " + warm
    if flag:
        s2 += " " + flag
    return Verdict(sets, ag, [s1, s2], threshold, used, formed, agree, depth, k_used, k, flags)
