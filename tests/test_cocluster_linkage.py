"""Capacity-free co-clustering (``--cocluster-method linkage``, issue 12): unequal class groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from analysis import runfolder as rf
from analysis.hierarchy import weight_distances, hierarchy_from_distances
from blockout.cocluster import (assign_inputs, capacity_assign, linkage_row_clusters, proportional_counts,
                                signed_row_clusters)
from blockout.config import TrainConfig
from blockout.errors import UserError
from blockout.train import train

from planted_rows import SIZES, planted_rows as _planted_rows  # noqa: E402  (tests/ is on sys.path)


class TestLinkageRowClusters:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_recovers_unequal_planted_groups(self, seed):
        # noise 0.5 per coordinate against unit-variance centres (cosine within a group ~0.8, across ~0):
        # exact recovery expected; tolerance ARI >= 0.95 on every seed
        W, truth = _planted_rows(0.5, seed)
        got = linkage_row_clusters(W, len(SIZES))
        assert adjusted_rand_score(truth, got) >= 0.95
        assert sorted(np.bincount(got).tolist()) == sorted(SIZES)

    def test_balanced_signed_clusters_cannot_do_it(self):
        # the shipped method holds every cluster to ceil(31 / 6) = 6 classes: the group of 12 must split
        W, truth = _planted_rows(0.5, 0)
        balanced = signed_row_clusters(W, len(SIZES))
        assert np.bincount(balanced).max() <= 6
        assert adjusted_rand_score(truth, balanced) < 0.9 <= adjusted_rand_score(truth, linkage_row_clusters(W, 6))

    def test_same_groups_as_the_weight_induced_hierarchy(self):
        # the analysis package's weight-induced hierarchy cut into k groups is the same partition
        W, _ = _planted_rows(1.5, 3)  # noisy enough that the groups are not trivially separated
        h = hierarchy_from_distances(weight_distances(W))
        for k in (2, 4, 6, 9):
            assert adjusted_rand_score(h.groups(n_groups=k), linkage_row_clusters(W, k)) == 1.0

    def test_exactly_k_clusters_and_edge_cases(self):
        W, _ = _planted_rows(0.5, 0)
        for k in (1, 5, 31):
            assert np.unique(linkage_row_clusters(W, k)).size == k
        zero = np.zeros((3, 4))
        zero[0, 0] = 1.0
        assert linkage_row_clusters(zero, 2).tolist() == [0, 1, 1]  # zero rows together, apart from the rest
        with pytest.raises(ValueError, match="at least k=4 rows"):
            linkage_row_clusters(np.ones((3, 2)), 4)


class TestUnequalCapacities:
    def test_counts_are_exact_and_cost_optimal(self):
        rng = np.random.default_rng(0)
        cost = rng.random((7, 3))
        counts = np.array([1, 2, 4])
        got = capacity_assign(cost, counts)
        assert np.bincount(got, minlength=3).tolist() == [1, 2, 4]
        # brute force over all assignments with those counts
        import itertools

        best = min(cost[np.arange(7), list(p)].sum() for p in set(itertools.permutations([0, 1, 1, 2, 2, 2, 2])))
        assert cost[np.arange(7), got].sum() == pytest.approx(best)

    def test_bad_counts(self):
        with pytest.raises(ValueError, match="summing to 3"):
            capacity_assign(np.zeros((3, 2)), np.array([1, 1]))

    @pytest.mark.parametrize("sizes,n,minimum", [((1, 2, 3, 5, 8, 12), 160, 1), ((1, 9), 10, 2), ((4, 4), 3, 1),
                                                 ((0, 5), 6, 1)])
    def test_proportional_counts(self, sizes, n, minimum):
        c = proportional_counts(np.array(sizes), n, minimum)
        used = np.array(sizes) > 0  # an empty cluster gets nothing, not even the minimum (round 5: it dies)
        floor = min(minimum, n // int(used.sum()))
        assert c.sum() == n and (c[used] >= floor).all() and (c[~used] == 0).all()
        share = (n - floor * int(used.sum())) * np.array(sizes) / sum(sizes)
        assert (np.abs(c - floor * used - share) < 1).all()  # largest remainder: within 1

    def test_inputs_split_in_proportion(self):
        rng = np.random.default_rng(1)
        out_assign = np.repeat(np.arange(3), [1, 3, 6])  # 10 outputs in unequal clusters
        truth = rng.permutation(np.repeat(np.arange(3), [2, 6, 12]))  # 20 inputs, same proportions
        W = 0.05 * rng.standard_normal((10, 20))
        W[out_assign[:, None] == truth[None, :]] += 1.0
        counts = proportional_counts(np.bincount(out_assign), 20, minimum=0)
        assert counts.tolist() == [2, 6, 12]
        assert np.array_equal(assign_inputs(W, out_assign, 3, counts=counts), truth)


HIER = {"a": ["a1"], "b": ["b1", "b2"], "c": ["c1", "c2", "c3", "c4", "c5"]}


class TestConfigAndTraining:
    def test_config_accepts_linkage_and_rejects_unknown(self):
        assert TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "linkage"}).cocluster_method \
            == "linkage"
        assert TrainConfig.from_dict({"method": "hard-cocluster"}).cocluster_method == "signed"  # preset unchanged
        with pytest.raises(UserError, match="bogus"):
            TrainConfig.from_dict({"cocluster_method": "bogus"})

    def test_tiny_run_splits_hidden_nodes_in_proportion(self, tmp_path):
        hier = tmp_path / "h.json"
        hier.write_text(json.dumps(HIER))
        seen = {}

        def record(step, model):  # 8 classes x 4 images at batch 8: 4 steps per epoch, switch at step 5
            if step == 5:
                seen["h2"] = model.node_sets["h2"].theta.detach().argmax(1).numpy()

        cfg = TrainConfig.from_dict(dict(
            hierarchy=str(hier), samples_per_class=4, test_samples_per_class=2, image_size=8, nodes=12, clusters=3,
            epochs=3, batch_size=8, device="cpu", out=str(tmp_path / "run"), method="hard-cocluster",
            cocluster_at=1, cocluster_method="linkage", cocluster_source="weights"))
        assert train(cfg, on_step=record).status == "finished"
        records = rf.read_jsonl(tmp_path / "run" / rf.METRICS)
        classes = np.asarray(records[1]["cocluster_classes"])
        assert classes.shape == (8,) and np.unique(classes).size == 3
        expect = proportional_counts(np.bincount(classes, minlength=3), 12)
        assert np.bincount(seen["h2"], minlength=3).tolist() == expect.tolist()
        assert len(records) == 3 and np.isfinite(records[-1]["test_acc"])
