"""The embedded default dataset: images generated from a class hierarchy.

Generative model (all randomness from ``numpy.random.PCG64`` streams spawned from the seed, so the
same seed gives the same images on any machine):

* **Features** are coloured, oriented gratings under a Gaussian envelope: a texture with its own
  frequency, orientation, colour and place. A sample shows a feature with an amplitude and a random
  phase, so a feature is read by its *energy* (something a conv layer + nonlinearity does, a
  linear read-out of pixels does not).
* **Global features** (``global_features`` of them) are shown by every class with class-specific
  mean amplitudes (weakly informative for all classes).
* **Group features**: every group of the hierarchy, at every level, owns ``features_per_group``
  features. A class shows the features of every group on its path with amplitude
  ``1 + offset`` where the offset belongs to the child (subgroup or class) through which the class
  descends, drawn once with scale ``class_spread``: classes differ *within* their group's features.
  Classes outside a group show that group's features only as weak distractors (amplitude
  ``N(0, distractor^2)``, the same for all outsiders): a feature useful inside one group is
  useless elsewhere. A subgroup's features are perturbations of its parent's (similar colour,
  frequency and orientation), so deeper groups own sub-directions of their parent's features.
* **Per sample**: amplitudes get within-class noise ``within``, phases are uniform, the image is
  shifted by up to ``max_shift`` pixels, and i.i.d. pixel noise ``noise`` is added.

The rendered float64 images are scaled to unit variance (by the model's exact expected variance)
and quantised to ``uint8`` as ``round(127.5 + 42.5 x)``; the dataset normalises back with the
fixed constants :data:`PIXEL_MEAN`, :data:`PIXEL_STD`. Quantisation also makes the output immune
to last-bit differences between BLAS builds, so equal seeds give bit-identical tensors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from blockout.data.hierarchy import Hierarchy
from blockout.errors import UserError

# u8 = round(127.5 + 42.5 * x) for unit-variance x: +-3 standard deviations fill 0..255.
_U8_CENTER = 127.5
_U8_SCALE = 42.5
PIXEL_MEAN = _U8_CENTER / 255.0
PIXEL_STD = _U8_SCALE / 255.0


@dataclass(frozen=True)
class SyntheticSpec:
    """Knobs of the synthetic generator (the defaults are the calibrated default dataset).

    Attributes
    ----------
    samples_per_class : int
        Training images per class.
    test_samples_per_class : int
        Test images per class.
    noise : float
        Standard deviation of i.i.d. pixel noise, relative to a unit-amplitude feature.
    within : float
        Within-class standard deviation of every feature amplitude.
    class_spread : float
        Scale of the offsets that set classes (and subgroups) apart within a group's features.
    global_spread : float
        Scale of the class-specific offsets of the global features.
    distractor : float
        Amplitude scale of other groups' features in a sample (uninformative).
    features_per_group : int
        Features owned by each group, at every level.
    global_features : int
        Features shared by all classes.
    max_shift : int
        Largest random translation in pixels (both axes).
    image_size : int
        Height and width of the square images.
    """

    samples_per_class: int = 50
    test_samples_per_class: int = 30
    noise: float = 1.0
    within: float = 0.35
    class_spread: float = 0.5
    global_spread: float = 0.3
    distractor: float = 0.2
    features_per_group: int = 4
    global_features: int = 8
    max_shift: int = 2
    image_size: int = 32

    def __post_init__(self):
        for name in ("samples_per_class", "test_samples_per_class", "features_per_group", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise UserError(f"synthetic: {name} must be a positive integer, got {value!r}")
        for name in ("global_features", "max_shift"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise UserError(f"synthetic: {name} must be a non-negative integer, got {value!r}")
        for name in ("noise", "within", "class_spread", "global_spread", "distractor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"synthetic: {name} must be a finite number >= 0, got {value!r}")
        if self.image_size < 8:
            raise UserError(f"synthetic: image_size must be at least 8, got {self.image_size}")
        if 2 * self.max_shift >= self.image_size:
            raise UserError(
                f"synthetic: max_shift {self.max_shift} is too large for image_size {self.image_size}"
            )

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _Feature:
    freq: float  # cycles per image
    angle: float  # radians
    color: np.ndarray  # (3,), unit norm
    center: np.ndarray  # (2,), pixels (row, col)
    sigma: float  # envelope width in pixels


def _random_feature(rng: np.random.Generator, size: int) -> _Feature:
    color = rng.standard_normal(3)
    return _Feature(
        freq=float(rng.uniform(1.5, 6.0)),
        angle=float(rng.uniform(0.0, math.pi)),
        color=color / np.linalg.norm(color),
        center=rng.uniform(0.25, 0.75, size=2) * size,
        sigma=float(rng.uniform(0.2, 0.5) * size),
    )


def _child_feature(rng: np.random.Generator, parent: _Feature, size: int) -> _Feature:
    """A feature near ``parent``: a sub-direction of the parent group's feature space."""
    color = parent.color + 0.6 * rng.standard_normal(3)
    return _Feature(
        freq=float(np.clip(parent.freq * math.exp(0.25 * rng.standard_normal()), 1.0, 8.0)),
        angle=float(parent.angle + 0.4 * rng.standard_normal()),
        color=color / np.linalg.norm(color),
        center=np.clip(parent.center + 0.1 * size * rng.standard_normal(2), 0.2 * size, 0.8 * size),
        sigma=float(np.clip(parent.sigma * math.exp(0.2 * rng.standard_normal()), 0.15 * size, 0.6 * size)),
    )


