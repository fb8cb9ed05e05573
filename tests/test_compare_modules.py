"""``analysis.compare`` split by concern: pure statistics (``analysis.stats``), the records of a
comparison (``analysis.compare_records``), its text (``analysis.compare_report``) and the
orchestration (``analysis.compare``), whose old names all still import from ``analysis.compare``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import analysis.compare as compare

ROOT = Path(__file__).resolve().parents[1]


def _imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("name", compare.__all__)
def test_every_old_name_imports_from_compare_as_its_defining_object(name):
    obj = getattr(compare, name)
    home = getattr(obj, "__module__", None)
    if home is not None and home != "analysis.compare":
        assert home in ("analysis.stats", "analysis.compare_records", "analysis.compare_report")
        assert getattr(importlib.import_module(home), name) is obj


def test_names_are_defined_where_they_belong():
    for name in ("holm", "null_statistic", "null_is_constant", "mantel_test", "permuted_partition_scores",
                 "partition_scores", "compare_partition", "random_permutations", "degenerate_partition",
                 "coarse_distances", "Statistic"):
        assert getattr(compare, name).__module__ == "analysis.stats", name
    assert compare.format_report.__module__ == compare.degenerate_note.__module__ == "analysis.compare_report"
    assert compare.ComparisonReport.__module__ == compare.best_partition.__module__ == "analysis.compare_records"
    assert {f.__module__ for f in (compare.compare_run, compare.compare_hierarchy, compare.reference_set)} == {
        "analysis.compare"}


def test_statistics_depend_on_no_orchestration_or_formatting():
    assert {m for m in _imports("analysis.stats") if m.startswith("analysis")} == {"analysis.errors"}
    assert not {m for m in _imports("analysis.compare_records") if m.startswith("analysis")} - {
        "analysis.errors", "analysis.stats"}
    report = _imports("analysis.compare_report")
    assert "analysis.compare" not in report and not any(m.startswith(("scipy", "sklearn")) for m in report)
