"""The training loop behind ``blockout train``: one process, one GPU, or many under torchrun.

What a run guarantees:

* **Determinism on CPU.** The data order comes from a :class:`DistributedSampler` seeded by the
  run's seed and the epoch; initialisation and membership sampling draw from the global torch
  generator seeded at start, whose state is saved in every checkpoint. ``--resume`` restores it,
  so an interrupted run continued to the end equals an uninterrupted one bit for bit.
* **Checkpoints** (``train_state.pt``) at the start, at the end of every epoch, and on Ctrl-C
  (the first Ctrl-C stops at the next step boundary; a second one aborts at once).
* **NaN/inf loss** stops the run with :class:`TrainingDiverged` and keeps the last good checkpoint.
* **Run folder** written by rank 0 only, through the public :class:`blockout.RunLogger` (the
  same writer a user's own loop gets); metrics are all-reduced so every rank agrees.
* **Recipes.** The loop (:meth:`_Session.run`) is the same for every method; our emergence options
  are plug-ins (:mod:`blockout.recipes`) whose hooks it calls at fixed points, and it knows none of
  them by name. The paper's six methods train with no recipe.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from analysis import faults
from analysis import runfolder as rf
from analysis import runformat as fmt
from blockout import distributed as bdist
from blockout.checkpoint import capture_rng_state, load_train_state, restore_rng_state, save_train_state
from blockout.config import TrainConfig, flat_config
from blockout.data.augment import augment_batch, batch_generator, crop_padding, resolve_augment
from blockout.errors import UserError
from blockout.fcstack import parameter_groups
from blockout.models import BlockoutNet, build_model
from blockout.recipes import Recipe, TrainContext, build_recipes
from blockout.logger import RunLogger
from blockout.runwriter import LOCK_NAME, RunLock, clear_unfinished_run

#: Snapshots of P per run when ``snapshot_every`` is not given.
TARGET_SNAPSHOTS = 30


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :func:`train` did: ``status`` is ``finished``, ``interrupted`` or ``already-finished``."""

    run_dir: Path
    status: str
    step: int
    epochs_done: int
    final_test_acc: float | None = None
    best_test_acc: float | None = None
    message: str = ""


@dataclass
class _Progress:
    """The loop position and running sums that a checkpoint must carry for an exact resume."""

    step: int = 0  # optimiser steps done
    epochs_done: int = 0  # completed epochs
    batch_in_epoch: int = 0  # batches done in the current epoch
    loss_sum: float = 0.0  # sum of per-sample training loss in the current epoch (this rank)
    correct: int = 0
    seen: int = 0
    best_acc: float = -1.0
    best_step: int = -1
    elapsed: float = 0.0  # training seconds before this session
    finished: bool = False

    def to_state(self) -> dict:
        return {k: getattr(self, k) for k in ("step", "epochs_done", "batch_in_epoch", "loss_sum", "correct",
                                              "seen", "best_acc", "best_step", "elapsed", "finished")}


def log(msg: str) -> None:
    """Training messages go to stderr (stdout is for results such as ``inspect`` output)."""
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# optimisation


def param_groups(model: BlockoutNet, config: TrainConfig) -> list[dict]:
    """Optimiser groups of ``model`` (:func:`blockout.fcstack.parameter_groups`) with the config's lrs."""
    return parameter_groups(model.parameters(), model.theta_parameters(), config.lr,
                            weight_decay=config.weight_decay, theta_lr_mult=config.theta_lr_mult)


