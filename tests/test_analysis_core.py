"""Analysis core: loading, thresholds, layer graph, branch tree, class hierarchies, block order."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.blocks import block_average, block_order, expected_mask, heatmap_data, mass_inside
from analysis.errors import RunFormatError, UserError
from analysis.graphs import (build_branch_tree, build_layer_graph, branch_tree, cluster_partition, layer_graph,
                             tree_class_groups)
from analysis.hierarchy import (METHODS, class_hierarchy, connectivity_distances, hierarchy_from_distances,
                                induced_hierarchy, probability_distances)
from analysis.run import load_run, load_snapshot
from analysis.synthetic import make_synthetic_run
from analysis.threshold import dead_branches, signature_codes, threshold, threshold_all

ANALYSIS_MODULES = ["run", "threshold", "graphs", "hierarchy", "blocks", "export", "synthetic"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("runs") / "synth", trunk=16, hidden=(24, 24), classes=12,
                              clusters=6, groups=2, n_snapshots=4, noise=0.05, seed=3)


class TestNoTorch:
    @pytest.mark.parametrize("mod", ANALYSIS_MODULES)
    def test_module_does_not_import_torch(self, mod):
        code = f"import sys, analysis.{mod}; sys.exit(1 if 'torch' in sys.modules else 0)"
        assert subprocess.run([sys.executable, "-c", code]).returncode == 0


class TestLoadRun:
    def test_topology_and_snapshots(self, synth):
        run = load_run(synth)
        assert run.chain == ["trunk", "h1", "h2", "classes"]
        assert run.steps == [100, 200, 300, 400]
        assert run.weight_steps() == [200, 400]
        assert run.class_set.name == "classes" and run.classifier.name == "fc3"
        assert len(run.metrics) == 4 and run.coarse_labels[:2] == [0, 0]
        assert run.probs()["h1"].shape == (24, 6)

    def test_weights_nearest_step_and_history(self, synth):
        run = load_run(synth)
        assert run.weights().step == 400
        assert run.weights(100).step == 200 and run.weights(300).step == 200  # tie -> earlier
        W, b = run.weights()["fc3"]
        assert W.shape == (12, 24) and b.shape == (12,)
        hist = run.probs_history("h2")
        assert hist.shape == (4, 24, 6) and hist is run.probs_history("h2")
        # sharpening: distance from 0.5 grows over the snapshots
        spread = np.abs(hist - 0.5).mean(axis=(1, 2))
        assert np.all(np.diff(spread) > 0)

    def test_single_snapshot(self, synth):
        snap = load_snapshot(synth / "snapshots" / rf.snapshot_filename(400))
        assert snap.step == 400 and snap.has_weights and set(snap.probs) == {"trunk", "h1", "h2", "classes"}

    def test_missing_run(self, tmp_path):
        with pytest.raises(RunFormatError, match="not found"):
            load_run(tmp_path / "nope")
        with pytest.raises(RunFormatError, match="run.json"):
            load_run(tmp_path)

    def test_foreign_and_broken_run_json(self, tmp_path):
        (tmp_path / "run.json").write_text('{"format": "something-else"}')  # raw run.json: hostile on purpose
        with pytest.raises(RunFormatError, match="not a Blockout run"):
            load_run(tmp_path)
        (tmp_path / "run.json").write_text('{"format": "blockout-run", "format_ver')  # raw run.json: hostile on purpose
        with pytest.raises(RunFormatError, match="run.json"):
            load_run(tmp_path)
        assert issubclass(RunFormatError, UserError)

    def test_truncated_snapshot_names_file(self, synth, tmp_path):
        import shutil
        dst = tmp_path / "copy"
        shutil.copytree(synth, dst)
        f = dst / "snapshots" / rf.snapshot_filename(300)
        f.write_bytes(f.read_bytes()[: 200])
        run = load_run(dst)
        with pytest.raises(RunFormatError, match="step_00000300.npz"):
            run.probs(300)
        with pytest.raises(RunFormatError, match="step_00000300.npz"):
            load_snapshot(f)

    def test_foreign_snapshot_and_missing_listed_file(self, synth, tmp_path):
        import shutil
        dst = tmp_path / "copy"
        shutil.copytree(synth, dst)
        (dst / "snapshots" / rf.snapshot_filename(100)).write_text("hello, not a zip")
        with pytest.raises(RunFormatError, match="step_00000100.npz"):
            load_run(dst).probs(100)
        (dst / "snapshots" / rf.snapshot_filename(200)).unlink()
        with pytest.raises(RunFormatError, match="step_00000200.npz"):
            load_run(dst)

    def test_shape_mismatch_is_reported(self, synth, tmp_path):
        import shutil
        dst = tmp_path / "copy"
        shutil.copytree(synth, dst)
        rec = fmt.read_run(dst)  # a valid run.json whose topology disagrees with the snapshots
        rec.topology.node_sets[1] = dataclasses.replace(rec.topology.node_sets[1], clusters=5)
        fmt.write_run(dst, rec)
        with pytest.raises(RunFormatError, match="expected"):
            load_run(dst).probs()

    def test_unknown_step(self, synth):
        with pytest.raises(RunFormatError, match="no snapshot at step 123"):
            load_run(synth).probs(123)


class TestThreshold:
    def test_counts_on_small_example(self):
        P = np.array([[0.9, 0.9, 0.9], [0.9, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.6, 0.1], [0.6, 0.1, 0.2]])
        t = threshold(P, 0.5, "x")
        assert t.codes.tolist() == [7, 1, 0, 2, 1]
        assert t.nodes_per_cluster().tolist() == [3, 2, 1]
        assert t.signature_counts() == {0: 1, 1: 2, 2: 1, 7: 1}
        assert t.dead_nodes().tolist() == [2] and t.shared_nodes().tolist() == [0]
        assert [sorted(s) for s in t.signatures()] == [[0, 1, 2], [0], [], [1], [0]]
        assert t.summary()["signatures"] == 4

    def test_threshold_is_inclusive_and_validated(self):
        assert threshold(np.array([[0.5]]), 0.5).codes.tolist() == [1]
        with pytest.raises(UserError, match="1.5"):
            threshold(np.array([[0.5]]), 1.5)

    def test_dead_branches(self):
        th = threshold_all({"a": np.ones((2, 3)), "b": np.array([[1.0, 0, 0], [1.0, 0, 0]]), "c": np.eye(3)}, 0.5)
        assert dead_branches(th, ["a", "b", "c"]) == {1: ["b"], 2: ["b"]}

    def test_bitmask_matches_sets_at_scale(self):
        rng = np.random.default_rng(0)
        C = rng.random((4096, 15)) > 0.7
        codes = signature_codes(C)
        for i in rng.integers(0, 4096, 20):
            assert codes[i] == sum(1 << j for j in np.flatnonzero(C[i]))


def planted_thresholded():
    """k = 4; trunk shared; h1 splits {0,1} | {2,3}; h2 splits all; 8 classes, 2 per cluster."""
    P = {
        "trunk": np.ones((3, 4)),
        "h1": np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1.0]]),
        "h2": np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]],
        "classes": np.eye(4)[[0, 0, 1, 1, 2, 2, 3, 3]],
    }
    return threshold_all(P, 0.5), ["trunk", "h1", "h2", "classes"]


class TestBranchTree:
    def test_planted_two_level_hierarchy_is_recovered(self):
        th, chain = planted_thresholded()
        T = build_branch_tree(th, chain, "classes", [f"k{i}" for i in range(8)])
        assert nx.is_arborescence(T)
        root = T.graph["root"]
        top = sorted(T.nodes[v]["clusters"] for v in T.successors(root))
        assert top == [(0, 1), (2, 3)]
        for v in T.successors(root):
            assert T.nodes[v]["split_at"] == "h1"
            subs = sorted(T.nodes[c]["clusters"] for c in T.successors(v))
            assert len(subs) == 2 and all(len(s) == 1 for s in subs)
        leaves = {T.nodes[v]["label"]: next(T.predecessors(v)) for v in T if T.nodes[v]["kind"] == "class"}
        assert T.nodes[leaves["k0"]]["clusters"] == (0,) and leaves["k0"] == leaves["k1"]
        assert tree_class_groups(T).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert tree_class_groups(T, depth=1).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
        assert T.nodes[root]["size"] == 8

    def test_multi_cluster_class_hangs_at_deepest_common_block(self):
        th, chain = planted_thresholded()
        P = np.eye(4)[[0, 0, 1, 1, 2, 2, 3, 3]]
        P[0] = [1, 1, 0, 0]  # spans {0,1}: hangs under the {0,1} block
        P[7] = [0, 1, 0, 1]  # spans branches: hangs under the root
        P[5] = 0  # dead class
        th["classes"] = threshold(P, 0.5, "classes")
        T = build_branch_tree(th, chain, "classes")
        parent = {T.nodes[v]["class_index"]: next(T.predecessors(v)) for v in T if T.nodes[v]["kind"] == "class"}
        assert T.nodes[parent[0]]["clusters"] == (0, 1)
        assert parent[7] == T.graph["root"] and parent[5] == "dead"

    def test_non_shared_trunk_gets_virtual_root(self):
        P = {"t": np.array([[1, 0, 0], [0, 1, 1.0]]), "c": np.eye(3)}
        T = build_branch_tree(threshold_all(P, 0.5), ["t", "c"], "c")
        assert sorted(T.nodes[v]["clusters"] for v in T.successors("root")) == [(0,), (1, 2)]

    def test_dead_branch_is_flagged(self):
        P = {"t": np.ones((2, 3)), "h": np.array([[1, 1, 0], [1, 1, 0.0]]), "c": np.eye(3)}
        T = build_branch_tree(threshold_all(P, 0.5), ["t", "h", "c"], "c")
        dead = [T.nodes[v]["clusters"] for v in T if T.nodes[v]["kind"] == "block" and T.nodes[v]["dead"]]
        assert dead == [(2,)]

    def test_label_fn_names_inner_vertices(self):
        th, chain = planted_thresholded()
        T = build_branch_tree(th, chain, "classes", label_fn=lambda idx: "animal" if set(idx) <= {0, 1, 2, 3} else None)
        labelled = [v for v in T if T.nodes[v]["hypernym"] == "animal"]
        assert labelled and all(set(T.nodes[v]["classes"]) <= {0, 1, 2, 3} for v in labelled)

    def test_synthetic_run_tree(self, synth):
        run = load_run(synth)
        T = branch_tree(run, 0.5)
        assert tree_class_groups(T, depth=1).tolist() == [g for g in run.coarse_labels]
        assert len(set(tree_class_groups(T).tolist())) == 6

    def test_cluster_partition_joins_transitively(self):
        assert cluster_partition(np.array([0b0011, 0b0110, 0b10000]), 5).tolist() == [0, 0, 0, 3, 4]


class TestLayerGraph:
    def test_edges_join_intersecting_signatures_with_weight_means(self):
        th = threshold_all({"a": np.array([[1, 0], [0, 1.0]]), "b": np.array([[1, 0], [1, 1], [0, 1.0]])}, 0.5)
        W = np.array([[1.0, -2.0], [3.0, 4.0], [5.0, 6.0]])  # (out=b, in=a)
        G = build_layer_graph(th, ["a", "b"], {("a", "b"): W})
        assert G.nodes["1:3"]["size"] == 1 and G.nodes["0:1"]["size"] == 1
        e = G.edges["0:1", "1:3"]
        assert e["live"] == 1 and e["shared"] == 1 and e["mean_abs_w"] == pytest.approx(3.0)
        assert G.edges["0:2", "1:2"]["mean_abs_w"] == pytest.approx(6.0)
        assert not G.has_edge("0:1", "1:2")

    def test_run_layer_graph(self, synth):
        G = layer_graph(load_run(synth), 0.5)
        assert G.graph["weights_step"] == 400
        assert all("mean_abs_w" in d for _, _, d in G.edges(data=True))
        sizes = {}
        for _, d in G.nodes(data=True):
            sizes[d["node_set"]] = sizes.get(d["node_set"], 0) + d["size"]
        assert sizes == {"trunk": 16, "h1": 24, "h2": 24, "classes": 12}


class TestHierarchy:
    def test_probability_distances(self):
        D = probability_distances(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
        assert D[1, 2] == 0 and D[0, 1] == 1

    def test_connectivity_jaccard_by_hand(self):
        th = threshold_all({"h": np.array([[1, 0], [1, 0], [0, 1], [1, 1.0]]),
                            "c": np.array([[1, 0], [0, 1], [1, 1.0]])}, 0.5)
        D = connectivity_distances(th, ["h", "c"], "c")
        # class 0 reaches {0,1,3}, class 1 reaches {2,3}, class 2 reaches all four
        assert D[0, 1] == pytest.approx(1 - 1 / 4) and D[0, 2] == pytest.approx(1 - 3 / 4)

    def test_same_type_and_groups_for_every_method(self, synth):
        from sklearn.metrics import adjusted_rand_score
        run = load_run(synth)
        fine = np.repeat(np.arange(6), 2)
        for m in METHODS:
            h = class_hierarchy(run, m)
            assert h.distances.shape == (12, 12) and h.linkage.shape == (11, 4)
            assert sorted(h.order().tolist()) == list(range(12))
            assert adjusted_rand_score(fine, h.groups(n_groups=6)) == pytest.approx(1.0), m
        assert class_hierarchy(run, "connectivity").groups(n_groups=2).tolist() == run.coarse_labels

    def test_groups_by_height_and_errors(self):
        h = hierarchy_from_distances(np.array([[0, 0.1, 0.9], [0.1, 0, 0.8], [0.9, 0.8, 0]]))
        assert h.groups(height=0.5).tolist() == [1, 1, 0]
        with pytest.raises(UserError):
            h.groups()
        with pytest.raises(UserError, match="bogus"):
            hierarchy_from_distances(np.zeros((2, 2)), linkage="bogus")

    def test_induced_hierarchy_recovers_planted_rows(self):
        rng = np.random.default_rng(0)
        templates = rng.standard_normal((4, 50))
        W = templates[np.repeat(np.arange(4), 5)] + 0.2 * rng.standard_normal((20, 50))
        h = induced_hierarchy(W, linkage="ward")
        g = h.groups(n_groups=4)
        assert all(len(set(g[i * 5:(i + 1) * 5])) == 1 for i in range(4)) and len(set(g)) == 4


class TestBlocks:
    def test_block_order_recovers_planted_blocks(self):
        rng = np.random.default_rng(1)
        truth = rng.integers(0, 5, 200)
        P = np.where(np.eye(5)[truth] > 0, 0.9, 0.1) + 0.05 * rng.standard_normal((200, 5))
        b = block_order(P, 0.5)
        assert len(b.boundaries) == 4
        assert np.all(np.diff(truth[b.order]) >= 0)  # contiguous, in cluster order
        # within a block: decreasing confidence
        seg = b.order[: b.boundaries[0]]
        assert np.all(np.diff(P[seg, truth[seg[0]]]) <= 1e-12)

    def test_expected_masks(self):
        rng = np.random.default_rng(2)
        p, q = rng.random((6, 3)), rng.random((5, 3))
        assert np.allclose(expected_mask(p, q), p @ q.T, atol=1e-6)
        ref = 1 - np.prod(1 - p[:, None, :] * q[None, :, :], axis=2)
        assert np.allclose(expected_mask(p, q, "union"), ref, atol=1e-6)
        # Monte Carlo check of the union expectation (3000 samples, tolerance 0.05)
        s = (rng.random((3000, 6, 3)) < p)[:, :, None, :] & (rng.random((3000, 5, 3)) < q)[:, None, :, :]
        assert np.abs(s.any(-1).mean(0) - ref).max() < 0.05

    def test_mass_inside_and_heatmap_agree(self):
        rng = np.random.default_rng(3)
        Po, Pi = rng.random((70, 4)), rng.random((50, 4))
        W = rng.standard_normal((70, 50))
        h = heatmap_data(W, Po, Pi, 0.5, "count", max_size=16)
        ref = mass_inside(np.abs(W) * expected_mask(Po, Pi), signature_codes(Po >= 0.5), signature_codes(Pi >= 0.5))
        assert h["mass_inside"] == pytest.approx(ref, rel=1e-5)
        assert h["abs_w"].shape == (14, 13)
        ro, co = h["row_order"].order, h["col_order"].order
        small, _, _ = block_average(np.abs(W[ro][:, co]), 16)
        assert np.allclose(small, h["abs_w"], atol=1e-5)

    def test_planted_weights_are_inside_blocks(self, synth):
        run = load_run(synth)
        P = run.probs()
        h = heatmap_data(run.weights()["fc2"][0], P["h2"], P["h1"], 0.5)
        assert h["mass_inside"] > 0.85  # leak 0.1 outside the plant

    def test_block_average_exact(self):
        A = np.arange(20.0).reshape(4, 5)
        s, re, ce = block_average(A, 2)
        assert re.tolist() == [0, 2] and ce.tolist() == [0, 3]
        assert s[0, 1] == pytest.approx(A[:2, 3:].mean()) and s[1, 0] == pytest.approx(A[2:, :3].mean())
