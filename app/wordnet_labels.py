"""WordNet names for a run's classes and branch-tree vertices (via :mod:`analysis.wordnet`)."""

from __future__ import annotations

from analysis.wordnet.references import chosen_path, class_synsets
from analysis.wordnet.snapshot import bundled_snapshot


def for_run(run):
    """``(label_fn, synsets)``: ``label_fn(class indices) -> lowest common hypernym or None`` for
    :func:`analysis.graphs.branch_tree`, and the synset name of each class (None where unknown).
    ``(None, None)`` when no class has a synset in the shipped WordNet snapshot."""
    from analysis.graphs import wordnet_labeler

    synsets = class_synsets(run.class_names, run.wnids, bundled_snapshot())
    if all(s is None for s in synsets):
        return None, None
    return wordnet_labeler(run), synsets


def synset_table(run) -> list[dict]:
    """One row per class: name, WordNet id, synset, its definition and the coarse group."""
    snap = bundled_snapshot()
    synsets = class_synsets(run.class_names, run.wnids, snap)
    rows = []
    for i, (name, syn) in enumerate(zip(run.class_names, synsets)):
        info = snap[syn] if syn is not None else None
        coarse = None
        if run.coarse_labels is not None and i < len(run.coarse_labels):
            c = run.coarse_labels[i]
            coarse = run.coarse_names[c] if run.coarse_names is not None and 0 <= c < len(run.coarse_names) else str(c)
        rows.append({"class": name, "synset": syn or "—", "wnid": info.wnid if info else (run.wnids[i] if run.wnids else None),
                     "definition": info.definition if info else "no synset found", "coarse group": coarse})
    return rows


def class_paths(run) -> dict[str, list[str]] | None:
    """``{class name: hypernym path from the root}`` (the path used for depth groupings), or None
    when some class has no synset."""
    snap = bundled_snapshot()
    synsets = class_synsets(run.class_names, run.wnids, snap)
    if any(s is None for s in synsets):
        return None
    return {name: chosen_path(snap, s)[:-1] + [s] for name, s in zip(run.class_names, synsets)}
