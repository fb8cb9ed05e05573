"""Tests of the emergence options (issue 5): budgets, categorical memberships, freezing, rescue."""

from __future__ import annotations

import math

import pytest
import torch

from blockout.budget import ConnectionBudget, annealed_rho, dual_ascent_step, live_probability_rows
from blockout.errors import UserError
from blockout.membership import capped_softmax, gumbel_top_m, tower_logits, usage_kl
from tiny_runs import tiny_options, write_hierarchy  # noqa: E402  (tests/ is on sys.path)


class TestLiveProbability:
    def test_bernoulli_matches_monte_carlo(self):
        # seeded Monte Carlo over independent Bernoulli memberships; tolerance 0.01 (>5 standard errors)
        g = torch.Generator().manual_seed(0)
        p_out, p_in = torch.rand(3, 4, generator=g), torch.rand(6, 4, generator=g)
        n = 20000
        c_out = (torch.rand(n, 3, 4, generator=g) < p_out).float()
        c_in = (torch.rand(n, 6, 4, generator=g) < p_in).float()
        live = (torch.einsum("nak,nbk->nab", c_out, c_in) > 0).float().mean(dim=(0, 2))  # (3,)
        assert torch.allclose(live_probability_rows(p_out, p_in), live, atol=0.01)

    def test_exclusive_inputs_match_monte_carlo(self):
        g = torch.Generator().manual_seed(1)
        p_out = torch.rand(3, 5, generator=g)
        q = torch.softmax(torch.randn(7, 5, generator=g), dim=1)
        n = 20000
        c_out = (torch.rand(n, 3, 5, generator=g) < p_out).float()
        idx = torch.multinomial(q, n, replacement=True, generator=g).T  # (n, 7)
        c_in = torch.nn.functional.one_hot(idx, 5).float()
        live = (torch.einsum("nak,nbk->nab", c_out, c_in) > 0).float().mean(dim=(0, 2))
        assert torch.allclose(live_probability_rows(p_out, q, exclusive_in=True), live, atol=0.01)

    def test_chunking_does_not_change_the_result(self):
        g = torch.Generator().manual_seed(2)
        p_out, p_in = torch.rand(10, 3, generator=g), torch.rand(4, 3, generator=g)
        assert torch.allclose(live_probability_rows(p_out, p_in, chunk=3), live_probability_rows(p_out, p_in))

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="share k"):
            live_probability_rows(torch.rand(2, 3), torch.rand(2, 4))


class TestDualAscent:
    def test_rises_when_over_budget_and_stays_non_negative(self):
        lam = torch.zeros(3)
        for _ in range(10):
            lam = dual_ascent_step(lam, torch.tensor([0.5, 0.0, -0.5]), step=0.1, max_step=1.0)
        assert lam[0] == pytest.approx(0.5)
        assert lam[1] == 0 and lam[2] == 0  # never negative

    def test_step_is_bounded(self):
        lam = dual_ascent_step(torch.tensor([1.0, 1.0]), torch.tensor([100.0, -100.0]), step=1.0, max_step=0.01)
        assert lam.tolist() == pytest.approx([1.01, 0.99])


class TestAnnealedRho:
    def test_schedule_endpoints_and_monotone(self):
        values = [annealed_rho(0.05, t / 20, 0.25, 0.5) for t in range(21)]
        assert values[0] == values[5] == pytest.approx(1.0) and values[10] == pytest.approx(0.05)
        assert all(a >= b for a, b in zip(values, values[1:]))
        assert annealed_rho(0.05, 0.3) == 0.05


