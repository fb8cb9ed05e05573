"""What a dataset is: the description written into ``run.json["dataset"]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from blockout.data.hierarchy import Hierarchy

INFO_KEYS = (
    "name",
    "class_names",
    "wnids",
    "coarse_names",
    "coarse_labels",
    "hierarchy",
    "input_shape",
    "train_size",
    "test_size",
)


@dataclass
class DatasetInfo:
    """Description of a loaded dataset.

    Attributes
    ----------
    name : str
        Dataset name (``synthetic``, ``cifar10``, ``cifar100``, ``imagefolder``).
    class_names : list of str
        Label ``i`` is ``class_names[i]``.
    wnids : list of (str or None), or None
        WordNet id per class when known (ImageNet-style folders), else None.
    coarse_names, coarse_labels : list or None
        Top-level groups and each class's group index, when known.
    hierarchy : dict or None
        Nested groups ``{group: [class, ...] | {subgroup: ...}}`` when known.
    input_shape : tuple of int
        Shape of one input, ``(C, H, W)``.
    train_size, test_size : int
        Number of examples in each split.

    Examples
    --------
    >>> info = DatasetInfo("toy", ["a", "b"], input_shape=(3, 8, 8), train_size=4, test_size=2)
    >>> info.num_classes, sorted(info.to_json())[:3]
    (2, ['class_names', 'coarse_labels', 'coarse_names'])
    """

    name: str
    class_names: list
    wnids: Optional[list] = None
    coarse_names: Optional[list] = None
    coarse_labels: Optional[list] = None
    hierarchy: Optional[dict] = None
    input_shape: tuple = (3, 32, 32)
    train_size: int = 0
    test_size: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict:
        """JSON-able dict with exactly the keys of :data:`INFO_KEYS`."""
        return {
            "name": str(self.name),
            "class_names": [str(c) for c in self.class_names],
            "wnids": None if self.wnids is None else [None if w is None else str(w) for w in self.wnids],
            "coarse_names": None if self.coarse_names is None else [str(c) for c in self.coarse_names],
            "coarse_labels": None if self.coarse_labels is None else [int(c) for c in self.coarse_labels],
            "hierarchy": self.hierarchy,
            "input_shape": [int(s) for s in self.input_shape],
            "train_size": int(self.train_size),
            "test_size": int(self.test_size),
        }

    @classmethod
    def with_hierarchy(cls, name: str, hierarchy: Hierarchy | None, class_names: list, **kw) -> "DatasetInfo":
        """Build an info whose coarse groups come from ``hierarchy`` (which must hold ``class_names``)."""
        if hierarchy is None:
            return cls(name, list(class_names), **kw)
        by_class = dict(zip(hierarchy.class_names, hierarchy.coarse_labels))
        return cls(
            name,
            list(class_names),
            coarse_names=hierarchy.coarse_names,
            coarse_labels=[by_class[c] for c in class_names],
            hierarchy=hierarchy.to_json(),
            **kw,
        )
