"""Connection budget (ours): expected live density of a layer's rows held at ``rho`` by dual ascent.

One :class:`~blockout.budget.ConnectionBudget` per constrained Blockout layer lives in
``model.budgets`` (attached in :meth:`ConnectionBudgetRecipe.on_build`), so the Lagrange
multipliers are saved and resumed with the model's ``state_dict``. Every step the recipe moves
rho along its annealing schedule, adds the penalties of the layers whose memberships still train,
and after the optimiser step takes a dual-ascent step of their multipliers. The multipliers go
into every snapshot (``multiplier__<layer>``) and their summary into ``metrics.jsonl``.

The per-row density of a constrained layer treats the *input* node set's memberships as given
(detached): the budget is a constraint on the rows' own memberships. Letting it act on the input
side opened the loophole the prototype study hit: hidden nodes moved into clusters no class uses,
which lowered every class's density without any class choosing fewer clusters.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from blockout.budget import ConnectionBudget, live_probability_rows
from blockout.membership import CategoricalClusters
from blockout.recipes.base import Recipe, TrainContext, layer_sets


def attach_budgets(model: nn.Module, config: Any) -> None:
    """Fill ``model.budgets`` (a ModuleDict; left empty when the budget is off).

    ``config.budget_layers`` = "classifier" constrains the class layer, "all" every Blockout
    layer whose output memberships are learned.
    """
    model.budgets.clear()
    rho = config.budget_rho
    if rho is None:
        return
    layers = layer_sets(model)
    for idx, (lname, layer, _in_set, out_set) in enumerate(layers):
        is_classifier = idx == len(layers) - 1
        if config.budget_layers == "classifier" and not is_classifier:
            continue
        if not isinstance(out_set.theta, nn.Parameter):
            continue  # fixed memberships cannot move: nothing to constrain
        model.budgets[lname] = ConnectionBudget(
            out_set.num_nodes, rho, scope=config.budget_scope, step=config.budget_step,
            max_step=config.budget_max_step, anneal_start=config.budget_anneal_start,
            anneal_end=config.budget_anneal_end, name=lname)


def row_densities(model: nn.Module) -> dict[str, torch.Tensor]:
    """Expected live density of every row of every budgeted layer (differentiable in the rows)."""
    budgets = model.budgets
    out = {}
    for lname, _layer, in_set, out_set in layer_sets(model):
        if lname not in budgets:
            continue
        exclusive = isinstance(in_set, CategoricalClusters) and in_set.m == 1
        out[lname] = live_probability_rows(out_set.probs, in_set.probs.detach(), exclusive_in=exclusive)
    return out


def budget_terms(model: nn.Module, progress: float) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Penalties of the budgets whose rows still train, and their densities (for :func:`update_budgets`)."""
    budgets = model.budgets
    terms, densities = [], {}
    if model.plain or not len(budgets):  # warm-up of the co-clustered start: memberships unused
        return terms, densities
    live = {k: v for k, v in row_densities(model).items()
            if model.node_sets[model.set_names[model.layer_names.index(k) + 1]].theta.requires_grad}
    for lname, dens in live.items():
        budget = budgets[lname]
        budget.set_progress(progress)
        terms.append(budget.penalty(dens))
        densities[lname] = dens
    return terms, densities


def update_budgets(model: nn.Module, densities: Mapping[str, torch.Tensor]) -> None:
    """Dual ascent of every budget whose densities were computed this step."""
    budgets = model.budgets
    for lname, dens in densities.items():
        budgets[lname].update(dens)


def multiplier_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """``{layer: multipliers}`` as float32 numpy, for the ``multiplier__<layer>`` snapshot arrays."""
    return {name: b.multiplier.detach().float().cpu().numpy() for name, b in model.budgets.items()}


@torch.no_grad()
def multiplier_summary(model: nn.Module) -> dict[str, dict[str, float]]:
    """``{layer: {"mean", "max", "rho", "density"}}`` for ``metrics.jsonl`` (empty without budgets).

    ``density`` is the mean expected live density of the layer's rows: the quantity the budget
    holds at ``rho`` (the dashboard plots both against the multipliers).
    """
    budgets = model.budgets
    if not len(budgets):
        return {}
    dens = row_densities(model)
    out = {}
    for name, b in budgets.items():
        item = b.summary()
        item["density"] = float(dens[name].mean()) if name in dens else float("nan")
        out[name] = {k: (round(v, 6) if math.isfinite(v) else None) for k, v in item.items()}
    return out


class ConnectionBudgetRecipe(Recipe):
    """The connection budget of :mod:`blockout.budget` with dual ascent of its multipliers.

    ``config`` supplies ``budget_rho``, ``budget_layers``, ``budget_scope``, ``budget_step``,
    ``budget_max_step``, ``budget_anneal_start`` and ``budget_anneal_end``.
    """

    name = "budget"

    def __init__(self, config: Any) -> None:
        self.config = config
        self._densities: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, config) -> "ConnectionBudgetRecipe":
        return cls(config.recipe)

    def on_build(self, model: nn.Module) -> None:
        attach_budgets(model, self.config)

    def before_step(self, ctx: TrainContext) -> None:
        progress = ctx.progress
        for budget in ctx.model.budgets.values():
            budget.set_progress(progress)

    def extra_loss(self, ctx: TrainContext) -> list[torch.Tensor]:
        terms, self._densities = budget_terms(ctx.model, ctx.progress)
        return terms

    def after_step(self, ctx: TrainContext) -> None:
        if self._densities:
            update_budgets(ctx.model, self._densities)
        self._densities = {}

    def epoch_metrics(self, ctx: TrainContext) -> dict[str, Any]:
        multipliers = multiplier_summary(ctx.model)
        return {"multipliers": multipliers} if multipliers else {}

    def snapshot_arrays(self, model: nn.Module) -> dict[str, np.ndarray]:
        return multiplier_arrays(model)

    def __repr__(self) -> str:
        return f"ConnectionBudgetRecipe(rho={self.config.budget_rho}, layers={self.config.budget_layers!r})"