class TestConnectionBudget:
    def test_multiplier_rises_over_budget(self):
        budget = ConnectionBudget(4, 0.1, step=0.5, max_step=0.05)
        density = torch.tensor([0.9, 0.05, 0.1, 0.3])
        budget.update(density)
        assert budget.multiplier.tolist() == pytest.approx([0.05, 0.0, 0.0, 0.05])  # bounded by max_step
        for _ in range(50):
            budget.update(torch.tensor([0.0, 0.0, 0.0, 0.0]))
        assert (budget.multiplier >= 0).all() and budget.multiplier.max() == 0

    def test_penalty_gradient_pushes_density_down(self):
        budget = ConnectionBudget(2, 0.1, step=1.0, max_step=1.0)
        budget.update(torch.tensor([0.5, 0.5]))
        theta = torch.zeros(2, 3, requires_grad=True)
        p_in = torch.eye(3)
        density = live_probability_rows(torch.sigmoid(theta), p_in)
        budget.penalty(density).backward()
        assert (theta.grad > 0).all()  # gradient descent lowers theta, hence the density

    def test_layer_scope_has_one_multiplier(self):
        budget = ConnectionBudget(5, 0.2, scope="layer", step=1.0, max_step=1.0)
        budget.update(torch.full((5,), 0.4))
        assert budget.multiplier.shape == (1,) and float(budget.multiplier) == pytest.approx(0.2)
        assert budget.summary()["max"] == pytest.approx(0.2)

    def test_annealing_moves_the_budget_in_force(self):
        budget = ConnectionBudget(2, 0.05, anneal_start=0.0, anneal_end=0.5)
        assert float(budget.current_rho) == 1.0
        assert budget.set_progress(0.6) == pytest.approx(0.05)
        assert float(budget.current_rho) == pytest.approx(0.05)

    def test_state_dict_round_trip(self):
        budget = ConnectionBudget(3, 0.1, step=1.0, max_step=1.0)
        budget.update(torch.tensor([0.5, 0.2, 0.0]))
        other = ConnectionBudget(3, 0.1)
        other.load_state_dict(budget.state_dict())
        assert torch.equal(other.multiplier, budget.multiplier)

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"rho": 0.0}, "rho must be in"),
            ({"rho": 1.5}, "rho must be in"),
            ({"scope": "col"}, "scope must be"),
            ({"step": 0.0}, "step must be"),
            ({"max_step": -1.0}, "max_step must be"),
            ({"anneal_end": 2.0}, "anneal window"),
        ],
    )
    def test_validation_messages_show_the_value(self, kwargs, message):
        args = {"rho": 0.1, **kwargs}
        with pytest.raises(UserError, match=message):
            ConnectionBudget(3, **args)

    def test_extra_repr(self):
        assert "rho=0.1" in repr(ConnectionBudget(3, 0.1, name="classifier"))


class TestCappedSoftmax:
    @pytest.mark.parametrize("m", [1, 2, 3, 5])
    def test_rows_sum_to_m_and_stay_in_unit_interval(self, m):
        g = torch.Generator().manual_seed(m)
        p = capped_softmax(3 * torch.randn(50, 6, generator=g), m)
        assert torch.allclose(p.sum(dim=1), torch.full((50,), float(m)), atol=1e-5)
        assert (p >= 0).all() and (p <= 1 + 1e-6).all()

    def test_order_is_kept(self):
        logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
        p = capped_softmax(logits, 2)[0]
        assert (p[:-1] >= p[1:]).all()

    def test_bad_m(self):
        with pytest.raises(ValueError, match="m must be"):
            capped_softmax(torch.zeros(2, 3), 4)


class TestGumbelTopM:
    @pytest.mark.parametrize("m", [1, 2, 4])
    def test_exactly_m_ones_per_node(self, m):
        g = torch.Generator().manual_seed(0)
        c = gumbel_top_m(torch.randn(40, 6, generator=g), m, generator=g)
        assert set(c.unique().tolist()) <= {0.0, 1.0}
        assert (c.sum(dim=1) == m).all()

    def test_straight_through_gradient_reaches_theta(self):
        g = torch.Generator().manual_seed(0)
        theta = torch.randn(5, 4, generator=g, requires_grad=True)
        c = gumbel_top_m(theta, 1, generator=g)
        (c * torch.arange(4.0)).sum().backward()
        assert theta.grad is not None and theta.grad.abs().sum() > 0

    def test_frequencies_follow_the_softmax(self):
        # Gumbel-max samples cluster l with probability softmax(theta)_l; 4000 draws, tolerance 0.03
        g = torch.Generator().manual_seed(3)
        theta = torch.tensor([[1.0, 0.0, -1.0]]).repeat(4000, 1)
        freq = gumbel_top_m(theta, 1, generator=g).mean(dim=0)
        assert torch.allclose(freq, torch.softmax(theta[0], 0), atol=0.03)


