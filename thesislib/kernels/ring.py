"""A ring of preallocated batch buffers (as FFCV's ``epoch_iterator``): batch ``i`` is read into slot
``i % slots``, so a new batch does not land in freshly mapped memory (a page fault per 4 KiB).

Lifetime: the buffer handed out for batch ``i`` is written again for batch ``i + slots``. A consumer that
keeps a batch longer (a list of batches in a test) is still safe: a slot that anything outside the ring
still refers to (a view, a tensor made with ``torch.from_numpy``) is replaced by a new buffer, never
overwritten. The ring is for one consumer; it is not shared between threads.
"""

import sys

import numpy as np


class Ring:
    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError(f"a ring needs at least one slot, got {slots}")
        self.slots = [np.empty(0)] + [None] * (int(slots) - 1)
        self.free_refs = self.slot_refs(0)  # what a slot nothing else refers to counts, on this Python
        self.slots[0] = None
        self.turn = 0

    def slot_refs(self, index: int) -> int:
        return sys.getrefcount(self.slots[index])

    def next(self, rows: int, sample_shape: tuple, dtype, capacity: int = None) -> np.ndarray:
        """The next slot as a (rows, *sample_shape) array (the slot holds ``capacity`` >= rows rows, so a
        short last batch reuses a full slot)."""
        index = self.turn % len(self.slots)
        self.turn += 1
        if not fits(self.slots[index], rows, sample_shape, dtype) or self.slot_refs(index) > self.free_refs:
            self.slots[index] = np.empty((max(rows, capacity or rows), *sample_shape), dtype=dtype)
        return self.slots[index][:rows]


def fits(buffer, rows: int, sample_shape: tuple, dtype) -> bool:
    return (buffer is not None and buffer.shape[0] >= rows and buffer.shape[1:] == tuple(sample_shape)
            and buffer.dtype == np.dtype(dtype))

