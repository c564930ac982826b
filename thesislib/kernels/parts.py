"""Run a function over contiguous parts of a batch on a few threads, the calling thread included.

Used by the kernels whose per-sample work releases the GIL (``np.take``, image decoders, Zstandard, file
reads). The pool is made lazily in the process that uses it (threads do not survive a fork, nor pickling).
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


class Parts:
    making = threading.Lock()  # two threads splitting batches at once make one pool, not two

    def __init__(self, threads: int = None, name: str = "parts"):
        self.threads = max(1, int(threads or usable_cores()))
        self.name, self.pool, self.pid = name, None, None

    def run(self, function, count: int, threads: int = None) -> None:
        """``function(start, stop)`` for contiguous parts of ``range(count)``, one per thread; returns when
        all are done and raises the first error any of them raised."""
        threads = max(1, min(threads or self.threads, count))
        if threads == 1:
            function(0, count)
            return
        step = -(-count // threads)
        futures = [self.thread_pool().submit(function, start, min(start + step, count))
                   for start in range(step, count, step)]
        try:
            function(0, step)
        finally:
            wait(futures)  # no thread may still write into the batch when this returns
        for future in futures:
            future.result()

    def thread_pool(self) -> ThreadPoolExecutor:
        with self.making:
            if self.pool is None or self.pid != os.getpid():
                self.pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix=self.name)
                self.pid = os.getpid()
            return self.pool

    def __getstate__(self):
        return {**self.__dict__, "pool": None, "pid": None}
