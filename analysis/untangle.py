"""Untangling two trees drawn face to face (a tanglegram): count and reduce line crossings.

A tanglegram draws two trees over the same leaves with a straight line joining the two copies of
each leaf. Two lines cross exactly when their leaves come in one order on the left and in the other
order on the right, so the number of crossings is the number of *inversions* between the two leaf
orders. Rotating a vertex (reordering its children) changes the drawing but not the tree.

Why the one-sided step is exact: with one side fixed, a pair of leaves on the other side is ordered
only by their lowest common ancestor, so the crossings split into independent terms, one per
inner vertex, each depending only on the order of that vertex's children. For a binary vertex
the best order is whichever of the two has fewer crossings between the two child blocks; for a
vertex with up to :data:`EXACT_CHILDREN` children every order is tried; above that, children are
sorted by barycentre (mean position of their leaves on the other side) and improved by moving one
child at a time while that lowers the count. :func:`untangle` alternates the two sides until a
round changes nothing (the count never rises, so it stops) — the step-wise two-sided scheme of
dendextend's ``untangle(method = "step2side")``, with each one-sided step solved per vertex.

Trees are plain mappings ``vertex -> ordered children`` (leaves have no entry or an empty list)
so the functions work on networkx graphs, scipy linkages or nested lists alike.
"""

from __future__ import annotations

from itertools import permutations
from typing import Hashable, Mapping, Sequence

import numpy as np

#: Vertices with at most this many children get every child order tried (7! = 5040 orders).
EXACT_CHILDREN = 6

Children = Mapping[Hashable, Sequence[Hashable]]


def leaf_order(children: Children, root: Hashable) -> list:
    """Leaves of the tree under ``root`` in drawing (depth-first, left-to-right) order.

    >>> leaf_order({"r": ["a", "x"], "x": ["b", "c"]}, "r")
    ['a', 'b', 'c']
    """
    out, stack = [], [root]
    while stack:
        v = stack.pop()
        kids = children.get(v) or ()
        if not kids:
            out.append(v)
        else:
            stack.extend(reversed(list(kids)))
    return out


def count_crossings(left: Sequence[Hashable], right: Sequence[Hashable]) -> int:
    """Crossings of the lines joining equal keys of two leaf orders (inversions between them).

    Keys found on one side only draw no line and are ignored.

    >>> count_crossings(["a", "b", "c"], ["a", "b", "c"])
    0
    >>> count_crossings(["a", "b", "c"], ["c", "b", "a"])
    3
    """
    pos = {k: i for i, k in enumerate(right)}
    seq = np.array([pos[k] for k in left if k in pos], dtype=np.int64)
    return _inversions(seq)


def _inversions(seq: np.ndarray) -> int:
    """Pairs i < j with seq[i] > seq[j] (merge-sort count, O(n log n))."""
    seq = np.asarray(seq)
    n = len(seq)
    if n < 2:
        return 0
    if n <= 64:
        return int(np.triu(seq[:, None] > seq[None, :], 1).sum())
    mid = n // 2
    a, b = seq[:mid], seq[mid:]
    inv = _inversions(a) + _inversions(b)
    # For each element of b, the number of elements of a greater than it.
    sa = np.sort(a)
    inv += int((len(sa) - np.searchsorted(sa, b, side="right")).sum())
    return inv


def _block_cross(x: np.ndarray, y: np.ndarray) -> int:
    """Crossings between block ``x`` drawn before block ``y``: pairs with other-side x > y."""
    if len(x) == 0 or len(y) == 0:
        return 0
    sy = np.sort(y)
    return int(np.searchsorted(sy, x, side="left").sum())


def _order_cost(order: Sequence[int], M: np.ndarray) -> int:
    o = np.asarray(order)
    return int(np.triu(M[np.ix_(o, o)], 1).sum())


_PERMS: dict[int, np.ndarray] = {}


def _all_orders(k: int) -> np.ndarray:
    """Every order of ``k`` items as rows (identity first), cached per ``k``."""
    if k not in _PERMS:
        _PERMS[k] = np.array(list(permutations(range(k))), dtype=np.int64)
    return _PERMS[k]


