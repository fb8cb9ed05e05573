"""The Blockout layer: masks, memberships, shared sampling, the fused Function, BlockoutLinear."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from blockout import BlockoutLinear, NodeClusters, shared_sampling
from blockout.functional import (
    bernoulli_st,
    count_mask,
    expected_count_mask,
    expected_union_mask,
    masked_linear,
    masked_linear_reference,
    union_mask,
)


def _fixed(n, k, probs=None, init="random"):
    s = NodeClusters(n, k, trainable=False, init=init)
    if probs is not None:
        s.set_probs(probs)
    return s


class TestMasks:
    def test_count_and_union_values(self):
        c_out = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        c_in = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
        assert count_mask(c_out, c_in).tolist() == [[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
        assert union_mask(c_out, c_in).tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]

    def test_expectations_match_exact_enumeration(self):
        # all 2^(k) joint outcomes of one output node and one input node, k = 3
        g = torch.Generator().manual_seed(0)
        p, q = torch.rand(1, 3, generator=g, dtype=torch.float64), torch.rand(1, 3, generator=g, dtype=torch.float64)
        e_count = e_union = 0.0
        for co in itertools.product([0.0, 1.0], repeat=3):
            for ci in itertools.product([0.0, 1.0], repeat=3):
                co_t, ci_t = torch.tensor([co], dtype=torch.float64), torch.tensor([ci], dtype=torch.float64)
                prob = torch.prod(torch.where(co_t > 0, p, 1 - p)) * torch.prod(torch.where(ci_t > 0, q, 1 - q))
                e_count += float(prob * count_mask(co_t, ci_t))
                e_union += float(prob * union_mask(co_t, ci_t))
        assert float(expected_count_mask(p, q)) == pytest.approx(e_count, abs=1e-12)
        assert float(expected_union_mask(p, q)) == pytest.approx(e_union, abs=1e-12)

    def test_expected_union_is_exact_and_finite_at_zero_one(self):
        p = torch.tensor([[1.0, 0.0], [0.0, 0.0]], requires_grad=True)
        q = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
        m = expected_union_mask(p, q)
        assert m.tolist() == [[1.0, 0.0], [0.0, 0.0]]
        m.sum().backward()
        assert torch.isfinite(p.grad).all()


class TestBernoulliST:
    def test_zero_one_deterministic_and_gradient_passes(self):
        p = torch.tensor([0.0, 1.0] * 500, requires_grad=True)
        c = bernoulli_st(p)
        assert torch.equal(c, p.detach())
        (c * torch.arange(1000.0)).sum().backward()
        assert torch.equal(p.grad, torch.arange(1000.0))

    def test_marginal(self):
        torch.manual_seed(1)
        c = bernoulli_st(torch.full((20000,), 0.3))
        assert set(c.unique().tolist()) <= {0.0, 1.0}
        # 5 standard errors: sqrt(0.21 / 20000) = 0.0032
        assert abs(c.mean().item() - 0.3) < 5 * math.sqrt(0.21 / 20000)


class TestNodeClusters:
    def test_random_init_range_and_symmetry_breaking(self):
        torch.manual_seed(0)
        s = NodeClusters(200, 6)
        p = s.probs.detach()
        assert p.shape == (200, 6)
        assert p.min() >= 0.5 - 1e-6 and p.max() <= 0.9 + 1e-6
        assert isinstance(s.theta, torch.nn.Parameter)
        # no two clusters have the same column of probabilities
        assert torch.cdist(p.T, p.T).add(torch.eye(6)).min() > 0.1

    def test_all_and_towers_fixed_are_exact_and_deterministic(self):
        all_ = NodeClusters(5, 3, trainable=False, init="all")
        towers = NodeClusters(7, 3, trainable=False, init="towers")
        assert torch.equal(all_.probs, torch.ones(5, 3))
        expect = (torch.arange(7)[:, None] % 3 == torch.arange(3)[None, :]).float()
        assert torch.equal(towers.probs, expect)
        for _ in range(20):
            assert torch.equal(all_.sample(), torch.ones(5, 3))
            assert torch.equal(towers.sample(), expect)
        assert "theta" in dict(towers.named_buffers()) and not list(towers.parameters())

    def test_learned_all_and_towers_start_finite(self):
        s = NodeClusters(4, 2, init="towers", init_range=(0.5, 0.8))
        p = s.probs.detach()
        assert torch.allclose(p, torch.tensor([[0.8, 0.2], [0.2, 0.8]] * 2))
        assert torch.isfinite(s.theta).all()

    def test_sample_is_binary_with_gradient_to_theta(self):
        torch.manual_seed(0)
        s = NodeClusters(50, 4)
        c = s.sample()
        assert set(c.unique().tolist()) <= {0.0, 1.0}
        c.sum().backward()
        p = s.probs.detach()
        # straight through: dL/dθ = dL/dC · sigmoid'(θ) = P (1 - P)
        assert torch.allclose(s.theta.grad, p * (1 - p))

    def test_set_probs(self):
        s = NodeClusters(2, 2, trainable=False)
        s.set_probs([[0.0, 1.0], [0.25, 0.75]])
        assert torch.allclose(s.probs, torch.tensor([[0.0, 1.0], [0.25, 0.75]]))
        with pytest.raises(ValueError, match=r"shape \(2, 2\), got \(3,\)"):
            s.set_probs([0.1, 0.2, 0.3])

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(num_nodes=0, num_clusters=2), "num_nodes must be a positive integer, got 0"),
            (dict(num_nodes=3, num_clusters=2.5), "num_clusters must be a positive integer, got 2.5"),
            (dict(num_nodes=3, num_clusters=2, init="bogus"), "init must be one of .*got 'bogus'"),
            (dict(num_nodes=3, num_clusters=2, init_range=(0.9, 0.5)), r"0 < low <= high < 1, got \(0.9, 0.5\)"),
            (dict(num_nodes=3, num_clusters=2, trainable="yes"), "trainable must be True or False, got 'yes'"),
        ],
    )
    def test_validation(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            NodeClusters(**kwargs)

    def test_extra_repr(self):
        r = repr(NodeClusters(3, 2, name="h1", trainable=False, init="towers"))
        assert "name='h1'" in r and "num_nodes=3" in r and "trainable=False" in r and "towers" in r


class TestSharedSampling:
    def test_one_sample_inside_fresh_outside(self):
        torch.manual_seed(0)
        s = NodeClusters(100, 4)
        with shared_sampling(s):
            a, b = s.sample(), s.sample()
            assert a is b
            with shared_sampling(s):  # nesting keeps the same sample
                assert s.sample() is a
            assert s.sample() is a
        assert s._cached_sample is None
        c, d = s.sample(), s.sample()
        assert not torch.equal(c, d) and not torch.equal(c, a)

    def test_two_layers_sharing_a_node_set_see_the_same_sample(self):
        # k = 1 makes the mask readable: with W = 1 and x = I, layer1 gives C_h[a] in column a,
        # layer2 gives C_h[b] in row b.
        torch.manual_seed(3)
        inp, h, out = _fixed(4, 1, init="all"), NodeClusters(60, 1, init_range=(0.5, 0.5)), _fixed(3, 1, init="all")
        l1, l2 = BlockoutLinear(inp, h, bias=False), BlockoutLinear(h, out, bias=False)
        for layer in (l1, l2):
            torch.nn.init.ones_(layer.weight)
        model = torch.nn.Sequential(l1, l2)
        calls = []
        original = h._sample
        h._sample = lambda: calls.append(1) or original()
        with shared_sampling(model):
            seen1 = l1(torch.eye(4))[0]  # (60,) = C_h
            seen2 = l2(torch.eye(60))[:, 0]  # (60,) = C_h
        assert len(calls) == 1
        assert torch.equal(seen1, seen2)
        assert 5 < seen1.sum() < 55
        seen3 = l1(torch.eye(4))[0]
        seen4 = l2(torch.eye(60))[:, 0]
        assert len(calls) == 3 and not torch.equal(seen3, seen4)

    def test_cache_cleared_on_error(self):
        s = NodeClusters(5, 2)
        with pytest.raises(RuntimeError):
            with shared_sampling(s):
                s.sample()
                raise RuntimeError("boom")
        assert s._cached_sample is None and s._share_depth == 0


def _random_inputs(dtype=torch.float64, n=5, n_in=7, n_out=9, k=3, seed=0, lo=0.0, hi=1.0, binary=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=dtype)
    w = torch.randn(n_out, n_in, generator=g, dtype=dtype)
    b = torch.randn(n_out, generator=g, dtype=dtype)
    co = torch.rand(n_out, k, generator=g, dtype=dtype) * (hi - lo) + lo
    ci = torch.rand(n_in, k, generator=g, dtype=dtype) * (hi - lo) + lo
    if binary:
        co, ci = torch.bernoulli(co, generator=g), torch.bernoulli(ci, generator=g)
    return [t.requires_grad_() for t in (x, w, b, co, ci)]


class TestMaskedLinearFunction:
    @pytest.mark.parametrize("mask", ["count", "union"])
    @pytest.mark.parametrize("scale", [1.0, 1 / 3])
    @pytest.mark.parametrize("chunk", [1, 4, 9, None])
    @pytest.mark.parametrize("binary", [True, False])
    def test_matches_naive_autograd(self, mask, scale, chunk, binary):
        inputs = _random_inputs(binary=binary, seed=chunk or 0)
        y = masked_linear(*inputs, scale=scale, mask=mask, chunk_rows=chunk)
        y_ref = masked_linear_reference(*inputs, scale=scale, mask=mask)
        assert torch.allclose(y, y_ref, atol=1e-12)
        g = torch.randn_like(y)
        grads = torch.autograd.grad(y, inputs, g)
        grads_ref = torch.autograd.grad(y_ref, inputs, g)
        for got, want in zip(grads, grads_ref):
            assert torch.allclose(got, want, atol=1e-10)

    def test_union_gradient_passes_only_where_count_le_one(self):
        # one output node, two input nodes; input 0 shares 2 clusters, input 1 shares 1
        x = torch.ones(1, 2)
        w = torch.ones(1, 2)
        co = torch.ones(1, 2, requires_grad=True)
        ci = torch.tensor([[1.0, 1.0], [1.0, 0.0]], requires_grad=True)
        y = masked_linear(x, w, None, co, ci, mask="union")
        assert y.item() == 2.0
        y.sum().backward()
        # dL/dM = [1, 1], gated -> [0, 1]; dC_out = dM C_in = [1, 0]; dC_in = dM^T C_out
        assert co.grad.tolist() == [[1.0, 0.0]]
        assert ci.grad.tolist() == [[0.0, 0.0], [1.0, 1.0]]

    @pytest.mark.parametrize("mask, lo, hi", [("count", 0.0, 1.0), ("union", 0.0, 0.3), ("union", 0.8, 1.0)])
    def test_gradcheck(self, mask, lo, hi):
        # union: memberships kept where count < 1 (clamp inactive) or count > 1.9 (saturated),
        # away from the kink at exactly 1 where finite differences are not defined
        inputs = _random_inputs(n=3, n_in=5, n_out=4, k=3, binary=False, lo=lo, hi=hi)
        fn = lambda *a: masked_linear(*a, scale=0.7, mask=mask, chunk_rows=3)  # noqa: E731
        assert torch.autograd.gradcheck(fn, inputs)

    def test_skips_membership_grads_when_not_needed(self):
        x, w, b, co, ci = _random_inputs()
        co, ci = co.detach(), ci.detach()
        y = masked_linear(x, w, b, co, ci)
        gx, gw, gb = torch.autograd.grad(y.sum(), [x, w, b])
        ref = masked_linear_reference(x, w, b, co, ci)
        rx, rw, rb = torch.autograd.grad(ref.sum(), [x, w, b])
        assert torch.allclose(gx, rx) and torch.allclose(gw, rw) and torch.allclose(gb, rb)

    def test_leading_dims_and_no_bias(self):
        x, w, _, co, ci = _random_inputs(dtype=torch.float32)
        x3 = x.detach().reshape(5, 1, 7).expand(5, 2, 7)
        y = masked_linear(x3, w, None, co, ci)
        assert y.shape == (5, 2, 9)
        assert torch.allclose(y[:, 1], masked_linear_reference(x, w, None, co, ci), atol=1e-5)


def _layer(n_in=6, n_out=5, k=3, mask="count", mode="hard", seed=0, trainable=True, **kw):
    torch.manual_seed(seed)
    inp = NodeClusters(n_in, k, trainable=trainable, init_range=(0.3, 0.9))
    out = NodeClusters(n_out, k, trainable=trainable, init_range=(0.3, 0.9))
    return BlockoutLinear(inp, out, mode=mode, mask=mask, **kw)


class TestBlockoutLinear:
    @pytest.mark.parametrize("mask", ["count", "union"])
    def test_mean_training_output_matches_eval(self, mask):
        layer = _layer(mask=mask, seed=1)
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
        T = 4000
        torch.manual_seed(3)
        with torch.no_grad():
            ys = torch.stack([layer(x) for _ in range(T)])  # (T, 4, 5)
            layer.eval()
            y_eval = layer(x)
        mean, se = ys.mean(0), ys.std(0) / math.sqrt(T)
        # tolerance: 5 standard errors of the Monte-Carlo mean (plus float slack)
        assert (ys.std(0) > 0).any()
        assert ((mean - y_eval).abs() <= 5 * se + 1e-4).all(), ((mean - y_eval).abs() / se).max()

    def test_dropout_special_case(self):
        # k = 1, output nodes always kept, input nodes fixed with probability p = 0.3
        p, n_in, n_out = 0.3, 40, 7
        inp = _fixed(n_in, 1, torch.full((n_in, 1), p))
        out = _fixed(n_out, 1, init="all")
        torch.manual_seed(0)
        layer = BlockoutLinear(inp, out)
        w, b = layer.weight.detach(), layer.bias.detach()
        x = torch.randn(16, n_in)
        kept_total = torch.zeros(n_in)
        T = 500
        with torch.no_grad():
            for _ in range(T):
                wt = (layer(torch.eye(n_in)) - b).T  # (out, in): masked weight of this pass
                keep = (wt != 0).any(0)  # (in,) input column kept in this pass
                # whole input columns kept (equal to W) or dropped (zero) together
                assert torch.allclose(wt[:, keep], w[:, keep], atol=1e-6) and not wt[:, ~keep].any()
                kept_total += keep
        # seeded: the same pass on a real batch is Dropout on the inputs (same sample via shared_sampling)
        with torch.no_grad(), shared_sampling(layer):
            wt = (layer(torch.eye(n_in)) - b).T
            keep = (wt != 0).any(0).float()
            assert torch.allclose(layer(x), F.linear(x * keep, w, b), atol=1e-5)
        # keep rate p within 5 standard errors over T * n_in Bernoulli draws
        assert abs(kept_total.mean().item() / T - p) < 5 * math.sqrt(p * (1 - p) / (T * n_in))
        layer.eval()
        with torch.no_grad():
            assert torch.allclose(layer.effective_weight(), w * p, atol=1e-6)
            assert torch.allclose(layer(x), F.linear(x, w * p, b), atol=1e-5)

    def test_dropconnect_special_case(self):
        # one cluster per connection (a, b): output node a in it with probability p_a, input
        # node b with probability q_b, every other membership fixed at 0 -> independent
        # Bernoulli(p_a q_b) mask entries
        n_out, n_in = 3, 4
        k = n_out * n_in
        p = torch.tensor([0.9, 0.6, 0.7])
        q = torch.tensor([0.8, 0.5, 0.95, 0.7])
        p_out, p_in = torch.zeros(n_out, k), torch.zeros(n_in, k)
        for a, b in itertools.product(range(n_out), range(n_in)):
            p_out[a, a * n_in + b] = p[a]
            p_in[b, a * n_in + b] = q[b]
        layer = BlockoutLinear(_fixed(n_in, k, p_in), _fixed(n_out, k, p_out), bias=False)
        torch.nn.init.ones_(layer.weight)
        T = 4000
        torch.manual_seed(0)
        with torch.no_grad():
            masks = torch.stack([layer(torch.eye(n_in)).T.reshape(-1) for _ in range(T)])  # (T, out*in)
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
        keep = torch.outer(p, q).reshape(-1)
        tol = 5 * torch.sqrt(keep * (1 - keep) / T)
        assert ((masks.mean(0) - keep).abs() <= tol).all()
        corr = torch.corrcoef(masks.T)
        off = corr[~torch.eye(k, dtype=torch.bool)]
        assert off.abs().max() < 5 / math.sqrt(T)  # independent entries: |corr| ~ 1/sqrt(T)
        layer.eval()
        assert torch.allclose(layer.expected_mask(), torch.outer(p, q))

    @pytest.mark.parametrize("mask", ["count", "union"])
    def test_exact_block_structure_with_zero_one_probs(self, mask):
        k = 3
        inp, out = _fixed(9, k, init="towers"), _fixed(6, k, init="towers")
        torch.manual_seed(0)
        layer = BlockoutLinear(inp, out, mask=mask, scale=0.5)
        block = (torch.arange(6)[:, None] % k == torch.arange(9)[None, :] % k).float()  # (out, in)
        assert torch.equal(layer.expected_mask(), block)
        x = torch.randn(8, 9)
        want = F.linear(x, layer.weight * block * 0.5, layer.bias)
        for _ in range(3):  # hard sampling of 0/1 probabilities is deterministic
            y = layer(x)
            assert torch.allclose(y, want, atol=1e-6)
        y.sum().backward()
        assert not layer.weight.grad[block == 0].any() and layer.weight.grad[block == 1].abs().min() > 0
        layer.eval()
        assert torch.allclose(layer(x), want, atol=1e-6)
        assert layer.live_connections() == int(block.sum())

    @pytest.mark.parametrize("mask", ["count", "union"])
    def test_soft_mode_deterministic_and_equal_to_eval(self, mask):
        layer = _layer(mask=mask, mode="soft", scale=0.25)
        x = torch.randn(3, 6)
        y1, y2 = layer(x), layer(x)
        assert torch.equal(y1, y2)
        layer.eval()
        with torch.no_grad():
            assert torch.allclose(layer(x), y1, atol=1e-6)

    @pytest.mark.parametrize("mode", ["hard", "soft"])
    @pytest.mark.parametrize("mask", ["count", "union"])
    def test_gradients_reach_theta_only_when_learned(self, mode, mask):
        learned = _layer(mode=mode, mask=mask)
        learned(torch.randn(8, 6)).pow(2).sum().backward()
        for s in (learned.in_clusters, learned.out_clusters):
            assert s.theta.grad is not None and s.theta.grad.abs().sum() > 0
        fixed = _layer(mode=mode, mask=mask, trainable=False)
        fixed(torch.randn(8, 6)).pow(2).sum().backward()
        for s in (fixed.in_clusters, fixed.out_clusters):
            assert s.theta.grad is None and not s.theta.requires_grad
        assert fixed.weight.grad.abs().sum() > 0
        assert {n for n, _ in fixed.named_parameters()} == {"weight", "bias"}

    def test_eval_cache_reused_and_invalidated_by_optimizer_step(self):
        layer = _layer()
        opt = torch.optim.SGD(layer.parameters(), lr=0.5)
        layer.eval()
        x = torch.randn(4, 6)
        with torch.no_grad():
            y0 = layer(x)
            w0 = layer._cached_weight()
            assert layer._cached_weight() is w0  # unchanged parameters: cache hit
        layer.train()
        layer(x).sum().backward()
        opt.step()
        layer.eval()
        with torch.no_grad():
            y1 = layer(x)
            want = F.linear(x, layer.weight * layer.expected_mask(), layer.bias)
        assert not torch.allclose(y0, y1) and torch.allclose(y1, want, atol=1e-6)
        # an optimiser step on the memberships alone (while staying in eval mode) also invalidates
        theta_opt = torch.optim.SGD([layer.out_clusters.theta], lr=5.0)
        layer.out_clusters.probs.sum().backward()
        theta_opt.step()
        with torch.no_grad():
            y2 = layer(x)
            want = F.linear(x, layer.weight * layer.expected_mask(), layer.bias)
        assert not torch.allclose(y1, y2) and torch.allclose(y2, want, atol=1e-6)

    def test_eval_with_grad_is_differentiable_and_inference_mode_works(self):
        layer = _layer(mask="union").eval()
        x = torch.randn(2, 6)
        layer(x).sum().backward()
        assert layer.weight.grad is not None and layer.out_clusters.theta.grad.abs().sum() > 0
        with torch.inference_mode():
            y_inf = layer(x)
        with torch.no_grad():
            assert torch.allclose(layer(x), y_inf)

    def test_float64_and_chunking(self):
        a = _layer(seed=5, chunk_rows=2).double()
        b = _layer(seed=5).double()
        x = torch.randn(3, 6, dtype=torch.float64)
        torch.manual_seed(9)
        ya = a(x)
        torch.manual_seed(9)
        yb = b(x)
        assert ya.dtype == torch.float64 and torch.allclose(ya, yb)

    def test_effective_weight_and_live_connections(self):
        layer = _layer(mask="union", scale=0.5).eval()
        with torch.no_grad():
            eff = layer.effective_weight()
            eff.zero_()  # a copy: the cache is untouched
            assert torch.allclose(layer.effective_weight(), layer.weight * layer.expected_mask() * 0.5)
        c_out = layer.out_clusters.probs >= 0.6
        c_in = layer.in_clusters.probs >= 0.6
        assert layer.live_connections(0.6) == int(((c_out.float() @ c_in.float().T) > 0).sum())
        assert layer.live_connections(0.0) == 30

    def test_shared_node_set_parameters_listed_once(self):
        a, h, c = NodeClusters(6, 2), NodeClusters(5, 2), NodeClusters(3, 2)
        model = torch.nn.Sequential(BlockoutLinear(a, h), BlockoutLinear(h, c))
        params = list(model.parameters())
        assert len(params) == len({id(p) for p in params}) == 7  # 3 thetas + 2 (W, b)

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(mode="foo"), "mode must be 'hard' or 'soft', got 'foo'"),
            (dict(mask="max"), "mask must be 'count' or 'union', got 'max'"),
            (dict(scale=-1.0), "scale must be None or a positive finite number, got -1.0"),
            (dict(scale=float("nan")), "scale must be None or a positive finite number, got nan"),
            (dict(bias="yes"), "bias must be True or False, got 'yes'"),
            (dict(chunk_rows=0), "chunk_rows must be a positive integer or None, got 0"),
        ],
    )
    def test_validation(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            BlockoutLinear(NodeClusters(3, 2), NodeClusters(4, 2), **kwargs)

    def test_validation_of_node_sets(self):
        with pytest.raises(ValueError, match="in_clusters has 2 clusters but out_clusters has 3"):
            BlockoutLinear(NodeClusters(3, 2), NodeClusters(4, 3))
        with pytest.raises(ValueError, match="out_clusters must be a NodeClusters, got int"):
            BlockoutLinear(NodeClusters(3, 2), 4)
        layer = BlockoutLinear(NodeClusters(3, 2), NodeClusters(4, 2))
        with pytest.raises(ValueError, match="input has 5 features"):
            layer(torch.randn(2, 5))

    def test_extra_repr(self):
        r = repr(BlockoutLinear(NodeClusters(3, 2), NodeClusters(4, 2), mode="soft", mask="union", scale=0.5))
        for part in ("in_features=3", "out_features=4", "clusters=2", "mode='soft'", "mask='union'", "scale=0.5"):
            assert part in r


class TestMixedPrecision:
    def test_cpu_autocast_bfloat16(self):
        layer = _layer(n_in=16, n_out=8)
        x = torch.randn(4, 16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        assert y.dtype == torch.bfloat16
        y.float().sum().backward()
        assert layer.weight.grad.dtype == torch.float32 and layer.out_clusters.theta.grad.dtype == torch.float32
        assert layer.in_clusters.theta.grad.abs().sum() > 0


class TestLayerSpeedBenchmark:
    def test_tiny_run_writes_ratios(self, tmp_path):
        import json
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        try:
            import layer_speed
        finally:
            sys.path.pop(0)
        threads = torch.get_num_threads()
        try:
            out = tmp_path / "speed.json"
            result = layer_speed.main(["--features", "64", "--batch", "8", "--repeats", "2", "--threads", "1",
                                       "--naive", "--out", str(out)])
        finally:
            torch.set_num_threads(threads)
        saved = json.loads(out.read_text())
        assert saved["ratios"] == pytest.approx(result["ratios"])
        for key in ("train_best", "train_median", "eval_best", "eval_median", "naive_train_best"):
            assert saved["ratios"][key] > 0
