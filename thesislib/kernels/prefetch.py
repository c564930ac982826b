"""Batches of a reader, read in the calling thread or ahead of it by background threads into a ring.

This is the ``num_workers > 0`` path for readers whose work releases the GIL (NumPy gathers, image
codecs, memory maps, Zstandard): threads share the reader and its open files, nothing is pickled, no
process is started per epoch, and each batch lands in a preallocated slot of a :class:`~thesislib.kernels.
ring.Ring` of ``batches_ahead + 2`` slots (one being filled ahead, one held by the consumer). Batches come
out in the order given, whatever the number of threads. An error raised by ``read`` is raised again, as
it is, where the consumer asks for that batch; leaving the loop early cancels what was not started and
waits for what was (so the reader may be closed right after).
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch

from thesislib.kernels.ring import Ring


class Layout:
    """The sample shape and dtype of a reader's images, learnt from its first batch."""

    def __init__(self):
        self.sample_shape = self.dtype = None

    def learn(self, images) -> None:
        self.sample_shape, self.dtype = tuple(images.shape[1:]), images.dtype

    def known(self) -> bool:
        return self.dtype is not None


def next_slot(ring: Ring, rows: int, layout: Layout, capacity: int):
    """The ring slot for a batch of ``rows``; None (the reader allocates) until the layout is known."""
    return ring.next(rows, layout.sample_shape, layout.dtype, capacity) if layout.known() else None


def read_batch(reader, indices, out, layout: Layout):
    """``reader.read(indices, out=out)``; learns the layout from a batch the reader allocated."""
    images, labels = reader.read(indices) if out is None else reader.read(indices, out=out)
    if out is None and not layout.known():
        layout.learn(images)
    return images, labels


def as_tensors(images, labels) -> tuple:
    return torch.from_numpy(images), torch.as_tensor(labels)


def batches_of(reader, batches, threads: int = 0, batches_ahead: int = 2, layout: Layout = None):
    """Yield ``(images, labels)`` tensors of ``reader.read`` for each index array of ``batches``.

    ``threads``: 0 reads in the calling thread; n > 0 reads with n background threads, up to
    ``batches_ahead`` (>= threads) batches ahead of the consumer. ``layout``: keep one across epochs to
    have the first batch of each epoch land in the ring too.
    """
    layout = layout or Layout()
    capacity = max((len(batch) for batch in batches), default=0)
    if threads <= 0:
        ring = Ring(2)
        for indices in batches:
            out = next_slot(ring, len(indices), layout, capacity)
            yield as_tensors(*read_batch(reader, indices, out, layout))
            del out
        return
    yield from prefetched(reader, batches, threads, max(batches_ahead, threads), layout, capacity)


def prefetched(reader, batches, threads, batches_ahead, layout, capacity):
    """Background threads keep up to ``batches_ahead`` reads in flight; slots are taken from the ring in
    this (the consumer's) thread, in batch order."""
    ring, pending, todo = Ring(batches_ahead + 2), deque(), iter(batches)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="prefetch")

    def submit_next() -> None:
        indices = next(todo, None)
        if indices is not None:
            out = next_slot(ring, len(indices), layout, capacity)
            pending.append(pool.submit(read_batch, reader, indices, out, layout))

    try:
        submit_next()
        if pending and not layout.known():
            pending[0].result()  # learn the layout once, so that the batches ahead land in the ring
        for _ in range(batches_ahead):
            submit_next()
        while pending:
            batch = as_tensors(*pending.popleft().result())
            yield batch
            del batch  # the consumer's reference alone decides whether its slot is free again
            submit_next()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
