"""analysis.compare: partition agreement and Mantel tests with a same-shape permutation null."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage as sch_linkage
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score, fowlkes_mallows_score, normalized_mutual_info_score

from analysis.compare import (ComparisonReport, compare_hierarchy, compare_partition, compare_run, format_report,
                              mantel_test, null_statistic, permuted_partition_scores, random_permutations)
from analysis.errors import UserError
from analysis.wordnet.references import ReferenceGrouping

ROOT = Path(__file__).resolve().parent.parent


def planted(n_groups=5, per=6, spread=0.15, seed=0):
    """Points in ``n_groups`` tight clusters: (labels, square distances)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, 4)) * 3
    labels = np.repeat(np.arange(n_groups), per)
    X = centres[labels] + spread * rng.normal(size=(labels.size, 4))
    return labels, squareform(pdist(X))


class TestPermutedScores:
    @pytest.mark.parametrize("n,ka,kb", [(40, 3, 5), (120, 20, 20), (200, 150, 60), (30, 30, 2), (50, 1, 4)])
    def test_match_sklearn(self, n, ka, kb):
        rng = np.random.default_rng(n)
        a, b = rng.integers(0, ka, n), rng.integers(0, kb, n)
        perms = random_permutations(n, 30, seed=1)
        got = permuted_partition_scores(b, a, perms)
        for m, f in (("ari", adjusted_rand_score), ("nmi", normalized_mutual_info_score), ("fmi", fowlkes_mallows_score)):
            want = np.array([f(b, a[p]) for p in perms])
            np.testing.assert_allclose(got[m], want, rtol=0, atol=1e-12)

    def test_seeded(self):
        assert np.array_equal(random_permutations(10, 5, 3), random_permutations(10, 5, 3))
        assert not np.array_equal(random_permutations(10, 5, 3), random_permutations(10, 5, 4))


class TestMantel:
    def test_identical_matrices_p_is_minimal(self):
        _, D = planted(seed=1)
        D = D + np.random.default_rng(0).uniform(0, 1e-3, D.shape)  # no ties: no permutation but identity matches
        D = (D + D.T) / 2
        np.fill_diagonal(D, 0)
        s = mantel_test(D, D, permutations=199, seed=0)
        assert s.observed == pytest.approx(1.0) and s.p == pytest.approx(1 / 200)

    def test_observed_is_scipy_spearman(self):
        rng = np.random.default_rng(2)
        a, b = pdist(rng.normal(size=(25, 3))), pdist(rng.normal(size=(25, 3)))
        s = mantel_test(a, np.round(b, 1), permutations=9, seed=0)  # rounding makes ties
        assert s.observed == pytest.approx(spearmanr(a, np.round(b, 1)).statistic, abs=1e-12)

    def test_null_matches_explicit_permutation(self):
        rng = np.random.default_rng(3)
        A, B = squareform(pdist(rng.normal(size=(15, 2)))), squareform(pdist(rng.normal(size=(15, 2))))
        perms = random_permutations(15, 20, 0)
        s = mantel_test(A, B, perms=perms)
        null = [spearmanr(squareform(A[np.ix_(p, p)]), squareform(B)).statistic for p in perms]
        assert s.null_mean == pytest.approx(np.mean(null), abs=1e-5)
        assert s.p == (1 + sum(x >= s.observed for x in null)) / 21

    def test_random_matrices_not_significant(self):
        # 40 seeded pairs of independent random distance matrices at alpha = 0.05: the count of
        # p <= 0.05 is Binomial(40, ~0.05); more than 8 has probability < 1e-3.
        hits = 0
        for seed in range(40):
            rng = np.random.default_rng(100 + seed)
            a, b = pdist(rng.normal(size=(20, 3))), pdist(rng.normal(size=(20, 3)))
            hits += mantel_test(a, b, permutations=99, seed=seed).p <= 0.05
        assert hits <= 8

    def test_bad_shapes(self):
        with pytest.raises(UserError, match="shape"):
            mantel_test(np.zeros((3, 3)), np.zeros((4, 4)))
        with pytest.raises(UserError, match="network distances"):
            mantel_test(np.zeros((2, 3)), np.zeros((2, 3)))

    def test_constant_matrix_gives_no_statistic(self):
        s = mantel_test(np.ones((5, 5)) - np.eye(5), squareform(np.arange(10.0)), permutations=9)
        assert s.observed is None and s.p is None


