"""``blockout compare`` on an ImageNet-1k folder layout works offline with no extra step.

The 1000 ILSVRC-2012 wnids cannot be downloaded here, so the test derives a representative set
of 1000 noun synsets from the shipped WordNet instead, in ILSVRC's proportions of roughly half
animals and half artifacts: 500 leaf synsets evenly spaced (in offset order) under
``animal.n.01`` and 500 under ``artifact.n.01``. Each gets an ImageNet-style folder
(``n01234567``) of three tiny PNGs. The dataset loader reads the folder (class names and wnids
from the folder names) and a run folder with a planted hierarchy is written for exactly those
classes (:func:`analysis.synthetic.make_synthetic_run`) instead of training; the slow test also
trains one tiny run on the folder. ``blockout compare`` then runs in a fresh interpreter with
sockets disabled, no nltk data and an empty home folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_NETWORK = '''
import socket

def _refuse(*args, **kwargs):
    raise OSError("network access is disabled in this test")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''


def imagenet_like_wnids(n_per_side: int = 500) -> list[str]:
    """1000 wnids: evenly spaced leaf synsets under animal.n.01 and under artifact.n.01."""
    from analysis.wordnet import load_wordnet

    wn = load_wordnet()
    out = []
    for top in ("animal.n.01", "artifact.n.01"):
        leaves = wn.leaves(top)
        out += [leaves[i] for i in np.linspace(0, len(leaves) - 1, n_per_side).round().astype(int)]
    assert len(set(out)) == 2 * n_per_side
    return sorted(wn.wnid(s) for s in out)


def offline_env(tmp: Path) -> dict:
    """Environment of a fresh interpreter that cannot open sockets and finds no nltk data or caches."""
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "BLOCKOUT_CACHE", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), HOME=str(home))
    return env


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet1k") / "train"
    rng = np.random.default_rng(0)
    for wnid in imagenet_like_wnids():
        (root / wnid).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / wnid / f"{k}.png")
    return root


def run_compare(run: Path, tmp: Path, *extra: str) -> dict:
    env = offline_env(tmp)
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode != 0 and "network access is disabled" in probe.stderr  # the block is active
    r = subprocess.run([sys.executable, "-m", "blockout.cli", "compare", str(run), "--json", "--permutations", "9",
                        *extra], capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_wordnet_report(report: dict, n_classes: int = 1000) -> None:
    assert report["n_classes"] == n_classes
    wordnet = [r for r in report["references"] if r["kind"] == "wordnet"]
    # many WordNet levels, from a handful of groups to nearly one class per group
    sizes = [r["n_groups"] for r in wordnet]
    assert len(wordnet) >= 8 and sizes == sorted(sizes) and sizes[0] <= 10 and sizes[-1] > 900
    assert not any("WordNet reference skipped" in n or "guessed" in n for n in report["notes"]), report["notes"]
    for h in report["hierarchies"]:
        assert {d["reference"] for d in h["distances"]} >= {"wordnet"}
        assert all(d["spearman"]["observed"] is not None for d in h["distances"])
        assert all(p["ari"]["p"] is not None for p in h["partitions"])


def test_compare_imagenet_layout_offline(imagenet_folder, tmp_path):
    from analysis.synthetic import make_synthetic_run
    from blockout.data import load_dataset

    _, _, info = load_dataset("imagefolder", data_dir=imagenet_folder, image_size=8)
    assert len(info.class_names) == 1000 and info.wnids == info.class_names  # the folders are wnids
    run = make_synthetic_run(tmp_path / "run", classes=1000, clusters=8, groups=2, trunk=16, hidden=(32, 32),
                             n_snapshots=2, class_names=info.class_names, wnids=info.wnids)
    check_wordnet_report(run_compare(run, tmp_path))


@pytest.mark.slow
def test_compare_trained_imagenet_layout_offline(imagenet_folder, tmp_path):
    """One real (tiny, one-epoch) training run on the 1000-folder layout, then compare."""
    env = offline_env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "blockout.cli", "train", "--dataset", "imagefolder", "--data-dir",
                        str(imagenet_folder), "--image-size", "8", "--epochs", "1", "--nodes", "64", "--depth", "1",
                        "--clusters", "4", "--batch-size", "256", "--out", str(tmp_path / "trained")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr
    check_wordnet_report(run_compare(tmp_path / "trained", tmp_path))
