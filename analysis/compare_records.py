"""The records of a comparison (what ``blockout compare --json`` prints) and its headline row.

:class:`ComparisonReport` holds one :class:`HierarchyComparison` per network hierarchy
(memberships, weights), each with a :class:`PartitionComparison` per reference grouping and a
:class:`DistanceComparison` per reference distance matrix; ``to_dict``/``from_dict`` are the JSON
form documented in ``docs/compare.md``. :func:`analysis.compare.compare_run` fills them,
:mod:`analysis.compare_report` prints them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Mapping

from analysis.errors import UserError
from analysis.stats import PARTITION_METRICS, Statistic


@dataclass
class PartitionComparison:
    """One network partition against one reference grouping: ARI, NMI and FMI with their nulls."""

    reference: str
    kind: str
    depth: int | None
    n_groups: int
    n_groups_network: int
    scores: dict[str, Statistic]
    #: one class against all the rest (:func:`analysis.stats.degenerate_partition`): shown, never the best row
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
    """The network's class distances against one reference's: Spearman with its Mantel null."""

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


def best_partition(hierarchy: HierarchyComparison, metric: str = "ari") -> PartitionComparison | None:
    """The best-supported reference of one hierarchy: the headline row of a table.

    Among the non-degenerate references (:func:`analysis.stats.degenerate_partition`) with an observed value,
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
