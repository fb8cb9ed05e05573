#!/usr/bin/env python3
"""Build the shipped WordNet 3.0 noun hierarchy (``analysis/data/wordnet_nouns.npz``).

Reads Debian's ``wordnet-base`` database files (``/usr/share/wordnet/data.noun`` and
``index.noun``; ``apt-get install wordnet-base``) directly, without nltk, and writes every noun
synset -- offset, lemmas in WordNet's order, the sense number of the synset for each of its
lemmas, hypernyms, instance hypernyms, min/max depth and definition -- as the compact arrays
described in :mod:`analysis.wordnet.nouns`. The licence text of WordNet 3.0 (from the header of
``data.noun``) is written next to it (``WORDNET_LICENSE.txt``).

Examples::

    python scripts/build_wordnet.py                      # rebuild the shipped file
    python scripts/build_wordnet.py --wordnet DIR -o out.npz

Deterministic: the same database files give a byte-identical output. Never downloads anything.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.errors import UserError  # noqa: E402
from analysis.runfolder import atomic_write_text  # noqa: E402
from analysis.wordnet.database import NounDatabase, parse_data_line  # noqa: E402
from analysis.wordnet.nltk_adapter import find_wordnet_files  # noqa: E402
from analysis.wordnet.nouns import BUNDLED_PATH, FORMAT, FORMAT_VERSION, LICENSE_PATH  # noqa: E402


def license_text(data_noun: Path) -> str:
    """The licence header of ``data.noun`` (lines starting with two spaces and a line number)."""
    lines = []
    with open(data_noun, encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("  "):
                break
            lines.append(re.sub(r"^\s+\d+ ?", "", line).rstrip())
    text = "\n".join(lines).strip() + "\n"
    if "WordNet 3.0 Copyright 2006 by Princeton University" not in text:
        raise UserError(f"{data_noun}: no WordNet 3.0 licence header found (is this WordNet 3.0?)")
    return text


def depths(parents: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Min and max depth (edges to a root) of every node of a DAG given as parent lists."""
    n = len(parents)
    lo = np.full(n, -1, np.int64)
    hi = np.full(n, -1, np.int64)

    def visit(i: int, stack: set) -> None:
        if lo[i] >= 0:
            return
        if i in stack:
            raise UserError(f"hypernym cycle at synset index {i}")
        stack.add(i)
        for p in parents[i]:
            visit(p, stack)
        stack.discard(i)
        ps = parents[i]
        lo[i] = 1 + min(lo[p] for p in ps) if ps else 0
        hi[i] = 1 + max(hi[p] for p in ps) if ps else 0

    for i in range(n):
        visit(i, set())
    return lo, hi


