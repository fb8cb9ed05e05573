"""Class hierarchies: groups of classes, possibly nested, read from JSON.

The format and its parser (:class:`Hierarchy`, :func:`parse_hierarchy`, :func:`load_hierarchy`)
live in :mod:`analysis.reference` (torch-free; ``blockout compare --reference FILE`` reads the
same files). The default hierarchy is CIFAR-100's 100 classes under its 20 superclasses, read
from the ``cifar_labels.json`` shipped next to this file.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from analysis.reference import Hierarchy, load_hierarchy, parse_hierarchy
from blockout.errors import UserError

__all__ = ["Hierarchy", "parse_hierarchy", "load_hierarchy", "cifar_labels", "cifar100_hierarchy",
           "resolve_hierarchy", "CIFAR_LABELS_FILE"]

CIFAR_LABELS_FILE = Path(__file__).with_name("cifar_labels.json")


@lru_cache(maxsize=1)
def cifar_labels() -> dict:
    """The shipped CIFAR label facts (fine/coarse names, fine->coarse, CIFAR-10 names)."""
    return json.loads(CIFAR_LABELS_FILE.read_text(encoding="utf-8"))


def cifar100_hierarchy() -> Hierarchy:
    """CIFAR-100's 100 classes under its 20 superclasses, in CIFAR-100 label order.

    >>> h = cifar100_hierarchy()
    >>> h.num_classes, len(h.coarse_names), h.class_names[0], h.paths[0]
    (100, 20, 'apple', ('fruit_and_vegetables',))
    """
    labels = cifar_labels()
    fine, coarse, f2c = labels["fine_label_names"], labels["coarse_label_names"], labels["fine_to_coarse"]
    tree = {name: [] for name in coarse}
    for cls, c in zip(fine, f2c):
        tree[coarse[c]].append(cls)
    return parse_hierarchy(tree, source=str(CIFAR_LABELS_FILE), class_order=fine)


def resolve_hierarchy(hierarchy: Any) -> Hierarchy | None:
    """Accept a :class:`Hierarchy`, a path to a JSON file, a nested dict, or ``None``."""
    if hierarchy is None or isinstance(hierarchy, Hierarchy):
        return hierarchy
    if isinstance(hierarchy, Mapping):
        return parse_hierarchy(hierarchy)
    if isinstance(hierarchy, (str, Path)):
        return load_hierarchy(hierarchy)
    raise UserError(f"hierarchy: expected a JSON file path or a mapping, got {type(hierarchy).__name__}")
