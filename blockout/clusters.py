"""Cluster memberships of one node set (docs/method.md): ``P = sigmoid(θ)``, ``C ~ Bernoulli(P)``.

A node set is the output of one layer and the input of the next, so one :class:`NodeClusters`
is shared by the two :class:`~blockout.linear.BlockoutLinear` layers that touch it. Inside
:func:`shared_sampling` each node set draws its membership sample at most once, so both layers
see the same ``C`` in a forward pass.

Extending: a subclass with another kind of membership overrides :attr:`NodeClusters.probs`
(the (n, k) expectation used at test time and in soft mode), :meth:`NodeClusters._sample` (one
hard (n, k) sample with a gradient path to the parameters) and, if it needs another starting
point, :meth:`NodeClusters._init_theta`; set the class attribute ``membership`` to its name.
Caching and :func:`shared_sampling` then work unchanged.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor, nn

from blockout.functional import bernoulli_st

__all__ = ["NodeClusters", "shared_sampling", "INITS"]

INITS = ("random", "all", "towers")


def _logit(p: float) -> float:
    """``log(p / (1 - p))`` with ±inf at 0 and 1.

    >>> _logit(0.5), _logit(1.0)
    (0.0, inf)
    """
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _check_prob_range(init_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in init_range)
    except (TypeError, ValueError):
        raise ValueError(f"init_range must be two probabilities (low, high), got {init_range!r}") from None
    if not (0.0 < lo <= hi < 1.0):
        raise ValueError(f"init_range must satisfy 0 < low <= high < 1, got {init_range!r}")
    return lo, hi


class NodeClusters(nn.Module):
    """Membership parameters ``θ`` (n, k) of one node set; ``P = sigmoid(θ)``.

    Parameters
    ----------
    num_nodes : int
        Nodes in the set (``n``).
    num_clusters : int
        Clusters (``k``).
    trainable : bool
        Learned memberships: ``θ`` is a Parameter. Otherwise a buffer (fixed).
    init : {"random", "all", "towers"}
        ``"random"``: ``P ~ U(init_range)`` independently per entry (default U(0.5, 0.9), i.e.
        ``θ = logit(P)`` between 0 and 2.2), which breaks the symmetry between clusters.
        ``"all"``: every node in every cluster (the trunk of a hierarchical network).
        ``"towers"``: node i in cluster ``i mod k`` only.
        With ``trainable=False``, "all" and "towers" have P exactly 0/1 (``θ = ±inf``) and
        sample deterministically. Exact 0/1 would give a learned set zero gradient
        (``sigmoid'(±inf) = 0``), so with ``trainable=True`` they start at P = ``high`` for
        members and ``1 - high`` for non-members (``high`` from ``init_range``, 0.9 by default).
    init_range : (float, float)
        ``(low, high)`` probabilities, ``0 < low <= high < 1``.
    name : str, optional
        The node set's name (used in run folders and messages).
    generator : torch.Generator, optional
        Random source for initialisation (default: the global one).

    Examples
    --------
    >>> s = NodeClusters(4, 2, trainable=False, init="towers")
    >>> s.probs
    tensor([[1., 0.],
            [0., 1.],
            [1., 0.],
            [0., 1.]])
    >>> bool((s.sample() == s.probs).all())
    True
    """

    membership = "bernoulli"

    def __init__(
        self,
        num_nodes: int,
        num_clusters: int,
        *,
        trainable: bool = True,
        init: str = "random",
        init_range: tuple[float, float] = (0.5, 0.9),
        name: str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for label, value in (("num_nodes", num_nodes), ("num_clusters", num_clusters)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if not isinstance(trainable, bool):
            raise ValueError(f"trainable must be True or False, got {trainable!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a string or None, got {name!r}")
        self.num_nodes = num_nodes
        self.num_clusters = num_clusters
        self.trainable = trainable
        self.init = init
        self.init_range = _check_prob_range(init_range)
        self.name = name
        theta = self._init_theta(init, generator)  # (n, k)
        if trainable:
            self.theta = nn.Parameter(theta)
        else:
            self.register_buffer("theta", theta)
        # shared_sampling state: nesting depth and the sample drawn in the current context
        self._share_depth = 0
        self._cached_sample: Tensor | None = None

    # -- overridable pieces -------------------------------------------------------------------

    def _init_theta(self, init: str, generator: torch.Generator | None) -> Tensor:
        """Initial θ (n, k) for ``init`` (see the class docstring)."""
        n, k = self.num_nodes, self.num_clusters
        lo, hi = self.init_range
        if init == "random":
            p = torch.rand(n, k, generator=generator) * (hi - lo) + lo
            return torch.log(p) - torch.log1p(-p)
        member = torch.ones(n, k, dtype=torch.bool)
        if init == "towers":
            member = torch.arange(n)[:, None] % k == torch.arange(k)[None, :]
        on, off = (math.inf, -math.inf) if not self.trainable else (_logit(hi), _logit(1.0 - hi))
        return torch.where(member, torch.tensor(on), torch.tensor(off)).float()

    @property
    def probs(self) -> Tensor:
        """Membership probabilities ``P = sigmoid(θ)``, shape (n, k)."""
        return torch.sigmoid(self.theta)

    def _sample(self) -> Tensor:
        """One hard 0/1 membership sample (n, k) with a straight-through gradient to ``P``."""
        return bernoulli_st(self.probs)

    # -- public API ---------------------------------------------------------------------------

    def sample(self) -> Tensor:
        """A hard 0/1 membership ``C`` (n, k), gradient straight through to ``P`` (then θ).

        Inside :func:`shared_sampling` the first call draws and later calls return the same
        sample; outside it every call draws afresh.
        """
        if self._share_depth > 0:
            if self._cached_sample is None:
                self._cached_sample = self._sample()
            return self._cached_sample
        return self._sample()

    @torch.no_grad()
    def set_probs(self, probs) -> None:
        """Set ``θ = logit(P)`` in place (P exactly 0 or 1 gives θ = ∓inf: a fixed 0/1 entry).

        >>> s = NodeClusters(2, 1, trainable=False)
        >>> s.set_probs(torch.tensor([[0.25], [1.0]])); s.probs
        tensor([[0.2500],
                [1.0000]])
        """
        p = torch.as_tensor(probs, dtype=self.theta.dtype, device=self.theta.device)
        if p.shape != self.theta.shape:
            raise ValueError(f"probs must have shape {tuple(self.theta.shape)}, got {tuple(p.shape)}")
        if not bool(((p >= 0) & (p <= 1)).all()):
            raise ValueError("probs must lie in [0, 1]")
        self.theta.copy_(torch.log(p) - torch.log1p(-p))

    def extra_repr(self) -> str:
        name = f"name={self.name!r}, " if self.name is not None else ""
        return (
            f"{name}num_nodes={self.num_nodes}, num_clusters={self.num_clusters}, "
            f"trainable={self.trainable}, init={self.init!r}, membership={self.membership!r}"
        )


@contextlib.contextmanager
def shared_sampling(module: nn.Module) -> Iterator[nn.Module]:
    """Within this block every :class:`NodeClusters` in ``module`` samples at most once.

    Use it around one forward pass so the two layers that share a node set see the same
    membership sample; the cached samples are dropped on exit (also on error). Contexts nest.

    >>> s = NodeClusters(50, 3)
    >>> with shared_sampling(s):
    ...     same = torch.equal(s.sample(), s.sample())
    >>> same
    True
    """
    sets = [m for m in module.modules() if isinstance(m, NodeClusters)]
    for s in sets:
        s._share_depth += 1
    try:
        yield module
    finally:
        for s in sets:
            s._share_depth -= 1
            if s._share_depth == 0:
                s._cached_sample = None
