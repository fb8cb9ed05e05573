"""The training loop behind ``blockout train``: one process, one GPU, or many under torchrun.

What a run guarantees:

* **Determinism on CPU.** The data order comes from a :class:`DistributedSampler` seeded by the
  run's seed and the epoch; initialisation and membership sampling draw from the global torch
  generator seeded at start, whose state is saved in every checkpoint. ``--resume`` restores it,
  so an interrupted run continued to the end equals an uninterrupted one bit for bit.
* **Checkpoints** (``train_state.pt``) at the start, at the end of every epoch, and on Ctrl-C
  (the first Ctrl-C stops at the next step boundary; a second one aborts at once).
* **NaN/inf loss** stops the run with :class:`TrainingDiverged` and keeps the last good checkpoint.
* **Run folder** written by rank 0 only (:class:`blockout.runwriter.RunWriter`); metrics are
  all-reduced so every rank agrees.
"""

from __future__ import annotations

import contextlib
import errno
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from analysis import faults
from analysis import runfolder as rf
from blockout import distributed as bdist
from blockout.checkpoint import capture_rng_state, load_train_state, restore_rng_state, save_train_state
from blockout import emergence as emg
from blockout.config import TrainConfig
from blockout.data.augment import augment_batch, batch_generator, crop_padding, resolve_augment
from blockout.errors import UserError
from blockout.models import BlockoutNet, build_model
from blockout.runwriter import LOCK_NAME, RunLock, RunWriter, clear_unfinished_run

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
    """Optimiser groups: weight matrices (decayed), biases/norms (no decay), θ (own lr, no decay)."""
    theta_ids = {id(p) for p in model.theta_parameters()}
    decay, no_decay, theta = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in theta_ids:
            theta.append(p)
        elif p.ndim >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"name": "weights", "params": decay, "weight_decay": config.weight_decay, "base_lr": config.lr},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0, "base_lr": config.lr},
        {"name": "theta", "params": theta, "weight_decay": 0.0, "base_lr": config.lr * config.theta_lr_mult},
    ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["lr"] = g["base_lr"]
    return groups


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
        meta = rf.read_json(run_dir / rf.RUN_JSON, rf.RUN_JSON, root=run_dir)
        saved = meta.get("config") if isinstance(meta, dict) else None
        source = str(run_dir / rf.RUN_JSON)
        if not isinstance(saved, dict):
            raise UserError(f"--resume {run_dir}: {rf.RUN_JSON} holds no config object, so the run cannot be "
                            f"continued")
    else:
        raise UserError(f"--resume {run_dir}: neither {rf.TRAIN_STATE} nor {rf.RUN_JSON} found, so there is "
                        f"no run to continue")
    saved = dict(saved)
    saved.setdefault("augment", "none")  # runs saved before --augment existed trained without augmentation
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


