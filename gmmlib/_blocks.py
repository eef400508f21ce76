"""Blocks of rows, worker threads and scratch buffers: how the engine spreads work on the cores.

`gmmlib._engine` computes the EM steps block by block; this module decides the blocks (about
`BLOCK_VALUES` values each, one core's L2 cache), hands them to worker threads (numpy releases
the GIL inside its loops and BLAS calls) with BLAS limited to one thread meanwhile, keeps the
per-thread scratch buffers, and adds per-worker sums in a fixed order so every run with the same
number of threads gives the same result. It knows nothing of mixtures.

The number of threads is the number of usable cores, or ``GMMLIB_NUM_THREADS``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = [
    "BLOCK_VALUES",
    "block_values",
    "block_rows",
    "blocks",
    "n_threads",
    "for_each_block",
    "sum_over_blocks",
    "scratch",
    "parallel_section",
]

#: About this many float64 values of per-block work (2 MiB, one core's L2 here) stay in cache.
#: Measured with benchmarks/bench_em.py: 1 << 17 left the (1e5, 16, 8) E-step 1.3x slower
#: (more blocks, more per-block overhead); 1 << 19 was no faster on the 2-D rows and used more
#: memory.
BLOCK_VALUES = 1 << 18
_MIN_ROWS = 64  # fewer rows than this make per-block overhead dominate

_lock = threading.Lock()
_local = threading.local()
_executor: ThreadPoolExecutor | None = None
_controller = None


def n_threads() -> int:
    env = os.environ.get("GMMLIB_NUM_THREADS")
    if env:
        return max(1, int(env))
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def block_values(values: int):
    """Blocks of about ``values`` values inside the ``with`` (tests force many small blocks).

    Block size changes only the order in which sums are added, never the maths.
    """
    global BLOCK_VALUES, _MIN_ROWS
    saved = BLOCK_VALUES, _MIN_ROWS
    BLOCK_VALUES, _MIN_ROWS = int(values), 1
    try:
        yield
    finally:
        BLOCK_VALUES, _MIN_ROWS = saved


def block_rows(values_per_row: int) -> int:
    """Rows per block when each row needs ``values_per_row`` values of work."""
    return max(_MIN_ROWS, BLOCK_VALUES // max(1, values_per_row))


def blocks(n_rows: int, values_per_row: int) -> list[slice]:
    step = block_rows(values_per_row)
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


@contextmanager
def parallel_section():
    """BLAS limited to one thread while gmmlib's worker threads share the cores.

    Re-entrant. `_run` enters it for each parallel call; the estimator enters it once around
    a whole fit, so BLAS calls made between two parallel calls (the M-step's small products,
    Cholesky factors) do not wake BLAS's own threads, which would then spin on the cores the
    workers need (measured: the E- and M-steps ran 1.5x slower inside a fit than alone).
    """
    global _controller
    depth = getattr(_local, "depth", 0)
    if depth or n_threads() == 1:
        _local.depth = depth + 1
        try:
            yield
        finally:
            _local.depth = depth
        return
    if _controller is None:
        _controller = ThreadpoolController()
    _local.depth = 1
    try:
        with _controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _local.depth = 0


def scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A reusable, uninitialised work array for a block temporary, one per thread and shape.

    Block temporaries are about a megabyte each; allocating them afresh for every block costs
    as much as the arithmetic on them (the pages are new each time: measured 2x on np.exp), so
    each thread keeps its own. Callers fill them completely before reading.
    """
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (name, shape)
    array = buffers.get(key)
    if array is None:
        if len(buffers) > 64:  # another problem size: drop the old ones
            buffers.clear()
        array = buffers[key] = np.empty(shape)
    return array


def _run(tasks) -> None:
    """Run the zero-argument callables, on worker threads when there are several."""
    global _executor
    if len(tasks) == 1:
        tasks[0]()
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="gmmlib")
    with parallel_section():
        futures = [_executor.submit(task) for task in tasks]
        for future in futures:
            future.result()


def _split(n_rows: int, values_per_row: int) -> list[list[slice]]:
    """Blocks dealt round-robin to min(threads, blocks) workers."""
    bl = blocks(n_rows, values_per_row)
    T = max(1, min(n_threads(), len(bl)))
    return [bl[j::T] for j in range(T)]


def for_each_block(work, n_rows: int, values_per_row: int) -> None:
    """Call ``work(rows)`` for every block of rows (blocks must write disjoint outputs)."""

    def worker(my_blocks):
        return lambda: [work(rows) for rows in my_blocks]

    _run([worker(share) for share in _split(n_rows, values_per_row)])


def sum_over_blocks(work, shape, n_rows: int, values_per_row: int) -> np.ndarray:
    """Sum of ``work(rows, acc)`` contributions, each worker accumulating into its own ``acc``.

    Blocks are dealt to workers in a fixed order and the partial sums are added in that order,
    so the result is the same on every run with the same number of threads.
    """
    shares = _split(n_rows, values_per_row)
    partial = [np.zeros(shape) for _ in shares]

    def worker(my_blocks, acc):
        return lambda: [work(rows, acc) for rows in my_blocks]

    _run([worker(share, acc) for share, acc in zip(shares, partial, strict=True)])
    total = partial[0]
    for acc in partial[1:]:
        total += acc
    return total
