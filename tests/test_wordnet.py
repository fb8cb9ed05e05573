"""WordNet: curated table, the shipped noun hierarchy, nltk-exact similarity, references, nltk adapter."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.errors import UserError
from analysis.wordnet import (CIFAR10_SYNSETS, CIFAR100_SYNSETS, class_lch_labeler, class_synsets, coarse_grouping,
                              load_wordnet, wordnet_depth_groupings)
from analysis.wordnet import similarity as S
from analysis.wordnet.nltk_adapter import find_wordnet_files, lexnames_text, wordnet_available
from analysis.wordnet.nouns import BUNDLED_PATH, LICENSE_PATH, WordNet

ROOT = Path(__file__).resolve().parent.parent
LABELS = json.loads((ROOT / "blockout" / "data" / "cifar_labels.json").read_text())
HAVE_WORDNET = wordnet_available()
CIFAR100 = [CIFAR100_SYNSETS[c] for c in LABELS["fine_label_names"]]
CIFAR10 = [CIFAR10_SYNSETS[c] for c in LABELS["cifar10_label_names"]]

# Hand-written expectations for the senses the first-sense rule gets wrong: (synset, offset, a word of its gloss).
TRICKY = {
    "tiger": ("tiger.n.02", 2129604, "feline"),
    "seal": ("seal.n.09", 2076196, "marine mammals"),
    "ray": ("ray.n.07", 1495701, "cartilaginous fishes"),
    "whale": ("whale.n.02", 2062744, "cetacean"),
    "dolphin": ("dolphin.n.02", 2068974, "toothed whales"),
    "turtle": ("turtle.n.02", 1662784, "bony shell"),
    "beaver": ("beaver.n.07", 2363005, "rodent"),
    "otter": ("otter.n.02", 2444819, "webbed"),
    "raccoon": ("raccoon.n.02", 2508021, "nocturnal mammal"),
    "leopard": ("leopard.n.02", 2128385, "feline"),
    "lobster": ("lobster.n.02", 1982650, "crustaceans"),
    "trout": ("trout.n.02", 2537085, "fishes"),
    "flatfish": ("flatfish.n.02", 2657368, "flattened bodies"),
    "shrew": ("shrew.n.02", 1891633, "mouselike mammal"),
    "skunk": ("skunk.n.04", 2445715, "musteline mammal"),
    "table": ("table.n.02", 4379243, "furniture"),
    "television": ("television_receiver.n.01", 4405907, "receives television signals"),
    "plate": ("plate.n.04", 3959485, "food is served"),
    "castle": ("castle.n.02", 2980441, "fortified"),
    "cloud": ("cloud.n.02", 9247410, "water or ice particles"),
    "maple_tree": ("maple.n.02", 12752205, "genus Acer"),
    "oak_tree": ("oak.n.02", 12268246, "genus Quercus"),
    "palm_tree": ("palm.n.03", 12582231, "Palmae"),
    "pine_tree": ("pine.n.01", 11608250, "coniferous tree"),
    "willow_tree": ("willow.n.01", 12724942, "genus Salix"),
    "pickup_truck": ("pickup.n.01", 3930630, "light truck"),
    "sweet_pepper": ("sweet_pepper.n.02", 7720615, "capsicum peppers"),
    "lawn_mower": ("lawn_mower.n.01", 3649909, "mowing grass"),
    "aquarium_fish": ("goldfish.n.01", 1443537, "aquarium"),
}


class TestCuratedTable:
    def test_covers_every_bundled_class(self):
        assert sorted(CIFAR100_SYNSETS) == sorted(LABELS["fine_label_names"])
        assert sorted(CIFAR10_SYNSETS) == sorted(LABELS["cifar10_label_names"])

    @pytest.mark.parametrize("cls", sorted(TRICKY))
    def test_tricky_senses(self, cls):
        name, offset, gloss_word = TRICKY[cls]
        assert CIFAR100_SYNSETS[cls] == name
        info = load_wordnet()[name]
        assert info.offset == offset and info.wnid == f"n{offset:08d}"
        assert gloss_word in info.definition

    def test_every_class_is_a_physical_noun_whose_lemmas_name_it(self):
        snap = load_wordnet()
        for cls, name in {**CIFAR100_SYNSETS, **CIFAR10_SYNSETS}.items():
            info = snap[name]
            paths = snap.hypernym_paths(name)
            assert any("physical_entity.n.01" in p for p in paths), (cls, name)
            # No substance/food-flesh/person senses for the animal classes (the classic first-sense traps)
            assert not any(w in info.definition for w in ("the fur of", "the pelt", "flesh of", "a person who")), cls
            words = {lem.lower() for lem in info.lemmas}
            base = cls.replace("_tree", "")
            assert base in words or cls in words or cls in {"aquarium_fish", "boy", "girl", "couch",
                                                              "television", "automobile", "possum"}, (cls, words)


class TestShippedWordNet:
    def test_every_noun_synset(self):
        wn = load_wordnet()
        assert len(wn) == 82115 and wn.wordnet_version == "3.0"
        assert wn.max_depth("entity.n.01") == 0 and wn.parents("entity.n.01") == ()
        assert wn["tiger.n.02"].min_depth > 5 and wn.by_wnid("n02129604") == "tiger.n.02"
        # instance hypernyms are parents too: a person instance sits under its class
        info = wn["einstein.n.01"]
        assert info.hypernyms == () and "physicist.n.01" in info.instance_hypernyms
        assert "physicist.n.01" in wn.up_distances("einstein.n.01")

    def test_small_and_licensed(self):
        assert BUNDLED_PATH.stat().st_size < 5_000_000
        text = LICENSE_PATH.read_text()
        assert "WordNet 3.0 Copyright 2006 by Princeton University" in text and "Permission to use, copy" in text

    def test_loads_without_pickle(self):
        with np.load(BUNDLED_PATH, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)

    def test_lookups_by_name_wnid_and_word(self):
        wn = load_wordnet()
        assert wn.synset("Tiger.n.2") == "tiger.n.02" and wn.synset(" n02129604 ") == "tiger.n.02"
        assert wn.senses("Tiger") == ["tiger.n.01", "tiger.n.02"]
        assert wn.senses("pickup truck") == ["pickup.n.01"] and wn.senses("qwzx") == []
        assert wn.by_wnid("n99999999") is None and wn.by_wnid("tiger") is None
        for bad in ("zebra.n.09", "n99999999", "zebra"):
            with pytest.raises(UserError, match="zebra|n99999999"):
                wn.synset(bad)

    def test_bad_files_are_user_errors(self, tmp_path):
        with pytest.raises(UserError, match="not found"):
            WordNet.load(tmp_path / "missing.npz")
        (tmp_path / "bad.npz").write_bytes(b"not a zip")
        with pytest.raises(UserError, match="bad.npz"):
            WordNet.load(tmp_path / "bad.npz")
        np.savez(tmp_path / "other.npz", meta=np.frombuffer(b'{"format": "x"}', np.uint8))
        with pytest.raises(UserError, match="other.npz"):
            WordNet.load(tmp_path / "other.npz")

    def test_unknown_synset_is_a_user_error(self):
        with pytest.raises(UserError, match="zebra.n.07"):
            load_wordnet()["zebra.n.07"]


class TestSimilarity:
    def test_hand_checked_values(self):
        snap = load_wordnet()
        assert S.lowest_common_hypernyms(snap, "tiger.n.02", "lion.n.01") == ["big_cat.n.01"]
        assert S.wup_similarity(snap, "tiger.n.02", "tiger.n.02") == 1.0
        # tiger and lion: siblings under big_cat (max depth 13): 2*14 / (1 + 1 + 2*14)
        assert S.wup_similarity(snap, "tiger.n.02", "lion.n.01") == pytest.approx(28 / 30)
        assert S.shortest_path_distance(snap, "tiger.n.02", "lion.n.01") == 2
        assert S.wup_similarity(snap, "tiger.n.02", "table.n.02") < S.wup_similarity(snap, "tiger.n.02", "wolf.n.01")

    def test_distance_matrix(self):
        snap = load_wordnet()
        D = S.wordnet_distance_matrix(snap, CIFAR10)
        assert D.shape == (10, 10) and np.allclose(D, D.T) and np.all(np.diag(D) == 0)
        assert np.all((D >= 0) & (D < 1))


class TestWupMatrix:
    def test_vectorised_equals_pairwise(self):
        """Float for float, on random nouns plus the awkward cases: a class that is an ancestor of
        another, repeated synsets, instances, synsets with several hypernyms."""
        snap = load_wordnet()
        rng = np.random.default_rng(5)
        names = [snap.names[i] for i in rng.choice(len(snap), 120, replace=False)]
        names += ["einstein.n.01", "physicist.n.01", "person.n.01", "organism.n.01", "entity.n.01",
                  "tiger.n.02", "big_cat.n.01", "tiger.n.02", "paris.n.01", "city.n.01"]
        for n in names[:15]:
            names += sorted(snap.up_distances(n))[:2]
        order = rng.permutation(len(names))
        names = [names[i] for i in order]
        A, B = S.wup_matrix(snap, names), S.wup_matrix_pairwise(snap, names)
        assert np.array_equal(A, B)

    def test_cifar100_unchanged(self):
        snap = load_wordnet()
        assert np.array_equal(S.wup_matrix(snap, CIFAR100), S.wup_matrix_pairwise(snap, CIFAR100))

    def test_empty_and_single(self):
        snap = load_wordnet()
        assert S.wup_matrix(snap, []).shape == (0, 0)
        assert S.wup_matrix(snap, ["dog.n.01"]).tolist() == [[1.0]]


@pytest.fixture(scope="module")
def wn(tmp_path_factory):
    """nltk's reader over the local WordNet 3.0 files, prepared in a temporary nltk data folder."""
    from analysis.wordnet.nltk_adapter import load_nltk_wordnet

    return load_nltk_wordnet(data_dir=tmp_path_factory.mktemp("nltk_data"))


