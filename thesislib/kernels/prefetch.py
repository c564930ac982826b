"""Batches of a reader, read in the calling thread or ahead of it by background threads into a ring.

This is the ``num_workers > 0`` path for readers whose work releases the GIL (NumPy gathers, image
codecs, memory maps, Zstandard): threads share the reader and its open files, nothing is pickled, no
process is started per epoch, and each batch lands in a preallocated slot of a
:class:`~thesislib.stores.gather.BatchRing` of ``batches_ahead + 2`` slots, taken in batch order in the
consumer's thread. Batches come out in the order given, whatever the number of threads. An error raised by
``read`` is raised again, as it is, where the consumer asks for that batch; leaving the loop early cancels
what was not started and waits for what was (so the reader may be closed right after).

Lifetime (stated, as FFCV's epoch iterator; no reference counting): a batch stays valid until the consumer
has drawn two further batches; the slot is then refilled. The training loop uses each batch before it
draws the next; a consumer that keeps batches longer (a list of batches in a test) copies them
(``tensor.clone()``).
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from thesislib.stores.gather import BatchRing


class Layout:
    """The sample shape and dtype of a reader's images: given (``Layout(shape, dtype)``) or learnt from its
    first batch."""

    def __init__(self, sample_shape=None, dtype=None):
        self.sample_shape = None if sample_shape is None else tuple(sample_shape)
        self.dtype = None if dtype is None else np.dtype(dtype)

    def learn(self, images) -> None:
        self.sample_shape, self.dtype = tuple(images.shape[1:]), images.dtype

    def known(self) -> bool:
        return self.dtype is not None


def next_slot(ring: BatchRing, rows: int, layout: Layout, capacity: int):
    """The ring slot for a batch of ``rows``; None (the reader allocates) until the layout is known. A slot
    holds ``capacity`` rows, so a short last batch reuses a full slot."""
    if not layout.known():
        return None
    return ring.take((max(rows, capacity), *layout.sample_shape), layout.dtype)[:rows]


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

    ``threads``: 0 reads in the calling thread (into a ring of 3 slots: a batch is valid until three
    further ones were drawn); n > 0 reads with n background threads, up to ``batches_ahead`` (>= threads)
    batches ahead of the consumer (see the module's lifetime). ``layout``: the images' sample shape and
    dtype, if known (else learnt from the first batch); keep one across epochs.
    """
    layout = layout or Layout()
    capacity = max((len(batch) for batch in batches), default=0)
    if threads <= 0:
        ring = BatchRing()
        for indices in batches:
            yield as_tensors(*read_batch(reader, indices, next_slot(ring, len(indices), layout, capacity), layout))
        return
    yield from prefetched(reader, batches, threads, max(batches_ahead, threads), layout, capacity)


def prefetched(reader, batches, threads, batches_ahead, layout, capacity):
    """Background threads keep up to ``batches_ahead`` reads in flight; slots are taken from the ring in
    this (the consumer's) thread, in batch order: batch ``i`` lands in slot ``i % (batches_ahead + 2)``,
    taken when batch ``i - batches_ahead - 1`` is handed out, i.e. after the consumer let go of batch
    ``i - batches_ahead - 2``."""
    ring, pending, todo = BatchRing(batches_ahead + 2), deque(), iter(batches)
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
            yield as_tensors(*pending.popleft().result())
            submit_next()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
