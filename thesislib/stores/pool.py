"""Encoding in worker processes so that Ctrl-C ends a conversion within seconds.

The workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): only the parent handles it,
so no worker dies inside the pool's queue and leaves the others waiting on its lock. The parent keeps only
a few tasks in flight (not every chunk of the split, as ``Executor.map`` submits them) and, on any
exception, cancels what has not started, so the pool's shutdown waits for at most the running chunks.
"""

import os
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

WORKERS = 4  # at most


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def encoding_pool():
    """A ProcessPoolExecutor of up to :data:`WORKERS` SIGINT-ignoring workers, cancelled on any exception."""
    pool = ProcessPoolExecutor(max_workers=min(WORKERS, os.cpu_count() or 1), initializer=ignore_sigint)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def map_ordered(pool, function, tasks, ahead: int = None):
    """``function(task)`` for each task in order (like ``pool.map``), with at most ``ahead`` tasks submitted
    and not yet collected (default: twice the workers)."""
    ahead = ahead or 2 * min(WORKERS, os.cpu_count() or 1)
    pending = []
    for task in tasks:
        pending.append(pool.submit(function, task))
        if len(pending) >= ahead:
            yield pending.pop(0).result()
    while pending:
        yield pending.pop(0).result()
