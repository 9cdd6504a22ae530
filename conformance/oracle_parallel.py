"""Spread the oracle's large copies and adds over the machine's cores.

BLAS runs a matrix product on every core, but a numpy copy or in-place add runs
on one; im2col, col2im and the layout copies around each product cost about a
third of a convolution, so on two cores they would take as long as the products
themselves.  numpy releases the GIL while it copies or adds float64 arrays, so
plain threads over disjoint slices run them in parallel.  Nothing here does
arithmetic of its own: every part is the same numpy operation on a slice, and
slices never overlap, so the result is bit-for-bit what one call would give.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Below this many elements (1 MiB) a copy takes less time than handing it to a thread.
PARALLEL_MIN_ELEMENTS = 1 << 17

#: An in-place add through a strided window costs about three copies of an element.
ADD_COST = 3


def cores() -> int:
    """Threads for the copies: as many as BLAS gets, the cores this process may run on.

    A thread limit set for BLAS (``OPENBLAS_NUM_THREADS``, or ``OMP_NUM_THREADS``
    which OpenBLAS and PyTorch also read) limits the copies too.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return min(available, int(value))
    return available


class _Pool:
    """One thread pool per process, made on first use.

    A pool made before a fork would be inherited with its threads gone (only the
    forking thread survives), and work handed to it would wait forever; so the
    pool remembers the process that made it.
    """

    def __init__(self) -> None:
        self.pid = -1
        self.executor: ThreadPoolExecutor | None = None
        self.workers = 1

    def get(self) -> tuple[ThreadPoolExecutor | None, int]:
        if self.pid != os.getpid():
            self.pid, self.workers = os.getpid(), cores()
            self.executor = (
                ThreadPoolExecutor(self.workers - 1, thread_name_prefix="oracle") if self.workers > 1 else None
            )
        return self.executor, self.workers


_pool = _Pool()


def run(task: Callable[..., None], *arrays: np.ndarray, cost: float = 1.0) -> None:
    """``task(*arrays)``, with the arrays cut along one of their two leading axes into a part per core.

    Every array must have the same two leading axes (the task writes into the
    first array's slice only what the other arrays' matching slices say).  The
    axis cut is the first that gives every core a part.  Small tasks (fewer than
    :data:`PARALLEL_MIN_ELEMENTS` elements times ``cost``, the task's time per
    element in copies), or arrays with no such axis, run in one call on this thread.
    """
    executor, workers = _pool.get()
    first = arrays[0]
    axis = next((a for a in (0, 1) if a < first.ndim and first.shape[a] >= workers), None)
    if executor is None or axis is None or first.size * cost < PARALLEL_MIN_ELEMENTS:
        task(*arrays)
        return
    bounds = np.linspace(0, first.shape[axis], workers + 1).round().astype(int)
    parts = [
        tuple(a[(slice(None),) * axis + (slice(lo, hi),)] for a in arrays) for lo, hi in itertools.pairwise(bounds)
    ]
    pending = [executor.submit(task, *part) for part in parts[1:]]
    task(*parts[0])
    for future in pending:
        future.result()


def copy(dst: np.ndarray, src: np.ndarray) -> None:
    """``np.copyto(dst, src)`` (same shapes) on every core."""
    run(np.copyto, dst, src)
