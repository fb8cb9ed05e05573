"""Classes grouped by the warm-up network's soft confusion matrix (``--cocluster-source confusion``,
issue 12 round 5): the math on planted confusions, the recipe's accumulator, and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from analysis import runfolder as rf
from blockout.checkpoint import load_train_state
from blockout.cocluster import (K_RULE_AUTO_CONFUSION, K_RULES, confusion_distances, distance_class_groups,
                                distance_linkage, nested_row_clusters, soft_confusion)
from blockout.config import TrainConfig
from blockout.errors import UserError
from blockout.recipes.cocluster import ConfusionAccumulator
from blockout.train import resume_config, train

from tiny_runs import tiny_options, write_hierarchy  # noqa: E402  (tests/ is on sys.path)

SIZES = (1, 2, 3, 4, 5, 7, 8, 10, 10)  # the round-5 benchmark's unequal groups, 50 classes


def planted_confusion(seed: int, noise: float, per_class: int = 50, own: float = 3.0, group: float = 1.5):
    """Softmax sums of simulated outputs: each sample's logits favour its class (``own``) and its
    planted group (``group``), plus Gaussian noise of sd ``noise``; returns (sums, counts, groups)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(SIZES)), SIZES)
    n = truth.size
    mean = own * np.eye(n) + group * (truth[:, None] == truth[None, :])
    y = np.repeat(np.arange(n), per_class)
    logits = mean[y] + noise * rng.standard_normal((y.size, n))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    sums = np.zeros((n, n))
    np.add.at(sums, y, p)
    return sums, np.bincount(y, minlength=n).astype(float), truth


class TestConfusionMath:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_gap_recovers_nine_unequal_groups(self, seed):
        # noise sd 2 against a group bonus of 1.5 (measured: exact on 5/5 seeds at sd 1 and 2; at sd 3
        # ARI 0.93-1.0 with 8-9 groups); capacity 12 is above the planted 9
        sums, counts, truth = planted_confusion(seed, noise=2.0)
        D = confusion_distances(soft_confusion(sums, counts))
        groups = distance_class_groups(D, 12, "gap")
        assert groups.max() + 1 == len(SIZES)
        assert adjusted_rand_score(truth, groups) == 1.0
        assert adjusted_rand_score(truth, distance_class_groups(D, 9)) == 1.0  # k given
        assert distance_class_groups(D, 12, "auto").tolist() == distance_class_groups(D, 12, K_RULE_AUTO_CONFUSION).tolist()

    def test_chosen_count_respects_a_lower_bound(self):
        # 2 blocks of 3 confused pairs each: the gap picks the 2 blocks, silhouette the 6 pairs
        C = np.kron(np.eye(2), np.full((6, 6), .1)) + np.kron(np.eye(6), np.full((2, 2), .05)) + .3 * np.eye(12)
        D = confusion_distances(C)
        assert distance_class_groups(D, 8, "gap").max() + 1 == 2
        assert distance_class_groups(D, 8, "gap", k_min=3).max() + 1 == 6  # the next gap above 3 groups
        assert distance_class_groups(D, 8, "silhouette", k_min=7).max() + 1 >= 7
        assert distance_class_groups(D, 3, "gap", k_min=5).max() + 1 == 3  # never above k_max

    def test_distances_are_a_metric_matrix(self):
        sums, counts, _ = planted_confusion(0, noise=1.0)
        counts[4] = 0.0  # a class without samples: a zero row, only the others' confusion into it counts
        sums[4] = 0.0
        C = soft_confusion(sums, counts)
        D = confusion_distances(C)
        assert np.allclose(D, D.T) and np.all(np.diag(D) == 0) and D.min() >= 0 and D.max() <= 1
        assert np.isclose(D[np.triu_indices(len(D), 1)].min(), 0.0)  # the most confused pair
        A = (C + C.T) / 2
        np.fill_diagonal(A, 0)
        assert np.allclose(D[4, 5:], 1 - C[5:, 4] / 2 / A.max())

    def test_no_confusion_means_no_groups(self):
        D = confusion_distances(np.eye(5))
        assert (D + np.eye(5) == 1).all()

    def test_rules_and_bad_input(self):
        D = confusion_distances(soft_confusion(*planted_confusion(1, noise=1.0)[:2]))
        for rule in ("given",) + K_RULES:
            g = distance_class_groups(D, 4, rule)
            assert g.max() + 1 <= 4 and set(g.tolist()) == set(range(g.max() + 1))
        assert distance_class_groups(D[:2, :2], 5).tolist() == [0, 1]
        assert distance_class_groups(D, 1).tolist() == [0] * len(D)
        with pytest.raises(ValueError, match="rule must be"):
            distance_class_groups(D, 4, "eigengap")
        with pytest.raises(ValueError, match="non-negative"):
            confusion_distances(-np.eye(3))
        with pytest.raises(ValueError, match="counts"):
            soft_confusion(np.eye(3), np.ones(2))

    def test_nested_cuts_a_given_dendrogram(self):
        # the nested cuts follow the dendrogram handed in, not the rows' own
        sums, counts, truth = planted_confusion(2, noise=1.0)
        Z = distance_linkage(confusion_distances(soft_confusion(sums, counts)))
        W = np.random.default_rng(0).standard_normal((truth.size, 8))  # rows with no group structure
        fine, coarse_of_fine = nested_row_clusters(W, 9, 3, Z=Z)
        assert adjusted_rand_score(truth, fine) == 1.0 and coarse_of_fine.max() + 1 == 3
        with pytest.raises(ValueError, match="linkage matrix"):
            nested_row_clusters(W, 9, 3, Z=Z[:-1])


