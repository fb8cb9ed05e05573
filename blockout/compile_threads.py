"""Running the compiled head's inference path on several single-threaded workers.

With two or more intra-op threads, PyTorch runs every operation of the compiled head's inference
path (input gather, one batched product per layer, in-place ReLU, class gather) as its own
parallel region: each is short (a 128-wide block layer takes a fraction of a millisecond), so the
threads spend a large share of the call joining, waking and waiting for each other, and more so
when other processes take the cores. Here the blocks of every layer are split into contiguous
*shares* of about equal multiply-adds, and each share runs on its own thread with one intra-op
thread: the calling thread takes share 0, persistent worker threads the others. Threads wait for
each other only where a share reads rows another share wrote in the layer before (never, when the
branches stay apart through the stack), and once at the end.

Opt-in (``CompiledHead.parallel = True``): when the calling thread has just run multi-threaded
work of its own (a trunk, the dense stack in the benchmark), its idle OpenMP threads keep spinning
for a while and the worker of share 1 waits for a core; measured, that made this path slower than
the layer-by-layer one as often as faster (``docs/compile.md``).

The per-thread thread count is set through the OpenMP runtime and MKL that PyTorch itself loaded
(``omp_set_num_threads`` acts on the calling thread only; MKL's ``MKL_Set_Num_Threads_Local``
likewise), not with ``torch.set_num_threads``, which also changes process-wide settings. Where
either cannot be found and checked (another platform or build), :data:`CONTROL` is unavailable
and the compiled head keeps its single-caller path.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

__all__ = ["CONTROL", "POOL", "share_plan"]


# ------------------------------------------------------------------------------------------
# per-thread thread counts


class _ThreadControl:
    """Set the calling thread's OpenMP and MKL thread counts (``ok`` false where unavailable; the
    runtimes are looked up, and checked on a scratch thread, on first use)."""

    def __init__(self) -> None:
        self._state: tuple[bool, str] | None = None  # found on first use, not at import
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        return self._checked()[0]

    @property
    def why(self) -> str:
        """Why the control is unavailable ("" when it is available)."""
        return self._checked()[1]

    def _checked(self) -> tuple[bool, str]:
        if self._state is None:
            with self._lock:
                if self._state is None:
                    try:
                        self._state = self._setup()
                    except Exception as exc:  # noqa: BLE001 - any failure leaves the control off
                        self._state = (False, f"{type(exc).__name__}: {exc}")
        return self._state

    def _setup(self) -> tuple[bool, str]:
        if not torch.backends.mkl.is_available() or "OpenMP" not in torch.__config__.parallel_info():
            return False, "PyTorch here is not built with MKL and OpenMP"
        omp_paths = set()
        with open("/proc/self/maps") as fh:  # the OpenMP runtime PyTorch loaded, not any on the path
            for line in fh:
                name = line.rsplit(None, 1)[-1] if "/" in line else ""
                base = os.path.basename(name)
                if base.startswith(("libgomp", "libiomp5", "libomp")) and ".so" in base:
                    omp_paths.add(os.path.realpath(name))
        torch_lib = Path(torch.__file__).parent / "lib"
        # other packages may bring their own runtime: the one shipped with torch is the one it uses
        own = {p for p in omp_paths if Path(p).parent == torch_lib.resolve()}
        if len(own) == 1:
            omp_paths = own
        if len(omp_paths) != 1:
            return False, f"{len(omp_paths)} OpenMP runtimes loaded"
        omp = ctypes.CDLL(omp_paths.pop())
        mkl = ctypes.CDLL(str(torch_lib / "libtorch_cpu.so"))
        self._omp_set, self._omp_get = omp.omp_set_num_threads, omp.omp_get_max_threads
        self._omp_set.argtypes, self._omp_set.restype = [ctypes.c_int], None
        self._omp_get.argtypes, self._omp_get.restype = [], ctypes.c_int
        self._mkl_set = mkl.MKL_Set_Num_Threads_Local  # the C interface: the count by value
        self._mkl_set.argtypes, self._mkl_set.restype = [ctypes.c_int], ctypes.c_int
        self._mkl_get = mkl.MKL_Get_Max_Threads
        self._mkl_get.argtypes, self._mkl_get.restype = [], ctypes.c_int
        # check on a scratch thread that these are the runtimes torch uses: torch must see the change
        seen: list = []

        def probe() -> None:
            torch.get_num_threads()  # the thread's first call into torch sets its counts: before ours
            prev = self._set(1)
            seen.append((torch.get_num_threads(), self._mkl_get()))
            self.restore(prev)

        th = threading.Thread(target=probe)
        th.start()
        th.join()
        if seen != [(1, 1)]:
            return False, f"setting one thread was not seen by torch ({seen})"
        return True, ""

    def set_local(self, n: int) -> tuple[int, int]:
        """Calling thread: ``n`` OpenMP and MKL threads; returns what :meth:`restore` needs
        (only where :attr:`ok`)."""
        if not self.ok:
            raise RuntimeError(f"no per-thread thread control here: {self.why}")
        # torch sets a thread's counts to the process-wide one on the thread's first call into it:
        # let that happen first (a no-op after), so that it cannot undo ours
        torch.get_num_threads()
        return self._set(n)

    def _set(self, n: int) -> tuple[int, int]:
        prev_omp = self._omp_get()
        self._omp_set(n)
        return prev_omp, self._mkl_set(n)

    def restore(self, prev: tuple[int, int]) -> None:
        self._omp_set(prev[0])
        self._mkl_set(prev[1])  # 0: back to MKL's process-wide count


CONTROL = _ThreadControl()


# ------------------------------------------------------------------------------------------
# the workers


class _Pool:
    """Persistent single-threaded workers; one caller at a time (others take the serial path)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.tasks: list[queue.SimpleQueue] = []
        self.done: queue.SimpleQueue = queue.SimpleQueue()

    def _worker(self, tasks: queue.SimpleQueue, done: queue.SimpleQueue) -> None:
        CONTROL.set_local(1)
        while True:
            fn = tasks.get()
            try:
                fn()
                done.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                done.put(exc)

    def run(self, main: Callable[[], None], others: Sequence[Callable[[], None]]) -> bool:
        """Run ``others`` on workers and ``main`` here (one intra-op thread each); False, running
        nothing, when another caller holds the workers."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.pid != os.getpid():  # a forked child has the object but not the threads
                self._reset()
            while len(self.tasks) < len(others):
                q: queue.SimpleQueue = queue.SimpleQueue()
                threading.Thread(target=self._worker, args=(q, self.done), daemon=True,
                                 name=f"blockout-compiled-{len(self.tasks) + 1}").start()
                self.tasks.append(q)
            for q, fn in zip(self.tasks, others):
                q.put(fn)
            error: BaseException | None = None
            prev = CONTROL.set_local(1)
            try:
                main()
            except BaseException as exc:  # noqa: BLE001 - raised after the workers finished
                error = exc
            finally:
                CONTROL.restore(prev)
            for _ in others:
                r = self.done.get()
                if r is not None and (error is None or isinstance(error, threading.BrokenBarrierError)):
                    error = r
            if error is not None:
                raise error
            return True
        finally:
            self.lock.release()


POOL = _Pool()


# ------------------------------------------------------------------------------------------
# splitting the layers into shares


def _overlaps(ranges_a: Sequence[Sequence[int]], ranges_b: Sequence[Sequence[int]]) -> bool:
    return any(a0 < b1 and b0 < a1 for a0, a1 in ranges_a for b0, b1 in ranges_b)


def share_plan(fast_ops: Sequence, n_shares: int, max_imbalance: float = 1.5,
               op_cost: int = 0) -> dict[str, Any] | None:
    """Split every layer of the inference plan (``CompiledHead._fast_ops``) into ``n_shares``
    contiguous shares of about equal cost; None when a layer has fewer blocks than shares or the
    best split leaves a share with more than ``max_imbalance`` times its fair part.

    The cost of a block is its multiply-adds per sample, plus ``op_cost`` for every separate
    matrix product (an ``mm`` op; a ``bmm`` op's spread over its blocks): the fixed cost of a
    call, which makes a share of many small blocks slower than its multiply-adds say.

    Returns ``{"pieces": [share][layer] -> [(op index, g0, g1)], "reads": [share][layer] -> row
    ranges, "writes": [share][layer] -> row ranges, "sync": [layer] -> bool, "span": [share] ->
    (a, e)}``: a piece is groups ``g0:g1`` of a ``bmm`` op (``0:1`` for an ``mm`` op); ``sync[j]``
    says a share of layer ``j`` reads rows another share wrote in layer ``j - 1``; ``span`` is
    the range of input rows share ``t``'s first layer reads.

    >>> op = {"kind": "bmm", "groups": 4, "in": [[0, 8]], "out": [0, 12]}
    >>> p = share_plan([([op], 12), ([dict(op, **{"in": [[0, 12]]})], 12)], 2)
    >>> p["pieces"][1], p["sync"], p["span"]
    ([[(0, 2, 4)], [(0, 2, 4)]], [False, False], [(0, 4), (4, 8)])
    """
    pieces: list[list[list[tuple[int, int, int]]]] = [[] for _ in range(n_shares)]
    reads: list[list[list[list[int]]]] = [[] for _ in range(n_shares)]
    writes: list[list[list[list[int]]]] = [[] for _ in range(n_shares)]
    for ops, _ in fast_ops:
        units = []  # (op index, group, cost, reads, writes), in row order
        for i, op in enumerate(ops):
            o0, o1 = op["out"]
            if op["kind"] == "bmm":
                g = op["groups"]
                (a, e), = op["in"]
                di, do = (e - a) // g, (o1 - o0) // g
                units += [(i, u, di * do + op_cost // g, [[a + u * di, a + (u + 1) * di]],
                           [[o0 + u * do, o0 + (u + 1) * do]]) for u in range(g)]
            else:
                cost = (o1 - o0) * max(1, sum(e - a for a, e in op["in"])) + op_cost
                units.append((i, 0, cost, [list(r) for r in op["in"]], [[o0, o1]]))
        if len(units) < n_shares:
            return None
        total = sum(u[2] for u in units)
        cum, bounds = 0, [0]
        for t in range(1, n_shares):  # cut where the running cost is nearest t / n of the total
            target = total * t / n_shares
            u = bounds[-1]
            while u < len(units) and cum + units[u][2] <= target:
                cum += units[u][2]
                u += 1
            if u < len(units) and target - cum > cum + units[u][2] - target:
                cum += units[u][2]
                u += 1
            u = min(max(u, bounds[-1] + 1), len(units) - (n_shares - t))
            cum = sum(x[2] for x in units[:u])
            bounds.append(u)
        bounds.append(len(units))
        for t in range(n_shares):
            share = units[bounds[t]:bounds[t + 1]]
            if sum(x[2] for x in share) > max_imbalance * total / n_shares:
                return None
            ps: list[tuple[int, int, int]] = []
            for i, u, *_ in share:
                if ps and ps[-1][0] == i and ps[-1][2] == u:
                    ps[-1] = (i, ps[-1][1], u + 1)
                else:
                    ps.append((i, u, u + 1))
            pieces[t].append(ps)
            reads[t].append([r for x in share for r in x[3]])
            writes[t].append([w for x in share for w in x[4]])
    n_layers = len(fast_ops)
    sync = [False] + [any(_overlaps(reads[t][j], writes[s][j - 1]) for t in range(n_shares)
                          for s in range(n_shares) if s != t) for j in range(1, n_layers)]
    span = [(min(a for a, _ in reads[t][0]), max(e for _, e in reads[t][0])) if reads[t][0] else (0, 0)
            for t in range(n_shares)]
    return {"pieces": pieces, "reads": reads, "writes": writes, "sync": sync, "span": span}