def _closure(wn: WordNet, names) -> set[str]:
    out: set[str] = set()
    for n in names:
        out |= set(wn.up_distances(n))
    return out


def _sample(k: int, seed: int) -> list[str]:
    wn = load_wordnet()
    rng = np.random.default_rng(seed)
    return [wn.names[i] for i in rng.choice(len(wn), size=k, replace=False)]


def _same_synset(wn: WordNet, s, name: str) -> None:
    info = wn[name]
    assert (s.name(), s.offset(), tuple(s.lemma_names()), s.definition()) == (name, info.offset, info.lemmas,
                                                                               info.definition)
    assert (s.min_depth(), s.max_depth()) == (info.min_depth, info.max_depth)
    assert sorted(h.name() for h in s.hypernyms()) == sorted(info.hypernyms)
    assert sorted(h.name() for h in s.instance_hypernyms()) == sorted(info.instance_hypernyms)


@pytest.mark.skipif(not HAVE_WORDNET, reason="nltk or WordNet 3.0 files not installed")
class TestAgainstNltk:
    def test_synsets_match(self, wn):
        """Every synset above the CIFAR classes and 3000 random ones (the slow test checks all)."""
        snap = load_wordnet()
        for name in sorted(_closure(snap, CIFAR100 + CIFAR10) | set(_sample(3000, seed=1))):
            _same_synset(snap, wn.synset(name), name)

    def test_word_senses_match_index(self, wn):
        snap = load_wordnet()
        words = sorted({lem.lower() for n in _sample(2000, seed=2) for lem in snap[n].lemmas})
        for w in words + ["tiger", "crane", "a", "dog"]:
            offsets = wn._lemma_pos_offset_map[w]["n"]
            assert [snap[n].offset for n in snap.senses(w)] == offsets, w

    def test_similarity_matches_for_all_cifar100_pairs(self, wn):
        snap = load_wordnet()
        for a, b in itertools.combinations(CIFAR100, 2):
            sa, sb = wn.synset(a), wn.synset(b)
            assert S.wup_similarity(snap, a, b) == sa.wup_similarity(sb), (a, b)
            assert S.lowest_common_hypernyms(snap, a, b) == [s.name() for s in sa.lowest_common_hypernyms(sb)]
            assert S.shortest_path_distance(snap, a, b) == sa.shortest_path_distance(sb)

    def test_similarity_matches_for_random_pairs(self, wn):
        """Any nouns, also instances and synsets with several hypernyms (both argument orders)."""
        snap = load_wordnet()
        names = _sample(300, seed=3) + ["einstein.n.01", "person.n.01", "paris.n.01", "france.n.01"]
        rng = np.random.default_rng(4)
        for i, j in rng.integers(0, len(names), size=(600, 2)):
            a, b = names[i], names[j]
            sa, sb = wn.synset(a), wn.synset(b)
            assert S.wup_similarity(snap, a, b) == sa.wup_similarity(sb), (a, b)
            assert S.path_similarity(snap, a, b) == sa.path_similarity(sb), (a, b)
            assert S.lowest_common_hypernyms(snap, a, b) == [s.name() for s in sa.lowest_common_hypernyms(sb)]

    def test_rebuild_script_reproduces_the_shipped_file(self, tmp_path):
        out = tmp_path / "wn.npz"
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_wordnet.py"), "-o", str(out)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == BUNDLED_PATH.read_bytes()
        assert (tmp_path / LICENSE_PATH.name).read_text() == LICENSE_PATH.read_text()

    def test_build_script_without_files_is_one_line(self, tmp_path):
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_wordnet.py"), "--wordnet", str(tmp_path),
                            "-o", str(tmp_path / "x.npz")], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "wordnet-base" in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_WORDNET, reason="nltk or WordNet 3.0 files not installed")
