"""The run verdict (analysis.verdict) on runs whose answer is known, and the outcome classification
it relies on (analysis.dynamics), including the issue-8 regression on the bundled demo run."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from analysis import runfolder as rf
from analysis import runformat as fmt
from analysis.compare import compare_run
from analysis.dynamics import classify_outcome, is_categorical
from analysis.run import load_run
from analysis.synthetic import make_synthetic_run
from analysis.verdict import QUESTIONS, node_set_branches, run_verdict

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo"


def rewrite_probs(path: Path, fn) -> None:
    """Replace every snapshot's P of the learned node sets by ``fn(name, P, t)`` (t = snapshot index)."""
    for t, entry in enumerate(fmt.read_snapshot_index(path)):
        file = path / fmt.SNAPSHOT_DIR / entry.file
        arrays = rf.load_npz(file)
        for key in list(arrays):
            if key.startswith(rf.PROBS_PREFIX) and key != rf.PROBS_PREFIX + "trunk":
                arrays[key] = fn(key[len(rf.PROBS_PREFIX):], arrays[key], t).astype(np.float32)
        rf.save_npz(file, arrays)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("v") / "planted", seed=0)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """The planted run with P drifting to ~1 everywhere (the paper's failure mode): no branches."""
    path = make_synthetic_run(tmp_path_factory.mktemp("v") / "drifted", seed=0)
    rng = np.random.default_rng(1)
    rewrite_probs(path, lambda name, P, t: np.clip(0.5 + 0.12 * t + 0.01 * rng.standard_normal(P.shape), 0, 1))
    return path


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A real (tiny) fc run: no node sets, weights saved."""
    import torch

    from blockout.config import TrainConfig
    from blockout.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("v")
    h = root / "h.json"
    h.write_text(json.dumps({"animals": ["lion", "tiger", "wolf"], "tools": ["saw", "knife", "hammer"]}))
    out = root / "fc"
    train(TrainConfig(hierarchy=str(h), samples_per_class=4, test_samples_per_class=2, image_size=8, nodes=16,
                      epochs=1, batch_size=8, device="cpu", method="fc", out=str(out)))
    return out


class TestOutcome:
    def test_demo_is_not_switched_off(self):
        """Regression (issue 8): the demo's h1 (8 nodes in each of 20 clusters, none dead) was 'fell_to_0'."""
        run = load_run(DEMO)
        ns = run.node_set("h1")
        out = classify_outcome(run.probs_history("h1"), trainable=ns.trainable, membership=ns.membership)
        assert out.share_low >= 0.9  # the trap: 95 % of the entries are near 0 ...
        assert out.dead_nodes == 0 and out.full_nodes == 0  # ... yet every node is in one cluster
        assert out.outcome == "diverged" and out.settled and out.categorical
        # detected from the rows of P as well, without the run.json membership kind
        assert classify_outcome(run.probs_history("h1")).outcome == "diverged"

    def test_switched_off_bernoulli_set(self):
        start = np.full((1, 30, 4), 0.5)
        off = np.full((1, 30, 4), 0.02)
        out = classify_outcome(np.concatenate([start, off]))
        assert out.outcome == "fell_to_0" and out.dead_nodes == 30

    def test_mostly_low_but_alive_is_not_switched_off(self):
        # Bernoulli nodes each in one of 20 clusters (no row-sum constraint): 95 % of P near 0
        P = np.full((40, 20), 0.03)
        P[np.arange(40), np.arange(40) % 20] = 0.97
        P[0, 5] = 0.5  # breaks the equal row sums: not detected as categorical
        out = classify_outcome(np.stack([np.full_like(P, 0.5), P]))
        assert not out.categorical and out.outcome == "diverged" and out.dead_nodes == 0

    def test_uniform_categorical_is_not_switched_off(self):
        # a categorical set still at its uniform start: every entry 1/k <= 0.1, never "switched off"
        P = np.full((2, 40, 20), 0.05)
        assert is_categorical(P[-1])
        assert classify_outcome(P).outcome == "stayed"
        assert classify_outcome(P, membership="categorical").outcome == "stayed"

    def test_drift_to_one(self):
        out = classify_outcome(np.stack([np.full((10, 4), 0.5), np.full((10, 4), 0.97)]))
        assert out.outcome == "rose_to_1" and out.full_nodes == 10


