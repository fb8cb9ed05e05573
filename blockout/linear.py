"""The Blockout linear layer (docs/method.md): ``y = x (W ⊙ s·M)^T + b`` with ``M`` from memberships.

Special cases (tested in ``tests/test_layer.py``):

* **Dropout**: ``k = 1``, output node set fixed in its one cluster (``init="all"``), input node set
  fixed with probability ``p``. Training: each input column of ``W`` is kept (mask 1) or dropped
  (mask 0) for the whole forward pass; test: ``W·p`` — the original, non-inverted Dropout on the
  layer's inputs.
* **DropConnect**: one cluster per connection, ``k = out·in``, cluster ``(a, b)`` containing only
  output node ``a`` (probability ``p_a``) and input node ``b`` (probability ``q_b``), every other
  membership fixed at 0. Then ``M_ab = c_{a,(a,b)} c_{b,(a,b)}`` are independent
  ``Bernoulli(p_a q_b)`` entries: DropConnect with per-connection keep probability ``p_a q_b``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blockout.clusters import NodeClusters
from blockout.functional import (
    _check_finite_scale,
    expected_mask,
    expected_union_mask,
    masked_linear,
)

__all__ = ["BlockoutLinear", "MODES", "MASKS"]

MODES = ("hard", "soft")
MASKS = ("count", "union")


class BlockoutLinear(nn.Module):
    """A linear layer whose connections are masked by shared cluster memberships.

    Parameters
    ----------
    in_clusters, out_clusters : NodeClusters
        Memberships of the input nodes (``in`` × k) and output nodes (``out`` × k), same ``k``.
        Registered as submodules; a node set shared by two layers is the same object in both
        (``parameters()`` lists it once; ``state_dict()`` holds it under both names).
    bias : bool
        Learn an additive bias (never masked).
    mode : {"hard", "soft"}
        Training with ``C ~ Bernoulli(P)`` sampled at each forward pass (straight-through
        gradient to P), or with ``P`` itself (soft; deterministic, equal to the eval output).
    mask : {"count", "union"}
        ``M = C_out C_in^T`` (the paper's) or ``min(1, C_out C_in^T)`` (ours). In eval and soft
        mode the exact expectation is used: ``P_out P_in^T`` or ``1 - prod_l (1 - p_al q_bl)``.
    scale : float, optional
        Constant multiplying the mask (e.g. ``1/k``); None means 1.
    chunk_rows : int, optional
        Weight rows per chunk in the fused training kernel (default: sized for the CPU cache).

    Notes
    -----
    In eval mode with no gradient needed (``torch.no_grad()``, or nothing requires grad), the
    effective weight ``W ⊙ s·E[M]`` is cached and reused while ``W`` and both θ are unchanged
    (checked through their storage and version counters; switching ``train()``/``eval()`` also
    drops it), so eval costs what ``nn.Linear`` costs. Writing through ``.data`` bypasses the
    version counter: call :meth:`invalidate_cache` after doing that.
    With gradients enabled in eval mode the expectation is computed differentiably each call.

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> hid = NodeClusters(3, 2, trainable=False, init="towers")
    >>> inp = NodeClusters(4, 2, trainable=False, init="all")
    >>> layer = BlockoutLinear(inp, hid)
    >>> layer.expected_mask()
    tensor([[1., 1., 1., 1.],
            [1., 1., 1., 1.],
            [1., 1., 1., 1.]])
    >>> layer(torch.ones(5, 4)).shape
    torch.Size([5, 3])
    """

    def __init__(
        self,
        in_clusters: NodeClusters,
        out_clusters: NodeClusters,
        bias: bool = True,
        mode: str = "hard",
        mask: str = "count",
        scale: float | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__()
        for label, value in (("in_clusters", in_clusters), ("out_clusters", out_clusters)):
            if not isinstance(value, NodeClusters):
                raise ValueError(f"{label} must be a NodeClusters, got {type(value).__name__}")
        if in_clusters.num_clusters != out_clusters.num_clusters:
            raise ValueError(
                f"in_clusters has {in_clusters.num_clusters} clusters but out_clusters has "
                f"{out_clusters.num_clusters}; both node sets need the same k"
            )
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be 'hard' or 'soft', got {mode!r}")
        if mask not in MASKS:
            raise ValueError(f"mask must be 'count' or 'union', got {mask!r}")
        if chunk_rows is not None and (isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1):
            raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}")
        self.scale_arg = scale
        self.scale = _check_finite_scale(scale)
        self.in_clusters = in_clusters
        self.out_clusters = out_clusters
        self.in_features = in_clusters.num_nodes
        self.out_features = out_clusters.num_nodes
        self.num_clusters = in_clusters.num_clusters
        self.mode = mode
        self.mask = mask
        self.chunk_rows = chunk_rows
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))  # (out, in)
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()
        self._eval_cache: tuple[tuple, Tensor] | None = None

    def reset_parameters(self) -> None:
        """Initialise ``W`` and ``b`` exactly as :class:`torch.nn.Linear` does."""
        nn.Linear.reset_parameters(self)  # uses only self.weight and self.bias
        self.invalidate_cache()

    # -- expectations and views ---------------------------------------------------------------

    def expected_mask(self) -> Tensor:
        """``E[M]`` (out, in), without the scale: ``P_out P_in^T`` or ``1 - prod(1 - p q)``."""
        return expected_mask(self.out_clusters.probs, self.in_clusters.probs, self.mask)

    def _expected_weight(self) -> Tensor:
        """``W ⊙ s·E[M]`` (out, in), differentiable."""
        m = self.expected_mask()
        if self.scale != 1.0:
            m = m * self.scale
        return self.weight * m

    def _cache_key(self) -> tuple:
        # every tensor the eval weight depends on: W and all parameters and buffers of both
        # node sets (so a NodeClusters subclass with extra state is covered too)
        tensors = [self.weight]
        for s in (self.out_clusters, self.in_clusters):
            tensors += list(s.parameters()) + list(s.buffers())
        key = [self.mask, self.scale]
        for t in tensors:
            key += [t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)]
        return tuple(key)

    def _cached_weight(self) -> Tensor:
        """The eval weight from the cache, recomputed when a parameter changed."""
        key = self._cache_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            # a normal (not inference-mode) tensor, so it stays usable outside inference_mode
            with torch.inference_mode(False), torch.no_grad():
                weight = self._expected_weight().detach()
            self._eval_cache = (key, weight)
        return self._eval_cache[1]

    def invalidate_cache(self) -> None:
        """Drop the cached eval weight (needed only after writing parameters via ``.data``)."""
        self._eval_cache = None

    def _needs_grad(self) -> bool:
        if not torch.is_grad_enabled():
            return False
        tensors = [self.weight, self.out_clusters.theta, self.in_clusters.theta]
        if self.bias is not None:
            tensors.append(self.bias)
        return any(t.requires_grad for t in tensors)

    def effective_weight(self) -> Tensor:
        """The test-time weight ``W ⊙ s·E[M]`` (out, in); differentiable when grad is needed.

        Otherwise a detached copy of the cached eval weight (safe to modify).
        """
        if self._needs_grad():
            return self._expected_weight()
        return self._cached_weight().clone()

    @torch.no_grad()
    def live_mask(self, threshold: float = 0.5) -> Tensor:
        """Connections alive after thresholding memberships at ``P >= threshold`` (out, in) bool."""
        c_out = (self.out_clusters.probs >= threshold).to(self.weight.dtype)
        c_in = (self.in_clusters.probs >= threshold).to(self.weight.dtype)
        return (c_out @ c_in.transpose(0, 1)) > 0

    def live_connections(self, threshold: float = 0.5) -> int:
        """Number of connections alive at ``threshold`` (input and output node share a cluster)."""
        return int(self.live_mask(threshold).sum().item())

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (..., in) -> (..., out)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features, {self!r} expects {self.in_features}")
        if self.training and self.mode == "hard":
            c_out = self.out_clusters.sample()  # (out, k), 0/1, gradient to P_out
            c_in = self.in_clusters.sample()  # (in, k)
            return masked_linear(x, self.weight, self.bias, c_out, c_in, self.scale, self.mask, self.chunk_rows)
        if not self.training and not self._needs_grad():
            return F.linear(x, self._cached_weight(), self.bias)
        # soft training, or eval with gradients: the exact expectation, differentiably
        if self.mask == "count":
            p_out, p_in = self.out_clusters.probs, self.in_clusters.probs
            return masked_linear(x, self.weight, self.bias, p_out, p_in, self.scale, "count", self.chunk_rows)
        m = expected_union_mask(self.out_clusters.probs, self.in_clusters.probs)
        return F.linear(x, self.weight * (m * self.scale if self.scale != 1.0 else m), self.bias)

    # -- housekeeping -------------------------------------------------------------------------

    def train(self, mode: bool = True):  # noqa: D102
        self.invalidate_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):  # noqa: D102 (.to(), .cuda(), .half(): drop the cache)
        self.invalidate_cache()
        return super()._apply(fn, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"clusters={self.num_clusters}, mode={self.mode!r}, mask={self.mask!r}, "
            f"scale={self.scale_arg!r}, bias={self.bias is not None}"
        )
