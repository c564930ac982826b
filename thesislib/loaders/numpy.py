"""``numpy``: memory-mapped ``.npy`` files; a batch is one gather of its sorted rows.

The gather is :func:`~thesislib.loaders.base.gather`: ``np.take`` (one memcpy per row, 3 KB to 768 KB),
the batch split among a few threads. On one thread it is as fast as ``torch.index_select``; unlike
PyTorch's OpenMP threads, its threads do not slow down many times over when another process holds a core.

The map is opened lazily in the process that reads (each worker its own) and dropped by ``close()``, so
``bench --cold`` can evict the files from the page cache between epochs. Reads ``npy-uint8`` (default),
``npy-float16`` and ``npy-float32``; float stores are delivered as float tensors holding pixel / 255.
"""

import numpy as np

from thesislib.errors import ThesisError
from thesislib.loaders.base import BatchDataset, BatchLoader, BufferPool, gather
from thesislib.stores import npy


def open_npy(path, shape=None, dtype=None, mmap_mode="r") -> np.ndarray:
    """``np.load`` of one store file, checked against the manifest; a ThesisError naming a bad file."""
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ThesisError(f"cannot read {path} ({exc}): the file is truncated or corrupt; delete its store "
                          "folder and run `python -m thesislib prepare` again") from exc
    if shape is not None and tuple(array.shape) != tuple(shape) or dtype is not None and array.dtype != dtype:
        raise ThesisError(f"{path} holds {array.dtype}{list(array.shape)}, its manifest says "
                          f"{dtype}{list(shape)}: delete its store folder and run prepare again")
    return array


class NpyBatches(BatchDataset):
    """Batches of a split of an npy store, read from a memory map."""

    def __init__(self, store, split):
        super().__init__()
        self.images_path = npy.images_path(store.path, split)
        self.labels_path = npy.labels_path(store.path, split)
        self.shape, self.dtype = store.shape(split), store.dtype
        self.buffers = BufferPool()  # for :func:`gather`

    def open(self):
        images = open_npy(self.images_path, self.shape, self.dtype)
        return images, open_npy(self.labels_path, self.shape[:1], np.int64, mmap_mode=None)

    def read(self, handle, indices):
        images, labels = handle
        return gather(images, indices, self.buffers), labels[indices]

    def __getstate__(self):
        return {**super().__getstate__(), "buffers": BufferPool()}  # a worker gathers into its own buffers


class NumpyLoader(BatchLoader):
    name = "numpy"
    store_kinds = ("npy",)
    default_store = "npy-uint8"
    batches_class = NpyBatches