def _best_order(blocks: list[np.ndarray]) -> list[int]:
    """Order of child blocks with the fewest crossings between them (exact when few children)."""
    k = len(blocks)
    M = np.array([[_block_cross(blocks[i], blocks[j]) if i != j else 0 for j in range(k)] for i in range(k)])
    identity = list(range(k))
    if k <= EXACT_CHILDREN:
        P = _all_orders(k)
        costs = np.zeros(len(P), dtype=np.int64)
        for i in range(k):
            for j in range(i + 1, k):
                costs += M[P[:, i], P[:, j]]
        return P[int(np.argmin(costs))].tolist()  # argmin keeps the first (identity) on ties
    # Many children: barycentre start, then move single children while it helps.
    bary = [float(np.mean(b)) if len(b) else float("inf") for b in blocks]
    order = sorted(range(k), key=lambda i: (bary[i], i))
    if _order_cost(order, M) > _order_cost(identity, M):
        order = identity
    cost = _order_cost(order, M)
    improved = True
    while improved:
        improved = False
        for i in range(k):
            for j in range(k):
                if i == j:
                    continue
                cand = order[:i] + order[i + 1:]
                cand.insert(j, order[i])
                c = _order_cost(cand, M)
                if c < cost:
                    order, cost, improved = cand, c, True
                    break
            if improved:
                break
    return order


def rotate_one_side(children: Children, root: Hashable, other_pos: Mapping[Hashable, float],
                    key: Mapping[Hashable, Hashable] | None = None) -> dict:
    """Reorder every vertex's children to minimise crossings against fixed positions on the other side.

    Parameters
    ----------
    children : mapping vertex -> ordered children
    root : the root vertex
    other_pos : mapping leaf key -> position of that leaf on the other side
    key : mapping leaf -> key (identity when None)

    Returns
    -------
    dict vertex -> reordered list of children (inner vertices only)

    >>> rotate_one_side({"r": ["a", "b"]}, "r", {"a": 1, "b": 0})
    {'r': ['b', 'a']}
    """
    key = key or {}
    out: dict = {}
    # Post-order: the other-side positions under each vertex, in their current left-to-right order.
    under: dict = {}
    stack = [(root, False)]
    while stack:
        v, done = stack.pop()
        kids = list(children.get(v) or ())
        if not kids:
            k = key.get(v, v)
            under[v] = np.array([other_pos[k]], dtype=float) if k in other_pos else np.empty(0)
            continue
        if not done:
            stack.append((v, True))
            stack.extend((c, False) for c in kids)
            continue
        blocks = [under[c] for c in kids]
        order = _best_order(blocks) if len(kids) > 1 else [0]
        out[v] = [kids[i] for i in order]
        under[v] = np.concatenate([blocks[i] for i in order])
        for c in kids:
            del under[c]
    return out


def _inner_preorder(children: Children, root: Hashable) -> list:
    out, stack = [], [root]
    while stack:
        v = stack.pop()
        kids = list(children.get(v) or ())
        if len(kids) > 1:
            out.append(v)
        stack.extend(reversed(kids))
    return out


def _moves(kids: list) -> list[list]:
    """Other orders of one vertex's children tried by the look-ahead: the reversal, adjacent swaps."""
    out = [kids[::-1]]
    if len(kids) > 2:
        for i in range(len(kids) - 1):
            out.append(kids[:i] + [kids[i + 1], kids[i]] + kids[i + 2:])
    return out


