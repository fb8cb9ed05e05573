"""A compact WordNet-derived snapshot: the hypernym DAG above a set of classes.

A snapshot holds every synset on some hypernym path of its label synsets (so depths,
lowest common hypernyms and Wu-Palmer similarity computed on it equal those of full WordNet):
name, offset, lemma names, definition, hypernyms and instance hypernyms (by name), and the
minimum and maximum depth (edges to the root ``entity.n.01``). JSON layout::

    {"format": "blockout-wordnet-snapshot", "format_version": 1, "wordnet_version": "3.0",
     "label_sets": {"cifar100": {"class_names": [...], "synsets": [...]}, ...},
     "synsets": {"tiger.n.02": {"offset": 2129604, "wnid": "n02129604", "lemmas": [...],
                 "definition": "...", "hypernyms": [...], "instance_hypernyms": [...],
                 "min_depth": 13, "max_depth": 13}, ...}}

The snapshot for the bundled label sets ships as ``analysis/data/wordnet_snapshot.json``;
``scripts/build_wordnet_snapshot.py`` rebuilds one for any label set from WordNet 3.0 files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from analysis.errors import UserError
from analysis.runfolder import atomic_write_text, read_json

FORMAT = "blockout-wordnet-snapshot"
FORMAT_VERSION = 1
BUNDLED_PATH = Path(__file__).resolve().parent.parent / "data" / "wordnet_snapshot.json"


@dataclass(frozen=True)
class SynsetInfo:
    """One synset of a snapshot."""

    name: str
    offset: int
    lemmas: tuple[str, ...]
    definition: str
    hypernyms: tuple[str, ...]
    instance_hypernyms: tuple[str, ...]
    min_depth: int
    max_depth: int

    @property
    def wnid(self) -> str:
        return f"n{self.offset:08d}"

    @property
    def parents(self) -> tuple[str, ...]:
        """Hypernyms then instance hypernyms (nltk's order for paths and depths)."""
        return self.hypernyms + self.instance_hypernyms


class Snapshot:
    """The hypernym DAG of a snapshot, with lookups by name, WordNet id and label set."""

    def __init__(self, synsets: Mapping[str, SynsetInfo], label_sets: Mapping[str, Mapping[str, list]] | None = None,
                 wordnet_version: str = "3.0"):
        self.synsets = dict(synsets)
        self.label_sets = {k: {"class_names": list(v["class_names"]), "synsets": list(v["synsets"])}
                           for k, v in (label_sets or {}).items()}
        self.wordnet_version = wordnet_version
        self._by_wnid = {s.wnid: s.name for s in self.synsets.values()}
        self._up: dict[str, dict[str, int]] = {}
        missing = sorted({p for s in self.synsets.values() for p in s.parents} - set(self.synsets))
        if missing:
            raise UserError(f"WordNet snapshot is not closed under hypernyms: missing {missing[:5]}")

    def __contains__(self, name: str) -> bool:
        return name in self.synsets

    def __len__(self) -> int:
        return len(self.synsets)

    def __getitem__(self, name: str) -> SynsetInfo:
        try:
            return self.synsets[name]
        except KeyError:
            raise UserError(f"synset {name!r} is not in the WordNet snapshot") from None

    def by_wnid(self, wnid: str) -> str | None:
        """Synset name of an ImageNet-style id (``n02129604``), or None."""
        return self._by_wnid.get(wnid)

    def up_distances(self, name: str) -> dict[str, int]:
        """Every ancestor of ``name`` (itself included, at 0) -> fewest hypernym edges to it.

        The breadth-first walk of nltk's ``Synset._shortest_hypernym_paths``.
        """
        if name not in self._up:
            dist: dict[str, int] = {}
            frontier, d = [name], 0
            while frontier:
                nxt = []
                for s in frontier:
                    if s in dist:
                        continue
                    dist[s] = d
                    nxt.extend(self[s].parents)
                frontier, d = nxt, d + 1
            self._up[name] = dist
        return self._up[name]

    def hypernym_paths(self, name: str) -> list[list[str]]:
        """Every root-to-``name`` path (root first), as nltk's ``Synset.hypernym_paths``."""
        parents = self[name].parents
        if not parents:
            return [[name]]
        return [path + [name] for p in parents for path in self.hypernym_paths(p)]

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "wordnet_version": self.wordnet_version,
            "label_sets": self.label_sets,
            "synsets": {
                n: {"offset": s.offset, "wnid": s.wnid, "lemmas": list(s.lemmas), "definition": s.definition,
                    "hypernyms": list(s.hypernyms), "instance_hypernyms": list(s.instance_hypernyms),
                    "min_depth": s.min_depth, "max_depth": s.max_depth}
                for n, s in sorted(self.synsets.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "snapshot") -> "Snapshot":
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise UserError(f"{source} is not a Blockout WordNet snapshot (format != {FORMAT!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{source} has snapshot format_version {data.get('format_version')!r}; "
                            f"this version reads {FORMAT_VERSION}")
        try:
            synsets = {
                n: SynsetInfo(n, int(s["offset"]), tuple(s["lemmas"]), str(s["definition"]),
                              tuple(s["hypernyms"]), tuple(s["instance_hypernyms"]),
                              int(s["min_depth"]), int(s["max_depth"]))
                for n, s in data["synsets"].items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{source} has a malformed synset entry ({exc!r})") from None
        return cls(synsets, data.get("label_sets") or {}, str(data.get("wordnet_version", "3.0")))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False, sort_keys=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Snapshot":
        return cls.from_dict(read_json(path, "WordNet snapshot"), str(path))


@lru_cache(maxsize=1)
def bundled_snapshot() -> Snapshot:
    """The snapshot shipped for the bundled label sets (CIFAR-100, CIFAR-10)."""
    return Snapshot.load(BUNDLED_PATH)


def _depths(parents: Mapping[str, Sequence[str]]) -> tuple[dict[str, int], dict[str, int]]:
    """Min and max depth of every synset of a DAG closed under parents (roots at depth 0)."""
    lo: dict[str, int] = {}
    hi: dict[str, int] = {}

    def visit(n: str, stack: frozenset) -> None:
        if n in lo:
            return
        if n in stack:
            raise UserError(f"hypernym cycle at {n!r}")
        ps = parents[n]
        for p in ps:
            visit(p, stack | {n})
        lo[n] = 1 + min(lo[p] for p in ps) if ps else 0
        hi[n] = 1 + max(hi[p] for p in ps) if ps else 0

    for n in parents:
        visit(n, frozenset())
    return lo, hi


def build_snapshot(db, names: Iterable[str], label_sets: Mapping[str, Mapping[str, list]] | None = None) -> Snapshot:
    """Snapshot of the hypernym closure of ``names`` (synset names or wnids) read from ``db``.

    ``db`` is an :class:`analysis.wordnet.database.NounDatabase` (or anything with
    ``synset(name)`` and ``synset_at(offset)`` returning :class:`RawSynset`).
    """
    raws = {}
    todo = [db.synset(n) for n in names]
    while todo:
        raw = todo.pop()
        if raw.name in raws:
            continue
        raws[raw.name] = raw
        todo.extend(db.synset_at(o) for o in raw.hypernyms + raw.instance_hypernyms)
    names_of = {r.offset: r.name for r in raws.values()}
    parents = {n: [names_of[o] for o in r.hypernyms + r.instance_hypernyms] for n, r in raws.items()}
    lo, hi = _depths(parents)
    synsets = {
        n: SynsetInfo(n, r.offset, tuple(r.lemmas), r.definition,
                      tuple(names_of[o] for o in r.hypernyms), tuple(names_of[o] for o in r.instance_hypernyms),
                      lo[n], hi[n])
        for n, r in raws.items()
    }
    return Snapshot(synsets, label_sets)


def merge_snapshots(a: Snapshot, b: Snapshot) -> Snapshot:
    """The union of two snapshots (same WordNet version); ``b`` wins on label-set names."""
    return Snapshot({**a.synsets, **b.synsets}, {**a.label_sets, **b.label_sets}, a.wordnet_version)
