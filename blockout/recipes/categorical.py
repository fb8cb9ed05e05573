"""Categorical memberships (ours): temperature annealing and usage balancing.

The categorical node sets themselves (:class:`blockout.membership.CategoricalClusters`, each
node in exactly ``m`` clusters) are built with the model; this recipe trains them: it moves the
temperature of every categorical set along the membership-learning phase (geometric from
``temperature`` to ``temperature_end``) and adds the usage-balancing terms
``weight * KL(mean usage || uniform)``: ``usage_weight`` for hidden sets, ``class_usage_weight``
for the class set. Frozen sets (no gradient) add nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from blockout.membership import CategoricalClusters
from blockout.recipes.base import Recipe, TrainContext


def temperature_at(start: float, end: float | None, progress: float) -> float:
    """Gumbel / softmax temperature at ``progress``: geometric from ``start`` to ``end``.

    >>> temperature_at(1.0, None, 0.7), temperature_at(1.0, 0.25, 0.5), temperature_at(1.0, 0.25, 2.0)
    (1.0, 0.5, 0.25)
    """
    if end is None:
        return float(start)
    t = min(max(progress, 0.0), 1.0)
    return float(start * (end / start) ** t)


class CategoricalMemberships(Recipe):
    """Temperature schedule and usage balancing of the categorical node sets."""

    name = "categorical"

    def __init__(self, temperature: float = 1.0, temperature_end: float | None = None, usage_weight: float = 1.0,
                 class_usage_weight: float = 0.0) -> None:
        self.temperature = float(temperature)
        self.temperature_end = temperature_end
        self.usage_weight = float(usage_weight)
        self.class_usage_weight = float(class_usage_weight)

    @classmethod
    def from_config(cls, config) -> "CategoricalMemberships":
        rc = config.recipe
        return cls(rc.temperature, rc.temperature_end, rc.usage_weight, rc.class_usage_weight)

    def set_temperature(self, model: nn.Module, progress: float) -> None:
        """Every categorical set at the temperature of ``progress`` (not saved: set before every step)."""
        temp = temperature_at(self.temperature, self.temperature_end, progress)
        for ns in model.node_sets.values():
            if isinstance(ns, CategoricalClusters):
                ns.temperature = temp

    def usage_terms(self, model: nn.Module) -> list[torch.Tensor]:
        """``weight * usage_loss()`` of every categorical set that trains and has a weight > 0."""
        terms = []
        if model.plain:  # warm-up of the co-clustered start: memberships unused
            return terms
        for name, ns in model.node_sets.items():
            if isinstance(ns, CategoricalClusters):
                # the class node set has its own weight (--class-usage-weight), the hidden sets --usage-weight
                weight = self.class_usage_weight if name == "classes" else self.usage_weight
                if weight > 0 and ns.theta.requires_grad:
                    terms.append(weight * ns.usage_loss())
        return terms

    def before_step(self, ctx: TrainContext) -> None:
        self.set_temperature(ctx.model, ctx.progress)

    def extra_loss(self, ctx: TrainContext) -> list[torch.Tensor]:
        return self.usage_terms(ctx.model)

    def __repr__(self) -> str:
        return (f"CategoricalMemberships(temperature={self.temperature}, temperature_end={self.temperature_end}, "
                f"usage_weight={self.usage_weight}, class_usage_weight={self.class_usage_weight})")