class TestUsageKL:
    def test_zero_at_uniform_usage(self):
        assert float(usage_kl(torch.full((8, 4), 0.25))) == pytest.approx(0.0, abs=1e-7)
        assert float(usage_kl(torch.eye(4).repeat(3, 1))) == pytest.approx(0.0, abs=1e-7)
        assert float(usage_kl(capped_softmax(torch.zeros(6, 4), 2), m=2)) == pytest.approx(0.0, abs=1e-7)

    def test_positive_and_maximal_when_all_in_one_cluster(self):
        p = torch.zeros(6, 4)
        p[:, 0] = 1
        assert float(usage_kl(p)) == pytest.approx(math.log(4))


class TestTowerLogits:
    def test_towers_with_noise(self):
        g = torch.Generator().manual_seed(0)
        t = tower_logits(40, 4, scale=3.0, noise=0.0)
        assert (t.argmax(dim=1) == torch.arange(40) % 4).all()
        noisy = tower_logits(4000, 4, scale=3.0, noise=3.0, generator=g)
        resid = noisy - tower_logits(4000, 4, scale=3.0, noise=0.0)
        assert float(resid.std()) == pytest.approx(3.0, rel=0.05)


# ------------------------------------------------------------------------------------------
# wiring into TrainConfig, the model and the trainer


import numpy as np  # noqa: E402

from analysis import runfolder as rf  # noqa: E402
from analysis.run import load_run  # noqa: E402
from blockout.checkpoint import load_train_state  # noqa: E402
from blockout.config import METHOD_PRESETS, METHODS, EpochShare, PerCluster, PerCoclusterMethod, TrainConfig  # noqa: E402
from blockout.membership import CategoricalClusters  # noqa: E402
from blockout.models import build_model  # noqa: E402
from blockout.train import train  # noqa: E402

HIER = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"], "c": ["c1", "c2"]}


@pytest.fixture(scope="module")
def hier_file(tmp_path_factory):
    return write_hierarchy(tmp_path_factory, HIER)


def tiny_cfg(hier_file, out, **kw):
    """8 classes x 4 images of 8x8, k = 3: 4 steps per epoch at batch 8."""
    return TrainConfig.from_dict(tiny_options(hier_file, out, **{"nodes": 12, "epochs": 3, **kw}))


class TestRecipeConfig:
    def test_recipe_fills_in_its_preset(self):
        cfg = TrainConfig.from_dict({"method": "hard-budgeted", "clusters": 20, "epochs": 30})
        for key, value in METHOD_PRESETS["hard-budgeted"].items():
            if not isinstance(value, (PerCluster, EpochShare, PerCoclusterMethod)):  # typed: depend on other options
                assert getattr(cfg, key) == value, key
        # the values that depend on other options
        assert cfg.budget_rho == pytest.approx(1 / 20) and cfg.freeze_after == 15 and cfg.hidden_membership == "categorical"

    def test_explicit_options_win_over_the_preset(self):
        cfg = TrainConfig.from_dict({"method": "hard-budgeted", "soft_epochs": 2, "class_membership": "bernoulli"})
        assert (cfg.soft_epochs, cfg.class_membership) == (2, "bernoulli")

    @pytest.mark.parametrize("method", METHODS)
    def test_paper_methods_keep_the_papers_memberships(self, method):
        cfg = TrainConfig.from_dict({"method": method})
        assert (cfg.hidden_membership, cfg.class_membership, cfg.budget_rho, cfg.soft_epochs,
                cfg.freeze_after) == ("bernoulli", "bernoulli", None, 0, None)

    @pytest.mark.parametrize("kw,match", [
        ({"membership_m": 7, "clusters": 6}, "membership_m must be in"),
        ({"budget_rho": 1.5}, "budget_rho must be in"),
        ({"temperature_end": 0.0}, "temperature_end must be a positive"),
        ({"theta_init_low": 0.9, "theta_init_high": 0.5}, "theta_init_low/high"),
        ({"freeze_after": 0}, "freeze_after must be at least 1"),
        ({"soft_epochs": -1}, "soft_epochs must be 0 or more"),
        ({"hidden_membership": "tree"}, "hidden_membership='tree' is not one of"),
    ])
    def test_bad_values_are_user_errors_naming_the_value(self, kw, match):
        with pytest.raises(UserError, match=match):
            TrainConfig(**kw)


