"""The plug-in interface of the trainer: :class:`Recipe`, the hooks it may implement, and the
:class:`TrainContext` the trainer hands to them.

A recipe changes how a network trains without the training loop knowing it: the loop
(:func:`blockout.train.train`) calls every hook of every recipe at fixed points and has no
recipe-specific branch. The paper's six methods train with no recipe at all. The hooks, in the
order the loop calls them:

=========================  ===================================================================
``on_build(model)``        once, after the model is built and before it moves to its device and
                           the optimiser sees it: attach modules or buffers that must be saved
                           with the model's ``state_dict`` (e.g. budget multipliers)
``load_state_dict(state)`` on resume, the recipe's own state saved by :meth:`Recipe.state_dict`
``on_resume(ctx)``         on resume, after the model, optimiser and recipe states are loaded
``on_epoch_start(ctx)``    at the start of every epoch (phases: soft/hard, plain/masked, freezing)
``before_step(ctx)``       before every forward pass, after the learning rates are set
                           (schedules that are functions of the step; the lr of θ)
``after_forward(ctx, logits, targets)`` after the forward pass of a training step, before the
                           loss: see the batch's outputs and labels (data-driven statistics,
                           e.g. a confusion matrix); nothing may change the graph
``extra_loss(ctx)``        after the forward pass: a term (or terms) added to the loss, or None
``after_step(ctx)``        after the optimiser step (e.g. dual ascent)
``epoch_metrics(ctx)``     after the evaluation at the end of an epoch: keys for ``metrics.jsonl``
``snapshot_arrays(model)`` at every snapshot: ``{layer: array}`` saved as ``multiplier__<layer>``
``state_dict()``           at every checkpoint: what must survive a resume and does not live in
                           the model (plain tensors, numbers, strings, lists and dicts)
=========================  ===================================================================

Everything a hook may need is in the :class:`TrainContext`; a hook that is a pure function of
``ctx.step`` (a schedule) needs no state to resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Recipe", "RecipeList", "TrainContext", "learning_progress", "layer_sets"]


def learning_progress(step: int, steps_per_epoch: int, epochs: int, freeze_after: int | None) -> float:
    """Share of the membership-learning phase done at ``step`` (1 once memberships are frozen).

    >>> learning_progress(50, 10, 20, 10), learning_progress(150, 10, 20, 10), learning_progress(50, 10, 20, None)
    (0.5, 1.0, 0.25)
    """
    learn_epochs = freeze_after if freeze_after else epochs
    total = max(1, steps_per_epoch * learn_epochs)
    return min(1.0, step / total)


def layer_sets(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module, nn.Module]]:
    """``(layer name, BlockoutLinear, in node set, out node set)`` for every Blockout layer of a
    :class:`~blockout.fcstack.FCStack` (a BlockoutNet or a BlockoutHead; empty for the plain methods)."""
    if not model.is_blockout:
        return []
    out = []
    for i, lname in enumerate(model.layer_names):
        out.append((lname, model.fc[lname], model.node_sets[model.set_names[i]],
                    model.node_sets[model.set_names[i + 1]]))
    return out


@dataclass
class TrainContext:
    """What the trainer tells the hooks: the model, the optimiser, the config and the position.

    ``step`` is the number of optimiser steps done before the current one (0-based index of the
    step about to run, inside ``before_step`` / ``extra_loss``; after ``after_step`` the loop
    advances it). ``epoch`` is the 0-based current epoch, ``epochs_done`` the completed ones.
    """

    model: nn.Module
    config: Any
    optimizer: torch.optim.Optimizer | None = None
    steps_per_epoch: int = 1
    is_main: bool = True
    step: int = 0
    epoch: int = 0
    epochs_done: int = 0
    log: Callable[[str], None] = print

    @property
    def progress(self) -> float:
        """Share of the membership-learning phase done (:func:`learning_progress`)."""
        return learning_progress(self.step, self.steps_per_epoch, self.config.optim.epochs,
                                 self.config.recipe.freeze_after)


class Recipe:
    """Base class of a training recipe: every hook does nothing.

    Subclass it and override the hooks you need (see the module docstring for when each runs).
    ``name`` identifies the recipe's entry in a checkpoint's ``recipes`` state.

    >>> class Shout(Recipe):
    ...     name = "shout"
    ...     def epoch_metrics(self, ctx):
    ...         return {"shout": ctx.epochs_done}
    >>> RecipeList([Shout()]).epoch_metrics(TrainContext(model=nn.Linear(2, 2), config=None, epochs_done=3))
    {'shout': 3}
    """

    name: str = "recipe"

    def on_build(self, model: nn.Module) -> None:
        """Attach what must live in the model (saved with its ``state_dict``)."""

    def on_resume(self, ctx: TrainContext) -> None:
        """Restore what is not in any state dict (e.g. which parameters train) after loading."""

    def on_epoch_start(self, ctx: TrainContext) -> None:
        """At the start of epoch ``ctx.epoch``."""

    def before_step(self, ctx: TrainContext) -> None:
        """Before the forward pass of step ``ctx.step`` (learning rates already set)."""

    def after_forward(self, ctx: TrainContext, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """After the forward pass of step ``ctx.step``: the batch's ``logits`` (B, classes) and
        ``targets`` (B,) of this rank. A recipe that accumulates from them must put the sums in its
        :meth:`state_dict` (or the model) so that a resume mid-epoch continues them exactly."""

    def extra_loss(self, ctx: TrainContext) -> torch.Tensor | Sequence[torch.Tensor] | None:
        """A scalar term (or several) to add to the loss of this step, or None."""
        return None

    def after_step(self, ctx: TrainContext) -> None:
        """After the optimiser step."""

    def epoch_metrics(self, ctx: TrainContext) -> dict[str, Any]:
        """Keys to add to the epoch's ``metrics.jsonl`` record (JSON-ready values)."""
        return {}

    def snapshot_arrays(self, model: nn.Module) -> dict[str, np.ndarray]:
        """``{layer: array}`` to save in every snapshot as ``multiplier__<layer>``."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What must survive a resume outside the model (empty: nothing)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RecipeList(Recipe):
    """Several recipes as one: every hook calls the recipes in order (the trainer holds one).

    Loss terms are collected from every recipe in order and summed once
    (:meth:`total_loss`); metrics and snapshot arrays are merged in order.
    """

    name = "recipes"

    def __init__(self, recipes: Iterable[Recipe] = ()) -> None:
        self.recipes = list(recipes)
        names = [r.name for r in self.recipes]
        if len(set(names)) != len(names):
            raise ValueError(f"recipe names must be unique, got {names}")

    def __iter__(self):
        return iter(self.recipes)

    def __len__(self) -> int:
        return len(self.recipes)

    def __repr__(self) -> str:
        return f"RecipeList({self.recipes!r})"

    def on_build(self, model: nn.Module) -> None:
        for r in self.recipes:
            r.on_build(model)

    def on_resume(self, ctx: TrainContext) -> None:
        for r in self.recipes:
            r.on_resume(ctx)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        for r in self.recipes:
            r.on_epoch_start(ctx)

    def before_step(self, ctx: TrainContext) -> None:
        for r in self.recipes:
            r.before_step(ctx)

    def after_forward(self, ctx: TrainContext, logits: torch.Tensor, targets: torch.Tensor) -> None:
        for r in self.recipes:
            r.after_forward(ctx, logits, targets)

    def loss_terms(self, ctx: TrainContext) -> list[torch.Tensor]:
        """Every recipe's extra terms, in order."""
        terms: list[torch.Tensor] = []
        for r in self.recipes:
            extra = r.extra_loss(ctx)
            if extra is None:
                continue
            terms.extend([extra] if torch.is_tensor(extra) else list(extra))
        return terms

    def extra_loss(self, ctx: TrainContext) -> torch.Tensor | None:
        terms = self.loss_terms(ctx)
        # one sum over every term (the order of the additions is part of bit-identical training)
        return torch.stack([t.reshape(()) for t in terms]).sum() if terms else None

    def total_loss(self, loss: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """``loss`` plus every recipe's extra terms (``loss`` itself when there are none)."""
        extra = self.extra_loss(ctx)
        return loss if extra is None else loss + extra

    def after_step(self, ctx: TrainContext) -> None:
        for r in self.recipes:
            r.after_step(ctx)

    def epoch_metrics(self, ctx: TrainContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in self.recipes:
            out.update(r.epoch_metrics(ctx))
        return out

    def snapshot_arrays(self, model: nn.Module) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for r in self.recipes:
            out.update(r.snapshot_arrays(model))
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{recipe name: state}`` of the recipes that have state."""
        return {r.name: s for r in self.recipes if (s := r.state_dict())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for r in self.recipes:
            if r.name in state:
                r.load_state_dict(state[r.name])
