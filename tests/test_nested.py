"""Nested co-clustering (``--cocluster-method nested``, issue 12): two-level planted hierarchies, branches
that split again (branch tree depth 2), and the shipped two-level hierarchy file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from analysis.graphs import build_branch_tree, tree_class_groups
from analysis.reference import load_hierarchy
from analysis.threshold import threshold
from analysis.verdict import branch_depth, clusters_used
from blockout.cocluster import (cosine_linkage, gap_cluster_count, group_memberships, linkage_row_clusters,
                                nested_cocluster, nested_row_clusters, proportional_counts)
from blockout.config import TrainConfig
from blockout.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NESTED_FILE = ROOT / "benchmarks" / "hierarchies" / "nested_4x10.json"
#: planted two-level sizes: coarse group -> classes per fine group (unequal at both levels)
PLANT = [[2, 3, 4], [5, 3], [2, 2, 3], [4, 2]]


def planted_rows(seed: int, fine_spread: float = 0.6, noise: float = 0.25, dim: int = 60):
    """Class weight rows (n, dim) = coarse centre + fine offset + noise; and the (coarse, fine) labels."""
    rng = np.random.default_rng(seed)
    coarse, fine = [], []
    f = 0
    for c, sizes in enumerate(PLANT):
        for n in sizes:
            coarse += [c] * n
            fine += [f] * n
            f += 1
    coarse, fine = np.array(coarse), np.array(fine)
    centres = rng.standard_normal((len(PLANT), dim))
    offsets = fine_spread * rng.standard_normal((f, dim))
    W = centres[coarse] + offsets[fine] + noise * rng.standard_normal((coarse.size, dim))
    return W, coarse, fine


class TestNestedRowClusters:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_recovers_both_planted_levels(self, seed):
        # within a fine group cosine ~0.95, across fine groups of one coarse group ~0.7, across coarse ~0:
        # exact recovery expected; tolerance ARI >= 0.95 per level on every seed
        W, coarse, fine = planted_rows(seed)
        got_fine, cof = nested_row_clusters(W, 10, 4)
        assert adjusted_rand_score(fine, got_fine) >= 0.95
        assert adjusted_rand_score(coarse, cof[got_fine]) >= 0.95

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_coarse_count_chosen_from_the_dendrogram(self, seed):
        W, coarse, _ = planted_rows(seed)
        assert gap_cluster_count(cosine_linkage(W), 2, 9) == 4  # the planted 4, not given
        fine, cof = nested_row_clusters(W, 10)  # k_coarse chosen
        assert cof.max() + 1 == 4 and adjusted_rand_score(coarse, cof[fine]) >= 0.95

    def test_fine_groups_nest_in_coarse_groups_on_noise(self):
        # pure noise rows: whatever the cuts, every fine group lies inside exactly one coarse group
        rng = np.random.default_rng(5)
        W = rng.standard_normal((23, 7))
        for kc in (1, 2, 3, 6):
            fine, cof = nested_row_clusters(W, 6, kc)
            coarse = linkage_row_clusters(W, kc)
            assert np.unique(fine).size == 6 and np.unique(cof).size == kc
            assert adjusted_rand_score(coarse, cof[fine]) == 1.0  # the coarse cut of the same dendrogram
            assert np.array_equal(fine, linkage_row_clusters(W, 6))  # fine = the linkage method's groups

    def test_bad_arguments(self):
        W, *_ = planted_rows(0)
        with pytest.raises(ValueError, match="k_coarse"):
            nested_row_clusters(W, 4, 5)
        with pytest.raises(ValueError, match="k_min"):
            gap_cluster_count(cosine_linkage(W), 1, 3)
        with pytest.raises(ValueError, match="at least k=40 rows"):
            nested_row_clusters(W, 40, 2)


def test_group_memberships():
    m = group_memberships(np.array([0, 2, 1]), np.array([0, 0, 1, 2, 2]))
    assert m.astype(int).tolist() == [[1, 1, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 1, 0, 0]]


class TestNestedCocluster:
    @staticmethod
    def planted_net(seed: int, h1: int = 60, h2: int = 80):
        """Weights of h1 -> h2 -> classes with the two-level plant: an h2 node feeds its fine group's
        classes strongly and the rest of its coarse group weakly; an h1 node feeds the h2 nodes of its
        coarse group."""
        rng = np.random.default_rng(seed)
        _, coarse, fine = planted_rows(seed)
        k, kc = 10, 4
        cof = np.array([c for c, sizes in enumerate(PLANT) for _ in sizes])
        h2_fine = rng.permutation(np.repeat(np.arange(k), proportional_counts(np.bincount(fine), h2)))
        h1_coarse = rng.permutation(np.repeat(np.arange(kc), proportional_counts(np.bincount(coarse), h1)))
        W3 = 0.05 * rng.standard_normal((fine.size, h2))
        W3[fine[:, None] == h2_fine[None, :]] += 1.0
        W3[coarse[:, None] == cof[h2_fine][None, :]] += 0.5
        W2 = 0.05 * rng.standard_normal((h2, h1))
        W2[cof[h2_fine][:, None] == h1_coarse[None, :]] += 1.0
        return [W2, W3], coarse, fine, h1_coarse, h2_fine

    @pytest.mark.parametrize("seed", [0, 1])
    def test_memberships_nest_and_the_branch_tree_has_depth_two(self, seed):
        (W2, W3), coarse, fine, h1_coarse, h2_fine = self.planted_net(seed)
        r = nested_cocluster([W2, W3], 10, 4)
        m_h1, m_h2, m_cls = r.members
        assert r.k_coarse == 4 and m_h1.shape == (60, 10) and m_h2.shape == (80, 10)
        # classes and the last hidden set: one fine cluster each; h1: every fine cluster of one coarse group
        assert (m_cls.sum(1) == 1).all() and (m_h2.sum(1) == 1).all()
        sizes = np.bincount(r.coarse_of_fine, minlength=4)
        assert sorted(m_h1.sum(1).tolist()) == sorted(np.repeat(sizes, np.bincount(r.assign[0], minlength=4)).tolist())
        assert np.array_equal(m_h1, group_memberships(r.assign[0], r.coarse_of_fine))
        # hidden shares in proportion to the groups' classes (last set: fine, earlier: coarse)
        assert np.bincount(r.assign[1], minlength=10).tolist() == \
            proportional_counts(np.bincount(r.assign[2], minlength=10), W3.shape[1]).tolist()
        assert np.bincount(r.assign[0], minlength=4).tolist() == \
            proportional_counts(np.bincount(r.coarse_of_fine[r.assign[2]], minlength=4), 60).tolist()
        # the h1 nodes land in their planted coarse group (ARI 1 up to relabelling)
        assert adjusted_rand_score(h1_coarse, r.assign[0]) == 1.0
        assert adjusted_rand_score(fine, r.assign[2]) == 1.0 and adjusted_rand_score(h2_fine, r.assign[1]) == 1.0
        # the analysis package's branch tree of these memberships: stem -> 4 coarse -> 10 fine branches
        th = {"trunk": threshold(np.ones((8, 10)), 0.5, "trunk")}
        for name, m in zip(("h1", "h2", "classes"), r.members):
            th[name] = threshold(np.where(m, 0.95, 0.15), 0.5, name)
        G = build_branch_tree(th, ["trunk", "h1", "h2", "classes"], "classes")
        assert branch_depth(G) == 2
        assert clusters_used(np.where(m_cls, 0.95, 0.15)) == 10
        assert adjusted_rand_score(coarse, tree_class_groups(G, depth=1)) >= 0.95
        assert adjusted_rand_score(fine, tree_class_groups(G, depth=2)) >= 0.95

    def test_deeper_networks_put_every_earlier_hidden_set_in_coarse_groups(self):
        (W2, W3), coarse, fine, h1_coarse, _ = self.planted_net(0)
        rng = np.random.default_rng(9)
        # h0 (24 nodes, shared in proportion to the coarse groups' classes) -> h1: each feeds its coarse group
        h0_coarse = rng.permutation(np.repeat(np.arange(4), proportional_counts(np.bincount(coarse), 24)))
        W1 = 0.05 * rng.standard_normal((60, 24))
        W1[h1_coarse[:, None] == h0_coarse[None, :]] += 1.0
        r = nested_cocluster([W1, W2, W3], 10, 4)
        assert [m.shape[0] for m in r.members] == [24, 60, 80, 30]
        assert adjusted_rand_score(h0_coarse, r.assign[0]) == 1.0
        for a, m in zip(r.assign[:2], r.members[:2]):
            assert np.array_equal(m, group_memberships(a, r.coarse_of_fine))
        with pytest.raises(ValueError, match="at least one layer"):
            nested_cocluster([], 10)

    def test_flat_memberships_give_depth_one(self):
        # the linkage method's memberships (every hidden node in one cluster): one level of branches
        (W2, W3), *_ = self.planted_net(0)
        r = nested_cocluster([W2, W3], 10, 10)  # as many coarse as fine groups: flat
        th = {"trunk": threshold(np.ones((8, 10)), 0.5, "trunk")}
        for name, m in zip(("h1", "h2", "classes"), r.members):
            th[name] = threshold(m.astype(float), 0.5, name)
        assert branch_depth(build_branch_tree(th, ["trunk", "h1", "h2", "classes"], "classes")) == 1


class TestShippedHierarchy:
    def test_file_has_two_unequal_levels(self):
        h = load_hierarchy(NESTED_FILE)
        assert h.depth == 2 and h.num_classes == 30
        fine = {p for p in h.paths}
        assert len(fine) == 10 and len(h.coarse_names) == 4
        sizes = sorted(sum(1 for p in h.paths if p == f) for f in fine)
        assert sizes[0] == 2 and sizes[-1] == 5

    def test_generator_plants_both_levels(self):
        from blockout.data.synthetic import SyntheticSpec, generate_synthetic

        h = load_hierarchy(NESTED_FILE)
        spec = SyntheticSpec(samples_per_class=1, test_samples_per_class=1, image_size=8, max_shift=1)
        *_, s = generate_synthetic(h, spec, seed=0)
        paths = h.paths
        for f, owner in enumerate(s.owners):
            if not owner:
                continue
            members = [i for i, p in enumerate(paths) if p[:len(owner)] == owner]
            # the coarse group's features are shown by all of its classes, a fine group's by its own only
            assert s.member[members, f].all() and s.member[:, f].sum() == len(members)
        assert {len(o) for o in s.owners if o} == {1, 2}


class TestConfig:
    def test_nested_option_and_its_checks(self):
        cfg = TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "nested", "clusters": 10})
        assert cfg.hidden_membership == "bernoulli" and cfg.cocluster_coarse is None  # m > 1 needs Bernoulli
        assert TrainConfig.from_dict({"method": "hard-cocluster"}).hidden_membership == "categorical"  # unchanged
        with pytest.raises(UserError, match="needs depth 2 or more"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "nested", "depth": 1})
        with pytest.raises(UserError, match="needs hidden_membership bernoulli"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "nested",
                                   "hidden_membership": "categorical"})
        with pytest.raises(UserError, match="needs cocluster_method nested"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_coarse": 3})
        with pytest.raises(UserError, match="cocluster_coarse must be in"):
            TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "nested", "cocluster_coarse": 7,
                                   "clusters": 6})
        for coarse in (1, 6):  # regression: accepted, but one level of branches only
            with pytest.raises(UserError, match=r"cocluster_coarse must be in \[2, clusters - 1 = 5\]"):
                TrainConfig.from_dict({"method": "hard-cocluster", "cocluster_method": "nested",
                                       "cocluster_coarse": coarse, "clusters": 6, "depth": 2})


def test_tiny_nested_run_has_depth_two(tmp_path):
    """A real (tiny) training run: after the switch the branch tree is stem -> coarse -> fine, and the
    verdict says so."""
    import torch

    from analysis.graphs import branch_tree
    from analysis.run import load_run
    from analysis.verdict import run_verdict
    from blockout.train import train

    torch.set_num_threads(1)
    hier = tmp_path / "h.json"
    hier.write_text(json.dumps({"a": {"a1": ["x1", "x2"], "a2": ["x3", "x4"]},
                                "b": {"b1": ["y1", "y2"], "b2": ["y3", "y4"]}}))
    cfg = TrainConfig.from_dict(dict(
        hierarchy=str(hier), samples_per_class=6, test_samples_per_class=2, image_size=8, nodes=16, clusters=4,
        depth=2, epochs=3, batch_size=16, device="cpu", out=str(tmp_path / "run"), method="hard-cocluster",
        cocluster_at=1, cocluster_method="nested", cocluster_coarse=2, cocluster_source="weights"))
    assert train(cfg).status == "finished"
    run = load_run(tmp_path / "run")
    P = run.probs()
    # right after the switch P is 0.95 / 0.15; two epochs of theta training keep it on its side of 0.5
    h1 = P["h1"] >= 0.5
    assert (h1.sum(1) == 2).all() and (P["h2"] >= 0.5).sum(1).tolist() == [1] * 16
    assert branch_depth(branch_tree(run, 0.5)) == 2
    v = run_verdict(run)
    assert v.tree_depth == 2 and v.k == 4 and "Branch tree depth 2" in v.sentences[0]
