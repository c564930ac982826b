"""The buffers a batch is gathered into: a ring of reused batch buffers with a stated lifetime.

:class:`BatchRing` follows FFCV's epoch iterator (``loader/epoch_iterator.py``): a fixed ring of buffers
used in turn, with a stated lifetime, instead of guessing from reference counts when a buffer is free. A
new batch thus lands in memory already mapped (a fresh buffer costs a page fault per 4 KB: a large share of
the fastest gathers' time). The copy itself is :class:`thesislib.kernels.gather.Gather`; a loader keeps one
ring (:class:`thesislib.kernels.prefetch.Prefetcher`, the ``memory`` loader).
"""

import numpy as np


class BatchRing:
    """``slots`` batch buffers handed out in turn.

    Lifetime: an array returned by :meth:`take` stays valid while fewer than ``slots`` further arrays have
    been taken from the ring; the ``slots``-th later :meth:`take` rewrites it. A consumer that keeps a batch
    longer copies it (``tensor.clone()``). A ring is never shared between processes: a reader pickled to a
    DataLoader worker reads into fresh arrays, because the worker's queue pickles a batch after the worker
    moved on.
    """

    def __init__(self, slots: int):
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
