"""Datasets: the embedded synthetic default, CIFAR-10/100, Fashion-MNIST / MNIST (IDX files) and image
folders. Nothing is downloaded.

>>> train, test, info = load_dataset("synthetic", hierarchy={"a": ["x", "y"], "b": ["z"]},
...                                  samples_per_class=2, test_samples_per_class=1)
>>> len(train), len(test), info.class_names, info.coarse_labels
(6, 3, ['x', 'y', 'z'], [0, 0, 1])
>>> x, y = train[0]
>>> tuple(x.shape), x.dtype, y
((3, 32, 32), torch.float32, 0)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from blockout.data.arrays import ArrayImageDataset, channel_stats
from blockout.data.hierarchy import (
    Hierarchy,
    cifar100_hierarchy,
    load_hierarchy,
    parse_hierarchy,
    resolve_hierarchy,
)
from blockout.data.info import DatasetInfo
from blockout.data.synthetic import PIXEL_MEAN, PIXEL_STD, SyntheticSpec, generate_synthetic
from blockout.errors import UserError

__all__ = [
    "DATASETS",
    "ArrayImageDataset",
    "DatasetInfo",
    "Hierarchy",
    "SyntheticSpec",
    "cifar100_hierarchy",
    "load_dataset",
    "load_hierarchy",
    "parse_hierarchy",
]

DATASETS = ("synthetic", "cifar10", "cifar100", "fashion-mnist", "mnist", "imagefolder")


def _check_count(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def subsample_per_class(labels: np.ndarray, per_class: int | None, seed: int, salt: int) -> np.ndarray:
    """Indices keeping at most ``per_class`` examples of each class (seeded draw, sorted).

    >>> subsample_per_class(np.array([0, 0, 0, 1, 1]), 2, seed=0, salt=0).shape
    (4,)
    """
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.Generator(np.random.PCG64([int(seed), int(salt)]))
    keep = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        if len(idx) > per_class:
            idx = np.sort(rng.choice(idx, size=per_class, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def _match_hierarchy(dataset: str, hierarchy: Hierarchy | None, class_names: list[str]) -> Hierarchy | None:
    if hierarchy is not None and sorted(hierarchy.class_names) != sorted(class_names):
        missing = sorted(set(class_names) - set(hierarchy.class_names))[:5]
        extra = sorted(set(hierarchy.class_names) - set(class_names))[:5]
        raise UserError(
            f"{dataset}: the hierarchy's classes must be the dataset's classes "
            f"(not in hierarchy: {missing}; not in dataset: {extra})"
        )
    return hierarchy


def _load_synthetic(hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw):
    h = resolve_hierarchy(hierarchy) or cifar100_hierarchy()
    fields = {f.name for f in dataclasses.fields(SyntheticSpec)}
    unknown = sorted(set(kw) - fields)
    if unknown:
        raise UserError(f"synthetic: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    args = dict(kw, image_size=image_size)
    if samples_per_class is not None:
        args["samples_per_class"] = samples_per_class
    if test_samples_per_class is not None:
        args["test_samples_per_class"] = test_samples_per_class
    spec = SyntheticSpec(**args)
    tx, ty, vx, vy, _ = generate_synthetic(h, spec, seed=seed)
    mean, std = (PIXEL_MEAN,) * 3, (PIXEL_STD,) * 3
    train, test = ArrayImageDataset(tx, ty, mean, std), ArrayImageDataset(vx, vy, mean, std)
    info = DatasetInfo.with_hierarchy(
        "synthetic", h, h.class_names, input_shape=tuple(tx.shape[1:]), train_size=len(train), test_size=len(test)
    )
    return train, test, info


def _load_cifar(name, data_dir, hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw):
    from blockout.data.cifar import read_cifar10, read_cifar100

    if kw:
        raise UserError(f"{name}: unknown option(s) {', '.join(sorted(kw))}")
    if image_size != 32:
        raise UserError(f"{name}: images are 32x32; image_size {image_size!r} is not supported")
    raw = read_cifar100(data_dir) if name == "cifar100" else read_cifar10(data_dir)
    names = raw["class_names"]
    h = resolve_hierarchy(hierarchy)
    if h is None and name == "cifar100":
        tree = {c: [] for c in raw["coarse_names"]}
        for cls, c in zip(names, raw["fine_to_coarse"]):
            tree[raw["coarse_names"][c]].append(cls)
        tree = {g: cs for g, cs in tree.items() if cs}
        h = parse_hierarchy(tree, source=f"{name} meta", class_order=names)
    h = _match_hierarchy(name, h, names)
    train, test = _split_images(raw, samples_per_class, test_samples_per_class, seed)
    info = DatasetInfo.with_hierarchy(name, h, names, input_shape=(3, 32, 32), train_size=len(train), test_size=len(test))
    return train, test, info


def _split_images(raw, samples_per_class, test_samples_per_class, seed):
    """Stratified, seeded subsets of in-memory ``train_x/train_y/test_x/test_y`` arrays, normalised
    with the training subset's channel statistics."""
    tr = subsample_per_class(raw["train_y"], samples_per_class, seed, 1)
    te = subsample_per_class(raw["test_y"], test_samples_per_class, seed, 2)
    train_x = raw["train_x"][tr]
    mean, std = channel_stats(train_x)
    return (ArrayImageDataset(train_x, raw["train_y"][tr], mean, std),
            ArrayImageDataset(raw["test_x"][te], raw["test_y"][te], mean, std))


