"""Training recipes: plug-ins that change how a network trains, one module each (ours).

The trainer's loop (:func:`blockout.train.train`) calls the hooks of :class:`Recipe` and knows
no recipe by name; the paper's six methods train with none. :func:`build_recipes` picks the
recipes a :class:`~blockout.config.TrainConfig` asks for:

==========================  =====================================  =========================
recipe                      module                                 picked when
==========================  =====================================  =========================
:class:`MembershipWarmup`   :mod:`blockout.recipes.warmup`         ``membership_warmup > 0``
:class:`SoftWarmPhase`      :mod:`blockout.recipes.soft_warm`      ``soft_epochs > 0``
:class:`CategoricalMemberships` :mod:`blockout.recipes.categorical` a categorical node set
:class:`CoclusteredStart`   :mod:`blockout.recipes.cocluster`      ``cocluster_at`` set
:class:`FreezeAndRescue`    :mod:`blockout.recipes.freeze`         ``freeze_after`` set
:class:`ConnectionBudgetRecipe` :mod:`blockout.recipes.budget`     ``budget_rho`` set
==========================  =====================================  =========================

Only Blockout methods get recipes (the plain methods have no memberships). The order above is
the order of the hooks: soft phase, then co-clustering, then freezing at an epoch start; usage
terms before budget penalties in the loss.

Your own recipe: subclass :class:`Recipe` and pass it with ``train(config, recipes=[...])``
(appended after the configured ones).
"""

from __future__ import annotations

from typing import Any

from blockout.recipes.base import Recipe, RecipeList, TrainContext, layer_sets, learning_progress
from blockout.recipes.budget import ConnectionBudgetRecipe
from blockout.recipes.categorical import CategoricalMemberships
from blockout.recipes.cocluster import CoclusteredStart, cocluster_memberships
from blockout.recipes.freeze import FreezeAndRescue
from blockout.recipes.soft_warm import SoftWarmPhase
from blockout.recipes.warmup import MembershipWarmup

__all__ = ["Recipe", "RecipeList", "TrainContext", "build_recipes", "layer_sets", "learning_progress",
           "MembershipWarmup", "SoftWarmPhase", "CategoricalMemberships", "CoclusteredStart", "FreezeAndRescue",
           "ConnectionBudgetRecipe", "cocluster_memberships"]


def build_recipes(config: Any) -> RecipeList:
    """The recipes ``config`` (a :class:`~blockout.config.TrainConfig`) asks for, in hook order.

    >>> from blockout.config import TrainConfig
    >>> build_recipes(TrainConfig(method="hard-learned")).recipes
    []
    >>> build_recipes(TrainConfig.hard_budgeted(epochs=4)).recipes  # doctest: +NORMALIZE_WHITESPACE
    [CategoricalMemberships(temperature=1.0, temperature_end=None, usage_weight=1.0, class_usage_weight=0.0),
     FreezeAndRescue(after=2, rescue=True), ConnectionBudgetRecipe(rho=0.16666666666666666, layers='classifier')]
    >>> build_recipes(TrainConfig(method="fc", soft_epochs=2)).recipes  # plain methods: none
    []
    """
    from blockout.config import BLOCKOUT_METHODS

    if config.model.method not in BLOCKOUT_METHODS:
        return RecipeList()
    rc = config.recipe
    recipes: list[Recipe] = []
    if rc.membership_warmup:
        recipes.append(MembershipWarmup.from_config(config))
    if rc.soft_epochs:
        recipes.append(SoftWarmPhase.from_config(config))
    if "categorical" in (rc.hidden_membership, rc.class_membership):
        recipes.append(CategoricalMemberships.from_config(config))
    if rc.cocluster_at is not None:
        recipes.append(CoclusteredStart.from_config(config))
    if rc.freeze_after is not None:
        recipes.append(FreezeAndRescue.from_config(config))
    if rc.budget_rho is not None:
        recipes.append(ConnectionBudgetRecipe.from_config(config))
    return RecipeList(recipes)
