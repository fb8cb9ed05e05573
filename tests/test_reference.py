"""Your own reference hierarchy (compare --reference FILE.json) and WordNet synset overrides (--synsets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.compare import compare_run, format_report, reference_set
from analysis.errors import UserError
from analysis.reference import align_classes, depth_partitions, file_reference, parse_hierarchy, tree_distances

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["tiger", "lion", "wolf", "fox", "car", "truck", "crane", "sneaker"]
TREE = {"animals": {"cats": ["tiger", "lion"], "dogs": ["wolf", "fox"], "birds": ["crane"]},
        "things": {"vehicles": ["car", "truck"], "clothes": {"shoes": ["sneaker"]}}}


def cli(*args, cwd=ROOT):
    """The real command line in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "blockout.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=180)


def main(capsys, *args):
    """``blockout.cli.main`` in this process (faster): ``(exit code, stdout, stderr)``."""
    from blockout.cli import main as blockout_main

    code = blockout_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """A planted run whose classes are WordNet words: two super-groups (animals, things) of two clusters."""
    from analysis.synthetic import make_synthetic_run

    return make_synthetic_run(tmp_path_factory.mktemp("runs") / "named", classes=8, clusters=4, groups=2,
                              hidden=(16, 16), trunk=8, n_snapshots=2, class_names=CLASSES, seed=3)


class TestParsing:
    def test_align_accepts_case_and_spaces(self):
        h = parse_hierarchy({"g": ["Pickup Truck", "lawn-mower"]})
        assert align_classes(h, ["lawn_mower", "pickup_truck"]) == [("g",), ("g",)]

    def test_unknown_and_missing_names_are_one_line(self):
        h = parse_hierarchy({"cats": ["tiger", "lion", "puma"], "dogs": ["wolf"]})
        with pytest.raises(UserError) as exc:
            align_classes(h, ["tiger", "lion", "wolf", "fox"], "mine.json")
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith("mine.json:")
        assert "match no class of the run: 'puma'" in msg and "missing from the file: 'fox'" in msg

    def test_two_names_for_one_class(self):
        h = parse_hierarchy({"a": ["Tiger"], "b": ["tiger"]})
        with pytest.raises(UserError, match="already listed"):
            align_classes(h, ["tiger"])

    def test_depth_partitions_uneven_branches(self):
        paths = align_classes(parse_hierarchy(TREE), CLASSES)
        parts = depth_partitions(paths)
        # depth 3 only moves sneaker from 'clothes' to 'shoes': the same partition as depth 2, left out
        assert [d for d, _, _ in parts] == [1, 2]
        d1, d2 = (np.array(lab) for _, lab, _ in parts)
        assert d1.tolist() == [0, 0, 0, 0, 1, 1, 0, 1]
        assert d2.tolist() == [0, 0, 1, 1, 2, 2, 3, 4] and parts[1][2][-1] == "things/clothes"
        assert [lab for _, lab, _ in depth_partitions([("a", "x"), ("a", "y"), ("b",)])] == [[0, 0, 1], [0, 1, 2]]

    def test_tree_distances(self):
        paths = align_classes(parse_hierarchy(TREE), CLASSES)
        D = tree_distances(paths)
        assert np.allclose(D, D.T) and (np.diag(D) == 0).all()
        i = {c: k for k, c in enumerate(CLASSES)}
        assert D[i["tiger"], i["lion"]] == 2  # siblings in 'cats'
        assert D[i["tiger"], i["wolf"]] == 4  # through 'animals'
        assert D[i["tiger"], i["car"]] == 6  # through the root
        assert D[i["tiger"], i["sneaker"]] == 7  # sneaker sits one level deeper
        assert D[i["crane"], i["tiger"]] == 4

    def test_one_level_file_distances_rank_like_coarse(self):
        from analysis.compare import coarse_distances

        groups, name, D = file_reference({"a": ["x", "y"], "b": ["z"]}, ["x", "y", "z"], name="f")
        assert name == "f" and [g.name for g in groups] == ["f_d1"]
        assert ((D > 2) == (coarse_distances([0, 0, 1]) > 0)).all()