class TestModelMemberships:
    def test_categorical_sets_and_budgets(self):
        cfg = TrainConfig.from_dict({"method": "hard-budgeted", "clusters": 4, "nodes": 8, "budget_rho": 0.25,
                                     "class_membership": "categorical"})
        torch.manual_seed(0)
        model = build_model(cfg, (5,), 6)
        assert isinstance(model.node_sets["h1"], CategoricalClusters)
        assert isinstance(model.node_sets["classes"], CategoricalClusters)
        assert not isinstance(model.node_sets["trunk"], CategoricalClusters)
        assert list(model.budgets) == ["classifier"]
        assert "budgets.classifier.multiplier" in model.state_dict()
        # near-uniform class start: every class row sums to 1 and is close to 1/k
        P = model.node_sets["classes"].probs.detach()
        assert torch.allclose(P.sum(1), torch.ones(6)) and float((P - 0.25).abs().max()) < 0.1

    def test_towers_are_fixed(self):
        cfg = TrainConfig(method="hard-learned", clusters=3, nodes=6, hidden_membership="towers")
        model = build_model(cfg, (5,), 4)
        h = model.node_sets["h2"]
        assert not h.trainable and h.probs.argmax(1).tolist() == [0, 1, 2, 0, 1, 2]
        assert model.node_sets["classes"].trainable

    def test_soft_switch(self):
        model = build_model(TrainConfig(method="hard-learned", clusters=2, nodes=4), (3,), 3)
        model.set_mode("soft")
        assert {layer.mode for layer in model.fc.values()} == {"soft"}
        with pytest.raises(ValueError, match="'medium'"):
            model.set_mode("medium")


class TestTrainerWiring:
    def test_budget_freeze_and_multipliers_reach_the_run_folder(self, hier_file, tmp_path):
        out = tmp_path / "run"
        cfg = tiny_cfg(hier_file, out, method="hard-budgeted", soft_epochs=1, freeze_after=2, budget_rho=0.4,
                       budget_step=0.5, budget_max_step=0.5, class_membership="categorical")
        train(cfg)
        records = rf.read_jsonl(out / rf.METRICS)
        assert len(records) == 3
        for r in records:
            m = r["multipliers"]["classifier"]
            assert set(m) == {"mean", "max", "rho", "density"} and m["rho"] == pytest.approx(0.4)
        run = load_run(out)
        mult = run.multipliers()
        assert mult["classifier"].shape == (8,)
        # frozen memberships: exactly one cluster per class, θ no longer trained
        P = run.probs()["classes"]
        assert np.array_equal(np.sort(P, axis=1)[:, -1], np.ones(8)) and float(P.sum()) == pytest.approx(8.0)
        state = load_train_state(out / rf.TRAIN_STATE)["model"]
        assert float(state["node_sets.classes.theta"].abs().min()) == pytest.approx(60.0)

    def test_resume_after_freezing_is_exact(self, hier_file, tmp_path):
        full, part = tmp_path / "full", tmp_path / "part"
        kw = dict(method="hard-budgeted", soft_epochs=1, freeze_after=1, budget_rho=0.5)
        train(tiny_cfg(hier_file, full, **kw))

        def ctrl_c(step, model):
            if step == 6:  # mid-epoch 2, after the freeze
                raise KeyboardInterrupt

        assert train(tiny_cfg(hier_file, part, **kw), on_step=ctrl_c).status == "interrupted"
        from blockout.train import resume_config

        train(resume_config(part), resume=True)
        a, b = load_train_state(full / rf.TRAIN_STATE)["model"], load_train_state(part / rf.TRAIN_STATE)["model"]
        for k in a:
            assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------