class TestAccumulator:
    def test_sums_per_label_and_state_round_trip(self):
        torch.manual_seed(0)
        acc = ConfusionAccumulator()
        assert acc.state_dict() == {}
        logits, y = torch.randn(20, 4), torch.tensor([0, 1, 2, 3, 1] * 4)
        acc.add(logits[:12], y[:12])
        copy = ConfusionAccumulator()
        copy.load_state_dict(acc.state_dict())
        for a in (acc, copy):
            a.add(logits[12:], y[12:])
        p = torch.softmax(logits.double(), 1).numpy()
        expected = np.stack([p[y.numpy() == c].mean(0) for c in range(4)])
        assert np.allclose(acc.distances(), confusion_distances(expected))
        assert np.array_equal(acc.distances(), copy.distances())
        with pytest.raises(RuntimeError, match="no training batch"):
            ConfusionAccumulator().distances()


HIER = {"a": ["a1", "a2"], "b": ["b1", "b2", "b3"], "c": ["c1", "c2", "c3", "c4", "c5", "c6"]}


@pytest.fixture(scope="module")
def hier(tmp_path_factory):
    return write_hierarchy(tmp_path_factory, HIER)


def confusion_run(hier, out, **kw):
    """11 classes x 4 images of 8x8 at batch 8: 6 steps per epoch; the switch at the start of epoch 2."""
    return TrainConfig.from_dict(tiny_options(hier, out, **{
        "nodes": 12, "clusters": 4, "epochs": 3, "method": "hard-cocluster", "cocluster_at": 2,
        "cocluster_method": "linkage", "cocluster_source": "confusion", **kw}))


