"""Your own CNN, your own PyTorch loop, a Blockout head on top, and a run folder the dashboard opens.

    python examples/plain_loop.py                    # ~1 min on 2 CPU cores
    python examples/plain_loop.py --method hard-cocluster --out checkpoints/example-cocluster  # our recipe
    blockout inspect checkpoints/example-plain
    blockout compare checkpoints/example-plain --reference coarse
    blockout dashboard checkpoints/example-plain

The lines that Blockout adds to an ordinary loop are marked ``# Blockout``; the three calls that
drive a recipe (``start_epoch``, ``extra_loss``, ``end_step``) do nothing for the paper's methods.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from blockout import BlockoutHead, RunLogger  # Blockout
from blockout.cli import OneLineErrorParser  # a bad option: one line, exit 2
from blockout.errors import UserError
from blockout.head import HEAD_METHODS
from toy_data import CLASSES, DATASET, batches, count, default_steps, evaluate, make_splits, run_main


class SmallCNN(nn.Module):
    """A user-defined backbone: two conv blocks, global average pooling, a 64-feature vector."""

    def __init__(self, channels: int = 3, width: int = 32, features: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, features, 3, padding=1), nn.BatchNorm2d(features), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main(argv: list[str] | None = None) -> Path:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="checkpoints/example-plain", help="run folder to write (new or empty)")
    parser.add_argument("--steps", type=count(1), default=default_steps(600), help="training steps")
    parser.add_argument("--method", default="hard-learned", choices=HEAD_METHODS, metavar="METHOD",
                        help="the head's method: one of the paper's, or our recipe hard-cocluster / hard-budgeted")
    parser.add_argument("--batch-size", type=count(1), default=100)
    parser.add_argument("--seed", type=count(0), default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = make_splits(seed=args.seed)
    steps_per_epoch, snapshot_every = 20, max(1, args.steps // 30)
    epochs = -(-args.steps // steps_per_epoch)
    backbone = SmallCNN()
    try:
        head = BlockoutHead(backbone.out_features, len(CLASSES), hidden=(128,), clusters=4,  # Blockout
                            method=args.method, epochs=epochs, steps_per_epoch=steps_per_epoch)
    except ValueError as exc:  # e.g. a recipe whose schedule does not fit in --steps: one line, exit 2
        raise UserError(f"--steps {args.steps} ({epochs} epoch(s) of {steps_per_epoch} steps): {exc}") from None
    model = nn.Sequential(backbone, head)
    optimizer = torch.optim.Adam(head.param_groups(2e-3, model=model))  # θ at 10 × lr, as our trainer
    best = -1.0

    config = {**vars(args), "lr": 2e-3, "batch_size": args.batch_size, "epochs": epochs}
    dataset = {**DATASET, "train_size": len(y_train), "test_size": len(y_test)}
    data = batches(x_train, y_train, batch_size=args.batch_size, seed=args.seed)
    with RunLogger(args.out, model, class_names=CLASSES, config=config, dataset=dataset) as log:  # Blockout
        running = []
        for step in range(1, args.steps + 1):
            x, y = next(data)
            if (step - 1) % steps_per_epoch == 0:
                head.start_epoch((step - 1) // steps_per_epoch)  # a recipe's phases (no-op for the paper's methods)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y) + head.extra_loss(logits, y)  # a recipe's terms (else 0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            head.end_step()  # a recipe's per-step update (else nothing)
            running.append((loss.item(), (logits.argmax(1) == y).float().mean().item()))
            if step % snapshot_every == 0:
                log.snapshot(step)  # Blockout: P of every node set, about 30 times per run
            if step % steps_per_epoch == 0 or step == args.steps:
                epoch = (step + steps_per_epoch - 1) // steps_per_epoch
                test_loss, test_acc = evaluate(model, x_test, y_test)
                train_loss, train_acc = (sum(v) / len(running) for v in zip(*running))
                running = []
                log.log_metrics(step, epoch=epoch, train_loss=train_loss, train_acc=train_acc,  # Blockout
                                test_loss=test_loss, test_acc=test_acc, **head.epoch_metrics())
                log.snapshot(step, tag=["last", "best"] if test_acc > best else "last")  # Blockout: + weights
                best = max(best, test_acc)
                print(f"step {step}: train loss {train_loss:.3f} acc {train_acc:.3f} | test acc {test_acc:.3f}")
    print(f"run folder: {args.out}  (open it: blockout dashboard {args.out})")
    return Path(args.out)


if __name__ == "__main__":
    run_main(main)
