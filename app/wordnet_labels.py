"""WordNet names for a run's classes and branch-tree vertices (via :mod:`analysis.wordnet`)."""

from __future__ import annotations

from analysis.wordnet.nouns import load_wordnet
from analysis.wordnet.references import chosen_path, class_synsets
from analysis.wordnet.resolve import resolve_class_synsets

#: How each class's synset was found, as the class table says it.
HOW_LABELS = {"override": "your map (--synsets)", "wnid": "WordNet id", "curated": "curated table",
              "name": "synset name", "guess": "GUESS: most frequent sense", None: "not found"}


def for_run(run):
    """``(label_fn, synsets)``: ``label_fn(class indices) -> lowest common hypernym or None`` for
    :func:`analysis.graphs.branch_tree`, and the synset name of each class (None where unknown).
    ``(None, None)`` when no class has a WordNet synset."""
    from analysis.graphs import wordnet_labeler

    synsets = class_synsets(run.class_names, run.wnids, load_wordnet())
    if all(s is None for s in synsets):
        return None, None
    return wordnet_labeler(run), synsets


def synset_table(run, overrides=None) -> list[dict]:
    """One row per class: name, synset, how it was chosen (guesses flagged), WordNet id, definition,
    coarse group. ``overrides``: a checked ``{class name: synset}`` map (the user's ``--synsets``)."""
    wn = load_wordnet()
    rows = []
    for i, r in enumerate(resolve_class_synsets(run.class_names, run.wnids, overrides, wn)):
        coarse = None
        if run.coarse_labels is not None and i < len(run.coarse_labels):
            c = run.coarse_labels[i]
            coarse = run.coarse_names[c] if run.coarse_names is not None and 0 <= c < len(run.coarse_names) else str(c)
        syn = r.synset
        rows.append({"class": r.class_name, "synset": syn or "—", "chosen by": HOW_LABELS[r.how],
                     "wnid": wn.wnid(syn) if syn else (run.wnids[i] if run.wnids else None),
                     "definition": wn.definition(syn) if syn else "no synset found", "coarse group": coarse})
    return rows


def class_paths(run, overrides=None) -> dict[str, list[str]] | None:
    """``{class name: hypernym path from the root}`` (the path used for depth groupings), or None
    when some class has no synset."""
    wn = load_wordnet()
    synsets = class_synsets(run.class_names, run.wnids, wn, overrides)
    if any(s is None for s in synsets):
        return None
    return {name: chosen_path(wn, s)[:-1] + [s] for name, s in zip(run.class_names, synsets)}
