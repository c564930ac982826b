"""Batches of a reader, read in the consumer's thread or ahead of it by background threads, into one ring.

This is how a loader runs a reader whose work releases the GIL (NumPy gathers, memory maps, image codecs,
Zstandard): threads share the reader and its open files, nothing is pickled, no process is started, and
each batch lands in a preallocated slot of one :class:`~thesislib.stores.gather.BatchRing` of
``batches_ahead + 2`` slots, kept by the :class:`Prefetcher` across epochs and taken in batch order in the
consumer's thread. Batches come out in the order given, whatever the number of threads. An error raised by
``read`` is raised again, as it is, where the consumer asks for that batch; leaving the loop early cancels
what was not started and waits for what was (so the reader may be closed right after).

How many threads: ``threads`` is the most a prefetcher may use. Background threads pay only when the
consumer has work of its own to overlap (a training step); when it has none, handing each batch from one
thread to another costs more than it gives, unless the reading itself leaves cores idle: a read split over
the cores has serial parts (Python's bookkeeping, the wait for the slowest part) that threads each reading a
whole batch overlap with each other (on cifar10's JPEGs, two such threads decode 1.15-1.4x faster than one
batch split over both cores). So a prefetcher first reads a window of :data:`WINDOW` batches in the
consumer's thread and times the reading and the consumer's own work apart, and the CPU time the reading
used: if the consumer's share is under :data:`MARGIN` *and* the reading kept every usable core busy (within
:data:`MARGIN`), threads could gain no more than that, and it keeps reading there. Otherwise it times
windows with each candidate count (0: the consumer's thread, 1, ``threads``) in alternation, the
consumer's own time included, and keeps the fastest once each has :data:`TRIALS` windows (by the median
window of each: a batch split over the cores in the consumer's thread varies far more from window to window
than whole batches on threads, so the fastest single window favoured it against what it does over an epoch;
more threads must save :data:`MARGIN` of the time to be chosen). The pixels never depend on the choice.

Lifetime (stated, as FFCV's epoch iterator; no reference counting): a batch stays valid while the consumer
draws the next one; asking for the batch after that may refill its slot. The training loop uses each batch
before it draws the next; a consumer that keeps batches longer (a list of batches in a test) copies them
(``tensor.clone()``).
"""

import statistics
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch

from thesislib.kernels.parts import usable_cores
from thesislib.stores.gather import BatchRing

BATCHES_AHEAD = 2  # batches background threads read ahead of the consumer (as FFCV's default)
WINDOW = 16        # batches per timed window while the thread count is chosen
MIN_WINDOW = 4     # the fewest batches a window is timed with (an epoch of fewer than WINDOW batches)
TRIALS = 5         # timed windows per candidate thread count
MARGIN = 0.05      # the share of the time more threads must save to be chosen


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


def read_batch(reader, indices, out, layout: Layout):
    """``reader.read(indices, out=out)``; learns the layout from a batch the reader allocated."""
    images, labels = reader.read(indices) if out is None else reader.read(indices, out=out)
    if out is None and not layout.known():
        layout.learn(images)
    return images, labels


def as_tensors(images, labels) -> tuple:
    """The arrays wrapped (not copied) as tensors."""
    return torch.from_numpy(images), (torch.from_numpy(labels) if isinstance(labels, np.ndarray)
                                      else torch.as_tensor(labels))


@dataclass
class Split:
    """What a window read in the consumer's thread took: seconds reading, CPU seconds the process used
    while reading (all its threads), seconds in the consumer between batches."""

    reading: float = 0.0
    reading_cpu: float = 0.0
    consumer: float = 0.0

    def saturated(self, cores: int) -> bool:
        """True if background threads could not save :data:`MARGIN` of the time: the consumer's own share
        is under it (nothing to hide) and the reading kept all ``cores`` busy within it (no idle core for a
        second batch)."""
        idle_consumer = self.consumer < MARGIN * (self.reading + self.consumer)
        busy_cores = self.reading_cpu >= (1 - MARGIN) * cores * self.reading
        return idle_consumer and busy_cores


