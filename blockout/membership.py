"""Categorical memberships: every node in exactly ``m`` clusters (our addition, not the paper's).

The paper draws every membership ``C_il`` as an independent Bernoulli. With learned hidden node
sets that left loopholes under a connection budget (docs/method.md, "The paper's formulation
in practice"): hidden nodes died (no cluster) or hid in clusters no class uses. Here each node of a
hidden node set is in exactly ``m`` clusters:

* ``theta`` (n, k) are logits; the node's inclusion probabilities are the *capped softmax*
  ``p = min(1, c * softmax(theta / T))`` with ``c`` chosen so that ``sum_l p_l = m`` (for ``m = 1``
  this is the softmax itself). These are the probabilities the analysis sees and the test-time
  expectation uses.
* Training draws a hard membership with exactly ``m`` ones per node by the Gumbel top-``m``
  trick (the ``m`` largest of ``theta / T + Gumbel noise``) and passes gradients straight
  through to the capped softmax of the perturbed logits (hard Gumbel-softmax for ``m = 1``).
* ``theta`` starts at ``init_scale * onehot(i mod k) + N(0, init_noise)``: towers, perturbed, so
  that every cluster has nodes at the start (near-uniform logits collapsed in the study).
* A usage-balancing loss, ``KL(u || uniform)`` of the mean assignment ``u`` over the node set,
  keeps every cluster populated (without it the study's ARI fell from 0.45 to 0.26).
"""

from __future__ import annotations

import math

import torch

from blockout.clusters import NodeClusters

__all__ = [
    "CategoricalClusters",
    "freeze_bernoulli",
    "freeze_memberships",
    "capped_softmax",
    "gumbel_top_m",
    "usage_kl",
    "tower_logits",
]


def capped_softmax(logits: torch.Tensor, m: int, temperature: float = 1.0) -> torch.Tensor:
    """Inclusion probabilities of ``m`` clusters per node: ``min(1, c * softmax)``, rows sum to ``m``.

    Parameters
    ----------
    logits : Tensor (n, k)
    m : int
        Clusters per node, ``1 <= m <= k``.
    temperature : float

    Returns
    -------
    Tensor (n, k)
        Entries in [0, 1], each row summing to ``m``; differentiable through the uncapped entries.

    Examples
    --------
    >>> p = capped_softmax(torch.tensor([[2.0, 0.0, 0.0, -9.0]]), m=2)
    >>> [round(v, 3) for v in p[0].tolist()]
    [1.0, 0.5, 0.5, 0.0]
    >>> round(float(capped_softmax(torch.zeros(1, 4), m=1).sum()), 6)
    1.0
    """
    n, k = logits.shape
    if not 1 <= m <= k:
        raise ValueError(f"m must be in [1, k={k}], got {m}")
    s = torch.softmax(logits / temperature, dim=1)  # (n, k)
    if m == 1:
        return s
    if m == k:
        return torch.ones_like(s)
    # Water-filling: the j largest entries are capped at 1 and the rest scaled by
    # c = (m - j) / (mass of the rest); find the smallest consistent j per row.
    with torch.no_grad():
        srt, _ = torch.sort(s, dim=1, descending=True)  # (n, k)
        tail = srt.flip(1).cumsum(1).flip(1)  # tail[:, j] = sum of srt[:, j:]
        j = torch.arange(k, device=s.device, dtype=s.dtype)  # entries capped before position j
        c_all = (m - j) / tail.clamp_min(1e-30)  # (n, k)
        # j is consistent when the largest uncapped entry stays <= 1 after scaling
        ok = (c_all * srt <= 1.0 + 1e-6) & (j < m)
        first = torch.argmax(ok.to(torch.int8), dim=1)  # (n,)
        c = c_all.gather(1, first[:, None])  # (n, 1)
    return torch.clamp(c * s, max=1.0)


