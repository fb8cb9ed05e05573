"""The WordNet page's selector for your own reference hierarchy and WordNet synset overrides.

Either can be a path on the machine running the dashboard or an uploaded JSON file (kept in a
private temporary folder under a content-hash name, so the cached results follow the content):

* reference hierarchy: the nested ``{group: [classes]}`` format of ``--hierarchy`` (any depth),
  compared beside WordNet and the coarse classes, as ``blockout compare --reference FILE``;
* synset map: ``{"class name": "synset.n.01" or "n01234567"}``, overriding the synsets chosen
  for those classes (``blockout compare --synsets FILE``), e.g. where the class table flags a guess.

The page calls :func:`selector` once at the top and passes its choice to :func:`synsets` and
:func:`comparison`, which stand in for ``cache.synsets`` / ``cache.comparison``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from analysis.errors import UserError


@dataclass(frozen=True)
class Choice:
    """Files chosen on the page (None: not given) with a digest of their content (cache key)."""

    reference: str | None = None
    synsets: str | None = None
    digest: str = ""

    @property
    def empty(self) -> bool:
        return self.reference is None and self.synsets is None


def _upload_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"blockout-uploads-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def save_upload(name: str, data: bytes) -> str:
    """Write uploaded bytes to ``<private tmp>/<sha>/<safe name>.json`` (atomic); return the path.

    The file's stem names the reference in the results (``mine_d1``...).
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem).strip("._") or "reference"
    folder = _upload_dir() / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{stem}.json"
    if not path.is_file():
        tmp = folder / f".{stem}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def _digest(path: str | None) -> str:
    if path is None:
        return ""
    try:
        st_ = os.stat(path)
    except OSError:
        return f"{path}:missing"  # analysis reports the missing file with one clear line
    return f"{path}:{st_.st_mtime_ns}:{st_.st_size}"


def _one(label: str, key: str, help_text: str) -> str | None:
    how = st.radio(label, ["none", "path", "upload"], horizontal=True, key=f"{key}_src", help=help_text)
    if how == "path":
        text = st.text_input(f"{label}: JSON file path", key=f"{key}_path").strip()
        return str(Path(text).expanduser()) if text else None
    if how == "upload":
        up = st.file_uploader(f"{label}: JSON file", type=["json"], key=f"{key}_upload")
        return save_upload(up.name, up.getvalue()) if up is not None else None
    return None


def selector() -> Choice:
    """Draw the selector (collapsed unless something is chosen); return the :class:`Choice`."""
    chosen = any(st.session_state.get(f"{k}_src", "none") != "none" for k in ("ref", "syn"))
    with st.expander("Your own reference hierarchy · WordNet synset overrides", expanded=chosen):
        ref = _one("Reference hierarchy", "ref",
                   'Nested {"group": ["class", ...]} JSON (the --hierarchy format, any depth): every level '
                   "becomes a reference partition beside WordNet and the coarse classes, and its tree "
                   "distances get a Mantel test.")
        syn = _one("Synset map", "syn",
                   '{"class name": "synset.n.01" or "n01234567"}: overrides the synset of those classes '
                   "(see 'chosen by' in the class table: guesses use the most frequent sense).")
    return Choice(ref, syn, _digest(ref) + "|" + _digest(syn))


def _overrides(run, choice: Choice):
    from analysis.wordnet.resolve import load_synset_map

    return load_synset_map(choice.synsets, run.class_names) if choice.synsets else None


@st.cache_data(show_spinner=False, max_entries=16)
def _synsets(key: str, stamp: tuple, synsets: str | None, digest: str):
    from app import cache, wordnet_labels

    run = cache._run(key, stamp)
    over = _overrides(run, Choice(None, synsets))
    return wordnet_labels.synset_table(run, over), wordnet_labels.class_paths(run, over)


def synsets(ctx, choice: Choice):
    """The class → synset table and hypernym paths, with the chosen synset map applied."""
    from app import cache

    if choice.synsets is None:
        return cache.synsets(ctx)
    try:
        return _synsets(ctx.key, ctx.stamp, choice.synsets, choice.digest)
    except UserError as exc:
        st.error(str(exc))
        return cache.synsets(ctx)


@st.cache_data(show_spinner=False, max_entries=16)
def _comparison(key: str, stamp: tuple, step, tau: float, method: str, permutations: int,
                reference: str | None, synsets: str | None, digest: str) -> dict:
    from analysis.compare import compare_run
    from app import cache

    refs = ["all"] + ([reference] if reference else [])
    return compare_run(cache._run(key, stamp), refs, tau, step, "both", method, permutations,
                       synsets=synsets).to_dict()


def comparison(ctx, method: str, permutations: int, choice: Choice) -> dict:
    """``cache.comparison`` plus the chosen reference file and synset map (UserError on bad files)."""
    from app import cache

    if choice.empty:
        return cache.comparison(ctx, method, permutations)
    tau = ctx.tau if method == "connectivity" else 0.5
    return _comparison(ctx.key, ctx.stamp, ctx.step, tau, method, permutations, choice.reference, choice.synsets,
                       choice.digest)