class Prefetcher:
    """One loader's way of reading batches: its ring (kept across epochs) and its measured thread count.

    ``threads``: the most background threads (0: always the consumer's thread); ``batches_ahead``: reads
    in flight ahead of the consumer (at least ``threads``); ``layout``: the images' sample shape and
    dtype, if known (else learnt from the first batch); ``choice``: a thread count to use without
    measuring (tests, or one measured before). Call it with a reader and the epoch's index arrays.
    """

    def __init__(self, threads: int = 0, batches_ahead: int = BATCHES_AHEAD, layout: Layout = None,
                 choice: int = None):
        self.threads = max(0, int(threads))
        self.batches_ahead = max(int(batches_ahead), self.threads)
        self.ring = BatchRing(self.batches_ahead + 2)
        self.layout = layout or Layout()
        self.choice = 0 if self.threads == 0 else choice
        self.timings = {count: [] for count in sorted({0, 1, self.threads})}  # threads -> [s per sample]
        self.cores = usable_cores()

    def __call__(self, reader, batches):
        """Yield ``(images, labels)`` tensors of ``reader.read`` for each index array of ``batches``."""
        batches = list(batches)
        capacity = max((len(batch) for batch in batches), default=0)  # a slot holds the longest batch
        position = 0
        while position < len(batches):
            threads, size = self.next_window(len(batches) - position)
            window = batches[position:position + size]
            split = Split() if self.choice is None and threads == 0 else None
            start = time.perf_counter()
            yield from self.window(reader, window, threads, capacity, split)
            if self.choice is None and len(window) >= MIN_WINDOW:  # an epoch's tail, or a short epoch
                samples = sum(len(indices) for indices in window)
                self.record(threads, (time.perf_counter() - start) / samples, split)
            position += size

    def next_window(self, remaining: int) -> tuple:
        """(thread count, batches) for the next window: the chosen count for the rest of the epoch, or
        the candidate timed least often so far for :data:`WINDOW` batches."""
        if self.choice is not None:
            return self.choice, remaining
        return min(self.timings, key=lambda count: len(self.timings[count])), WINDOW

    def record(self, threads: int, seconds_per_sample: float, split=None) -> None:
        """Keep a window's time per sample; choose once every candidate has :data:`TRIALS`. At once 0
        threads if a window read in the consumer's thread (``split``, a :class:`Split`) left threads
        nothing to gain: see :meth:`Split.saturated`."""
        self.timings[threads].append(seconds_per_sample)
        if split is not None and split.saturated(self.cores):
            self.choice = 0
        elif all(len(times) >= TRIALS for times in self.timings.values()):
            self.choice = self.fastest()

    def fastest(self) -> int:
        """The thread count with the fastest median window; more threads only if they beat fewer by
        :data:`MARGIN` (a thread that gives less than that is not worth what it takes from a busy machine)."""
        typical = {count: statistics.median(times) for count, times in self.timings.items()}
        best = 0
        for count in sorted(typical)[1:]:
            if typical[count] < (1 - MARGIN) * typical[best]:
                best = count
        return best

    def slot(self, rows: int, capacity: int):
        """The ring slot for a batch of ``rows``; None (the reader allocates) until the layout is known."""
        if not self.layout.known():
            return None
        return self.ring.take((max(rows, capacity), *self.layout.sample_shape), self.layout.dtype)[:rows]

    def window(self, reader, batches, threads: int, capacity: int, split=None):
        """The batches read in this thread (``threads`` 0; ``split``, a :class:`Split` if given, adds up
        what the reading and the consumer took) or by ``threads`` background threads."""
        if threads > 0:
            yield from self.prefetched(reader, batches, threads, capacity)
            return
        for indices in batches:
            start, cpu = time.perf_counter(), time.process_time()
            batch = as_tensors(*read_batch(reader, indices, self.slot(len(indices), capacity), self.layout))
            handed = time.perf_counter()
            if split is not None:
                split.reading += handed - start
                split.reading_cpu += time.process_time() - cpu
            yield batch
            if split is not None:
                split.consumer += time.perf_counter() - handed

    def prefetched(self, reader, batches, threads: int, capacity: int):
        """``threads`` background threads keep up to ``batches_ahead + 1`` reads in flight; slots are taken
        from the ring in this (the consumer's) thread, in batch order: batch ``i`` takes the slot of batch
        ``i - batches_ahead - 2`` when the consumer asks for batch ``i - batches_ahead``, i.e. once it holds
        the batch that followed (see the module's lifetime)."""
        pending, todo = deque(), iter(batches)
        with ThreadPoolExecutor(threads, thread_name_prefix="prefetch") as pool:

            def submit_next() -> None:
                indices = next(todo, None)
                if indices is not None:
                    out = self.slot(len(indices), capacity)
                    pending.append(pool.submit(read_batch, reader, indices, out, self.layout))

            try:
                submit_next()
                if pending and not self.layout.known():
                    pending[0].result()  # learn the layout once, so that the batches ahead land in the ring
                for _ in range(self.batches_ahead):
                    submit_next()
                while pending:
                    yield as_tensors(*pending.popleft().result())
                    submit_next()
            finally:
                for future in pending:
                    future.cancel()
                wait(pending)  # no thread may still write into a slot when this returns


def batches_of(reader, batches, threads: int = 0, batches_ahead: int = BATCHES_AHEAD, layout: Layout = None):
    """One epoch of a fresh :class:`Prefetcher` (a loader keeps one across epochs instead)."""
    return Prefetcher(threads, batches_ahead, layout)(reader, batches)