def _render_basis(features: list[_Feature], size: int) -> np.ndarray:
    """Cosine and sine images of every feature, ``(2 F, 3 * size * size)`` float64.

    A feature with amplitude ``a`` and phase ``phi`` renders as ``a (cos phi B_cos - sin phi B_sin)``;
    each pair is scaled so that this has unit mean power per pixel averaged over the phase.
    """
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    rows = []
    for f in features:
        arg = 2.0 * math.pi * f.freq / size * (xx * math.cos(f.angle) + yy * math.sin(f.angle))
        env = np.exp(-((yy - f.center[0]) ** 2 + (xx - f.center[1]) ** 2) / (2.0 * f.sigma**2))
        c = f.color[:, None, None] * (env * np.cos(arg))[None]  # (3, H, W)
        s = f.color[:, None, None] * (env * np.sin(arg))[None]
        power = (np.mean(c * c) + np.mean(s * s)) / 2.0
        scale = 1.0 / math.sqrt(power)
        rows.append((c * scale).reshape(-1))
        rows.append((s * scale).reshape(-1))
    return np.stack(rows)


@dataclass
class SyntheticStructure:
    """The planted structure (what a network could discover).

    Attributes
    ----------
    owners : list of tuple of str
        For each feature, the group path that owns it (``()`` for global features).
    means : ndarray, shape (num_classes, num_features)
        Mean amplitude of each feature in each class (0 where the class is an outsider).
    member : ndarray of bool, shape (num_classes, num_features)
        Whether the class shows the feature with its own amplitude (else it is a distractor).
    basis : ndarray, shape (2 * num_features, 3 * size * size)
    """

    owners: list
    means: np.ndarray
    member: np.ndarray
    basis: np.ndarray


def build_structure(hierarchy: Hierarchy, spec: SyntheticSpec, rng: np.random.Generator) -> SyntheticStructure:
    """Draw the features and the per-class mean amplitudes of every feature."""
    size = spec.image_size
    classes = hierarchy.class_names
    features: list[_Feature] = []
    owners: list[tuple[str, ...]] = []
    for _ in range(spec.global_features):
        features.append(_random_feature(rng, size))
        owners.append(())
    group_feats: dict[tuple[str, ...], list[int]] = {}
    for group in hierarchy.groups():  # parents come before their children
        parent = group_feats.get(group[:-1])
        idx = []
        for j in range(spec.features_per_group):
            if parent is None:
                feat = _random_feature(rng, size)
            else:
                feat = _child_feature(rng, features[parent[j % len(parent)]], size)
            idx.append(len(features))
            features.append(feat)
            owners.append(group)
        group_feats[group] = idx

    num_f = len(features)
    means = np.zeros((len(classes), num_f))
    member = np.zeros((len(classes), num_f), dtype=bool)
    if spec.global_features:
        means[:, : spec.global_features] = 1.0 + spec.global_spread * rng.standard_normal(
            (len(classes), spec.global_features)
        )
        member[:, : spec.global_features] = True
    # One offset vector per (group, child) pair: the child is the next group on the path, or
    # the class itself at its own group. Drawn in a fixed (group, child) order.
    offsets: dict[tuple[tuple[str, ...], str], np.ndarray] = {}
    for group in hierarchy.groups():
        children = []
        for c, path in zip(classes, hierarchy.paths):
            if path[: len(group)] == group:
                child = path[len(group)] if len(path) > len(group) else "\x00class:" + c
                if child not in children:
                    children.append(child)
        for child in children:
            offsets[(group, child)] = spec.class_spread * rng.standard_normal(spec.features_per_group)
    for ci, (c, path) in enumerate(zip(classes, hierarchy.paths)):
        for depth in range(1, len(path) + 1):
            group = path[:depth]
            child = path[depth] if depth < len(path) else "\x00class:" + c
            idx = group_feats[group]
            means[ci, idx] = 1.0 + offsets[(group, child)]
            member[ci, idx] = True
    return SyntheticStructure(owners=owners, means=means, member=member, basis=_render_basis(features, size))


