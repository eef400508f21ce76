"""Rows in cache-sized blocks, shared between the cores.

EM's work is a map or a sum over data points. Done in blocks of rows that fit in cache, every
temporary stays small and hot; spread over threads (numpy releases the GIL inside its loops and
BLAS calls), the elementwise work (exp, squares) that a BLAS call alone would leave on one core
gets every core too. While the worker threads run, BLAS is limited to one thread each, so the
cores are not oversubscribed. Data that fits in one block runs in the calling thread, so small
problems (the book's, the collapse recipe's) take exactly the same arithmetic path every time.

The number of threads is the number of usable cores, or ``GMMLIB_NUM_THREADS``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

__all__ = ["BLOCK_VALUES", "block_rows", "blocks", "for_each_block", "sum_over_blocks"]

#: About this many float64 values of per-block work (1 MiB) stay in cache.
BLOCK_VALUES = 1 << 17

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_controller = None


def n_threads() -> int:
    env = os.environ.get("GMMLIB_NUM_THREADS")
    if env:
        return max(1, int(env))
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def block_rows(values_per_row: int) -> int:
    """Rows per block when each row needs ``values_per_row`` values of work."""
    return max(64, BLOCK_VALUES // max(1, values_per_row))


def blocks(n_rows: int, values_per_row: int) -> list[slice]:
    step = block_rows(values_per_row)
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


@contextmanager
def _one_blas_thread_each():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def _run(tasks) -> None:
    """Run the zero-argument callables, on worker threads when there are several."""
    global _executor
    if len(tasks) == 1:
        tasks[0]()
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="gmmlib")
    with _one_blas_thread_each():
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
