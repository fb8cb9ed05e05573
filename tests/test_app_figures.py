"""Figure builders of the dashboard, tested directly (no Streamlit), plus the P-outcome classifier."""

import json
from pathlib import Path

import networkx as nx
import numpy as np
import plotly.graph_objects as go
import pytest
from scipy.cluster.hierarchy import linkage

from analysis import dynamics
from analysis.errors import UserError
from analysis.graphs import branch_tree, layer_graph
from analysis.run import load_run
from analysis.synthetic import make_synthetic_run
from app import figures
from app.figures.annotate import annotate_branch_tree, annotate_layer_graph


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load_run(make_synthetic_run(tmp_path_factory.mktemp("runs") / "r", classes=12, clusters=4, groups=2))


def _json_ok(fig: go.Figure) -> dict:
    # Every figure must serialise to the JSON the browser receives.
    return json.loads(fig.to_json())


class TestOutcome:
    def _hist(self, start, end, n=30, k=4, seed=0):
        rng = np.random.default_rng(seed)
        a = np.clip(start + 0.01 * rng.standard_normal((n, k)), 0, 1)
        b = np.clip(end + 0.01 * rng.standard_normal((n, k)), 0, 1)
        return np.stack([a, b])

    def test_rise_to_one(self):
        assert dynamics.classify_outcome(self._hist(0.5, 0.98)).outcome == "rose_to_1"

    def test_fall_to_zero(self):
        assert dynamics.classify_outcome(self._hist(0.5, 0.02)).outcome == "fell_to_0"

    def test_diverged_mix(self):
        end = (np.arange(30 * 4).reshape(30, 4) % 3 == 0).astype(float) * 0.97 + 0.015
        out = dynamics.classify_outcome(self._hist(0.5, end))
        assert out.outcome == "diverged"
        assert 0.2 < out.share_high < 0.5 and out.share_high + out.share_low == pytest.approx(1.0)

    def test_stayed_and_drifting(self):
        assert dynamics.classify_outcome(self._hist(0.5, 0.505)).outcome == "stayed"
        assert dynamics.classify_outcome(self._hist(0.3, 0.6)).outcome == "drifting"

    def test_fixed_node_set(self):
        assert dynamics.classify_outcome(self._hist(0.5, 0.98), trainable=False).outcome == "fixed"

    def test_bad_history(self):
        with pytest.raises(UserError, match="shape"):
            dynamics.classify_outcome(np.zeros(3))
        with pytest.raises(UserError, match="NaN"):
            dynamics.classify_outcome(np.full((1, 2, 2), np.nan))

    def test_drift_series_and_sizes(self):
        h = self._hist(0.5, 0.98)
        s = dynamics.drift_series(h)
        assert s["share_high"][0] == 0 and s["share_high"][1] == 1
        assert dynamics.cluster_sizes(h, 0.9).tolist() == [[0] * 4, [30] * 4]

    def test_multiplier_history(self, tmp_path):
        from analysis import runfolder as rf

        path = make_synthetic_run(tmp_path / "m", classes=6, clusters=3, groups=1, n_snapshots=3)
        # add multipliers to two of the three snapshots
        for i, e in enumerate(rf.iter_snapshot_entries(path)):
            if i == 1:
                continue
            f = path / "snapshots" / e["file"]
            arrays = rf.load_npz(f)
            arrays["multiplier__fc3"] = np.full(6, float(i))
            rf.save_npz(f, arrays)
        hist = dynamics.multiplier_history(load_run(path))
        assert list(hist) == ["fc3"] and hist["fc3"].shape == (3, 6)
        assert np.isnan(hist["fc3"][1]).all() and hist["fc3"][2, 0] == 2.0