# the co-clustered warm start (ours): balanced co-clustering and the phase switch

from blockout.cocluster import assign_inputs, balanced_assign, spectral_cocluster  # noqa: E402


def _planted_blocks(k=4, rows_per=5, cols_per=6, noise=0.05, seed=0):
    """|W|-like matrix (k*rows_per, k*cols_per) with one strong block per cluster, rows/cols shuffled."""
    rng = np.random.default_rng(seed)
    A = np.kron(np.eye(k), np.ones((rows_per, cols_per))) + noise * rng.random((k * rows_per, k * cols_per))
    pr, pc = rng.permutation(k * rows_per), rng.permutation(k * cols_per)
    truth_r, truth_c = np.repeat(np.arange(k), rows_per)[pr], np.repeat(np.arange(k), cols_per)[pc]
    return A[pr][:, pc] * rng.choice([-1.0, 1.0], size=A.shape), truth_r, truth_c


class TestBalancedAssign:
    def test_capacity_and_floor_hold(self):
        rng = np.random.default_rng(0)
        cost = rng.random((23, 5))
        cost[:, 0] -= 10  # everyone wants cluster 0
        a = balanced_assign(cost)
        counts = np.bincount(a, minlength=5)
        assert counts.max() <= 5 and counts.min() >= 4 and counts.sum() == 23

    def test_is_optimal_on_a_small_case(self):
        # brute force over all balanced assignments of 4 items to 2 clusters
        import itertools

        cost = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [5.0, 0.0]])
        best = min((sum(cost[i, c] for i, c in enumerate(p)), p) for p in itertools.product([0, 1], repeat=4)
                   if sum(p) == 2)
        a = balanced_assign(cost)
        assert cost[np.arange(4), a].sum() == pytest.approx(best[0])

    def test_bad_capacity(self):
        with pytest.raises(ValueError, match="capacity 1 x 2 clusters cannot hold 3"):
            balanced_assign(np.zeros((3, 2)), capacity=1)


class TestSpectralCocluster:
    def test_planted_blocks_are_recovered_exactly(self):
        from sklearn.metrics import adjusted_rand_score

        A, tr, tc = _planted_blocks()
        r, c = spectral_cocluster(A, 4, seed=0)
        assert adjusted_rand_score(tr, r) == 1.0 and adjusted_rand_score(tc, c) == 1.0
        # rows and columns of one planted block share the cluster label
        for g in range(4):
            assert set(r[tr == g]) == set(c[tc == g]) and len(set(r[tr == g])) == 1

    def test_balanced_even_when_the_data_are_not(self):
        rng = np.random.default_rng(1)
        A = rng.random((30, 40))
        A[:, :30] *= 10  # most columns look alike
        r, c = spectral_cocluster(A, 5, seed=0)
        assert np.bincount(r, minlength=5).tolist() == [6] * 5
        assert np.bincount(c, minlength=5).tolist() == [8] * 5

    def test_deterministic_by_seed(self):
        A = np.random.default_rng(2).random((20, 24))
        a1, b1 = spectral_cocluster(A, 4, seed=3)
        a2, b2 = spectral_cocluster(A, 4, seed=3)
        assert np.array_equal(a1, a2) and np.array_equal(b1, b2)

    def test_bad_k(self):
        with pytest.raises(ValueError, match="k must be in"):
            spectral_cocluster(np.ones((3, 5)), 4)


