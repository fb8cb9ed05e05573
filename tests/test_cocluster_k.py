"""k chosen from the data (``--cocluster-k``, issue 12 round 5): the number of class groups read off
the weight dendrogram, the unused clusters left to die."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from analysis import runfolder as rf
from blockout.cocluster import (K_RULE_AUTO, K_RULES, choose_k, cosine_row_distances, gap_k, linkage_row_clusters,
                                proportional_counts, cosine_linkage, silhouette_k)
from blockout.config import TrainConfig
from blockout.errors import UserError
from blockout.train import train

from planted_rows import SIZES, planted_rows as _planted_rows  # noqa: E402  (tests/ is on sys.path)


class TestChooseK:
    @pytest.mark.parametrize("rule", K_RULES)
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_recovers_the_planted_number_of_unequal_groups(self, rule, seed):
        # noise 0.3 per coordinate against unit-variance centres: groups well apart (measured: both
        # rules exact on 10/10 seeds up to noise 0.5); k_max 20 is far above the planted 6
        W, truth = _planted_rows(0.3, seed)
        k = choose_k(W, 20, rule)
        assert k == len(SIZES)
        assert adjusted_rand_score(truth, linkage_row_clusters(W, k)) == 1.0

    def test_gap_recovers_nine_groups_of_one_to_ten_in_wide_rows(self):
        # the shape of the round-5 benchmark (50 classes in 9 groups of 1-10, 160 hidden nodes), noisier
        sizes = (1, 2, 3, 4, 5, 7, 8, 10, 10)
        for seed in range(3):
            W, truth = _planted_rows(1.0, seed, sizes, dim=160)
            assert choose_k(W, 20, "gap") == 9

    def test_never_more_than_k_max_nor_rows(self):
        W, _ = _planted_rows(0.3, 0)
        for rule in K_RULES:
            assert choose_k(W, 4, rule) <= 4
            assert 2 <= choose_k(W[:5], 20, rule) <= 5
        assert choose_k(W[:2], 9) == 2 and choose_k(W[:1], 9) == 1 and choose_k(W, 1) == 1

    def test_no_structure_is_not_read_as_many_groups_by_gap(self):
        # isotropic rows: no gap stands out much; the rule still answers within range (a property, not a verdict)
        rng = np.random.default_rng(0)
        k = choose_k(rng.standard_normal((30, 40)), 10, "gap")
        assert 2 <= k <= 10

    def test_bad_input(self):
        with pytest.raises(ValueError, match="rule must be one of"):
            choose_k(np.ones((4, 2)), 3, "eigengap")
        with pytest.raises(ValueError, match="k_max >= 1"):
            choose_k(np.ones((4, 2)), 0)

    def test_auto_is_a_known_rule(self):
        assert K_RULE_AUTO in K_RULES


class TestGapAndSilhouette:
    def test_gap_by_hand(self):
        # heights 0.1, 0.1, 0.2 | 0.9, 1.0: the big jump is above the third merge -> 3 groups of 6 leaves
        h = np.array([0.1, 0.1, 0.2, 0.9, 1.0])
        assert gap_k(h, 6) == 3
        assert gap_k(h[::-1], 6) == 3  # order does not matter
        # from k = 4 on the gaps are 0.1 (k = 4), 0 (k = 5), 0.1 (k = 6, above 0): a tie goes to the smaller k
        assert gap_k(h, 6, k_min=4) == 4
        with pytest.raises(ValueError, match="k_min <= k_max"):
            gap_k(h, 2, k_min=3)

    def test_silhouette_matches_the_planted_cut(self):
        W, truth = _planted_rows(0.3, 4)
        assert silhouette_k(cosine_row_distances(W), cosine_linkage(W), 12) == len(SIZES)

    def test_distances_are_a_metric_matrix(self):
        W, _ = _planted_rows(0.5, 0)
        W[3] = 0.0  # a zero row
        D = cosine_row_distances(W)
        assert np.allclose(D, D.T) and np.all(np.diag(D) == 0) and D.min() >= 0 and D.max() <= 2
        assert np.all(D[3, np.arange(len(D)) != 3] == 1.0)


class TestProportionalCountsDead:
    def test_empty_clusters_get_no_nodes(self):
        c = proportional_counts(np.array([3, 0, 0, 5, 0]), 16)
        assert c.tolist()[1:3] == [0, 0] and c[4] == 0 and c.sum() == 16 and c[0] >= 1 and c[3] > c[0]


HIER = {"a": ["a1", "a2"], "b": ["b1", "b2", "b3"], "c": ["c1", "c2", "c3", "c4", "c5", "c6"]}


class TestConfigAndTraining:
    def test_config(self):
        cfg = TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "linkage", "cocluster_k": "auto"})
        assert cfg.cocluster_k == "auto"
        assert TrainConfig.from_dict({"method": "hard-cocluster"}).cocluster_k == "given"  # preset unchanged
        with pytest.raises(UserError, match="needs cocluster_method 'linkage' \\(or 'nested'\\)"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_k": "gap"})
        with pytest.raises(UserError, match="cocluster_k"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "linkage", "cocluster_k": "many"})

    def test_unused_clusters_die(self, tmp_path, monkeypatch):
        # force the chosen k to 2 of a capacity of 5: clusters 2-4 must get no classes, no hidden nodes,
        # and keep them (theta far out) for the rest of training
        import blockout.cocluster as cc

        monkeypatch.setattr(cc, "choose_k", lambda W, k_max, rule="gap", k_min=2: 2)
        hier = tmp_path / "h.json"
        hier.write_text(json.dumps(HIER))
        seen = {}

        def record(step, model):  # 11 classes x 4 images at batch 8: 6 steps per epoch, switch at step 7
            seen[step] = {n: ns.probs.detach().clone() for n, ns in model.node_sets.items()
                          if isinstance(ns.theta, torch.nn.Parameter)}

        cfg = TrainConfig.from_dict(dict(
            hierarchy=str(hier), samples_per_class=4, test_samples_per_class=2, image_size=8, nodes=12, clusters=5,
            epochs=2, batch_size=8, device="cpu", out=str(tmp_path / "run"), method="hard-cocluster",
            cocluster_at=1, cocluster_method="linkage", cocluster_k="gap", cocluster_source="weights"))
        assert train(cfg, on_step=record).status == "finished"
        records = rf.read_jsonl(tmp_path / "run" / rf.METRICS)
        assert records[1]["cocluster_k"] == 2 and set(records[1]["cocluster_classes"]) == {0, 1}
        assert "cocluster_k" not in records[0] and len(records) == 2
        last = seen[max(seen)]
        assert set(last) == {"h1", "h2", "classes"}
        # every node's mass sits in the two live clusters, from the switch to the end
        for step, probs in seen.items():
            if step < 7:
                continue
            for name, P in probs.items():
                assert P[:, 2:].max() < 1e-6, (step, name)
            assert (probs["h1"][:, :2].sum(1) > 0.99).all() and (probs["h2"][:, :2].sum(1) > 0.99).all()
        h2 = last["h2"].argmax(1)
        classes = torch.tensor(records[1]["cocluster_classes"])
        counts = proportional_counts(np.bincount(classes.numpy(), minlength=5), 12)
        assert counts[2:].tolist() == [0, 0, 0]
        assert torch.bincount(h2, minlength=5).tolist() == counts.tolist()

    def test_given_k_unchanged(self, tmp_path):
        # cocluster_k "given" (the default) keeps every cluster alive: same as round 5's first step
        hier = tmp_path / "h.json"
        hier.write_text(json.dumps(HIER))
        cfg = TrainConfig.from_dict(dict(
            hierarchy=str(hier), samples_per_class=4, test_samples_per_class=2, image_size=8, nodes=12, clusters=3,
            epochs=2, batch_size=8, device="cpu", out=str(tmp_path / "run"), method="hard-cocluster",
            cocluster_at=1, cocluster_method="linkage", cocluster_source="weights"))
        assert train(cfg).status == "finished"
        records = rf.read_jsonl(tmp_path / "run" / rf.METRICS)
        assert records[1]["cocluster_k"] == 3
