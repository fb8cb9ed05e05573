"""The plain-loop example with PyTorch Lightning: ``BlockoutCallback`` writes the run folder.

    pip install "blockout[lightning]"      # or: pip install lightning
    python examples/lightning_loop.py
    blockout inspect checkpoints/example-lightning
    blockout dashboard checkpoints/example-lightning

The module logs ``train_loss``/``train_acc`` and ``val_loss``/``val_acc`` with ``self.log``; the
callback stores each epoch's values in ``metrics.jsonl`` (``val_*`` also as ``test_*``, the names
the dashboard plots), P about 30 times per run, and the weights tagged ``best`` and ``last``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from blockout import BlockoutHead
from blockout.cli import OneLineErrorParser  # a bad option: one line, exit 2
from blockout.errors import UserError
from blockout.head import HEAD_METHODS
from blockout.lightning import BlockoutCallback, lightning_module
from plain_loop import SmallCNN
from toy_data import CLASSES, DATASET, count, default_steps, make_splits, run_main

L = lightning_module()  # lightning.pytorch (or pytorch_lightning when only that is installed)


class Classifier(L.LightningModule):
    """A user's LightningModule: the small CNN backbone with a Blockout head."""

    def __init__(self, clusters: int = 4, hidden: int = 128, lr: float = 2e-3, method: str = "hard-learned",
                 epochs: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()  # becomes run.json's config
        self.backbone = SmallCNN()
        # epochs: our recipes (hard-cocluster, hard-budgeted) run on a schedule; the callback drives it
        self.head = BlockoutHead(self.backbone.out_features, len(CLASSES), hidden=(hidden,), clusters=clusters,
                                 method=method, epochs=epochs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def _step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss, logits

    def training_step(self, batch, batch_idx):
        loss, logits = self._step(batch, "train")
        return loss + self.head.extra_loss(logits, batch[1])  # a recipe's terms (0 for the paper's methods)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.Adam(self.head.param_groups(self.hparams.lr, model=self))  # θ at 10 × lr, as our trainer


def main(argv: list[str] | None = None) -> Path:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="checkpoints/example-lightning", help="run folder to write (new or empty)")
    parser.add_argument("--steps", type=count(1), default=default_steps(600), help="training steps")
    parser.add_argument("--method", default="hard-learned", choices=HEAD_METHODS, metavar="METHOD",
                        help="the head's method: one of the paper's, or our recipe hard-cocluster / hard-budgeted")
    parser.add_argument("--batch-size", type=count(1), default=100)
    parser.add_argument("--seed", type=count(0), default=0)
    args = parser.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    (x_train, y_train), (x_test, y_test) = make_splits(seed=args.seed)
    train = DataLoader(TensorDataset(x_train, y_train), batch_size=args.batch_size, shuffle=True)
    test = DataLoader(TensorDataset(x_test, y_test), batch_size=500)
    callback = BlockoutCallback(args.out, class_names=CLASSES,
                                dataset={**DATASET, "train_size": len(y_train), "test_size": len(y_test)})
    epochs = math.ceil(args.steps / len(train))
    trainer = L.Trainer(max_steps=args.steps, max_epochs=epochs, callbacks=[callback],
                        val_check_interval=min(len(train), args.steps),  # a short run still validates
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    try:
        module = Classifier(method=args.method, epochs=epochs)
    except ValueError as exc:  # e.g. a recipe whose schedule does not fit in --steps: one line, exit 2
        raise UserError(f"--steps {args.steps} ({epochs} epoch(s)): {exc}") from None
    trainer.fit(module, train, test)
    print(f"run folder: {args.out}  (open it: blockout dashboard {args.out})")
    return Path(args.out)


if __name__ == "__main__":
    run_main(main)
