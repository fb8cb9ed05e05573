"""What every network with a Blockout FC stack offers the trainer and the recipes.

:class:`FCStack` is the base class of :class:`blockout.models.BlockoutNet` (our trainer's network:
trunk + stack) and :class:`blockout.head.BlockoutHead` (the stack alone, on a user's backbone).
The recipes (:mod:`blockout.recipes`) act on it through this interface and nothing else:

==========================  ==================================================================
``method``, ``clusters``,   the method, k, the number of classes
``num_classes``
``set_names``,              node sets (input first, classes last) and the layers between them;
``layer_names``             ``node_sets[name]`` / ``fc[name]`` / ``drop[name]`` hold the modules
``plain``                   every Blockout layer acts as ``nn.Linear`` (the co-clustered start's
                            warm-up; not saved: a recipe sets it from the epoch)
``mask_blend``              ``a`` in ``W * (a + (1 - a) M)``: the plain layer fading into the
                            masked one (not saved: a recipe sets it from the step)
``is_blockout``,            whether the layers are Blockout layers; ``hard`` (sampled) or
``base_mode``               ``soft`` (expected) memberships of the method
``budgets``                 connection budgets by layer (empty unless the budget recipe adds them)
==========================  ==================================================================

and the methods :meth:`~FCStack.set_mode`, :meth:`~FCStack.fanin_rescale`,
:meth:`~FCStack.theta_parameters`, :meth:`~FCStack.node_set_probs`,
:meth:`~FCStack.layer_params` and :meth:`~FCStack.forward_stack`.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from torch import nn

from blockout.clusters import shared_sampling
from blockout.config import BLOCKOUT_METHODS
from blockout.linear import BlockoutLinear

__all__ = ["FCStack", "parameter_groups"]


def parameter_groups(parameters: Iterable[nn.Parameter], theta: Iterable[nn.Parameter], lr: float,
                     weight_decay: float = 0.0, theta_lr_mult: float = 1.0) -> list[dict]:
    """Optimiser groups: weight matrices (decayed), biases and norms (no decay), θ (own lr, no decay).

    Groups are named ``weights``, ``no_decay`` and ``theta`` (the recipes find θ's group by its
    name); empty groups are left out; ``base_lr`` is the lr before any schedule.

    >>> w, b, t = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2, 3))
    >>> [(g["name"], len(g["params"]), g["lr"]) for g in parameter_groups([w, b, t], [t], 0.1, theta_lr_mult=10)]
    [('weights', 1, 0.1), ('no_decay', 1, 0.1), ('theta', 1, 1.0)]
    """
    theta_ids = {id(p) for p in theta}
    decay, no_decay, thetas = [], [], []
    for p in parameters:
        if not p.requires_grad:
            continue
        if id(p) in theta_ids:
            thetas.append(p)
        elif p.ndim >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"name": "weights", "params": decay, "weight_decay": weight_decay, "base_lr": lr},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0, "base_lr": lr},
        {"name": "theta", "params": thetas, "weight_decay": 0.0, "base_lr": lr * theta_lr_mult},
    ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["lr"] = g["base_lr"]
    return groups


class FCStack(nn.Module):
    """Base class of a network whose FC stack the recipes and the trainer drive (see the module doc).

    A subclass sets ``method``, ``clusters``, ``num_classes``, ``set_names``, ``layer_names``
    and builds ``node_sets``, ``fc`` and ``drop`` (:func:`blockout.models.build_fc_stack`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.plain = False
        self.mask_blend = 0.0
        # connection budgets by layer (blockout.budget.ConnectionBudget): empty unless the budget
        # recipe fills it; buffers only, saved with the state_dict
        self.budgets = nn.ModuleDict()

    @property
    def is_blockout(self) -> bool:
        """Whether the layers are Blockout layers (the paper's three Blockout methods and our recipes)."""
        return self.method in BLOCKOUT_METHODS

    @property
    def base_mode(self) -> str:
        """``soft`` for ``soft-learned`` (expected memberships), ``hard`` (sampled) otherwise."""
        return "soft" if self.method == "soft-learned" else "hard"

    def forward_stack(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, input features)`` -> ``(B, classes)`` logits through the FC stack.

        Every node set is sampled once per call (shared by the two layers touching it); ReLU
        between layers; ``plain`` and ``mask_blend`` as in the module doc.
        """
        with shared_sampling(self.node_sets):  # the node sets only: cheaper than the whole model
            last = len(self.layer_names) - 1
            for i, lname in enumerate(self.layer_names):
                if lname in self.drop:
                    h = self.drop[lname](h)
                if self.plain and self.is_blockout:  # warm-up of the co-clustered start: a plain FC net
                    layer = self.fc[lname]
                    h = nn.functional.linear(h, layer.weight, layer.bias)
                elif self.mask_blend > 0.0 and self.is_blockout:
                    # a (W x + b) + (1 - a) ((W * M) x + b) = (W * (a + (1 - a) M)) x + b
                    layer, a = self.fc[lname], float(self.mask_blend)
                    h = a * nn.functional.linear(h, layer.weight, layer.bias) + (1.0 - a) * layer(h)
                else:
                    h = self.fc[lname](h)
                if i < last:
                    h = torch.relu(h)
        return h

    def set_mode(self, mode: str) -> None:
        """Switch every Blockout layer to ``hard`` (sampled) or ``soft`` (expected) memberships."""
        if mode not in ("hard", "soft"):
            raise ValueError(f"mode must be 'hard' or 'soft', got {mode!r}")
        for layer in self.fc.values():
            if isinstance(layer, BlockoutLinear):
                layer.mode = mode
                layer.invalidate_cache()

    def invalidate_caches(self) -> None:
        """Drop every Blockout layer's cached effective weight (after changing θ or W in place)."""
        for layer in self.fc.values():
            if isinstance(layer, BlockoutLinear):
                layer.invalidate_cache()

    @torch.no_grad()
    def fanin_rescale(self) -> dict[str, float]:
        """Multiply each Blockout layer's weight by ``1/sqrt(mean expected mask)`` (ours).

        A mask that keeps a share ``d`` of the connections shrinks the pre-activation variance
        by ``d``; the rescale restores the ``nn.Linear`` start. Returns ``{layer: factor}``.
        """
        from blockout.functional import count_mask, union_mask

        factors = {}
        for lname, layer in self.fc.items():
            if isinstance(layer, BlockoutLinear):
                # the mean of sampled masks (exact in expectation for every membership kind;
                # the closed-form union expectation assumes independent clusters)
                fn = union_mask if layer.mask == "union" else count_mask
                draws = [fn(layer.out_clusters.sample(), layer.in_clusters.sample()).mean() for _ in range(8)]
                density = float(torch.stack(draws).mean()) * layer.scale
                factor = 1.0 / math.sqrt(max(density, 1e-6))
                layer.weight.mul_(factor)
                layer.invalidate_cache()
                factors[lname] = factor
        return factors

    def theta_parameters(self) -> list[nn.Parameter]:
        """Every membership parameter θ (trainable or not)."""
        return [p for ns in self.node_sets.values() for p in ns.parameters()]

    @torch.no_grad()
    def node_set_probs(self) -> dict[str, np.ndarray]:
        """P of every node set as float32 numpy ``(size, clusters)``."""
        return {name: ns.probs.detach().float().cpu().numpy() for name, ns in self.node_sets.items()}

    @torch.no_grad()
    def layer_params(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Raw weights ``(out, in)`` and biases ``(out,)`` of every FC layer, as float32 numpy."""
        weights, biases = {}, {}
        for lname in self.layer_names:
            layer = self.fc[lname]
            weights[lname] = layer.weight.detach().float().cpu().numpy()
            if layer.bias is not None:
                biases[lname] = layer.bias.detach().float().cpu().numpy()
        return weights, biases
