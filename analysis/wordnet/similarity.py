"""Similarity on the WordNet 3.0 noun hierarchy, with nltk's exact semantics.

nltk conventions reproduced here (``nltk/corpus/reader/wordnet.py``, ``Synset``):

* depth counts edges from the root ``entity.n.01`` (depth 0); ``min_depth``/``max_depth`` are
  the shortest/longest root path; hypernyms and instance hypernyms both count as parents;
* ``lowest_common_hypernyms``: among the common hypernyms (each synset counts as its own
  hypernym), those of greatest ``max_depth`` (or ``min_depth`` with ``use_min_depth``), sorted
  by name;
* ``shortest_path_distance(a, b)``: min over common ancestors c of up(a, c) + up(b, c);
* ``wup_similarity(a, b)``: subsumer = ``a`` if ``a`` is among the lowest common hypernyms by
  *min* depth, else the first of them by name; ``depth = max_depth(subsumer) + 1``;
  ``2 depth / (d(a, subsumer) + d(b, subsumer) + 2 depth)``. It is not always symmetric
  (the subsumer choice depends on argument order); matrices use ``wup(a, b)`` for a before b.

No simulated root is needed: all WordNet 3.0 nouns share ``entity.n.01``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from analysis.wordnet.nouns import WordNet


def common_hypernyms(snap: WordNet, a: str, b: str) -> set[str]:
    """Synsets that are hypernyms (or the synsets themselves) of both ``a`` and ``b``."""
    return set(snap.up_distances(a)) & set(snap.up_distances(b))


def lowest_common_hypernyms(snap: WordNet, a: str, b: str, use_min_depth: bool = False) -> list[str]:
    """nltk's ``Synset.lowest_common_hypernyms`` (sorted names)."""
    common = common_hypernyms(snap, a, b)
    if not common:
        return []
    key = snap.min_depth if use_min_depth else snap.max_depth
    best = max(key(s) for s in common)
    return sorted(s for s in common if key(s) == best)


def lowest_common_hypernym(snap: WordNet, names: Iterable[str]) -> str | None:
    """The deepest synset (greatest max depth, then name) that subsumes every synset in ``names``.

    Generalises nltk's ``lowest_common_hypernyms`` to a set; used to label inner tree vertices.
    """
    names = list(dict.fromkeys(names))
    if not names:
        return None
    common = set(snap.up_distances(names[0]))
    for n in names[1:]:
        common &= set(snap.up_distances(n))
    if not common:
        return None
    return min(common, key=lambda s: (-snap.max_depth(s), s))


def shortest_path_distance(snap: WordNet, a: str, b: str) -> int | None:
    """nltk's ``Synset.shortest_path_distance`` (edges through a common ancestor)."""
    if a == b:
        return 0
    da, db = snap.up_distances(a), snap.up_distances(b)
    dists = [da[c] + db[c] for c in da.keys() & db.keys()]
    return min(dists) if dists else None


def wup_similarity(snap: WordNet, a: str, b: str) -> float | None:
    """nltk's ``Synset.wup_similarity(a, b)`` for WordNet 3.0 nouns."""
    subsumers = lowest_common_hypernyms(snap, a, b, use_min_depth=True)
    if not subsumers:
        return None
    subsumer = a if a in subsumers else subsumers[0]
    depth = snap.max_depth(subsumer) + 1
    len1 = shortest_path_distance(snap, a, subsumer)
    len2 = shortest_path_distance(snap, b, subsumer)
    if len1 is None or len2 is None:
        return None
    return (2.0 * depth) / (len1 + len2 + 2 * depth)


def path_similarity(snap: WordNet, a: str, b: str) -> float | None:
    """nltk's ``Synset.path_similarity``: 1 / (shortest path + 1)."""
    d = shortest_path_distance(snap, a, b)
    return None if d is None else 1.0 / (d + 1)


def wup_matrix_pairwise(snap: WordNet, names: Sequence[str]) -> np.ndarray:
    """:func:`wup_matrix` one pair at a time with :func:`wup_similarity` (the reference the tests
    hold the vectorised version to; slow beyond a few hundred classes)."""
    n = len(names)
    out = np.ones((n, n))
    cache: dict[tuple[str, str], float] = {}
    for i in range(n):
        for j in range(i + 1, n):
            key = (names[i], names[j])
            if key not in cache:
                w = wup_similarity(snap, *key)
                cache[key] = np.nan if w is None else w
            out[i, j] = out[j, i] = cache[key]
    return out


