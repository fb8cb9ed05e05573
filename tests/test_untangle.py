"""analysis.untangle: crossing counts, the exact one-sided rotation and the two-sided untangling."""

from itertools import product

import numpy as np
import pytest

from analysis.untangle import count_crossings, leaf_order, rotate_one_side, untangle


def brute_crossings(left, right):
    pos = {k: i for i, k in enumerate(right)}
    seq = [pos[k] for k in left if k in pos]
    return sum(seq[i] > seq[j] for i in range(len(seq)) for j in range(i + 1, len(seq)))


def random_tree(rng, leaves, max_kids=3, prefix="v"):
    """A random tree over ``leaves`` as ``(children, root)`` (vertices with 2..max_kids children)."""
    children, counter = {}, [0]

    def build(items):
        if len(items) == 1:
            return items[0]
        k = int(rng.integers(2, min(max_kids, len(items)) + 1))
        cuts = np.sort(rng.choice(np.arange(1, len(items)), size=k - 1, replace=False))
        parts = np.split(np.asarray(items, dtype=object), cuts)
        name = f"{prefix}{counter[0]}"
        counter[0] += 1
        children[name] = [build(list(p)) for p in parts]
        return name

    items = list(leaves)
    rng.shuffle(items)
    return children, build(items)


def all_rotations(children):
    """Every way to order every vertex's children (small trees only)."""
    from itertools import permutations

    verts = list(children)
    for choice in product(*[list(permutations(children[v])) for v in verts]):
        yield {v: list(c) for v, c in zip(verts, choice)}


@pytest.mark.parametrize("n", [0, 1, 2, 5, 70, 200])
def test_count_crossings_matches_brute_force(n):
    rng = np.random.default_rng(n)
    left = [f"l{i}" for i in rng.permutation(n)]
    right = [f"l{i}" for i in rng.permutation(n)] + ["only-right"]
    assert count_crossings(left + ["only-left"], right) == brute_crossings(left, right)


def test_leaf_order_is_depth_first():
    assert leaf_order({"r": ["x", "c"], "x": ["a", "b"]}, "r") == ["a", "b", "c"]
    assert leaf_order({}, "solo") == ["solo"]


@pytest.mark.parametrize("seed", range(6))
def test_one_sided_rotation_is_optimal(seed):
    """With the other side fixed, no rotation of the free side has fewer crossings."""
    rng = np.random.default_rng(seed)
    leaves = [f"c{i}" for i in range(7)]
    children, root = random_tree(rng, leaves, max_kids=3)
    other = {k: float(i) for i, k in enumerate(rng.permutation(leaves))}
    fixed = [k for k, _ in sorted(other.items(), key=lambda kv: kv[1])]
    best = min(count_crossings(leaf_order(rot, root), fixed) for rot in all_rotations(children))
    rotated = {**children, **rotate_one_side(children, root, other)}
    assert count_crossings(leaf_order(rotated, root), fixed) == best
    assert sorted(leaf_order(rotated, root)) == sorted(leaves)  # same tree, same leaves


def test_many_children_use_the_heuristic_and_never_get_worse():
    rng = np.random.default_rng(0)
    leaves = [f"c{i}" for i in range(12)]
    children = {"r": leaves}  # 12 children: above the exact limit
    other = {k: float(i) for i, k in enumerate(rng.permutation(leaves))}
    fixed = [k for k, _ in sorted(other.items(), key=lambda kv: kv[1])]
    rotated = rotate_one_side(children, "r", other)
    assert count_crossings(rotated["r"], fixed) == 0  # leaves as children: sorting is optimal


@pytest.mark.parametrize("seed", range(5))
def test_untangle_finds_zero_for_a_rotated_copy(seed):
    """A tree against a randomly rotated copy of itself can be drawn without a crossing."""
    rng = np.random.default_rng(seed)
    leaves = [f"c{i}" for i in range(60)]
    children, root = random_tree(rng, leaves, max_kids=4)
    scrambled = {v: [kids[i] for i in rng.permutation(len(kids))] for v, kids in children.items()}
    L, R, before, after = untangle(children, root, scrambled, root)
    assert before > 0 and after == 0
    assert count_crossings(leaf_order(L, root), leaf_order(R, root)) == 0


@pytest.mark.parametrize("seed", range(5))
def test_untangle_never_increases_and_reports_true_counts(seed):
    rng = np.random.default_rng(seed)
    leaves = [f"c{i}" for i in range(40)]
    Lc, lr = random_tree(rng, leaves, max_kids=2, prefix="l")
    Rc, rr = random_tree(rng, leaves, max_kids=5, prefix="r")
    key = {k: k.upper() for k in leaves}  # right leaves carry other names, matched through keys
    Rk = {v: [key.get(k, k) for k in kids] for v, kids in Rc.items()}
    rkey = {key[k]: k for k in leaves}
    L, R, before, after = untangle(Lc, lr, Rk, rr, right_key=rkey)
    assert before == count_crossings(leaf_order(Lc, lr), [rkey.get(k, k) for k in leaf_order(Rk, rr)])
    assert after == count_crossings(leaf_order(L, lr), [rkey.get(k, k) for k in leaf_order(R, rr)])
    assert after <= before
    plain = untangle(Lc, lr, Rk, rr, right_key=rkey, lookahead=False)[3]
    assert after <= plain  # the look-ahead only ever improves on the step-wise result
    for v in Lc:
        assert sorted(L[v]) == sorted(Lc[v])  # rotations only: every vertex keeps its children


@pytest.mark.parametrize("seed", range(4))
def test_exact_minimum_matches_brute_force(seed):
    from analysis.untangle import min_crossings_exact

    rng = np.random.default_rng(10 + seed)
    leaves = [f"c{i}" for i in range(6)]
    Lc, lr = random_tree(rng, leaves, max_kids=3, prefix="l")
    Rc, rr = random_tree(rng, leaves, max_kids=3, prefix="r")
    brute = min(count_crossings(leaf_order(a, lr), leaf_order(b, rr))
                for a in all_rotations(Lc) for b in all_rotations(Rc))
    got = min_crossings_exact(Lc, lr, Rc, rr)
    assert got["optimal"] and got["crossings"] == brute
    assert untangle(Lc, lr, Rc, rr)[3] >= brute