def test_every_synset_matches_nltk(wn):
    snap = load_wordnet()
    seen = 0
    for s in wn.all_synsets("n"):
        _same_synset(snap, s, s.name())
        seen += 1
    assert seen == len(snap)


class TestReferences:
    def test_class_synsets_by_wnid_table_and_name(self):
        got = class_synsets(["x", "tiger", "qwzx", "lion.n.01"], wnids=["n02129604", None, None, None])
        assert got == ["tiger.n.02", "tiger.n.02", None, "lion.n.01"]

    def test_depth_groupings_refine(self):
        snap = load_wordnet()
        groups = wordnet_depth_groupings(snap, CIFAR100)
        sizes = [g.n_groups for g in groups]
        assert sizes == sorted(sizes) and 1 < sizes[0] and sizes[-1] < 100
        for coarse, fine in zip(groups, groups[1:]):  # deeper partitions refine shallower ones
            pairs = set(zip(fine.labels.tolist(), coarse.labels.tolist()))
            assert len({f for f, _ in pairs}) == len(pairs)
        cats = [CIFAR100_SYNSETS[c] for c in ("tiger", "lion", "leopard")]
        idx = [CIFAR100.index(c) for c in cats]
        assert len({groups[-2].labels[i] for i in idx}) == 1

    def test_coarse_grouping_cifar100(self):
        g = coarse_grouping(LABELS["fine_to_coarse"], LABELS["coarse_label_names"])
        assert g.n_groups == 20 and np.bincount(g.labels).tolist() == [5] * 20

    def test_lch_labeler(self):
        label = class_lch_labeler(["tiger", "lion", "wolf", "qwzx"])
        assert label([0, 1]) == "big_cat.n.01" and label([0, 2]) == "carnivore.n.01" and label([3]) is None
        # names WordNet knows resolve (most frequent sense); the user's map overrides
        assert class_lch_labeler(["zebra", "horse"])([0, 1]) == "equine.n.01"
        assert class_lch_labeler(["crane", "stork"], overrides={"crane": "crane.n.05"})([0, 1]) == "wading_bird.n.01"


