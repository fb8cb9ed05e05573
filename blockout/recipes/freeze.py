"""Freeze and rescue (ours): memberships fixed after some epochs, then the weights fine-tune."""

from __future__ import annotations

from torch import nn

from blockout.recipes.base import Recipe, TrainContext


class FreezeAndRescue(Recipe):
    """From epoch ``after`` on, every learned node set is frozen
    (:func:`blockout.membership.freeze_memberships`: categorical sets keep their ``m`` most
    probable clusters, Bernoulli sets ``P >= 0.5``); with ``rescue`` a node left in no cluster
    (a dead class) gets its most probable one.

    Frozen values travel with the model's ``state_dict``; which parameters train does not, so on
    resume the sets are frozen again (idempotent on frozen values).
    """

    name = "freeze"

    def __init__(self, after: int, rescue: bool = True) -> None:
        self.after = int(after)
        self.rescue = bool(rescue)

    @classmethod
    def from_config(cls, config) -> "FreezeAndRescue":
        return cls(config.recipe.freeze_after, rescue=config.recipe.rescue_dead == "on")

    def on_resume(self, ctx: TrainContext) -> None:
        if ctx.epochs_done >= self.after:
            self.freeze(ctx.model, ctx, quiet=True)  # frozen values came with the state; stop θ training again

    def on_epoch_start(self, ctx: TrainContext) -> None:
        if ctx.epoch >= self.after:
            # announced at the switch only: a later epoch gets here first for a head reloaded from its
            # state_dict (values frozen, θ trainable again), which is no new freeze
            self.freeze(ctx.model, ctx, quiet=ctx.epoch > self.after)

    def freeze(self, model: nn.Module, ctx: TrainContext, quiet: bool) -> None:
        """Freeze the learned memberships (idempotent)."""
        from blockout.membership import freeze_memberships

        if not any(p.requires_grad for p in model.theta_parameters()):
            return
        rescued = freeze_memberships(model, rescue=self.rescue)
        if ctx.is_main and not quiet:
            dead = {k: v for k, v in rescued.items() if v}
            ctx.log(f"memberships frozen after {self.after} epoch(s); fine-tuning the weights"
                    + (f" (rescued dead nodes: {dead})" if dead else ""))

    def __repr__(self) -> str:
        return f"FreezeAndRescue(after={self.after}, rescue={self.rescue})"
