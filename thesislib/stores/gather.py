"""Copying a batch of rows out of an array fast: threaded ``np.take`` into a ring of reused batch buffers.

:class:`BatchRing` follows FFCV's epoch iterator (``loader/epoch_iterator.py``): a fixed ring of
``batches_ahead + 2`` buffers used in turn, with a stated lifetime, instead of guessing from reference
counts when a buffer is free. A new batch thus lands in memory already mapped (a fresh buffer costs a page
fault per 4 KB: a large share of the fastest gathers' time).
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GATHER_MIN_BYTES = 256 * 1024   # a gather thread gets at least this many bytes to copy
BATCHES_AHEAD = 1               # batches a consumer holds while it draws the next one (the training loop: 1)
_POOL = {"pid": None, "pool": None, "size": 0}


class BatchRing:
    """``slots`` batch buffers handed out in turn (default ``BATCHES_AHEAD + 2`` = 3).

    Lifetime: an array returned by :meth:`take` stays valid while fewer than ``slots`` further arrays have
    been taken from the ring; the ``slots``-th later :meth:`take` rewrites it. A consumer that keeps a batch
    longer copies it (``tensor.clone()``). The training loop uses each batch before it draws the next one,
    and its generator holds at most the previous batch while the next is read, so 3 slots leave one spare.
    A ring is never shared between processes: a pickled reader (a DataLoader worker's copy) gets none and
    reads into fresh arrays, because the worker's queue pickles a batch after the worker moved on.
    """

    def __init__(self, slots: int = BATCHES_AHEAD + 2):
        if slots < 2:
            raise ValueError(f"a BatchRing needs at least 2 slots, got {slots}")
        self.slots, self.buffers, self.turn = slots, [None] * slots, 0

    def take(self, shape: tuple, dtype) -> np.ndarray:
        """The next slot's buffer as an array of ``shape`` (a view of its first rows for a short batch)."""
        slot, self.turn = self.turn, (self.turn + 1) % self.slots
        buffer = self.buffers[slot]
        if buffer is None or buffer.dtype != dtype or buffer.shape[1:] != tuple(shape[1:]) \
                or len(buffer) < shape[0]:
            buffer = self.buffers[slot] = np.empty(shape, dtype=dtype)
        return buffer[:shape[0]]


def batch_buffer(ring, shape: tuple, dtype, out=None) -> np.ndarray:
    """``out`` if given, else the next buffer of ``ring`` (None: a new array) as an array of ``shape``."""
    if out is not None:
        return out
    return ring.take(shape, dtype) if ring is not None else np.empty(shape, dtype=dtype)


def gather_pool(size: int) -> ThreadPoolExecutor:
    """This process's gather threads, at least ``size`` of them (made again after a fork: threads do not
    survive one); a smaller pool of this process is shut down when a larger one replaces it."""
    if _POOL["pid"] != os.getpid() or _POOL["size"] < size:
        if _POOL["pid"] == os.getpid():
            _POOL["pool"].shutdown(wait=False)  # lets the work already given to it finish
        _POOL.update(pid=os.getpid(), pool=ThreadPoolExecutor(size, thread_name_prefix="gather"), size=size)
    return _POOL["pool"]


def gather(array, indices: np.ndarray, ring: BatchRing = None, out: np.ndarray = None) -> np.ndarray:
    """``array[indices]`` along the first axis, copied by up to ``torch.get_num_threads()`` threads into
    ``out`` if given, else into the next buffer of ``ring`` (or a new array).

    ``np.take`` copies one row with one memcpy and releases the GIL, so the parts of a batch are copied in
    parallel. Threads that find no free core simply wait, unlike OpenMP's, which spin: a busy machine makes
    the gather no slower than one thread. In DataLoader workers PyTorch sets one thread: one copy each.
    """
    import torch  # here, not at the top: listing the stores should not load PyTorch

    row_bytes = int(np.prod(array.shape[1:])) * array.dtype.itemsize
    threads = max(1, min(torch.get_num_threads(), len(indices) * row_bytes // GATHER_MIN_BYTES))
    shape = (len(indices), *array.shape[1:])
    out = batch_buffer(ring, shape, array.dtype, out)
    if threads == 1:
        np.take(array, indices, 0, out, "clip")
        return out
    bounds = np.linspace(0, len(indices), threads + 1).astype(int).tolist()
    parts = list(zip(bounds[:-1], bounds[1:]))
    # mode="clip" writes straight into ``out`` ("raise" would buffer it); the sampler's indices are valid
    futures = [gather_pool(threads - 1).submit(np.take, array, indices[a:b], 0, out[a:b], "clip")
               for a, b in parts[1:]]
    np.take(array, indices[:bounds[1]], 0, out[:bounds[1]], "clip")
    for future in futures:
        future.result()
    return out
