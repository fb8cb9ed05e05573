"""WordNet names for a run's classes and branch-tree vertices (via :mod:`analysis.wordnet`)."""

from __future__ import annotations


def for_run(run):
    """``(label_fn, synset names per class)`` for a run; ``(None, None)`` when WordNet is unknown."""
    return None, None
