"""Your own reference hierarchy: nested ``{group: [classes]}`` JSON files, as references.

The format (also what ``--hierarchy`` reads for the synthetic data) maps each group name to
either a list of class names or a nested object of the same form (a deeper level)::

    {"birds": ["owl", "finch"],
     "tools": {"cutting": ["saw", "knife"], "striking": ["hammer"]}}

Branches may have different depths. Every class appears exactly once; group names must be
unique along each path (a group may not contain a subgroup of its own name) but two branches
may reuse a subgroup name.

As a reference for ``blockout compare RUN --reference FILE.json`` (:func:`file_reference`):

* every depth ``d = 1 .. depth`` of the file is a partition of the classes: a class belongs to
  its group at level ``d``, or to its deepest group when its branch is shallower (the finest
  grouping the file gives at or above level ``d``); depths repeating the previous partition,
  partitions with one group and partitions with every class alone are left out (as for WordNet);
* the tree distance between two classes is the number of edges between them through their
  lowest common group (classes are leaves under their deepest group; the root joins the top
  level), compared with the network's class distances by the Mantel test.

Pure Python and numpy (no torch): the training core imports the parser from here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from analysis.errors import UserError
from analysis.runfolder import read_json


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


def align_classes(h: Hierarchy, class_names: Sequence[str], source: str = "reference") -> list[tuple[str, ...]]:
    """The file's group path of every run class (in the run's order).

    File names match run classes exactly or as lemma keys (case, spaces, hyphens and
    underscores ignored). One-line UserError naming ``source`` when some file name matches no
    class or some class is missing from the file.

    >>> h = parse_hierarchy({"cats": ["Tiger", "lion"], "dogs": ["wolf"]})
    >>> align_classes(h, ["wolf", "tiger", "lion"])
    [('dogs',), ('cats',), ('cats',)]
    """
    from analysis.wordnet.resolve import match_class

    names = [str(c) for c in class_names]
    path_of: dict[int, tuple[str, ...]] = {}
    unknown, twice = [], []
    for cls, path in zip(h.class_names, h.paths):
        i = match_class(cls, names)
        if i is None:
            unknown.append(cls)
        elif i in path_of:
            twice.append(cls)
        else:
            path_of[i] = path
    missing = [names[i] for i in range(len(names)) if i not in path_of]

    def some(xs: list[str]) -> str:
        return ", ".join(map(repr, xs[:5])) + (f" (and {len(xs) - 5} more)" if len(xs) > 5 else "")

    problems = []
    if unknown:
        problems.append(f"{len(unknown)} name(s) match no class of the run: {some(unknown)}")
    if twice:
        problems.append(f"{len(twice)} name(s) name a class already listed: {some(twice)}")
    if missing:
        problems.append(f"{len(missing)} class(es) of the run are missing from the file: {some(missing)}")
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))
    return [path_of[i] for i in range(len(names))]


def depth_partitions(paths: Sequence[tuple[str, ...]]) -> list[tuple[int, list[int], list[str]]]:
    """``(depth, labels, group names)`` for every depth of the group paths (see the module doc).

    Group names are the ``/``-joined paths. Only the depths whose partition differs from the
    previous depth's are returned; trivial partitions are kept (the caller filters them).

    >>> [(d, lab) for d, lab, _ in depth_partitions([("a", "x"), ("a", "y"), ("b",)])]
    [(1, [0, 0, 1]), (2, [0, 1, 2])]
    """
    max_depth = max((len(p) for p in paths), default=0)
    out, prev = [], None
    for d in range(1, max_depth + 1):
        keys = ["/".join(p[:d]) for p in paths]
        names = list(dict.fromkeys(keys))
        index = {k: g for g, k in enumerate(names)}
        labels = [index[k] for k in keys]
        if labels == prev:
            continue
        prev = labels
        out.append((d, labels, names))
    return out


def tree_distances(paths: Sequence[tuple[str, ...]]) -> np.ndarray:
    """Edges between every two classes through their lowest common group (zero diagonal).

    >>> tree_distances([("a", "x"), ("a", "x"), ("a", "y"), ("b",)]).tolist()
    [[0.0, 2.0, 4.0, 5.0], [2.0, 0.0, 4.0, 5.0], [4.0, 4.0, 0.0, 5.0], [5.0, 5.0, 5.0, 0.0]]
    """
    n = len(paths)
    depth = np.array([len(p) for p in paths], dtype=np.float64)
    common = np.zeros((n, n))
    max_d = int(depth.max()) if n else 0
    # common[i, j] = length of the shared prefix of the two paths, one level at a time
    alive = np.ones((n, n), dtype=bool)
    for d in range(max_d):
        ids: dict[tuple[str, ...], int] = {}
        key = np.array([ids.setdefault(p[: d + 1], len(ids)) if len(p) > d else -1 for p in paths])
        same = key >= 0
        alive &= (key[:, None] == key[None, :]) & same[:, None] & same[None, :]
        common += alive
    D = (depth[:, None] + 1) + (depth[None, :] + 1) - 2 * common
    np.fill_diagonal(D, 0.0)
    return D


def file_reference(path: str | os.PathLike | Hierarchy | Mapping, class_names: Sequence[str],
                   name: str | None = None):
    """Reference groupings (one per depth) and tree distances of a hierarchy file for a run's classes.

    Returns ``(groupings, name, distances)``: :class:`analysis.wordnet.references.ReferenceGrouping`
    of kind ``file`` named ``<name>_d<depth>``, the reference name (default: the file's stem) and
    the square tree-distance matrix (for the Mantel test).

    >>> g, name, D = file_reference({"cats": ["tiger", "lion"], "dogs": ["wolf", "fox"]},
    ...                             ["tiger", "wolf", "lion", "fox"], name="mine")
    >>> [(x.name, x.labels.tolist(), x.group_names) for x in g], D[0].tolist()
    ([('mine_d1', [0, 1, 0, 1], ['cats', 'dogs'])], [0.0, 4.0, 2.0, 4.0])
    """
    from analysis.wordnet.references import ReferenceGrouping

    if isinstance(path, Hierarchy):
        h, source = path, name or "reference"
    elif isinstance(path, Mapping):
        h, source = parse_hierarchy(path, source=name or "reference"), name or "reference"
    else:
        h, source = load_hierarchy(path), str(path)
        name = name or Path(path).stem
    name = name or "reference"
    paths = align_classes(h, class_names, source)
    n = len(paths)
    groupings = []
    for d, labels, names in depth_partitions(paths):
        if len(names) < 2 or len(names) == n:
            continue
        groupings.append(ReferenceGrouping(f"{name}_d{d}", np.asarray(labels, dtype=np.int64),
                                           [g.split("/")[-1] for g in names], depth=d, kind="file",
                                           meta={"depths": [d], "file": source, "paths": names}))
    return groupings, name, tree_distances(paths)
