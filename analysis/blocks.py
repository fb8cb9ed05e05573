"""Block order for weight heatmaps, expected masks, in-block weight mass, block averaging.

Order
    Nodes are sorted by signature — first by the lowest cluster they belong to, then by the
    signature bitmask (so ``{0}`` comes before ``{0,1}`` before ``{1}``), nodes in no cluster last
    — and within a signature by decreasing mean probability over the signature's clusters (the
    most confident members first). Sorting the output rows and input columns of a layer this way
    makes its allowed blocks contiguous. ``boundaries`` are the positions where the signature
    changes (what a heatmap draws as lines).
Expected mask
    ``count``: ``E[C_out C_in^T] = P_out P_in^T``; ``union``: ``1 - prod_l (1 - p_al q_bl)``.
In-block mass
    Share of ``sum |W~|`` (``W~ = W ⊙ E[M]``) that lies on live connections at ``tau`` (output and
    input signatures intersect). 1.0 means the weights respect the branches entirely.
Block averaging
    Large matrices are reduced to at most ``max_size`` per side by averaging bins of ``f =
    ceil(n / max_size)`` consecutive rows/columns (a ragged last bin is averaged over its own size,
    which equals reshape-mean after padding with the missing entries left out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from analysis.errors import UserError
from analysis.threshold import code_label, signature_codes

__all__ = [
    "BlockOrder",
    "block_order",
    "expected_mask",
    "live_mask",
    "mass_inside",
    "block_average",
    "bin_edges",
    "heatmap_data",
]


@dataclass(frozen=True)
class BlockOrder:
    """Permutation of one node set: ``order`` (new position -> node index), sorted ``codes``,
    ``boundaries`` (positions ``0 < b < n`` where the signature changes) and segment ``starts``."""

    order: np.ndarray
    codes: np.ndarray
    boundaries: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        return np.r_[0, self.boundaries].astype(np.int64)

    def segments(self) -> list[tuple[int, int, str]]:
        """``(start, stop, signature label)`` per run of equal signatures."""
        n = len(self.order)
        ends = np.r_[self.boundaries, n]
        return [(int(s), int(e), code_label(int(self.codes[s]))) for s, e in zip(self.starts, ends)]


def _lowest_bit(codes: np.ndarray) -> np.ndarray:
    low = codes & -codes
    out = np.full(codes.shape, 63, dtype=np.int64)  # dead nodes (code 0) sort last
    nz = low > 0
    out[nz] = np.log2(low[nz].astype(np.float64)).round().astype(np.int64)
    return out


def block_order(P: np.ndarray, tau: float = 0.5, codes: np.ndarray | None = None) -> BlockOrder:
    """Block order of the nodes of ``P (n, k)`` at threshold ``tau`` (module docstring).

    >>> P = np.array([[0.1, 0.9], [0.8, 0.2], [0.9, 0.1], [0.0, 0.0], [0.7, 0.6]])
    >>> b = block_order(P, 0.5)
    >>> b.order.tolist(), b.boundaries.tolist()
    ([2, 1, 4, 0, 3], [2, 3, 4])
    """
    P = np.asarray(P)
    if codes is None:
        C = P >= tau
        codes = signature_codes(C)
    else:
        C = ((codes[:, None] >> np.arange(P.shape[1])) & 1).astype(bool)
    cnt = C.sum(axis=1)
    conf = np.where(cnt > 0, (P * C).sum(axis=1) / np.maximum(cnt, 1), P.max(axis=1) if P.size else 0)
    order = np.lexsort((-conf, codes, _lowest_bit(codes)))  # last key is primary
    sc = codes[order]
    boundaries = np.flatnonzero(sc[1:] != sc[:-1]) + 1
    return BlockOrder(order=order, codes=sc, boundaries=boundaries)


def expected_mask(P_out: np.ndarray, P_in: np.ndarray, mask: str = "count") -> np.ndarray:
    """Test-time mask ``(out, in)``: ``P_out P_in^T`` (count) or ``1 - prod(1 - p q)`` (union).

    >>> p, q = np.array([[0.5, 1.0]]), np.array([[1.0, 0.5], [0.0, 0.0]])
    >>> expected_mask(p, q).tolist(), expected_mask(p, q, "union").tolist()
    ([[1.0, 0.0]], [[0.75, 0.0]])
    """
    P_out = np.asarray(P_out, dtype=np.float32)
    P_in = np.asarray(P_in, dtype=np.float32)
    if P_out.shape[1] != P_in.shape[1]:
        raise UserError(f"cluster counts differ: {P_out.shape} vs {P_in.shape}")
    if mask in (None, "count"):
        return P_out @ P_in.T
    if mask == "union":
        keep = np.ones((P_out.shape[0], P_in.shape[0]), dtype=np.float32)  # prod_l (1 - p_al q_bl)
        tmp = np.empty_like(keep)
        for l in range(P_out.shape[1]):
            np.multiply.outer(P_out[:, l], P_in[:, l], out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            keep *= tmp
        return 1.0 - keep
    raise UserError(f"mask must be 'count' or 'union', got {mask!r}")


def live_mask(codes_out: np.ndarray, codes_in: np.ndarray) -> np.ndarray:
    """Bool ``(out, in)``: output and input signatures share a cluster.

    >>> live_mask(np.array([1, 2]), np.array([3, 4, 2])).astype(int).tolist()
    [[1, 0, 0], [1, 0, 1]]
    """
    return (np.asarray(codes_out)[:, None] & np.asarray(codes_in)[None, :]) != 0


def _segment_sums(A: np.ndarray, rstarts: np.ndarray, cstarts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(np.add.reduceat(A, rstarts, axis=0, dtype=np.float64), cstarts, axis=1)


def mass_inside(W_tilde: np.ndarray, codes_out: np.ndarray, codes_in: np.ndarray) -> float:
    """Share of ``sum |W~|`` on live connections (signatures intersect); NaN when all zero.

    >>> mass_inside(np.array([[1., 3.], [0., 1.]]), np.array([1, 2]), np.array([1, 2]))
    0.4
    """
    A = np.abs(np.asarray(W_tilde))
    ro, co = np.argsort(codes_out, kind="stable"), np.argsort(codes_in, kind="stable")
    so, si = np.asarray(codes_out)[ro], np.asarray(codes_in)[co]
    rs = np.flatnonzero(np.r_[True, so[1:] != so[:-1]])
    cs = np.flatnonzero(np.r_[True, si[1:] != si[:-1]])
    sums = _segment_sums(A[np.ix_(ro, co)], rs, cs)
    total = sums.sum()
    return float(sums[live_mask(so[rs], si[cs])].sum() / total) if total > 0 else float("nan")


def bin_edges(n: int, max_size: int) -> np.ndarray:
    """Start index of each bin when ``n`` items are averaged down to at most ``max_size`` bins.

    >>> bin_edges(10, 4).tolist(), bin_edges(3, 4).tolist()
    ([0, 3, 6, 9], [0, 1, 2])
    """
    if max_size < 1:
        raise UserError(f"max_size must be >= 1, got {max_size}")
    f = max(1, -(-n // max_size))
    return np.arange(0, n, f, dtype=np.int64)


def _bin_sums(A: np.ndarray, fr: int, fc: int) -> np.ndarray:
    """Sums over ``fr x fc`` tiles of ``A`` (zero-padded at the ragged ends), float32."""
    r, m = A.shape
    pr, pc = -r % fr, -m % fc
    if pr or pc:
        A = np.pad(A, ((0, pr), (0, pc)))
    rows, cols = A.shape
    # inner (contiguous) axis first, then the row tiles: much faster than sum(axis=(1, 3))
    cs = A.reshape(rows, cols // fc, fc).sum(axis=-1, dtype=np.float32)  # (rows, col bins)
    return cs.reshape(rows // fr, fr, cols // fc).sum(axis=1)


def _bin_sizes(n: int, edges: np.ndarray) -> np.ndarray:
    return np.diff(np.r_[edges, n]).astype(np.float32)


def block_average(A: np.ndarray, max_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average ``A (n, m)`` down to at most ``max_size`` per side; returns ``(small, row_edges, col_edges)``.

    >>> s, r, c = block_average(np.arange(16.).reshape(4, 4), 2)
    >>> s.tolist(), r.tolist()
    ([[2.5, 4.5], [10.5, 12.5]], [0, 2])
    >>> block_average(np.ones((5, 3)), 2)[0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    A = np.asarray(A)
    n, m = A.shape
    re, ce = bin_edges(n, max_size), bin_edges(m, max_size)
    if len(re) == n and len(ce) == m:
        return A.astype(np.float32, copy=False), re, ce
    fr, fc = (int(re[1]) if len(re) > 1 else n), (int(ce[1]) if len(ce) > 1 else m)
    sums = _bin_sums(A, fr, fc)
    return sums / _bin_sizes(n, re)[:, None] / _bin_sizes(m, ce)[None, :], re, ce


def heatmap_data(W: np.ndarray, P_out: np.ndarray, P_in: np.ndarray, tau: float = 0.5,
                 mask: str | None = "count", max_size: int = 256) -> dict:
    """Everything a block-ordered heatmap of one layer needs, downsampled to ``max_size``.

    Returns a dict: ``row_order``/``col_order`` (:class:`BlockOrder`), ``abs_w``, ``mask``,
    ``abs_w_tilde`` (block means of ``|W|``, ``E[M]``, ``|W ⊙ E[M]|`` in block order; signed
    weights would cancel when averaged), ``row_edges``/``col_edges`` (bin starts, in ordered
    positions), ``row_boundaries``/``col_boundaries`` (signature changes, in ordered positions),
    ``mass_inside`` and ``shape``.

    The work runs over chunks of about 256 rows so that no full-size temporary is allocated:
    4096 x 4096 takes well under half a second on one core. The thin matrix products
    (``k`` = 15 inner dimension) run on one BLAS thread: multithreading them only adds overhead.
    """
    with threadpool_limits(1, user_api="blas"):
        return _heatmap_data(W, P_out, P_in, tau, mask, max_size)


def _heatmap_data(W, P_out, P_in, tau, mask, max_size) -> dict:
    W = np.asarray(W)
    P_out, P_in = np.asarray(P_out, np.float32), np.asarray(P_in, np.float32)
    if W.shape != (P_out.shape[0], P_in.shape[0]):
        raise UserError(f"weight shape {W.shape} does not match node sets ({P_out.shape[0]}, {P_in.shape[0]})")
    if mask not in (None, "count", "union"):
        raise UserError(f"mask must be 'count' or 'union', got {mask!r}")
    n, m = W.shape
    ro, co = block_order(P_out, tau), block_order(P_in, tau)
    Po, Pi = P_out[ro.order], P_in[co.order]
    re, ce = bin_edges(n, max_size), bin_edges(m, max_size)
    fr, fc = (int(re[1]) if len(re) > 1 else n), (int(ce[1]) if len(ce) > 1 else m)
    # live mask at tau by a thin 0/1 matmul: (c, k) @ (k, in) counts shared clusters
    k = P_out.shape[1]
    bits = np.arange(k, dtype=np.int64)
    Co = ((ro.codes[:, None] >> bits) & 1).astype(np.float32)  # (out, k) in block order
    CiT = np.ascontiguousarray(((co.codes[:, None] >> bits) & 1).astype(np.float32).T)  # (k, in)
    sum_w, sum_m, sum_wt = (np.zeros((len(re), len(ce)), np.float32) for _ in range(3))
    inside = total = 0.0
    chunk = fr * max(1, 256 // fr)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        Wc = np.abs(np.take(np.take(W, ro.order[r0:r1], axis=0), co.order, axis=1), dtype=np.float32)  # (c, in)
        Mc = expected_mask(Po[r0:r1], Pi, mask or "count")
        Wtc = Wc * Mc
        b0, b1 = r0 // fr, -(-r1 // fr)
        sum_w[b0:b1] += _bin_sums(Wc, fr, fc)
        sum_m[b0:b1] += _bin_sums(Mc, fr, fc)
        sum_wt[b0:b1] += _bin_sums(Wtc, fr, fc)
        live = np.minimum(Co[r0:r1] @ CiT, 1.0)  # (c, in) 1 where a cluster is shared
        inside += float(np.vdot(Wtc.ravel(), live.ravel()))
        total += float(Wtc.sum(dtype=np.float64))
    norm = _bin_sizes(n, re)[:, None] * _bin_sizes(m, ce)[None, :]
    return {
        "row_order": ro, "col_order": co, "abs_w": sum_w / norm, "mask": sum_m / norm,
        "abs_w_tilde": sum_wt / norm, "row_edges": re, "col_edges": ce,
        "row_boundaries": ro.boundaries, "col_boundaries": co.boundaries,
        "mass_inside": inside / total if total > 0 else float("nan"), "shape": W.shape,
    }