class TestColours:
    """One colour per node set (and per hierarchy source) on every figure."""

    def test_node_set_colours_are_fixed_and_shared(self, run):
        names = [ns.name for ns in run.node_sets]
        expect = {n: figures.node_set_color(n) for n in names}
        assert len(set(expect.values())) == len(names)
        hist = figures.prob_histograms(run.probs())
        assert {t.name: t.marker.color for t in hist.data} == {n: expect[n] for n in names}
        anim = figures.prob_animation(run.steps, {n: run.probs_history(n) for n in names})
        assert {t.name: t.marker.color for t in anim.data} == expect
        series = {n: dynamics.drift_series(run.probs_history(n)) for n in ("h2", "h1")}  # other order
        drift = figures.drift_figure(run.steps, series)
        assert {t.name: t.line.color for t in drift.data} == {"h1": expect["h1"], "h2": expect["h2"]}
        sankey = figures.sankey_figure(annotate_layer_graph(layer_graph(run, 0.5)), weight="live", column="depth")
        g = layer_graph(run, 0.5)
        order = list(nx.topological_sort(g))
        assert list(sankey.data[0].node.color) == [expect[g.nodes[v]["node_set"]] for v in order]

    def test_sources_keep_their_colour(self):
        rows = [{"source": s, "metric": "ari", "depth": d, "observed": 0.1, "null_mean": 0.0, "null_std": 0.01,
                 "p": 0.5, "n_groups": 3} for s in ("weights", "memberships") for d in (2, 3)]
        fig = figures.agreement_by_depth(rows, metrics=("ari",))
        lines = {t.name: t.line.color for t in fig.data if t.mode == "lines+markers"}
        assert lines == {"weights": figures.source_color("weights"), "memberships": figures.source_color("memberships")}


class TestCurves:
    def test_phases_from_config(self):
        rows = [{"step": 40 * e, "epoch": e, "test_acc": 0.1, "test_loss": 2.0} for e in range(1, 31)]
        cfg = {"warmup_steps": 100, "membership_warmup": 2, "soft_epochs": 0, "cocluster_at": 10,
               "cocluster_anneal_epochs": 3, "freeze_after": 40}
        assert figures.training_phases(cfg, rows) == [
            (80, "memberships start training"), (100, "lr warm-up ends"), (400, "co-clustering"),
            (520, "mask fully in")]  # freezing after 40 epochs: the run stopped at 30
        assert figures.training_phases({}, rows) == []
        fig = figures.training_curves(rows, phases=figures.training_phases(cfg, rows))
        assert sum(1 for sh in fig.layout.shapes if sh.type == "line") == 2 * 4  # both panels
        assert [a.text for a in fig.layout.annotations if a.text in {"co-clustering", "mask fully in"}]

    def test_training_curves(self, run):
        fig = figures.training_curves(run.metrics)
        names = {t.name for t in fig.data}
        assert names == {"train accuracy", "test accuracy", "train loss", "test loss"}
        acc = next(t for t in fig.data if t.name == "test accuracy")
        assert list(acc.x) == [m["step"] for m in run.metrics]
        _json_ok(fig)

    def test_empty_and_partial(self):
        assert figures.training_curves([]).layout.annotations[0].text.startswith("no evaluations")
        fig = figures.training_curves([{"step": 1, "test_acc": 0.5}, {"step": 2, "test_acc": float("nan")}])
        assert [t.name for t in fig.data] == ["test accuracy"] and list(fig.data[0].y) == [0.5]

    def test_compare_curves(self, run):
        fig = figures.compare_curves({"a": run.metrics, "b": run.metrics[:2]})
        assert {t.name for t in fig.data} == {"a: test_acc", "a: train_acc", "b: test_acc", "b: train_acc"}
        assert len(figures.compare_curves({"a": []}).data) == 0


class TestEmergence:
    def test_histograms_sum_to_one(self, run):
        fig = figures.prob_histograms(run.probs())
        assert len(fig.data) == len(run.node_sets)
        for bar in fig.data:
            assert sum(bar.y) == pytest.approx(1.0)

    def test_animation_frames(self, run):
        hist = {ns.name: run.probs_history(ns.name) for ns in run.node_sets}
        fig = figures.prob_animation(run.steps, hist)
        assert [f.name for f in fig.frames] == [str(s) for s in run.steps]
        assert len(fig.frames[0].data) == len(run.node_sets)
        assert fig.layout.updatemenus[0].buttons[0].method == "animate"
        # the last frame is what is drawn first
        assert list(fig.data[0].y) == list(fig.frames[-1].data[0].y)
        _json_ok(fig)

    def test_sizes_drift_multipliers(self, run):
        counts = dynamics.cluster_sizes(run.probs_history("h2"), 0.5)
        fig = figures.cluster_sizes_over_time(run.steps, counts)
        # one heatmap row per cluster, one column per snapshot; readable at 20 clusters
        assert fig.data[0].type == "heatmap" and np.asarray(fig.data[0].z).shape == counts.T.shape
        assert list(fig.data[0].y) == [f"cluster {c}" for c in range(counts.shape[1])]
        many = figures.cluster_sizes_over_time(list(range(30)), np.ones((30, 20)))
        assert len(many.data) == 1 and many.layout.height >= 20 * 20
        series = {n: dynamics.drift_series(run.probs_history(n)) for n in ("h1", "h2")}
        assert len(figures.drift_figure(run.steps, series).data) == 4
        mult = {"fc3": np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 5.0]])}
        fig = figures.multipliers_figure([1, 2, 3], mult)
        mean = fig.data[1].y
        assert mean[0] == 1.5 and np.isnan(mean[1]) and mean[2] == 4.0
        assert figures.multipliers_figure([], {}).layout.annotations