def _load_idx(name, data_dir, hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw):
    from blockout.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_COARSE, MNIST_CLASSES, read_idx_dataset

    if kw:
        raise UserError(f"{name}: unknown option(s) {', '.join(sorted(kw))}")
    raw = read_idx_dataset(name, data_dir)
    side = raw["train_x"].shape[2:]
    if image_size not in (32, side[0]) or side[0] != side[1]:  # 32 is the option's default
        raise UserError(f"{name}: images are {side[0]}x{side[1]}; image_size {image_size!r} is not supported")
    names = list(FASHION_MNIST_CLASSES if name == "fashion-mnist" else MNIST_CLASSES)
    h = resolve_hierarchy(hierarchy)
    if h is None and name == "fashion-mnist":
        h = parse_hierarchy(FASHION_MNIST_COARSE, source="fashion-mnist groups", class_order=names)
    h = _match_hierarchy(name, h, names)
    train, test = _split_images(raw, samples_per_class, test_samples_per_class, seed)
    info = DatasetInfo.with_hierarchy(name, h, names, input_shape=(1,) + tuple(side), train_size=len(train),
                                      test_size=len(test))
    return train, test, info


def _load_imagefolder(data_dir, hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw):
    from blockout.data.imagefolder import ImageFolderDataset, scan_image_folder, wnids_for

    test_fraction = kw.pop("test_fraction", 0.2)
    if kw:
        raise UserError(f"imagefolder: unknown option(s) {', '.join(sorted(kw))}; known: test_fraction")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise UserError(f"imagefolder: image_size must be an integer >= 8, got {image_size!r}")
    names, (tr_f, tr_y), (te_f, te_y) = scan_image_folder(data_dir, test_fraction=test_fraction, seed=seed)
    h = _match_hierarchy("imagefolder", resolve_hierarchy(hierarchy), names)
    tr = subsample_per_class(np.asarray(tr_y), samples_per_class, seed, 1)
    te = subsample_per_class(np.asarray(te_y), test_samples_per_class, seed, 2)
    train = ImageFolderDataset([tr_f[i] for i in tr], [tr_y[i] for i in tr], image_size)
    test = ImageFolderDataset([te_f[i] for i in te], [te_y[i] for i in te], image_size)
    info = DatasetInfo.with_hierarchy(
        "imagefolder", h, names, wnids=wnids_for(names), input_shape=(3, image_size, image_size),
        train_size=len(train), test_size=len(test),
    )
    return train, test, info


def load_dataset(
    name: str,
    *,
    data_dir=None,
    hierarchy=None,
    samples_per_class: int | None = None,
    test_samples_per_class: int | None = None,
    seed: int = 0,
    image_size: int = 32,
    **kw: Any,
):
    """Load a dataset by name.

    Parameters
    ----------
    name : {"synthetic", "cifar10", "cifar100", "fashion-mnist", "mnist", "imagefolder"}
    data_dir : path, optional
        Folder holding the data (CIFAR: the folder containing ``cifar-10-batches-py`` /
        ``cifar-100-python``, or that folder itself; fashion-mnist / mnist: the folder of the IDX
        files, Fashion-MNIST defaulting to Debian's ``/usr/share/datasets/fashion-mnist``;
        imagefolder: the class folders' parent).
    hierarchy : path, dict or Hierarchy, optional
        Class groups. Synthetic: the classes to generate (default CIFAR-100's 100 classes under
        its 20 superclasses). Other datasets: coarse groups for exactly the dataset's classes
        (CIFAR-100 defaults to its own superclasses).
    samples_per_class, test_samples_per_class : int, optional
        Synthetic: how many to generate (defaults in :class:`SyntheticSpec`). Others: keep at most
        this many per class (a seeded draw).
    seed : int
        Synthetic: the generator seed. Others: the subsampling / split seed.
    image_size : int
        Square side of the images.
    **kw
        Synthetic: any other :class:`SyntheticSpec` field (``noise``, ``within``, ...).
        imagefolder: ``test_fraction`` (default 0.2) when there is no train/val layout.

    Returns
    -------
    train_dataset, test_dataset, info
        Torch datasets yielding ``(x float32 (C, H, W) normalised, y int)``, and a
        :class:`DatasetInfo`.

    Raises
    ------
    UserError
        Unknown name or option; missing or malformed data (one line: what was expected where).
    """
    samples_per_class = _check_count("samples_per_class", samples_per_class)
    test_samples_per_class = _check_count("test_samples_per_class", test_samples_per_class)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if name == "synthetic":
        if data_dir is not None:
            raise UserError("synthetic: the dataset is generated; --data-dir is not used (drop it)")
        return _load_synthetic(hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, data_dir, hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw)
    if name in ("fashion-mnist", "mnist"):
        return _load_idx(name, data_dir, hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw)
    if name == "imagefolder":
        return _load_imagefolder(data_dir, hierarchy, samples_per_class, test_samples_per_class, seed, image_size, kw)
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
