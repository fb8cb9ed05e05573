"""Turn an existing model's classifier into a Blockout head: ``model.fc = BlockoutHead(...)``.

    python examples/convert_classifier.py
    blockout inspect checkpoints/example-convert
    blockout dashboard checkpoints/example-convert

The model is a small ResNet-style network defined here (no torchvision, no downloaded weights);
a torchvision ResNet has the same ``fc`` attribute, so the conversion is the same one line.
The model first trains as it is (standing in for a pretrained network), then its final
``nn.Linear`` is replaced and the whole network is fine-tuned with the Blockout head.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from blockout import BlockoutHead, RunLogger
from blockout.cli import OneLineErrorParser  # a bad option: one line, exit 2
from toy_data import CLASSES, DATASET, batches, count, default_steps, evaluate, make_splits, run_main


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet's basic block)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A ResNet in miniature, laid out like torchvision's: ``features -> avgpool -> fc``."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(BasicBlock(c, w, stride=1 if i == 0 else 2))
            c = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.layers(self.stem(x))), 1))


def train_steps(model, optimizer, data, steps):
    """Plain training steps; returns the mean loss and accuracy."""
    losses, accs = [], []
    for _ in range(steps):
        x, y = next(data)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        accs.append((logits.argmax(1) == y).float().mean().item())
    return sum(losses) / len(losses), sum(accs) / len(accs)


def main(argv: list[str] | None = None) -> Path:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="checkpoints/example-convert", help="run folder to write (new or empty)")
    parser.add_argument("--steps", type=count(1), default=default_steps(400),
                        help="fine-tuning steps with the Blockout head")
    parser.add_argument("--pretrain-steps", type=count(0), default=None, help="steps of the original model first "
                        "(default: half of --steps)")
    parser.add_argument("--batch-size", type=count(1), default=100)
    parser.add_argument("--seed", type=count(0), default=0)
    args = parser.parse_args(argv)
    pretrain = args.steps // 2 if args.pretrain_steps is None else args.pretrain_steps

    torch.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = make_splits(seed=args.seed)
    data = batches(x_train, y_train, batch_size=args.batch_size, seed=args.seed)
    model = TinyResNet(len(CLASSES))
    if pretrain:  # stands in for loading pretrained weights
        train_steps(model, torch.optim.Adam(model.parameters(), lr=2e-3), data, pretrain)
        print(f"original model after {pretrain} steps: test acc {evaluate(model, x_test, y_test)[1]:.3f}")

    # the conversion: the final nn.Linear becomes a Blockout head with one hidden layer and k = 4
    model.fc = BlockoutHead(model.fc.in_features, len(CLASSES), hidden=(128,), clusters=4)

    optimizer = torch.optim.Adam(model.fc.param_groups(1e-3, model=model))  # θ at 10 × lr, as our trainer
    per_eval, best = max(5, args.steps // 10), -1.0  # about 10 evaluations
    config = {**vars(args), "lr": 1e-3, "batch_size": args.batch_size, "epochs": -(-args.steps // per_eval)}
    with RunLogger(args.out, model, class_names=CLASSES, config=config,
                   dataset={**DATASET, "train_size": len(y_train), "test_size": len(y_test)}) as log:
        step = 0
        for epoch in range(1, config["epochs"] + 1):
            stats = []
            for _ in range(min(per_eval, args.steps - step)):
                stats.append(train_steps(model, optimizer, data, 1))
                step += 1
                if step % max(1, args.steps // 30) == 0:  # P of every node set, about 30 times per run
                    log.snapshot(step)
            train_loss, train_acc = (sum(v) / len(stats) for v in zip(*stats))
            test_loss, test_acc = evaluate(model, x_test, y_test)
            log.log_metrics(step, epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                            test_loss=test_loss, test_acc=test_acc)
            log.snapshot(step, tag=["last", "best"] if test_acc > best else "last")
            best = max(best, test_acc)
            print(f"step {step}: test acc {test_acc:.3f}")
    print(f"run folder: {args.out}  (open it: blockout dashboard {args.out})")
    return Path(args.out)


if __name__ == "__main__":
    run_main(main)
