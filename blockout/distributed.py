"""Device choice and torchrun / DistributedDataParallel plumbing.

Run under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) training uses the process group
torchrun set up: gloo on CPU, nccl on CUDA. Every helper here is a no-op for a single process,
so the training loop reads the same either way.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from blockout.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when present (``cuda:<local_rank>``), else CPU; checks that CUDA exists.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={spec!r} but CUDA is not available here (use --device cpu or auto)")
        index = int(spec.split(":")[1]) if ":" in spec else local_rank
        if index >= torch.cuda.device_count():
            raise UserError(f"device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device(f"cuda:{index}")
    raise UserError(f"device={spec!r} is not one of auto, cpu, cuda, cuda:N")


def setup(device_spec: str) -> DistInfo:
    """Join torchrun's process group when launched by it; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0, resolve_device(device_spec))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_spec.startswith("cuda:"):
        device_spec = "cuda"  # one GPU per process: cuda:<local_rank>
    device = resolve_device(device_spec, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or "0"
        if restart == "0":
            tdist.init_process_group(backend=backend)
        else:
            # torchrun keeps one store across restarts: without a fresh namespace the restarted
            # ranks read the previous round's addresses (gloo's connectFullMesh then dials the
            # dead process and fails).
            tdist.init_process_group(backend=backend, store=_restart_store(restart, rank, world),
                                     rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, device)


def _restart_store(restart: str, rank: int, world: int):
    """The launcher's TCPStore under a prefix unique to this restart round."""
    from datetime import timedelta

    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = tdist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                           is_master=(rank == 0 and not agent_hosts), timeout=timedelta(minutes=5))
    return tdist.PrefixStore(f"blockout/restart-{restart}", store)


def cleanup(info: DistInfo, failed: bool = False) -> None:
    """Leave the process group together: a rank tearing gloo down while another is still
    communicating aborts the process ("terminate called without an active exception").

    ``failed``: this rank is leaving on an error (a peer may be dead): no barrier, whose own
    error would hide the first one."""
    if info.enabled and tdist.is_initialized():
        # DistributedDataParallel wrappers left in reference cycles would otherwise be destroyed
        # after the process group, at interpreter exit, and abort the process the same way
        gc.collect()
        try:
            if not failed:
                tdist.barrier()
        finally:
            tdist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """Sum (or max) ``tensor`` over every process, in place; returns it."""
    if info.enabled:
        tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM if op == "sum" else tdist.ReduceOp.MAX)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.enabled:
        tdist.barrier()


def all_gather_object(obj, info: DistInfo) -> list:
    """Every process's ``obj`` (in-memory exchange between our own processes)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    tdist.all_gather_object(out, obj)
    return out