class TestBranches:
    def test_node_set_branches(self):
        assert node_set_branches(np.eye(5)) == 5
        assert node_set_branches(np.array([[1, 1, 0], [0, 1, 1.]])) == 1
        assert node_set_branches(np.array([[0.9, 0.1], [0.2, 0.1]])) == 1  # one populated cluster
        assert node_set_branches(np.array([[0.9, 0.1]]), tau=0.95) == 0

    def test_planted_run_says_yes(self, planted):
        v = run_verdict(load_run(planted))
        assert v.branches_formed is True
        by = {b.name: b for b in v.branches}
        assert set(by) == {"h1", "h2", "classes"}  # the trunk is not learned
        # the plant: h1 splits the 4 clusters into 2 super-groups, h2 and the classes into the 4 clusters
        assert (by["h1"].n_branches, by["h2"].n_branches, by["classes"].n_branches) == (2, 4, 4)
        assert all(b.formed and b.n_dead == 0 and b.n_full == 0 for b in v.branches)
        assert v.sentences[0].startswith(QUESTIONS[0] + " Yes")
        assert "Yes, at tau = 0.5: in h1, 2 branches (P " in v.sentences[0]
        assert v.sentences[1].startswith(QUESTIONS[1] + " Not measured")
        assert v.agreement is None and v.memberships_agree is None
        json.dumps(v.to_dict(), allow_nan=False)
        # the planted tree nests (h1: 2 super-groups, h2: 4 clusters): depth 2, every cluster used
        assert (v.tree_depth, v.k_used, v.k) == (2, 4, 4) and v.flags == []
        assert v.sentences[0].endswith(" Branch tree depth 2 (branches that split again); the classes use 4 of 4 "
                                       "clusters.")
        assert v.to_dict()["tree_depth"] == 2 and v.to_dict()["k_used"] == 4

    def test_clusters_used_counts_only_clusters_holding_a_class(self, planted, tmp_path):
        import shutil

        path = tmp_path / "two"
        shutil.copytree(planted, path)
        # every class moved into cluster 0 or 1 (by parity): 2 of 4 clusters in use at the end
        rewrite_probs(path, lambda name, P, t: np.eye(P.shape[1])[np.arange(P.shape[0]) % 2] if name == "classes"
                      else P)
        v = run_verdict(load_run(path))
        assert (v.k_used, v.k) == (2, 4) and "the classes use 2 of 4 clusters" in v.sentences[0]

    def test_drifted_run_says_no(self, drifted):
        v = run_verdict(load_run(drifted))
        assert v.branches_formed is False
        assert all(b.outcome == "rose_to_1" and b.n_branches == 1 and b.n_full == b.nodes for b in v.branches)
        assert v.sentences[0].startswith(QUESTIONS[0] + " No")
        assert "P rose to 1" in v.sentences[0]

    def test_plain_run_says_no_memberships(self, plain):
        run = load_run(plain)
        assert run.node_sets == []
        v = run_verdict(run)
        assert v.branches == [] and v.branches_formed is False
        assert v.sentences[0] == QUESTIONS[0] + " No: a plain network (method fc) has no cluster memberships, so no branches."

    def test_fixed_memberships(self, planted, tmp_path):
        import shutil

        path = tmp_path / "fixed"
        shutil.copytree(planted, path)
        rec = fmt.read_run(path)
        rec.topology.node_sets = [dataclasses.replace(ns, trainable=False) for ns in rec.topology.node_sets]
        rec.config["method"] = "hard-fixed"
        fmt.write_run(path, rec)
        v = run_verdict(load_run(path))
        assert v.branches == [] and v.branches_formed is None
        assert v.sentences[0] == (QUESTIONS[0] + " Not learned: every membership is fixed by the method "
                                  "(hard-fixed); branches at tau = 0.5: h1 2, h2 4, classes 4. Branch tree depth 2 "
                                  "(branches that split again); the classes use 4 of 4 clusters.")
        assert (v.tree_depth, v.k_used, v.k) == (2, 4, 4)

    def test_bad_threshold(self, planted):
        from analysis.errors import UserError

        with pytest.raises(UserError):
            run_verdict(load_run(planted), threshold=0)


