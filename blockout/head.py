"""A drop-in Blockout classifier head for any backbone (the public API).

:class:`BlockoutHead` is the fully connected part of the paper's networks on its own: feature
vectors ``(B, in_features)`` in, class logits ``(B, num_classes)`` out. Put it where a backbone's
final ``nn.Linear`` was (``model.fc = BlockoutHead(512, 10)``) and train it with any loop; the
membership sampling, the shared node sets and the test-time expectation happen inside
``forward``. :class:`blockout.logger.RunLogger` writes a run folder from it that the dashboard
and the command line open.

The stack is built by :func:`blockout.models.build_fc_stack`, the same function that builds our
trainer's :class:`~blockout.models.BlockoutNet`, so a head and a trained network of the same
method have the same layers, node sets and initialisation order.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from blockout.config import METHODS, RECIPES, ModelConfig, RecipeConfig, TrainConfig
from blockout.errors import UserError
from blockout.fcstack import FCStack, parameter_groups
from blockout.models import MEMBERSHIP_DEFAULTS, build_fc_stack, make_node_set
from blockout.recipes import RecipeList, TrainContext, build_recipes

__all__ = ["BlockoutHead", "HEAD_METHODS", "RECIPE_OPTIONS"]

#: Every method a :class:`BlockoutHead` takes: the paper's six and our recipes.
HEAD_METHODS = METHODS + RECIPES
#: Recipe options (``recipe=``) a head takes: our :class:`~blockout.config.RecipeConfig` fields
#: that are not membership kinds (those go in ``memberships=``). ``membership_warmup`` is left
#: out: it zeroes θ's learning rate, which needs our trainer's learning-rate schedule to restore it.
RECIPE_OPTIONS = tuple(f.name for f in dataclasses.fields(RecipeConfig)
                       if f.name not in MEMBERSHIP_DEFAULTS and f.name != "membership_warmup")


class BlockoutHead(FCStack):
    """The paper's FC stack with shared node sets, as a classifier head for your backbone.

    Node sets ``trunk -> h1 -> ... -> classes`` (``trunk`` is the backbone's feature vector, in
    every cluster by default); layers ``fc1 ... classifier``, ReLU between them. Each node set
    is shared by the two layers that touch it and sampled once per forward pass.

    Parameters
    ----------
    in_features : int
        Size of the backbone's feature vector (the ``in_features`` of the layer it replaces).
    num_classes : int
        Number of classes (at least 2).
    hidden : sequence of int
        Width of each hidden layer; ``()`` puts the classifier straight on the features. Ignored
        by ``baseline`` (a single linear classifier, as in the paper's table).
    clusters : int
        Number of clusters ``k`` (Blockout methods).
    method : str
        One of the paper's methods: ``baseline``, ``fc``, ``dropout`` (plain layers), or
        ``soft-learned``, ``hard-fixed``, ``hard-learned`` (Blockout layers); or one of our
        recipes, ``hard-cocluster`` (a plain warm-up for the first third of the epochs, then
        every membership set from a clustering of the warm-up weights) or ``hard-budgeted``
        (per-class connection budgets held by dual ascent, memberships frozen at half the
        epochs). A recipe runs on a schedule: give ``epochs``, and drive it from your loop with
        :meth:`start_epoch`, :meth:`extra_loss` and :meth:`end_step` (the Lightning callback
        :class:`blockout.lightning.BlockoutCallback` calls them for you, except the loss).
    mask : {"count", "union"}, optional
        The paper's mask ``C_out C_in^T`` or ours, ``min(1, C_out C_in^T)``; None: the method's
        (``union`` for our recipes, ``count`` otherwise).
    mask_scale : float, optional
        Constant multiplying the mask; None: the method's (``1/k`` for ``count``, 1 for ``union``).
    trunk_clusters : {"all", "learned"}
        The input node set in every cluster (fixed; the paper's shared stem) or learned.
    dropout : float
        Dropout probability of the ``dropout`` method.
    memberships : mapping, optional
        Membership options (ours), keys of :data:`blockout.models.MEMBERSHIP_DEFAULTS`:
        ``hidden_membership`` (``bernoulli``, ``categorical``, ``towers``), ``class_membership``,
        ``membership_m``, ``theta_init_low`` / ``theta_init_high`` and so on; they override the
        method's (our recipes use categorical hidden sets).
    recipe : mapping, optional
        Recipe options (:data:`RECIPE_OPTIONS`, as ``blockout train --help`` lists them with
        ``_`` for ``-``), overriding the method's: e.g. ``{"cocluster_method": "linkage"}``,
        ``{"freeze_after": 8}``, or ``{"soft_epochs": 2}`` on a paper method.
    epochs : int, optional
        Epochs you will train (needed by a recipe: its phases are shares of them).
    steps_per_epoch : int, optional
        Optimiser steps per epoch (e.g. ``len(loader)``), for schedules within the phases; also
        accepted by :meth:`start_epoch`.
    seed : int
        Seed of the co-clustering's k-means (``hard-cocluster``).
    log : callable
        Where a recipe reports its switches (the co-clustering, the freeze); default ``print``.

    Examples
    --------
    >>> import torch
    >>> from blockout import BlockoutHead
    >>> torch.manual_seed(0) and None
    >>> head = BlockoutHead(16, 4, hidden=(8,), clusters=3)
    >>> head(torch.randn(5, 16)).shape
    torch.Size([5, 4])
    >>> list(head.node_sets), list(head.fc)
    (['trunk', 'h1', 'classes'], ['fc1', 'classifier'])
    >>> BlockoutHead(16, 4, method="dropout").fc
    ModuleDict(
      (fc1): Linear(in_features=16, out_features=512, bias=True)
      (fc2): Linear(in_features=512, out_features=512, bias=True)
      (classifier): Linear(in_features=512, out_features=4, bias=True)
    )

    A recipe in your own loop (the co-clustered start, warm-up for the first of three epochs):

    >>> head = BlockoutHead(16, 4, hidden=(8,), clusters=2, method="hard-cocluster", epochs=3, log=None)
    >>> opt = torch.optim.Adam(head.param_groups(lr=1e-2))
    >>> x, y = torch.randn(32, 16), torch.arange(32) % 4
    >>> for epoch in range(3):
    ...     head.start_epoch(epoch, steps_per_epoch=4)
    ...     for step in range(4):
    ...         loss = torch.nn.functional.cross_entropy(head(x), y) + head.extra_loss()
    ...         opt.zero_grad(); loss.backward(); opt.step(); head.end_step()
    ...     print(epoch, head.plain, bool(head.cocluster_done))
    0 True False
    1 False True
    2 False True
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (512, 512), clusters: int = 6,
                 method: str = "hard-learned", *, mask: str | None = None, mask_scale: float | None = None,
                 trunk_clusters: str = "all", dropout: float = 0.5,
                 memberships: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, seed: int = 0,
                 log: Callable[[str], None] | None = print) -> None:
        super().__init__()
        if method not in HEAD_METHODS:
            raise ValueError(f"method must be one of {', '.join(HEAD_METHODS)}, got {method!r}")
        if isinstance(hidden, (str, bytes)) or not (isinstance(hidden, int) or hasattr(hidden, "__iter__")):
            raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        for label, value, low in (("in_features", in_features, 1), ("num_classes", num_classes, 2),
                                  ("clusters", clusters, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
        for label, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{label} must be a positive integer or None, got {value!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
        # mask, mask_scale, trunk_clusters and dropout are checked by TrainConfig below, like every option
        if log is not None and not callable(log):
            raise ValueError(f"log must be a function taking a message (or None), got {log!r}")
        for label, given, known in (("membership", memberships, MEMBERSHIP_DEFAULTS),
                                    ("recipe", recipe, RECIPE_OPTIONS)):
            if given is not None and not isinstance(given, Mapping):
                hint = (f"; our recipes by name go in method=, e.g. method={given!r}"
                        if isinstance(given, str) and given in RECIPES else "")
                example = "{'freeze_after': 8}" if label == "recipe" else "{'hidden_membership': 'categorical'}"
                raise ValueError(f"{label if label == 'recipe' else 'memberships'} must be a mapping of options, "
                                 f"e.g. {example}, got {given!r}{hint}")
            unknown = sorted(set(given or {}) - set(known))
            if unknown:
                raise ValueError(f"unknown {label} option(s) {', '.join(unknown)} (known: {', '.join(known)})")
        if method in RECIPES and epochs is None:
            raise ValueError(f"method {method!r} runs on a schedule of epochs: pass epochs=<the epochs you train>")
        self.method = method
        self.in_features, self.num_classes, self.clusters = in_features, num_classes, clusters
        self.hidden = () if method == "baseline" else hidden
        # the method's options, ours overridden by the caller's, validated in one place (TrainConfig)
        model = {"method": method, "clusters": clusters, "depth": len(self.hidden), "trunk_clusters": trunk_clusters,
                 "dropout": dropout, **({"nodes": max(self.hidden)} if self.hidden else {}),
                 **({"mask": mask} if mask is not None else {}),
                 **({"mask_scale": mask_scale} if mask_scale is not None else {})}
        try:
            self.config = TrainConfig.from_dict({**model, **(memberships or {}), **(recipe or {}), "seed": seed,
                                                 **({"epochs": epochs} if epochs is not None else {})},
                                                source="BlockoutHead")
        except UserError as exc:
            raise ValueError(str(exc)) from None
        cfg = self.config
        # (a co-clustering at or after the last epoch is refused by TrainConfig: it would never happen)
        self.mask = cfg.mask
        self.mask_scale = float(cfg.mask_scale) if cfg.mask_scale is not None else (
            1.0 / clusters if cfg.mask == "count" else 1.0)
        self.trunk_clusters = trunk_clusters
        self.dropout_p = float(cfg.dropout) if method == "dropout" else 0.0
        self.membership_options = {k: getattr(cfg, k) for k in MEMBERSHIP_DEFAULTS}
        depth = len(self.hidden)
        self.set_sizes = [in_features, *self.hidden, num_classes]
        self.set_names = ["trunk"] + [f"h{i}" for i in range(1, depth + 1)] + ["classes"]
        self.layer_names = [f"fc{i}" for i in range(1, depth + 1)] + ["classifier"]

        def make_set(name: str, size: int, learned: bool) -> nn.Module:
            return make_node_set(name, size, clusters, learned, trunk_clusters=trunk_clusters,
                                 options=self.membership_options)

        self.node_sets, self.fc, self.drop = build_fc_stack(
            method, self.set_sizes, self.set_names, self.layer_names, mask=self.mask, mask_scale=self.mask_scale,
            dropout=self.dropout_p, make_set=make_set)
        if self.is_blockout and cfg.fanin_init == "on":
            self.fanin_rescale()
        # our recipes, or recipe options on a paper method; otherwise none (categorical memberships
        # asked for in `memberships` alone leave the usage term to the caller: usage_loss())
        self.recipes: RecipeList = build_recipes(cfg) if (method in RECIPES or recipe) else RecipeList()
        if len(self.recipes) and epochs is None:
            raise ValueError(f"the recipe options {sorted(recipe or {})} run on a schedule of epochs: "
                             "pass epochs=<the epochs you train>")
        self.recipes.on_build(self)
        if len(self.recipes):
            # optimiser steps done, saved with the weights so that a reloaded head resumes its schedule
            self.register_buffer("recipe_step", torch.zeros((), dtype=torch.long))
        self._ctx = TrainContext(model=self, config=cfg, steps_per_epoch=steps_per_epoch or 0,
                                 log=log or (lambda _msg: None))
        self._epoch_started = False
        self._epoch_start_step = 0
        # a user's loop may forget start_epoch; the Lightning callback calls it every epoch itself and
        # clears this, as its steps per epoch are only a guess (1) for data of unknown length
        self._check_epochs = True
        self._prepared_step = -1

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features)`` features (flattened if needed) -> ``(B, num_classes)`` logits."""
        h = x.flatten(1) if x.dim() > 2 else x
        if self.training and len(self.recipes):
            self._before_step()
        return self.forward_stack(h)

    # ------------------------------------------------------------------ recipes in your loop
    def start_epoch(self, epoch: int, *, steps_per_epoch: int | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> None:
        """Call at the start of every epoch (0-based ``epoch``) of a recipe's training.

        Switches the recipe's phases (the co-clustered start's plain warm-up and its
        co-clustering, the freeze). A no-op for the paper's methods. ``steps_per_epoch``
        (optimiser steps per epoch) must be known here or from the constructor.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        if steps_per_epoch is not None:
            if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
                raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
            self._ctx.steps_per_epoch = steps_per_epoch
        if not len(self.recipes):
            return
        if epoch >= self.config.epochs:
            raise ValueError(f"start_epoch({epoch}) but BlockoutHead(method={self.method!r}, "
                             f"epochs={self.config.epochs}): epochs count from 0 (0 .. {self.config.epochs - 1}); "
                             "give the head the epochs you train")
        if self._ctx.steps_per_epoch < 1:
            raise ValueError(f"method {self.method!r}: pass steps_per_epoch (optimiser steps per epoch, e.g. "
                             "len(loader)) to BlockoutHead(...) or to start_epoch(...)")
        ctx = self._ctx
        ctx.optimizer = optimizer if optimizer is not None else ctx.optimizer
        ctx.epoch = ctx.epochs_done = epoch
        ctx.step = int(self.recipe_step)
        self.recipes.on_epoch_start(ctx)
        self._epoch_started = True
        self._epoch_start_step = ctx.step
        self._prepared_step = -1

    def _before_step(self) -> None:
        if not self._epoch_started:
            raise RuntimeError(f"BlockoutHead(method={self.method!r}) runs a recipe: call head.start_epoch(epoch) "
                               "at the start of every epoch and head.end_step() after every optimiser step "
                               "(blockout.lightning.BlockoutCallback does this for you)")
        spe = self._ctx.steps_per_epoch
        if self._check_epochs and self._ctx.step - self._epoch_start_step >= 2 * spe:
            # start_epoch called once, not every epoch: the phases would silently stop switching
            raise RuntimeError(f"BlockoutHead(method={self.method!r}): {self._ctx.step - self._epoch_start_step} "
                               f"optimiser steps since start_epoch({self._ctx.epoch}), two epochs of "
                               f"steps_per_epoch={spe}: call head.start_epoch(epoch) at the start of every epoch "
                               "(and give steps_per_epoch the optimiser steps of one epoch)")
        if self._prepared_step != self._ctx.step:  # once per step (a loop may call forward more than once)
            self.recipes.before_step(self._ctx)
            self._prepared_step = self._ctx.step

    def extra_loss(self, logits: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> torch.Tensor:
        """The recipe's terms to add to your loss after the forward pass of a training step (0 without).

        Usage balancing of categorical node sets (weighted by ``usage_weight``) and the
        connection budgets' penalties. 0 for the paper's methods (categorical sets asked for in
        ``memberships`` alone: add :meth:`usage_loss` yourself).

        Pass the batch's ``logits`` ``(B, num_classes)`` and labels ``targets`` ``(B,)`` too: a
        co-clustered start that groups the classes by the warm-up network's confusion
        (``cocluster_source="confusion"``, the ``hard-cocluster`` default with
        ``cocluster_method`` ``linkage`` or ``nested``) learns from them during its last warm-up
        epoch, and stops with a message saying so when it saw none. Those sums are not part of the
        head's ``state_dict``: reload a head before its last warm-up epoch or after the switch.
        """
        if (logits is None) != (targets is None):
            raise ValueError("pass both logits and targets to extra_loss, or neither")
        if not len(self.recipes) or not self.training:
            return torch.zeros(())
        self._before_step()
        if logits is not None:
            if not (torch.is_tensor(logits) and torch.is_tensor(targets) and logits.dim() == 2
                    and logits.shape[1] == self.num_classes and targets.shape == logits.shape[:1]):
                raise ValueError(f"extra_loss takes logits (B, {self.num_classes}) and integer targets (B,), got "
                                 f"{tuple(getattr(logits, 'shape', ()))} and {tuple(getattr(targets, 'shape', ()))}")
            self.recipes.after_forward(self._ctx, logits, targets.long())
        extra = self.recipes.extra_loss(self._ctx)
        return torch.zeros(()) if extra is None else extra

    def end_step(self) -> None:
        """Call after every optimiser step of a recipe's training (the budgets' dual ascent)."""
        if not len(self.recipes):
            return
        self.recipes.after_step(self._ctx)
        self.recipe_step += 1
        self._ctx.step = int(self.recipe_step)

    def epoch_metrics(self) -> dict[str, Any]:
        """What the recipe reports for ``metrics.jsonl`` at an epoch's end (e.g. the classes'
        clusters after the co-clustering, the budgets' multipliers); ``{}`` without a recipe.
        Pass it on: ``run_logger.log_metrics(step, epoch=e, **head.epoch_metrics())``."""
        if not len(self.recipes):
            return {}
        self._ctx.epochs_done = self._ctx.epoch + 1
        return self.recipes.epoch_metrics(self._ctx)

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """``{layer: array}`` the recipe saves with every snapshot (the budgets' multipliers)."""
        return self.recipes.snapshot_arrays(self)

    def param_groups(self, lr: float, weight_decay: float = 0.0, theta_lr_mult: float | None = None, *,
                     model: nn.Module | None = None) -> list[dict]:
        """Optimiser groups as our trainer makes them: θ with ``lr * theta_lr_mult`` (default: the
        method's, 10 for our recipes) and no weight decay, biases without decay.

        The groups hold the head's parameters only; pass ``model`` (the network the head sits in)
        to put all of its parameters in them, so that the backbone trains too.

        >>> head = BlockoutHead(8, 3, hidden=(4,), clusters=2)
        >>> [(g["name"], g["lr"]) for g in head.param_groups(0.1, theta_lr_mult=5)]
        [('weights', 0.1), ('no_decay', 0.1), ('theta', 0.5)]
        >>> model = nn.Sequential(nn.Linear(5, 8), head)
        >>> [len(g["params"]) for g in head.param_groups(0.1, model=model)]  # + the backbone's weight and bias
        [3, 3, 2]
        """
        if model is not None:
            if not isinstance(model, nn.Module):
                raise ValueError(f"model must be the torch.nn.Module the head is in, got {type(model).__name__}")
            if not any(m is self for m in model.modules()):
                raise ValueError("model must be the network that holds this head (the head is not among its modules)")
        for label, value in (("lr", lr), ("weight_decay", weight_decay), ("theta_lr_mult", theta_lr_mult)):
            if value is None and label == "theta_lr_mult":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{label} must be a number >= 0, got {value!r}")
        mult = self.config.theta_lr_mult if theta_lr_mult is None else float(theta_lr_mult)
        params = (model if model is not None else self).parameters()
        return parameter_groups(params, self.theta_parameters(), lr, weight_decay=weight_decay,
                                theta_lr_mult=mult)

    def recipe_config(self) -> dict[str, Any]:
        """The resolved options of the head's method (flat, JSON-ready): what :class:`RunLogger`
        stores as the run's config, so the dashboard marks the recipe's phases."""
        flat = self.config.to_dict()
        keep = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "trunk"]  # the backbone is yours
        keep += [f.name for f in dataclasses.fields(RecipeConfig)]
        return {k: flat[k] for k in (*keep, "epochs", "theta_lr_mult", "seed") if k in flat}

    def usage_loss(self) -> torch.Tensor:
        """Sum of the usage-balancing terms ``KL(mean usage || uniform)`` of the categorical node
        sets (ours; 0 without categorical sets), unweighted. Our recipes add it with their
        ``usage_weight`` in :meth:`extra_loss`; for a paper method with categorical memberships
        add ``weight * head.usage_loss()`` to your loss.

        >>> BlockoutHead(8, 3, hidden=(4,)).usage_loss()
        tensor(0.)
        """
        from blockout.membership import CategoricalClusters

        terms = [ns.usage_loss() for ns in self.node_sets.values()
                 if isinstance(ns, CategoricalClusters) and ns.theta.requires_grad]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, hidden={self.hidden}, "
                f"clusters={self.clusters}, method={self.method!r}")
