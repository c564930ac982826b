"""Rows that lie at known addresses in memory another library maps and owns, gathered like an array's rows.

LMDB hands out each value as a pointer into its memory map, valid until its read transaction ends (LMDB's
zero-copy design; py-lmdb's ``buffers=True`` gives these pointers as memoryviews). Values do not lie at a
regular stride (B-tree pages sit between them), so no ndarray view covers them; :class:`PointerRows` keeps
one address per row and copies a batch's rows with ``memcpy`` in a compiled loop that releases the GIL, so
:class:`~thesislib.kernels.gather.Gather` can split a batch across threads as it does for a memory map.

The addresses are only as valid as their owner's promise, so a :class:`PointerRows` holds a reference to
the owner (the transaction, which holds its environment): the map stays until the last reader of the rows,
a thread still copying included, lets go of them. Nothing closes the owner under a running copy.
"""

import ctypes
import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def compiled_copy():
    """``copy_rows(addresses, indices, out)``: ``out[row] = bytes at addresses[indices[row]]``, one
    ``memcpy`` of ``out``'s row size per row; compiled once per process."""
    import numba

    lib = ctypes.CDLL(None)
    lib.memcpy.argtypes, lib.memcpy.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p
    c_memcpy = lib.memcpy

    @numba.njit(nogil=True)
    def copy_rows(addresses, indices, out):
        size = out.shape[1]
        base = out.ctypes.data
        for row in range(indices.size):
            c_memcpy(base + row * size, addresses[indices[row]], size)

    return copy_rows


class PointerRows:
    """``shape[0]`` rows of ``shape[1:]`` and ``dtype``, row ``i`` at memory address ``addresses[i]``, valid
    while ``owner`` lives (kept referenced here).

    Offers what :class:`~thesislib.kernels.gather.Gather` needs of an array: ``shape``, ``dtype`` and
    ``take(indices, axis, out, mode)`` along the first axis."""

    def __init__(self, addresses, shape: tuple, dtype, owner):
        self.owner = owner
        self.addresses = np.ascontiguousarray(addresses, dtype=np.uint64)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        if len(self.addresses) != self.shape[0]:
            raise ValueError(f"{len(self.addresses)} addresses for {self.shape[0]} rows")

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices, axis=0, out=None, mode="clip") -> np.ndarray:
        """``out[:] = rows[indices]``; an IndexError for an index outside the rows (nothing is read then)."""
        indices = np.asarray(indices, dtype=np.int64)
        if out is None:
            out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        if len(indices) == 0:
            return out
        if indices.min() < 0 or indices.max() >= len(self):
            raise IndexError(f"row indices {indices.min()}..{indices.max()} outside 0..{len(self) - 1}")
        shape = (len(indices), *self.shape[1:])
        if out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {self.dtype} array of shape {shape}")
        compiled_copy()(self.addresses, indices, out.reshape(len(indices), -1).view(np.uint8))
        return out