class TestAgreement:
    def test_planted_memberships_agree(self, planted, tmp_path):
        run = load_run(planted)
        # the super-groups are planted in the branch structure (h1), which connectivity distances see
        report = compare_run(run, reference="coarse", method="connectivity", permutations=99, seed=0)
        v = run_verdict(run, report)
        ag = v.agreement
        assert ag.reference == "coarse" and ag.chosen_by == "memberships" and ag.family == 1
        # seeded: memberships ARI 1.0 (p 0.01), weights ARI 0.22 (p 0.02)
        assert ag.memberships_ari > 0.9 and ag.memberships_p_holm <= 0.05 and ag.weights_p_holm <= 0.05
        assert v.memberships_agree is True and ag.memberships_add is True
        assert v.sentences[1].startswith(QUESTIONS[1] + " Yes. Best-supported reference: the coarse classes (2 groups)")
        assert f"memberships ARI {ag.memberships_ari:.3f}" in v.sentences[1]
        assert f"weight-induced hierarchy ARI {ag.weights_ari:.3f}" in v.sentences[1]
        assert "the memberships agree more than the plain weights do" in v.sentences[1]
        # planted clusters as the reference: both hierarchies recover them, the memberships add nothing
        path = make_synthetic_run(tmp_path / "g4", seed=0, groups=4)
        run4 = load_run(path)
        v4 = run_verdict(run4, compare_run(run4, reference="coarse", permutations=99, seed=0))
        assert v4.memberships_agree is True and v4.agreement.memberships_add is False
        assert "the memberships add nothing over the plain weights" in v4.sentences[1]

    def test_drifted_memberships_do_not_agree(self, drifted):
        run = load_run(drifted)
        report = compare_run(run, reference="coarse", permutations=99, seed=0)
        v = run_verdict(run, report)
        # P ~ 1 everywhere: class rows differ by noise only; the weights still carry the plant
        assert v.memberships_agree is False and v.agreement.memberships_p_holm > 0.05
        assert v.agreement.weights_agree is True and v.agreement.memberships_add is False
        assert v.sentences[1].startswith(QUESTIONS[1] + " No")
        assert "the plain weights do group the classes like it" in v.sentences[1]

    def test_plain_run_has_no_memberships(self, plain):
        run = load_run(plain)
        report = compare_run(run, reference="coarse", permutations=19, seed=0)
        v = run_verdict(run, report)
        assert v.memberships_agree is None and v.agreement.chosen_by == "weights"
        assert "no class memberships" in v.sentences[1]

    def test_demo_headline_skips_one_vs_rest_and_needs_enough_permutations(self):
        run = load_run(DEMO)
        few = run_verdict(run, compare_run(run, reference="all", source="memberships", permutations=99))
        assert few.memberships_agree is None and few.agreement.resolution_limited
        assert "Undecided, too few permutations" in few.sentences[1]
        assert few.agreement.reference != "wordnet_d1" and "wordnet_d1" in few.agreement.excluded
        # 14 references need 1/(N+1) * 14 <= 0.05, i.e. N >= 279
        assert "at least 279 permutations" in few.sentences[1]


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory):
    """A tiny run (3 epochs) of every method and recipe of the trainer."""
    import torch

    from blockout.config import ALL_METHODS, TrainConfig
    from blockout.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("methods")
    h = root / "h.json"
    h.write_text(json.dumps({"animals": ["lion", "tiger", "wolf", "fox"], "tools": ["saw", "knife", "axe", "drill"]}))
    out = {}
    for method in ALL_METHODS:
        cfg = TrainConfig.from_dict(dict(hierarchy=str(h), samples_per_class=4, test_samples_per_class=2,
                                         image_size=8, nodes=16, clusters=4, epochs=3, batch_size=8,
                                         device="cpu", method=method, out=str(root / method)))
        train(cfg)
        out[method] = load_run(root / method)
    return out