def untangle(left: Children, left_root: Hashable, right: Children, right_root: Hashable, *,
             left_key: Mapping | None = None, right_key: Mapping | None = None,
             max_rounds: int = 20, lookahead: bool = True) -> tuple[dict, dict, int, int]:
    """Rotate both trees' vertices to reduce the tanglegram's crossings.

    Two stages, each of which keeps the count the same or lowers it:

    1. *Step-wise, two-sided*: the right side is fitted to the left as drawn (one-sided, exact per
       vertex), then the sides take turns until a round brings no gain.
    2. *Look-ahead* (``lookahead=True``): stage 1 stops in a local optimum where no single side
       can improve alone. For every inner vertex of either side, each of a few other child orders
       (the reversal, adjacent swaps) is tried *together with* a fresh one-sided fit of the other
       side, and kept when the total falls. Repeated until a round changes nothing or
       ``max_rounds`` is reached.

    Parameters
    ----------
    left, right : mapping vertex -> ordered children
    left_root, right_root : the two roots
    left_key, right_key : mapping leaf -> shared key (identity when None)
    max_rounds : int
        Upper bound on the rounds of each stage.
    lookahead : bool
        Run stage 2 (about one one-sided fit per inner vertex per round).

    Returns
    -------
    (left children, right children, crossings before, crossings after)
        Children mappings in the new order; "before" counts the trees as given.

    >>> L = {"r": ["x", "y"], "x": ["a", "b"], "y": ["c", "d"]}
    >>> R = {"s": ["u", "v"], "u": ["d", "c"], "v": ["b", "a"]}
    >>> _, _, before, after = untangle(L, "r", R, "s")
    >>> before, after
    (6, 0)
    """
    left_key, right_key = left_key or {}, right_key or {}
    L = {v: list(k) for v, k in left.items()}
    R = {v: list(k) for v, k in right.items()}

    def keys(children, root, kmap):
        return [kmap.get(v, v) for v in leaf_order(children, root)]

    def positions(children, root, kmap):
        return {k: float(i) for i, k in enumerate(keys(children, root, kmap))}

    def total(A, B):
        return count_crossings(keys(A, left_root, left_key), keys(B, right_root, right_key))

    before = current = total(L, R)
    for _ in range(max_rounds):
        R.update(rotate_one_side(R, right_root, positions(L, left_root, left_key), right_key))
        L.update(rotate_one_side(L, left_root, positions(R, right_root, right_key), left_key))
        new = total(L, R)
        if new >= current:
            break
        current = new
    if not lookahead:
        return L, R, before, current

    sides = ((L, left_root, left_key, R, right_root, right_key, True),
             (R, right_root, right_key, L, left_root, left_key, False))
    for _ in range(max_rounds):
        start = current
        for this, root, kmap, other, oroot, okey, this_is_left in sides:
            for v in _inner_preorder(this, root):
                if current == 0:
                    return L, R, before, 0
                kids = this[v]
                for cand in _moves(kids):
                    this[v] = cand
                    fit = rotate_one_side(other, oroot, positions(this, root, kmap), okey)
                    trial = {**other, **fit}
                    c = total(this, trial) if this_is_left else total(trial, this)
                    if c < current:
                        other.update(fit)
                        current, kids = c, cand
                    this[v] = kids
        if current >= start:
            break
    return L, R, before, current


def _lca_index(children: Children, root: Hashable, key: Mapping) -> tuple[dict, dict]:
    """For each leaf key its path of ``(vertex, child index)`` from the root (branching vertices only),
    and each branching vertex's number of children."""
    paths: dict = {}
    arity: dict = {}
    stack = [(root, ())]
    while stack:
        v, path = stack.pop()
        kids = list(children.get(v) or ())
        if not kids:
            paths[key.get(v, v)] = path
            continue
        if len(kids) > 1:
            arity[v] = len(kids)
        for i, k in enumerate(kids):
            stack.append((k, path + ((v, i),) if len(kids) > 1 else path))
    return paths, arity


def _split(pa: tuple, pb: tuple) -> tuple:
    """The branching vertex where two root paths part, and the child index of each."""
    for (va, ia), (vb, ib) in zip(pa, pb):
        if ia != ib:
            return va, ia, ib
    raise ValueError("two leaves share a path: duplicate leaf keys")


