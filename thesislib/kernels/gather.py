"""``array[indices]`` along the first axis into a given buffer, with the thread count chosen by measurement.

The one gather of the package: the ``numpy``, ``hdf5``, ``zarr`` (mapped shards) and ``memory`` loaders copy
a batch with it.

``np.take`` copies one row with one ``memcpy`` and releases the GIL, so a batch can be split across threads.
Whether that pays depends on the batch's size and on how busy the machine is: handing a small batch to a
second thread can cost more than the copy itself. :class:`Gather` therefore times the first calls of each
batch size class (bytes rounded to a power of two) with one thread and with all allowed threads, in
alternation, and keeps the faster (more threads only if they save :data:`MARGIN` of the time), measuring
again at exponentially spaced calls (:data:`REFRESH`, twice that, ...). The pixels never depend on the choice.
"""

import time

import numpy as np
import torch

from thesislib.kernels.parts import Parts

TRIALS = 3     # timed calls per candidate thread count and size class
MARGIN = 0.1   # the share of a copy's time more threads must save to be chosen
REFRESH = 64   # a size class is measured again at this call and at every power of two after it


def take_into(array, indices, out) -> np.ndarray:
    """``out[:] = array[indices]`` with one thread (``mode="clip"`` writes straight into ``out``; "raise"
    would copy through a temporary). The caller's indices must be valid. ``array``: an ndarray (a memory
    map) or any object with ndarray's ``take(indices, axis, out, mode)``, ``shape`` and ``dtype`` (the
    shards of a Zarr array: :class:`thesislib.kernels.zarrchunks.MappedShards`)."""
    array.take(indices, 0, out, "clip")
    return out


def size_class(nbytes: int) -> int:
    return int(nbytes).bit_length()


def fastest(timings: dict) -> int:
    """The thread count whose fastest call was fastest; more threads only if they save :data:`MARGIN` of
    the time of fewer (on a busy machine a thread that gives less costs others more than it gives)."""
    best = min(timings)
    for count in sorted(timings)[1:]:
        if min(timings[count]) < (1 - MARGIN) * min(timings[best]):
            best = count
    return best


class Gather:
    """Gather rows of arrays into buffers; one object per reading process (it owns a thread pool).

    ``max_threads``: the most threads one gather may use (default: ``torch.get_num_threads()`` when the
    object is made; PyTorch sets one in DataLoader workers). ``choice``: {size class: thread count}, filled
    by measurement; pass one to skip measuring (tests, or a value measured before).
    """

    def __init__(self, max_threads: int = None, choice: dict = None):
        self.max_threads = max(1, int(max_threads or torch.get_num_threads()))
        self.choice = dict(choice or {})
        self.given = set(self.choice)   # size classes whose choice was given: never measured
        self.timings = {}   # size class -> {threads: [seconds, ...]}
        self.calls = {}     # size class -> calls so far
        self.parts = Parts(self.max_threads, "gather")

    def __call__(self, array, indices: np.ndarray, out: np.ndarray = None) -> np.ndarray:
        if out is None:
            out = np.empty((len(indices), *array.shape[1:]), dtype=array.dtype)
        key = size_class(out.nbytes)
        self.refresh(key)
        threads = self.choice.get(key)
        if threads is None:
            return self.timed_copy(array, indices, out, key)
        return self.copy(array, indices, out, threads)

    def refresh(self, key: int) -> None:
        """Measure ``key`` again at its :data:`REFRESH`-th call and at every power of two after: the first
        epoch over a fresh memory map also faults its pages in (work that more threads do share), and the
        machine's load changes; the copies of the steady state decide."""
        calls = self.calls[key] = self.calls.get(key, 0) + 1
        if calls >= REFRESH and calls & (calls - 1) == 0 and key not in self.given:
            self.choice.pop(key, None)
            self.timings.pop(key, None)

    def copy(self, array, indices, out, threads: int) -> np.ndarray:
        if threads == 1 or len(indices) < 2:
            return take_into(array, indices, out)
        return self.parallel(array, indices, out, threads)

    def timed_copy(self, array, indices, out, key: int) -> np.ndarray:
        """Copy with the candidate thread count least timed so far for ``key``; decide once each has
        :data:`TRIALS` timings (the fastest single call of each wins: others' load only slows calls)."""
        timings = self.timings.setdefault(key, {count: [] for count in {1, self.max_threads}})
        threads = min(timings, key=lambda count: len(timings[count]))
        start = time.perf_counter()
        self.copy(array, indices, out, threads)
        timings[threads].append(time.perf_counter() - start)
        if all(len(times) >= TRIALS for times in timings.values()):
            self.choice[key] = fastest(timings)
        return out

    def parallel(self, array, indices, out, threads: int) -> np.ndarray:
        """Copy ``threads`` contiguous parts of the batch at once (this thread copies the first)."""
        self.parts.run(lambda a, b: take_into(array, indices[a:b], out[a:b]), len(indices), threads)
        return out

    def __getstate__(self):
        return {**self.__dict__, "timings": {}, "calls": {}}  # a worker measures for itself
