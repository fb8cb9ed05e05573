"""Soft warm phase (ours): a hard method trains its first epochs with the expected memberships."""

from __future__ import annotations

from blockout.recipes.base import Recipe, TrainContext


class SoftWarmPhase(Recipe):
    """Epochs ``< epochs`` use soft (expected, deterministic) memberships, later ones hard sampling.

    Only for methods that sample (``base_mode == "hard"``); ``soft-learned`` is left alone. The
    mode is set at every epoch start from the epoch, so a resumed run needs no state.
    """

    name = "soft_warm"

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)

    @classmethod
    def from_config(cls, config) -> "SoftWarmPhase":
        return cls(config.recipe.soft_epochs)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        if self.epochs and ctx.model.base_mode == "hard":
            ctx.model.set_mode("soft" if ctx.epoch < self.epochs else "hard")

    def __repr__(self) -> str:
        return f"SoftWarmPhase(epochs={self.epochs})"
