#!/usr/bin/env python3
"""Build a compact WordNet snapshot (the hypernym DAG above a label set) from WordNet 3.0 files.

Examples::

    # the snapshot shipped in analysis/data/ (CIFAR-100, CIFAR-10, Fashion-MNIST, MNIST; curated synsets)
    python scripts/build_wordnet_snapshot.py --bundled

    # any label set: synset names, ImageNet wnids (n########) or plain words, one per line
    python scripts/build_wordnet_snapshot.py --labels wnids.txt --name imagenet -o imagenet_wordnet.json
    python scripts/build_wordnet_snapshot.py --name pets -o pets.json dog.n.01 n02121808 hamster

Plain words get their first noun sense, which is often wrong; the script lists them on stderr.
Reads ``data.noun``/``index.noun`` directly (no nltk needed); never downloads anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.errors import UserError  # noqa: E402
from analysis.wordnet.database import NounDatabase, resolve_labels  # noqa: E402
from analysis.wordnet.nltk_adapter import find_wordnet_files  # noqa: E402
from analysis.wordnet.snapshot import BUNDLED_PATH, build_snapshot  # noqa: E402
from analysis.wordnet.table import LABEL_SETS  # noqa: E402

CIFAR_LABELS = Path(__file__).resolve().parent.parent / "blockout" / "data" / "cifar_labels.json"


def read_labels(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise UserError(f"{path} must hold a JSON list of strings")
        return data
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def bundled_label_sets() -> dict[str, dict[str, list]]:
    names = json.loads(CIFAR_LABELS.read_text(encoding="utf-8"))
    out = {}
    for key, field in (("cifar100", "fine_label_names"), ("cifar10", "cifar10_label_names")):
        classes = names[field]
        out[key] = {"class_names": classes, "synsets": [LABEL_SETS[key][c] for c in classes]}
    from blockout.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES
    from analysis.wordnet.table import curated_synset

    for key, classes in (("fashion-mnist", FASHION_MNIST_CLASSES), ("mnist", MNIST_CLASSES)):
        out[key] = {"class_names": list(classes), "synsets": [curated_synset(c) for c in classes]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("labels", nargs="*", help="synset names, wnids or words")
    ap.add_argument("--labels", dest="labels_file", type=Path, help="file of labels (one per line, or a JSON list)")
    ap.add_argument("--name", default="custom", help="label-set name stored in the snapshot")
    ap.add_argument("--bundled", action="store_true", help="rebuild the shipped snapshot (CIFAR-100, CIFAR-10, Fashion-MNIST, MNIST)")
    ap.add_argument("--wordnet", help="folder with the WordNet 3.0 database files (default: NLTK_DATA, /usr/share/wordnet)")
    ap.add_argument("-o", "--output", type=Path, help=f"output JSON (default with --bundled: {BUNDLED_PATH})")
    args = ap.parse_args(argv)
    try:
        folder = find_wordnet_files(args.wordnet)
        if folder is None:
            raise UserError(f"no WordNet 3.0 database files found in {args.wordnet or 'NLTK_DATA or /usr/share/wordnet'}")
        with NounDatabase(folder) as db:
            if args.bundled:
                label_sets = bundled_label_sets()
                output = args.output or BUNDLED_PATH
            else:
                labels = list(args.labels)
                if args.labels_file:
                    labels += read_labels(args.labels_file)
                if not labels:
                    raise UserError("no labels given (pass labels, --labels FILE or --bundled)")
                if args.output is None:
                    raise UserError("-o/--output is required unless --bundled")
                synsets, guessed = resolve_labels(db, labels)
                if guessed:
                    print(f"warning: {len(guessed)} plain word(s) took their first noun sense: "
                          + ", ".join(guessed), file=sys.stderr)
                label_sets = {args.name: {"class_names": labels, "synsets": synsets}}
                output = args.output
            names = sorted({s for ls in label_sets.values() for s in ls["synsets"]})
            snap = build_snapshot(db, names, label_sets)
        snap.save(output)
        print(f"wrote {output}: {len(snap)} synsets for {sum(len(v['synsets']) for v in label_sets.values())} labels")
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
