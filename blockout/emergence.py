"""The emergence helpers under their earlier names (ours, issue 5).

The training-time logic of our emergence options now lives in the recipe plug-ins of
:mod:`blockout.recipes` (one module per recipe); this module keeps the functions that code
written against the earlier glue imports, each a thin wrapper over a recipe module:

* :func:`attach_budgets`, :func:`update_budgets`, :func:`multiplier_arrays`,
  :func:`multiplier_summary`, :func:`row_densities`: :mod:`blockout.recipes.budget`
* :func:`temperature_at`: :mod:`blockout.recipes.categorical`
* :func:`cocluster_memberships`, :func:`anneal_blend`, :func:`rownorm_rescale`:
  :mod:`blockout.recipes.cocluster`
* :func:`learning_progress`: :mod:`blockout.recipes.base`
* :func:`apply_schedules`, :func:`emergence_loss`: what the categorical and budget recipes do
  before and after the forward pass, for a model and config outside the trainer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blockout.recipes.base import learning_progress
from blockout.recipes.budget import (attach_budgets, budget_terms, multiplier_arrays, multiplier_summary,
                                     row_densities, update_budgets)
from blockout.recipes.categorical import CategoricalMemberships, temperature_at
from blockout.recipes.cocluster import anneal_blend, cocluster_memberships, rownorm_rescale

__all__ = [
    "attach_budgets",
    "apply_schedules",
    "emergence_loss",
    "update_budgets",
    "multiplier_arrays",
    "multiplier_summary",
    "row_densities",
    "temperature_at",
    "learning_progress",
    "cocluster_memberships",
    "anneal_blend",
    "rownorm_rescale",
]


def _categorical(config: Any) -> CategoricalMemberships:
    return CategoricalMemberships(config.temperature, config.temperature_end, config.usage_weight,
                                  config.class_usage_weight)


def apply_schedules(model: nn.Module, config: Any, progress: float) -> None:
    """``model``: a :class:`~blockout.fcstack.FCStack` built by :func:`blockout.models.build_model`
    (it has its ``budgets``). Move the temperature of every categorical set and every budget's rho to ``progress``."""
    if not model.is_blockout:
        return
    _categorical(config).set_temperature(model, progress)
    for budget in model.budgets.values():
        budget.set_progress(progress)


def emergence_loss(model: nn.Module, config: Any, progress: float) -> tuple[torch.Tensor | None, dict]:
    """Usage-balancing terms and budget penalties at ``progress``; ``(term or None, densities)``.

    Frozen node sets (no gradient) contribute nothing; ``densities`` feed :func:`update_budgets`.
    """
    terms = []
    if model.is_blockout:
        recipe = _categorical(config)
        recipe.set_temperature(model, progress)
        terms += recipe.usage_terms(model)
    more, densities = budget_terms(model, progress) if model.is_blockout else ([], {})
    terms += more
    if not terms:
        return None, densities
    return torch.stack([t.reshape(()) for t in terms]).sum(), densities