def wup_matrix(snap: WordNet, names: Sequence[str]) -> np.ndarray:
    """Square Wu-Palmer similarity matrix, entry (i, j) = (j, i) = ``wup(names[i], names[j])`` for i < j.

    Equal, float for float, to :func:`wup_matrix_pairwise` (nltk's semantics), but vectorised
    for 1000 classes (ImageNet): the subsumer of a pair is the first common hypernym in the
    order (min depth descending, name ascending), found for all pairs at once by walking the
    hypernyms in that order and claiming the still-unassigned pairs among the classes below
    each (sum of squared class counts per hypernym, a few million cells); the path lengths
    to the subsumer are only needed for (class, own ancestor) pairs, a few per class.
    The diagonal is 1.

    >>> from analysis.wordnet.nouns import load_wordnet
    >>> w = wup_matrix(load_wordnet(), ["tiger.n.02", "lion.n.01", "tiger.n.02"])
    >>> round(float(w[0, 1]), 4), float(w[0, 2])
    (0.9333, 1.0)
    """
    names = list(names)
    n = len(names)
    uniq = list(dict.fromkeys(names))
    pos = {u: k for k, u in enumerate(uniq)}
    cls = np.array([pos[x] for x in names], dtype=np.int64)
    U = len(uniq)
    up = [snap.up_distances(u) for u in uniq]
    anc = sorted(set().union(*up) if up else set(), key=lambda c: (-snap.min_depth(c), c))
    aidx = {c: k for k, c in enumerate(anc)}
    members: list[list[int]] = [[] for _ in anc]
    for k, d in enumerate(up):
        for c in d:
            members[aidx[c]].append(k)
    # sub[a, b]: nltk's lowest_common_hypernyms(a, b, use_min_depth=True)[0] (as an ancestor index)
    sub = np.full((U, U), -1, dtype=np.int64)
    for c, idx in enumerate(members):
        ix = np.ix_(idx, idx)
        block = sub[ix]
        free = block < 0
        if free.any():
            block[free] = c
            sub[ix] = block
    min_d = np.array([snap.min_depth(c) for c in anc], dtype=np.int64)
    max_d = np.array([snap.max_depth(c) for c in anc], dtype=np.int64)
    own = np.array([aidx[u] for u in uniq], dtype=np.int64)
    # nltk takes a itself as the subsumer when a is among those lowest common hypernyms
    is_anc = np.zeros((U, U), dtype=bool)  # is_anc[a, b]: a is a hypernym of b (or b itself)
    for b, d in enumerate(up):
        for c in d:
            if c in pos:
                is_anc[pos[c], b] = True
    valid = sub >= 0
    best = np.where(valid, min_d[np.maximum(sub, 0)], -1)
    subsumer = np.where(is_anc & (min_d[own][:, None] == best), own[:, None], sub)
    # spd[x, s]: shortest_path_distance(x, s) for every ancestor s of class x
    spd = np.full((U, len(anc)), -1, dtype=np.int64)
    for x, d in enumerate(up):
        for s in d:
            spd[x, aidx[s]] = shortest_path_distance(snap, uniq[x], s)
    s_safe = np.maximum(subsumer, 0)
    depth = max_d[s_safe] + 1
    len1 = np.take_along_axis(spd, s_safe, axis=1)  # spd[a, subsumer[a, b]]
    len2 = spd[np.arange(U)[None, :], s_safe]  # spd[b, subsumer[a, b]]
    with np.errstate(invalid="ignore", divide="ignore"):
        wfull = np.where(valid & (len1 >= 0) & (len2 >= 0), (2.0 * depth) / (len1 + len2 + 2 * depth), np.nan)
    ordered = wfull[cls[:, None], cls[None, :]]  # wup(names[i], names[j]) for every ordered pair
    upper = np.triu(ordered, 1)
    out = upper + upper.T
    np.fill_diagonal(out, 1.0)
    return out


def wordnet_distance_matrix(snap: WordNet, names: Sequence[str]) -> np.ndarray:
    """Square distance matrix ``1 - Wu-Palmer`` between the synsets ``names`` (zero diagonal).

    >>> from analysis.wordnet.nouns import load_wordnet
    >>> d = wordnet_distance_matrix(load_wordnet(), ["tiger.n.02", "lion.n.01", "table.n.02"])
    >>> bool(d[0, 1] < d[0, 2]), float(d[0, 0])
    (True, 0.0)
    """
    d = 1.0 - wup_matrix(snap, names)
    np.fill_diagonal(d, 0.0)
    return d
