"""Datasets: hierarchy parsing, synthetic generator, CIFAR reading (restricted unpickling), image folders."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct

import numpy as np
import pytest
import torch

from blockout.data import DatasetInfo, load_dataset, parse_hierarchy
from blockout.data.cifar import safe_unpickle
from blockout.data.hierarchy import cifar100_hierarchy, load_hierarchy
from blockout.data.info import INFO_KEYS
from blockout.data.synthetic import SyntheticSpec, generate_synthetic
from blockout.errors import UserError

TOY = {"birds": ["owl", "finch"], "tools": {"cutting": ["saw", "knife"], "striking": ["hammer"]}}


# ---------------------------------------------------------------------------------------------
# hierarchy


class TestHierarchy:
    def test_flat_and_nested(self, tmp_path):
        f = tmp_path / "h.json"
        f.write_text(json.dumps(TOY))
        h = load_hierarchy(f)
        assert h.class_names == ["owl", "finch", "saw", "knife", "hammer"]
        assert h.coarse_names == ["birds", "tools"]
        assert h.coarse_labels == [0, 0, 1, 1, 1]
        assert h.paths == [("birds",), ("birds",), ("tools", "cutting"), ("tools", "cutting"), ("tools", "striking")]
        assert h.depth == 2
        assert h.groups() == [("birds",), ("tools",), ("tools", "cutting"), ("tools", "striking")]
        assert h.to_json() == TOY

    def test_cifar100_default(self):
        h = cifar100_hierarchy()
        assert h.num_classes == 100 and len(h.coarse_names) == 20
        assert np.bincount(h.coarse_labels).tolist() == [5] * 20
        i = h.class_names.index("tiger")
        assert h.coarse_names[h.coarse_labels[i]] == "large_carnivores"

    @pytest.mark.parametrize(
        "obj, fragment",
        [
            ({"a": ["x"], "b": ["x"]}, "appears twice"),
            ({"a": []}, "'a' is empty"),
            ({"a": {"b": {}}}, "'a/b' is empty"),
            ({"a": ["x", 3]}, "class names must be non-empty strings"),
            ({"a": "x"}, "must map to a list"),
            (["x"], "expected a JSON object"),
            ({}, "no groups"),
            ({"a": {"a": ["x"]}}, "same name"),
        ],
    )
    def test_errors_are_one_line_naming_the_file(self, tmp_path, obj, fragment):
        f = tmp_path / "bad.json"
        f.write_text(json.dumps(obj))
        with pytest.raises(UserError) as exc:
            load_hierarchy(f)
        msg = str(exc.value)
        assert fragment in msg and str(f) in msg and "\n" not in msg

    def test_unreadable_files(self, tmp_path):
        with pytest.raises(UserError, match="not found"):
            load_hierarchy(tmp_path / "nope.json")
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        with pytest.raises(UserError, match="not valid JSON"):
            load_hierarchy(bad)

    def test_depth_mismatch_allowed(self):
        h = parse_hierarchy({"a": {"b": {"c": ["x"]}}, "d": ["y"]})
        assert h.paths == [("a", "b", "c"), ("d",)] and h.depth == 3


# ---------------------------------------------------------------------------------------------
# synthetic


SMALL = dict(samples_per_class=4, test_samples_per_class=2)


class TestSynthetic:
    def test_determinism(self):
        a = load_dataset("synthetic", hierarchy=TOY, seed=3, **SMALL)
        b = load_dataset("synthetic", hierarchy=TOY, seed=3, **SMALL)
        c = load_dataset("synthetic", hierarchy=TOY, seed=4, **SMALL)
        for i in (0, 1):
            xa, ya = a[i].tensors()
            xb, yb = b[i].tensors()
            xc, _ = c[i].tensors()
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert not torch.equal(xa, xc)

    def test_golden_checksum(self):
        # Pins the generator's output bit for bit (numpy PCG64 + float64 rendering + uint8
        # quantisation), so a change in the random streams or the model cannot go unnoticed.
        tx, ty, vx, vy, _ = generate_synthetic(parse_hierarchy(TOY), SyntheticSpec(**SMALL), seed=0)
        digest = hashlib.sha256(tx.tobytes() + vx.tobytes()).hexdigest()[:16]
        assert digest == GOLDEN_DIGEST

    def test_test_set_independent_of_train_size(self):
        _, t1, _ = load_dataset("synthetic", hierarchy=TOY, samples_per_class=3, test_samples_per_class=2)
        _, t2, _ = load_dataset("synthetic", hierarchy=TOY, samples_per_class=7, test_samples_per_class=2)
        assert torch.equal(t1.images, t2.images)

    def test_shapes_labels_info(self, tmp_path):
        f = tmp_path / "toy.json"
        f.write_text(json.dumps(TOY))
        train, test, info = load_dataset("synthetic", hierarchy=str(f), image_size=16, **SMALL)
        assert isinstance(info, DatasetInfo)
        assert len(train) == 5 * 4 and len(test) == 5 * 2
        x, y = train[7]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and isinstance(y, int) and y == 1
        assert train.targets.tolist() == sorted([c for c in range(5) for _ in range(4)])
        js = info.to_json()
        assert tuple(sorted(js)) == tuple(sorted(INFO_KEYS))
        assert js["class_names"] == ["owl", "finch", "saw", "knife", "hammer"]
        assert js["coarse_names"] == ["birds", "tools"] and js["coarse_labels"] == [0, 0, 1, 1, 1]
        assert js["hierarchy"] == TOY and js["wnids"] is None
        assert js["input_shape"] == [3, 16, 16] and js["train_size"] == 20 and js["test_size"] == 10
        json.dumps(js)  # JSON-able

    def test_default_is_cifar100_structure(self):
        train, test, info = load_dataset("synthetic", samples_per_class=1, test_samples_per_class=1)
        assert info.num_classes == 100 and len(info.coarse_names) == 20
        assert len(train) == 100 and train.images.shape[1:] == (3, 32, 32)
        x, _ = train.tensors()
        # Normalised: roughly zero mean, unit variance.
        assert abs(x.mean().item()) < 0.1 and 0.7 < x.std().item() < 1.3

    def test_planted_structure(self):
        h = parse_hierarchy(TOY)
        spec = SyntheticSpec(**SMALL)
        *_, s = generate_synthetic(h, spec, seed=0)
        nf = spec.global_features + 4 * spec.features_per_group  # birds, tools, cutting, striking
        assert s.means.shape == (5, nf)
        owners = s.owners
        cutting = [i for i, o in enumerate(owners) if o == ("tools", "cutting")]
        birds = [i for i, o in enumerate(owners) if o == ("birds",)]
        tools = [i for i, o in enumerate(owners) if o == ("tools",)]
        # Members of a group show its features; outsiders do not.
        assert s.member[2][cutting].all() and not s.member[4][cutting].any() and not s.member[0][cutting].any()
        assert s.member[0][birds].all() and not s.member[2][birds].any()
        # saw and knife share their 'tools' offset (same child 'cutting') but differ at 'cutting'.
        assert np.array_equal(s.means[2][tools], s.means[3][tools])
        assert not np.array_equal(s.means[2][cutting], s.means[3][cutting])
        assert not np.array_equal(s.means[2][tools], s.means[4][tools])

    def test_group_features_are_readable(self):
        # Seeded statistical check: the mean energy in the group-owned features separates the two
        # top-level groups (members vs outsiders) by a wide margin.
        h = parse_hierarchy({"g1": ["a", "b"], "g2": ["c", "d"]})
        spec = SyntheticSpec(samples_per_class=40, test_samples_per_class=1, max_shift=0, noise=0.5)
        tx, ty, _, _, s = generate_synthetic(h, spec, seed=0)
        x = (tx.astype(np.float64) - 127.5).reshape(len(tx), -1)
        g1 = [i for i, o in enumerate(s.owners) if o == ("g1",)]
        basis = s.basis.reshape(len(s.owners), 2, -1)[g1]  # (F, 2, D)
        energy = ((np.einsum("nd,fkd->nfk", x, basis)) ** 2).sum(axis=(1, 2))
        inside, outside = energy[ty < 2].mean(), energy[ty >= 2].mean()
        assert inside > 3 * outside

    def test_bad_options(self):
        with pytest.raises(UserError, match="unknown option"):
            load_dataset("synthetic", nosie=1.0)
        with pytest.raises(UserError, match="noise"):
            load_dataset("synthetic", hierarchy=TOY, noise=-1.0, **SMALL)
        with pytest.raises(UserError, match="samples_per_class"):
            load_dataset("synthetic", samples_per_class=0)
        with pytest.raises(UserError, match="unknown dataset"):
            load_dataset("svhn")


# sha256 prefix of the TOY dataset at seed 0 (numpy 2.x PCG64 streams); see test_golden_checksum.
GOLDEN_DIGEST = "eee61f26e830667d"


# ---------------------------------------------------------------------------------------------
# CIFAR (fake files in the real format)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 ``str`` opcodes (BINSTRING), as cPickle did for the real files."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _py2_dump(obj, path):
    import io

    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # The real files name numpy 1's module path.
    data = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)


def _batch(rng, n, fine=None):
    d = {b"batch_label": b"fake batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         b"filenames": [b"img_%d.png" % i for i in range(n)]}
    if fine is None:
        d[b"labels"] = [int(v) for v in rng.integers(0, 10, n)]
    else:
        d[b"fine_labels"] = [int(v) for v in fine]
        d[b"coarse_labels"] = [int(v) for v in np.asarray(FINE_TO_COARSE)[fine]]
    return d


from blockout.data.hierarchy import cifar_labels  # noqa: E402

FINE_TO_COARSE = cifar_labels()["fine_to_coarse"]


@pytest.fixture
def cifar10_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for i in range(1, 6):
        _py2_dump(_batch(rng, 6), d / f"data_batch_{i}")
    _py2_dump(_batch(rng, 4), d / "test_batch")
    _py2_dump({b"label_names": [n.encode() for n in cifar_labels()["cifar10_label_names"]],
               b"num_cases_per_batch": 6, b"num_vis": 3072}, d / "batches.meta")
    return tmp_path


@pytest.fixture
def cifar100_dir(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    labels = cifar_labels()
    _py2_dump(_batch(rng, 200, fine=np.arange(200) % 100), d / "train")
    _py2_dump(_batch(rng, 100, fine=np.arange(100)), d / "test")
    _py2_dump({b"fine_label_names": [n.encode() for n in labels["fine_label_names"]],
               b"coarse_label_names": [n.encode() for n in labels["coarse_label_names"]]}, d / "meta")
    return tmp_path


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


class TestCifar:
    def test_cifar10(self, cifar10_dir):
        train, test, info = load_dataset("cifar10", data_dir=cifar10_dir)
        assert len(train) == 30 and len(test) == 4
        assert info.class_names[0] == "airplane" and info.coarse_names is None and info.wnids is None
        x, y = train[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= y < 10
        # Channel-major layout: the first 1024 bytes are the red plane.
        raw = safe_unpickle(cifar10_dir / "cifar-10-batches-py" / "data_batch_1")[b"data"]
        assert torch.equal(train.images[0, 0].flatten(), torch.from_numpy(raw[0, :1024].copy()))
        xs, _ = train.tensors()
        assert xs.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # normalised with the train statistics
        # The folder itself is accepted too.
        assert len(load_dataset("cifar10", data_dir=cifar10_dir / "cifar-10-batches-py")[0]) == 30

    def test_cifar100_coarse(self, cifar100_dir):
        train, test, info = load_dataset("cifar100", data_dir=cifar100_dir, samples_per_class=1)
        assert len(train) == 100 and len(test) == 100
        assert info.coarse_names == cifar_labels()["coarse_label_names"]
        assert info.coarse_labels == FINE_TO_COARSE
        assert sorted(train.targets.tolist()) == list(range(100))
        assert info.to_json()["hierarchy"]["large_carnivores"] == ["bear", "leopard", "lion", "tiger", "wolf"]

    def test_malicious_pickle_is_refused_and_not_run(self, cifar10_dir, monkeypatch):
        monkeypatch.chdir(cifar10_dir)
        path = cifar10_dir / "cifar-10-batches-py" / "data_batch_3"
        _py2_dump({b"data": _Boom(), b"labels": [0]}, path)
        assert b"system" in path.read_bytes()  # the payload really asks for os.system
        with pytest.raises(UserError, match=r"refusing to load: the file asks for (posix|os|nt)\.system"):
            load_dataset("cifar10", data_dir=cifar10_dir)
        assert not (cifar10_dir / "PWNED").exists()
        for protocol in (0, 4, 5):
            path.write_bytes(pickle.dumps({b"data": _Boom()}, protocol=protocol))
            with pytest.raises(UserError, match="refusing to load"):
                safe_unpickle(path)
        assert not (cifar10_dir / "PWNED").exists()

    def test_other_globals_refused(self, tmp_path):
        p = tmp_path / "f"
        p.write_bytes(pickle.dumps({"x": np.arange(3)}, protocol=5))  # numpy 2 protocol 5 uses _frombuffer
        with pytest.raises(UserError, match="refusing"):
            safe_unpickle(p)
        p.write_bytes(pickle.dumps({b"x": np.arange(3)}, protocol=3))  # modern numpy name, allowed
        assert safe_unpickle(p)[b"x"].tolist() == [0, 1, 2]

    def test_missing_and_malformed(self, tmp_path, cifar10_dir):
        with pytest.raises(UserError) as exc:
            load_dataset("cifar100", data_dir=tmp_path / "x")
        msg = str(exc.value)
        assert "cifar-100-python" in msg and "train, test, meta" in msg and str(tmp_path / "x") in msg
        with pytest.raises(UserError, match="--data-dir"):
            load_dataset("cifar10")
        (cifar10_dir / "cifar-10-batches-py" / "test_batch").unlink()
        with pytest.raises(UserError, match="missing test_batch"):
            load_dataset("cifar10", data_dir=cifar10_dir)
        (cifar10_dir / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
        with pytest.raises(UserError, match="not a readable CIFAR pickle"):
            load_dataset("cifar10", data_dir=cifar10_dir)
        _py2_dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, cifar10_dir / "cifar-10-batches-py" / "test_batch")
        with pytest.raises(UserError, match="uint8 \\(N, 3072\\)"):
            load_dataset("cifar10", data_dir=cifar10_dir)


# ---------------------------------------------------------------------------------------------
# image folders


def _png(path, color, size=(12, 9)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


class TestImageFolder:
    def test_flat_layout_with_wnids(self, tmp_path):
        for i in range(5):
            _png(tmp_path / "n02129604" / f"{i}.png", (255, 0, 0))
            _png(tmp_path / "n01503061" / f"{i}.png", (0, 0, 255))
            _png(tmp_path / "rocks" / f"{i}.jpg", (0, 255, 0))
        (tmp_path / "rocks" / "notes.txt").write_text("not an image")
        train, test, info = load_dataset("imagefolder", data_dir=tmp_path, image_size=8, seed=1)
        assert info.class_names == ["n01503061", "n02129604", "rocks"]
        assert info.wnids == ["n01503061", "n02129604", None]
        assert len(train) == 12 and len(test) == 3 and sorted(test.targets.tolist()) == [0, 1, 2]
        assert set(map(str, train.files)).isdisjoint(map(str, test.files))
        x, y = train[int(train.targets.tolist().index(1))]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == 1
        # n02129604 is pure red: red far above green after normalisation ((1-.485)/.229 vs -.456/.224).
        assert torch.allclose(x[0], torch.full((8, 8), (1 - 0.485) / 0.229)) and x[0].mean() > x[1].mean() + 4
        # Seeded split: same seed, same split; another seed, another split (with high probability).
        again = load_dataset("imagefolder", data_dir=tmp_path, image_size=8, seed=1)[1]
        assert again.files == test.files

    def test_train_val_layout_and_hierarchy(self, tmp_path):
        for split, n in (("train", 3), ("val", 1)):
            for cls in ("cat", "dog", "owl"):
                for i in range(n):
                    _png(tmp_path / split / cls / f"{i}.png", (i * 40, 10, 10))
        h = {"mammals": ["cat", "dog"], "birds": ["owl"]}
        train, test, info = load_dataset("imagefolder", data_dir=tmp_path, hierarchy=h, samples_per_class=2)
        assert len(train) == 6 and len(test) == 3
        assert info.coarse_labels == [0, 0, 1] and info.wnids is None
        with pytest.raises(UserError, match="hierarchy's classes"):
            load_dataset("imagefolder", data_dir=tmp_path, hierarchy={"a": ["cat"]})

    def test_errors(self, tmp_path):
        with pytest.raises(UserError, match="one subfolder per class.*not a folder"):
            load_dataset("imagefolder", data_dir=tmp_path / "missing")
        with pytest.raises(UserError, match="no subfolders"):
            load_dataset("imagefolder", data_dir=tmp_path)
        (tmp_path / "empty").mkdir()
        with pytest.raises(UserError, match="0 image"):
            load_dataset("imagefolder", data_dir=tmp_path)
        bad = tmp_path / "b"
        for i in range(3):
            (bad / "c").mkdir(parents=True, exist_ok=True)
            (bad / "c" / f"{i}.png").write_bytes(b"not a png")
        train, _, _ = load_dataset("imagefolder", data_dir=bad)
        with pytest.raises(UserError, match="cannot read image"):
            train[0]