class TestHeatmaps:
    def test_block_mean(self):
        m, fr, fc = figures.block_mean(np.ones((1000, 30)), max_side=100)
        assert m.shape == (100, 30) and fr == 10 and fc == 1 and np.allclose(m, 1)

    def test_panels_and_boundaries(self):
        W = np.arange(12.0).reshape(3, 4)
        fig = figures.block_heatmaps([("W", W, True), ("M", np.abs(W), False)], row_bounds=[1], col_bounds=[2, 3])
        assert len(fig.data) == 2
        assert fig.data[0].zmid == 0 and fig.data[1].zmin == 0
        assert len(fig.layout.shapes) == 2 * 3  # 1 row + 2 column lines per panel
        _json_ok(fig)

    def test_refuses_undrawable(self):
        with pytest.raises(ValueError, match="block-average"):
            figures.block_heatmaps([("W", np.zeros((4096, 10)), True)])

    def test_in_block_mass(self):
        fig = figures.in_block_mass_figure(["fc1", "fc2"], [0.9, 0.8], [0.5, 0.25])
        assert list(fig.data[0].y) == [0.9, 0.8] and list(fig.data[1].y) == [0.5, 0.25]


class TestTrees:
    def test_layout_leaves_in_order(self):
        t = nx.DiGraph([("r", "a"), ("r", "b"), ("a", "x"), ("a", "y")])
        pos = figures.tree_layout(t)
        assert pos["x"][1] < pos["y"][1] < pos["b"][1]
        assert pos["a"][1] == pytest.approx((pos["x"][1] + pos["y"][1]) / 2)
        assert pos["r"][0] == 0 and pos["x"][0] == 2

    def test_root_errors(self):
        with pytest.raises(ValueError, match="exactly one root"):
            figures.tree_root(nx.DiGraph([("a", "b"), ("c", "d")]))

    def test_branch_tree_figures(self, run):
        tree = annotate_branch_tree(branch_tree(run, 0.5), run.class_names)
        fig = figures.tree_figure(tree)
        leaves = next(t for t in fig.data if t.name == "classes")
        assert sorted(leaves.text) == sorted(run.class_names)
        assert all("clusters" in h for h in leaves.hovertext)
        sun = figures.sunburst_figure(tree)
        root_value = sun.data[0]["values"][0]
        assert root_value == len(run.class_names)
        assert isinstance(figures.sunburst_figure(tree, icicle=True).data[0], go.Icicle)
        _json_ok(fig)

    def test_sankey(self, run):
        g = annotate_layer_graph(layer_graph(run, 0.5))
        fig = figures.sankey_figure(g, weight="live", column="depth")
        s = fig.data[0]
        assert len(s.node.label) == g.number_of_nodes()
        assert sum(s.link.value) == sum(d["live"] for _, _, d in g.edges(data=True))
        # columns follow the node-set depth (vertices are drawn in topological order)
        order = list(nx.topological_sort(g))
        x_of_depth = {}
        for v, x in zip(order, s.node.x):
            x_of_depth.setdefault(g.nodes[v]["depth"], set()).add(round(x, 6))
        assert all(len(xs) == 1 for xs in x_of_depth.values())
        firsts = [next(iter(x_of_depth[d])) for d in sorted(x_of_depth)]
        assert firsts == sorted(firsts) and firsts[0] < 0.1
        assert figures.sankey_figure(nx.DiGraph()).layout.annotations

    def test_sankey_draws_only_the_heaviest_links(self, run):
        g = annotate_layer_graph(layer_graph(run, 0.5))
        weights = sorted((d["live"] for _, _, d in g.edges(data=True)), reverse=True)
        assert len(weights) > 3
        fig = figures.sankey_figure(g, weight="live", column="depth", max_links=3)
        assert sorted(fig.data[0].link.value, reverse=True) == weights[:3]
        assert f"of {len(weights)}" in fig.layout.title.text
        assert figures.sankey_figure(g, weight="live", column="depth").layout.title.text is None

    def test_root_label_is_not_clipped(self, run):
        """Regression: the root's label was centred on the root at the left edge and cut off there."""
        tree = branch_tree(run, 0.5)
        root = figures.tree_root(tree)
        fig = figures.tree_figure(tree, root=root)
        branches = next(t for t in fig.data if t.name == "branches")
        i = list(branches.x).index(0)  # the root is the only vertex at depth 0
        assert branches.textposition[i] == "top right"  # starts at the root, grows into the plot
        assert all(p == "top left" for j, p in enumerate(branches.textposition) if j != i)
        assert len(branches.text[i]) <= 40

    def test_linkage_tree_and_tanglegram(self):
        names = ["a", "b", "c", "d"]
        left = figures.linkage_tree(linkage([[0.0], [0.1], [5.0], [5.1]], "average"), names)
        assert sorted(n for n in left.nodes if left.out_degree(n) == 0) == names
        right = figures.paths_tree({"a": ["x"], "b": ["x"], "c": ["y"], "d": ["y"]})
        fig = figures.tanglegram(left, right)
        connectors = [t for t in fig.data if t.legendgroup is not None and t.mode == "lines"]
        assert sorted(t.name for t in connectors) == ["x", "y"]  # one coloured trace per reference group
        assert len({t.line.color for t in connectors}) == 2
        ys = [y for t in connectors for y in t.y if y is not None]
        assert len(ys) == 8  # one line (two points) per class
        # agreeing hierarchies: every connector is horizontal
        assert all(abs(ys[i] - ys[i + 1]) < 1e-9 for i in range(0, 8, 2))
        assert fig.layout.meta["crossings"] == 0

    def test_tanglegram_untangles_a_scrambled_copy(self):
        """A tree against a randomly rotated copy of itself: the old barycentre drawing leaves
        crossings, the untangled one has none; lines keep the colour of the reference group."""
        rng = np.random.default_rng(3)
        names = [f"c{i}" for i in range(40)]
        Z = linkage(rng.standard_normal((40, 3)), "average")
        left = figures.linkage_tree(Z, names)
        right = left.copy()
        # reverse the child order of a random half of the right copy's vertices
        rev = nx.DiGraph()
        rev.add_nodes_from(right.nodes(data=True))
        for v in nx.dfs_preorder_nodes(right, figures.tree_root(right)):
            kids = list(right.successors(v))
            for k in (kids[::-1] if rng.random() < 0.5 else kids):
                rev.add_edge(v, k)
        groups = {n: f"g{i % 4}" for i, n in enumerate(names)}
        orders = figures.tanglegram_orders(left, rev)
        assert orders["crossings"] == 0
        fig = figures.tanglegram(left, rev, orders=orders, groups=groups, group_title="group")
        assert fig.layout.meta["crossings"] == 0
        assert "0 line crossings" in fig.layout.title.text
        colors = {t.name: t.line.color for t in fig.data if t.legendgroup is not None and t.mode == "lines"}
        assert sorted(colors) == ["g0", "g1", "g2", "g3"] and len(set(colors.values())) == 4

    def test_tanglegram_crossings_reduced_on_the_demo_run(self):
        """The issue's target: on the bundled demo run the untangled drawing has at most the
        crossings of the barycentre drawing it replaced (measured numbers:
        benchmarks/results/tanglegram_crossings.json)."""
        demo = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
        if not (demo / "run.json").is_file():
            pytest.skip("no bundled demo run")
        from analysis.hierarchy import class_hierarchy
        from analysis.run import load_run
        from app import wordnet_labels

        run = load_run(demo)
        h = class_hierarchy(run, "probability")
        orders = figures.tanglegram_orders(figures.linkage_tree(h.linkage, h.labels),
                                           figures.paths_tree(wordnet_labels.class_paths(run)))
        assert orders["crossings"] <= 0.7 * orders["crossings_before"]

    def test_paths_tree_compresses_chains(self):
        t = figures.paths_tree({"cat": ["entity", "animal", "feline"], "dog": ["entity", "animal", "canine"]})
        root = figures.tree_root(t)
        assert t.nodes[root]["label"] == "animal"
        assert sorted(t.nodes[k]["label"] for k in t.successors(root)) == ["canine", "feline"]


class TestDoctests:
    """The small pure helpers of app/ carry doctests (pytest collects doctests only under analysis/, blockout/)."""

    @pytest.mark.parametrize("module", ["app.archive", "app.browser", "app.figures.common", "app.figures.curves",
                                        "app.figures.heatmaps",
                                        "app.figures.trees", "app.state"])
    def test_module_doctests(self, module):
        import doctest
        import importlib

        result = doctest.testmod(importlib.import_module(module))
        assert result.failed == 0 and result.attempted > 0
