"""Real data: IDX files (Fashion-MNIST / MNIST), batch augmentation, and training on them.

Every test builds its own small IDX files; the Debian package ``dataset-fashion-mnist`` is used
only by the one test that checks the real files (skipped when it is not installed).
"""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import runfolder as rf
from analysis import runformat as fmt
from blockout.checkpoint import load_train_state
from blockout.config import TrainConfig
from blockout.data import load_dataset
from blockout.data.augment import augment_batch, batch_generator, crop_padding, resolve_augment
from blockout.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DEBIAN_DIR, read_idx
from blockout.errors import UserError
from blockout.train import resume_config, train

torch.set_num_threads(1)


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.tobytes()


def write_idx_dataset(folder: Path, n_train=40, n_test=20, side=28, gz=True, seed=0) -> dict:
    """A fake MNIST-family folder: class c's images are bright in column band c (learnable)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 40, size=(n, side, side)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, :, 2 * c:2 * c + 3] = 220
        for kind, arr, idx in (("images", images, "idx3"), ("labels", labels, "idx1")):
            name = f"{prefix}-{kind}-{idx}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        out[prefix] = (images, labels)
    return out


class TestReadIdx:
    def test_raw_and_gz_round_trip(self, tmp_path):
        arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        (tmp_path / "a").write_bytes(idx_bytes(arr))
        (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(arr)))
        assert np.array_equal(read_idx(tmp_path / "a"), arr)
        assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)

    @pytest.mark.parametrize("gz", [False, True])
    def test_truncated_file_is_one_line(self, tmp_path, gz):
        data = idx_bytes(np.zeros((5, 4, 4)))[:-7]
        path = tmp_path / ("t.gz" if gz else "t")
        path.write_bytes(gzip.compress(data) if gz else data)
        with pytest.raises(UserError, match="truncated") as e:
            read_idx(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)

    def test_truncated_gzip_stream(self, tmp_path):
        path = tmp_path / "t.gz"
        path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 8, 8))))[:-30])
        with pytest.raises(UserError, match=str(path)):
            read_idx(path)

    def test_trailing_data(self, tmp_path):
        (tmp_path / "x").write_bytes(idx_bytes(np.zeros((2, 2))) + b"\x00")
        with pytest.raises(UserError, match="trailing"):
            read_idx(tmp_path / "x")

    @pytest.mark.parametrize("head,match", [
        (b"\x01\x00\x08\x01", "bad magic"),
        (b"\x00\x00\x0d\x01", "data type"),
        (b"\x00\x00\x08\x09", "dimensions"),
        (b"\x00\x00\x08\x01\x00\x00", "truncated IDX header"),
        (b"\x00\x00", "bad magic"),
        (b"", "bad magic"),
    ])
    def test_bad_headers(self, tmp_path, head, match):
        (tmp_path / "x").write_bytes(head + (b"\x00\x00\x00\x01\x05" if len(head) == 4 else b""))
        with pytest.raises(UserError, match=match):
            read_idx(tmp_path / "x")

    def test_huge_declared_size_checked_before_allocating(self, tmp_path):
        # declares 4G x 4G bytes: must fail on the size check, not try to allocate
        head = bytes([0, 0, 8, 2]) + (2**32 - 1).to_bytes(4, "big") * 2
        (tmp_path / "x").write_bytes(head + b"\x00" * 10)
        (tmp_path / "x.gz").write_bytes(gzip.compress(head + b"\x00" * 10))
        with pytest.raises(UserError, match="truncated"):
            read_idx(tmp_path / "x")
        with pytest.raises(UserError, match="too large"):
            read_idx(tmp_path / "x.gz")

    def test_not_gzip(self, tmp_path):
        (tmp_path / "x.gz").write_bytes(b"plainly not gzip data")
        with pytest.raises(UserError, match="cannot read"):
            read_idx(tmp_path / "x.gz")


class TestIdxDataset:
    def test_load_gz_and_raw(self, tmp_path):
        for gz in (True, False):
            folder = tmp_path / ("gz" if gz else "raw")
            src = write_idx_dataset(folder, gz=gz)
            train_ds, test_ds, info = load_dataset("mnist", data_dir=str(folder))
            assert (len(train_ds), len(test_ds)) == (40, 20)
            assert train_ds.images.dtype == torch.uint8 and tuple(train_ds.images.shape) == (40, 1, 28, 28)
            assert np.array_equal(train_ds.images[:, 0].numpy(), src["train"][0])
            assert np.array_equal(test_ds.targets.numpy(), src["t10k"][1])
            assert info.class_names[0] == "zero" and info.input_shape == (1, 28, 28)

    def test_fashion_names_coarse_groups_and_stratified_subsample(self, tmp_path):
        write_idx_dataset(tmp_path, n_train=100)
        train_a, _, info = load_dataset("fashion-mnist", data_dir=str(tmp_path), samples_per_class=3, seed=1)
        train_b, _, _ = load_dataset("fashion-mnist", data_dir=str(tmp_path), samples_per_class=3, seed=1)
        train_c, _, _ = load_dataset("fashion-mnist", data_dir=str(tmp_path), samples_per_class=3, seed=2)
        assert np.bincount(train_a.targets.numpy()).tolist() == [3] * 10
        assert torch.equal(train_a.images, train_b.images)
        assert not torch.equal(train_a.images, train_c.images)
        assert info.class_names == FASHION_MNIST_CLASSES
        assert info.coarse_names == ["clothing", "footwear", "bag"]
        assert info.coarse_labels[FASHION_MNIST_CLASSES.index("Sneaker")] == 1

    def test_missing_folder_and_files_say_how_to_install(self, tmp_path):
        with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist"):
            load_dataset("fashion-mnist", data_dir=str(tmp_path / "nowhere"))
        with pytest.raises(UserError, match=r"train-images-idx3-ubyte\[\.gz\] not found"):
            load_dataset("fashion-mnist", data_dir=str(tmp_path))
        with pytest.raises(UserError, match="--data-dir is required"):
            load_dataset("mnist")

    def test_images_labels_mismatch(self, tmp_path):
        write_idx_dataset(tmp_path, gz=False)
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(39)))
        with pytest.raises(UserError, match="40 images .* but 39 labels"):
            load_dataset("mnist", data_dir=str(tmp_path))

    def test_label_out_of_range(self, tmp_path):
        write_idx_dataset(tmp_path, gz=False)
        (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(20, 12)))
        with pytest.raises(UserError, match="out of range"):
            load_dataset("mnist", data_dir=str(tmp_path))

    def test_cli_error_is_one_line(self, tmp_path, capsys):
        from blockout.cli import main

        (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage!")
        code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1

    @pytest.mark.skipif(not Path(FASHION_MNIST_DEBIAN_DIR, "t10k-labels-idx1-ubyte.gz").is_file(),
                        reason="Debian package dataset-fashion-mnist not installed")
    def test_real_fashion_mnist(self):
        train_ds, test_ds, info = load_dataset("fashion-mnist", samples_per_class=50)
        assert len(test_ds) == 10000 and len(train_ds) == 500
        assert np.bincount(test_ds.targets.numpy()).tolist() == [1000] * 10
        assert info.input_shape == (1, 28, 28)


class TestAugment:
    def test_defaults_per_dataset(self):
        assert resolve_augment("auto", "mnist") == "crop"  # digits are not mirrored
        assert resolve_augment("auto", "cifar100") == "crop-flip"
        assert resolve_augment("auto", "synthetic") == "none"  # existing runs unchanged
        assert crop_padding(28) == 2 and crop_padding(32) == 4

    def test_crop_is_a_shift_with_fill_and_flip_mirrors(self):
        x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
        out = augment_batch(x, batch_generator(0, 0, 0), pad=2, flip=False, fill=-1.0)
        for i in range(2):
            # each output is a window of the padded image: find its offset and check it exactly
            padded = torch.full((1, 10, 10), -1.0)
            padded[:, 2:8, 2:8] = x[i]
            hits = [(a, b) for a in range(5) for b in range(5) if torch.equal(padded[:, a:a + 6, b:b + 6], out[i])]
            assert hits
        flipped = augment_batch(x, batch_generator(0, 0, 0), pad=0, flip=True)
        for i in range(2):
            assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
        assert torch.equal(x, torch.arange(72, dtype=torch.float32).view(2, 1, 6, 6))

    def test_seeded_and_varied(self):
        x = torch.randn(64, 1, 8, 8)
        a = augment_batch(x, batch_generator(3, 1, 5), pad=2, flip=True)
        b = augment_batch(x, batch_generator(3, 1, 5), pad=2, flip=True)
        c = augment_batch(x, batch_generator(3, 1, 6), pad=2, flip=True)
        assert torch.equal(a, b) and not torch.equal(a, c)
        # flips happen about half the time (64 draws: between 16 and 48, p > 0.999)
        g = batch_generator(0, 0, 0)
        flips = sum(bool(torch.equal(o, i.flip(-1))) for o, i in zip(augment_batch(x, g, pad=0, flip=True), x))
        assert 16 <= flips <= 48

    def test_global_rng_untouched(self):
        torch.manual_seed(0)
        x = torch.randn(4, 1, 8, 8)
        before = torch.get_rng_state()
        augment_batch(x, batch_generator(0, 0, 0), pad=2, flip=True)
        assert torch.equal(before, torch.get_rng_state())


def tiny_idx_config(folder, out, **kw):
    args = dict(dataset="mnist", data_dir=str(folder), nodes=16, clusters=3, epochs=2, batch_size=8,
                device="cpu", method="hard-learned", augment="crop-flip", out=str(out))
    args.update(kw)
    return TrainConfig(**args)


class TestTrainOnIdx:
    def test_augmented_run_resumes_bit_identically(self, tmp_path):
        write_idx_dataset(tmp_path / "data", n_train=40, n_test=20, side=12)
        ref = tmp_path / "ref"
        train(tiny_idx_config(tmp_path / "data", ref))

        def ctrl_c(step, model):
            if step == 7:
                raise KeyboardInterrupt

        part = tmp_path / "part"
        assert train(tiny_idx_config(tmp_path / "data", part), on_step=ctrl_c).status == "interrupted"
        assert train(resume_config(part), resume=True).status == "finished"
        sa = load_train_state(ref / rf.TRAIN_STATE)["model"]
        sb = load_train_state(part / rf.TRAIN_STATE)["model"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert fmt.read_run(ref).runtime["augment"] == "crop-flip"
        # and augmentation changes training (otherwise the test above proves nothing about it)
        plain = tmp_path / "plain"
        train(tiny_idx_config(tmp_path / "data", plain, augment="none"))
        sc = load_train_state(plain / rf.TRAIN_STATE)["model"]
        assert not all(torch.equal(sa[k], sc[k]) for k in sa)


class TestWordNet:
    #: class -> (synset, WordNet 3.0 offset, a word of its gloss), checked by hand in data.noun
    EXPECTED = {
        "T-shirt/top": ("jersey.n.03", 3595614, "close-fitting pullover shirt"),
        "Trouser": ("trouser.n.01", 4489008, "covering each leg separately"),
        "Pullover": ("pullover.n.01", 4021028, "sweater"),
        "Dress": ("dress.n.01", 3236735, "one-piece garment"),
        "Coat": ("coat.n.01", 3057021, "outer garment"),
        "Sandal": ("sandal.n.01", 4133789, "straps"),
        "Shirt": ("shirt.n.01", 4197391, "upper half of the body"),
        "Sneaker": ("gym_shoe.n.01", 3472535, "canvas shoe"),
        "Bag": ("bag.n.04", 2774152, "carrying money"),
        "Ankle boot": ("boot.n.01", 2872752, "lower leg"),
        "zero": ("zero.n.02", 13742358, "mathematical element"),
        "nine": ("nine.n.01", 13745270, "eight and one"),
    }

    def test_curated_synsets_against_the_shipped_wordnet(self):
        from analysis.wordnet import bundled_snapshot, curated_synset
        from blockout.data.idx import MNIST_CLASSES

        snap = bundled_snapshot()
        for cls, (name, offset, gloss) in self.EXPECTED.items():
            assert curated_synset(cls) == name
            info = snap[name]
            assert info.offset == offset and gloss in info.definition, cls
        for cls in FASHION_MNIST_CLASSES + MNIST_CLASSES:  # every class resolves offline
            assert curated_synset(cls) in snap, cls
        garments = [c for c in FASHION_MNIST_CLASSES if c not in ("Sandal", "Sneaker", "Ankle boot", "Bag")]
        for cls in garments:
            assert any("clothing.n.01" in p for p in snap.hypernym_paths(curated_synset(cls))), cls
        for cls in ("Sandal", "Sneaker", "Ankle boot"):
            assert any("footwear.n.02" in p for p in snap.hypernym_paths(curated_synset(cls))), cls

    def test_compare_on_a_fashion_mnist_run(self, tmp_path):
        from analysis.compare import compare_run
        from analysis.run import load_run

        write_idx_dataset(tmp_path / "data", n_train=40, n_test=20, side=12)
        out = tmp_path / "run"
        train(tiny_idx_config(tmp_path / "data", out, dataset="fashion-mnist", epochs=1))
        report = compare_run(load_run(out), reference="all", permutations=9)
        kinds = {r["kind"] for r in report.references}
        assert kinds == {"wordnet", "coarse"} and not report.notes

    def test_run_saved_before_augment_existed_resumes_without_it(self, tmp_path):
        # regression: such a run's config has no "augment"; "auto" would switch crop-flip on mid-run
        from blockout.checkpoint import save_train_state

        write_idx_dataset(tmp_path / "data", n_train=40, n_test=20, side=12)
        out = tmp_path / "old"
        cfg = tiny_idx_config(tmp_path / "data", out, dataset="fashion-mnist", augment="none", epochs=1)
        train(cfg)
        state = load_train_state(out / rf.TRAIN_STATE)
        del state["config"]["augment"]
        save_train_state(out / rf.TRAIN_STATE, state)
        assert resume_config(out, {"epochs": 2}).augment == "none"