class TestCompareWithFile:
    def test_file_is_a_reference_with_the_same_statistics(self, named_run, tmp_path):
        """The file's top level is the planted super-grouping, i.e. the run's coarse labels: same partition,
        same permutations -> exactly the coarse reference's statistics."""
        from analysis.run import load_run

        run = load_run(named_run)
        groups = {}
        for c, g in zip(run.class_names, run.coarse_labels):
            groups.setdefault(f"top{g}", {}).setdefault(f"sub{CLASSES.index(c) * 4 // 8}", []).append(c)
        path = tmp_path / "planted.json"
        path.write_text(json.dumps(groups))
        report = compare_run(run, reference=["coarse", str(path)], permutations=49, seed=2)
        refs = {r["name"]: r for r in report.references}
        assert {"coarse", "planted_d1", "planted_d2"} <= set(refs) and refs["planted_d2"]["n_groups"] == 4
        assert refs["planted_d1"]["kind"] == "file" and refs["planted_d2"]["depth"] == 2
        for h in report.hierarchies:
            parts = {p.reference: p for p in h.partitions}
            for m in ("ari", "nmi", "fmi"):
                a, b = parts["coarse"].scores[m], parts["planted_d1"].scores[m]
                assert (a.observed, a.null_mean, a.p) == (b.observed, b.null_mean, b.p)
            assert {d.reference for d in h.distances} == {"coarse", "planted"}
        # the planted clusters are the file's second level: found exactly by the weight hierarchy
        w = next(h for h in report.hierarchies if h.source == "weights")
        d2 = next(p for p in w.partitions if p.reference == "planted_d2")
        assert d2.scores["ari"].observed == pytest.approx(1.0) and d2.scores["ari"].p <= 0.05
        assert "planted_d2" in format_report(report)

    def test_file_alone_skips_wordnet(self, named_run, tmp_path):
        path = tmp_path / "tree.json"
        path.write_text(json.dumps(TREE))
        g, d, notes = reference_set(CLASSES, reference=str(path))
        assert {x.kind for x in g} == {"file"} and list(d) == ["tree"]

    def test_missing_file_and_bad_keyword(self, tmp_path):
        with pytest.raises(UserError, match="not found"):
            reference_set(CLASSES, reference=str(tmp_path / "none.json"))
        with pytest.raises(UserError, match="wordnet"):
            reference_set(CLASSES, reference=[])
        with pytest.raises(UserError, match="'wordnt' is neither"):  # a typo of a keyword
            reference_set(CLASSES, reference="wordnt")

    def test_cli_reference_and_errors(self, named_run, tmp_path, capsys):
        path = tmp_path / "tree.json"
        path.write_text(json.dumps(TREE))
        r = cli("compare", named_run, "--reference", "all", "--reference", path, "--json", "--permutations", "9")
        assert r.returncode == 0, r.stderr
        kinds = {x["kind"] for x in json.loads(r.stdout)["references"]}
        assert kinds == {"wordnet", "coarse", "file"}
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"cats": ["tiger", "lion", "puma"]}))
        code, _, err = main(capsys, "compare", named_run, "--reference", bad)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "puma" in err and "missing from the file" in err


class TestGuessesAndOverrides:
    def test_guesses_are_reported_in_text_and_json(self, named_run, capsys):
        code, out, err = main(capsys, "compare", named_run, "--json", "--permutations", "9", "--reference", "wordnet")
        assert code == 0, err
        notes = json.loads(out)["notes"]
        guess = next(n for n in notes if n.startswith("WordNet synset guessed"))
        # tiger is curated (tiger.n.02); crane's most frequent sense is a writer -- listed for checking
        assert "'crane' -> crane.n.01 (United States writer" in guess and "'tiger'" not in guess
        assert "--synsets" in guess
        code, text, _ = main(capsys, "compare", named_run, "--permutations", "9", "--reference", "wordnet")
        assert code == 0 and "note: WordNet synset guessed" in text

    def test_override_file_wins(self, named_run, tmp_path, capsys):
        from analysis.run import load_run

        m = tmp_path / "syn.json"
        m.write_text(json.dumps({"crane": "crane.n.05", "Sneaker": "n04199027", "tiger": "tiger.n.01"}))
        run = load_run(named_run)
        plain = compare_run(run, reference="wordnet", permutations=9)
        over = compare_run(run, reference="wordnet", permutations=9, synsets=str(m))
        guess = next(n for n in over.notes if n.startswith("WordNet synset guessed"))
        assert "crane" not in guess and "sneaker" not in guess and "1 of 8 classes: 'car' -> car.n.01" in guess
        assert over.to_dict()["hierarchies"] != plain.to_dict()["hierarchies"]
        code, out, err = main(capsys, "compare", named_run, "--synsets", m, "--json", "--permutations", "9")
        assert code == 0, err
        assert not any("crane" in n for n in json.loads(out)["notes"])

    @pytest.mark.parametrize("content,message", [
        ({"heron": "heron.n.02"}, "match no class of the run: 'heron'"),
        ({"crane": "crane.n.99"}, "no noun synset 'crane.n.99'"),
        ({"crane": 5}, "must map a class name"),
        (["crane"], "expected a JSON object"),
    ])
    def test_bad_override_files_are_one_line(self, named_run, tmp_path, content, message, capsys):
        m = tmp_path / "syn.json"
        m.write_text(json.dumps(content))
        code, _, err = main(capsys, "compare", named_run, "--synsets", m, "--permutations", "5")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert message in err and str(m) in err


def test_export_takes_the_synset_map(named_run, tmp_path, capsys):
    """The branch tree's WordNet labels resolve classes like compare does; the map is checked the same way."""
    good, bad = tmp_path / "syn.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"crane": "crane.n.05"}))
    bad.write_text(json.dumps({"heron": "heron.n.02"}))
    code, out, err = main(capsys, "export", named_run, "--format", "json", "-o", tmp_path / "t.json", "--synsets", good)
    assert code == 0, err
    labels = {n.get("label", "") for n in json.loads((tmp_path / "t.json").read_text())["nodes"]}
    assert any(lab.startswith("big_cat.n.01") for lab in labels)
    code, _, err = main(capsys, "export", named_run, "--format", "json", "-o", tmp_path / "u.json", "--synsets", bad)
    assert code == 2 and "heron" in err and not (tmp_path / "u.json").exists()
