"""Read WordNet 3.0 noun synsets straight from the database files (``index.noun``, ``data.noun``).

Used by ``scripts/build_wordnet.py`` to build the shipped hierarchy (:mod:`analysis.wordnet.nouns`).

No nltk needed: ``data.noun`` is addressed by byte offset (the synset offset *is* the byte
offset of its line), and ``index.noun`` gives each lemma's senses in order, from which the
nltk-style name ``lemma.n.NN`` follows exactly as nltk builds it (first lemma of the synset,
lower-cased, and the synset's position among that lemma's noun senses).
Format: wndb(5WN), https://wordnet.princeton.edu/documentation/wndb5wn
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from analysis.errors import UserError

_NAME = re.compile(r"^(?P<lemma>.+)\.n\.(?P<sense>\d+)$")
_WNID = re.compile(r"^n(?P<offset>\d{8})$")


@dataclass(frozen=True)
class RawSynset:
    """One noun synset as the database describes it (hypernyms as offsets)."""

    offset: int
    lemmas: tuple[str, ...]
    hypernyms: tuple[int, ...]  # '@' pointers
    instance_hypernyms: tuple[int, ...]  # '@i' pointers
    definition: str
    lexname_index: int = 0
    name: str = field(default="", compare=False)

    @property
    def wnid(self) -> str:
        return wnid_of(self.offset)


def wnid_of(offset: int) -> str:
    """ImageNet-style WordNet id of a noun offset.

    >>> wnid_of(2129604)
    'n02129604'
    """
    return f"n{int(offset):08d}"


def parse_wnid(text: str) -> int | None:
    """Offset of an ImageNet-style WordNet id, or None when ``text`` is not one.

    >>> parse_wnid("n02129604"), parse_wnid("tiger")
    (2129604, None)
    """
    m = _WNID.match(text.strip())
    return int(m.group("offset")) if m else None


def parse_data_line(line: str) -> RawSynset:
    """Parse one ``data.noun`` line (without the nltk-style name, which needs the index).

    >>> s = parse_data_line("02129604 05 n 01 tiger 0 001 @ 02127808 n 0000 | large feline")
    >>> s.offset, s.lemmas, s.hypernyms, s.definition
    (2129604, ('tiger',), (2127808,), 'large feline')
    """
    columns, _, gloss = line.partition("|")
    tok = columns.split()
    offset, lexname_index = int(tok[0]), int(tok[1])
    n_words = int(tok[3], 16)
    lemmas = tuple(tok[4 + 2 * i] for i in range(n_words))
    pos = 4 + 2 * n_words
    n_ptr = int(tok[pos])
    pos += 1
    hyper, inst = [], []
    for _ in range(n_ptr):
        symbol, target, target_pos = tok[pos], int(tok[pos + 1]), tok[pos + 2]
        pos += 4
        if target_pos != "n":
            continue
        if symbol == "@":
            hyper.append(target)
        elif symbol == "@i":
            inst.append(target)
    # As nltk: the gloss without its quoted examples, stripped of '; ' at both ends.
    definition = re.sub(r'["].*?["]', "", gloss.strip()).strip().strip("; ")
    return RawSynset(offset, lemmas, tuple(hyper), tuple(inst), definition, lexname_index)


class NounDatabase:
    """Lazy reader of the WordNet noun database in ``folder`` (``index.noun`` + ``data.noun``)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        for name in ("index.noun", "data.noun"):
            if not (self.folder / name).is_file():
                raise UserError(f"WordNet database file not found: {self.folder / name}")
        self._index: dict[str, list[int]] | None = None
        self._cache: dict[int, RawSynset] = {}
        self._data = open(self.folder / "data.noun", "rb")  # noqa: SIM115 (kept open, closed by close())

    def close(self) -> None:
        self._data.close()

    def __enter__(self) -> "NounDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def index(self) -> dict[str, list[int]]:
        """lemma (lower case) -> noun synset offsets in sense order."""
        if self._index is None:
            index: dict[str, list[int]] = {}
            with open(self.folder / "index.noun", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith(" "):
                        continue  # license header
                    tok = line.split()
                    n_synsets, n_ptr = int(tok[2]), int(tok[3])
                    offsets = tok[4 + n_ptr + 2:]
                    index[tok[0]] = [int(o) for o in offsets[:n_synsets]]
            self._index = index
        return self._index

    def synset_at(self, offset: int) -> RawSynset:
        """The synset at a byte offset of ``data.noun`` (its WordNet offset)."""
        if offset in self._cache:
            return self._cache[offset]
        self._data.seek(offset)
        line = self._data.readline().decode("utf-8")
        if not line[:8].isdigit() or int(line[:8]) != offset:
            raise UserError(f"no noun synset at offset {offset} in {self.folder / 'data.noun'}")
        raw = parse_data_line(line)
        first = raw.lemmas[0].lower()
        sense = self.index[first].index(offset) + 1
        raw = RawSynset(raw.offset, raw.lemmas, raw.hypernyms, raw.instance_hypernyms,
                        raw.definition, raw.lexname_index, f"{first}.n.{sense:02d}")
        self._cache[offset] = raw
        return raw

    def synset(self, name: str) -> RawSynset:
        """A synset by nltk-style name (``tiger.n.02``) or ImageNet id (``n02129604``)."""
        offset = parse_wnid(name)
        if offset is not None:
            return self.synset_at(offset)
        m = _NAME.match(name.strip())
        if not m:
            raise UserError(f"not a noun synset name or WordNet id: {name!r} (expected e.g. 'tiger.n.02')")
        offsets = self.index.get(m.group("lemma").lower(), [])
        sense = int(m.group("sense"))
        if not 1 <= sense <= len(offsets):
            raise UserError(f"WordNet 3.0 has no noun synset {name!r}")
        return self.synset_at(offsets[sense - 1])

    def first_sense(self, word: str) -> RawSynset | None:
        """The first noun sense of a word (spaces/hyphens as underscores), or None."""
        key = word.strip().lower().replace(" ", "_")
        for candidate in (key, key.replace("-", "_")):
            if candidate in self.index:
                return self.synset_at(self.index[candidate][0])
        return None