class TestAssignInputs:
    def test_inputs_follow_their_strongest_output_cluster(self):
        rng = np.random.default_rng(0)
        out_assign = np.repeat(np.arange(3), 4)  # 12 outputs
        truth = rng.permutation(np.repeat(np.arange(3), 5))  # 15 inputs
        W = 0.05 * rng.standard_normal((12, 15))
        W[out_assign[:, None] == truth[None, :]] += 1.0
        assert np.array_equal(assign_inputs(W, out_assign, 3), truth)


class TestCoclusterPhase:
    def test_recipe_preset(self):
        cfg = TrainConfig.from_dict({"method": "hard-cocluster", "epochs": 30})
        assert (cfg.cocluster_at, cfg.freeze_after, cfg.mask, cfg.hidden_membership) == (10, None, "union", "categorical")
        # round 4: off-branch class connections survive at a reduced rate (docs/emergence.md)
        assert (cfg.cocluster_class_high, cfg.cocluster_class_low, cfg.cocluster_anneal_epochs) == (0.95, 0.15, 0)

    def test_bad_values(self):
        with pytest.raises(UserError, match="cocluster_at must be at least 1"):
            TrainConfig(cocluster_at=0)
        with pytest.raises(UserError, match=r"cocluster_class_low/high .* \(0.9, 0.1\)"):
            TrainConfig(cocluster_class_low=0.9, cocluster_class_high=0.1)

    def test_a_switch_after_the_last_epoch_is_refused(self):
        """Regression: `--cocluster-at` >= `--epochs` trained a plain network under a co-clustered method's name."""
        with pytest.raises(UserError, match="cocluster_at=5 .* with epochs=5 it never would: train at least 6 epochs"):
            TrainConfig(method="hard-learned", cocluster_at=5, epochs=5)
        with pytest.raises(UserError, match="cocluster_at=1 .* with epochs=1 it never would"):
            TrainConfig.hard_cocluster(epochs=1)
        assert TrainConfig.hard_cocluster(epochs=2).cocluster_at == 1
        assert TrainConfig(method="fc", cocluster_at=5, epochs=5).cocluster_at == 5  # plain methods ignore it

    def test_plain_mode_is_a_plain_fc_net(self):
        cfg = TrainConfig.from_dict({"method": "hard-cocluster", "clusters": 3, "nodes": 6, "epochs": 3})
        torch.manual_seed(0)
        model = build_model(cfg, (5,), 4)
        model.plain = True
        x = torch.randn(7, 5)
        h = x
        for i, lname in enumerate(model.layer_names):
            h = torch.nn.functional.linear(h, model.fc[lname].weight, model.fc[lname].bias)
            h = torch.relu(h) if i < len(model.layer_names) - 1 else h
        assert torch.allclose(model(x), h)

    def test_memberships_set_at_the_switch_epoch(self, hier_file, tmp_path):
        out = tmp_path / "run"
        seen = {}

        def record(step, model):  # 4 steps per epoch: steps 1-4 are epoch 1, 5-8 epoch 2
            seen[step] = (model.plain, bool(model.cocluster_done), model.node_sets["h2"].theta.detach().clone())

        cfg = tiny_cfg(hier_file, out, method="hard-cocluster", cocluster_at=1, freeze_after=None,
                       cocluster_scale=4.0)
        train(cfg, on_step=record)
        assert seen[4][0] and not seen[4][1]  # epoch 1: plain, not yet co-clustered
        assert not seen[5][0] and seen[5][1]  # epoch 2: masked, memberships set
        # during the warm-up θ does not move (no gradient reaches it, usage loss off)
        assert torch.equal(seen[1][2], seen[4][2])
        # right after the switch: one-hot logits of scale 4, balanced (12 nodes, k = 3: 4 each)
        records = rf.read_jsonl(out / rf.METRICS)
        assert "cocluster_classes" in records[1] and len(records[1]["cocluster_classes"]) == 8
        theta = seen[5][2]
        assert np.bincount(theta.argmax(1).numpy(), minlength=3).tolist() == [4, 4, 4]

    def test_resume_across_the_switch_is_exact(self, hier_file, tmp_path):
        full, part = tmp_path / "full", tmp_path / "part"
        kw = dict(method="hard-cocluster", cocluster_at=1, freeze_after=2)
        train(tiny_cfg(hier_file, full, **kw))

        def ctrl_c(step, model):
            if step == 6:  # mid-epoch 2, after the co-clustering
                raise KeyboardInterrupt

        assert train(tiny_cfg(hier_file, part, **kw), on_step=ctrl_c).status == "interrupted"
        from blockout.train import resume_config

        train(resume_config(part), resume=True)
        a, b = load_train_state(full / rf.TRAIN_STATE)["model"], load_train_state(part / rf.TRAIN_STATE)["model"]
        assert bool(a["cocluster_done"])
        for key in a:
            assert torch.equal(a[key], b[key]), key


