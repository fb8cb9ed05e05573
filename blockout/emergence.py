"""Training-time glue for the emergence options (our additions, issue 5; not the paper's).

The trainer calls four things from here, so that ``train.py`` only needs a few lines:

* :func:`attach_budgets` (at model build): one :class:`~blockout.budget.ConnectionBudget` per
  constrained Blockout layer, stored in ``model.budgets`` so that the multipliers are saved and
  resumed with the model's ``state_dict``.
* :func:`emergence_loss` (every step, before backward): the usage-balancing terms of the
  categorical node sets plus the budget penalties; it also moves temperature and budget
  schedules to the current training progress. Returns the term to add to the loss and the row
  densities that :func:`update_budgets` needs.
* :func:`update_budgets` (every step, after the optimiser step): dual ascent of the multipliers.
* :func:`multiplier_arrays` / :func:`multiplier_summary`: ``multiplier__<layer>`` snapshot arrays
  and the ``"multipliers"`` object of a ``metrics.jsonl`` record.

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

__all__ = [
    "attach_budgets",
    "apply_schedules",
    "emergence_loss",
    "update_budgets",
    "multiplier_arrays",
    "multiplier_summary",
    "temperature_at",
    "learning_progress",
    "cocluster_memberships",
    "anneal_blend",
    "rownorm_rescale",
]


def temperature_at(start: float, end: float | None, progress: float) -> float:
    """Gumbel / softmax temperature at ``progress``: geometric from ``start`` to ``end``.

    >>> temperature_at(1.0, None, 0.7), temperature_at(1.0, 0.25, 0.5), temperature_at(1.0, 0.25, 2.0)
    (1.0, 0.5, 0.25)
    """
    if end is None:
        return float(start)
    t = min(max(progress, 0.0), 1.0)
    return float(start * (end / start) ** t)


def learning_progress(step: int, steps_per_epoch: int, epochs: int, freeze_after: int | None) -> float:
    """Share of the membership-learning phase done at ``step`` (1 once memberships are frozen).

    >>> learning_progress(50, 10, 20, 10), learning_progress(150, 10, 20, 10), learning_progress(50, 10, 20, None)
    (0.5, 1.0, 0.25)
    """
    learn_epochs = freeze_after if freeze_after else epochs
    total = max(1, steps_per_epoch * learn_epochs)
    return min(1.0, step / total)


def anneal_blend(step: int, steps_per_epoch: int, cocluster_at: int | None, anneal_epochs: int) -> float:
    """Share ``a`` of the plain layer in ``W * (a + (1 - a) M)`` for the training step ``step`` (0-based).

    After the co-clustering (at the start of epoch ``cocluster_at``) ``a`` falls linearly from 1 to
    0 over ``anneal_epochs`` epochs, one notch per step, so the weights adapt while the off-cluster
    connections fade (the one-step switch destroyed the warm-up features, docs/emergence.md Round 4).
    0 when there is no annealing or it is over; 0 before the switch too (the model is plain then).

    >>> [round(anneal_blend(s, 2, 1, 2), 2) for s in range(1, 7)]  # steps 0-1: the plain epoch
    [0.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    >>> anneal_blend(5, 2, 1, 0), anneal_blend(1, 2, None, 3)
    (0.0, 0.0)
    """
    if not anneal_epochs or cocluster_at is None:
        return 0.0
    done = step - cocluster_at * steps_per_epoch + 1  # masked steps including this one
    if done < 1:
        return 0.0
    return float(max(0.0, 1.0 - done / (anneal_epochs * steps_per_epoch)))


def _layer_sets(model: nn.Module):
    """``(layer name, BlockoutLinear, in node set, out node set)`` for every Blockout layer."""
    if not getattr(model, "is_blockout", False):
        return []
    out = []
    for i, lname in enumerate(model.layer_names):
        out.append((lname, model.fc[lname], model.node_sets[model.set_names[i]],
                    model.node_sets[model.set_names[i + 1]]))
    return out


def attach_budgets(model: nn.Module, config: Any) -> None:
    """Give ``model`` its budgets (``model.budgets``, a ModuleDict; empty when the budget is off).

    ``config.budget_layers`` = "classifier" constrains the class layer, "all" every Blockout
    layer whose output memberships are learned.
    """
    model.budgets = nn.ModuleDict()
    rho = getattr(config, "budget_rho", None)
    if rho is None:
        return
    layers = _layer_sets(model)
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
    budgets = getattr(model, "budgets", None) or {}
    out = {}
    for lname, _layer, in_set, out_set in _layer_sets(model):
        if lname not in budgets:
            continue
        exclusive = isinstance(in_set, CategoricalClusters) and in_set.m == 1
        out[lname] = live_probability_rows(out_set.probs, in_set.probs.detach(), exclusive_in=exclusive)
    return out


def apply_schedules(model: nn.Module, config: Any, progress: float) -> None:
    """Move the temperature of every categorical set and every budget's rho to ``progress``.

    The trainer calls this *before* the forward pass, so that a resumed run samples with the
    same temperature as an uninterrupted one (the temperature is not part of the state dict).
    """
    if not getattr(model, "is_blockout", False):
        return
    temp = temperature_at(config.temperature, config.temperature_end, progress)
    for ns in model.node_sets.values():
        if isinstance(ns, CategoricalClusters):
            ns.temperature = temp
    for budget in (getattr(model, "budgets", None) or {}).values():
        budget.set_progress(progress)


def emergence_loss(model: nn.Module, config: Any, progress: float) -> tuple[torch.Tensor | None, dict]:
    """Usage-balancing terms and budget penalties at ``progress``; ``(term or None, densities)``.

    Frozen node sets (no gradient) contribute nothing.
    """
    terms = []
    if getattr(model, "plain", False):  # warm-up of the co-clustered start: memberships unused
        return None, {}
    if getattr(model, "is_blockout", False):
        temp = temperature_at(config.temperature, config.temperature_end, progress)
        for name, ns in model.node_sets.items():
            if isinstance(ns, CategoricalClusters):
                ns.temperature = temp
                # the class node set has its own weight (--class-usage-weight), the hidden sets --usage-weight
                weight = config.class_usage_weight if name == "classes" else config.usage_weight
                if weight > 0 and ns.theta.requires_grad:
                    terms.append(weight * ns.usage_loss())
    densities = {}
    budgets = getattr(model, "budgets", None) or {}
    if len(budgets):
        live = {k: v for k, v in row_densities(model).items()
                if model.node_sets[model.set_names[model.layer_names.index(k) + 1]].theta.requires_grad}
        for lname, dens in live.items():
            budget = budgets[lname]
            budget.set_progress(progress)
            terms.append(budget.penalty(dens))
            densities[lname] = dens
    if not terms:
        return None, densities
    return torch.stack([t.reshape(()) for t in terms]).sum(), densities


def update_budgets(model: nn.Module, densities: Mapping[str, torch.Tensor]) -> None:
    """Dual ascent of every budget whose densities were computed this step."""
    budgets = getattr(model, "budgets", None) or {}
    for lname, dens in densities.items():
        budgets[lname].update(dens)


def multiplier_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """``{layer: multipliers}`` as float32 numpy, for the ``multiplier__<layer>`` snapshot arrays."""
    budgets = getattr(model, "budgets", None) or {}
    return {name: b.multiplier.detach().float().cpu().numpy() for name, b in budgets.items()}


@torch.no_grad()
def multiplier_summary(model: nn.Module) -> dict[str, dict[str, float]]:
    """``{layer: {"mean", "max", "rho", "density"}}`` for ``metrics.jsonl`` (empty without budgets).

    ``density`` is the mean expected live density of the layer's rows: the quantity the budget
    holds at ``rho`` (the dashboard plots both against the multipliers).
    """
    budgets = getattr(model, "budgets", None) or {}
    if not len(budgets):
        return {}
    dens = row_densities(model)
    out = {}
    for name, b in budgets.items():
        item = b.summary()
        item["density"] = float(dens[name].mean()) if name in dens else float("nan")
        out[name] = {k: (round(v, 6) if math.isfinite(v) else None) for k, v in item.items()}
    return out


@torch.no_grad()
def rownorm_rescale(model: nn.Module, max_factor: float = 10.0) -> dict[str, float]:
    """Scale each Blockout weight row so that ``||W_i * s E[M]_i|| = ||W_i||`` (plain norm).

    Used when a plain warm-up hands over to masked training: without it the effective weights
    drop by up to a factor k (the previous round's accuracy loss at every mask change). The
    factor is capped at ``max_factor``. Returns ``{layer: mean factor}``.
    """
    out = {}
    for lname, layer, _in_set, _out_set in _layer_sets(model):
        m = layer.expected_mask() * layer.scale  # (out, in)
        num = layer.weight.norm(dim=1)  # (out,)
        den = (layer.weight * m).norm(dim=1)
        factor = (num / den.clamp_min(1e-12)).clamp(min=1.0 / max_factor, max=max_factor)  # (out,)
        layer.weight.mul_(factor[:, None])
        layer.invalidate_cache()
        out[lname] = float(factor.mean())
    return out


#: |θ| of the clusters a chosen k leaves empty (``cocluster_k`` != ``"given"``): P = sigmoid(-30) ≈ 1e-13.
DEAD_LOGIT = 30.0


@torch.no_grad()
def cocluster_memberships(model: nn.Module, config: Any) -> dict[str, np.ndarray]:
    """Set every learned membership from a balanced co-clustering of the weights (ours).

    The class layer ``|W|`` (classes, h_last) is co-clustered (:func:`blockout.cocluster.spectral_cocluster`,
    seeded by ``config.seed``), or with ``config.cocluster_method == "signed"`` the classes are
    clustered by their signed weight rows (:func:`blockout.cocluster.signed_row_clusters`), or with
    ``"linkage"`` by the average-linkage dendrogram of those rows cut into k unequal groups
    (:func:`blockout.cocluster.linkage_row_clusters`; every hidden set then splits its nodes over the
    clusters in proportion to their numbers of classes), and the last hidden set assigned against them; each earlier hidden node set is assigned from the layer after it
    (:func:`blockout.cocluster.assign_inputs`). Categorical sets get logits
    ``config.cocluster_scale * onehot``; Bernoulli sets get P = ``cocluster_class_high`` in the
    node's cluster and ``cocluster_class_low`` elsewhere. Fixed node sets are left alone. With
    ``config.cocluster_rescale == "rownorm"`` the weights are then rescaled
    (:func:`rownorm_rescale`). Marks the model's ``cocluster_done`` buffer. With ``linkage`` and
    ``config.cocluster_k`` other than ``"given"`` the number of groups is read off the dendrogram
    (:func:`blockout.cocluster.choose_k`, at most k); the clusters it leaves empty get θ = −:data:`DEAD_LOGIT`
    in every node set (no node is ever sampled into them). Returns ``{node set: assignment (n,)}``.
    """
    from blockout.cocluster import (K_RULE_AUTO, assign_inputs, choose_k, linkage_row_clusters, proportional_counts,
                                    signed_row_clusters, spectral_cocluster)

    k = model.clusters
    names, layers = model.set_names, model.layer_names
    W_cls = model.fc[layers[-1]].weight.detach().float().cpu().numpy()  # (classes, h_last)
    counts = None  # hidden nodes per cluster: balanced, or (linkage) in proportion to the class groups
    method = getattr(config, "cocluster_method", "spectral")
    if method == "signed":
        # classes by their signed weight rows, then the last hidden set against those clusters
        rows = signed_row_clusters(W_cls, k, seed=int(config.seed))
        cols = assign_inputs(W_cls, rows, k)
    elif method == "linkage":
        # unequal class groups (the weight-induced dendrogram cut into k); each hidden set gives every
        # cluster a share of its nodes proportional to the cluster's number of classes. With
        # cocluster_k != "given" the number of groups is read off the dendrogram (at most k, round 5):
        # the clusters beyond it get no classes and no nodes (they die, see below)
        rule = getattr(config, "cocluster_k", "given")
        k_used = k if rule == "given" else choose_k(W_cls, k, rule=K_RULE_AUTO if rule == "auto" else rule)
        rows = linkage_row_clusters(W_cls, k_used)
        sizes = np.bincount(rows, minlength=k)
        cols = assign_inputs(W_cls, rows, k, counts=proportional_counts(sizes, W_cls.shape[1]))
        counts = sizes
    else:
        rows, cols = spectral_cocluster(W_cls, k, seed=int(config.seed))
    assign = {names[-1]: rows, names[-2]: cols}
    for j in range(len(layers) - 2, -1, -1):  # fc_j: names[j] -> names[j + 1]
        if names[j] == "trunk":
            break
        W = model.fc[layers[j]].weight.detach().float().cpu().numpy()  # (out, in)
        assign[names[j]] = assign_inputs(W, assign[names[j + 1]], k, counts=None if counts is None
                                         else proportional_counts(counts, W.shape[1]))
    for name, a in assign.items():
        ns = model.node_sets[name]
        if not isinstance(ns.theta, nn.Parameter):
            continue  # fixed memberships (trunk in every cluster, towers)
        onehot = torch.zeros_like(ns.theta)
        onehot[torch.arange(len(a)), torch.as_tensor(a, device=onehot.device)] = 1.0  # (n, k)
        if isinstance(ns, CategoricalClusters):
            ns.theta.copy_(float(config.cocluster_scale) * onehot)
        else:
            ns.set_probs(torch.where(onehot > 0, torch.tensor(float(config.cocluster_class_high)),
                                     torch.tensor(float(config.cocluster_class_low))))
        dead = torch.as_tensor(np.bincount(np.asarray(a), minlength=k) == 0, device=onehot.device)
        if counts is not None and bool(dead.any()):
            # a cluster left empty by a chosen k dies: nobody is sampled into it, and the gradient through
            # a membership this far out (sigmoid/softmax ~ e^-30) is below Adam's eps, so it stays dead
            ns.theta[:, dead] = -DEAD_LOGIT
    for layer in model.fc.values():
        if hasattr(layer, "invalidate_cache"):
            layer.invalidate_cache()
    if getattr(config, "cocluster_rescale", "none") == "rownorm":
        rownorm_rescale(model)
    if hasattr(model, "cocluster_done"):
        model.cocluster_done.fill_(True)
        model.cocluster_classes.copy_(torch.as_tensor(rows, dtype=torch.long))
    return assign