class TestCompareHierarchy:
    def test_planted_grouping_is_significant(self):
        labels, D = planted(n_groups=5, per=6, seed=0)
        Z = sch_linkage(squareform(D), "average")
        ref = ReferenceGrouping("planted", labels, [str(i) for i in range(5)], kind="coarse")
        ref_d = (labels[:, None] != labels[None, :]).astype(float)
        hc = compare_hierarchy(D, Z, [ref], {"planted": ref_d}, permutations=199, seed=0)
        part = hc.partitions[0]
        assert part.n_groups_network == 5
        for m in ("ari", "nmi", "fmi"):
            assert part.scores[m].observed == pytest.approx(1.0)
            assert part.scores[m].p == pytest.approx(1 / 200) and part.scores[m].z > 5
        assert hc.distances[0].spearman.p == pytest.approx(1 / 200)

    def test_random_hierarchy_is_not_significant(self):
        # Network distances independent of the reference: over 30 seeds the ARI p-value must be
        # roughly uniform; fewer than 7 of 30 below 0.05 (P < 1e-3 under the null) and a mean p near 0.5.
        ps = []
        for seed in range(30):
            rng = np.random.default_rng(seed)
            D = squareform(pdist(rng.normal(size=(30, 3))))
            ref = ReferenceGrouping("r", rng.integers(0, 5, 30), list("abcde"), kind="coarse")
            ref.labels = np.unique(ref.labels, return_inverse=True)[1]
            ref.group_names = ref.group_names[: ref.labels.max() + 1]
            hc = compare_hierarchy(D, sch_linkage(squareform(D), "average"), [ref], permutations=99, seed=seed)
            ps.append(hc.partitions[0].scores["ari"].p)
        ps = np.array(ps)
        assert (ps <= 0.05).sum() < 7 and 0.3 < ps.mean() < 0.7

    def test_null_statistic(self):
        s = null_statistic(0.5, np.array([0.1, 0.2, 0.5, 0.9]))
        assert s.p == pytest.approx(3 / 5) and s.n_null == 4
        assert null_statistic(1.0, np.array([1.0, 1.0])).z is None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A synthetic run (planted 3 super-groups) whose classes are the first 24 CIFAR-100 names."""
    from analysis.synthetic import make_synthetic_run

    labels = json.loads((ROOT / "blockout" / "data" / "cifar_labels.json").read_text())["fine_label_names"]
    return make_synthetic_run(tmp_path_factory.mktemp("runs") / "r", classes=24, clusters=6, groups=3,
                              class_names=labels[:24], seed=0, n_snapshots=2)


class TestReportAndCli:

    def test_compare_run_json_round_trip(self, run_dir):
        from analysis.run import load_run

        report = compare_run(load_run(run_dir), permutations=49, seed=0)
        assert {h.source for h in report.hierarchies} == {"memberships", "weights"}
        kinds = {r["kind"] for r in report.references}
        assert kinds == {"wordnet", "coarse"}
        again = ComparisonReport.from_dict(json.loads(report.to_json()))
        assert again.to_dict() == report.to_dict()
        coarse = next(p for p in report.hierarchies[0].partitions if p.reference == "coarse")
        # the planted super-groups are detected (seeded run; observed ARI 0.17, z 4.2, p 0.02 at 49 permutations)
        assert coarse.scores["ari"].p <= 0.05 and coarse.scores["ari"].z > 2
        text = format_report(report)
        assert "coarse" in text and "Spearman vs wordnet distances" in text

    def test_seeded_reproducible(self, run_dir):
        from analysis.run import load_run

        run = load_run(run_dir)
        a = compare_run(run, reference="coarse", permutations=29, seed=5).to_dict()
        b = compare_run(run, reference="coarse", permutations=29, seed=5).to_dict()
        assert a == b

    def test_cli(self, run_dir):
        cmd = [sys.executable, "-m", "blockout.cli", "compare", str(run_dir), "--permutations", "19", "--json",
               "--reference", "coarse", "--source", "memberships"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert [h["source"] for h in out["hierarchies"]] == ["memberships"]
        assert set(out["hierarchies"][0]["partitions"][0]) >= {"reference", "n_groups", "ari", "nmi", "fmi"}
        bad = subprocess.run([sys.executable, "-m", "blockout.cli", "compare", str(run_dir / "nope")],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

    def test_unknown_classes_wordnet_reference_is_user_error(self, tmp_path):
        from analysis.run import load_run
        from analysis.synthetic import make_synthetic_run

        run = load_run(make_synthetic_run(tmp_path / "plain", classes=6, clusters=2, groups=2, n_snapshots=1))
        with pytest.raises(UserError, match="no WordNet synset"):
            compare_run(run, reference="wordnet", permutations=5)
        report = compare_run(run, reference="all", permutations=5)
        assert any("WordNet reference skipped" in n for n in report.notes)


class TestRunWithoutWeights:
    """Regression: ``--source both`` on a run that saved no weights skipped nothing and crashed."""

    def test_weights_skipped_with_note(self, tmp_path):
        from analysis import runfolder as rf
        from analysis.run import load_run
        from analysis.synthetic import make_synthetic_run

        path = make_synthetic_run(tmp_path / "noweights", classes=6, clusters=2, groups=2, n_snapshots=2)
        index_path = path / rf.SNAPSHOT_DIR / rf.SNAPSHOT_INDEX
        index = json.loads(index_path.read_text())
        for entry in index["snapshots"]:
            file = path / rf.SNAPSHOT_DIR / entry["file"]
            arrays = {k: v for k, v in rf.load_npz(file).items() if k.startswith(rf.PROBS_PREFIX)}
            rf.save_npz(file, arrays)
            entry["has_weights"] = False
        rf.atomic_write_json(index_path, index)
        run = load_run(path)
        assert run.weight_steps() == []
        report = compare_run(run, reference="coarse", source="both", permutations=5)
        assert [h.source for h in report.hierarchies] == ["memberships"]
        assert any("weight-induced hierarchy skipped" in n for n in report.notes)
        with pytest.raises(UserError, match="saved no classifier weights"):
            compare_run(run, reference="coarse", source="weights", permutations=5)


class TestHolm:
    def test_matches_statsmodels_definition(self):
        from analysis.compare import holm

        # hand-computed step-down: sorted p 0.01, 0.02, 0.03, 0.5 times 4, 3, 2, 1, made monotone
        assert holm([0.03, 0.01, 0.5, 0.02]) == [0.06, 0.04, 0.5, 0.06]
        assert holm([]) == [] and holm([None]) == [None]

    def test_family_is_one_hierarchy_and_metric(self):
        labels, D = planted(n_groups=4, per=5)
        from analysis.wordnet.references import ReferenceGrouping

        refs = [ReferenceGrouping(name=f"r{i}", labels=labels, group_names=list("abcd"), kind="coarse")
                for i in range(3)]
        hc = compare_hierarchy(D, sch_linkage(squareform(D), "average"), refs, permutations=99, seed=0)
        for metric in ("ari", "nmi", "fmi"):
            ps = [p.scores[metric].p for p in hc.partitions]
            adj = [p.scores[metric].p_holm for p in hc.partitions]
            # three identical references: each p is multiplied by the family size (3), capped at 1
            assert adj == [min(1.0, round(3 * ps[0], 12))] * 3