from blockout.emergence import anneal_blend  # noqa: E402


class TestCoclusterAnneal:
    def test_blend_falls_linearly_per_step_after_the_switch(self):
        # 10 steps per epoch, switch at epoch 2 (step 20), 3 epochs of annealing
        vals = [anneal_blend(s, 10, 2, 3) for s in range(0, 60)]
        assert vals[:20] == [0.0] * 20  # plain warm-up: the blend is not used
        assert vals[20] == pytest.approx(1 - 1 / 30) and vals[34] == pytest.approx(0.5)
        assert all(a > b for a, b in zip(vals[20:49], vals[21:50]))
        assert vals[49:] == [0.0] * 11

    def test_bad_values(self):
        with pytest.raises(UserError, match="cocluster_anneal_epochs must be 0 or more, got -1"):
            TrainConfig(cocluster_at=2, cocluster_anneal_epochs=-1)
        with pytest.raises(UserError, match="cocluster_anneal_epochs=3 needs cocluster_at"):
            TrainConfig(cocluster_anneal_epochs=3)

    @pytest.mark.parametrize("a", [0.0, 0.3, 1.0])
    def test_blended_forward_is_the_interpolated_mask(self, a):
        cfg = TrainConfig.from_dict({"method": "hard-cocluster", "clusters": 3, "nodes": 6, "epochs": 3})
        torch.manual_seed(0)
        model = build_model(cfg, (5,), 4).eval()  # eval: the expected mask, deterministic
        model.mask_blend = a
        x = torch.randn(7, 5)
        h = x
        for i, lname in enumerate(model.layer_names):
            layer = model.fc[lname]
            m = layer.expected_mask() * layer.scale  # (out, in)
            h = torch.nn.functional.linear(h, layer.weight * (a + (1 - a) * m), layer.bias)
            h = torch.relu(h) if i < len(model.layer_names) - 1 else h
        assert torch.allclose(model(x), h, atol=1e-6)

    def test_trainer_fades_the_mask_in_and_resumes_exactly(self, hier_file, tmp_path):
        seen = {}

        def record(step, model):  # 4 steps per epoch; switch at epoch 2 (step 5), anneal 2 epochs
            seen[step] = model.mask_blend

        kw = dict(method="hard-cocluster", cocluster_at=1, cocluster_anneal_epochs=2, freeze_after=3, epochs=4)
        full, part = tmp_path / "full", tmp_path / "part"
        train(tiny_cfg(hier_file, full, **kw), on_step=record)
        assert [round(seen[s], 3) for s in range(4, 14)] == [0.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125,
                                                             0.0, 0.0]

        def ctrl_c(step, model):
            if step == 7:  # mid-annealing
                raise KeyboardInterrupt

        assert train(tiny_cfg(hier_file, part, **kw), on_step=ctrl_c).status == "interrupted"
        from blockout.train import resume_config

        train(resume_config(part), resume=True)
        a, b = load_train_state(full / rf.TRAIN_STATE)["model"], load_train_state(part / rf.TRAIN_STATE)["model"]
        for key in a:
            assert torch.equal(a[key], b[key]), key
