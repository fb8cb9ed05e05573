"""Text form of a comparison: the table ``blockout compare`` prints and its notes.

Formatting only: the numbers come from :func:`analysis.compare.compare_run` (records in
:mod:`analysis.compare_records`, statistics in :mod:`analysis.stats`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from analysis.compare_records import ComparisonReport, best_partition
from analysis.stats import Statistic


def degenerate_note(grouping, class_names: Sequence[str]) -> str:
    """The ``notes`` line saying why a one-against-the-rest reference is never the headline.

    >>> from types import SimpleNamespace
    >>> degenerate_note(SimpleNamespace(name="d1", labels=[0, 1, 1]), ["cat", "dog", "fox"])[:41]
    'd1 is one class (cat) against the other 2'
    """
    labels = np.asarray(grouping.labels)
    uniq, sizes = np.unique(labels, return_counts=True)
    alone = int(np.flatnonzero(labels == uniq[int(np.argmin(sizes))])[0])
    name = class_names[alone] if alone < len(class_names) else f"class {alone}"
    return (f"{grouping.name} is one class ({name}) against the other {labels.size - 1}: kept in the table "
            f"(marked 1-vs-rest) but never chosen as the best row, since any dendrogram whose top split "
            f"isolates that one class scores ARI 1 there")


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
