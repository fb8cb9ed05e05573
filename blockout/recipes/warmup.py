"""Membership warm-up (ours): θ holds still for the first epochs while the weights learn."""

from __future__ import annotations

from blockout.recipes.base import Recipe, TrainContext


class MembershipWarmup(Recipe):
    """For the first ``epochs`` epochs the learning rate of the θ parameter group is 0.

    A function of the epoch alone, applied after the schedule set the learning rates, so a
    resumed run needs no state.
    """

    name = "membership_warmup"

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)

    @classmethod
    def from_config(cls, config) -> "MembershipWarmup":
        return cls(config.recipe.membership_warmup)

    def before_step(self, ctx: TrainContext) -> None:
        if ctx.epoch < self.epochs:  # memberships held at their start
            for g in ctx.optimizer.param_groups:
                if g.get("name") == "theta":
                    g["lr"] = 0.0

    def __repr__(self) -> str:
        return f"MembershipWarmup(epochs={self.epochs})"
