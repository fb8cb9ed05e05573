"""The whole WordNet 3.0 noun hierarchy, shipped with the package and loaded lazily.

``analysis/data/wordnet_nouns.npz`` (built by ``scripts/build_wordnet.py`` from the WordNet 3.0
database files; licence in ``analysis/data/WORDNET_LICENSE.txt``) holds every one of the 82 115
noun synsets as flat arrays, read with ``numpy.load(..., allow_pickle=False)``:

=============== ======== ===============================================================
member          dtype    meaning (``N`` synsets in offset order, ``L`` lemma slots)
=============== ======== ===============================================================
``offset``      int32    (N,) WordNet offset; the ImageNet id is ``n%08d``
``lemma_count`` uint8    (N,) lemmas per synset (synset ``i`` owns the next ``lemma_count[i]`` slots)
``lemmas``      uint8    UTF-8 of the L lemmas (WordNet's order per synset), ``\\n``-joined
``lemma_sense`` uint8    (L,) sense number of the synset among the noun senses of that lemma
``hyper_count`` uint8    (N,) number of hypernyms (``@``) of each synset ...
``hyper``       int32    ... as synset rows, concatenated
``inst_count``  uint8    (N,) number of instance hypernyms (``@i``) ...
``inst``        int32    ... as synset rows, concatenated
``min_depth``   uint8    (N,) fewest edges to ``entity.n.01`` (hypernyms and instance hypernyms)
``max_depth``   uint8    (N,) most edges to ``entity.n.01``
``index_words`` uint8    UTF-8 of the W lemma keys (lower case), sorted, ``\\n``-joined ...
``index_count`` uint8    (W,) ... number of noun senses of each word ...
``index_rows``  int32    ... synset rows, most frequent sense first (``index.noun``; read lazily)
``definitions`` uint8    UTF-8 of the N glosses without examples, ``\\n``-joined (read lazily)
``meta``        uint8    UTF-8 JSON: format, version, counts
=============== ======== ===============================================================

The nltk name of a synset is its first lemma in lower case, ``.n.``, and the synset's sense
number for that lemma (``tiger.n.02``); a word's senses, most frequent first, are the synsets
holding that lemma ordered by ``lemma_sense`` (exactly ``index.noun``, which the build checks);
the ``index_*`` members hold that inverse ready-made so a word lookup costs no rebuild.
Names are kept as strings throughout (the similarity code is written over names).
"""

from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from analysis.errors import UserError

FORMAT = "blockout-wordnet-nouns"
FORMAT_VERSION = 1
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUNDLED_PATH = DATA_DIR / "wordnet_nouns.npz"
LICENSE_PATH = DATA_DIR / "WORDNET_LICENSE.txt"

_NAME = re.compile(r"^(?P<lemma>.+)\.n\.(?P<sense>\d+)$")
_WNID = re.compile(r"^n(?P<offset>\d{8})$")
_MEMBERS = ("meta", "offset", "lemma_count", "lemmas", "lemma_sense", "hyper_count", "hyper", "inst_count", "inst",
            "min_depth", "max_depth")


def parse_wnid(text: str) -> int | None:
    """Offset of an ImageNet-style WordNet id, or None when ``text`` is not one.

    >>> parse_wnid("n02129604"), parse_wnid("tiger")
    (2129604, None)
    """
    m = _WNID.match(str(text).strip())
    return int(m.group("offset")) if m else None


def _pointers(counts: np.ndarray) -> list[int]:
    """CSR pointers (length n + 1) of per-row counts.

    >>> _pointers(np.array([2, 0, 1], np.uint8))
    [0, 2, 2, 3]
    """
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).tolist()


def word_key(word: str) -> str:
    """A class name as a WordNet lemma key: lower case, spaces and hyphens as underscores.

    >>> word_key(" Pickup Truck"), word_key("T-shirt")
    ('pickup_truck', 't_shirt')
    """
    return re.sub(r"[\s\-]+", "_", str(word).strip().lower())


@dataclass(frozen=True)
class SynsetInfo:
    """One noun synset, for display (the similarity code reads the arrays directly)."""

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


