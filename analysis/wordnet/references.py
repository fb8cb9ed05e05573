"""Reference groupings of a run's classes: WordNet hypernyms at each depth, and coarse labels.

Path choice: a synset with several hypernyms has several root paths. The grouping at depth d
puts a class under the ancestor at depth d of its *longest* root path (ties: the path whose
sequence of synset names sorts first). The longest path is WordNet's most detailed taxonomy
(e.g. ``person.n.01`` under ``organism.n.01`` rather than ``causal_agent.n.01``), and it agrees
with the ``max_depth`` nltk uses for Wu-Palmer depths. A class whose path is shorter than d
stays in its own group (its path ends at the class itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from analysis.errors import UserError
from analysis.wordnet.nouns import WordNet, load_wordnet
from analysis.wordnet.resolve import resolve_class_synsets
from analysis.wordnet.similarity import lowest_common_hypernym, wordnet_distance_matrix


@dataclass
class ReferenceGrouping:
    """A partition of the classes used as a reference.

    ``labels[i]`` is the group index of class i, ``group_names[g]`` the name of group g
    (a synset name for WordNet groupings), ``depth`` the WordNet depth (None for coarse).
    """

    name: str
    labels: np.ndarray
    group_names: list[str]
    depth: int | None = None
    kind: str = "wordnet"
    meta: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)


def class_synsets(class_names: Sequence[str], wnids: Sequence[str | None] | None = None,
                  snapshot: WordNet | None = None, overrides=None) -> list[str | None]:
    """The synset of each class (None where unknown); see :mod:`analysis.wordnet.resolve` for
    the order (override, WordNet id, curated table, synset name, most frequent sense).

    >>> class_synsets(["tiger", "maple_tree", "zebra", "dog.n.01", "T-shirt/top", "no such class"])
    ['tiger.n.02', 'maple.n.02', 'zebra.n.01', 'dog.n.01', 'jersey.n.03', None]
    """
    return [r.synset for r in resolve_class_synsets(class_names, wnids, overrides, snapshot)]


def require_synsets(class_names: Sequence[str], synsets: Sequence[str | None]) -> list[str]:
    """The synsets, or a UserError naming the classes without one."""
    missing = [c for c, s in zip(class_names, synsets) if s is None]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise UserError(f"no WordNet synset for class(es) {', '.join(map(repr, missing[:5]))}{more}: not a WordNet "
                        "noun, synset name or wnid; map them with --synsets FILE "
                        '(JSON {"class name": "synset.n.01" or "n01234567"})')
    return list(synsets)  # type: ignore[arg-type]


def chosen_path(snap: WordNet, name: str) -> list[str]:
    """The root-to-synset path used for depth groupings: longest, then smallest by names.

    >>> chosen_path(load_wordnet(), "tiger.n.02")[:3]
    ['entity.n.01', 'physical_entity.n.01', 'object.n.01']
    """
    return min(snap.hypernym_paths(name), key=lambda p: (-len(p), p))


def wordnet_depth_groupings(snap: WordNet, synsets: Sequence[str], min_groups: int = 2,
                            drop_trivial: bool = True) -> list[ReferenceGrouping]:
    """Groupings by the ancestor at each depth d = 1, 2, ... of each class's chosen path.

    Depths whose partition equals the previous depth's are skipped (``meta['depths']`` lists
    every depth giving that partition). With ``drop_trivial`` the partitions with fewer than
    ``min_groups`` groups or with every class alone are left out (no agreement is measurable).
    """
    paths = [chosen_path(snap, s) for s in synsets]
    n = len(synsets)
    max_len = max(len(p) for p in paths)
    out: list[ReferenceGrouping] = []
    prev_key = None
    for d in range(1, max_len):
        anc = [p[min(d, len(p) - 1)] for p in paths]
        names = list(dict.fromkeys(anc))
        index = {a: g for g, a in enumerate(names)}
        labels = np.array([index[a] for a in anc], dtype=np.int64)
        key = tuple(labels)
        if key == prev_key:
            if out and out[-1].meta.get("key") == key:
                out[-1].meta["depths"].append(d)
            continue
        prev_key = key
        if drop_trivial and (len(names) < min_groups or len(names) == n):
            continue
        out.append(ReferenceGrouping(f"wordnet_d{d}", labels, names, depth=d, kind="wordnet",
                                     meta={"depths": [d], "key": key}))
    for g in out:
        g.meta.pop("key", None)
    return out


def coarse_grouping(coarse_labels: Sequence[int], coarse_names: Sequence[str] | None = None) -> ReferenceGrouping:
    """The dataset's own coarse classes (CIFAR-100's 20 superclasses) as a reference.

    >>> g = coarse_grouping([0, 0, 2, 2], ["a", "b", "c"])
    >>> g.labels.tolist(), g.group_names
    ([0, 0, 1, 1], ['a', 'c'])
    """
    raw = np.asarray(coarse_labels, dtype=np.int64)
    if raw.ndim != 1 or (raw < 0).any():
        raise UserError(f"coarse labels must be non-negative integers per class, got {list(coarse_labels)[:5]}...")
    used, labels = np.unique(raw, return_inverse=True)
    names = [coarse_names[u] if coarse_names is not None and u < len(coarse_names) else str(u) for u in used]
    return ReferenceGrouping("coarse", labels.astype(np.int64), names, depth=None, kind="coarse")


def wordnet_distances(snap: WordNet, synsets: Sequence[str]) -> np.ndarray:
    """Square ``1 - Wu-Palmer`` distances between the classes' synsets."""
    return wordnet_distance_matrix(snap, synsets)


def lch_labeler(snap: WordNet | None = None):
    """A function ``label(synset_names) -> 'name' or None`` for inner tree vertices.

    >>> label = lch_labeler()
    >>> label(["tiger.n.02", "lion.n.01", "leopard.n.02"])
    'big_cat.n.01'
    """
    snap = snap if snap is not None else load_wordnet()

    def label(names):
        names = [n for n in names if n is not None]
        return lowest_common_hypernym(snap, names) if names else None

    return label


def class_lch_labeler(class_names: Sequence[str], wnids: Sequence[str | None] | None = None,
                      snapshot: WordNet | None = None, overrides=None):
    """A ``label(class_indices) -> synset name | None`` function for :mod:`analysis.graphs`.

    Classes without a synset are ignored; None when no class of the vertex has one.

    >>> label = class_lch_labeler(["tiger", "lion", "zebra", "table"])
    >>> label([0, 1]), label([0, 1, 2]), label([0, 3]), label([2])
    ('big_cat.n.01', 'placental.n.01', 'whole.n.02', 'zebra.n.01')
    """
    snap = snapshot if snapshot is not None else load_wordnet()
    synsets = class_synsets(class_names, wnids, snap, overrides)
    base = lch_labeler(snap)

    def label(indices):
        return base([synsets[int(i)] for i in indices])

    return label