def build_arrays(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of :mod:`analysis.wordnet.nouns` from the database files in ``folder``."""
    raws = []
    with open(folder / "data.noun", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            raws.append(parse_data_line(line))
    offsets = np.array([r.offset for r in raws], np.int64)
    if np.any(np.diff(offsets) <= 0):
        raise UserError(f"{folder / 'data.noun'}: synset offsets are not increasing")
    row_of = {int(o): i for i, o in enumerate(offsets)}
    with NounDatabase(folder) as db:
        index = db.index  # lemma (lower case) -> offsets in sense order
    lemmas, lemma_ptr, senses = [], [0], []
    for r in raws:
        for lem in r.lemmas:
            offs = index.get(lem.lower())
            if offs is None or r.offset not in offs:
                raise UserError(f"index.noun lacks {lem.lower()!r} -> {r.offset:08d}")
            lemmas.append(lem)
            senses.append(offs.index(r.offset) + 1)
        lemma_ptr.append(len(lemmas))
    # The per-lemma sense numbers must rebuild index.noun exactly (the loader relies on it).
    rebuilt: dict[str, list[tuple[int, int]]] = {}
    for i, r in enumerate(raws):
        for lem, s in zip(lemmas[lemma_ptr[i]:lemma_ptr[i + 1]], senses[lemma_ptr[i]:lemma_ptr[i + 1]]):
            rebuilt.setdefault(lem.lower(), []).append((s, r.offset))
    # (a synset may hold case variants of one lemma, e.g. 'A' and 'a': count it once)
    again = {k: [o for _, o in sorted(set(v))] for k, v in rebuilt.items()}
    if again != index:
        bad = sorted(k for k in set(index) | set(again) if index.get(k) != again.get(k))[:5]
        raise UserError(f"index.noun is not the inverse of data.noun's lemmas (e.g. {bad})")
    words = sorted(again)  # Python string order: the loader looks words up by bisection
    index_count = np.array([len(again[w]) for w in words], np.uint8)
    index_rows = np.array([row_of[o] for w in words for o in again[w]], np.int32)
    if max(senses) > 255:
        raise UserError(f"a lemma has {max(senses)} noun senses; the format stores at most 255")

    def csr(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        # counts, not pointers: small integers compress to almost nothing
        counts = np.array([len(x) for x in lists], np.int64)
        if counts.max() > 255:
            raise UserError("a synset has more than 255 hypernyms; the format stores at most 255")
        flat = np.array([v for x in lists for v in x], np.int32)
        return counts.astype(np.uint8), flat

    hyper = [[row_of[o] for o in r.hypernyms] for r in raws]
    inst = [[row_of[o] for o in r.instance_hypernyms] for r in raws]
    lo, hi = depths([h + i for h, i in zip(hyper, inst)])
    hyper_count, hyper_idx = csr(hyper)
    inst_count, inst_idx = csr(inst)
    lemma_count = np.diff(np.asarray(lemma_ptr)).astype(np.uint8)
    if np.diff(np.asarray(lemma_ptr)).max() > 255 or index_count.size != len(words):
        raise UserError("a synset has more than 255 lemmas; the format stores at most 255")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "wordnet_version": "3.0",
            "source": "Princeton WordNet 3.0 noun database (data.noun, index.noun; Debian wordnet-base)",
            "n_synsets": len(raws), "n_lemmas": len(lemmas)}
    return {
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
        "offset": offsets.astype(np.int32),
        "lemma_count": lemma_count,
        "lemmas": np.frombuffer("\n".join(lemmas).encode("utf-8"), np.uint8),
        "lemma_sense": np.asarray(senses, np.uint8),
        "hyper_count": hyper_count, "hyper": hyper_idx,
        "inst_count": inst_count, "inst": inst_idx,
        "min_depth": lo.astype(np.uint8), "max_depth": hi.astype(np.uint8),
        "index_words": np.frombuffer("\n".join(words).encode("utf-8"), np.uint8),
        "index_count": index_count, "index_rows": index_rows,
        "definitions": np.frombuffer("\n".join(r.definition for r in raws).encode("utf-8"), np.uint8),
    }


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deflate-compressed ``.npz`` with fixed member timestamps (byte-reproducible)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wordnet", help="folder with the WordNet 3.0 database files "
                                      "(default: NLTK_DATA, /usr/share/wordnet)")
    ap.add_argument("-o", "--output", type=Path, default=BUNDLED_PATH, help=f"output .npz (default: {BUNDLED_PATH})")
    args = ap.parse_args(argv)
    try:
        folder = find_wordnet_files(args.wordnet)
        if folder is None:
            raise UserError(f"no WordNet 3.0 database files found in {args.wordnet or 'NLTK_DATA or /usr/share/wordnet'}"
                            " (apt-get install wordnet-base)")
        arrays = build_arrays(folder)
        data = npz_bytes(arrays)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(args.output)
        lic = args.output.parent / LICENSE_PATH.name
        atomic_write_text(lic, license_text(folder / "data.noun"))
        print(f"wrote {args.output}: {arrays['offset'].size} noun synsets, {arrays['lemma_sense'].size} lemmas, "
              f"{len(data) / 1e6:.2f} MB; licence in {lic}")
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