class WordNet:
    """The WordNet 3.0 noun hierarchy: lookups by name, WordNet id and word; hypernym walks.

    Build one with :func:`load_wordnet` (cached) or ``WordNet.load(path)``.
    """

    def __init__(self, arrays: dict[str, np.ndarray], source: str = "WordNet", lazy=None):
        try:
            meta = json.loads(bytes(arrays["meta"]).decode("utf-8"))
        except (KeyError, ValueError) as exc:
            raise UserError(f"{source} is not a Blockout WordNet file ({exc!r})") from None
        if meta.get("format") != FORMAT:
            raise UserError(f"{source} is not a Blockout WordNet file (format != {FORMAT!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{source} has WordNet format_version {meta.get('format_version')!r}; "
                            f"this version reads {FORMAT_VERSION}")
        self.meta = meta
        self.source = source
        self.wordnet_version = str(meta.get("wordnet_version", "3.0"))
        self._offset = arrays["offset"]
        lp = _pointers(arrays["lemma_count"])
        self._lemma_ptr = lp
        self._lemmas = bytes(arrays["lemmas"]).decode("utf-8").split("\n")
        self._lemma_sense = arrays["lemma_sense"]
        sense = self._lemma_sense[np.asarray(lp[:-1])].tolist()
        first = [self._lemmas[p] for p in lp[:-1]]
        self.names: list[str] = [f"{w.lower()}.n.{s:02d}" for w, s in zip(first, sense)]
        self._row = {n: i for i, n in enumerate(self.names)}
        n = len(self.names)
        if len(self._lemmas) != len(self._lemma_sense) or lp[-1] != len(self._lemmas) or len(self._row) != n:
            raise UserError(f"{source} is inconsistent (lemma table or duplicate names)")
        hp, h = _pointers(arrays["hyper_count"]), arrays["hyper"].tolist()
        ip, ins = _pointers(arrays["inst_count"]), arrays["inst"].tolist()
        if hp[-1] != len(h) or ip[-1] != len(ins) or not (len(hp) == len(ip) == n + 1):
            raise UserError(f"{source} is inconsistent (hypernym tables)")
        # flat lists + pointers, sliced on demand (no per-synset objects built at load time)
        self._hp, self._h, self._ip, self._ins = hp, h, ip, ins
        self._min_depth = arrays["min_depth"].tolist()
        self._max_depth = arrays["max_depth"].tolist()
        self._lazy = lazy  # reads the members only some callers need (definitions, word index)
        self._definitions: list[str] | None = None
        self._words: list[str] | None = None
        self._up: dict[str, dict[str, int]] = {}
        self._info: dict[str, SynsetInfo] = {}

    def _hyper(self, i: int) -> list[int]:
        return self._h[self._hp[i]:self._hp[i + 1]]

    def _inst(self, i: int) -> list[int]:
        return self._ins[self._ip[i]:self._ip[i + 1]]

    def _parents(self, i: int) -> list[int]:
        return self._h[self._hp[i]:self._hp[i + 1]] + self._ins[self._ip[i]:self._ip[i + 1]]

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike = BUNDLED_PATH) -> "WordNet":
        """Read a WordNet ``.npz`` (definitions are read only when first asked for)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"WordNet data not found: {path} (rebuild it with scripts/build_wordnet.py)")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in _MEMBERS}
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path} is not a readable WordNet file ({exc})") from None

        def lazy(*names: str) -> dict[str, np.ndarray]:
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in names}
            except (OSError, ValueError, KeyError) as exc:
                raise UserError(f"{path} is not a readable WordNet file ({exc})") from None

        return cls(arrays, str(path), lazy)

    # -- lookups -------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._row

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def _index(self, name: str) -> int:
        try:
            return self._row[name]
        except KeyError:
            raise UserError(f"WordNet 3.0 has no noun synset {name!r}") from None

    def __getitem__(self, name: str) -> SynsetInfo:
        info = self._info.get(name)
        if info is None:
            i = self._index(name)
            lp = self._lemma_ptr
            info = SynsetInfo(name, int(self._offset[i]), tuple(self._lemmas[lp[i]:lp[i + 1]]), self.definition(name),
                              tuple(self.names[j] for j in self._hyper(i)), tuple(self.names[j] for j in self._inst(i)),
                              self._min_depth[i], self._max_depth[i])
            self._info[name] = info
        return info

    def definition(self, name: str) -> str:
        """The gloss of a synset (without its examples)."""
        if self._definitions is None:
            blob = self._lazy("definitions")["definitions"] if self._lazy else np.zeros(0, np.uint8)
            self._definitions = bytes(blob).decode("utf-8").split("\n") if blob.size else [""] * len(self)
        return self._definitions[self._index(name)]

    def parents(self, name: str) -> tuple[str, ...]:
        """Hypernyms then instance hypernyms of ``name``."""
        i = self._index(name)
        return tuple(self.names[j] for j in self._parents(i))

    def min_depth(self, name: str) -> int:
        return self._min_depth[self._index(name)]

    def max_depth(self, name: str) -> int:
        return self._max_depth[self._index(name)]

    def wnid(self, name: str) -> str:
        return f"n{int(self._offset[self._index(name)]):08d}"

    def by_wnid(self, wnid: str | None) -> str | None:
        """Synset name of an ImageNet-style id (``n02129604``), or None.

        >>> load_wordnet().by_wnid("n02129604")
        'tiger.n.02'
        """
        offset = parse_wnid(wnid) if wnid else None
        if offset is None:
            return None
        i = int(np.searchsorted(self._offset, offset))
        return self.names[i] if i < len(self._offset) and int(self._offset[i]) == offset else None

    def synset(self, text: str) -> str:
        """The synset named by ``text`` (``tiger.n.02`` or ``n02129604``), or a UserError.

        >>> load_wordnet().synset("n02129604"), load_wordnet().synset("Tiger.n.02")
        ('tiger.n.02', 'tiger.n.02')
        """
        text = str(text).strip()
        if parse_wnid(text) is not None:
            found = self.by_wnid(text)
            if found is None:
                raise UserError(f"WordNet 3.0 has no noun synset with id {text!r}")
            return found
        m = _NAME.match(text)
        if not m:
            raise UserError(f"not a noun synset name or WordNet id: {text!r} (expected e.g. 'tiger.n.02' or 'n02129604')")
        name = f"{m.group('lemma').lower()}.n.{int(m.group('sense')):02d}"
        if name not in self._row:
            raise UserError(f"WordNet 3.0 has no noun synset {text!r}")
        return name

    def senses(self, word: str) -> list[str]:
        """The noun synsets of a word, most frequent sense first (empty when not a noun).

        >>> load_wordnet().senses("tiger"), load_wordnet().senses("Lawn mower")
        (['tiger.n.01', 'tiger.n.02'], ['lawn_mower.n.01'])
        """
        if self._words is None:
            if self._lazy is None:
                raise UserError(f"{self.source} has no word index")
            z = self._lazy("index_words", "index_count", "index_rows")
            self._index_ptr, self._index_rows = _pointers(z["index_count"]), z["index_rows"]
            self._words = bytes(z["index_words"]).decode("utf-8").split("\n")
        plain = re.sub(r"\s+", "_", str(word).strip().lower())
        for key in dict.fromkeys((plain, word_key(word))):  # 'agent-in-place' keeps its hyphens
            k = bisect.bisect_left(self._words, key)
            if k < len(self._words) and self._words[k] == key:
                rows = self._index_rows[self._index_ptr[k]:self._index_ptr[k + 1]]
                return [self.names[int(i)] for i in rows]
        return []

    # -- walks ---------------------------------------------------------------------------------
    def up_distances(self, name: str) -> dict[str, int]:
        """Every ancestor of ``name`` (itself included, at 0) -> fewest hypernym edges to it.

        The breadth-first walk of nltk's ``Synset._shortest_hypernym_paths``.
        """
        if name not in self._up:
            names, parents = self.names, self._parents
            dist: dict[int, int] = {}
            frontier, d = [self._index(name)], 0
            while frontier:
                nxt = []
                for s in frontier:
                    if s in dist:
                        continue
                    dist[s] = d
                    nxt.extend(parents(s))
                frontier, d = nxt, d + 1
            self._up[name] = {names[s]: v for s, v in dist.items()}
        return self._up[name]

    def hypernym_paths(self, name: str) -> list[list[str]]:
        """Every root-to-``name`` path (root first), as nltk's ``Synset.hypernym_paths``."""
        parents = self.parents(name)
        if not parents:
            return [[name]]
        return [path + [name] for p in parents for path in self.hypernym_paths(p)]

    def leaves(self, under: str = "entity.n.01", instances: bool = False) -> list[str]:
        """Synsets under ``under`` (inclusive) without hyponyms, in offset order; instances
        (named individuals such as ``einstein.n.01``) only with ``instances``.

        >>> load_wordnet().leaves("big_cat.n.01")[:3]
        ['lion_cub.n.01', 'tiger_cub.n.01', 'leopardess.n.01']
        """
        top = self._index(under)
        out, seen, todo = [], set(), [top]
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            kids = [self._row[c] for c in self.hyponyms(self.names[i])]
            if not instances:
                kids = [k for k in kids if self._hyper(k)]
            if kids:
                todo.extend(kids)
            elif instances or self._hyper(i) or i == top:
                out.append(i)
        return [self.names[i] for i in sorted(out)]

    def hyponyms(self, name: str) -> list[str]:
        """Direct hyponyms and instance hyponyms of ``name`` (inverse of :meth:`parents`)."""
        if not hasattr(self, "_children"):
            children: list[list[int]] = [[] for _ in self.names]
            for i in range(len(self.names)):
                for p in self._parents(i):
                    children[p].append(i)
            self._children = children
        return [self.names[j] for j in self._children[self._index(name)]]


@lru_cache(maxsize=1)
def load_wordnet() -> WordNet:
    """The shipped WordNet 3.0 noun hierarchy (loaded once per process)."""
    return WordNet.load(BUNDLED_PATH)