def gumbel_top_m(
    logits: torch.Tensor,
    m: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A hard membership with exactly ``m`` ones per row, straight-through to the soft one.

    The value is the 0/1 indicator of the ``m`` largest perturbed logits
    ``logits / T + Gumbel(0, 1)``; the gradient is that of ``capped_softmax`` of the perturbed
    logits (the straight-through estimator of hard Gumbel-softmax).

    >>> g = torch.Generator().manual_seed(0)
    >>> c = gumbel_top_m(torch.zeros(5, 4), m=2, generator=g)
    >>> c.sum(dim=1).tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0]
    """
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    perturbed = logits / temperature + gumbel  # (n, k)
    soft = capped_softmax(perturbed, m)  # (n, k)
    idx = perturbed.topk(m, dim=1).indices  # (n, m)
    hard = torch.zeros_like(soft).scatter_(1, idx, 1.0)
    return hard + (soft - soft.detach())  # value exactly 0/1; gradient of soft


def usage_kl(probs: torch.Tensor, m: int = 1) -> torch.Tensor:
    """``KL(u || uniform)`` of the mean cluster usage ``u = mean_i probs_i / m`` (scalar).

    Zero exactly when every cluster gets the same expected number of nodes.

    >>> float(usage_kl(torch.eye(3)))
    0.0
    >>> round(float(usage_kl(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))), 4) == round(math.log(2), 4)
    True
    """
    k = probs.shape[1]
    u = probs.mean(dim=0) / m  # (k,), sums to 1
    return (u * (torch.log(u.clamp_min(1e-12)) + math.log(k))).sum()


def tower_logits(
    num_nodes: int,
    num_clusters: int,
    scale: float = 3.0,
    noise: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Initial logits ``scale * onehot(i mod k) + N(0, noise)`` (n, k).

    >>> t = tower_logits(4, 2, scale=3.0, noise=0.0)
    >>> t.tolist()
    [[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, 3.0]]
    """
    idx = torch.arange(num_nodes) % num_clusters
    theta = torch.zeros(num_nodes, num_clusters)
    theta[torch.arange(num_nodes), idx] = float(scale)
    if noise > 0:
        theta += noise * torch.randn(num_nodes, num_clusters, generator=generator)
    return theta