def make_optimizer(model: BlockoutNet, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(step: int, total_steps: int, schedule: str, warmup: int = 0) -> float:
    """Learning-rate multiplier before optimiser step ``step`` (0-based).

    >>> lr_factor(0, 100, "cosine"), round(lr_factor(50, 100, "cosine"), 3), lr_factor(5, 100, "constant", 10)
    (1.0, 0.5, 0.6)
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    t = min(max(step - warmup, 0), span) / span
    return 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor


# ------------------------------------------------------------------------------------------
# data


def _batches_of(indices: list[int], batch_size: int) -> list[list[int]]:
    """Chunks of ``indices``; a trailing batch of one is dropped (batch norm needs two).

    >>> _batches_of(list(range(5)), 2)
    [[0, 1], [2, 3]]
    """
    out = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    if len(out) > 1 and len(out[-1]) < 2:
        out.pop()
    return out


def _iterate(ds, batches: list[list[int]], num_workers: int, device: torch.device, seed: int):
    """Yield ``(x, y)`` on ``device`` for each batch of indices, without touching the global RNG."""
    if hasattr(ds, "get_batch") and num_workers == 0:
        for idx in batches:
            x, y = ds.get_batch(idx)
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return
    # the generator keeps DataLoader from drawing its base seed from the global RNG
    loader = DataLoader(ds, batch_sampler=batches, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=device.type == "cuda")
    for x, y in loader:
        yield x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)


def epoch_batches(sampler: DistributedSampler, epoch: int, batch_size: int) -> list[list[int]]:
    """This rank's batches of ``epoch`` (0-based): a pure function of seed, epoch, rank."""
    sampler.set_epoch(epoch)
    return _batches_of(list(sampler), batch_size)


@torch.no_grad()
def evaluate(model: nn.Module, ds, info: bdist.DistInfo, batch_size: int, autocast) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``ds`` (sharded over ranks, all-reduced)."""
    was_training = model.training
    model.eval()
    idx = list(range(info.rank, len(ds), info.world_size))
    sums = torch.zeros(3, dtype=torch.float64, device=info.device)  # loss sum, correct, count
    for x, y in _iterate(ds, [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)], 0,
                         info.device, 0):
        with autocast():
            logits = model(x)
        sums[0] += nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += y.numel()
    bdist.all_reduce(sums, info)
    model.train(was_training)
    n = max(sums[2].item(), 1.0)
    return sums[0].item() / n, sums[1].item() / n


# ------------------------------------------------------------------------------------------
# run folders


def default_out(config: TrainConfig) -> Path:
    return Path("checkpoints") / f"{config.dataset}-{config.method}-s{config.seed}"


def _ignorable(p: Path) -> bool:
    """The lock file and leftovers of killed atomic writes do not make a folder a run."""
    return p.name == LOCK_NAME or (p.name.startswith(".") and p.name.endswith(".tmp"))


def check_new_run_dir(run_dir: Path) -> None:
    """A new run needs a missing or empty folder (its lock file and stale temporaries aside)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} exists and is not a folder")
    if run_dir.is_dir() and any(not _ignorable(p) for p in run_dir.iterdir()):
        raise UserError(f"run folder {run_dir} already exists and is not empty "
                        f"(continue it with --resume {run_dir}, or choose another --out)")


