"""Generated images for the examples (nothing is downloaded).

Ten CIFAR-10 class names in two superclasses: every class's images are a noisy copy of a
template, and the templates of one superclass share a common part, so a network has a two-level
hierarchy to find (``blockout compare RUN --reference coarse`` scores it).
"""

from __future__ import annotations

import argparse
import os

import torch

CLASSES = ["airplane", "automobile", "ship", "truck", "bird", "cat", "deer", "dog", "frog", "horse"]
COARSE_NAMES = ["vehicle", "animal"]
COARSE_LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
#: run.json dataset fields that let `compare --reference coarse` use the superclasses
DATASET = {"name": "toy-cifar10", "coarse_names": COARSE_NAMES, "coarse_labels": COARSE_LABELS,
           "input_shape": [3, 16, 16]}


def make_splits(train_per_class: int = 200, test_per_class: int = 50, seed: int = 0, size: int = 16):
    """``(x_train, y_train), (x_test, y_test)``: images ``(N, 3, size, size)``, labels ``(N,)``."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(len(COARSE_NAMES), 3, size, size, generator=g)
    templates = shared[COARSE_LABELS] + 0.8 * torch.randn(len(CLASSES), 3, size, size, generator=g)

    def draw(per_class: int):
        y = torch.arange(len(CLASSES)).repeat_interleave(per_class)
        return templates[y] + 2.0 * torch.randn(len(y), 3, size, size, generator=g), y

    return draw(train_per_class), draw(test_per_class)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0):
    """Shuffled mini-batches, epoch after epoch, without end."""
    from blockout.errors import UserError

    if not 1 <= batch_size <= len(y):  # a larger batch than the data would yield nothing, forever
        raise UserError(f"--batch-size must be between 1 and {len(y)} (the training images), got {batch_size}")

    def endless():
        g = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(len(y), generator=g)
            for i in range(0, len(y) - batch_size + 1, batch_size):
                idx = order[i:i + batch_size]
                yield x[idx], y[idx]

    return endless()


def default_steps(fallback: int) -> int:
    """Training steps: ``$BLOCKOUT_EXAMPLE_STEPS`` when set (the test suite runs a few), else ``fallback``."""
    return int(os.environ.get("BLOCKOUT_EXAMPLE_STEPS", fallback))


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Test loss and accuracy (eval mode: a Blockout head uses the expected memberships)."""
    model.eval()
    logits = model(x)
    model.train()
    return torch.nn.functional.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def count(low: int):
    """argparse type: a whole number >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        return value

    return parse


def run_main(main) -> None:
    """Run an example's ``main()`` as a script: a refused input (e.g. ``--out`` already holds a run)
    is one line on stderr and exit code 2, as with the ``blockout`` command."""
    import sys

    from blockout.errors import UserError

    try:
        main()
    except UserError as exc:
        print(f"{os.path.basename(sys.argv[0])}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