class CategoricalClusters(NodeClusters):
    """A node set whose nodes are each in exactly ``m`` clusters (our addition; see the module doc).

    Parameters
    ----------
    num_nodes, num_clusters : int
        ``n`` and ``k``.
    m : int
        Clusters per node, ``1 <= m <= k``.
    trainable : bool
        Learned (θ a Parameter) or fixed (a buffer).
    init_scale, init_noise : float
        θ starts at ``init_scale * onehot(i mod k) + N(0, init_noise)``.
    temperature : float
        Softmax / Gumbel temperature; the trainer may anneal it (attribute ``temperature``).
    name : str, optional
    generator : torch.Generator, optional
        Random source of the initial noise.

    ``probs`` is the capped softmax (rows sum to ``m``); :meth:`sample` draws a hard membership
    with exactly ``m`` ones per node (Gumbel top-``m``, straight-through);
    :meth:`usage_loss` is the usage-balancing term; :meth:`freeze` fixes the memberships at
    the ``m`` most probable clusters.

    >>> s = CategoricalClusters(6, 3, m=1, init_noise=0.0, generator=torch.Generator().manual_seed(0))
    >>> s.sample().sum(dim=1).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> s.probs.argmax(dim=1).tolist()
    [0, 1, 2, 0, 1, 2]
    """

    membership = "categorical"

    def __init__(
        self,
        num_nodes: int,
        num_clusters: int,
        *,
        m: int = 1,
        trainable: bool = True,
        init_scale: float = 3.0,
        init_noise: float = 3.0,
        temperature: float = 1.0,
        name: str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= num_clusters:
            raise ValueError(f"m (clusters per node) must be an integer in [1, k={num_clusters}], got {m!r}")
        for label, value in (("init_scale", init_scale), ("init_noise", init_noise)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        # read by _init_theta, which NodeClusters.__init__ calls
        self._cat_init = (int(m), float(init_scale), float(init_noise))
        super().__init__(num_nodes, num_clusters, trainable=trainable, init="towers", name=name,
                         generator=generator)
        self.m = int(m)
        self.init_scale = float(init_scale)
        self.init_noise = float(init_noise)
        self.temperature = float(temperature)
        self.init = "towers-noisy"

    def _init_theta(self, init: str, generator: torch.Generator | None) -> torch.Tensor:
        m, scale, noise = self._cat_init
        theta = tower_logits(self.num_nodes, self.num_clusters, scale, noise, generator)  # (n, k)
        for extra in range(1, m):
            # node i also starts in clusters (i + extra) mod k, so that the start has m clusters
            idx = (torch.arange(self.num_nodes) + extra) % self.num_clusters
            theta[torch.arange(self.num_nodes), idx] += scale
        return theta

    @property
    def probs(self) -> torch.Tensor:
        """Inclusion probabilities (n, k): the capped softmax of θ / temperature (rows sum to m)."""
        return capped_softmax(self.theta, self.m, self.temperature)

    def _sample(self) -> torch.Tensor:
        return gumbel_top_m(self.theta, self.m, self.temperature)

    def usage_loss(self) -> torch.Tensor:
        """``KL(mean usage || uniform)`` of this node set (0 when every cluster is used equally)."""
        return usage_kl(self.probs, self.m)

    @torch.no_grad()
    def hard_memberships(self) -> torch.Tensor:
        """0/1 (n, k): the ``m`` most probable clusters of every node."""
        idx = self.theta.topk(self.m, dim=1).indices
        return torch.zeros_like(self.theta).scatter_(1, idx, 1.0)

    @torch.no_grad()
    def freeze(self) -> None:
        """Fix the memberships at :meth:`hard_memberships` and stop training θ.

        θ becomes ``+/- FROZEN_LOGIT`` (softmax exactly one-hot in float32, and Gumbel noise, at
        most about 20 apart, can never change the sample), and ``requires_grad`` is switched off.
        """
        hard = self.hard_memberships()
        self.theta.copy_(FROZEN_LOGIT * (2 * hard - 1))
        self.theta.requires_grad_(False)
        self.trainable = False

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", m={self.m}, init_scale={self.init_scale}, init_noise={self.init_noise}, "
            f"temperature={self.temperature}"
        )


#: Logit magnitude of frozen categorical memberships (see :meth:`CategoricalClusters.freeze`).
FROZEN_LOGIT = 60.0


@torch.no_grad()
def freeze_bernoulli(node_set: NodeClusters, threshold: float = 0.5, rescue: bool = True) -> int:
    """Fix a Bernoulli node set at ``P >= threshold`` (exact 0/1) and stop training θ.

    With ``rescue``, a node with no cluster left (a *dead* class) gets its most probable
    cluster, so that it keeps a path to the trunk in fine-tuning (the prototype study found this
    removed dead classes at no cost). Returns the number of rescued nodes.

    >>> s = NodeClusters(2, 3)
    >>> s.set_probs(torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2]]))
    >>> freeze_bernoulli(s), s.probs.tolist(), s.theta.requires_grad
    (1, [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], False)
    """
    p = node_set.probs
    hard = (p >= threshold).float()  # (n, k)
    dead = hard.sum(dim=1) == 0
    rescued = int(dead.sum()) if rescue else 0
    if rescue and rescued:
        hard[dead, p[dead].argmax(dim=1)] = 1.0
    node_set.set_probs(hard)
    node_set.theta.requires_grad_(False)
    node_set.trainable = False
    return rescued


def freeze_memberships(module: torch.nn.Module, threshold: float = 0.5, rescue: bool = True) -> dict:
    """Freeze every learned node set in ``module``; returns ``{node set: rescued nodes}``.

    Categorical sets keep their ``m`` most probable clusters; Bernoulli sets keep ``P >=
    threshold`` (with dead-node rescue). Fixed sets are left alone.
    """
    rescued = {}
    for name, ns in module.named_modules():
        if not isinstance(ns, NodeClusters) or not isinstance(ns.theta, torch.nn.Parameter):
            continue
        if not ns.theta.requires_grad:
            continue
        key = ns.name or name
        if isinstance(ns, CategoricalClusters):
            ns.freeze()
            rescued[key] = 0
        else:
            rescued[key] = freeze_bernoulli(ns, threshold, rescue)
    return rescued
