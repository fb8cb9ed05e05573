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

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from blockout.clusters import shared_sampling
from blockout.config import METHODS, RECIPES
from blockout.models import MEMBERSHIP_DEFAULTS, build_fc_stack, make_node_set

__all__ = ["BlockoutHead", "HEAD_METHODS", "TRAINER_RECIPES"]

#: Methods a :class:`BlockoutHead` trains with any loop: the paper's six.
HEAD_METHODS = METHODS
#: Our recipes, and what each needs from ``blockout train`` beyond the forward pass.
TRAINER_RECIPES = {
    "hard-budgeted": "a dual-ascent step of the connection budgets after every optimiser step and the "
                     "membership freeze at half the epochs",
    "hard-cocluster": "a plain warm-up for the first third of the epochs and the co-clustering of the "
                      "warm-up weights that then sets every membership",
}
assert set(TRAINER_RECIPES) == set(RECIPES), "every recipe needs a line here"


class BlockoutHead(nn.Module):
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
        ``soft-learned``, ``hard-fixed``, ``hard-learned`` (Blockout layers). Our recipes
        ``hard-budgeted`` and ``hard-cocluster`` need hooks of our trainer (budget dual ascent
        and freezing; a plain warm-up followed by a co-clustering of its weights): they raise
        :class:`ValueError` naming them; train those with ``blockout train --method ...``.
    mask : {"count", "union"}
        The paper's mask ``C_out C_in^T`` or ours, ``min(1, C_out C_in^T)``.
    mask_scale : float, optional
        Constant multiplying the mask; None: ``1/k`` for ``count`` (a node set in every cluster
        then gives a plain linear layer), 1 for ``union``.
    trunk_clusters : {"all", "learned"}
        The input node set in every cluster (fixed; the paper's shared stem) or learned.
    dropout : float
        Dropout probability of the ``dropout`` method.
    memberships : mapping, optional
        Membership options (ours), keys of :data:`blockout.models.MEMBERSHIP_DEFAULTS`:
        ``hidden_membership`` (``bernoulli``, ``categorical``, ``towers``), ``class_membership``,
        ``membership_m``, ``theta_init_low`` / ``theta_init_high`` and so on. These work in any
        loop; the usage-balancing loss of categorical sets is :meth:`usage_loss`.

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
    >>> BlockoutHead(16, 4, method="hard-cocluster")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: method 'hard-cocluster' needs our trainer (a plain warm-up ...): train it with `blockout train --method hard-cocluster`; ...
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (512, 512), clusters: int = 6,
                 method: str = "hard-learned", *, mask: str = "count", mask_scale: float | None = None,
                 trunk_clusters: str = "all", dropout: float = 0.5,
                 memberships: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if method in TRAINER_RECIPES:
            raise ValueError(f"method {method!r} needs our trainer ({TRAINER_RECIPES[method]}): train it with "
                             f"`blockout train --method {method}`; a BlockoutHead takes one of "
                             f"{', '.join(HEAD_METHODS)}")
        if method not in HEAD_METHODS:
            raise ValueError(f"method must be one of {', '.join(HEAD_METHODS)}, got {method!r}")
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        for label, value, low in (("in_features", in_features, 1), ("num_classes", num_classes, 2),
                                  ("clusters", clusters, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
        if mask not in ("count", "union"):
            raise ValueError(f"mask must be 'count' or 'union', got {mask!r}")
        if trunk_clusters not in ("all", "learned"):
            raise ValueError(f"trunk_clusters must be 'all' or 'learned', got {trunk_clusters!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        unknown = sorted(set(memberships or {}) - set(MEMBERSHIP_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown membership option(s) {', '.join(unknown)} "
                             f"(known: {', '.join(MEMBERSHIP_DEFAULTS)})")
        opts = {**MEMBERSHIP_DEFAULTS, **(memberships or {})}
        for key, kinds in (("hidden_membership", ("bernoulli", "categorical", "towers")),
                           ("class_membership", ("bernoulli", "categorical"))):
            if opts[key] not in kinds:
                raise ValueError(f"memberships[{key!r}] must be one of {', '.join(kinds)}, got {opts[key]!r}")
        self.method = method
        self.in_features, self.num_classes, self.clusters = in_features, num_classes, clusters
        self.hidden = () if method == "baseline" else hidden
        self.mask = mask
        self.mask_scale = float(mask_scale) if mask_scale is not None else (1.0 / clusters if mask == "count" else 1.0)
        self.trunk_clusters = trunk_clusters
        self.dropout_p = float(dropout) if method == "dropout" else 0.0
        self.membership_options = opts
        depth = len(self.hidden)
        self.set_sizes = [in_features, *self.hidden, num_classes]
        self.set_names = ["trunk"] + [f"h{i}" for i in range(1, depth + 1)] + ["classes"]
        self.layer_names = [f"fc{i}" for i in range(1, depth + 1)] + ["classifier"]

        def make_set(name: str, size: int, learned: bool) -> nn.Module:
            return make_node_set(name, size, clusters, learned, trunk_clusters=trunk_clusters,
                                 options=self.membership_options)

        self.node_sets, self.fc, self.drop = build_fc_stack(
            method, self.set_sizes, self.set_names, self.layer_names, mask=mask, mask_scale=self.mask_scale,
            dropout=self.dropout_p, make_set=make_set)

    @property
    def is_blockout(self) -> bool:
        """Whether the layers are Blockout layers (``soft-learned``, ``hard-fixed``, ``hard-learned``)."""
        return len(self.node_sets) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features)`` features (flattened if needed) -> ``(B, num_classes)`` logits."""
        h = x.flatten(1) if x.dim() > 2 else x
        with shared_sampling(self):
            last = len(self.layer_names) - 1
            for i, lname in enumerate(self.layer_names):
                if lname in self.drop:
                    h = self.drop[lname](h)
                h = self.fc[lname](h)
                if i < last:
                    h = torch.relu(h)
        return h

    def usage_loss(self) -> torch.Tensor:
        """Sum of the usage-balancing terms ``KL(mean usage || uniform)`` of the categorical node
        sets (ours; 0 without categorical sets). Add ``weight * head.usage_loss()`` to your loss.

        >>> BlockoutHead(8, 3, hidden=(4,)).usage_loss()
        tensor(0.)
        """
        from blockout.membership import CategoricalClusters

        terms = [ns.usage_loss() for ns in self.node_sets.values()
                 if isinstance(ns, CategoricalClusters) and ns.theta.requires_grad]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def set_mode(self, mode: str) -> None:
        """Switch every Blockout layer to ``hard`` (sampled) or ``soft`` (expected) memberships."""
        if mode not in ("hard", "soft"):
            raise ValueError(f"mode must be 'hard' or 'soft', got {mode!r}")
        for layer in self.fc.values():
            if hasattr(layer, "invalidate_cache"):
                layer.mode = mode
                layer.invalidate_cache()

    @torch.no_grad()
    def node_set_probs(self) -> dict[str, np.ndarray]:
        """P of every node set as float32 numpy ``(size, clusters)``."""
        return {name: ns.probs.detach().float().cpu().numpy() for name, ns in self.node_sets.items()}

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, hidden={self.hidden}, "
                f"clusters={self.clusters}, method={self.method!r}")