def _probs_summary(probs: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: {"mean": float(P.mean()), "frac_below_0.1": float((P < 0.1).mean()),
                   "frac_above_0.9": float((P > 0.9).mean())} for name, P in probs.items()}


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
          on_step: Callable[[int, BlockoutNet], None] | None = None) -> TrainResult:
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
    """
    from blockout.data import load_dataset  # heavy-ish import, only when training

    info = bdist.setup(config.device)
    run_dir = Path(config.out) if config.out else default_out(config)
    lock = RunLock(run_dir) if info.is_main else None
    failed = True
    try:
        if lock is not None:
            lock.acquire()
        result = _train(config, info, resume, on_step, load_dataset)
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


def _train(config, info, resume, on_step, load_dataset) -> TrainResult:
    run_dir = Path(config.out) if config.out else default_out(config)
    config = config.replace(out=str(run_dir))
    state = None
    if resume and (run_dir / rf.TRAIN_STATE).is_file():
        state = load_train_state(run_dir / rf.TRAIN_STATE, map_location="cpu")
    elif resume:
        if not (run_dir / rf.RUN_JSON).is_file():
            raise UserError(f"--resume {run_dir}: no run to continue (neither {rf.TRAIN_STATE} nor {rf.RUN_JSON})")
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

    # ---- data and model (identical on every rank: the seed is shared)
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    train_ds, test_ds, dinfo = load_dataset(
        config.dataset, data_dir=config.data_dir, hierarchy=config.hierarchy,
        samples_per_class=config.samples_per_class, test_samples_per_class=config.test_samples_per_class,
        seed=config.data_seed, image_size=config.image_size)
    dataset_json = dict(dinfo.to_json())
    dataset_json.setdefault("name", config.dataset)
    num_classes = len(dataset_json["class_names"])
    torch.manual_seed(config.seed)
    model = build_model(config, dataset_json["input_shape"], num_classes).to(info.device)
    optimizer = make_optimizer(model, config)
    autocast, needs_scaler, amp_dtype = _autocast_factory(info.device, config.amp)
    scaler = torch.amp.GradScaler(info.device.type, enabled=needs_scaler)

    augment = resolve_augment(config.augment, config.dataset)
    side = int(dataset_json["input_shape"][-1]) if len(dataset_json["input_shape"]) == 3 else 0
    aug_pad = crop_padding(side) if augment in ("crop", "crop-flip") and side else 0
    aug_flip = augment == "crop-flip" and side > 0
    aug_fill = getattr(train_ds, "_shift", 0.0)  # normalised black: pad like zero-padding the raw image
    if torch.is_tensor(aug_fill):
        aug_fill = aug_fill.to(info.device)
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    steps_per_epoch = len(_batches_of(list(range(len(sampler))), config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    if config.snapshot_every is None:
        config = config.replace(snapshot_every=max(1, round(total_steps / TARGET_SNAPSHOTS)))
    writer = RunWriter(run_dir, enabled=info.is_main)
    runtime = {"device": str(info.device), "world_size": info.world_size,
               "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
               "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "augment": augment}

    prog = _Progress()
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{run_dir / rf.TRAIN_STATE} does not fit this run's model "
                            f"({str(exc).splitlines()[0][:200]})") from None
        if not set(state["progress"]) <= set(prog.to_state()):
            raise UserError(f"{run_dir / rf.TRAIN_STATE}: unknown progress fields "
                            f"{sorted(set(state['progress']) - set(prog.to_state()))[:3]}")
        for g in optimizer.param_groups:  # base lrs follow the (unchanged) config
            g["base_lr"] = config.lr * (config.theta_lr_mult if g.get("name") == "theta" else 1.0)
        if "scaler" in state and needs_scaler:
            scaler.load_state_dict(state["scaler"])
        for k, v in state["progress"].items():
            setattr(prog, k, v)
        if config.freeze_after is not None and prog.epochs_done >= config.freeze_after:
            _freeze(model, config, info, quiet=True)  # frozen values came with the state; stop θ training again
        if prog.finished and config.epochs <= prog.epochs_done:
            msg = (f"run {run_dir} already finished {prog.epochs_done} epoch(s); nothing to do "
                   f"(pass --epochs N with N > {prog.epochs_done} to train further)")
            if info.is_main:
                log(msg)
            return TrainResult(run_dir, "already-finished", prog.step, prog.epochs_done,
                               message=msg, best_test_acc=prog.best_acc if prog.best_acc >= 0 else None)
        if config.epochs < prog.epochs_done:
            raise UserError(f"--epochs {config.epochs} is fewer than the {prog.epochs_done} already trained "
                            f"in {run_dir}")
        prog.finished = False
        rng = state["rng"]
        per_rank = rng.get("per_rank")
        if per_rank is not None and len(per_rank) == info.world_size:
            restore_rng_state(per_rank[info.rank])
        else:
            if info.is_main:
                log(f"note: the run was saved with {len(per_rank or [])} process(es), now {info.world_size}: "
                    "sampling RNG re-seeded, so results will not match an uninterrupted run exactly")
            torch.manual_seed(config.seed * 1_000_003 + info.rank + 1 + prog.step)
        writer.truncate_after(prog.step)
        writer.repair()
        if info.is_main:
            log(f"resuming {run_dir} at step {prog.step} (epoch {prog.epochs_done + 1}, "
                f"batch {prog.batch_in_epoch}/{steps_per_epoch})")
    else:
        # sampling draws differ per rank (like dropout masks under DDP); initialisation did not
        torch.manual_seed(config.seed * 1_000_003 + info.rank + 1)
        writer.write_run_json(config.to_dict(), dataset_json, model.topology(), extra={"runtime": runtime})
        if len(model.node_sets):
            writer.snapshot(0, 0, model.node_set_probs(), multipliers=emg.multiplier_arrays(model) or None)
        faults.point("start", "run")  # tests: killed between run.json and the first checkpoint

    ddp_model: nn.Module = model
    if info.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)

    session_start = time.perf_counter()

    def elapsed() -> float:
        return prog.elapsed + time.perf_counter() - session_start

    def checkpoint() -> None:
        rng_all = bdist.all_gather_object(capture_rng_state(), info)
        if not info.is_main:
            return
        save_train_state(writer.train_state_path, {
            "config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if needs_scaler else {},
            "progress": {**prog.to_state(), "elapsed": elapsed()},
            "rng": {"per_rank": rng_all},
            "world_size": info.world_size,
        })

    def snapshot(tags=(), weights=False, probs=None) -> None:
        if not info.is_main:
            return
        w, b = model.layer_params() if weights else (None, None)
        writer.snapshot(prog.step, prog.epochs_done, model.node_set_probs() if probs is None else probs, w, b,
                        multipliers=emg.multiplier_arrays(model) or None, tags=tags)

    if state is None:
        checkpoint()
    last_good_step = prog.step

    status = "finished"
    in_step = False
    model.train()
    with _StopFlag() as stop:
        try:
            for epoch in range(prog.epochs_done, config.epochs):
                _phase(model, config, info, epoch)
                batches = epoch_batches(sampler, epoch, config.batch_size)
                todo = batches[prog.batch_in_epoch:]
                bar = _progress_bar(info, len(batches), prog.batch_in_epoch, epoch, config.epochs)
                for x, y in _iterate(train_ds, todo, config.num_workers, info.device, config.seed + epoch):
                    in_step = True
                    if aug_pad or aug_flip:  # a pure function of (seed, rank, epoch, batch): resumes exactly
                        gen = batch_generator(config.seed * 1_000_003 + info.rank, epoch, prog.batch_in_epoch)
                        x = augment_batch(x, gen, pad=aug_pad, flip=aug_flip, fill=aug_fill)
                    set_lr(optimizer, lr_factor(prog.step, total_steps, config.lr_schedule, config.warmup_steps))
                    if epoch < config.membership_warmup:  # memberships held at their start
                        for g in optimizer.param_groups:
                            if g.get("name") == "theta":
                                g["lr"] = 0.0
                    if model.is_blockout:  # emergence options: temperature and budget schedules
                        progress = emg.learning_progress(prog.step, steps_per_epoch, config.epochs,
                                                         config.freeze_after)
                        emg.apply_schedules(model, config, progress)
                        if config.cocluster_anneal_epochs:  # the mask fades in after the co-clustering
                            model.mask_blend = emg.anneal_blend(prog.step, steps_per_epoch, config.cocluster_at,
                                                                config.cocluster_anneal_epochs)
                    with autocast():
                        logits = ddp_model(x)
                        loss = nn.functional.cross_entropy(logits.float(), y)
                    densities = {}
                    total_loss = loss
                    if model.is_blockout:  # usage balancing, budget penalties
                        extra, densities = emg.emergence_loss(model, config, progress)
                        if extra is not None:
                            total_loss = loss + extra
                    flags = torch.tensor([0.0 if torch.isfinite(total_loss) else 1.0, float(stop.requested)],
                                         device=info.device)
                    bdist.all_reduce(flags, info, op="max")
                    if flags[0].item() > 0:
                        raise TrainingDiverged(
                            f"training loss became {loss.item()} at step {prog.step + 1} (epoch {epoch + 1}); "
                            f"stopped. The last good checkpoint (step {last_good_step}) is kept in {run_dir}; "
                            f"try a lower --lr")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(total_loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    if densities:
                        emg.update_budgets(model, densities)
                    n = y.numel()
                    prog.step += 1
                    prog.batch_in_epoch += 1
                    prog.loss_sum += loss.item() * n
                    prog.correct += int((logits.detach().argmax(1) == y).sum().item())
                    prog.seen += n
                    in_step = False
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{prog.loss_sum / prog.seen:.3f}",
                                        acc=f"{prog.correct / prog.seen:.3f}", refresh=False)
                    if len(model.node_sets) and prog.step % config.snapshot_every == 0:
                        snapshot()
                    if on_step is not None:
                        on_step(prog.step, model)
                    faults.point("step", str(prog.step))
                    if flags[1].item() > 0 or stop.requested:
                        raise KeyboardInterrupt
                if bar is not None:
                    bar.close()
                # ---- end of epoch: evaluate, log, snapshot, checkpoint
                sums = torch.tensor([prog.loss_sum, prog.correct, prog.seen], dtype=torch.float64,
                                    device=info.device)
                bdist.all_reduce(sums, info)
                train_loss = sums[0].item() / max(sums[2].item(), 1)
                train_acc = sums[1].item() / max(sums[2].item(), 1)
                test_loss, test_acc = evaluate(model, test_ds, info, config.batch_size * 2, autocast)
                prog.epochs_done = epoch + 1
                prog.batch_in_epoch, prog.loss_sum, prog.correct, prog.seen = 0, 0.0, 0, 0
                probs = model.node_set_probs()
                record = {"step": prog.step, "epoch": prog.epochs_done, "train_loss": train_loss,
                          "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
                          "lr": optimizer.param_groups[0]["lr"], "seconds": round(elapsed(), 3),
                          "probs": _probs_summary(probs)}
                if hasattr(model, "cocluster_classes") and prog.epochs_done == config.cocluster_at + 1:
                    record["cocluster_classes"] = model.cocluster_classes.tolist()
                    record["cocluster_k"] = len(set(record["cocluster_classes"]))  # chosen k (cocluster_k)
                multipliers = emg.multiplier_summary(model)
                if multipliers:
                    record["multipliers"] = multipliers
                if not all(math.isfinite(v) for v in (train_loss, test_loss)):
                    raise TrainingDiverged(f"loss became non-finite by the end of epoch {epoch + 1} "
                                           f"(train {train_loss}, test {test_loss}); the last good checkpoint "
                                           f"(step {last_good_step}) is kept in {run_dir}; try a lower --lr")
                writer.log_metrics(record)
                tags = ["last"]
                if test_acc > prog.best_acc:
                    prog.best_acc, prog.best_step = test_acc, prog.step
                    tags.append("best")
                snapshot(tags=tags, weights=True, probs=probs)  # the P the metrics record summarised
                if prog.epochs_done == config.epochs:
                    prog.finished = True
                checkpoint()
                last_good_step = prog.step
                if info.is_main:
                    log(f"epoch {prog.epochs_done}/{config.epochs} step {prog.step}: train loss {train_loss:.4f} "
                        f"acc {train_acc:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | "
                        f"{elapsed():.0f}s")
                if _agree(stop.requested, info):
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            status = "interrupted" if not in_step else "aborted"
            if not in_step:
                snapshot(tags=["last"], weights=True)
                checkpoint()
    final = rf.read_jsonl(run_dir / rf.METRICS) if info.is_main else []
    final_acc = final[-1]["test_acc"] if final else None
    if status == "aborted":
        msg = (f"aborted in the middle of step {prog.step + 1}; nothing saved for it. The last checkpoint "
               f"(step {last_good_step}) is kept: continue with: blockout train --resume {run_dir}")
    elif status == "interrupted":
        msg = (f"interrupted at step {prog.step} (epoch {prog.epochs_done + 1}); saved a resumable checkpoint. "
               f"Continue with: blockout train --resume {run_dir}")
    else:
        msg = (f"finished {prog.epochs_done} epoch(s) in {elapsed():.0f}s: final test accuracy "
               f"{final_acc if final_acc is None else f'{final_acc:.4f}'}, best {prog.best_acc:.4f} "
               f"(step {prog.best_step}); run folder {run_dir}")
    if info.is_main:
        log(msg)
    return TrainResult(run_dir, status, prog.step, prog.epochs_done, final_test_acc=final_acc,
                       best_test_acc=prog.best_acc if prog.best_acc >= 0 else None, message=msg)


def _phase(model: BlockoutNet, config: TrainConfig, info: bdist.DistInfo, epoch: int) -> None:
    """Emergence phases at the start of ``epoch`` (0-based): soft warm-up, then hard; freezing."""
    if not model.is_blockout:
        return
    if config.soft_epochs and model.base_mode == "hard":
        model.set_mode("soft" if epoch < config.soft_epochs else "hard")
    if config.cocluster_at is not None:  # the co-clustered warm start (ours)
        model.plain = epoch < config.cocluster_at
        if not model.plain and not bool(model.cocluster_done):
            assign = emg.cocluster_memberships(model, config)
            if info.is_main:
                sizes = np.bincount(assign["classes"], minlength=model.clusters)
                log(f"memberships set from a co-clustering of the weights after {config.cocluster_at} epoch(s) "
                    f"(classes per cluster: {sizes.min()}-{sizes.max()})")
    if config.freeze_after is not None and epoch >= config.freeze_after:
        _freeze(model, config, info, quiet=False)


def _freeze(model: BlockoutNet, config: TrainConfig, info: bdist.DistInfo, quiet: bool) -> None:
    """Freeze the learned memberships (idempotent; see :func:`blockout.membership.freeze_memberships`)."""
    from blockout.membership import freeze_memberships

    if not any(p.requires_grad for p in model.theta_parameters()):
        return
    rescued = freeze_memberships(model, rescue=config.rescue_dead == "on")
    if info.is_main and not quiet:
        dead = {k: v for k, v in rescued.items() if v}
        log(f"memberships frozen after {config.freeze_after} epoch(s); fine-tuning the weights"
            + (f" (rescued dead nodes: {dead})" if dead else ""))


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
