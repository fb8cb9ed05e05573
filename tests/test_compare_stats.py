"""Regressions of issue 8 in analysis.compare: rounding-noise nulls gave z ~ 1e15, and a reference of
one class against all the rest was eligible as the headline row."""

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.compare import (ComparisonReport, HierarchyComparison, PartitionComparison, Statistic,
                              best_partition, compare_partition, compare_run, degenerate_partition,
                              format_report, null_is_constant, null_statistic, permuted_partition_scores,
                              random_permutations)

ROOT = Path(__file__).resolve().parents[1]


class TestConstantNull:
    def _tiny_spread_case(self):
        # the network dendrogram cut gives a single group (as the demo's connectivity hierarchy
        # does at shallow WordNet depths): every permutation scores the same, up to rounding
        ref = np.sort(np.random.default_rng(0).integers(0, 5, 100))
        lab = np.ones(100, dtype=np.int64)
        return ref, lab, random_permutations(100, 99, seed=0)

    def test_case_reproduces_rounding_spread(self):
        ref, lab, perms = self._tiny_spread_case()
        null = permuted_partition_scores(ref, lab, perms)
        # the condition of the bug: a null std that is not exactly 0 but pure rounding
        assert 0 < null["nmi"].std() < 1e-25 and 0 < null["fmi"].std() < 1e-15
        # what the old `std > 0` test turned into a z: |z| ~ 1e15
        assert abs((0.0 - null["nmi"].mean()) / null["nmi"].std()) > 1e12

    def test_z_is_none(self):
        ref, lab, perms = self._tiny_spread_case()
        stats = compare_partition(ref, lab, perms)
        for m in ("ari", "nmi", "fmi"):
            assert stats[m].z is None, (m, stats[m])
            assert stats[m].p == 1.0  # every null draw ties with the observed value

    def test_real_spread_keeps_z(self):
        s = null_statistic(0.3, np.array([0.0, 0.1, 0.2, 0.1]))
        assert s.z == pytest.approx((0.3 - 0.1) / np.std([0.0, 0.1, 0.2, 0.1]))
        # a small but real spread (ARI steps of 1e-6 at 1000 classes) is not rounding
        assert not null_is_constant(1e-6, np.array([0.0, 1e-6, 2e-6]))
        assert null_is_constant(0.0, np.zeros(5)) and null_is_constant(2.0, np.full(3, 2.0))

    def test_cli_text_and_json_on_the_demo(self, capsys):
        from blockout.cli import main

        # the command of the issue, on the bundled run (fewer permutations to stay fast)
        argv = ["compare", str(ROOT / "checkpoints" / "demo"), "--method", "connectivity", "--source", "memberships",
                "--reference", "wordnet", "--permutations", "49"]
        assert main(argv + ["--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        zs = [p[m]["z"] for h in out["hierarchies"] for p in h["partitions"] for m in ("ari", "nmi", "fmi")]
        assert all(z is None or abs(z) < 1e3 for z in zs), zs
        # rows whose network cut is a single group have a constant null: z null
        single = [p for p in out["hierarchies"][0]["partitions"] if p["n_groups_network"] == 1]
        assert single and all(p[m]["z"] is None for p in single for m in ("ari", "nmi", "fmi"))
        assert main(argv) == 0
        table = [l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("wordnet_d")]
        assert table and all("e+" not in l and len(l) < 120 for l in table), table
        assert any("z   n/a" in l for l in table)


def _stat(obs, p, p_holm):
    return Statistic(obs, 0.0, 0.1, obs / 0.1, p, 99, p_holm)


def _row(name, ari, p_holm, degenerate=False, n_groups=5):
    s = _stat(ari, p_holm, p_holm)
    return PartitionComparison(name, "wordnet", 1, n_groups, n_groups, {"ari": s, "nmi": s, "fmi": s}, degenerate)


class TestDegenerateReference:
    def test_definition(self):
        assert degenerate_partition([0] + [1] * 99)
        assert degenerate_partition([1] * 50 + [0] + [1] * 49)
        assert not degenerate_partition([0, 0] + [1] * 98)  # two classes apart: a real (small) group
        assert not degenerate_partition([0, 1, 2] + [3] * 97)  # several groups
        assert not degenerate_partition([0, 1])  # two classes: a real split

    def test_best_row_skips_one_vs_rest(self):
        h = HierarchyComparison("memberships", "probability", [
            _row("wordnet_d1", 1.0, 0.004, degenerate=True, n_groups=2),
            _row("wordnet_d4", 0.3, 0.02),
            _row("coarse", 0.5, 0.02),
        ], [])
        best = best_partition(h)
        assert best.reference == "coarse"  # same p as d4, larger ARI; d1 never
        only = HierarchyComparison("memberships", "probability", [_row("wordnet_d1", 1.0, 0.004, True, 2)], [])
        assert best_partition(only) is None

    def test_demo_marks_wordnet_d1(self):
        from analysis.run import load_run

        report = compare_run(load_run(ROOT / "checkpoints" / "demo"), reference="wordnet", source="memberships",
                             permutations=19)
        refs = {r["name"]: r for r in report.references}
        assert refs["wordnet_d1"]["degenerate"] and refs["wordnet_d1"]["n_groups"] == 2
        assert not any(r["degenerate"] for n, r in refs.items() if n != "wordnet_d1")
        assert any("wordnet_d1 is one class (forest) against the other 99" in n for n in report.notes)
        h = report.hierarchies[0]
        assert [p.reference for p in h.partitions if p.degenerate] == ["wordnet_d1"]
        assert best_partition(h).reference != "wordnet_d1"
        assert "1-vs-rest" in format_report(report)
        again = ComparisonReport.from_dict(json.loads(report.to_json()))
        assert again.to_dict() == report.to_dict()