class TestNltkAdapter:
    def test_lexnames(self):
        lines = lexnames_text().splitlines()
        assert len(lines) == 45 and lines[3] == "03\tnoun.Tops\t1" and lines[29] == "29\tverb.body\t2"

    def test_missing_files_are_a_user_error(self, tmp_path):
        from analysis.wordnet.nltk_adapter import prepare_nltk_wordnet

        assert find_wordnet_files(tmp_path) is None
        with pytest.raises(UserError, match=str(tmp_path)):
            prepare_nltk_wordnet(tmp_path, tmp_path / "out")


class TestCifarUnchanged:
    """Regression: the references for CIFAR-100/10 are exactly those of the former 280-synset snapshot.

    ``tests/data/cifar_wordnet_references.json`` was written by the code before the whole WordNet
    was shipped (commit 154dc25): every depth grouping and a SHA-256 of the WordNet distance matrix.
    """

    GOLDEN = json.loads((ROOT / "tests" / "data" / "cifar_wordnet_references.json").read_text())

    @pytest.mark.parametrize("key", ["cifar100", "cifar10"])
    def test_same_groupings_and_distances(self, key):
        import hashlib

        from analysis.compare import reference_set

        gold = self.GOLDEN[key]
        coarse = (LABELS["fine_to_coarse"], LABELS["coarse_label_names"]) if key == "cifar100" else (None, None)
        groups, dist, notes = reference_set(gold["class_names"], None, *coarse, reference="all")
        got = [{"name": g.name, "depth": g.depth, "depths": g.meta.get("depths"), "labels": g.labels.tolist(),
                "group_names": g.group_names} for g in groups]
        assert got == gold["groupings"]
        D = np.ascontiguousarray(dist["wordnet"], dtype="<f8")
        assert float(D.sum()) == gold["wordnet_distances_sum"]
        assert hashlib.sha256(D.tobytes()).hexdigest() == gold["wordnet_distances_sha256"]
        assert not any("guessed" in n for n in notes)