def _render_split(
    structure: SyntheticStructure,
    spec: SyntheticSpec,
    per_class: int,
    rng: np.random.Generator,
    total_var: float,
) -> tuple[np.ndarray, np.ndarray]:
    size = spec.image_size
    num_c, num_f = structure.means.shape
    labels = np.repeat(np.arange(num_c), per_class)  # class-major order
    n = labels.shape[0]
    mean = structure.means[labels]  # (N, F)
    sd = np.where(structure.member[labels], spec.within, spec.distractor)  # (N, F)
    amp = mean + sd * rng.standard_normal((n, num_f))
    phase = rng.uniform(0.0, 2.0 * math.pi, size=(n, num_f))
    coef = np.empty((n, 2 * num_f))
    coef[:, 0::2] = amp * np.cos(phase)
    coef[:, 1::2] = -amp * np.sin(phase)
    x = (coef @ structure.basis).reshape(n, 3, size, size)  # float64
    shifts = rng.integers(-spec.max_shift, spec.max_shift + 1, size=(n, 2)) if spec.max_shift else None
    x += spec.noise * rng.standard_normal(x.shape)
    if shifts is not None:
        # Roll per distinct shift (at most (2s+1)^2 groups), not per sample.
        keys = (shifts[:, 0] + spec.max_shift) * (2 * spec.max_shift + 1) + (shifts[:, 1] + spec.max_shift)
        for key in np.unique(keys):
            sel = np.nonzero(keys == key)[0]
            dy, dx = shifts[sel[0]]
            x[sel] = np.roll(x[sel], (int(dy), int(dx)), axis=(2, 3))
    x *= _U8_SCALE / math.sqrt(total_var)
    x += _U8_CENTER
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8), labels


def expected_variance(structure: SyntheticStructure, spec: SyntheticSpec) -> float:
    """Mean pixel variance of the rendered images before scaling (exact under the model)."""
    ea2 = np.where(structure.member, structure.means**2 + spec.within**2, spec.distractor**2)
    return float(ea2.sum(axis=1).mean() + spec.noise**2)


def generate_synthetic(hierarchy: Hierarchy, spec: SyntheticSpec, seed: int = 0):
    """Generate the train and test images of the synthetic dataset.

    Parameters
    ----------
    hierarchy : Hierarchy
    spec : SyntheticSpec
    seed : int
        Same seed, same arrays (bit for bit). The structure and each split have their own random
        stream, so the test set does not change with ``samples_per_class``.

    Returns
    -------
    train_x, train_y, test_x, test_y, structure
        ``uint8 (N, 3, S, S)`` images and ``int64 (N,)`` labels in class-major order, and the
        :class:`SyntheticStructure`.

    Examples
    --------
    >>> from blockout.data.hierarchy import parse_hierarchy
    >>> h = parse_hierarchy({"a": ["x", "y"], "b": ["z"]})
    >>> spec = SyntheticSpec(samples_per_class=2, test_samples_per_class=1, image_size=8, max_shift=1)
    >>> tx, ty, vx, vy, _ = generate_synthetic(h, spec, seed=1)
    >>> tx.shape, tx.dtype, ty.tolist(), vy.tolist()
    ((6, 3, 8, 8), dtype('uint8'), [0, 0, 1, 1, 2, 2], [0, 1, 2])
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"synthetic: seed must be a non-negative integer, got {seed!r}")
    s_struct, s_train, s_test = np.random.SeedSequence(int(seed)).spawn(3)
    structure = build_structure(hierarchy, spec, np.random.Generator(np.random.PCG64(s_struct)))
    total_var = expected_variance(structure, spec)
    train_x, train_y = _render_split(
        structure, spec, spec.samples_per_class, np.random.Generator(np.random.PCG64(s_train)), total_var
    )
    test_x, test_y = _render_split(
        structure, spec, spec.test_samples_per_class, np.random.Generator(np.random.PCG64(s_test)), total_var
    )
    return train_x, train_y, test_x, test_y, structure