class TestTraining:
    def test_config(self):
        assert TrainConfig.from_dict({"method": "hard-cocluster"}).cocluster_source == "weights"  # preset unchanged
        assert TrainConfig.demo().cocluster_source == "weights" and TrainConfig.demo().cocluster_method == "signed"
        # the preset's dendrogram methods group by the confusion unless told otherwise
        for method in ("linkage", "nested"):
            c = TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": method, "depth": 2})
            assert c.cocluster_source == "confusion"
            c = TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": method, "depth": 2,
                                       "cocluster_source": "weights"})
            assert c.cocluster_source == "weights"
        assert TrainConfig.from_dict({"method": "hard-learned", "cocluster_method": "linkage", "cocluster_at": 1}
                                     ).cocluster_source == "weights"  # the plain default outside the preset
        # regression: without cocluster_at the co-clustering options were silently ignored
        for extra in ({"cocluster_method": "linkage"}, {"cocluster_method": "nested", "cocluster_k": "auto"},
                      {"cocluster_method": "linkage", "cocluster_source": "confusion"}):
            with pytest.raises(UserError, match="it needs cocluster_at"):
                TrainConfig.from_dict({"method": "hard-learned", **extra})
        cfg = TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "nested", "depth": 2,
                                     "cocluster_source": "confusion"})
        assert cfg.cocluster_source == "confusion"
        with pytest.raises(UserError, match="needs cocluster_method 'linkage' or 'nested'"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_source": "confusion"})
        with pytest.raises(UserError, match="cocluster_source"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "linkage",
                                   "cocluster_source": "activations"})

    def test_switch_uses_the_confusion_of_the_last_warm_up_epoch(self, hier, tmp_path, monkeypatch):
        import blockout.recipes.cocluster as rc

        seen = {}
        real = rc.cocluster_memberships

        def spy(model, config, class_distances=None):
            seen["D"] = class_distances
            return real(model, config, class_distances=class_distances)

        monkeypatch.setattr(rc, "cocluster_memberships", spy)
        acc = ConfusionAccumulator()

        class Mirror(rc.Recipe):  # sums the same batches independently, in epoch 1 only
            name = "mirror"

            def after_forward(self, ctx, logits, targets):
                if ctx.epoch == 1:
                    acc.add(logits, targets)

        assert train(confusion_run(hier, tmp_path / "run"), recipes=[Mirror()]).status == "finished"
        assert np.array_equal(seen["D"], acc.distances()) and int(acc.counts.sum()) == 44  # one epoch, 11 x 4
        records = rf.read_jsonl(tmp_path / "run" / rf.METRICS)
        assert records[2]["cocluster_classes"] == distance_class_groups(seen["D"], 4).tolist()
        assert "recipes" not in load_train_state(tmp_path / "run" / rf.TRAIN_STATE)  # nothing kept after the switch

    def test_resume_mid_accumulation_is_exact(self, hier, tmp_path):
        def metrics(run_dir):
            return [{k: v for k, v in r.items() if k != "seconds"} for r in rf.read_jsonl(run_dir / rf.METRICS)]

        assert train(confusion_run(hier, tmp_path / "a")).status == "finished"

        def stop_at_8(step, model):  # two steps into epoch 1, the one that is accumulated
            if step == 8:
                raise KeyboardInterrupt

        assert train(confusion_run(hier, tmp_path / "b"), on_step=stop_at_8).status == "interrupted"
        state = load_train_state(tmp_path / "b" / rf.TRAIN_STATE)["recipes"]["cocluster"]
        assert float(state["confusion_counts"].sum()) == 16  # the two batches of epoch 1 so far
        assert train(resume_config(tmp_path / "b"), resume=True).status == "finished"
        assert metrics(tmp_path / "a") == metrics(tmp_path / "b")

    def test_a_run_saved_before_the_option_resumes_with_the_weights(self, hier, tmp_path):
        # a linkage run of the preset from before --cocluster-source grouped by the weights: its resume must too
        cfg = confusion_run(hier, tmp_path / "old", cocluster_source="weights")

        def stop_at_2(step, model):
            if step == 2:
                raise KeyboardInterrupt

        assert train(cfg, on_step=stop_at_2).status == "interrupted"
        state_path = tmp_path / "old" / rf.TRAIN_STATE
        state = load_train_state(state_path)
        flat = state["config"]
        for section in flat.values() if all(isinstance(v, dict) for v in flat.values()) else [flat]:
            section.pop("cocluster_source", None)
        torch.save(state, state_path)
        assert resume_config(tmp_path / "old").cocluster_source == "weights"

    def test_nested_fine_count_chosen_above_the_given_coarse_count(self, hier, tmp_path, capsys):
        # regression: the gap picks 5 fine groups here, and --cocluster-coarse 5 was silently capped at
        # that count (5 coarse = 5 fine: one level of branches, not the asked-for split); the fine
        # count is now searched from coarse + 1 up
        cfg = confusion_run(hier, tmp_path / "run", clusters=6, depth=2, cocluster_method="nested",
                            cocluster_k="gap", cocluster_coarse=5)
        assert train(cfg).status == "finished"
        assert rf.read_jsonl(tmp_path / "run" / rf.METRICS)[2]["cocluster_k"] == 6
        out = capsys.readouterr()
        assert "(6 of 6 clusters chosen (gap), classes per cluster" in out.out + out.err  # the log says k

    def test_nested_with_a_chosen_fine_count_leaves_the_rest_dead(self, hier, tmp_path, monkeypatch):
        # force 3 fine groups of a capacity of 5: clusters 3-4 get no class and no node in any set
        import blockout.recipes.cocluster as rc

        monkeypatch.setattr(rc, "_fine_count", lambda W, k, rule, D, k_min=2: 3)
        seen = {}

        def record(step, model):
            seen["P"] = {n: ns.probs.detach().clone() for n, ns in model.node_sets.items()
                         if isinstance(ns.theta, torch.nn.Parameter)}

        cfg = confusion_run(hier, tmp_path / "run", clusters=5, depth=2, cocluster_method="nested",
                            cocluster_k="gap", cocluster_coarse=2)
        assert train(cfg, on_step=record).status == "finished"
        records = rf.read_jsonl(tmp_path / "run" / rf.METRICS)
        assert records[2]["cocluster_k"] == 3 and set(records[2]["cocluster_classes"]) == {0, 1, 2}
        assert set(seen["P"]) == {"h1", "h2", "classes"}
        for name, P in seen["P"].items():
            assert P[:, 3:].max() < 1e-6, name
        assert (seen["P"]["h1"][:, :3] > 0.5).sum(1).float().mean() > 1  # coarse nodes span several fine clusters