def is_resumable(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a run that ``--resume`` can continue: a checkpoint, or a run
    killed before its first checkpoint (``run.json`` only), which starts again from the beginning."""
    run_dir = Path(run_dir)
    return (run_dir / rf.TRAIN_STATE).is_file() or (run_dir / rf.RUN_JSON).is_file()


def trainer_run_record(run_dir: Path) -> "fmt.RunRecord":
    """``run.json`` of a run that ``blockout train`` started; a folder written by another writer
    (:class:`~blockout.logger.RunLogger` in a user's loop, the Lightning callback) is a
    :class:`UserError`: the trainer would otherwise start it again and replace what it holds."""
    record = fmt.read_run(run_dir)
    writer = (record.runtime or {}).get("writer")
    if writer is not None:
        raise UserError(f"--resume {run_dir}: this run was written by {writer} (your own training loop), not by "
                        f"blockout train, so it cannot be resumed here; its folder is left as it is")
    return record


def resume_config(run_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The config of the run in ``run_dir`` with the allowed ``overrides`` (epochs, device, ...).

    Any other option that differs from the run's is a :class:`UserError`: a resumed run must be
    the same run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such run folder")
    state_path = run_dir / rf.TRAIN_STATE
    if state_path.is_file():
        saved = load_train_state(state_path)["config"]
        source = str(state_path)
    elif (run_dir / rf.RUN_JSON).is_file():
        # killed before the first checkpoint: run.json holds the same resolved config
        saved = trainer_run_record(run_dir).config
        source = str(run_dir / rf.RUN_JSON)
        if not saved:
            raise UserError(f"--resume {run_dir}: {rf.RUN_JSON} holds no config object, so the run cannot be "
                            f"continued")
    else:
        raise UserError(f"--resume {run_dir}: neither {rf.TRAIN_STATE} nor {rf.RUN_JSON} found, so there is "
                        f"no run to continue")
    saved = flat_config(saved, source)  # nested (new) or flat (every run before nesting) alike
    saved.setdefault("augment", "none")  # runs saved before --augment existed trained without augmentation
    saved.setdefault("cocluster_source", "weights")  # runs saved before --cocluster-source clustered the weights
    config = TrainConfig.from_dict(saved, source=source)
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in TrainConfig.field_names():
            raise UserError(f"unknown option {key!r}")
        if key == "out":
            continue
        if getattr(config, key) == value:
            continue
        if key not in TrainConfig.RESUMABLE_CHANGES:
            raise UserError(f"--resume: {key}={value!r} differs from the run's {key}={getattr(config, key)!r}; "
                            f"only {', '.join(k for k in TrainConfig.RESUMABLE_CHANGES if k != 'out')} "
                            f"can change when resuming")
        changes[key] = value
    return config.replace(out=str(run_dir), **changes)


# ------------------------------------------------------------------------------------------
# Ctrl-C


class _StopFlag:
    """First SIGINT (or SIGTERM, e.g. from torchrun or a scheduler) asks the loop to stop at the
    next step boundary; a second one aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log("\ninterrupt: stopping after this step and saving a resumable checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------
# the loop


def _autocast_factory(device: torch.device, amp: str):
    """A context-manager factory for mixed precision, and whether a GradScaler is needed."""
    use = amp == "on" or (amp == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext, False, None
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.bfloat16
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), dtype == torch.float16, dtype


def train(config: TrainConfig, *, resume: bool = False,
          on_step: Callable[[int, BlockoutNet], None] | None = None,
          recipes: Sequence[Recipe] = ()) -> TrainResult:
    """Train ``config`` into its run folder (``config.out``); continue it when ``resume``.

    Parameters
    ----------
    config : TrainConfig
        For a resumed run, build it with :func:`resume_config`.
    resume : bool
        Continue the run in ``config.out`` from its ``train_state.pt``.
    on_step : callable, optional
        ``on_step(step, model)`` after every optimiser step (tests use it to inject faults;
        raising KeyboardInterrupt there behaves like Ctrl-C).
    recipes : sequence of Recipe, optional
        Your own :class:`blockout.recipes.Recipe` plug-ins, run after the ones ``config`` asks for
        (:func:`blockout.recipes.build_recipes`). A resumed run needs the same ones.
    """
    from blockout.data import load_dataset  # heavy-ish import, only when training

    info = bdist.setup(config.device)
    run_dir = Path(config.out) if config.out else default_out(config)
    lock = RunLock(run_dir) if info.is_main else None
    failed = True
    try:
        if lock is not None:
            lock.acquire()
        result = _train(config, info, resume, on_step, load_dataset, recipes, lock)
        failed = False
        return result
    except OSError as exc:
        if exc.errno not in _DISK_ERRNOS:
            raise
        raise UserError(f"cannot write the run folder {run_dir}: {exc.strerror}"
                        f"{f' ({exc.filename})' if exc.filename else ''}. Files already written are intact; "
                        f"fix that, then continue with: blockout train --resume {run_dir}") from None
    finally:
        if lock is not None:
            lock.release()
        bdist.cleanup(info, failed=failed)


#: errors of the disk rather than of the program: reported as one line with how to resume
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO}


def _train(config, info, resume, on_step, load_dataset, extra_recipes=(), lock=None) -> TrainResult:
    session = _Session(config, info, resume, on_step, load_dataset, extra_recipes, lock)
    try:
        if session.done is not None:
            return session.done
        return session.run()
    finally:
        # the loop saves its own `last` snapshot (each epoch's end, Ctrl-C); none after an abort
        if session.logger is not None:
            session.logger.close(last=False)


class _Session:
    """One training session: :meth:`__init__` sets up (folder, data, model, recipes, resume) and
    :meth:`run` is the loop, which calls the recipes' hooks (:mod:`blockout.recipes`) and knows
    no recipe by name."""

    def __init__(self, config: TrainConfig, info: bdist.DistInfo, resume: bool, on_step, load_dataset,
                 extra_recipes=(), lock: RunLock | None = None) -> None:
        self.info, self.on_step, self.done = info, on_step, None
        run_dir = Path(config.out) if config.out else default_out(config)
        config = config.replace(out=str(run_dir))
        state = self._open_folder(run_dir, resume)

        # ---- data and model (identical on every rank: the seed is shared)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)
        data = config.data
        train_ds, test_ds, dinfo = load_dataset(
            data.dataset, data_dir=data.data_dir, hierarchy=data.hierarchy,
            samples_per_class=data.samples_per_class, test_samples_per_class=data.test_samples_per_class,
            seed=data.data_seed, image_size=data.image_size)
        dataset_json = dict(dinfo.to_json())
        dataset_json.setdefault("name", data.dataset)
        num_classes = len(dataset_json["class_names"])
        torch.manual_seed(config.seed)
        self.recipes = build_recipes(config)
        self.recipes.recipes += list(extra_recipes)
        model = build_model(config, dataset_json["input_shape"], num_classes, recipes=self.recipes).to(info.device)
        self.optimizer = make_optimizer(model, config)
        self.autocast, self.needs_scaler, amp_dtype = _autocast_factory(info.device, config.run.amp)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.needs_scaler)

        augment = resolve_augment(data.augment, data.dataset)
        side = int(dataset_json["input_shape"][-1]) if len(dataset_json["input_shape"]) == 3 else 0
        self.aug_pad = crop_padding(side) if augment in ("crop", "crop-flip") and side else 0
        self.aug_flip = augment == "crop-flip" and side > 0
        self.aug_fill = getattr(train_ds, "_shift", 0.0)  # normalised black: pad like zero-padding the raw image
        if torch.is_tensor(self.aug_fill):
            self.aug_fill = self.aug_fill.to(info.device)
        self.sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                          seed=config.seed, drop_last=False)
        self.steps_per_epoch = len(_batches_of(list(range(len(self.sampler))), config.optim.batch_size))
        self.total_steps = self.steps_per_epoch * config.optim.epochs
        if config.run.snapshot_every is None:
            config = config.replace(snapshot_every=max(1, round(self.total_steps / TARGET_SNAPSHOTS)))
        self.config, self.run_dir, self.model = config, run_dir, model
        self.train_ds, self.test_ds = train_ds, test_ds
        self.prog = _Progress()
        self.ctx = TrainContext(model=model, config=config, optimizer=self.optimizer,
                                steps_per_epoch=self.steps_per_epoch, is_main=info.is_main, log=log)
        runtime = {"device": str(info.device), "world_size": info.world_size,
                   "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
                   "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps, "augment": augment}
        # rank 0 writes the run folder, through the public RunLogger, under the lock train() holds
        self.logger: RunLogger | None = None
        self._new_logger = lambda resume_at_step: RunLogger(
            run_dir, model, dataset_json["class_names"], dataset_json.get("wnids"), config, dataset=dataset_json,
            topology=model.topology(), extra={"runtime": runtime}, enabled=info.is_main,
            lock=lock if lock is not None else False, resume_at_step=resume_at_step,
            multipliers=lambda: self.recipes.snapshot_arrays(model))
        if state is not None:
            self._restore(state)
        else:
            # sampling draws differ per rank (like dropout masks under DDP); initialisation did not
            torch.manual_seed(config.seed * 1_000_003 + info.rank + 1)
            self.logger = self._new_logger(None).open()  # run.json and the step-0 snapshot of P
            faults.point("start", "run")  # tests: killed between run.json and the first checkpoint
        self.ddp_model: nn.Module = model
        self._trainable: tuple[bool, ...] = ()
        self._sync_ddp()
        self.session_start = time.perf_counter()
        if state is None:
            self.checkpoint()
        self.last_good_step = self.prog.step

    # ---------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        cfg, prog, ctx, recipes, model, opt = self.config, self.prog, self.ctx, self.recipes, self.model, self.optimizer
        status, self.in_step = "finished", False
        model.train()
        with _StopFlag() as stop:
            try:
                for epoch in range(prog.epochs_done, cfg.optim.epochs):
                    ctx.epoch, ctx.step, ctx.epochs_done = epoch, prog.step, prog.epochs_done
                    recipes.on_epoch_start(ctx)
                    self._sync_ddp()  # a recipe may have frozen parameters (e.g. the memberships)
                    batches = epoch_batches(self.sampler, epoch, cfg.optim.batch_size)
                    bar = _progress_bar(self.info, len(batches), prog.batch_in_epoch, epoch, cfg.optim.epochs)
                    for x, y in _iterate(self.train_ds, batches[prog.batch_in_epoch:], cfg.run.num_workers,
                                         self.info.device, cfg.run.seed + epoch):
                        self.in_step = True
                        x = self._augment(x, epoch)
                        set_lr(opt, lr_factor(prog.step, self.total_steps, cfg.optim.lr_schedule,
                                              cfg.optim.warmup_steps))
                        ctx.step = prog.step
                        recipes.before_step(ctx)
                        with self.autocast():
                            logits = self.ddp_model(x)
                            loss = nn.functional.cross_entropy(logits.float(), y)
                        recipes.after_forward(ctx, logits, y)
                        total_loss = recipes.total_loss(loss, ctx)
                        stop_now = self._check_step(total_loss, loss, epoch, stop)
                        opt.zero_grad(set_to_none=True)
                        self.scaler.scale(total_loss).backward()
                        self.scaler.step(opt)
                        self.scaler.update()
                        recipes.after_step(ctx)
                        self._count(loss, logits, y, bar)
                        if len(model.node_sets) and prog.step % cfg.run.snapshot_every == 0:
                            self.snapshot()
                        if self.on_step is not None:
                            self.on_step(prog.step, model)
                        faults.point("step", str(prog.step))
                        if stop_now or stop.requested:
                            raise KeyboardInterrupt
                    if bar is not None:
                        bar.close()
                    self._end_epoch(epoch)
                    if _agree(stop.requested, self.info):
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                status = "interrupted" if not self.in_step else "aborted"
                if not self.in_step:
                    self.snapshot(tags=["last"], weights=True)
                    self.checkpoint()
        return self._result(status)

    # ---------------------------------------------------------------- steps
    def _sync_ddp(self) -> None:
        """Wrap the model in DistributedDataParallel (under torchrun), again whenever the set of
        trainable parameters changed: DDP fixes the parameters it reduces when it is built, so a
        parameter frozen later would leave it waiting for a gradient that never comes."""
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if not self.info.enabled or trainable == self._trainable:
            return
        self._trainable = trainable
        if self.ddp_model is not self.model:
            # the old wrapper's reducer holds autograd hooks on the parameters: collect it now, on
            # every rank alike, not whenever the garbage collector gets to it (its hooks would
            # launch all-reduces of their own on one rank and not on the other)
            self.ddp_model = self.model
            gc.collect()
        self.ddp_model = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.info.device.index] if self.info.device.type == "cuda" else None)

    def _augment(self, x: torch.Tensor, epoch: int) -> torch.Tensor:
        if not (self.aug_pad or self.aug_flip):
            return x
        # a pure function of (seed, rank, epoch, batch): resumes exactly
        gen = batch_generator(self.config.run.seed * 1_000_003 + self.info.rank, epoch, self.prog.batch_in_epoch)
        return augment_batch(x, gen, pad=self.aug_pad, flip=self.aug_flip, fill=self.aug_fill)

    def _check_step(self, total_loss: torch.Tensor, loss: torch.Tensor, epoch: int, stop: "_StopFlag") -> bool:
        """Raise :class:`TrainingDiverged` when any rank's loss is not finite; True when any rank
        was asked to stop (every rank agrees, so all stop after the same step)."""
        flags = torch.tensor([0.0 if torch.isfinite(total_loss) else 1.0, float(stop.requested)],
                             device=self.info.device)
        bdist.all_reduce(flags, self.info, op="max")
        if flags[0].item() > 0:
            raise TrainingDiverged(
                f"training loss became {loss.item()} at step {self.prog.step + 1} (epoch {epoch + 1}); "
                f"stopped. The last good checkpoint (step {self.last_good_step}) is kept in {self.run_dir}; "
                f"try a lower --lr")
        return flags[1].item() > 0

    def _count(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, bar) -> None:
        prog = self.prog
        n = y.numel()
        prog.step += 1
        prog.batch_in_epoch += 1
        prog.loss_sum += loss.item() * n
        prog.correct += int((logits.detach().argmax(1) == y).sum().item())
        prog.seen += n
        self.in_step = False
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{prog.loss_sum / prog.seen:.3f}", acc=f"{prog.correct / prog.seen:.3f}",
                            refresh=False)

    def _end_epoch(self, epoch: int) -> None:
        """Evaluate, log, snapshot and checkpoint at the end of ``epoch``."""
        prog, info, model = self.prog, self.info, self.model
        sums = torch.tensor([prog.loss_sum, prog.correct, prog.seen], dtype=torch.float64, device=info.device)
        bdist.all_reduce(sums, info)
        train_loss = sums[0].item() / max(sums[2].item(), 1)
        train_acc = sums[1].item() / max(sums[2].item(), 1)
        test_loss, test_acc = evaluate(model, self.test_ds, info, self.config.optim.batch_size * 2, self.autocast)
        prog.epochs_done = epoch + 1
        prog.batch_in_epoch, prog.loss_sum, prog.correct, prog.seen = 0, 0.0, 0, 0
        record = {"epoch": prog.epochs_done, "train_loss": train_loss,
                  "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(self.elapsed(), 3),
                  "probs": self.logger.probs_summary()}
        self.ctx.step, self.ctx.epochs_done = prog.step, prog.epochs_done
        record.update(self.recipes.epoch_metrics(self.ctx))
        if not all(math.isfinite(v) for v in (train_loss, test_loss)):
            raise TrainingDiverged(f"loss became non-finite by the end of epoch {epoch + 1} "
                                   f"(train {train_loss}, test {test_loss}); the last good checkpoint "
                                   f"(step {self.last_good_step}) is kept in {self.run_dir}; try a lower --lr")
        self.logger.log_metrics(prog.step, **record)
        tags = ["last"]
        if test_acc > prog.best_acc:
            prog.best_acc, prog.best_step = test_acc, prog.step
            tags.append("best")
        self.snapshot(tags=tags, weights=True)
        if prog.epochs_done == self.config.optim.epochs:
            prog.finished = True
        self.checkpoint()
        self.last_good_step = prog.step
        if info.is_main:
            log(f"epoch {prog.epochs_done}/{self.config.optim.epochs} step {prog.step}: train loss {train_loss:.4f} "
                f"acc {train_acc:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | {self.elapsed():.0f}s")

    # ---------------------------------------------------------------- saving
    def elapsed(self) -> float:
        return self.prog.elapsed + time.perf_counter() - self.session_start

    def checkpoint(self) -> None:
        rng_all = bdist.all_gather_object(capture_rng_state(), self.info)
        if not self.info.is_main:
            return
        state = {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.needs_scaler else {},
            "progress": {**self.prog.to_state(), "elapsed": self.elapsed()},
            "rng": {"per_rank": rng_all},
            "world_size": self.info.world_size,
        }
        recipe_state = self.recipes.state_dict()
        if recipe_state:  # only recipes with state outside the model add the key
            state["recipes"] = recipe_state
        save_train_state(self.run_dir / fmt.TRAIN_STATE, state)

    def snapshot(self, tags=(), weights=False) -> None:
        """P of every node set (and the recipes' arrays) at this step; tagged ones keep the weights."""
        if self.info.is_main:
            self.logger.snapshot(self.prog.step, tag=list(tags), epoch=self.prog.epochs_done, weights=weights)

    # ---------------------------------------------------------------- setup helpers
    def _open_folder(self, run_dir: Path, resume: bool) -> dict | None:
        """Check (or clear) the run folder; the saved state when resuming from a checkpoint."""
        info = self.info
        state = None
        if resume and (run_dir / rf.TRAIN_STATE).is_file():
            state = load_train_state(run_dir / rf.TRAIN_STATE, map_location="cpu")
        elif resume:
            if not (run_dir / rf.RUN_JSON).is_file():
                raise UserError(f"--resume {run_dir}: no run to continue (neither {rf.TRAIN_STATE} nor "
                                f"{rf.RUN_JSON})")
            trainer_run_record(run_dir)  # never clear a folder our trainer did not start
            if info.is_main:  # killed before its first checkpoint: start again from the beginning
                log(f"{run_dir} has no checkpoint yet (stopped before the first one): starting it again")
                clear_unfinished_run(run_dir)
        else:
            check_new_run_dir(run_dir)
        if info.is_main:
            stale = rf.remove_stale_temporaries(run_dir)
            if stale:
                log(f"removed {stale} temporary file(s) left by an interrupted write in {run_dir}")
        bdist.barrier(info)  # every rank checked the folder before rank 0 writes into it
        return state

    def _restore(self, state: dict) -> None:
        """Continue from ``state``: model, optimiser, recipes, progress and RNG (sets :attr:`done`
        when the run has nothing left to do)."""
        config, info, prog, run_dir = self.config, self.info, self.prog, self.run_dir
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.recipes.load_state_dict(state.get("recipes") or {})
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{run_dir / rf.TRAIN_STATE} does not fit this run's model "
                            f"({str(exc).splitlines()[0][:200]})") from None
        if not set(state["progress"]) <= set(prog.to_state()):
            raise UserError(f"{run_dir / rf.TRAIN_STATE}: unknown progress fields "
                            f"{sorted(set(state['progress']) - set(prog.to_state()))[:3]}")
        for g in self.optimizer.param_groups:  # base lrs follow the (unchanged) config
            g["base_lr"] = config.optim.lr * (config.optim.theta_lr_mult if g.get("name") == "theta" else 1.0)
        if "scaler" in state and self.needs_scaler:
            self.scaler.load_state_dict(state["scaler"])
        for k, v in state["progress"].items():
            setattr(prog, k, v)
        self.ctx.step, self.ctx.epoch, self.ctx.epochs_done = prog.step, prog.epochs_done, prog.epochs_done
        self.recipes.on_resume(self.ctx)
        epochs = config.optim.epochs
        if prog.finished and epochs <= prog.epochs_done:
            msg = (f"run {run_dir} already finished {prog.epochs_done} epoch(s); nothing to do "
                   f"(pass --epochs N with N > {prog.epochs_done} to train further)")
            if info.is_main:
                log(msg)
            self.done = TrainResult(run_dir, "already-finished", prog.step, prog.epochs_done,
                                    message=msg, best_test_acc=prog.best_acc if prog.best_acc >= 0 else None)
            return
        if epochs < prog.epochs_done:
            raise UserError(f"--epochs {epochs} is fewer than the {prog.epochs_done} already trained in {run_dir}")
        prog.finished = False
        per_rank = state["rng"].get("per_rank")
        if per_rank is not None and len(per_rank) == info.world_size:
            restore_rng_state(per_rank[info.rank])
        else:
            if info.is_main:
                log(f"note: the run was saved with {len(per_rank or [])} process(es), now {info.world_size}: "
                    "sampling RNG re-seeded, so results will not match an uninterrupted run exactly")
            torch.manual_seed(config.seed * 1_000_003 + info.rank + 1 + prog.step)
        # continue at the checkpoint: what was written after it is cut, half-done writes repaired
        self.logger = self._new_logger(prog.step).open()
        if info.is_main:
            log(f"resuming {run_dir} at step {prog.step} (epoch {prog.epochs_done + 1}, "
                f"batch {prog.batch_in_epoch}/{self.steps_per_epoch})")

    def _result(self, status: str) -> TrainResult:
        prog, info, run_dir = self.prog, self.info, self.run_dir
        final = fmt.read_metrics(run_dir) if info.is_main else []
        final_acc = final[-1]["test_acc"] if final else None
        if status == "aborted":
            msg = (f"aborted in the middle of step {prog.step + 1}; nothing saved for it. The last checkpoint "
                   f"(step {self.last_good_step}) is kept: continue with: blockout train --resume {run_dir}")
        elif status == "interrupted":
            msg = (f"interrupted at step {prog.step} (epoch {prog.epochs_done + 1}); saved a resumable "
                   f"checkpoint. Continue with: blockout train --resume {run_dir}")
        else:
            msg = (f"finished {prog.epochs_done} epoch(s) in {self.elapsed():.0f}s: final test accuracy "
                   f"{final_acc if final_acc is None else f'{final_acc:.4f}'}, best {prog.best_acc:.4f} "
                   f"(step {prog.best_step}); run folder {run_dir}")
        if info.is_main:
            log(msg)
        return TrainResult(run_dir, status, prog.step, prog.epochs_done, final_test_acc=final_acc,
                           best_test_acc=prog.best_acc if prog.best_acc >= 0 else None, message=msg)


def _agree(flag: bool, info: bdist.DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    t = torch.tensor([float(flag)], device=info.device)
    return bdist.all_reduce(t, info, op="max").item() > 0


def _progress_bar(info: bdist.DistInfo, total: int, initial: int, epoch: int, epochs: int):
    """A tqdm bar on stderr (rank 0, terminals only)."""
    if not info.is_main or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", file=sys.stderr,
                leave=False, dynamic_ncols=True)