def min_crossings_exact(left: Children, left_root: Hashable, right: Children, right_root: Hashable, *,
                        left_key: Mapping | None = None, right_key: Mapping | None = None,
                        time_limit: float = 60.0) -> dict:
    """The fewest crossings any rotation of the two trees can reach, by integer programming.

    A certificate for the heuristic of :func:`untangle` (used by the benchmark, not the dashboard:
    the program grows with the square of the leaves). Every branching vertex gets one binary
    variable per pair of children ("child i before child j", with the transitivity constraints of a
    linear order); a pair of leaves crosses when the orders at its two lowest common ancestors
    disagree, linearised as ``z >= |l - r|``; the pairs with the same variables are summed into one
    weighted term. Solved with HiGHS through :func:`scipy.optimize.milp`.

    Returns
    -------
    dict
        ``crossings`` (best found), ``lower_bound`` (proven), ``optimal`` (the two meet) and
        ``status`` (the solver's message).

    >>> L = {"r": ["x", "y"], "x": ["a", "b"], "y": ["c", "d"]}
    >>> R = {"s": ["u", "v"], "u": ["a", "c"], "v": ["b", "d"]}
    >>> min_crossings_exact(L, "r", R, "s")["crossings"]
    1
    """
    from itertools import combinations

    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    lpaths, larity = _lca_index(left, left_root, left_key or {})
    rpaths, rarity = _lca_index(right, right_root, right_key or {})
    common = sorted(set(lpaths) & set(rpaths), key=str)
    var: dict = {}
    for side, arity in (("L", larity), ("R", rarity)):
        for v, k in arity.items():
            for i, j in combinations(range(k), 2):
                var[(side, v, i, j)] = len(var)
    n_bin = len(var)
    terms: dict = {}
    for a_i in range(len(common)):
        pa_l, pa_r = lpaths[common[a_i]], rpaths[common[a_i]]
        for b_i in range(a_i + 1, len(common)):
            u, i, j = _split(pa_l, lpaths[common[b_i]])
            w, p, q = _split(pa_r, rpaths[common[b_i]])
            if i > j:  # orient the pair so that the left variable reads "a before b"
                i, j, p, q = j, i, q, p
            t = (u, i, j, w, p, q)
            terms[t] = terms.get(t, 0) + 1
    rows, cols, vals, lo = [], [], [], []

    def add(coeffs: list, bound: float) -> None:
        r = len(lo)
        for c, v in coeffs:
            rows.append(r), cols.append(c), vals.append(v)
        lo.append(bound)

    cost = np.zeros(n_bin + len(terms))
    for z, ((u, i, j, w, p, q), n) in enumerate(terms.items(), start=n_bin):
        cost[z] = n
        x = var[("L", u, i, j)]
        # l = x; r = y (p < q) or 1 - y (p > q); z >= l - r and z >= r - l
        if p < q:
            y, c = var[("R", w, p, q)], 0.0
            add([(z, 1), (x, -1), (y, 1)], c)    # z - x + y >= 0
            add([(z, 1), (x, 1), (y, -1)], -c)   # z + x - y >= 0
        else:
            y = var[("R", w, q, p)]
            add([(z, 1), (x, -1), (y, -1)], -1.0)  # z - x - y >= -1  (z >= x - (1 - y))
            add([(z, 1), (x, 1), (y, 1)], 1.0)     # z + x + y >= 1   (z >= (1 - y) - x)
    n_order = len(lo)
    for side, arity in (("L", larity), ("R", rarity)):
        for v, k in arity.items():
            for i, j, m in combinations(range(k), 3):
                add([(var[(side, v, i, j)], 1), (var[(side, v, j, m)], 1), (var[(side, v, i, m)], -1)], 0.0)
    hi = np.full(len(lo), np.inf)
    hi[n_order:] = 1.0  # transitivity: 0 <= y_ij + y_jm - y_im <= 1
    n = len(cost)
    if not terms:
        return {"crossings": 0, "lower_bound": 0, "optimal": True, "status": "no pair of shared leaves"}
    A = coo_matrix((vals, (rows, cols)), shape=(len(lo), n)).tocsr()
    integrality = np.zeros(n)
    integrality[:n_bin] = 1
    res = milp(cost, constraints=LinearConstraint(A, np.asarray(lo), hi), integrality=integrality,
               bounds=Bounds(np.zeros(n), np.ones(n)), options={"time_limit": float(time_limit)})
    found = int(round(res.fun)) if res.x is not None else None
    bound = getattr(res, "mip_dual_bound", None)
    bound = int(np.ceil(bound - 1e-6)) if bound is not None and np.isfinite(bound) else None
    return {"crossings": found, "lower_bound": bound, "optimal": found is not None and bound == found,
            "status": str(res.message)}
