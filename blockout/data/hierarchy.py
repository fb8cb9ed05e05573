"""Class hierarchies: groups of classes, possibly nested, read from JSON.

A hierarchy is a JSON object mapping each group name to either a list of class names or a
nested object of the same form (a deeper level)::

    {"birds": ["owl", "finch"],
     "tools": {"cutting": ["saw", "knife"], "striking": ["hammer"]}}

Branches may have different depths. Every class appears exactly once; group names must be
unique along each path (a group may not contain a subgroup of its own name) but two branches
may reuse a subgroup name. The default hierarchy is CIFAR-100's 100 classes under its 20
superclasses, read from the ``cifar_labels.json`` shipped next to this file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from analysis.runfolder import read_json
from blockout.errors import UserError

CIFAR_LABELS_FILE = Path(__file__).with_name("cifar_labels.json")


@dataclass(frozen=True)
class Hierarchy:
    """A parsed class hierarchy.

    Attributes
    ----------
    tree : dict
        The nested groups as given (JSON-able): ``{group: [class, ...] | {subgroup: ...}}``.
    class_names : list of str
        Every class, in label order (label ``i`` is ``class_names[i]``).
    paths : list of tuple of str
        For each class, the groups from the top level down to the class's own group.
    """

    tree: dict
    class_names: list
    paths: list

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def coarse_names(self) -> list[str]:
        """Top-level group names, in the order they appear in the tree."""
        return list(self.tree)

    @property
    def coarse_labels(self) -> list[int]:
        """Index into :attr:`coarse_names` of each class's top-level group."""
        index = {name: i for i, name in enumerate(self.coarse_names)}
        return [index[path[0]] for path in self.paths]

    @property
    def depth(self) -> int:
        """Largest number of group levels above a class."""
        return max(len(p) for p in self.paths)

    def groups(self) -> list[tuple[str, ...]]:
        """Every group as its path from the top, parents before children (depth-first order).

        >>> h = parse_hierarchy({"a": {"b": ["x"], "c": ["y"]}, "d": ["z"]})
        >>> h.groups()
        [('a',), ('a', 'b'), ('a', 'c'), ('d',)]
        """
        out: list[tuple[str, ...]] = []

        def walk(node: Mapping, prefix: tuple[str, ...]) -> None:
            for name, child in node.items():
                out.append(prefix + (name,))
                if isinstance(child, Mapping):
                    walk(child, prefix + (name,))

        walk(self.tree, ())
        return out

    def to_json(self) -> dict:
        """The nested groups as a JSON-able dict (the form :func:`parse_hierarchy` reads)."""
        return json.loads(json.dumps(self.tree))


def parse_hierarchy(
    obj: Any, *, source: str = "hierarchy", class_order: Sequence[str] | None = None
) -> Hierarchy:
    """Validate a nested group mapping and build a :class:`Hierarchy`.

    Parameters
    ----------
    obj : dict
        ``{group: [class, ...] | {subgroup: ...}}``.
    source : str
        Name used in error messages (the file the mapping came from).
    class_order : sequence of str, optional
        Label order of the classes; must be exactly the classes of the tree. Default: the order
        in which classes appear in the tree (depth-first).

    Raises
    ------
    UserError
        One line naming ``source`` and what is wrong: not an object, an empty group, a class
        name that is not a non-empty string, a class listed twice, a group nested in itself.

    Examples
    --------
    >>> h = parse_hierarchy({"birds": ["owl", "finch"], "tools": {"cutting": ["saw"]}})
    >>> h.class_names, h.coarse_labels, h.paths[2]
    (['owl', 'finch', 'saw'], [0, 0, 1], ('tools', 'cutting'))
    """
    if not isinstance(obj, Mapping):
        raise UserError(
            f"{source}: expected a JSON object mapping group names to lists of class names "
            f"(or to nested objects), got {type(obj).__name__}"
        )
    if not obj:
        raise UserError(f"{source}: the hierarchy has no groups")
    classes: list[str] = []
    paths: list[tuple[str, ...]] = []
    seen: dict[str, tuple[str, ...]] = {}

    def walk(node: Mapping, prefix: tuple[str, ...]) -> dict:
        clean: dict = {}
        for name, child in node.items():
            where = "/".join(prefix + (str(name),))
            if not isinstance(name, str) or not name.strip():
                raise UserError(f"{source}: group name {name!r} must be a non-empty string")
            if name in prefix:
                raise UserError(f"{source}: group {where!r} is nested inside a group of the same name")
            if isinstance(child, Mapping):
                if not child:
                    raise UserError(f"{source}: group {where!r} is empty")
                clean[name] = walk(child, prefix + (name,))
            elif isinstance(child, list):
                if not child:
                    raise UserError(f"{source}: group {where!r} is empty")
                for cls in child:
                    if not isinstance(cls, str) or not cls.strip():
                        raise UserError(
                            f"{source}: group {where!r} holds {cls!r}; class names must be non-empty strings"
                        )
                    if cls in seen:
                        raise UserError(
                            f"{source}: class {cls!r} appears twice (in {'/'.join(seen[cls])!r} "
                            f"and {where!r})"
                        )
                    seen[cls] = prefix + (name,)
                    classes.append(cls)
                    paths.append(prefix + (name,))
                clean[name] = list(child)
            else:
                raise UserError(
                    f"{source}: group {where!r} must map to a list of class names or to an object "
                    f"of subgroups, got {type(child).__name__}"
                )
        return clean

    tree = walk(obj, ())
    if class_order is not None:
        order = list(class_order)
        if sorted(order) != sorted(classes) or len(set(order)) != len(order):
            missing = sorted(set(classes) - set(order))[:3]
            extra = sorted(set(order) - set(classes))[:3]
            raise UserError(
                f"{source}: the class order does not match the hierarchy's classes "
                f"(missing {missing}, extra {extra})"
            )
        by_name = dict(zip(classes, paths))
        classes, paths = order, [by_name[c] for c in order]
    return Hierarchy(tree=tree, class_names=classes, paths=paths)


def load_hierarchy(path: str | Path) -> Hierarchy:
    """Read and validate a hierarchy JSON file (errors name the file).

    Raises
    ------
    UserError
        The file is missing, not JSON, or not a valid hierarchy.
    """
    obj = read_json(path, "hierarchy file")  # size, depth and duplicate group keys checked there
    from analysis.limits import hint, limit

    leaves, stack = 0, [obj]
    while stack:  # count classes before building anything per class
        node = stack.pop()
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list):
            leaves += len(node)
    if leaves > limit("max_classes"):
        raise UserError(f"{path}: the hierarchy lists {leaves} classes, too many {hint('max_classes')}")
    return parse_hierarchy(obj, source=str(path))


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
