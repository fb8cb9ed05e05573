"""Which WordNet synset each class stands for, and how that was decided.

Order, first match wins:

1. ``override``: the user's map (``--synsets FILE``: ``{"class name": "synset.n.01" | "n01234567"}``);
2. ``wnid``: the class's WordNet id (an ImageNet-style folder ``n02129604``, or the run's dataset info);
3. ``curated``: the hand-checked table of :mod:`analysis.wordnet.table` (CIFAR-10/100 ...);
4. ``name``: the class name is itself a synset name (``dog.n.01``) or WordNet id;
5. ``guess``: the class name is a WordNet noun lemma -- its *most frequent* sense (WordNet's
   first sense). Often right (``zebra``), sometimes not (``tiger.n.01`` is a fierce person), so
   every guess is reported (``compare`` notes, the dashboard's WordNet page) for the user to
   check and override.

A class none of these resolves has no synset (``None``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from analysis.errors import UserError
from analysis.wordnet.nouns import WordNet, load_wordnet, parse_wnid, word_key
from analysis.wordnet.table import curated_synset

HOW = ("override", "wnid", "curated", "name", "guess")


@dataclass(frozen=True)
class ClassSynset:
    """The synset chosen for one class (``synset`` None when none was found) and ``how``."""

    class_name: str
    synset: str | None
    how: str | None  # one of HOW, None when unresolved
    alternatives: int = 0  # other noun senses of the class name (for guesses)

    @property
    def guessed(self) -> bool:
        return self.how == "guess"


def match_class(key: str, class_names: Sequence[str]) -> int | None:
    """Index of the class a user-given name refers to: exact, else equal as lemma keys.

    >>> match_class("Pickup Truck", ["apple", "pickup_truck"]), match_class("pear", ["apple"])
    (1, None)
    """
    names = list(class_names)
    if key in names:
        return names.index(key)
    k = word_key(key)
    hits = [i for i, c in enumerate(names) if word_key(c) == k]
    return hits[0] if len(hits) == 1 else None


def check_synset_map(mapping: object, class_names: Sequence[str], wordnet: WordNet | None = None,
                     source: str = "synset map") -> dict[str, str]:
    """Validate a ``{class name: synset name or wnid}`` map against the classes.

    Returns ``{class name as the run spells it: synset name}``. One-line UserError (naming
    ``source``) for a map that is not an object of strings, a key that matches no class, or a
    value that is no WordNet 3.0 noun synset.

    >>> check_synset_map({"tiger": "n02129604"}, ["tiger", "lion"])
    {'tiger': 'tiger.n.02'}
    """
    wn = wordnet if wordnet is not None else load_wordnet()
    if not isinstance(mapping, Mapping):
        raise UserError(f"{source}: expected a JSON object {{\"class name\": \"synset.n.01\" or \"n01234567\"}}, "
                        f"got {type(mapping).__name__}")
    out: dict[str, str] = {}
    unknown = []
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UserError(f"{source}: entry {key!r}: {value!r} must map a class name to a synset name string")
        i = match_class(key, class_names)
        if i is None:
            unknown.append(key)
            continue
        try:
            out[class_names[i]] = wn.synset(value)
        except UserError as exc:
            raise UserError(f"{source}: class {key!r}: {exc}") from None
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise UserError(f"{source}: {len(unknown)} name(s) match no class of the run: "
                        f"{', '.join(map(repr, unknown[:5]))}{more}")
    return out


def load_synset_map(path: str | os.PathLike, class_names: Sequence[str], wordnet: WordNet | None = None) -> dict[str, str]:
    """Read and check a ``--synsets`` JSON file (see :func:`check_synset_map`)."""
    from analysis.runfolder import read_json

    return check_synset_map(read_json(path, "synset map"), class_names, wordnet, source=str(path))


def resolve_class_synsets(class_names: Sequence[str], wnids: Sequence[str | None] | None = None,
                          overrides: Mapping[str, str] | None = None,
                          wordnet: WordNet | None = None) -> list[ClassSynset]:
    """The synset of every class, and how it was found (see the module docstring for the order).

    ``overrides`` maps class names (as the run spells them) to synset names or wnids.

    >>> [(r.synset, r.how) for r in resolve_class_synsets(["tiger", "zebra", "qwz", "n02129604"])]
    [('tiger.n.02', 'curated'), ('zebra.n.01', 'guess'), (None, None), ('tiger.n.02', 'name')]
    """
    wn = wordnet if wordnet is not None else load_wordnet()
    overrides = dict(overrides or {})
    out: list[ClassSynset] = []
    for i, name in enumerate(class_names):
        name = str(name)
        if name in overrides:
            out.append(ClassSynset(name, wn.synset(overrides[name]), "override"))
            continue
        wnid = wnids[i] if wnids is not None and i < len(wnids) else None
        found = wn.by_wnid(wnid) if wnid else None
        if found is not None:
            out.append(ClassSynset(name, found, "wnid"))
            continue
        cur = curated_synset(name)
        if cur is not None and cur in wn:
            out.append(ClassSynset(name, cur, "curated"))
            continue
        if parse_wnid(name) is not None or ".n." in name:
            try:
                out.append(ClassSynset(name, wn.synset(name), "name"))
                continue
            except UserError:
                pass
        senses = wn.senses(name)
        if senses:
            out.append(ClassSynset(name, senses[0], "guess", len(senses) - 1))
        else:
            out.append(ClassSynset(name, None, None))
    return out


def guess_note(resolved: Sequence[ClassSynset], wordnet: WordNet | None = None, limit: int = 8) -> str | None:
    """One line listing the guessed synsets (most frequent sense), or None when nothing was guessed.

    >>> guess_note(resolve_class_synsets(["zebra", "tiger"])).split(":")[0]
    'WordNet synset guessed (most frequent sense) for 1 of 2 classes'
    >>> guess_note(resolve_class_synsets(["tiger"])) is None
    True
    """
    guesses = [r for r in resolved if r.guessed]
    if not guesses:
        return None
    wn = wordnet if wordnet is not None else load_wordnet()

    def one(r: ClassSynset) -> str:
        gloss = wn.definition(r.synset)
        gloss = gloss if len(gloss) <= 50 else gloss[:47] + "..."
        alt = f"; {r.alternatives} other sense{'s' if r.alternatives != 1 else ''}" if r.alternatives else ""
        return f"{r.class_name!r} -> {r.synset} ({gloss}{alt})"

    shown = ", ".join(one(r) for r in guesses[:limit])
    more = f", and {len(guesses) - limit} more" if len(guesses) > limit else ""
    return (f"WordNet synset guessed (most frequent sense) for {len(guesses)} of {len(resolved)} classes: "
            f"{shown}{more}. Check them; override with --synsets FILE "
            '(JSON {"class name": "synset.n.01" or "n01234567"})')