class TestEveryRunType:
    """The classification on a run of every method and recipe the trainer makes (tiny, 3 epochs):
    a set is called switched off only when its nodes are in no cluster, never a categorical set."""

    def test_outcomes_and_verdicts(self, method_runs):
        from blockout.config import BLOCKOUT_METHODS

        for method, run in method_runs.items():
            v = run_verdict(run)
            assert len(v.sentences) == 2 and v.sentences[0].startswith(QUESTIONS[0]), method
            if method not in BLOCKOUT_METHODS:
                assert run.node_sets == [] and "plain network" in v.sentences[0], method
                continue
            for ns in run.node_sets:
                o = classify_outcome(run.probs_history(ns.name), trainable=ns.trainable, membership=ns.membership)
                if not ns.trainable:
                    assert o.outcome == "fixed", (method, ns.name)
                if o.outcome == "fell_to_0":
                    assert o.dead_nodes >= 0.9 * o.nodes and not o.categorical, (method, ns.name, o)
                if ns.membership == "categorical":
                    assert o.categorical and o.outcome != "fell_to_0", (method, ns.name, o)
            if method == "hard-fixed":
                assert v.branches == [] and "Not learned" in v.sentences[0]
            # the recipes' categorical hidden sets: one cluster per node, never dead or switched off
            if method in ("hard-cocluster", "hard-budgeted"):
                hidden = [b for b in v.branches if b.membership == "categorical"]
                assert hidden and all(b.n_dead == 0 and b.outcome != "fell_to_0" for b in hidden), method


class TestAgreementEdgeCases:
    @staticmethod
    def report(rows_by_source, refs):
        from analysis.compare import ComparisonReport, HierarchyComparison, PartitionComparison, Statistic

        hs = []
        for source, rows in rows_by_source.items():
            parts = []
            for name, ari, p, degenerate in rows:
                s = Statistic(ari, 0.0, 0.1, ari / 0.1, p, 999, p)
                parts.append(PartitionComparison(name, "wordnet", 1, 2 if degenerate else 5, 5,
                                                 {"ari": s, "nmi": s, "fmi": s}, degenerate))
            hs.append(HierarchyComparison(source, "probability" if source == "memberships" else "weights", parts, []))
        return ComparisonReport("r", 20, 999, 0, 0.5, None, refs, hs, [])

    def test_weights_only_on_a_run_with_memberships(self, planted):
        rep = self.report({"weights": [("wordnet_d3", 0.4, 0.001, False)]},
                          [{"name": "wordnet_d3", "kind": "wordnet", "depth": 3, "depths": [3], "n_groups": 5}])
        v = run_verdict(load_run(planted), rep)
        assert v.memberships_agree is None and v.agreement.chosen_by == "weights"
        assert "the membership hierarchy was not compared" in v.sentences[1]
        assert "WordNet depth 3 (5 groups)" in v.sentences[1]

    def test_only_one_vs_rest_references(self, planted):
        rep = self.report({"memberships": [("wordnet_d1", 1.0, 0.001, True)]},
                          [{"name": "wordnet_d1", "kind": "wordnet", "depth": 1, "depths": [1], "n_groups": 2}])
        v = run_verdict(load_run(planted), rep)
        assert v.agreement is None and v.memberships_agree is None
        assert "Not measured: no usable reference" in v.sentences[1]

    def test_memberships_significant_weights_not(self, planted):
        refs = [{"name": "wordnet_d3", "kind": "wordnet", "depth": 3, "depths": [3, 4], "n_groups": 5}]
        rep = self.report({"memberships": [("wordnet_d3", 0.5, 0.001, False)],
                           "weights": [("wordnet_d3", 0.6, 0.2, False)]}, refs)
        v = run_verdict(load_run(planted), rep)
        assert v.memberships_agree is True and v.agreement.memberships_add is True
        assert "WordNet depths 3-4 (5 groups)" in v.sentences[1]
        assert "the plain weights alone do not agree beyond chance" in v.sentences[1]

    def test_flag_when_memberships_agree_less_than_weights(self, planted):
        refs = [{"name": "wordnet_d3", "kind": "wordnet", "depth": 3, "depths": [3], "n_groups": 5}]
        rep = self.report({"memberships": [("wordnet_d3", 0.49, 0.001, False)],
                           "weights": [("wordnet_d3", 0.83, 0.001, False)]}, refs)
        v = run_verdict(load_run(planted), rep)
        assert v.agreement.memberships_below_weights is True and v.memberships_agree is True
        assert v.flags == ["Flag: the memberships agree with WordNet depth 3 (5 groups) less than the run's own "
                           "weights do (ARI 0.490 < 0.830)."]
        assert v.sentences[1].endswith(" " + v.flags[0]) and v.to_dict()["flags"] == v.flags
        assert "add nothing" not in v.sentences[1]  # the flag says it once, more precisely
        # memberships above (or equal to) the weights: no flag
        rep = self.report({"memberships": [("wordnet_d3", 0.83, 0.001, False)],
                           "weights": [("wordnet_d3", 0.83, 0.001, False)]}, refs)
        v = run_verdict(load_run(planted), rep)
        assert v.agreement.memberships_below_weights is False and v.flags == [] and "Flag" not in v.sentences[1]
        # weights higher but not beyond chance themselves: nothing to flag (noise against noise)
        rep = self.report({"memberships": [("wordnet_d3", 0.01, 0.4, False)],
                           "weights": [("wordnet_d3", 0.03, 0.3, False)]}, refs)
        v = run_verdict(load_run(planted), rep)
        assert v.agreement.memberships_below_weights is False and v.flags == []

    def test_memberships_only(self, planted):
        refs = [{"name": "wordnet_d3", "kind": "wordnet", "depth": 3, "depths": [3], "n_groups": 5}]
        v = run_verdict(load_run(planted), self.report({"memberships": [("wordnet_d3", 0.5, 0.001, False)]}, refs))
        assert v.memberships_agree is True and v.agreement.memberships_add is None
        assert v.sentences[1].endswith("memberships ARI 0.500 (Holm p 0.001); the weight-induced hierarchy was not compared.")
        assert v.agreement.memberships_below_weights is None and v.flags == []


