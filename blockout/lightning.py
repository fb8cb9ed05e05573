"""A PyTorch Lightning callback that writes a Blockout run folder from ``Trainer.fit``.

Needs PyTorch Lightning (``pip install "blockout[lightning]"``, or ``pip install lightning``); the
rest of Blockout does not. This module imports without it; ``BlockoutCallback`` is made on first
use and raises :class:`ImportError` with the install command when Lightning is missing.
:class:`BlockoutCallback` subclasses ``lightning.pytorch.Callback`` when the ``lightning``
package is installed, else ``pytorch_lightning.Callback``: use it with the Trainer of the same
package.

Example (not run here; ``examples/lightning_loop.py`` is, by the test suite)::

    from blockout import BlockoutHead
    from blockout.lightning import BlockoutCallback

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = MyBackbone(), BlockoutHead(256, 10)
        ...

    trainer = L.Trainer(max_epochs=10, callbacks=[BlockoutCallback("checkpoints/mine", class_names=names)])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from blockout.head import BlockoutHead
from blockout.logger import RunLogger, _config_json

__all__ = ["BlockoutCallback", "lightning_module", "TARGET_SNAPSHOTS"]

#: Snapshots of P per run when ``snapshot_every`` is not given (as our trainer takes).
TARGET_SNAPSHOTS = 30


def lightning_module():
    """The installed Lightning package's ``pytorch`` namespace (``lightning.pytorch`` first).

    Raises :class:`ImportError` with the install command when neither package is there.
    """
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl
        except ImportError:
            raise ImportError("blockout.lightning needs PyTorch Lightning: pip install \"blockout[lightning]\" "
                              "(or pip install lightning)") from None
    return pl


def _scalar(value: Any) -> float | None:
    """A one-element tensor or number as float (None for anything else)."""
    try:
        if hasattr(value, "numel"):
            if value.numel() != 1:
                return None
            value = value.detach().cpu().item()
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    except (TypeError, ValueError, RuntimeError):
        return None


def epoch_record(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of ``trainer.callback_metrics`` under the names the dashboard plots.

    Per-step copies (``*_step``) are left out and ``*_epoch`` loses its suffix; ``/`` becomes
    ``_``; every ``val_*`` is also stored as ``test_*`` (the curves read ``test_acc`` and
    ``test_loss``) unless the module logs a ``test_*`` of its own.

    >>> epoch_record({"train_loss_epoch": 0.5, "train_loss_step": 0.4, "val/acc": 0.75, "note": "x"})
    {'train_loss': 0.5, 'val_acc': 0.75, 'test_acc': 0.75}
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = str(key).replace("/", "_")
        if name.endswith("_step"):
            continue
        if name.endswith("_epoch"):
            name = name[: -len("_epoch")]
        number = _scalar(value)
        if number is not None:
            out[name] = number
    for name in list(out):
        if name.startswith("val_"):
            out.setdefault("test_" + name[len("val_"):], out[name])
    return out


def _callback_class():
    """Build :class:`BlockoutCallback` on the installed Lightning's ``Callback`` (see the module doc)."""
    pl = lightning_module()

    class BlockoutCallback(pl.Callback):
        """Write a Blockout run folder while ``Trainer.fit`` trains a module holding Blockout parts.

        At the start of fit it opens a :class:`~blockout.logger.RunLogger` on the LightningModule
        (rank 0 writes); every ``snapshot_every`` optimiser steps it saves every node set's P; at
        the end of every training epoch (after its validation) it appends the epoch's logged
        metrics to ``metrics.jsonl`` and a snapshot with the weights, tagged ``last`` and, when
        ``monitor`` improved, ``best``. A :class:`~blockout.head.BlockoutHead` running one of our
        recipes (``hard-cocluster``, ``hard-budgeted``) is driven from here: ``start_epoch`` at
        every epoch start, ``end_step`` after every optimiser step, its epoch metrics into
        ``metrics.jsonl``; add ``head.extra_loss(logits, targets)`` to the loss of your ``training_step``.

        Parameters
        ----------
        run_dir : path
            The run folder (missing or empty; or an existing run with ``resume=True``).
        class_names, wnids, config, dataset :
            As for :class:`~blockout.logger.RunLogger`; ``config`` defaults to the module's
            ``hparams``.
        snapshot_every : int, optional
            Steps between P snapshots; default: about 30 per run (from ``estimated_stepping_batches``).
        monitor : str
            The metric that picks the ``best`` snapshot (after the renaming of :func:`epoch_record`).
        mode : {"max", "min"}
            Whether a larger or a smaller ``monitor`` is better.
        resume : bool
            Continue the run folder (fit resumed from a Lightning checkpoint).
        """

        def __init__(self, run_dir: str | Path, class_names: Iterable[str] | None = None,
                     wnids: Iterable[str | None] | None = None, config: Any = None, *,
                     dataset: Mapping[str, Any] | None = None, snapshot_every: int | None = None,
                     monitor: str = "test_acc", mode: str = "max", resume: bool = False) -> None:
            super().__init__()
            if snapshot_every is not None and (isinstance(snapshot_every, bool)
                                               or not isinstance(snapshot_every, int) or snapshot_every < 1):
                raise ValueError(f"snapshot_every must be a positive integer or None, got {snapshot_every!r}")
            if mode not in ("max", "min"):
                raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
            self.run_dir = Path(run_dir)
            self.class_names = None if class_names is None else list(class_names)
            self.wnids = None if wnids is None else list(wnids)
            self.config, self.dataset = config, dataset
            self.snapshot_every, self.monitor, self.mode, self.resume = snapshot_every, monitor, mode, resume
            self.run_logger: RunLogger | None = None
            self.every = snapshot_every or 1
            self._best: float | None = None
            self._last_snap = -1
            self._validated = False
            self._heads: list = []  # (module path, BlockoutHead) of the heads with a recipe, found at fit start
            self._recipe_step = 0

        @staticmethod
        def _steps_per_epoch(trainer) -> int:
            batches = trainer.num_training_batches
            accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
            return max(1, math.ceil(batches / accumulate)) if math.isfinite(batches) else 1

        def on_fit_start(self, trainer, pl_module) -> None:  # noqa: D102
            # BlockoutHeads running one of our recipes: their phases follow the Trainer's epochs
            self._heads = [(p, m) for p, m in pl_module.named_modules()
                           if isinstance(m, BlockoutHead) and len(m.recipes)]
            for _, head in self._heads:
                head._check_epochs = False  # start_epoch comes from here, every epoch
                if trainer.max_epochs not in (None, -1) and head.config.epochs != trainer.max_epochs:
                    # Lightning trains 1000 epochs when given neither max_epochs nor max_steps
                    default = " (Lightning's default without max_epochs)" if (
                        trainer.max_epochs == 1000 and trainer.max_steps == -1) else ""
                    raise ValueError(f"BlockoutHead(method={head.method!r}, epochs={head.config.epochs}) but "
                                     f"Trainer(max_epochs={trainer.max_epochs}){default}: give the head the epochs "
                                     "you train and the Trainer the same max_epochs")
            config = self.config
            if config is None:
                config = dict(getattr(pl_module, "hparams", {}) or {})
            config = {**_config_json(config), "max_epochs": trainer.max_epochs}
            config.setdefault("epochs", trainer.max_epochs)
            self.run_logger = RunLogger(self.run_dir, pl_module, self.class_names, self.wnids, config,
                                        dataset=self.dataset, resume=self.resume,
                                        enabled=bool(trainer.is_global_zero)).open()
            if self.snapshot_every is None:
                total = trainer.estimated_stepping_batches
                self.every = max(1, round(total / TARGET_SNAPSHOTS)) if math.isfinite(total) else 100

        def on_train_start(self, trainer, pl_module) -> None:  # noqa: D102
            # here, not at fit start: a fit resumed from a checkpoint has its global_step restored
            # only after on_fit_start, and a stale 0 made the first accumulating batch count as a step
            self._recipe_step = int(trainer.global_step)

        def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: D102
            for _, head in self._heads:
                head.start_epoch(int(trainer.current_epoch), steps_per_epoch=self._steps_per_epoch(trainer),
                                 optimizer=trainer.optimizers[0] if trainer.optimizers else None)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
            step = int(trainer.global_step)
            if step != self._recipe_step:  # an optimiser step happened (not on every batch when accumulating)
                for _, head in self._heads:
                    head.end_step()
                self._recipe_step = step
            if self.run_logger is not None and step > 0 and step % self.every == 0 and step != self._last_snap:
                self.run_logger.snapshot(step, epoch=int(trainer.current_epoch))
                self._last_snap = step

        def on_validation_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
            if not trainer.sanity_checking:
                self._validated = True

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
            if self.run_logger is None or trainer.sanity_checking:
                return
            step, epoch = int(trainer.global_step), int(trainer.current_epoch) + 1
            values = epoch_record(trainer.callback_metrics)
            if not self._validated:  # no validation this epoch (e.g. max_steps hit mid-epoch): drop the stale values
                values = {k: v for k, v in values.items() if not k.startswith(("val_", "test_"))}
            self._validated = False
            values.pop("step", None)
            values.pop("epoch", None)
            for path, head in self._heads:
                reported = head.epoch_metrics()
                if len(self._heads) > 1:  # one key per head (both budgets report "multipliers")
                    reported = {f"{path}.{k}": v for k, v in reported.items()}
                values.update(reported)
            self.run_logger.log_metrics(step, epoch=epoch, **values)
            tags = ["last"]
            score = values.get(self.monitor)
            better = score is not None and (
                self._best is None or (score > self._best if self.mode == "max" else score < self._best))
            if better:
                self._best = score
                tags.append("best")
            self.run_logger.snapshot(step, tag=tags, epoch=epoch)
            self._last_snap = step

        def on_fit_end(self, trainer, pl_module) -> None:  # noqa: D102
            self._close()

        def on_exception(self, trainer, pl_module, exception: BaseException) -> None:  # noqa: D102
            if self.run_logger is not None:  # keep what was written; release the folder
                self.run_logger.__exit__(type(exception), exception, None)
                self.run_logger = None

        def teardown(self, trainer, pl_module, stage: str) -> None:  # noqa: D102
            self._close()

        def _close(self) -> None:
            if self.run_logger is not None:
                self.run_logger.close()
                self.run_logger = None

    BlockoutCallback.__module__ = __name__
    return BlockoutCallback


def __getattr__(name: str):
    # the class is made on first use, so that importing this module (and collecting its doctests)
    # works without Lightning and `from blockout.lightning import BlockoutCallback` says what to install
    if name == "BlockoutCallback":
        cls = _callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
