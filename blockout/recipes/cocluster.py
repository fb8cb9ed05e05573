"""Co-clustered warm start (ours): a plain warm-up, then every membership from a co-clustering.

For the first ``cocluster_at`` epochs every Blockout layer acts as a plain FC layer
(``model.plain``; θ unused). At the start of epoch ``cocluster_at`` the memberships are set in one
step from a balanced co-clustering of the warm-up weights (:func:`cocluster_memberships`), and
Blockout training goes on from there; with ``cocluster_anneal_epochs`` the mask then fades in
step by step (``model.mask_blend``, :func:`anneal_blend`) instead of switching at once.

Whether the co-clustering happened is the model's ``cocluster_done`` buffer and the class
assignment its ``cocluster_classes`` buffer (attached in :meth:`CoclusteredStart.on_build`), so a
resumed run neither repeats nor skips it; the plain flag and the blend are functions of the
epoch and the step. The epoch after the co-clustering, ``metrics.jsonl`` records
``cocluster_classes`` (the class assignment, for the ARI right after it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from blockout.membership import CategoricalClusters
from blockout.recipes.base import Recipe, TrainContext, layer_sets

__all__ = ["CoclusteredStart", "ConfusionAccumulator", "anneal_blend", "cocluster_memberships", "rownorm_rescale"]


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


@torch.no_grad()
def rownorm_rescale(model: nn.Module, max_factor: float = 10.0) -> dict[str, float]:
    """Scale each Blockout weight row so that ``||W_i * s E[M]_i|| = ||W_i||`` (plain norm).

    Used when a plain warm-up hands over to masked training: without it the effective weights
    drop by up to a factor k (the previous round's accuracy loss at every mask change). The
    factor is capped at ``max_factor``. Returns ``{layer: mean factor}``.
    """
    out = {}
    for lname, layer, _in_set, _out_set in layer_sets(model):
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
def cocluster_memberships(model: nn.Module, config: Any,
                          class_distances: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Set every learned membership from a balanced co-clustering of the weights (ours).

    The class layer ``|W|`` (classes, h_last) is co-clustered (:func:`blockout.cocluster.spectral_cocluster`,
    seeded by ``config.seed``), or with ``config.cocluster_method == "signed"`` the classes are
    clustered by their signed weight rows (:func:`blockout.cocluster.signed_row_clusters`), or with
    ``"linkage"`` by the average-linkage dendrogram of those rows cut into k unequal groups
    (:func:`blockout.cocluster.linkage_row_clusters`; every hidden set then splits its nodes over the
    clusters in proportion to their numbers of classes), or with ``"nested"`` that dendrogram cut twice
    (:func:`blockout.cocluster.nested_cocluster`: classes and the last hidden set in k fine clusters,
    each earlier hidden node in every fine cluster of one coarse group; ``config.cocluster_coarse``
    groups, or chosen from the dendrogram), and the last hidden set assigned against them; each earlier hidden node set is assigned from the layer after it
    (:func:`blockout.cocluster.assign_inputs`). Categorical sets get logits
    ``config.cocluster_scale * onehot``; Bernoulli sets get P = ``cocluster_class_high`` in the
    node's cluster and ``cocluster_class_low`` elsewhere. Fixed node sets are left alone. With
    ``config.cocluster_rescale == "rownorm"`` the weights are then rescaled
    (:func:`rownorm_rescale`). Marks the model's ``cocluster_done`` buffer. With ``linkage`` and
    ``config.cocluster_k`` other than ``"given"`` the number of groups is read off the dendrogram
    (:func:`blockout.cocluster.choose_k`, at most k); the clusters it leaves empty get θ = −:data:`DEAD_LOGIT`
    in every node set (no node is ever sampled into them). With ``class_distances`` (classes, classes),
    e.g. :func:`blockout.cocluster.confusion_distances` (``cocluster_source confusion``), ``linkage``
    and ``nested`` cut the average-linkage dendrogram of those distances instead of the weight rows'
    (:func:`blockout.cocluster.distance_class_groups`); the hidden nodes are still assigned from the weights. Returns
    ``{node set: assignment (n,)}``.
    """
    from blockout.cocluster import (K_RULE_AUTO, assign_inputs, choose_k, distance_class_groups, distance_linkage,
                                    linkage_row_clusters, nested_cocluster, proportional_counts, signed_row_clusters,
                                    spectral_cocluster)

    k = model.clusters
    names, layers = model.set_names, model.layer_names
    W_cls = model.fc[layers[-1]].weight.detach().float().cpu().numpy()  # (classes, h_last)
    counts = None  # hidden nodes per cluster: balanced, or (linkage) in proportion to the class groups
    method = config.cocluster_method
    if method == "signed":
        # classes by their signed weight rows, then the last hidden set against those clusters
        rows = signed_row_clusters(W_cls, k, seed=int(config.seed))
        cols = assign_inputs(W_cls, rows, k)
    elif method == "linkage":
        # unequal class groups (the weight-induced dendrogram cut into k); each hidden set gives every
        # cluster a share of its nodes proportional to the cluster's number of classes. With
        # cocluster_k != "given" the number of groups is read off the dendrogram (at most k):
        # the clusters beyond it get no classes and no nodes (they die, see below)
        rule = config.cocluster_k
        if class_distances is not None:
            rows = distance_class_groups(class_distances, k, rule)
        else:
            k_used = k if rule == "given" else choose_k(W_cls, k, rule=K_RULE_AUTO if rule == "auto" else rule)
            rows = linkage_row_clusters(W_cls, k_used)
        sizes = np.bincount(rows, minlength=k)
        cols = assign_inputs(W_cls, rows, k, counts=proportional_counts(sizes, W_cls.shape[1]))
        counts = sizes
    elif method == "nested":
        # two cuts of the class dendrogram: last hidden set one fine cluster per node, earlier hidden
        # sets a coarse group per node (every fine cluster of the group: m > 1), classes fine
        first = next(j for j, n in enumerate(names) if n != "trunk")  # first node set with memberships
        ws = [model.fc[layers[j]].weight.detach().float().cpu().numpy() for j in range(first, len(layers))]
        # cocluster_k != "given": k fine groups read off the class dendrogram, the clusters beyond die
        # a given coarse count bounds the chosen fine count from below (more fine groups than coarse
        # ones, as far as k allows): capping the coarse count at a smaller fine count would silently
        # give one level of branches instead of the asked-for split
        k_min = 2 if config.cocluster_coarse is None else min(int(config.cocluster_coarse) + 1, k)
        k_fine = _fine_count(W_cls, k, config.cocluster_k, class_distances, k_min=k_min)
        coarse = None if config.cocluster_coarse is None else min(int(config.cocluster_coarse), k_fine)
        class_linkage = None if class_distances is None else distance_linkage(class_distances)
        nested = nested_cocluster(ws, k_fine, coarse, class_linkage=class_linkage)
        rows = nested.assign[-1]
        members = {name: np.pad(m, ((0, 0), (0, k - k_fine))) for name, m in zip(names[first:], nested.members)}
        assign = dict(zip(names[first:], nested.assign))
        counts = np.bincount(rows, minlength=k) if k_fine < k else None
    else:
        rows, cols = spectral_cocluster(W_cls, k, seed=int(config.seed))
    if method != "nested":
        assign = {names[-1]: rows, names[-2]: cols}
        for j in range(len(layers) - 2, -1, -1):  # fc_j: names[j] -> names[j + 1]
            if names[j] == "trunk":
                break
            W = model.fc[layers[j]].weight.detach().float().cpu().numpy()  # (out, in)
            assign[names[j]] = assign_inputs(W, assign[names[j + 1]], k, counts=None if counts is None
                                             else proportional_counts(counts, W.shape[1]))
        members = {name: np.eye(k, dtype=bool)[a] for name, a in assign.items()}
    for name in assign:
        ns = model.node_sets[name]
        if not isinstance(ns.theta, nn.Parameter):
            continue  # fixed memberships (trunk in every cluster, towers)
        onehot = torch.as_tensor(members[name], dtype=ns.theta.dtype, device=ns.theta.device)  # (n, k) 0/1
        if isinstance(ns, CategoricalClusters) and int(onehot.sum(dim=1).max()) > 1:
            raise ValueError(f"node set {name}: nested memberships need Bernoulli memberships "
                             "(categorical sets hold exactly m clusters per node)")
        if isinstance(ns, CategoricalClusters):
            ns.theta.copy_(float(config.cocluster_scale) * onehot)
        else:
            ns.set_probs(torch.where(onehot > 0, torch.tensor(float(config.cocluster_class_high)),
                                     torch.tensor(float(config.cocluster_class_low))))
        dead = torch.as_tensor(~members[name].any(axis=0), device=onehot.device)  # (k,) clusters without nodes
        if counts is not None and bool(dead.any()):
            # a cluster left empty by a chosen k dies: nobody is sampled into it, and the gradient through
            # a membership this far out (sigmoid/softmax ~ e^-30) is below Adam's eps, so it stays dead
            ns.theta[:, dead] = -DEAD_LOGIT
    model.invalidate_caches()
    if config.cocluster_rescale == "rownorm":
        rownorm_rescale(model)
    model.cocluster_done.fill_(True)
    model.cocluster_classes.copy_(torch.as_tensor(rows, dtype=torch.long))
    return assign


def _fine_count(W_cls: np.ndarray, k: int, rule: str, D: np.ndarray | None, k_min: int = 2) -> int:
    """Number of fine groups of the nested co-clustering: ``k``, or with ``rule`` other than ``"given"``
    read off the class dendrogram of the distances ``D`` (or of the weight rows ``W_cls``), between
    ``k_min`` and ``k``."""
    from blockout.cocluster import K_RULE_AUTO, choose_k, distance_class_groups

    if rule == "given":
        return k
    if D is not None:
        return int(distance_class_groups(D, k, rule, k_min=k_min).max()) + 1
    return choose_k(W_cls, k, rule=K_RULE_AUTO if rule == "auto" else rule, k_min=k_min)


class ConfusionAccumulator:
    """Soft confusion sums of the training batches (``cocluster_source confusion``): per label, the
    sum of the softmax outputs and the number of samples, in float64 on the logits' device.

    Kept in the recipe's ``state_dict`` (as CPU tensors) so that a run resumed mid-epoch continues
    the sums exactly; summed over the ranks (all-reduce) when read under ``torchrun``.
    """

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None  # (classes, classes)
        self.counts: torch.Tensor | None = None  # (classes,)

    @torch.no_grad()
    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        p = torch.softmax(logits.detach().double(), dim=1)  # (B, classes)
        if self.sums is None:
            c = p.shape[1]
            self.sums = torch.zeros(c, c, dtype=torch.float64, device=p.device)
            self.counts = torch.zeros(c, dtype=torch.float64, device=p.device)
        self.sums = self.sums.to(p.device)
        self.counts = self.counts.to(p.device)
        self.sums.index_add_(0, targets, p)
        self.counts += torch.bincount(targets, minlength=p.shape[1]).double()

    def distances(self) -> np.ndarray:
        """Class distances (:func:`blockout.cocluster.confusion_distances`) of the sums of every rank."""
        from blockout.cocluster import confusion_distances, soft_confusion

        if self.sums is None:
            raise RuntimeError("cocluster_source confusion: no training batch was seen in the epoch before the "
                               "co-clustering (a BlockoutHead needs the batch's logits and labels: "
                               "head.extra_loss(logits, targets); or a run resumed without the confusion sums)")
        sums, counts = self.sums.clone(), self.counts.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(counts)
        return confusion_distances(soft_confusion(sums.cpu().numpy(), counts.cpu().numpy()))

    def state_dict(self) -> dict[str, Any]:
        if self.sums is None:
            return {}
        return {"confusion_sums": self.sums.cpu().clone(), "confusion_counts": self.counts.cpu().clone()}

    def load_state_dict(self, state) -> None:
        if "confusion_sums" in state:
            self.sums = torch.as_tensor(state["confusion_sums"], dtype=torch.float64).clone()
            self.counts = torch.as_tensor(state["confusion_counts"], dtype=torch.float64).clone()


class CoclusteredStart(Recipe):
    """The co-clustered warm start; ``config`` (a :class:`~blockout.config.TrainConfig`) supplies
    ``cocluster_at``, ``cocluster_anneal_epochs`` and what :func:`cocluster_memberships` reads."""

    name = "cocluster"

    def __init__(self, config: Any) -> None:
        self.config = config
        self.at = int(config.cocluster_at)
        self.anneal_epochs = int(config.cocluster_anneal_epochs)
        # the data-driven class affinity: accumulated over the last warm-up epoch only (the network that
        # is about to be cut), dropped once the co-clustering is done
        self.confusion = ConfusionAccumulator() if config.cocluster_source == "confusion" else None

    @classmethod
    def from_config(cls, config) -> "CoclusteredStart":
        return cls(config)

    def on_build(self, model: nn.Module) -> None:
        # saved with the model, so that a resumed run neither repeats nor skips the co-clustering;
        # the class assignment is kept for the record (ARI right after the co-clustering)
        model.register_buffer("cocluster_done", torch.zeros((), dtype=torch.bool))
        model.register_buffer("cocluster_classes", torch.full((model.num_classes,), -1, dtype=torch.long))
        self._thetas = [p for p in model.theta_parameters() if p.requires_grad]  # the memberships that learn

    def on_epoch_start(self, ctx: TrainContext) -> None:
        model = ctx.model
        model.plain = ctx.epoch < self.at
        if model.plain or ctx.epoch == self.at:
            # θ takes no part in the plain warm-up: off while it lasts (DDP would otherwise wait for
            # its gradient and fail under torchrun), on again from the switch
            for p in self._thetas:
                p.requires_grad_(not model.plain)
        if not model.plain and not bool(model.cocluster_done):
            D = None if self.confusion is None else self.confusion.distances()
            assign = cocluster_memberships(model, self.config, class_distances=D)
            if self.confusion is not None:
                self.confusion = ConfusionAccumulator()  # done: nothing left to save
            if ctx.is_main:
                sizes = np.bincount(assign["classes"], minlength=model.clusters)
                what = "weights" if self.confusion is None else "confusion matrix and the weights"
                # with a chosen k the number of groups is the news (empty clusters make the range start at 0)
                chosen = ("" if self.config.cocluster_k == "given" else
                          f"{int((sizes > 0).sum())} of {model.clusters} clusters chosen ({self.config.cocluster_k}), ")
                ctx.log(f"memberships set from a co-clustering of the {what} after {self.at} epoch(s) "
                        f"({chosen}classes per cluster: {sizes.min()}-{sizes.max()})")

    def after_forward(self, ctx: TrainContext, logits: torch.Tensor, targets: torch.Tensor) -> None:
        if self.confusion is not None and ctx.epoch == self.at - 1 and not bool(ctx.model.cocluster_done):
            self.confusion.add(logits, targets)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.confusion is None else self.confusion.state_dict()

    def load_state_dict(self, state) -> None:
        if self.confusion is not None:
            self.confusion.load_state_dict(state)

    def before_step(self, ctx: TrainContext) -> None:
        if self.anneal_epochs:  # the mask fades in after the co-clustering
            ctx.model.mask_blend = anneal_blend(ctx.step, ctx.steps_per_epoch, self.at, self.anneal_epochs)

    def epoch_metrics(self, ctx: TrainContext) -> dict[str, Any]:
        if ctx.epochs_done == self.at + 1:
            classes = ctx.model.cocluster_classes.tolist()
            return {"cocluster_classes": classes, "cocluster_k": len(set(classes))}  # k in use (chosen or given)
        return {}

    def __repr__(self) -> str:
        return f"CoclusteredStart(at={self.at}, anneal_epochs={self.anneal_epochs})"