class TestInspectAnswersBothQuestions:
    """`blockout inspect` runs the comparison behind the second question (regression: it said
    "Not measured" on every run); --permutations 0 skips it."""

    def test_demo_inspect_says_yes_to_both(self, capsys):
        from blockout.cli import main

        assert main(["inspect", str(DEMO), "--permutations", "299"]) == 0
        first, second = capsys.readouterr().out.splitlines()[:2]
        assert first.startswith(QUESTIONS[0]) and " Yes" in first
        assert second.startswith(QUESTIONS[1]) and " Yes." in second and "ARI" in second

    def test_permutations_zero_skips_the_comparison(self, capsys):
        from blockout.cli import main

        assert main(["inspect", str(DEMO), "--permutations", "0", "--json"]) == 0
        verdict = json.loads(capsys.readouterr().out)["verdict"]
        assert verdict["agreement"] is None and verdict["memberships_agree"] is None


def test_overview_shows_the_flag_as_a_warning(drifted, tmp_path, monkeypatch):
    """The dashboard Overview puts the below-the-weights flag in a warning box under the sentences, once
    (regression: it also ended the second sentence, so the page said it twice)."""
    import shutil

    from streamlit.testing.v1 import AppTest

    from tests.test_app_pages import HOME, ok

    shutil.copytree(drifted, tmp_path / "ck" / "drifted")
    monkeypatch.setenv("BLOCKOUT_CHECKPOINTS", str(tmp_path / "ck"))
    monkeypatch.delenv("BLOCKOUT_RUN", raising=False)
    at = AppTest.from_file(HOME, default_timeout=120)
    at.run()
    ok(at)
    flags = [w.value for w in at.warning if w.value.startswith("Flag:")]
    # drifted P: the memberships carry no class structure while the weights still do
    assert len(flags) == 1 and "less than the run's own weights do (ARI" in flags[0]
    shown = " ".join(el.value for el in at.main if el.type == "markdown")
    assert "Flag:" not in shown and "Do the memberships group" in shown  # said once, in its box


def test_a_snapshot_in_the_warm_up_is_flagged():
    """Regression: a co-clustered run read inside its plain warm-up (or stopped there) got a verdict on
    memberships that were still the random start, with nothing saying so."""
    run = load_run(DEMO)  # hard-cocluster, cocluster_at = 10 epochs of 40 steps
    for step in (40, 400):  # after epoch 1, and the warm-up's last step (the switch comes after it)
        v = run_verdict(run, step=step)
        assert v.flags and v.flags[0].startswith("Flag: at this step the run is still in its plain warm-up")
        assert f"({step // 40} of 10 epochs)" in v.sentences[0]
    assert not any("warm-up" in f for f in run_verdict(run, step=440).flags)  # the epoch after the switch
    # with the comparison run, the warm-up flag stands alone: random memberships "below the weights" says nothing
    warm = run_verdict(run, compare_run(run, step=40, permutations=999, seed=0), step=40)  # as the Overview
    assert len(warm.flags) == 1 and "less than the run's own weights" not in warm.sentences[1]
    assert not any("warm-up" in f for f in run_verdict(run).flags)
