"""Planted class-weight rows shared by the co-clustering tests (unequal groups, seeded)."""

from __future__ import annotations

import numpy as np

SIZES = (1, 2, 3, 5, 8, 12)  # unequal planted groups, 31 rows


def planted_rows(noise: float, seed: int, sizes=SIZES, dim: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Class weight rows (n, dim): a random centre per group plus isotropic noise; and the groups."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.standard_normal((len(sizes), dim))
    return centres[truth] + noise * rng.standard_normal((truth.size, dim)), truth
