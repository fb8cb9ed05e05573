"""Pure tensor math of Blockout (docs/method.md): masks, their expectations, sampling, the fused layer.

Notation: a layer has ``out`` output nodes and ``in`` input nodes, each node set has ``k``
clusters. ``C_out`` (out, k) and ``C_in`` (in, k) are 0/1 memberships (or probabilities, in soft
mode); ``P_out``, ``P_in`` are the membership probabilities.

* count mask  ``M = C_out C_in^T``: how many clusters input and output node share (the paper's).
* union mask  ``M = min(1, C_out C_in^T)``: 1 where they share at least one cluster (ours).
* expectations over independent Bernoulli memberships: ``E[count] = P_out P_in^T`` exactly;
  ``E[union] = 1 - prod_l (1 - p_al q_bl)``.

:func:`masked_linear` is the training-time layer ``y = x (W ⊙ s·M)^T + b`` as one autograd
Function that works through the weight in row chunks small enough to stay in the CPU cache, so
the only full-size memory traffic is what a plain linear layer has anyway (read ``W`` forward,
read ``W`` and write ``grad_W`` backward). No (out, in) mask or masked weight is kept between
forward and backward; the chunk of ``M`` is rebuilt in backward (a k-deep GEMM, cheap).
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

__all__ = [
    "count_mask",
    "union_mask",
    "expected_count_mask",
    "expected_union_mask",
    "expected_mask",
    "bernoulli_st",
    "masked_linear",
    "masked_linear_reference",
    "default_chunk_rows",
]

MASKS = ("count", "union")


def count_mask(c_out: Tensor, c_in: Tensor) -> Tensor:
    """Count mask ``C_out C_in^T`` (out, in): shared clusters of every output/input pair.

    >>> count_mask(torch.tensor([[1., 1.], [0., 1.]]), torch.tensor([[1., 1.], [1., 0.], [0., 0.]]))
    tensor([[2., 1., 0.],
            [1., 0., 0.]])
    """
    return c_out @ c_in.transpose(0, 1)  # (out, k) @ (k, in) -> (out, in)


def union_mask(c_out: Tensor, c_in: Tensor) -> Tensor:
    """Union mask ``min(1, C_out C_in^T)`` (out, in): 1 where a pair shares any cluster.

    Under autograd the gradient is that of ``clamp`` (passes where the count is <= 1), the
    same as :func:`masked_linear` uses.

    >>> union_mask(torch.tensor([[1., 1.], [0., 1.]]), torch.tensor([[1., 1.], [1., 0.], [0., 0.]]))
    tensor([[1., 1., 0.],
            [1., 0., 0.]])
    """
    return torch.clamp(count_mask(c_out, c_in), max=1.0)


def expected_count_mask(p_out: Tensor, p_in: Tensor) -> Tensor:
    """``E[C_out C_in^T] = P_out P_in^T`` (out, in), exact for independent node sets.

    >>> expected_count_mask(torch.tensor([[0.5, 1.0]]), torch.tensor([[0.5, 0.5]]))
    tensor([[0.7500]])
    """
    return p_out @ p_in.transpose(0, 1)


def expected_union_mask(p_out: Tensor, p_in: Tensor) -> Tensor:
    """``E[min(1, C_out C_in^T)] = 1 - prod_l (1 - p_al q_bl)`` (out, in).

    Computed as a running product over the ``k`` clusters, one (out, in) term at a time (never
    an (out, in, k) tensor). The product of factors in [0, 1] cannot overflow and has absolute
    error of about ``k`` machine epsilons; unlike ``-expm1(sum log1p(-p q))`` its gradient stays
    finite when some ``p q`` is exactly 1 (fixed node sets with P = 1), and 0/1 inputs give
    exactly 0/1 outputs.

    >>> expected_union_mask(torch.tensor([[0.5, 1.0]]), torch.tensor([[0.5, 0.5]]))
    tensor([[0.6250]])
    >>> expected_union_mask(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    tensor([[1., 0.]])
    """
    if p_out.shape[1] != p_in.shape[1]:
        raise ValueError(f"cluster counts differ: {p_out.shape[1]} vs {p_in.shape[1]}")
    keep = None  # (out, in): probability that no cluster is shared so far
    for l in range(p_out.shape[1]):
        term = 1.0 - p_out[:, l, None] * p_in[None, :, l]  # (out, 1) * (1, in)
        keep = term if keep is None else keep * term
    if keep is None:  # k = 0: nothing is ever shared
        return p_out.new_zeros(p_out.shape[0], p_in.shape[0])
    return 1.0 - keep


def expected_mask(p_out: Tensor, p_in: Tensor, mask: str = "count") -> Tensor:
    """The expected mask of kind ``mask`` ("count" or "union"), shape (out, in).

    >>> expected_mask(torch.ones(2, 3), torch.ones(1, 3), "union")
    tensor([[1.],
            [1.]])
    """
    if mask == "count":
        return expected_count_mask(p_out, p_in)
    if mask == "union":
        return expected_union_mask(p_out, p_in)
    raise ValueError(f"mask must be 'count' or 'union', got {mask!r}")


class _BernoulliST(torch.autograd.Function):
    """Sample ``Bernoulli(p)``; backward passes the gradient to ``p`` unchanged."""

    @staticmethod
    def forward(ctx, p: Tensor, generator: torch.Generator | None) -> Tensor:  # noqa: D102
        return torch.bernoulli(p, generator=generator)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        return grad, None


def bernoulli_st(p: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Straight-through Bernoulli: the value is an exact 0/1 sample, the gradient goes to ``p``.

    Entries with ``p`` exactly 0 or 1 always give 0 or 1.

    >>> p = torch.tensor([0.0, 1.0, 0.3], requires_grad=True)
    >>> c = bernoulli_st(p)
    >>> c[:2].tolist()
    [0.0, 1.0]
    >>> c.sum().backward(); p.grad.tolist()
    [1.0, 1.0, 1.0]
    """
    return _BernoulliST.apply(p, generator)


# ---------------------------------------------------------------------------------------------
# the fused masked linear layer


def default_chunk_rows(out_features: int, in_features: int, device: torch.device) -> int:
    """Rows of ``W`` handled at once by :func:`masked_linear`.

    On CPU about 2^20 elements per chunk (a 4 MiB float32 slab, at least 16 rows). Measured on
    a 2-core Xeon, 4096 x 4096, one thread: smaller chunks keep the elementwise passes in L2 but
    make the row-chunk GEMMs less efficient and multiply the number of parallel regions (costly
    when cores are oversubscribed); 256-512 rows was the sweet spot. On other devices the whole
    matrix (kernel launches cost more than memory passes there).

    >>> default_chunk_rows(4096, 4096, torch.device("cpu"))
    256
    """
    if device.type != "cpu":
        return max(1, out_features)
    return max(1, min(out_features, max(16, (1 << 20) // max(1, in_features))))


_WORKSPACE = threading.local()


def _workspace(slot: str, rows: int, cols: int, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """A (rows, cols) scratch buffer reused between calls on CPU (per thread and slot).

    Fresh multi-MiB CPU allocations are mmap'd and page-faulted on every call (about 1 ms per
    4 MiB here); reusing a chunk buffer avoids that. On other devices the caching allocator
    already does this, so a new tensor is returned. The buffer is only valid until the next
    call with the same slot in this thread; forward and backward of the fused layer use
    separate slots and never nest.
    """
    dtype = like.dtype if dtype is None else dtype
    if like.device.type != "cpu":
        return torch.empty(rows, cols, dtype=dtype, device=like.device)
    cache = getattr(_WORKSPACE, "buffers", None)
    if cache is None:
        cache = _WORKSPACE.buffers = {}
    key = (slot, dtype)
    buf = cache.get(key)
    if buf is None or buf.numel() < rows * cols or buf.numel() > 4 * rows * cols:
        buf = torch.empty(rows * cols, dtype=dtype)
        cache[key] = buf
    return buf[: rows * cols].view(rows, cols)


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _build_mask_chunk(
    c_out_s: Tensor, c_in: Tensor, union: bool, scale: float, out: Tensor, gate: Tensor | None = None
) -> Tensor:
    """``s·M`` for a row chunk into ``out`` (rows, in); ``c_out_s`` is already multiplied by s.

    For the union mask, ``gate`` (rows, in) receives ``count <= 1`` as 0/1 (the clamp's gradient).
    """
    torch.mm(c_out_s, c_in.transpose(0, 1), out=out)  # (rows, k) @ (k, in)
    if union:
        # s·min(1, count) == min(s, s·count): with 0/1 memberships s·count is exactly s when
        # count == 1 (one nonzero term), so the clamp and the gate are exact.
        if gate is not None:
            torch.le(out, scale, out=gate)
        out.clamp_(max=scale)
    return out


class _MaskedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, c_out, c_in, scale, union, chunk):  # noqa: D102
        # x (N, in), weight (out, in), bias (out,) or None, c_out (out, k), c_in (in, k)
        n_out, n_in = weight.shape
        c_out_s = c_out * scale if scale != 1.0 else c_out  # (out, k): fold s into the mask GEMM
        y = x.new_empty(x.shape[0], n_out)  # (N, out)
        buf = _workspace("fwd", min(chunk, n_out), n_in, weight)  # (rows, in): mask, then masked weight
        for r0, r1 in _chunks(n_out, chunk):
            m = _build_mask_chunk(c_out_s[r0:r1], c_in, union, scale, buf[: r1 - r0])
            m.mul_(weight[r0:r1])  # W~ chunk, in place: no second (rows, in) buffer
            if bias is None:
                torch.mm(x, m.transpose(0, 1), out=y[:, r0:r1])
            else:
                torch.addmm(bias[r0:r1], x, m.transpose(0, 1), out=y[:, r0:r1])
        ctx.save_for_backward(x, weight, bias, c_out, c_in)
        ctx.scale, ctx.union, ctx.chunk = scale, union, chunk
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # noqa: D102
        # g (N, out)
        x, weight, bias, c_out, c_in = ctx.saved_tensors
        scale, union, chunk = ctx.scale, ctx.union, ctx.chunk
        need_x, need_w, need_b, need_co, need_ci = ctx.needs_input_grad[:5]
        need_c = need_co or need_ci
        n_out, n_in = weight.shape
        g = g.contiguous()
        rows = min(chunk, n_out)
        c_out_s = c_out * scale if scale != 1.0 else c_out

        grad_x = x.new_zeros(x.shape) if need_x else None  # (N, in), accumulated over chunks
        grad_w = torch.empty_like(weight) if need_w else None  # (out, in)
        grad_b = g.sum(0) if (need_b and bias is not None) else None
        # membership gradients are built transposed: (k, out) and (k, in)
        grad_co_t = c_out.new_empty(c_out.shape[1], n_out) if need_co else None
        grad_ci_t = c_in.new_zeros(c_in.shape[1], n_in) if need_ci else None
        c_in_t = c_in.transpose(0, 1).contiguous() if need_co else None  # (k, in)

        mbuf = _workspace("bwd_mask", rows, n_in, weight)  # s·M chunk
        tbuf = _workspace("bwd_tmp", rows, n_in, weight)  # W~ chunk, then dL/dW~, then dL/d(sM)
        # the gate is kept in the weight dtype: same-dtype multiplies are ~3x faster than bool
        gate = _workspace("bwd_gate", rows, n_in, weight) if (union and need_c) else None
        for r0, r1 in _chunks(n_out, chunk):
            n = r1 - r0
            gate_r = gate[:n] if gate is not None else None
            m = _build_mask_chunk(c_out_s[r0:r1], c_in, union, scale, mbuf[:n], gate_r)  # (n, in)
            w = weight[r0:r1]
            g_r = g[:, r0:r1]  # (N, n)
            if need_x:
                wt = torch.mul(m, w, out=tbuf[:n])
                grad_x.addmm_(g_r, wt)  # (N, n) @ (n, in)
            if need_w or need_c:
                # dL/dW~ chunk = g_r^T x (n, in), into the reused chunk buffer (cache-warm), so
                # that grad_W is written exactly once
                gw = torch.mm(g_r.transpose(0, 1), x, out=tbuf[:n])
                if need_w:
                    torch.mul(gw, m, out=grad_w[r0:r1])  # dL/dW = dL/dW~ ⊙ sM
                if need_c:
                    dm = gw.mul_(w)  # dL/d(sM) = dL/dW~ ⊙ W, in place
                    if gate_r is not None:
                        dm.mul_(gate_r)  # through the clamp: pass where count <= 1
                    # Both products keep the long "in" axis of dm contiguous on the right-hand
                    # side: MKL is ~5x faster this way than with dm as a tall skinny left factor.
                    if need_co:
                        torch.mm(c_in_t, dm.transpose(0, 1), out=grad_co_t[:, r0:r1])  # (k, in) @ (in, n)
                    if need_ci:
                        grad_ci_t.addmm_(c_out[r0:r1].transpose(0, 1), dm)  # (k, n) @ (n, in)
        grad_co = grad_co_t.transpose(0, 1).contiguous() if need_co else None  # (out, k)
        grad_ci = grad_ci_t.transpose(0, 1).contiguous() if need_ci else None  # (in, k)
        if scale != 1.0:
            if grad_co is not None:
                grad_co.mul_(scale)
            if grad_ci is not None:
                grad_ci.mul_(scale)
        return grad_x, grad_w, grad_b, grad_co, grad_ci, None, None, None


def _autocast_dtype(device_type: str):
    """The autocast dtype active for ``device_type``, or None."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except TypeError:  # torch < 2.4: no per-device query
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
    return None


def masked_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    c_out: Tensor,
    c_in: Tensor,
    scale: float = 1.0,
    mask: str = "count",
    chunk_rows: int | None = None,
) -> Tensor:
    """``y = x (W ⊙ s·M(C_out, C_in))^T + b`` with gradients to x, W, b, C_out and C_in.

    Parameters
    ----------
    x : Tensor
        (..., in) inputs.
    weight : Tensor
        (out, in).
    bias : Tensor or None
        (out,).
    c_out, c_in : Tensor
        (out, k) and (in, k) memberships (0/1 samples, or probabilities in soft mode).
    scale : float
        Constant ``s`` multiplying the mask.
    mask : {"count", "union"}
        ``M = C_out C_in^T`` or ``min(1, C_out C_in^T)``.
    chunk_rows : int, optional
        Weight rows per chunk (default :func:`default_chunk_rows`).

    Notes
    -----
    Gradients: ``dL/dW = G ⊙ sM`` and ``dL/d(sM) = G ⊙ W`` with ``G = g^T x`` (out, in);
    count: ``dL/dC_out = s·dL/dM C_in``, ``dL/dC_in = s·dL/dM^T C_out``. Union: the gradient of
    the clamp, i.e. ``dL/dM`` gated by ``count <= 1`` (a pair that shares two or more clusters
    stays connected when one membership drops, so its gradient is cut; a pair sharing none or
    exactly one passes straight through). The membership gradients are skipped entirely when
    neither membership needs one. Identical (up to rounding) to :func:`masked_linear_reference`
    under autograd.

    >>> x, w = torch.ones(1, 2), torch.tensor([[1., 2.], [3., 4.]])
    >>> masked_linear(x, w, None, torch.tensor([[1.], [0.]]), torch.tensor([[1.], [1.]]))
    tensor([[3., 0.]])
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be 'count' or 'union', got {mask!r}")
    n_out, n_in = weight.shape
    if x.shape[-1] != n_in:
        raise ValueError(f"input has {x.shape[-1]} features, the layer expects {n_in}")
    if c_out.shape[0] != n_out or c_in.shape[0] != n_in or c_out.shape[1] != c_in.shape[1]:
        raise ValueError(
            f"memberships {tuple(c_out.shape)} and {tuple(c_in.shape)} do not fit a weight {tuple(weight.shape)}"
        )
    lead = x.shape[:-1]
    x2 = x.reshape(-1, n_in)
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(n_out, n_in, weight.device)
    dtype = _autocast_dtype(x.device.type)
    if dtype is not None:
        # Mixed precision: run the whole layer in the autocast dtype (as nn.Linear does); the
        # casts are differentiable, so gradients reach the float32 parameters.
        with torch.autocast(device_type=x.device.type, enabled=False):
            args = [t.to(dtype) if t is not None else None for t in (x2, weight, bias, c_out, c_in)]
            y = _MaskedLinear.apply(*args, float(scale), mask == "union", int(chunk_rows))
    else:
        # memberships follow the weight's dtype (P may be float32 next to float64 weights)
        args = [t.to(weight.dtype) if t is not None else None for t in (x2, weight, bias, c_out, c_in)]
        y = _MaskedLinear.apply(*args, float(scale), mask == "union", int(chunk_rows))
    return y.reshape(*lead, n_out)


def masked_linear_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    c_out: Tensor,
    c_in: Tensor,
    scale: float = 1.0,
    mask: str = "count",
) -> Tensor:
    """The plain autograd version of :func:`masked_linear` (materialises the (out, in) mask).

    >>> x, w = torch.ones(1, 2), torch.tensor([[1., 2.], [3., 4.]])
    >>> masked_linear_reference(x, w, None, torch.tensor([[1.], [0.]]), torch.tensor([[1.], [1.]]))
    tensor([[3., 0.]])
    """
    m = count_mask(c_out, c_in) if mask == "count" else union_mask(c_out, c_in)
    return torch.nn.functional.linear(x, weight * (m * scale), bias)


def _check_finite_scale(scale) -> float:
    """Validate a mask scale (None means 1).

    >>> _check_finite_scale(None)
    1.0
    """
    if scale is None:
        return 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be None or a positive finite number, got {scale!r}")
    return float(scale)
